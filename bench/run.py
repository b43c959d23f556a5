#!/usr/bin/env python3
"""Load-test authserver against node-oidc-provider, side by side.

For each server this starts the server on 127.0.0.1, checks with one real
request that each endpoint answers what it should, warms up, then drives it with
wrk and reports requests/sec, latency (p50, p99) and errors for each scenario:

* ``token``: client-credentials token requests (``client_secret_basic``);
* ``introspection``: RFC 7662 introspection of a token fetched beforehand;
* ``authorization_code``: a signed-in person's code flow with PKCE, ``GET /authorize``
  with the session cookie then the token request with the code its redirect carried;
* ``refresh``: refresh with rotation, each connection's chain presenting the token the
  previous answer returned (authserver on PostgreSQL + Redis);
* ``device_code``: RFC 8628 polls of a pool of pending device codes (the expected
  answer is ``authorization_pending``, or ``slow_down``);
* ``jwks``: GET of the JWKS;
* ``token_exchange`` (authserver only: the peer has no workload identity federation):
  RFC 8693 token exchange of a CI job's OIDC token, a fresh one per request (each is
  single use), signed by a fake CI issuer this script serves.
* ``token_key_jwt`` (authserver only): client-credentials token requests of a
  service account that authenticates with ``private_key_jwt`` (its key file written by
  ``service-accounts create --key-file``), each with an assertion of its own.

With ``--seeded URL``, authserver only, on a database filled by ``bench/seed.py`` and
on an empty one: ``token``, ``refresh``, ``introspection`` and ``audit_page`` (the
admin API's audit events).

The peer is panva's ``oidc-provider`` (npm), installed on first use into
``bench/.peer/`` and started as one plain ``node`` process. The servers run one
after the other, never at the same time, so each has the machine to itself
(apart from wrk). See ``bench/README.md``.

Standard library only, plus, for the authserver side, authserver's own dependencies
(``bcrypt`` for the client secret hash, ``joserfc``, ``psycopg`` and ``redis`` for the
throw-away database and Redis prefix).
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import datetime
import importlib.util
import json
import os
import platform
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from email.message import Message
from pathlib import Path
from typing import IO, Any, Final

BENCH_DIR: Final = Path(__file__).resolve().parent
PEER_DIR: Final = BENCH_DIR / ".peer"
PEER_SCRIPT: Final = BENCH_DIR / "peer.mjs"
RESULTS_FILE: Final = BENCH_DIR / "results.json"

HOST: Final = "127.0.0.1"
CLIENT_ID: Final = "bench"
SCOPE: Final = "all"
AUDIENCE: Final = "https://api.example.com"
ALGORITHMS: Final = ("RS256", "ES256", "EdDSA")
SERVERS: Final = ("authserver", "peer")
SCENARIOS: Final = (
    "token",
    "introspection",
    "authorization_code",
    "refresh",
    "device_code",
    "jwks",
    "token_exchange",
    "token_key_jwt",
)
#: Run against authserver on a seeded database (``--seeded``), and on an empty one.
SEEDED_SCENARIOS: Final = ("token", "refresh", "introspection", "audit_page")
#: The client of the browser and device scenarios (both servers), and its redirect URI:
#: nothing listens there; the code is read from the redirect's Location.
WEB_CLIENT_ID: Final = "bench-web"
REDIRECT_URI: Final = "http://127.0.0.1:9/cb"
#: A static client with the admin role: its tokens read the admin API's audit events.
ADMIN_CLIENT_ID: Final = "bench-admin"
#: The person the authorization code and refresh scenarios sign in as (authserver).
BENCH_USER: Final = "bench-user"
DEVICE_CODE_GRANT: Final = "urn:ietf:params:oauth:grant-type:device_code"
#: PKCE pairs made for the authorization code scenario (cycled through, a fresh
#: code each time: the server checks the verifier against the code's challenge).
PKCE_PAIRS: Final = 512
#: Device codes polled by the device_code scenario: each is polled about once per
#: (codes ÷ req/s) seconds, well apart from its interval, so slow_down stays rare.
DEVICE_CODES_MIN: Final = 1000
DEVICE_CODES_MAX: Final = 6000
#: The durable path of the refresh scenario (authserver): a throw-away database made
#: on this server, and this Redis with a key prefix of its own.
DEFAULT_POSTGRES_URL: Final = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
DEFAULT_REDIS_URL: Final = "redis://127.0.0.1:6379/8"
TOKEN_EXCHANGE: Final = "urn:ietf:params:oauth:grant-type:token-exchange"  # noqa: S105
ID_TOKEN_TYPE: Final = "urn:ietf:params:oauth:token-type:id_token"  # noqa: S105
#: External tokens made per second of a token-exchange run: more than authserver can
#: trade on this kind of machine, so that none is sent twice (a replay is refused).
EXCHANGE_TOKENS_PER_S: Final = 1500
#: The private_key_jwt scenario: assertions are single use, so they are signed before
#: the run, this many per second of run time per token req/s measured before, plus some.
KEY_JWT_SCENARIO: Final = "token_key_jwt"
KEY_JWT_MARGIN: Final = 1.5
DISCOVERY_PATH: Final = "/.well-known/openid-configuration"
# Must match OPAQUE_RESOURCE in peer.mjs: oidc-provider will not introspect
# JWT access tokens, so its introspection scenario uses an opaque one.
PEER_OPAQUE_RESOURCE: Final = "urn:bench:opaque"

BCRYPT_COST: Final = 12
WRK_MAX_THREADS: Final = 2
# wrk's own per-request timeout (default 2 s). Requests slower than this are
# counted as socket timeouts and dropped from the latency figures, so it is
# set well above any latency we expect to report.
WRK_REQUEST_TIMEOUT: Final = "10s"

START_TIMEOUT_S: Final = 60.0
STOP_TIMEOUT_S: Final = 10.0
HTTP_TIMEOUT_S: Final = 30.0
NPM_TIMEOUT_S: Final = 600.0
WRK_GRACE_S: Final = 60.0
VERSION_TIMEOUT_S: Final = 10.0


class BenchError(Exception):
    """A server failed to start or a check failed: the run cannot go on."""


@dataclass(frozen=True)
class Options:
    duration: int
    warmup: int
    connections: int
    threads: int
    algorithm: str
    workers: int
    servers: tuple[str, ...]
    reinstall_peer: bool
    output: Path
    #: authserver's access log and /metrics (on, as by default, or off to see their cost).
    observability: bool = True
    #: Where the refresh scenario runs authserver: a throw-away database is made on
    #: this PostgreSQL server (its URL names an existing database to connect to).
    postgres_url: str = DEFAULT_POSTGRES_URL
    redis_url: str = DEFAULT_REDIS_URL
    #: ``--seeded URL``: only the seeded comparison, against this database.
    seeded_url: str | None = None
    scenarios: tuple[str, ...] = SCENARIOS
    keep: bool = False
    #: What serves authserver: ``gthread`` (``authserver serve``: gunicorn's gthread
    #: worker), or, to compare serving stacks, gunicorn's ``sync`` worker or granian
    #: (Rust HTTP, WSGI) on bench/stack_app.py.
    stack: str = "gthread"


class FakeCiIssuer:
    """A CI OIDC issuer (discovery and JWKS on a free port, a thread of this process)
    and the GitHub Actions-shaped tokens it signs, RS256 as GitHub's are."""

    def __init__(self) -> None:
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        from joserfc.jwk import RSAKey  # authserver's dependency: only this side needs it

        self.key = RSAKey.generate_key(2048, parameters={"kid": "bench-ci", "use": "sig"})
        public = json.dumps({"keys": [self.key.as_dict(private=False)]}).encode()
        issuer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path == "/.well-known/openid-configuration":
                    body = json.dumps({"issuer": issuer.url, "jwks_uri": issuer.url + "/jwks"})
                    data = body.encode()
                elif self.path == "/jwks":
                    data = public
                else:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer((HOST, 0), Handler)
        self.url = f"http://{HOST}:{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def tokens(self, audience: str, count: int) -> list[str]:
        from joserfc import jwt

        now = int(time.time())
        header = {"alg": "RS256", "typ": "JWT", "kid": "bench-ci"}
        claims = {
            "iss": self.url,
            "aud": audience,
            "sub": "repo:acme/bench:ref:refs/heads/main",
            "repository": "acme/bench",
            "ref": "refs/heads/main",
            "workflow": "bench",
            "iat": now,
            "nbf": now,
            "exp": now + 3600,
        }
        return [
            jwt.encode(header, {**claims, "jti": secrets.token_hex(16)}, self.key)
            for _ in range(count)
        ]

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@dataclass(frozen=True)
class Target:
    """A started server and how to load it."""

    name: str
    base_url: str
    # URL path of each scenario's endpoint, keyed by scenario.
    paths: Mapping[str, str]
    # Extra token-request parameters for the token that gets introspected.
    introspection_token_params: Mapping[str, str] = field(default_factory=dict)
    # Whether that token is a JWT (its `alg` is then checked).
    introspection_token_is_jwt: bool = True
    # The fake CI issuer whose tokens the token_exchange scenario trades.
    ci_issuer: FakeCiIssuer | None = None
    # The scope the browser client asks for in the authorization code flow.
    web_scope: str = "openid"
    # Signs a person in (authserver's login form); ``None``: the first /authorize does
    # (the peer's interaction).
    sign_in: Callable[[Browser], None] | None = None
    # What the results say about where this server keeps its state.
    storage: str = ""


@dataclass(frozen=True)
class WrkResult:
    requests_per_sec: float
    latency_p50_ms: float
    latency_p99_ms: float
    requests: int
    non_2xx: int
    socket_errors: dict[str, int]
    bad_bodies: int
    #: 4xx answers that are the scenario's expected answer (device polling).
    expected_non_2xx: int = 0
    #: Of those, ``slow_down`` (device polling).
    slow_down: int = 0

    @property
    def errors(self) -> int:
        unexpected = self.non_2xx - self.expected_non_2xx
        return unexpected + sum(self.socket_errors.values()) + self.bad_bodies


