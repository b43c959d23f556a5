"""Serving: gunicorn for real use, Flask's server for ``--dev``.

gunicorn's ``gthread`` worker reads a request in the thread that will serve it, with
blocking reads and no deadline: a client that sends half its headers (or half its body)
and then nothing holds that thread for as long as it keeps the connection open, and a
handful of such clients starve the worker (issue 9.7). :class:`BoundedThreadWorker`
gives every request :data:`REQUEST_ARRIVAL_TIMEOUT` seconds to arrive whole (headers
and body), counted from when its connection was accepted (or, kept alive, became
readable), and answers 408 and shuts the connection down when it has not, which ends
the blocked read. A request that waited in the queue behind slow ones gets at least
:data:`_PICKUP_GRACE` once a thread takes it up: one that has arrived is read in far
less, so only the slow ones are cut. A buffering proxy in front (nginx, a cloud
load balancer) takes slow clients off the workers entirely.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import math
import os
import shlex
import shutil
import socket
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, NoReturn

from flask import Flask
from gunicorn.app.base import BaseApplication
from gunicorn.config import Config
from gunicorn.workers.gthread import ThreadWorker

from .logs import logging_config
from .settings import Settings, parse_bind
from .web.services import Services

#: Seconds a request may take to arrive whole, headers and body, once a worker thread
#: has taken it up. Our requests are small forms (at most ``max_form_bytes``).
REQUEST_ARRIVAL_TIMEOUT = 10.0

#: The worker class, which ``GUNICORN_CMD_ARGS`` may not replace: it is what bounds
#: how long a request may take to arrive.
WORKER_CLASS = "authserver.serve.BoundedThreadWorker"

#: prometheus_client's multiprocess mode: where every worker keeps its metric files.
METRICS_DIR_ENV = "PROMETHEUS_MULTIPROC_DIR"

_WATCH_INTERVAL = 0.25
_PICKUP_GRACE = 1.0
_REQUEST_TIMEOUT_RESPONSE = (
    b"HTTP/1.1 408 Request Timeout\r\nConnection: close\r\nContent-Type: text/plain\r\n"
    b"Content-Length: 37\r\n\r\nThe request did not arrive in time.\r\n"
)


class _Arrivals:
    """Per worker: the connections whose request is still arriving, by thread, with a
    deadline; a watchdog thread shuts down the ones past it."""

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self._lock = threading.Lock()
        self._waiting: dict[int, tuple[float, Any]] = {}

    def start(self, conn: Any) -> None:
        now = time.monotonic()
        queued = getattr(conn, "authserver_queued", now)
        deadline = max(queued + self.timeout, now + _PICKUP_GRACE)
        with self._lock:
            self._waiting[threading.get_ident()] = (deadline, conn)

    def arrived(self) -> None:
        with self._lock:
            self._waiting.pop(threading.get_ident(), None)

    def expire(self, now: float) -> None:
        """Answer 408 to and shut down every connection past its deadline."""
        with self._lock:
            late = [ident for ident, (deadline, _) in self._waiting.items() if deadline <= now]
            conns = [self._waiting.pop(ident)[1] for ident in late]
            for conn in conns:
                sock = conn.sock
                with contextlib.suppress(OSError):
                    if not hasattr(sock, "cipher"):  # a TLS socket is not ours to write to
                        sock.send(_REQUEST_TIMEOUT_RESPONSE)
                with contextlib.suppress(OSError):
                    # The plain socket's shutdown (not SSLSocket's, which would drop its
                    # TLS state under the reading thread): the blocked read returns b"".
                    socket.socket.shutdown(sock, socket.SHUT_RDWR)

    def watch(self, alive: Callable[[], bool]) -> None:
        while alive():
            time.sleep(_WATCH_INTERVAL)
            self.expire(time.monotonic())


class _BodyWatch:
    """``wsgi.input`` that tells :class:`_Arrivals` when the body has been read."""

    def __init__(self, body: Any, length: int | None, arrivals: _Arrivals) -> None:
        self._body = body
        self._left = length
        self._arrivals = arrivals

    def _count(self, data: bytes) -> bytes:
        if not data:
            self._arrivals.arrived()
        elif self._left is not None:
            self._left -= len(data)
            if self._left <= 0:
                self._arrivals.arrived()
        return data

    def read(self, size: int | None = None) -> bytes:
        return self._count(self._body.read(size))

    def readline(self, size: int | None = None) -> bytes:
        return self._count(self._body.readline(size))

    def readlines(self, hint: int | None = None) -> list[bytes]:
        lines: list[bytes] = self._body.readlines(hint)
        self._arrivals.arrived()
        return lines

    def __iter__(self) -> Iterator[bytes]:
        for line in self._body:
            yield self._count(line)
        self._arrivals.arrived()


def _content_length(environ: dict[str, Any]) -> int | None:
    try:
        return int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        return None


class BoundedThreadWorker(ThreadWorker):  # type: ignore[misc]
    """gunicorn's ``gthread`` worker with a deadline for each request to arrive."""

    wsgi: Callable[..., Iterable[bytes]]

    def init_process(self) -> None:
        self.arrivals = _Arrivals(REQUEST_ARRIVAL_TIMEOUT)
        threading.Thread(
            target=self.arrivals.watch,
            args=(lambda: self.alive,),
            name="request-arrival-watch",
            daemon=True,
        ).start()
        super().init_process()

    def load_wsgi(self) -> None:
        super().load_wsgi()
        app: Callable[..., Iterable[bytes]] = self.wsgi
        arrivals = self.arrivals

        def bounded(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
            length = _content_length(environ)
            chunked = "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower()
            if length == 0 and not chunked:
                arrivals.arrived()
            else:
                environ["wsgi.input"] = _BodyWatch(
                    environ["wsgi.input"], None if chunked else length, arrivals
                )

            def started(*args: Any) -> Any:
                arrivals.arrived()  # the app has what it reads of the request
                return start_response(*args)

            return app(environ, started)

        self.wsgi = bounded

    def enqueue_req(self, conn: Any) -> None:
        conn.authserver_queued = time.monotonic()
        super().enqueue_req(conn)

    def handle(self, conn: Any) -> Any:
        self.arrivals.start(conn)
        try:
            return super().handle(conn)
        finally:
            self.arrivals.arrived()

    def handle_http2(self, conn: Any) -> Any:
        # An HTTP/2 connection carries many requests over its life; its streams are
        # read by gunicorn's HTTP/2 state machine, not by a blocked thread per request.
        self.arrivals.arrived()
        return super().handle_http2(conn)


#: Seconds between a worker's looks at whether the janitor's run is due (one ephemeral
#: ``add`` each; one worker of the deployment wins it per ``janitor.interval``).
JANITOR_TICK = 60.0


def janitor_loop(services: Services, stop: threading.Event, tick: float = JANITOR_TICK) -> None:
    """Until ``stop`` is set: every ``tick`` seconds, the janitor's run if it is due
    (``Janitor.run_if_due``). A failure (the database or Redis down) is logged and tried
    again at the next interval; it never stops the worker."""
    settings = services.settings.janitor
    log = logging.getLogger("authserver")
    while not stop.wait(min(tick, settings.interval)):
        try:
            counts = services.janitor.run_if_due(
                services.ephemeral, settings.interval, settings.batch_size
            )
        except Exception as exc:
            log.warning("janitor: the run failed (%s); trying again later", exc)
            continue
        if counts is not None:
            log.log(
                logging.INFO if counts.total else logging.DEBUG,
                "janitor: deleted %s",
                ", ".join(f"{t} {n}" for t, n in counts.as_dict().items()),
            )


def start_janitor(app: Flask) -> threading.Event | None:
    """Start :func:`janitor_loop` in a daemon thread of this worker, unless
    ``janitor.interval`` is 0; the event that stops it."""
    services = Services.of(app)
    if not services.settings.janitor.interval:
        return None
    stop = threading.Event()
    threading.Thread(
        target=janitor_loop, args=(services, stop), name="janitor", daemon=True
    ).start()
    return stop


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

        app = create_app(self._settings)
        for line in Services.of(app).key_lines:
            line.preload()
        start_janitor(app)
        return app


def prepare_metrics_dir() -> str:
    """A fresh private directory for the workers' metric files, named in
    :data:`METRICS_DIR_ENV` for them to inherit; removed when this process exits.

    Call it before the app is built: prometheus_client picks its storage (memory, or
    files shared by the workers) when it is first imported, from this variable.
    """
    path = tempfile.mkdtemp(prefix="authserver-metrics-")
    os.environ[METRICS_DIR_ENV] = path
    owner = os.getpid()

    def remove() -> None:
        if os.getpid() == owner:  # workers run the exit handlers they inherit too
            shutil.rmtree(path, ignore_errors=True)

    atexit.register(remove)
    return path


def _worker_exited(server: Any, worker: Any) -> None:
    """gunicorn's ``child_exit``: a dead worker's gauges stop counting (its counters
    stay in the sums, so that they never go back)."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)  # type: ignore[no-untyped-call]


class ServeOptionError(ValueError):
    """A bad ``serve`` option or ``GUNICORN_CMD_ARGS`` (bad usage: exit 2)."""


def default_workers() -> int:
    return max(2, os.cpu_count() or 1)


def gunicorn_options(
    settings: Settings,
    bind: str | None = None,
    workers: int | None = None,
    tls_cert: str | None = None,
    tls_key: str | None = None,
    environ: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """gunicorn's settings: ``server:`` of the config, then ``GUNICORN_CMD_ARGS``, then
    the ``serve`` options (``bind``, ``workers``), each winning over the one before.

    The worker threads (``server.threads``) are spares for slow clients: the work is
    CPU-bound, so more do not raise throughput (bench/), but a thread blocked on a slow
    client costs no CPU and the spares keep the worker answering.
    """
    server = settings.server
    options: dict[str, Any] = {
        "bind": [server.bind],
        "workers": server.workers or default_workers(),
        "worker_class": WORKER_CLASS,
        "threads": server.threads,
        "keepalive": math.ceil(server.keepalive),
        "timeout": math.ceil(server.timeout),
        "graceful_timeout": math.ceil(server.graceful_timeout),
        # Our logging setup in master and workers; the access log is ours (web/access_log.py).
        "accesslog": None,
        "logconfig_dict": logging_config(settings.log_format, settings.log_level),
        # Proxies in front set X-Forwarded-*; we build URLs from `issuer`, not from them.
        "forwarded_allow_ips": ",".join(server.forwarded_allow_ips),
    }
    environ = os.environ if environ is None else environ
    options.update(_gunicorn_cmd_args(environ.get("GUNICORN_CMD_ARGS", "")))
    if bind is not None:
        options["bind"] = [bind]
    if workers is not None:
        options["workers"] = workers
    if tls_cert and tls_key:
        options.update(certfile=tls_cert, keyfile=tls_key)
    return options


def _gunicorn_cmd_args(text: str) -> dict[str, Any]:
    """``GUNICORN_CMD_ARGS``, read as gunicorn reads it, checked by gunicorn's own
    validators; ``ServeOptionError`` for what it may not set or set wrong."""
    config = Config()
    parser = config.parser()

    def refuse(message: str) -> NoReturn:
        raise ServeOptionError(f"GUNICORN_CMD_ARGS: {message}")

    parser.error = refuse  # one line, instead of gunicorn's usage and exit
    try:
        words = shlex.split(text)
    except ValueError as exc:  # an unclosed quote
        refuse(str(exc))
    parsed = vars(parser.parse_args(words))
    if parsed.pop("args", None):
        refuse("takes gunicorn options only, not an application")
    options = {key: value for key, value in parsed.items() if value is not None}
    if "worker_class" in options:
        refuse(f"the worker class is {WORKER_CLASS} (it bounds how long a request may take)")
    if "config" in options:
        refuse("no gunicorn config file; use the server: section of authserver's config")
    if "bind" in options:
        try:
            options["bind"] = [parse_bind(item) for item in options["bind"]]
        except ValueError as exc:
            refuse(f"--bind: {exc}")
    for key, value in options.items():
        try:
            config.set(key, value)
        except (TypeError, ValueError) as exc:
            refuse(f"{key}: {exc}")
    return options


def run_gunicorn(settings: Settings, options: dict[str, Any]) -> None:
    """Serve with gunicorn; ``options`` from :func:`gunicorn_options`."""
    if os.environ.get(METRICS_DIR_ENV):
        options = {**options, "child_exit": _worker_exited}
    _Gunicorn(settings, options).run()


def run_dev(app: Flask, bind: str, tls_cert: str | None, tls_key: str | None) -> None:
    """Flask's development server on ``bind`` (as :func:`parse_bind` gives it)."""
    if bind.startswith("unix:"):
        raise ServeOptionError("--dev listens on HOST:PORT only, not a unix socket")
    host, _, port = bind.rpartition(":")
    ssl_context = (tls_cert, tls_key) if tls_cert and tls_key else None
    start_janitor(app)
    app.run(host=host.strip("[]"), port=int(port), ssl_context=ssl_context, threaded=True)
