"""Where a token's time goes, in one process: the token and introspection requests through
authserver's WSGI application, with no HTTP server, no socket and no load generator.

    python bench/inprocess.py                 # CPU µs a request, min of 7 rounds
    python bench/inprocess.py --profile token # and cProfile's top functions for one path

The figures are CPU time of this process (``time.process_time``), so they depend little
on what else the machine runs; set beside ``run.py``'s CPU column (the server's CPU a
request under wrk), the difference is the serving stack's share: gunicorn's HTTP parsing,
its threads and the sockets. The app is configured as ``run.py`` configures it (RS256,
the ``bench`` client, SQLite in a temp dir).
"""

from __future__ import annotations

import argparse
import base64
import cProfile
import io
import json
import pstats
import secrets
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from functools import partial
from pathlib import Path
from typing import Any

import bcrypt

sys.path.insert(0, str(Path(__file__).resolve().parent))
import run as bench

SECRET = secrets.token_urlsafe(24)
TOKEN_PATH = "/oauth2/token"  # noqa: S105 (a path)
INTROSPECTION_PATH = "/oauth2/introspect"
TOKEN_BODY = f"grant_type=client_credentials&scope={bench.SCOPE}".encode()


def build_app(workdir: Path) -> Callable[..., Iterable[bytes]]:
    from authserver.app import create_app
    from authserver.settings import load_settings

    secret_hash = bcrypt.hashpw(SECRET.encode(), bcrypt.gensalt(rounds=4)).decode()
    config = workdir / "authserver.yaml"
    config.write_text(bench.authserver_config(8999, workdir, "RS256", secret_hash))
    authserver = str(bench.authserver_executable())
    subprocess.run([authserver, "--config", str(config), "db", "upgrade"], check=True,
                   capture_output=True, env=bench.authserver_env())  # fmt: skip
    app: Callable[..., Iterable[bytes]] = create_app(load_settings(config))
    return app


def caller(app: Callable[..., Iterable[bytes]]) -> Callable[[str, bytes], tuple[str, bytes]]:
    """POST ``body`` to ``path`` as the ``bench`` client, as WSGI: status and body."""
    authorization = "Basic " + base64.b64encode(f"{bench.CLIENT_ID}:{SECRET}".encode()).decode()

    def call(path: str, body: bytes) -> tuple[str, bytes]:
        environ: dict[str, Any] = {
            "REQUEST_METHOD": "POST", "PATH_INFO": path, "SCRIPT_NAME": "",
            "QUERY_STRING": "", "SERVER_NAME": "127.0.0.1", "SERVER_PORT": "8999",
            "SERVER_PROTOCOL": "HTTP/1.1", "wsgi.url_scheme": "http",
            "wsgi.input": io.BytesIO(body), "wsgi.errors": sys.stderr,
            "wsgi.multithread": True, "wsgi.multiprocess": True, "wsgi.run_once": False,
            "CONTENT_TYPE": "application/x-www-form-urlencoded",
            "CONTENT_LENGTH": str(len(body)), "HTTP_AUTHORIZATION": authorization,
            "REMOTE_ADDR": "127.0.0.1", "HTTP_HOST": "127.0.0.1:8999",
        }  # fmt: skip
        status: list[str] = []
        chunks = b"".join(app(environ, lambda s, h, e=None: status.append(s)))
        return status[0], chunks

    return call


def per_request_us(call: Callable[[], object], rounds: int = 7, count: int = 400) -> float:
    """CPU µs of one ``call``: the fastest of ``rounds`` rounds of ``count``."""
    for _ in range(count // 2):
        call()
    best = float("inf")
    for _ in range(rounds):
        started = time.process_time()
        for _ in range(count):
            call()
        best = min(best, (time.process_time() - started) * 1e6 / count)
    return best


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--profile", choices=("token", "introspection"))
    parser.add_argument("--top", type=int, default=30, help="functions listed by --profile")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="authserver-profile-") as tmp:
        call = caller(build_app(Path(tmp)))
        status, body = call(TOKEN_PATH, TOKEN_BODY)
        if not status.startswith("200"):
            print(f"profile: the token request answered {status}: {body[:200]!r}", file=sys.stderr)
            return 1
        token = json.loads(body)["access_token"]
        paths = {
            "token": (TOKEN_PATH, TOKEN_BODY),
            "introspection": (INTROSPECTION_PATH, f"token={token}".encode()),
        }
        print(f"RSA-2048 signature: {bench.rsa_sign_us():.0f} µs")
        for name, (path, request_body) in paths.items():
            us = per_request_us(partial(call, path, request_body))
            print(f"{name}: {us:.0f} µs a request (CPU, in process, no HTTP)")
        if args.profile:
            path, request_body = paths[args.profile]
            profiler = cProfile.Profile()
            profiler.enable()
            for _ in range(2000):
                call(path, request_body)
            profiler.disable()
            stats = pstats.Stats(profiler)
            stats.sort_stats("cumulative").print_stats(args.top)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