@dataclass(frozen=True)
class ScenarioResult:
    scenario: str
    server: str
    url: str
    result: WrkResult
    storage: str = ""
    #: The server's CPU time (user + system, all its processes) for the measured run,
    #: divided by the requests it answered; ``None`` where it cannot be read (no /proc).
    cpu_us_per_request: float | None = None


# --------------------------------------------------------------------------
# HTTP checks (urllib, never through a proxy: all traffic stays on 127.0.0.1)

_OPENER: Final = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def basic_authorization(client_id: str, secret: str) -> str:
    # RFC 6749 §2.3.1: both parts are form-urlencoded before base64.
    raw = f"{urllib.parse.quote(client_id, safe='')}:{urllib.parse.quote(secret, safe='')}"
    return "Basic " + base64.b64encode(raw.encode()).decode("ascii")


def http_request(
    url: str, *, data: Mapping[str, str] | None = None, authorization: str | None = None
) -> tuple[int, bytes]:
    headers = {"Accept": "application/json"}
    body: bytes | None = None
    if data is not None:
        body = urllib.parse.urlencode(data).encode()
        headers["Content-Type"] = "application/x-www-form-urlencoded"
    if authorization is not None:
        headers["Authorization"] = authorization
    request = urllib.request.Request(url, data=body, headers=headers)
    try:
        with _OPENER.open(request, timeout=HTTP_TIMEOUT_S) as response:
            return int(response.status), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def expect_json_200(what: str, url: str, status: int, body: bytes) -> dict[str, Any]:
    text = body.decode("utf-8", "replace")
    if status != 200:
        raise BenchError(f"{what}: POST {url} returned HTTP {status}: {text}")
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise BenchError(f"{what}: POST {url} returned non-JSON: {text}") from exc
    if not isinstance(document, dict):
        raise BenchError(f"{what}: POST {url} returned a non-object: {text}")
    return document


def jwt_header(token: str) -> dict[str, Any]:
    head = token.split(".", 1)[0]
    try:
        decoded = json.loads(base64.urlsafe_b64decode(head + "=" * (-len(head) % 4)))
    except ValueError as exc:
        raise BenchError(f"access token is not a JWT: {token[:40]}...") from exc
    if not isinstance(decoded, dict):
        raise BenchError(f"access token has no JWT header: {token[:40]}...")
    return decoded


def fetch_token(
    target: Target,
    authorization: str,
    algorithm: str | None,
    extra_params: Mapping[str, str] | None = None,
) -> str:
    """One real token request; the access token, or BenchError with the body."""
    url = target.base_url + target.paths["token"]
    params = {"grant_type": "client_credentials", "scope": SCOPE, **(extra_params or {})}
    status, body = http_request(url, data=params, authorization=authorization)
    document = expect_json_200(f"{target.name} token check", url, status, body)
    token = document.get("access_token")
    if not isinstance(token, str) or not token:
        raise BenchError(f"{target.name} token check: no access_token in {document}")
    if algorithm is not None:
        alg = jwt_header(token).get("alg")
        if alg != algorithm:
            raise BenchError(
                f"{target.name} token check: access token signed with {alg!r}, "
                f"expected {algorithm!r}"
            )
    return token


def check_introspection(target: Target, authorization: str, token: str) -> None:
    url = target.base_url + target.paths["introspection"]
    status, body = http_request(url, data={"token": token}, authorization=authorization)
    document = expect_json_200(f"{target.name} introspection check", url, status, body)
    if document.get("active") is not True:
        raise BenchError(f"{target.name} introspection check: token not active: {document}")


# --------------------------------------------------------------------------
# Processes


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def tail(path: Path, lines: int = 40) -> str:
    try:
        text = path.read_text("utf-8", "replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:]) or "(empty log)"


class ServerProcess:
    """A server in its own process group, logging to a file."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        *,
        cwd: Path,
        env: Mapping[str, str],
        log_path: Path,
    ) -> None:
        self.name = name
        self.log_path = log_path
        self._log: IO[bytes] = log_path.open("wb")
        try:
            self._process = subprocess.Popen(
                list(argv),
                cwd=cwd,
                env=dict(env),
                stdin=subprocess.DEVNULL,
                stdout=self._log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        except OSError as exc:
            self._log.close()
            raise BenchError(f"{name}: cannot start {argv[0]}: {exc}") from exc

    def wait_ready(self, url: str, timeout: float = START_TIMEOUT_S) -> dict[str, Any]:
        """Poll ``url`` until it answers 200; returns its JSON document."""
        deadline = time.monotonic() + timeout
        last = "no answer"
        while time.monotonic() < deadline:
            code = self._process.poll()
            if code is not None:
                raise BenchError(
                    f"{self.name} exited with status {code} before it was ready; "
                    f"log {self.log_path}:\n{tail(self.log_path)}"
                )
            try:
                status, body = http_request(url)
            except (OSError, urllib.error.URLError) as exc:
                last = str(exc)
            else:
                if status == 200:
                    try:
                        document = json.loads(body)
                    except json.JSONDecodeError as exc:
                        raise BenchError(f"{self.name}: {url} is not JSON: {body[:200]!r}") from exc
                    if isinstance(document, dict):
                        return document
                last = f"HTTP {status}"
            time.sleep(0.25)
        raise BenchError(
            f"{self.name} not ready after {timeout:.0f} s (GET {url}: {last}); "
            f"log {self.log_path}:\n{tail(self.log_path)}"
        )

    def cpu_seconds(self) -> float | None:
        """User + system CPU seconds of every process in the server's group so far
        (a worker that exited no longer counts); ``None`` without Linux's /proc."""
        return process_group_cpu_seconds(self._process.pid)

    def stop(self) -> None:
        """SIGTERM the whole process group, then SIGKILL what is left."""
        try:
            for sig in (signal.SIGTERM, signal.SIGKILL):
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self._process.pid, sig)
                try:
                    self._process.wait(timeout=STOP_TIMEOUT_S)
                except subprocess.TimeoutExpired:
                    continue
                # The leader is gone; make sure no worker outlives it.
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self._process.pid, signal.SIGKILL)
                break
        finally:
            self._log.close()


