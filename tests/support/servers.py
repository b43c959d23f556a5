"""Servers in other processes or threads: start, poll until they answer, stop.

One start/poll/stop serves ``authserver serve`` (gunicorn), the mock upstream IdP
(tests/oidc_mock.py) and the SkyPilot API server (tests/skypilot.py): :func:`spawn`
starts a command in a process group of its own with its output in a log file,
:func:`wait_until_serving` polls it until a probe passes (or it exits, or time runs
out: a ``RuntimeError`` with its log), :func:`stop_process` ends its group.
:func:`json_server` serves small JSON documents (discovery, JWKS) from a thread.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml
from flask import Flask

from .factories import empty_pg, standard_config

# -- any process --------------------------------------------------------------------


#: Whether the test being set up is marked ``live`` (set by conftest's
#: ``pytest_runtest_setup``): what starts a process checks it, so a test that starts
#: one without the marker fails instead of slowing ``pytest -m "not live"`` down.
LIVE_TEST = {"marked": True, "name": ""}


def require_live_marker(what: str) -> None:
    if not LIVE_TEST["marked"]:
        pytest.fail(
            f"{LIVE_TEST['name']} starts {what}, a process of its own, without the `live`"
            " marker: mark it (`pytest.mark.live`) or run it in-process"
        )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def spawn(
    command: list[str], *, cwd: Path, log_path: Path, env: dict[str, str]
) -> subprocess.Popen[bytes]:
    """Start ``command`` in a new session (so :func:`stop_process` reaches its
    children), its stdout and stderr in ``log_path``."""
    require_live_marker(Path(command[0]).name)
    with log_path.open("wb") as log:
        return subprocess.Popen(
            command,
            cwd=cwd,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )


def http_probe(
    url: str, ok: Callable[[requests.Response], bool] = lambda r: r.status_code == 200
) -> Callable[[], bool]:
    """A probe for :func:`wait_until_serving`: ``GET url`` answers and ``ok`` holds."""

    def probe() -> bool:
        try:
            return ok(requests.get(url, timeout=1))
        except requests.ConnectionError:
            return False

    return probe


def wait_until_serving(
    process: subprocess.Popen[bytes],
    probe: Callable[[], bool],
    *,
    what: str,
    log: Callable[[], str],
    timeout: float,
    interval: float = 0.2,
    stop: Callable[[], None] | None = None,
) -> None:
    """Poll ``probe`` until it passes. If ``process`` exits first, ``probe`` raises
    ``RuntimeError`` (up but broken), or ``timeout`` seconds pass, raise
    ``RuntimeError`` with its log; in the last two cases ``stop`` it first (by
    default :func:`stop_process`)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited with {process.returncode}:\n{log()}")
        try:
            if probe():
                return
        except RuntimeError as exc:
            message = f"{what} {exc}:\n{log()}"
            (stop or (lambda: stop_process(process)))()
            raise RuntimeError(message) from None
        time.sleep(interval)
    message = f"{what} did not start within {timeout:.0f} s:\n{log()}"
    (stop or (lambda: stop_process(process)))()
    raise RuntimeError(message)


def stop_process(
    process: subprocess.Popen[bytes], grace: float = 20.0, *, kill_group: bool = False
) -> None:
    """SIGTERM to the process group; SIGKILL if it has not ended after ``grace``
    seconds, or always with ``kill_group`` (for children that ignore SIGTERM)."""
    if process.poll() is None:
        with suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            kill_group = True
    if kill_group:
        with suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


@contextmanager
def json_server(respond: Callable[[str], dict[str, Any] | None]) -> Iterator[str]:
    """Serve ``GET path`` with the JSON ``respond(path)`` returns (404 for ``None``)
    on a free 127.0.0.1 port, from a thread; yields its base URL."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = respond(self.path)
            if body is None:
                self.send_error(404)
                return
            data = json.dumps(body).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


# -- authserver processes ------------------------------------------------------------


def authserver_command() -> list[str]:
    exe = Path(sys.executable).with_name("authserver")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "authserver"]


@dataclass
class LiveServer:
    url: str
    config_path: Path
    workdir: Path
    process: subprocess.Popen[bytes]
    log_path: Path

    def cli(self, *args: str, input_text: str | None = None) -> subprocess.CompletedProcess[str]:
        return run_cli(
            "--config", str(self.config_path), *args, cwd=self.workdir, input_text=input_text
        )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


@dataclass
class InProcessServer:
    """The standard app behind an origin of its own (``url``), in this process:
    ``requests`` and Authlib reach it through WSGI (:mod:`.wsgi`). It stands in for a
    :class:`LiveServer` where no real process is needed; its config is also on disk,
    for a command (``cli``) against the same database."""

    url: str
    config_path: Path
    workdir: Path
    app: Flask

    def cli(self, *args: str, input_text: str | None = None) -> subprocess.CompletedProcess[str]:
        return run_cli(
            "--config", str(self.config_path), *args, cwd=self.workdir, input_text=input_text
        )


def command_env(cwd: Path, env: dict[str, str] | None) -> dict[str, str]:
    """The environment of an ``authserver`` process: none of this shell's
    ``AUTHSERVER_*``, and an instance directory and a client config directory under
    ``cwd`` (never the real ``~/.local/share/authserver`` or ``~/.config/authserver``)
    unless ``env`` names others."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("AUTHSERVER_")}
    full_env["XDG_DATA_HOME"] = str(cwd / "xdg-data")
    # the person's client config (profiles), never the real ~/.config/authserver
    full_env["XDG_CONFIG_HOME"] = str(cwd / "xdg-config")
    full_env.update(env or {})
    return full_env


