"""Serving: gunicorn for real use, Flask's server for ``--dev``."""

from __future__ import annotations

from typing import Any

from flask import Flask
from gunicorn.app.base import BaseApplication

from .settings import Settings


class _Gunicorn(BaseApplication):  # type: ignore[misc]
    def __init__(self, settings: Settings, options: dict[str, Any]) -> None:
        self._settings = settings
        self._options = options
        super().__init__()

    def load_config(self) -> None:
        for key, value in self._options.items():
            self.cfg.set(key, value)
        if "control_socket_disable" in self.cfg.settings:
            # gunicorn >= 27 opens a control socket at a fixed path in $HOME; several
            # servers on one machine would contend for it, and we do not use it.
            self.cfg.set("control_socket_disable", True)

    def load(self) -> Flask:
        # Runs in each worker after the fork: every worker builds its own app, engine
        # and connections from the settings the master validated.
        from .app import create_app

        return create_app(self._settings)


def run_gunicorn(
    settings: Settings, bind: str, workers: int, tls_cert: str | None, tls_key: str | None
) -> None:
    options: dict[str, Any] = {
        "bind": bind,
        "workers": workers,
        "worker_class": "gthread",
        # Two threads per worker measured best on the token path (bench/): the work
        # is CPU-bound, so more threads only contend for the GIL.
        "threads": 2,
        "keepalive": 30,
        "timeout": 30,
        "graceful_timeout": 20,
        "accesslog": None,
        "errorlog": "-",
        "loglevel": "info",
        # Proxies in front set X-Forwarded-*; we build URLs from `issuer`, not from them.
        "forwarded_allow_ips": "127.0.0.1,::1",
    }
    if tls_cert and tls_key:
        options.update(certfile=tls_cert, keyfile=tls_key)
    _Gunicorn(settings, options).run()


def run_dev(app: Flask, bind: str, tls_cert: str | None, tls_key: str | None) -> None:
    host, _, port = bind.rpartition(":")
    ssl_context = (tls_cert, tls_key) if tls_cert and tls_key else None
    app.run(host=host or "127.0.0.1", port=int(port), ssl_context=ssl_context, threaded=True)