def process_group_cpu_seconds(group: int) -> float | None:
    """User + system CPU seconds of the live processes of process group ``group``
    (proc(5): fields 5 ``pgrp``, 14 ``utime`` and 15 ``stime`` of /proc/PID/stat)."""
    proc = Path("/proc")
    if not (proc / "self" / "stat").exists():
        return None
    ticks = 0
    for stat in proc.glob("[0-9]*/stat"):
        try:
            # The command name (field 2) may hold spaces and parentheses: split after it.
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue  # exited meanwhile
        if int(fields[2]) == group:
            ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def rsa_sign_us(rounds: int = 2000) -> float:
    """CPU µs of one RS256 signature (RSA-2048, PKCS#1 v1.5, SHA-256) in this process:
    the part of a token no server can skip, to set the CPU per token beside."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding, rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    message = b"x" * 400
    started = time.process_time()
    for _ in range(rounds):
        key.sign(message, padding.PKCS1v15(), hashes.SHA256())
    return (time.process_time() - started) * 1e6 / rounds


@contextlib.contextmanager
def running(server: ServerProcess) -> Iterator[ServerProcess]:
    try:
        yield server
    finally:
        server.stop()


def require_executable(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise BenchError(f"{name} not found on PATH")
    return path


def command_version(argv: Sequence[str]) -> str:
    try:
        completed = subprocess.run(
            list(argv), capture_output=True, text=True, timeout=VERSION_TIMEOUT_S, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    lines = (completed.stdout or completed.stderr).strip().splitlines()
    return lines[0].strip() if lines else "unknown"


# --------------------------------------------------------------------------
# authserver


def authserver_executable() -> Path:
    executable = Path(sys.executable).parent / "authserver"
    if not executable.is_file():
        raise BenchError(
            f"{executable} not found: run with the venv's python, with authserver installed"
        )
    return executable


STACKS: Final = ("gthread", "sync", "granian")


def stack_argv(options: Options, config_path: Path, port: int) -> list[str]:
    """The command that serves authserver on ``options.stack`` (gthread: ``serve``)."""
    if options.stack == "gthread":
        return [
            str(authserver_executable()), "serve",
            "--config", str(config_path),
            "--bind", f"{HOST}:{port}",
            "--workers", str(options.workers),
        ]  # fmt: skip
    if options.stack == "sync":
        return [
            sys.executable, "-m", "gunicorn", "--worker-class", "sync",
            "--workers", str(options.workers), "--bind", f"{HOST}:{port}", "stack_app:app",
        ]  # fmt: skip
    if importlib.util.find_spec("granian") is None:
        raise BenchError("--stack granian: granian is not installed (pip install granian)")
    return [
        sys.executable, "-m", "granian", "--interface", "wsgi",
        "--workers", str(options.workers), "--host", HOST, "--port", str(port),
        "--log-level", "warning", "stack_app:app",
    ]  # fmt: skip


@dataclass(frozen=True)
class AuthserverStore:
    """Where an authserver of the bench keeps its state (SQLite in the work dir unless
    a database URL is given; the ephemeral store in SQL unless a Redis URL is)."""

    database_url: str | None = None
    redis_url: str | None = None
    redis_prefix: str | None = None
    #: A secret key file kept from run to run (a seeded database's keys are encrypted
    #: under it); ``None``: one in the work dir.
    secret_key_file: Path | None = None

    def describe(self) -> str:
        database = "SQLite" if self.database_url is None else "PostgreSQL"
        return database + (" + Redis" if self.redis_url else "")


def authserver_config(
    port: int,
    workdir: Path,
    algorithm: str,
    secret_hash: str,
    observability: bool = True,
    ci_issuer: str | None = None,
    store: AuthserverStore | None = None,
) -> str:
    # JSON strings are valid YAML double-quoted scalars.
    q = json.dumps
    store = store or AuthserverStore()
    quiet = "" if observability else 'access_log: false\nmetrics:\n  access: "off"\n'
    database_url = store.database_url or f"sqlite:///{workdir}/authserver.db"
    secret_key_file = store.secret_key_file or workdir / "secret_key"
    redis = (
        f"redis_url: {q(store.redis_url)}\nredis_prefix: {q(store.redis_prefix or 'authserver:')}\n"
        if store.redis_url
        else ""
    )
    return (
        quiet
        + redis
        + (
            f"issuer: {q(f'http://{HOST}:{port}')}\n"
            f"database_url: {q(database_url)}\n"
            f"secret_key_file: {q(str(secret_key_file))}\n"
            "signing:\n"
            f"  algorithm: {algorithm}\n"
            "tokens:\n"
            "  access_token_ttl: 1h\n"
            # The device scenario polls a pool of codes, each about once a second or
            # less: a 1 s interval keeps slow_down rare (the answer costs the same).
            "  device_poll_interval: 1\n"
            f"  audiences: [{q(AUDIENCE)}]\n"
            "clients:\n"
            f"  - client_id: {q(CLIENT_ID)}\n"
            f"    client_secret_hash: {q(secret_hash)}\n"
            "    grant_types: [client_credentials]\n"
            f"    scopes: [{SCOPE}]\n"
            "    roles: [user]\n"
            f"  - client_id: {q(WEB_CLIENT_ID)}\n"
            f"    client_secret_hash: {q(secret_hash)}\n"
            f"    grant_types: [authorization_code, refresh_token, {DEVICE_CODE_GRANT}]\n"
            f"    redirect_uris: [{q(REDIRECT_URI)}]\n"
            f"    scopes: [openid, {SCOPE}]\n"
            f"  - client_id: {q(ADMIN_CLIENT_ID)}\n"
            f"    client_secret_hash: {q(secret_hash)}\n"
            "    grant_types: [client_credentials]\n"
            "    roles: [admin]\n"
        )
        + (
            "federated_identities:\n"
            "  - name: bench-ci\n"
            f"    issuer: {q(ci_issuer)}\n"
            "    claims: {repository: acme/bench, ref: refs/heads/main}\n"
            '    subject: "ci:{repository}:{ref}"\n'
            "    role: user\n"
            "    scopes: [read]\n"
            if ci_issuer
            else ""
        )
    )


def authserver_env() -> dict[str, str]:
    # AUTHSERVER_<SECTION>__<KEY> variables override the config file: drop any
    # from the caller's environment so the run is what the file says.
    return {k: v for k, v in os.environ.items() if not k.startswith("AUTHSERVER_")}


def authserver_cli(workdir: Path, *args: str, stdin: str | None = None) -> str:
    """``authserver --config <workdir>/authserver.yaml ARGS``; its output, or BenchError."""
    argv = [str(authserver_executable()), "--config", str(workdir / "authserver.yaml"), *args]
    try:
        completed = subprocess.run(
            argv, cwd=workdir, env=authserver_env(), input=stdin, capture_output=True,
            text=True, timeout=120, check=False,
        )  # fmt: skip
    except subprocess.TimeoutExpired as exc:
        raise BenchError(f"authserver {' '.join(args)} timed out") from exc
    if completed.returncode != 0:
        raise BenchError(f"authserver {' '.join(args)} failed:\n{completed.stderr}")
    return completed.stdout


def start_authserver(
    options: Options,
    secret: str,
    workdir: Path,
    store: AuthserverStore | None = None,
    name: str = "authserver",
    scenarios: Sequence[str] = SCENARIOS,
) -> tuple[ServerProcess, Target]:
    import bcrypt  # only this side needs it, so `--only peer` runs on any python

    store = store or AuthserverStore()
    port = free_port()
    secret_hash = bcrypt.hashpw(secret.encode(), bcrypt.gensalt(rounds=BCRYPT_COST)).decode()
    config_path = workdir / "authserver.yaml"
    ci_issuer = FakeCiIssuer() if "token_exchange" in scenarios else None
    issuer_url = ci_issuer.url if ci_issuer else None
    config = authserver_config(
        port, workdir, options.algorithm, secret_hash, options.observability, issuer_url, store
    )
    config_path.write_text(config)
    if store.database_url is not None:
        authserver_cli(workdir, "db", "upgrade")
    # The person of the browser scenarios: an admin, made as an operator would.
    username = f"{BENCH_USER}-{secrets.token_hex(4)}"
    password = secrets.token_urlsafe(24)
    authserver_cli(
        workdir, "users", "create", username, "--role", "admin", "--password-stdin",
        stdin=password + "\n",
    )  # fmt: skip
    argv = stack_argv(options, config_path, port)
    env = {**authserver_env(), "BENCH_AUTHSERVER_CONFIG": str(config_path)}
    if options.stack != "gthread":
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(BENCH_DIR), env.get("PYTHONPATH")]))
    server = ServerProcess(name, argv, cwd=workdir, env=env, log_path=workdir / "authserver.log")
    base_url = f"http://{HOST}:{port}"
    paths = {
        "token": "/oauth2/token",
        "introspection": "/oauth2/introspect",
        "authorization_code": "/oauth2/token",
        "authorize": "/oauth2/authorize",
        "refresh": "/oauth2/token",
        "device_code": "/oauth2/token",
        "device_authorization": "/oauth2/device_authorization",
        "jwks": "/.well-known/jwks.json",
        "audit_page": "/api/v1/audit-events?limit=50",
        "token_exchange": "/oauth2/token",
        KEY_JWT_SCENARIO: "/oauth2/token",
    }
    helpers = ("token", "authorize", "device_authorization")
    target = Target(
        name=name,
        base_url=base_url,
        paths={k: v for k, v in paths.items() if k in scenarios or k in helpers},
        ci_issuer=ci_issuer,
        web_scope=f"openid {SCOPE}",
        sign_in=lambda browser: sign_in_authserver(browser, base_url, username, password),
        storage=store.describe(),
    )
    return server, target


# --------------------------------------------------------------------------
# peer: node-oidc-provider


def peer_version(peer_dir: Path) -> str | None:
    manifest = peer_dir / "node_modules" / "oidc-provider" / "package.json"
    try:
        version = json.loads(manifest.read_text())["version"]
    except (OSError, ValueError, KeyError):
        return None
    return str(version)


def ensure_peer_installed(reinstall: bool) -> str:
    """Install oidc-provider into bench/.peer/ unless cached; its version."""
    version = peer_version(PEER_DIR)
    if version is not None and not reinstall:
        return version
    npm = require_executable("npm")
    print("installing oidc-provider (npm) into bench/.peer/ ...", flush=True)
    staging = Path(tempfile.mkdtemp(prefix=".peer-install-", dir=BENCH_DIR))
    try:
        (staging / "package.json").write_text(
            json.dumps({"name": "authserver-bench-peer", "private": True}) + "\n"
        )
        try:
            completed = subprocess.run(
                [npm, "install", "--no-audit", "--no-fund", "oidc-provider"],
                cwd=staging,
                capture_output=True,
                text=True,
                timeout=NPM_TIMEOUT_S,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise BenchError(f"npm install timed out after {NPM_TIMEOUT_S:.0f} s") from exc
        if completed.returncode != 0:
            output = completed.stdout + completed.stderr
            raise BenchError(f"npm install failed ({completed.returncode}):\n{output}")
        version = peer_version(staging)
        if version is None:
            raise BenchError("npm install succeeded but oidc-provider is not in node_modules")
        if PEER_DIR.exists():
            shutil.rmtree(PEER_DIR)
        staging.rename(PEER_DIR)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return version


def start_peer(options: Options, secret: str, workdir: Path) -> tuple[ServerProcess, Target]:
    node = require_executable("node")
    # ESM resolves `oidc-provider` from the script's own directory, so the
    # script runs from inside the install.
    script = PEER_DIR / PEER_SCRIPT.name
    shutil.copyfile(PEER_SCRIPT, script)
    port = free_port()
    env = {
        **os.environ,
        "NODE_ENV": "production",
        "BENCH_ALG": options.algorithm,
        "BENCH_CLIENT_ID": CLIENT_ID,
        "BENCH_CLIENT_SECRET": secret,
        "BENCH_WEB_CLIENT_ID": WEB_CLIENT_ID,
        "BENCH_REDIRECT_URI": REDIRECT_URI,
    }
    # Its start-up notices (in-memory adapter, runtime version) go to the log.
    server = ServerProcess(
        "peer", [node, str(script), str(port)], cwd=PEER_DIR, env=env,
        log_path=workdir / "peer.log",
    )  # fmt: skip
    target = Target(
        name="peer",
        base_url=f"http://{HOST}:{port}",
        paths={
            "token": "/token",
            "introspection": "/token/introspection",
            "authorization_code": "/token",
            "authorize": "/auth",
            "refresh": "/token",
            "device_code": "/token",
            "device_authorization": "/device/auth",
            "jwks": "/jwks",
        },
        introspection_token_params={"resource": PEER_OPAQUE_RESOURCE},
        introspection_token_is_jwt=False,
        web_scope=f"openid {SCOPE}",
        storage="memory",
    )
    return server, target


# --------------------------------------------------------------------------
# wrk

_LUA_SCRIPT: Final = """\
-- generated by bench/run.py
wrk.method = "POST"
wrk.body = {body}
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
wrk.headers["Authorization"] = {authorization}
wrk.headers["Accept"] = "application/json"

-- A 200 whose body lacks the expected field is counted as an error too.
local expected = {expected}
local threads = {{}}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  bad_bodies = 0
end