def stderr_lines(stderr: str) -> list[str]:
    """``stderr`` without the notice of a command that created a new SQLite database
    (issue 11.5), which comes before an error on the first command against it."""
    return [
        line
        for line in stderr.strip().splitlines()
        if not line.startswith("authserver: created a new SQLite database at ")
    ]


def run_cli(
    *args: str, cwd: Path, input_text: str | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    require_live_marker("the authserver CLI")
    full_env = command_env(cwd, env)
    return subprocess.run(
        [*authserver_command(), *args],
        cwd=cwd,
        input=input_text,
        capture_output=True,
        text=True,
        timeout=120,
        env=full_env,
        check=False,
    )


def live_config(request: pytest.FixtureRequest, workdir: Path, issuer: str) -> dict[str, Any]:
    """The standard config for a live server on the backend ``request.param`` names:
    SQLite in ``workdir``, or the emptied PostgreSQL with Redis keys of its own (so
    that counters do not carry over between servers)."""
    if request.param == "sqlite":
        return standard_config(
            issuer, f"sqlite:///{workdir / 'authserver.db'}", workdir / "secret_key"
        )
    pg_url = request.getfixturevalue("pg_database_url")
    empty_pg(pg_url)
    config = standard_config(issuer, pg_url, workdir / "secret_key")
    config["redis_url"] = request.getfixturevalue("redis_url")
    config["redis_prefix"] = f"authserver-live:{secrets.token_hex(4)}:"
    return config


def upgrade_with_cli(workdir: Path, config: dict[str, Any]) -> None:
    """``authserver db upgrade`` on ``config`` (``serve`` migrates only SQLite itself)."""
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "authserver.yaml").write_text(yaml.safe_dump(config))
    upgraded = run_cli("--config", str(workdir / "authserver.yaml"), "db", "upgrade", cwd=workdir)
    assert upgraded.returncode == 0, upgraded.stderr


def start_server(
    workdir: Path,
    config: dict[str, Any] | None,
    port: int,
    *extra: str,
    env: dict[str, str] | None = None,
) -> LiveServer:
    """``authserver serve`` (2 workers unless ``extra`` says otherwise) on ``port``;
    returns once its discovery document answers."""
    workdir.mkdir(parents=True, exist_ok=True)
    config_path = workdir / "authserver.yaml"
    args = ["serve", "--bind", f"127.0.0.1:{port}", "--workers", "2", *extra]
    if config is not None:
        config_path.write_text(yaml.safe_dump(config))
        args = ["--config", str(config_path), *args]
    log_path = workdir / "server.log"
    process = spawn(
        [*authserver_command(), *args],
        cwd=workdir,
        log_path=log_path,
        env=command_env(workdir, env),
    )
    url = f"http://127.0.0.1:{port}"
    server = LiveServer(url, config_path, workdir, process, log_path)
    wait_until_serving(
        process,
        http_probe(url + "/.well-known/openid-configuration"),
        what="authserver",
        log=server.log,
        timeout=60,
    )
    return server


def stop_server(server: LiveServer) -> None:
    stop_process(server.process)


@contextmanager
def serving(
    request: pytest.FixtureRequest,
    workdir: Path,
    configure: Callable[[dict[str, Any]], Any] | None = None,
    *extra: str,
) -> Iterator[LiveServer]:
    """A live server with :func:`live_config` on the backend of ``request.param``
    (migrated by ``authserver db upgrade`` off SQLite), changed by ``configure`` (which
    edits the config in place) before it starts; stopped on leaving the block. What a
    module's live ``server`` fixture does: ``with serving(...) as server: yield server``."""
    port = free_port()
    config = live_config(request, workdir, f"http://127.0.0.1:{port}")
    if configure is not None:
        configure(config)
    if request.param != "sqlite":
        upgrade_with_cli(workdir, config)
    server = start_server(workdir, config, port, *extra)
    try:
        yield server
    finally:
        stop_server(server)