function response(status, headers, body)
  if status >= 200 and status < 300 and not string.find(body, expected) then
    bad_bodies = bad_bodies + 1
  end
end

function done(summary, latency, requests)
  local total = 0
  for _, thread in ipairs(threads) do
    total = total + (thread:get("bad_bodies") or 0)
  end
  io.write(string.format("Bad bodies: %d\\n", total))
end
"""

_EXCHANGE_LUA_SCRIPT: Final = """\
-- generated by bench/run.py: each request trades another external token
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
wrk.headers["Accept"] = "application/json"

local expected = {expected}
local threads = {{}}
local counter = 0

function setup(thread)
  thread:set("id", counter)
  counter = counter + 1
  table.insert(threads, thread)
end

function init(args)
  bad_bodies = 0
  bodies = {{}}
  local n = 0
  for line in io.lines({bodies_file}) do
    if n % {threads} == id then table.insert(bodies, line) end
    n = n + 1
  end
  next_body = 1
end

function request()
  -- Past the last one the bodies repeat: replays, refused, counted as errors.
  local body = bodies[next_body] or bodies[1]
  next_body = next_body + 1
  return wrk.format(nil, nil, nil, body)
end

function response(status, headers, body)
  if status >= 200 and status < 300 and not string.find(body, expected) then
    bad_bodies = bad_bodies + 1
  end
end

function done(summary, latency, requests)
  local total = 0
  for _, thread in ipairs(threads) do
    total = total + (thread:get("bad_bodies") or 0)
  end
  io.write(string.format("Bad bodies: %d\\n", total))
end
"""

_EXPECTED_PATTERN: Final = {
    "token_exchange": '"issued_token_type"%s*:%s*"',
    "token": '"access_token"%s*:%s*"',
    "introspection": '"active"%s*:%s*true',
    KEY_JWT_SCENARIO: '"access_token"%s*:%s*"',
    "authorization_code": '"id_token"%s*:%s*"',
    "jwks": '"keys"%s*:%s*%[',
    "audit_page": '"items"%s*:%s*%[',
}
_EXPECTED_PYTHON: Final = {
    "jwks": rb'"keys"\s*:\s*\[',
    "audit_page": rb'"items"\s*:\s*\[',
}

# Each thread sends its own share of the pre-signed assertions (line n goes to thread
# n mod threads), each once; run out, it starts over and the replays count as non-2xx.
_LUA_ASSERTIONS_SCRIPT: Final = """\
-- generated by bench/run.py
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
wrk.headers["Accept"] = "application/json"

local expected = {expected}
local prefix = {prefix}
local assertions_file = {path}
local thread_count = {threads}
local threads = {{}}
local next_id = 0

function setup(thread)
  thread:set("id", next_id)
  next_id = next_id + 1
  table.insert(threads, thread)
end

function init(args)
  bad_bodies = 0
  mine = {{}}
  position = 0
  local n = 0
  for line in io.lines(assertions_file) do
    if n % thread_count == id then
      table.insert(mine, line)
    end
    n = n + 1
  end
end

function request()
  position = position + 1
  if position > #mine then
    position = 1
  end
  return wrk.format(nil, nil, nil, prefix .. mine[position])
end

function response(status, headers, body)
  if status >= 200 and status < 300 and not string.find(body, expected) then
    bad_bodies = bad_bodies + 1
  end
end

function done(summary, latency, requests)
  local total = 0
  for _, thread in ipairs(threads) do
    total = total + (thread:get("bad_bodies") or 0)
  end
  io.write(string.format("Bad bodies: %d\\n", total))
end
"""


# Shared by the scripts below: a thread id, the counters, and their sum at the end.
# ``bad_bodies`` counts answers under 400 that are not what they must be (wrk counts
# 400 and above itself); ``expected_non_2xx`` the 4xx answers that are the expected
# answer (device polling), taken off wrk's count; ``slow_down`` those among them.
_LUA_COUNTERS: Final = """\
local threads = {}
local next_id = 0

function setup(thread)
  thread:set("id", next_id)
  next_id = next_id + 1
  table.insert(threads, thread)
end

function done(summary, latency, requests)
  local totals = {bad_bodies = 0, expected_non_2xx = 0, slow_down = 0}
  for _, thread in ipairs(threads) do
    for name, _ in pairs(totals) do
      totals[name] = totals[name] + (thread:get(name) or 0)
    end
  end
  io.write(string.format("Bad bodies: %d\\n", totals.bad_bodies))
  io.write(string.format("Expected non-2xx: %d\\n", totals.expected_non_2xx))
  io.write(string.format("Slow down: %d\\n", totals.slow_down))
end

local function lines_of_thread(path, thread_count)
  local mine, n = {}, 0
  for line in io.lines(path) do
    if n % thread_count == id then table.insert(mine, line) end
    n = n + 1
  end
  return mine
end

local function form_escape(value)
  return (string.gsub(value, "[^%w%-%._~]", function(c)
    return string.format("%%%02X", string.byte(c))
  end))
end
"""

# A GET with fixed headers (JWKS, the admin API's audit page).
_LUA_GET_SCRIPT: Final = (
    """\
-- generated by bench/run.py
wrk.method = "GET"
{headers}
local expected = {expected}
""",
    """
function init(args)
  bad_bodies, expected_non_2xx, slow_down = 0, 0, 0
end

function response(status, headers, body)
  if status < 400 and not (status < 300 and string.find(body, expected)) then
    bad_bodies = bad_bodies + 1
  end
end
""",
)

# Authorization code: each thread alternates GET /authorize (with the session cookie
# and a PKCE challenge; state names the pair) and, for each code its 302 carries, the
# token request with that pair's verifier. The unit of req/s is one HTTP request.
_LUA_CODE_SCRIPT: Final = (
    """\
-- generated by bench/run.py
local authorize_prefix = {authorize_prefix}
local token_path = {token_path}
local redirect_uri = {redirect_uri}
local pkce_file = {pkce_file}
local expected = {expected}
local get_headers = {{Cookie = {cookie}, Accept = "text/html"}}
local post_headers = {{
  ["Content-Type"] = "application/x-www-form-urlencoded",
  Authorization = {authorization},
  Accept = "application/json",
}}
""",
    """
function init(args)
  bad_bodies, expected_non_2xx, slow_down = 0, 0, 0
  verifiers, challenges, codes = {}, {}, {}
  for line in io.lines(pkce_file) do
    local verifier, challenge = string.match(line, "^(%S+) (%S+)$")
    table.insert(verifiers, verifier)
    table.insert(challenges, challenge)
  end
  next_pair = id * 7
end

function request()
  local ready = table.remove(codes)
  if ready then
    return wrk.format("POST", token_path, post_headers,
      "grant_type=authorization_code&code=" .. ready[1] .. "&redirect_uri=" .. redirect_uri
      .. "&code_verifier=" .. verifiers[ready[2]])
  end
  next_pair = next_pair % #verifiers + 1
  return wrk.format("GET", authorize_prefix .. challenges[next_pair] .. "&state=" .. next_pair,
    get_headers)
end

function response(status, headers, body)
  if status >= 300 and status < 400 then
    local location = headers["Location"] or headers["location"] or ""
    local code = string.match(location, "[?&]code=([^&]+)")
    local state = tonumber(string.match(location, "[?&]state=(%d+)") or "")
    if code and state and verifiers[state] then
      table.insert(codes, {code, state})
    else
      bad_bodies = bad_bodies + 1
    end
  elseif status < 300 and not string.find(body, expected) then
    bad_bodies = bad_bodies + 1
  end
end
""",
)

# Refresh with rotation: each thread holds its share of the seeded refresh tokens (one
# per connection) and sends each once; the successor an answer carries goes back in
# the queue, so every request presents the token the previous one of its chain got.
_LUA_REFRESH_SCRIPT: Final = (
    """\
-- generated by bench/run.py
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
wrk.headers["Authorization"] = {authorization}
wrk.headers["Accept"] = "application/json"
local tokens_file = {tokens_file}
local thread_count = {threads}
""",
    """
function init(args)
  bad_bodies, expected_non_2xx, slow_down = 0, 0, 0
  tokens = lines_of_thread(tokens_file, thread_count)
end

function request()
  -- A lost chain (an error) leaves fewer tokens than connections: "none" is refused.
  local token = table.remove(tokens, 1) or "none"
  return wrk.format(nil, nil, nil, "grant_type=refresh_token&refresh_token=" .. form_escape(token))
end

function response(status, headers, body)
  if status < 300 then
    local token = string.match(body, '"refresh_token"%s*:%s*"([^"]+)"')
    if token and string.find(body, '"access_token"') then
      table.insert(tokens, token)
    else
      bad_bodies = bad_bodies + 1
    end
  elseif status < 400 then
    bad_bodies = bad_bodies + 1
  end
end
""",
)

# Device-code polling: each thread polls its share of the pending codes in turn. The
# expected answer is 400 authorization_pending, or slow_down (counted apart).
_LUA_DEVICE_SCRIPT: Final = (
    """\
-- generated by bench/run.py
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
wrk.headers["Authorization"] = {authorization}
wrk.headers["Accept"] = "application/json"
local codes_file = {codes_file}
local thread_count = {threads}
local prefix = "grant_type=" .. {grant_type} .. "&device_code="
""",
    """
function init(args)
  bad_bodies, expected_non_2xx, slow_down = 0, 0, 0
  codes = lines_of_thread(codes_file, thread_count)
  position = 0
end

function request()
  position = position % #codes + 1
  return wrk.format(nil, nil, nil, prefix .. codes[position])
end

function response(status, headers, body)
  if status == 400 and string.find(body, '"authorization_pending"') then
    expected_non_2xx = expected_non_2xx + 1
  elseif status == 400 and string.find(body, '"slow_down"') then
    expected_non_2xx = expected_non_2xx + 1
    slow_down = slow_down + 1
  elseif status < 400 then
    bad_bodies = bad_bodies + 1
  end
end
""",
)


def lua_script(template: tuple[str, str], **values: str | int) -> str:
    """A script of one of the templates above: its head filled in, the counters, its body."""
    head, body = template
    return head.format(**values) + _LUA_COUNTERS + body


def lua_string(value: str) -> str:
    if not value.isascii() or not value.isprintable():
        raise ValueError(f"refusing to embed {value!r} in a Lua script")
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def write_lua_script(path: Path, scenario: str, body: str, authorization: str) -> Path:
    path.write_text(
        _LUA_SCRIPT.format(
            body=lua_string(body),
            authorization=lua_string(authorization),
            expected=lua_string(_EXPECTED_PATTERN[scenario]),
        )
    )
    return path


def write_assertions_scripts(
    workdir: Path, target: Target, options: Options, token_rps: float
) -> tuple[Path, Path]:
    """A service account with a key file (made through the CLI, as an admin would), and
    for the warm-up and the measured run each a file of assertions signed by it and the
    wrk script that sends them."""
    from authserver.key_file import ASSERTION_TYPE, client_assertion, load_key_file

    key_path = workdir / "bench-key.json"
    argv = [
        str(authserver_executable()), "--config", str(workdir / "authserver.yaml"),
        "service-accounts", "create", "bench-key", "--key-file", str(key_path),
    ]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUTHSERVER_")}
    created = subprocess.run(
        argv, cwd=workdir, env=env, capture_output=True, text=True, timeout=60, check=False
    )
    if created.returncode != 0:
        raise BenchError(f"service-accounts create --key-file failed:\n{created.stderr}")
    key_file = load_key_file(key_path)
    # One real request first, failing loudly.
    url = target.base_url + target.paths[KEY_JWT_SCENARIO]
    check = {
        "grant_type": "client_credentials",
        "client_assertion_type": ASSERTION_TYPE,
        "client_assertion": client_assertion(key_file),
    }
    status, body = http_request(url, data=check)
    expect_json_200(f"{target.name} private_key_jwt token check", url, status, body)
    prefix = urllib.parse.urlencode(
        {"grant_type": "client_credentials", "client_assertion_type": ASSERTION_TYPE}
    )
    scripts = []
    for run, seconds in (("warmup", options.warmup), ("measured", options.duration)):
        count = int(max(token_rps, 100.0) * seconds * KEY_JWT_MARGIN) + 500
        print(f"  {target.name} {KEY_JWT_SCENARIO}: signing {count} assertions ...", flush=True)
        assertions_path = workdir / f"assertions-{run}.txt"
        with assertions_path.open("w") as out:
            for _ in range(count):
                out.write(client_assertion(key_file, lifetime=300) + "\n")
        script = workdir / f"{target.name}-{KEY_JWT_SCENARIO}-{run}.lua"
        script.write_text(
            _LUA_ASSERTIONS_SCRIPT.format(
                expected=lua_string(_EXPECTED_PATTERN[KEY_JWT_SCENARIO]),
                prefix=lua_string(prefix + "&client_assertion="),
                path=lua_string(str(assertions_path)),
                threads=options.threads,
            )
        )
        scripts.append(script)
    return scripts[0], scripts[1]


_UNITS_TO_MS: Final = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3, "h": 3600e3}
_RE_RPS: Final = re.compile(r"^Requests/sec:\s+([\d.]+)", re.M)
_RE_REQUESTS: Final = re.compile(r"^\s*(\d+) requests in ", re.M)
_RE_PERCENTILE: Final = re.compile(r"^\s*(50|99)(?:\.0+)?%\s+([\d.]+)(us|ms|s|m|h)\s*$", re.M)
_RE_NON_2XX: Final = re.compile(r"^\s*Non-2xx or 3xx responses:\s+(\d+)", re.M)
_RE_SOCKET: Final = re.compile(
    r"^\s*Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", re.M
)
_RE_BAD_BODIES: Final = re.compile(r"^Bad bodies: (\d+)", re.M)
_RE_EXPECTED_NON_2XX: Final = re.compile(r"^Expected non-2xx: (\d+)", re.M)
_RE_SLOW_DOWN: Final = re.compile(r"^Slow down: (\d+)", re.M)


def write_exchange_script(
    path: Path, issuer: FakeCiIssuer, audience: str, seconds: int, threads: int
) -> Path:
    """A wrk script and its file of request bodies, one fresh external token each."""
    bodies_file = path.with_suffix(".bodies")
    tokens = issuer.tokens(audience, EXCHANGE_TOKENS_PER_S * seconds)
    bodies_file.write_text(
        "".join(
            urllib.parse.urlencode(
                {
                    "grant_type": TOKEN_EXCHANGE,
                    "subject_token_type": ID_TOKEN_TYPE,
                    "subject_token": token,
                }
            )
            + "\n"
            for token in tokens
        )
    )
    path.write_text(
        _EXCHANGE_LUA_SCRIPT.format(
            expected=lua_string(_EXPECTED_PATTERN["token_exchange"]),
            bodies_file=lua_string(str(bodies_file)),
            threads=threads,
        )
    )
    return path


def check_token_exchange(target: Target, algorithm: str) -> None:
    """One real exchange: 200, an access token signed with ``algorithm``."""
    assert target.ci_issuer is not None
    url = target.base_url + target.paths["token_exchange"]
    (token,) = target.ci_issuer.tokens(target.base_url, 1)
    data = {
        "grant_type": TOKEN_EXCHANGE,
        "subject_token_type": ID_TOKEN_TYPE,
        "subject_token": token,
    }
    status, body = http_request(url, data=data)
    document = expect_json_200(f"{target.name} token exchange check", url, status, body)
    access_token = document.get("access_token")
    if not isinstance(access_token, str) or jwt_header(access_token).get("alg") != algorithm:
        raise BenchError(f"{target.name} token exchange check: unexpected answer {document}")


def parse_wrk_output(text: str) -> WrkResult:
    rps = _RE_RPS.search(text)
    requests = _RE_REQUESTS.search(text)
    percentiles = {
        m.group(1): float(m.group(2)) * _UNITS_TO_MS[m.group(3)]
        for m in _RE_PERCENTILE.finditer(text)
    }
    if rps is None or requests is None or not {"50", "99"} <= percentiles.keys():
        raise BenchError(f"cannot parse wrk output:\n{text}")
    non_2xx = _RE_NON_2XX.search(text)
    socket_errors = _RE_SOCKET.search(text)
    bad_bodies = _RE_BAD_BODIES.search(text)
    counts = [int(n) for n in socket_errors.groups()] if socket_errors else [0, 0, 0, 0]
    return WrkResult(
        requests_per_sec=float(rps.group(1)),
        latency_p50_ms=percentiles["50"],
        latency_p99_ms=percentiles["99"],
        requests=int(requests.group(1)),
        non_2xx=int(non_2xx.group(1)) if non_2xx else 0,
        socket_errors=dict(zip(("connect", "read", "write", "timeout"), counts, strict=True)),
        bad_bodies=int(bad_bodies.group(1)) if bad_bodies else 0,
        expected_non_2xx=_count(_RE_EXPECTED_NON_2XX, text),
        slow_down=_count(_RE_SLOW_DOWN, text),
    )


def _count(pattern: re.Pattern[str], text: str) -> int:
    match = pattern.search(text)
    return int(match.group(1)) if match else 0


def run_wrk(url: str, script: Path, options: Options, duration: int) -> WrkResult:
    argv = [
        require_executable("wrk"),
        f"-t{options.threads}", f"-c{options.connections}", f"-d{duration}s",
        "--timeout", WRK_REQUEST_TIMEOUT, "--latency", "-s", str(script), url,
    ]  # fmt: skip
    try:
        completed = subprocess.run(
            argv, capture_output=True, text=True, timeout=duration + WRK_GRACE_S, check=False
        )
    except subprocess.TimeoutExpired as exc:
        raise BenchError(f"wrk did not finish within {duration + WRK_GRACE_S:.0f} s") from exc
    if completed.returncode != 0:
        raise BenchError(
            f"wrk failed ({completed.returncode}):\n{completed.stdout}{completed.stderr}"
        )
    return parse_wrk_output(completed.stdout)


# --------------------------------------------------------------------------
# Browser flows: a signed-in session, codes, refresh tokens, device codes


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None  # a 3xx is answered to the caller, who reads its Location


class Browser:
    """urllib with a cookie jar that does not follow redirects."""

    def __init__(self) -> None:
        import http.cookiejar

        self.jar = http.cookiejar.CookieJar()
        self._opener = urllib.request.build_opener(
            urllib.request.ProxyHandler({}),
            urllib.request.HTTPCookieProcessor(self.jar),
            _NoRedirect(),
        )

    def request(
        self,
        url: str,
        *,
        data: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> tuple[int, Message[str, str], bytes]:
        body = urllib.parse.urlencode(data).encode() if data is not None else None
        all_headers = dict(headers or {})
        if body is not None:
            all_headers["Content-Type"] = "application/x-www-form-urlencoded"
        request = urllib.request.Request(url, data=body, headers=all_headers)
        try:
            with self._opener.open(request, timeout=HTTP_TIMEOUT_S) as response:
                return int(response.status), response.headers, response.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.headers, exc.read()

    def cookie_header(self) -> str:
        """The cookies a request to ``/`` carries: the session."""
        return "; ".join(f"{c.name}={c.value}" for c in self.jar if c.path in ("", "/"))


def sign_in_authserver(browser: Browser, base_url: str, username: str, password: str) -> None:
    """The login form, as a person fills it in (its CSRF token included)."""
    url = base_url + "/login"
    status, _, body = browser.request(url)
    match = re.search(rb'name="csrf_token" type="hidden" value="([^"]+)"', body)
    if status != 200 or match is None:
        raise BenchError(f"authserver sign-in: GET {url} returned HTTP {status} without a form")
    form = {
        "csrf_token": match.group(1).decode(),
        "username": username,
        "password": password,
        "next": "/",
    }
    status, _, body = browser.request(url, data=form)
    if status not in (302, 303):
        raise BenchError(f"authserver sign-in: POST {url} returned HTTP {status}: {body[:300]!r}")


def pkce_pair() -> tuple[str, str]:
    """RFC 7636: a verifier and its S256 challenge."""
    import hashlib

    verifier = secrets.token_urlsafe(48)
    digest = hashlib.sha256(verifier.encode()).digest()
    return verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def authorize_query(target: Target) -> str:
    """The authorization request's query, up to the value of ``code_challenge``."""
    params = {
        "response_type": "code",
        "client_id": WEB_CLIENT_ID,
        "redirect_uri": REDIRECT_URI,
        "scope": target.web_scope,
        "code_challenge_method": "S256",
    }
    return target.paths["authorize"] + "?" + urllib.parse.urlencode(params) + "&code_challenge="


def authorization_code(
    target: Target, browser: Browser, challenge: str, state: str, cookie: str | None = None
) -> str:
    """GET /authorize (following the server's own redirects, as a browser would: the
    peer's interaction) to the client's redirect URI; the code it carries."""
    url = target.base_url + authorize_query(target) + challenge + "&state=" + state
    for _ in range(8):
        if cookie is None:
            status, response_headers, body = browser.request(url)
        else:  # the cookie alone, without the jar: what wrk will send
            status, response_headers, body = Browser().request(url, headers={"Cookie": cookie})
        location = response_headers.get("Location")
        if status not in (302, 303) or not location:
            raise BenchError(
                f"{target.name} authorize: GET {url} returned HTTP {status} "
                f"(expected a redirect): {body[:300]!r}"
            )
        location = urllib.parse.urljoin(url, location)
        if location.startswith(REDIRECT_URI):
            query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(location).query))
            if query.get("state") != state or not query.get("code"):
                raise BenchError(f"{target.name} authorize: no code in {location}")
            return query["code"]
        if cookie is not None:
            raise BenchError(f"{target.name} authorize with the session: redirected to {location}")
        url = location
    raise BenchError(f"{target.name} authorize: too many redirects")


def code_flow(target: Target, browser: Browser, web_authorization: str) -> dict[str, Any]:
    """One authorization code flow with PKCE; the token response."""
    verifier, challenge = pkce_pair()
    code = authorization_code(target, browser, challenge, "1")
    url = target.base_url + target.paths["token"]
    data = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": REDIRECT_URI,
        "code_verifier": verifier,
    }
    status, body = http_request(url, data=data, authorization=web_authorization)
    document = expect_json_200(f"{target.name} authorization code check", url, status, body)
    for name in ("access_token", "id_token", "refresh_token"):
        if not isinstance(document.get(name), str):
            raise BenchError(f"{target.name} authorization code check: no {name} in {document}")
    return document


def refresh_once(target: Target, token: str, web_authorization: str) -> str:
    """One real refresh; the successor, which must differ (rotation)."""
    url = target.base_url + target.paths["refresh"]
    data = {"grant_type": "refresh_token", "refresh_token": token}
    status, body = http_request(url, data=data, authorization=web_authorization)
    document = expect_json_200(f"{target.name} refresh check", url, status, body)
    successor = document.get("refresh_token")
    if not isinstance(successor, str) or successor == token:
        raise BenchError(f"{target.name} refresh check: not rotated: {document}")
    return successor


def device_codes(target: Target, web_authorization: str, count: int) -> list[str]:
    """``count`` pending device codes (RFC 8628 §3.1), made by 8 threads."""
    from concurrent.futures import ThreadPoolExecutor

    url = target.base_url + target.paths["device_authorization"]

    def one(_: int) -> str:
        status, body = http_request(
            url, data={"client_id": WEB_CLIENT_ID, "scope": "openid"},
            authorization=web_authorization,
        )  # fmt: skip
        document = expect_json_200(f"{target.name} device authorization", url, status, body)
        code = document.get("device_code")
        if not isinstance(code, str):
            raise BenchError(f"{target.name} device authorization: {document}")
        return code

    with ThreadPoolExecutor(8) as pool:
        return list(pool.map(one, range(count)))


def check_device_poll(target: Target, code: str, web_authorization: str) -> None:
    url = target.base_url + target.paths["device_code"]
    data = {"grant_type": DEVICE_CODE_GRANT, "device_code": code}
    status, body = http_request(url, data=data, authorization=web_authorization)
    if status != 400 or b'"authorization_pending"' not in body:
        raise BenchError(
            f"{target.name} device poll check: HTTP {status}, expected 400 "
            f"authorization_pending: {body[:300]!r}"
        )


def check_get(target: Target, scenario: str, headers: Mapping[str, str]) -> None:
    url = target.base_url + target.paths[scenario]
    status, _, body = Browser().request(url, headers=headers)
    if status != 200 or not re.search(_EXPECTED_PYTHON[scenario], body):
        raise BenchError(f"{target.name} {scenario} check: GET {url}: {status}: {body[:300]!r}")


# --------------------------------------------------------------------------
# The run


def prepare_scenario(
    scenario: str,
    target: Target,
    options: Options,
    secret: str,
    workdir: Path,
    browser: Browser,
    results: Sequence[ScenarioResult],
) -> tuple[Path, Path]:
    """Check the scenario with one real request, then write its wrk scripts: the
    warm-up's and the measured run's (the same file unless what it sends is used up)."""
    authorization = basic_authorization(CLIENT_ID, secret)
    web_authorization = basic_authorization(WEB_CLIENT_ID, secret)
    token_rps = next((r.result.requests_per_sec for r in results if r.scenario == "token"), 1000.0)
    base = workdir / f"{target.name}-{scenario}"
    if scenario == "token":
        fetch_token(target, authorization, options.algorithm)
        body = urllib.parse.urlencode({"grant_type": "client_credentials", "scope": SCOPE})
        script = write_lua_script(base.with_suffix(".lua"), scenario, body, authorization)
        return script, script
    if scenario == "introspection":
        introspected = fetch_token(
            target,
            authorization,
            options.algorithm if target.introspection_token_is_jwt else None,
            target.introspection_token_params,
        )
        check_introspection(target, authorization, introspected)
        body = urllib.parse.urlencode({"token": introspected})
        script = write_lua_script(base.with_suffix(".lua"), scenario, body, authorization)
        return script, script
    if scenario == "authorization_code":
        cookie = browser.cookie_header()
        if not cookie:
            raise BenchError(f"{target.name}: no session cookie after signing in")
        # One real pair with the cookie alone, as wrk will send it.
        verifier, challenge = pkce_pair()
        code = authorization_code(target, browser, challenge, "1", cookie=cookie)
        url = target.base_url + target.paths["token"]
        data = {"grant_type": "authorization_code", "code": code,
                "redirect_uri": REDIRECT_URI, "code_verifier": verifier}  # fmt: skip
        status, answer = http_request(url, data=data, authorization=web_authorization)
        document = expect_json_200(f"{target.name} authorization code check", url, status, answer)
        if not isinstance(document.get("id_token"), str):
            raise BenchError(f"{target.name} authorization code check: no id_token: {document}")
        pkce_file = base.with_suffix(".pkce")
        pkce_file.write_text("".join(" ".join(pkce_pair()) + "\n" for _ in range(PKCE_PAIRS)))
        script = base.with_suffix(".lua")
        script.write_text(
            lua_script(
                _LUA_CODE_SCRIPT,
                authorize_prefix=lua_string(authorize_query(target)),
                token_path=lua_string(target.paths["token"]),
                redirect_uri=lua_string(urllib.parse.quote(REDIRECT_URI, safe="")),
                pkce_file=lua_string(str(pkce_file)),
                expected=lua_string(_EXPECTED_PATTERN[scenario]),
                cookie=lua_string(cookie),
                authorization=lua_string(web_authorization),
            )
        )
        return script, script
    if scenario == "refresh":
        # One chain checked, then one refresh token per connection for each run (the
        # warm-up's are rotated away), each from a code flow of the signed-in person.
        first = code_flow(target, browser, web_authorization)["refresh_token"]
        refresh_once(target, first, web_authorization)
        scripts = []
        for run in ("warmup", "measured"):
            # One per connection, and one more per wrk thread: wrk checks the script
            # by calling request() once in thread 0 before it connects, and that
            # token is taken from the queue and never sent.
            tokens = [
                code_flow(target, browser, web_authorization)["refresh_token"]
                for _ in range(options.connections + options.threads)
            ]
            tokens_file = base.with_name(f"{base.name}-{run}.tokens")
            tokens_file.write_text("".join(t + "\n" for t in tokens))
            script = base.with_name(f"{base.name}-{run}.lua")
            script.write_text(
                lua_script(
                    _LUA_REFRESH_SCRIPT,
                    authorization=lua_string(web_authorization),
                    tokens_file=lua_string(str(tokens_file)),
                    threads=options.threads,
                )
            )
            scripts.append(script)
        return scripts[0], scripts[1]
    if scenario == "device_code":
        count = min(DEVICE_CODES_MAX, max(DEVICE_CODES_MIN, int(token_rps * 3)))
        print(f"  {target.name} {scenario}: {count} device codes ...", flush=True)
        check_code, *codes = device_codes(target, web_authorization, count + 1)
        check_device_poll(target, check_code, web_authorization)
        codes_file = base.with_suffix(".codes")
        codes_file.write_text("".join(urllib.parse.quote(c, safe="") + "\n" for c in codes))
        script = base.with_suffix(".lua")
        script.write_text(
            lua_script(
                _LUA_DEVICE_SCRIPT,
                authorization=lua_string(web_authorization),
                codes_file=lua_string(str(codes_file)),
                threads=options.threads,
                grant_type=lua_string(urllib.parse.quote(DEVICE_CODE_GRANT, safe="")),
            )
        )
        return script, script
    if scenario in ("jwks", "audit_page"):
        headers = {"Accept": "application/json"}
        if scenario == "audit_page":
            headers["Authorization"] = "Bearer " + admin_token(target, secret)
        check_get(target, scenario, headers)
        script = base.with_suffix(".lua")
        script.write_text(
            lua_script(
                _LUA_GET_SCRIPT,
                headers="\n".join(
                    f"wrk.headers[{lua_string(k)}] = {lua_string(v)}" for k, v in headers.items()
                ),
                expected=lua_string(_EXPECTED_PATTERN[scenario]),
            )
        )
        return script, script
    if scenario == KEY_JWT_SCENARIO:
        # Two files: the warm-up's assertions are used up, the measured run's are fresh.
        return write_assertions_scripts(workdir, target, options, token_rps)
    if scenario == "token_exchange":
        assert target.ci_issuer is not None
        check_token_exchange(target, options.algorithm)
        warmup, measured = (
            write_exchange_script(
                workdir / f"{target.name}-{scenario}-{run}.lua",
                target.ci_issuer,
                target.base_url,
                seconds,
                options.threads,
            )
            for run, seconds in (("warmup", options.warmup), ("run", options.duration))
        )
        return warmup, measured
    raise BenchError(f"unknown scenario {scenario}")


def admin_token(target: Target, secret: str) -> str:
    """A client-credentials token of the admin client for the admin API (RFC 8707)."""
    url = target.base_url + target.paths["token"]
    data = {"grant_type": "client_credentials", "resource": target.base_url + "/api/v1"}
    status, body = http_request(
        url, data=data, authorization=basic_authorization(ADMIN_CLIENT_ID, secret)
    )
    document = expect_json_200(f"{target.name} admin token", url, status, body)
    token = document.get("access_token")
    if not isinstance(token, str):
        raise BenchError(f"{target.name} admin token: {document}")
    return token


def benchmark(
    target: Target,
    options: Options,
    secret: str,
    workdir: Path,
    scenarios: Sequence[str],
    earlier: Sequence[ScenarioResult] = (),
    cpu_seconds: Callable[[], float | None] = lambda: None,
) -> list[ScenarioResult]:
    browser = Browser()
    if {"authorization_code", "refresh"} & set(scenarios):
        # Sign in once: authserver's login form, or (the peer) the first code flow's
        # interaction; the session cookie is then in the jar.
        if target.sign_in is not None:
            target.sign_in(browser)
        code_flow(target, browser, basic_authorization(WEB_CLIENT_ID, secret))
    results: list[ScenarioResult] = []
    for scenario in scenarios:
        if scenario not in target.paths:
            continue  # the peer runs the scenarios both servers share
        url = target.base_url + target.paths[scenario]
        warmup_script, script = prepare_scenario(
            scenario, target, options, secret, workdir, browser, [*earlier, *results]
        )
        print(f"  {target.name} {scenario}: warm-up {options.warmup} s ...", flush=True)
        run_wrk(url, warmup_script, options, options.warmup)
        print(f"  {target.name} {scenario}: {options.duration} s ...", flush=True)
        before = cpu_seconds()
        result = run_wrk(url, script, options, options.duration)
        after = cpu_seconds()
        cpu_us = (
            (after - before) * 1e6 / result.requests
            if before is not None and after is not None and result.requests
            else None
        )
        results.append(ScenarioResult(scenario, target.name, url, result, target.storage, cpu_us))
    return results


def run_one(
    label: str,
    options: Options,
    secret: str,
    server_dir: Path,
    scenarios: Sequence[str],
    store: AuthserverStore | None = None,
    earlier: Sequence[ScenarioResult] = (),
) -> list[ScenarioResult]:
    """Start one server (``peer``, or authserver under ``label`` on ``store``), run
    ``scenarios`` against it, stop it."""
    server_dir.mkdir()
    print(f"{label}: starting ({server_dir.name}) ...", flush=True)
    if label == "peer":
        server, target = start_peer(options, secret, server_dir)
    else:
        server, target = start_authserver(options, secret, server_dir, store, label, scenarios)
    try:
        with running(server):
            discovery = server.wait_ready(target.base_url + DISCOVERY_PATH)
            advertised = discovery.get("token_endpoint")
            if advertised != target.base_url + target.paths["token"]:
                print(f"  warning: {label} advertises token_endpoint {advertised!r}", flush=True)
            return benchmark(
                target, options, secret, server_dir, scenarios, earlier, server.cpu_seconds
            )
    finally:
        if target.ci_issuer is not None:
            target.ci_issuer.close()


@contextlib.contextmanager
def throwaway_database(server_url: str) -> Iterator[str]:
    """A new, empty database ``bench_<random>`` on the server of ``server_url``, dropped
    afterwards; yields its URL."""
    import psycopg  # authserver's PostgreSQL driver: only this side needs it

    parts = urllib.parse.urlsplit(server_url)
    plain = parts._replace(scheme="postgresql").geturl()
    name = f"bench_{secrets.token_hex(6)}"
    try:
        admin = psycopg.connect(plain, autocommit=True)
    except psycopg.Error as exc:
        raise BenchError(f"cannot connect to PostgreSQL at {server_url}: {exc}") from exc
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')
        try:
            yield parts._replace(path="/" + name).geturl()
        finally:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def drop_redis_prefix(url: str, prefix: str) -> None:
    import redis  # authserver's dependency

    client = redis.Redis.from_url(url)
    try:
        keys = list(client.scan_iter(match=prefix + "*", count=1000))
        for start in range(0, len(keys), 500):
            client.delete(*keys[start : start + 500])
    finally:
        client.close()


def run_server(name: str, options: Options, secret: str, workdir: Path) -> list[ScenarioResult]:
    if name == "peer":
        return run_one("peer", options, secret, workdir / "peer", options.scenarios)
    results = run_one(
        "authserver", options, secret, workdir / "authserver",
        [s for s in options.scenarios if s != "refresh"],
    )  # fmt: skip
    if "refresh" in options.scenarios:
        # The durable path: PostgreSQL (a database of its own) and Redis (a prefix).
        prefix = f"bench-{secrets.token_hex(4)}:"
        with throwaway_database(options.postgres_url) as database_url:
            store = AuthserverStore(database_url, options.redis_url, prefix)
            try:
                results += run_one(
                    "authserver", options, secret, workdir / "authserver-durable",
                    ["refresh"], store, results,
                )  # fmt: skip
            finally:
                drop_redis_prefix(options.redis_url, prefix)
    return results


def seeded_secret_key_file(database_url: str) -> Path:
    """The secret key of a seeded database's runs, kept in bench/.seeded/ (gitignored):
    the signing keys the first run stores are encrypted under it."""
    import hashlib

    directory = BENCH_DIR / ".seeded"
    directory.mkdir(exist_ok=True)
    return directory / (hashlib.sha256(database_url.encode()).hexdigest()[:16] + ".key")


def run_seeded(options: Options, secret: str, workdir: Path) -> list[ScenarioResult]:
    """The goal-5 comparison: authserver on an empty database, then on the seeded one,
    both PostgreSQL without Redis (so the jti denylist is the SQL store's table)."""
    assert options.seeded_url is not None
    results: list[ScenarioResult] = []
    with throwaway_database(options.seeded_url) as empty_url:
        results += run_one(
            "empty", options, secret, workdir / "empty", options.scenarios,
            AuthserverStore(empty_url),
        )  # fmt: skip
    store = AuthserverStore(
        options.seeded_url, secret_key_file=seeded_secret_key_file(options.seeded_url)
    )
    results += run_one("seeded", options, secret, workdir / "seeded", options.scenarios, store)
    return results


def ratio(results: Sequence[ScenarioResult], scenario: str, sides: tuple[str, str]) -> float | None:
    by_server = {r.server: r.result.requests_per_sec for r in results if r.scenario == scenario}
    ours, theirs = by_server.get(sides[0]), by_server.get(sides[1])
    if ours is None or theirs is None or theirs == 0:
        return None
    return ours / theirs


def sides_of(meta: Mapping[str, Any]) -> tuple[str, str]:
    return ("seeded", "empty") if meta.get("seeded") else ("authserver", "peer")


DASH: Final = "\u2014"


def print_report(results: Sequence[ScenarioResult], meta: Mapping[str, Any]) -> None:
    sides = sides_of(meta)
    print()
    print(
        f"{meta['duration_s']} s per run, {meta['connections']} connections, "
        f"{meta['threads']} wrk threads, {meta['algorithm']}, "
        f"authserver workers {meta['authserver_workers']} "
        f"({meta.get('authserver_stack', 'gthread')}), "
        f"oidc-provider {meta.get('peer_version') or '-'}, {meta['cpu_count']} CPUs"
    )
    row_format = "{:<18} | {:>8} {:>7} {:>7} | {:>8} {:>7} {:>7} | {:>6} | {:>6}"
    header = "{:<18} | {:^24} | {:^24} | {:>6} | {:>6}".format("", *sides, "ratio", "errors")
    print(header)
    print(row_format.format("scenario", "req/s", "p50 ms", "p99 ms",
                            "req/s", "p50 ms", "p99 ms", "", ""))  # fmt: skip
    print("-" * len(header))
    seen = {r.scenario for r in results}
    for scenario in (s for s in dict.fromkeys((*SCENARIOS, *SEEDED_SCENARIOS)) if s in seen):
        cells: list[str] = []
        errors = 0
        for side in sides:
            row = next((r for r in results if r.scenario == scenario and r.server == side), None)
            if row is None:
                cells += [DASH, DASH, DASH]
                continue
            res = row.result
            errors += res.errors
            cells += [
                f"{res.requests_per_sec:.1f}",
                f"{res.latency_p50_ms:.2f}",
                f"{res.latency_p99_ms:.2f}",
            ]
        value = ratio(results, scenario, sides)
        print(row_format.format(scenario, *cells, f"{value:.2f}" if value else DASH, errors))
    print(f"ratio: {sides[0]} req/s / {sides[1]} req/s; errors: both sides")
    print_cpu(results, meta, sides, seen)
    if "authorization_code" in seen:
        print(
            "authorization_code: 2 requests a flow (GET authorize, POST token): flows/s = req/s / 2"
        )
    for server in dict.fromkeys(r.server for r in results):
        kinds = [r.storage for r in results if r.server == server and r.storage]
        if kinds:
            usual = max(set(kinds), key=kinds.count)
            other = [f"{r.scenario} on {r.storage}" for r in results
                     if r.server == server and r.storage and r.storage != usual]  # fmt: skip
            print(f"{server}: {usual}" + (f" ({'; '.join(other)})" if other else ""))
    for row in results:
        res = row.result
        if res.expected_non_2xx:
            print(
                f"{row.server} {row.scenario}: {res.expected_non_2xx} polls answered "
                f"authorization_pending or slow_down, {res.slow_down} of them slow_down"
            )
    for row in (r for r in results if r.result.errors):
        res = row.result
        print(
            f"note: {row.server} {row.scenario}: {res.non_2xx - res.expected_non_2xx} "
            f"unexpected non-2xx, {res.bad_bodies} other answers not as expected, "
            f"socket errors {res.socket_errors}"
        )


def print_cpu(
    results: Sequence[ScenarioResult],
    meta: Mapping[str, Any],
    sides: tuple[str, str],
    seen: set[str],
) -> None:
    """Server CPU µs per request, each side: user + system time of all the server's
    processes over the measured run ÷ the requests answered (wrk's own share excluded)."""
    if all(r.cpu_us_per_request is None for r in results):
        return
    print()
    sign = meta.get("rsa_sign_us")
    print(
        "server CPU per request, µs (user + system of all its processes ÷ requests)"
        + (f"; one RSA-2048 signature costs {sign:.0f} µs here" if sign else "")
    )
    print("{:<18} | {:>10} | {:>10}".format("scenario", *sides))
    for scenario in (s for s in dict.fromkeys((*SCENARIOS, *SEEDED_SCENARIOS)) if s in seen):
        cells = []
        for side in sides:
            row = next((r for r in results if r.scenario == scenario and r.server == side), None)
            cpu = row.cpu_us_per_request if row is not None else None
            cells.append(f"{cpu:.0f}" if cpu is not None else DASH)
        print("{:<18} | {:>10} | {:>10}".format(scenario, *cells))


def _cells(
    results: Sequence[ScenarioResult], scenario: str, side: str
) -> dict[str, float | None] | None:
    row = next((r for r in results if r.scenario == scenario and r.server == side), None)
    if row is None:
        return None
    return {
        "requests_per_sec": row.result.requests_per_sec,
        "latency_p50_ms": row.result.latency_p50_ms,
        "latency_p99_ms": row.result.latency_p99_ms,
        "cpu_us_per_request": row.cpu_us_per_request,
    }


def write_results(path: Path, results: Sequence[ScenarioResult], meta: Mapping[str, Any]) -> None:
    sides = sides_of(meta)
    scenarios = dict.fromkeys(r.scenario for r in results)
    document = {
        "meta": dict(meta),
        "results": [
            {
                "scenario": r.scenario,
                "server": r.server,
                "url": r.url,
                "storage": r.storage,
                **asdict(r.result),
                "errors": r.result.errors,
                "cpu_us_per_request": r.cpu_us_per_request,
            }
            for r in results
        ],
        f"ratio_{sides[0]}_over_{sides[1]}": {s: ratio(results, s, sides) for s in scenarios},
        # The printed table: one row a scenario, null where a side has no figure.
        "table": [
            {
                "scenario": scenario,
                **{side: _cells(results, scenario, side) for side in sides},
                "ratio": ratio(results, scenario, sides),
                "errors": sum(r.result.errors for r in results if r.scenario == scenario),
            }
            for scenario in scenarios
        ],
    }
    path.write_text(json.dumps(document, indent=2) + "\n")


def parse_args(argv: Sequence[str] | None) -> Options:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--duration", type=int, default=10, help="seconds per measured run")
    parser.add_argument("--warmup", type=int, default=2, help="seconds of warm-up per run")
    parser.add_argument("--connections", type=int, default=8, help="wrk connections")
    parser.add_argument("--algorithm", choices=ALGORITHMS, default="RS256")
    parser.add_argument("--workers", type=int, default=2, help="authserver (gunicorn) workers")
    parser.add_argument("--only", choices=SERVERS, help="benchmark one server only")
    parser.add_argument(
        "--reinstall-peer", action="store_true", help="npm-install oidc-provider afresh"
    )
    parser.add_argument("--output", type=Path, default=RESULTS_FILE, help="JSON results file")
    parser.add_argument(
        "--no-observability",
        action="store_true",
        help="authserver without its access log and /metrics (to measure what they cost)",
    )
    parser.add_argument(
        "--scenarios",
        help="comma-separated scenarios to run (default: all; with --seeded: "
        + ",".join(SEEDED_SCENARIOS) + ")",
    )  # fmt: skip
    parser.add_argument(
        "--postgres-url",
        default=DEFAULT_POSTGRES_URL,
        help="a PostgreSQL database to connect to; the refresh scenario (authserver) and "
        "--seeded make throw-away databases bench_<random> on its server",
    )
    parser.add_argument(
        "--redis-url", default=DEFAULT_REDIS_URL, help="Redis of the refresh scenario"
    )
    parser.add_argument(
        "--keep", action="store_true", help="keep the work dir (configs, scripts, server logs)"
    )
    parser.add_argument(
        "--stack",
        choices=STACKS,
        default="gthread",
        help="what serves authserver: gthread (authserver serve, the default), or to "
        "compare, gunicorn's sync worker or granian (pip install granian)",
    )
    parser.add_argument(
        "--seeded",
        metavar="URL",
        help="only authserver, on this seeded PostgreSQL database (bench/seed.py) and on "
        "an empty one made beside it: " + ", ".join(SEEDED_SCENARIOS),
    )
    args = parser.parse_args(argv)
    allowed = SEEDED_SCENARIOS if args.seeded else SCENARIOS
    scenarios = tuple(args.scenarios.split(",")) if args.scenarios else allowed
    unknown = [s for s in scenarios if s not in allowed]
    if unknown:
        parser.error(f"unknown scenario(s) {', '.join(unknown)}; choose from {', '.join(allowed)}")
    if "token_key_jwt" in scenarios and "token" not in scenarios:
        scenarios = ("token", *scenarios)  # its assertions are counted from token's rate
    if args.seeded and args.only == "peer":
        parser.error("--seeded runs authserver only")
    for name in ("duration", "warmup", "connections", "workers"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be at least 1")
    return Options(
        duration=args.duration,
        warmup=args.warmup,
        connections=args.connections,
        threads=min(WRK_MAX_THREADS, args.connections),
        algorithm=args.algorithm,
        workers=args.workers,
        servers=("authserver",) if args.seeded else (args.only,) if args.only else SERVERS,
        reinstall_peer=args.reinstall_peer,
        output=args.output,
        observability=not args.no_observability,
        postgres_url=args.postgres_url,
        redis_url=args.redis_url,
        seeded_url=args.seeded,
        keep=args.keep,
        stack=args.stack,
        scenarios=tuple(
            s for s in dict.fromkeys((*SCENARIOS, *SEEDED_SCENARIOS)) if s in scenarios
        ),
    )


def exit_on_sigterm(signum: int, _frame: object) -> None:
    # Unwind through the `finally` blocks so the servers are stopped.
    raise SystemExit(128 + signum)


def main(argv: Sequence[str] | None = None) -> int:
    options = parse_args(argv)
    signal.signal(signal.SIGTERM, exit_on_sigterm)
    # One secret for both servers; the peer keeps it in plaintext, as it does.
    secret = secrets.token_urlsafe(32)
    meta: dict[str, Any] = {
        "timestamp": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "duration_s": options.duration,
        "warmup_s": options.warmup,
        "connections": options.connections,
        "threads": options.threads,
        "algorithm": options.algorithm,
        "authserver_workers": options.workers,
        "authserver_observability": options.observability,
        "authserver_stack": options.stack,
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "wrk": command_version(["wrk", "--version"]).split(" Copyright", 1)[0],
        "scenarios": list(options.scenarios),
        "seeded": options.seeded_url is not None,
        "rsa_sign_us": round(rsa_sign_us(), 1),
    }
    results: list[ScenarioResult] = []
    workdir: Path | None = None
    try:
        require_executable("wrk")
        if "peer" in options.servers:
            meta["peer_version"] = ensure_peer_installed(options.reinstall_peer)
            meta["node"] = command_version(["node", "--version"])
        workdir = Path(tempfile.mkdtemp(prefix="authserver-bench-"))
        if options.seeded_url is not None:
            results.extend(run_seeded(options, secret, workdir))
        else:
            for name in options.servers:
                results.extend(run_server(name, options, secret, workdir))
    except BenchError as exc:
        print(f"bench: error: {exc}", file=sys.stderr)
        if workdir is not None:
            print(f"bench: configs, scripts and server logs kept in {workdir}", file=sys.stderr)
        return 1
    if options.keep:
        print(f"bench: configs, scripts and server logs kept in {workdir}")
    else:
        shutil.rmtree(workdir, ignore_errors=True)
    print_report(results, meta)
    write_results(options.output, results, meta)
    print(f"\nresults written to {options.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
