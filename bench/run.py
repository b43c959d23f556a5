#!/usr/bin/env python3
"""Load-test authserver against node-oidc-provider, side by side.

For each server this starts the server on 127.0.0.1, checks with one real
request that each endpoint answers 200 with what it should, warms up, then
drives it with wrk and reports requests/sec, latency (p50, p99) and errors for
two scenarios:

* ``token``: client-credentials token requests (``client_secret_basic``);
* ``introspection``: RFC 7662 introspection of a token fetched beforehand;
* ``token_exchange`` (authserver only: the peer has no workload identity federation):
  RFC 8693 token exchange of a CI job's OIDC token, a fresh one per request (each is
  single use), signed by a fake CI issuer this script serves.
* ``token_key_jwt`` (authserver only): client-credentials token requests of a
  service account that authenticates with ``private_key_jwt`` (its key file written by
  ``service-accounts create --key-file``), each with an assertion of its own.

The peer is panva's ``oidc-provider`` (npm), installed on first use into
``bench/.peer/`` and started as one plain ``node`` process. The servers run one
after the other, never at the same time, so each has the machine to itself
(apart from wrk). See ``bench/README.md``.

Standard library only, plus ``bcrypt`` for the authserver's client secret hash.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import datetime
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
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
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
SCENARIOS: Final = ("token", "introspection", "token_exchange", "token_key_jwt")
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


@dataclass(frozen=True)
class WrkResult:
    requests_per_sec: float
    latency_p50_ms: float
    latency_p99_ms: float
    requests: int
    non_2xx: int
    socket_errors: dict[str, int]
    bad_bodies: int

    @property
    def errors(self) -> int:
        return self.non_2xx + sum(self.socket_errors.values()) + self.bad_bodies


@dataclass(frozen=True)
class ScenarioResult:
    scenario: str
    server: str
    url: str
    result: WrkResult


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


def authserver_config(
    port: int,
    workdir: Path,
    algorithm: str,
    secret_hash: str,
    observability: bool = True,
    ci_issuer: str | None = None,
) -> str:
    # JSON strings are valid YAML double-quoted scalars.
    q = json.dumps
    quiet = "" if observability else 'access_log: false\nmetrics:\n  access: "off"\n'
    return (
        quiet
        + (
            f"issuer: {q(f'http://{HOST}:{port}')}\n"
            f"database_url: {q(f'sqlite:///{workdir}/authserver.db')}\n"
            f"secret_key_file: {q(str(workdir / 'secret_key'))}\n"
            "signing:\n"
            f"  algorithm: {algorithm}\n"
            "tokens:\n"
            "  access_token_ttl: 1h\n"
            f"  audiences: [{q(AUDIENCE)}]\n"
            "clients:\n"
            f"  - client_id: {q(CLIENT_ID)}\n"
            f"    client_secret_hash: {q(secret_hash)}\n"
            "    grant_types: [client_credentials]\n"
            f"    scopes: [{SCOPE}]\n"
            "    roles: [user]\n"
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


def start_authserver(options: Options, secret: str, workdir: Path) -> tuple[ServerProcess, Target]:
    import bcrypt  # only this side needs it, so `--only peer` runs on any python

    executable = authserver_executable()
    port = free_port()
    secret_hash = bcrypt.hashpw(secret.encode(), bcrypt.gensalt(rounds=BCRYPT_COST)).decode()
    config_path = workdir / "authserver.yaml"
    ci_issuer = FakeCiIssuer()
    config_path.write_text(
        authserver_config(
            port, workdir, options.algorithm, secret_hash, options.observability, ci_issuer.url
        )
    )
    # AUTHSERVER_<SECTION>__<KEY> variables override the config file: drop any
    # from the caller's environment so the run is what the file says.
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUTHSERVER_")}
    argv = [
        str(executable), "serve",
        "--config", str(config_path),
        "--bind", f"{HOST}:{port}",
        "--workers", str(options.workers),
    ]  # fmt: skip
    server = ServerProcess(
        "authserver", argv, cwd=workdir, env=env, log_path=workdir / "authserver.log"
    )
    target = Target(
        name="authserver",
        base_url=f"http://{HOST}:{port}",
        paths={
            "token": "/oauth2/token",
            "introspection": "/oauth2/introspect",
            "token_exchange": "/oauth2/token",
            KEY_JWT_SCENARIO: "/oauth2/token",
        },
        ci_issuer=ci_issuer,
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
    }
    # Its start-up notices (in-memory adapter, runtime version) go to the log.
    server = ServerProcess(
        "peer", [node, str(script), str(port)], cwd=PEER_DIR, env=env,
        log_path=workdir / "peer.log",
    )  # fmt: skip
    target = Target(
        name="peer",
        base_url=f"http://{HOST}:{port}",
        paths={"token": "/token", "introspection": "/token/introspection"},
        introspection_token_params={"resource": PEER_OPAQUE_RESOURCE},
        introspection_token_is_jwt=False,
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
    )


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
# The run


def benchmark(target: Target, options: Options, secret: str, workdir: Path) -> list[ScenarioResult]:
    authorization = basic_authorization(CLIENT_ID, secret)
    # Correctness first: one real request per endpoint, failing loudly.
    fetch_token(target, authorization, options.algorithm)
    introspected = fetch_token(
        target,
        authorization,
        options.algorithm if target.introspection_token_is_jwt else None,
        target.introspection_token_params,
    )
    check_introspection(target, authorization, introspected)
    if "token_exchange" in target.paths:
        check_token_exchange(target, options.algorithm)

    bodies = {
        "token": {"grant_type": "client_credentials", "scope": SCOPE},
        "introspection": {"token": introspected},
    }
    results: list[ScenarioResult] = []
    for scenario in SCENARIOS:
        if scenario not in target.paths:
            continue  # the peer runs the scenarios both servers share
        url = target.base_url + target.paths[scenario]
        if scenario == KEY_JWT_SCENARIO:
            token_rps = next(r.result.requests_per_sec for r in results if r.scenario == "token")
            # Two files: the warm-up's assertions are used up, the measured run's are fresh.
            warmup_script, script = write_assertions_scripts(workdir, target, options, token_rps)
        elif scenario == "token_exchange":
            assert target.ci_issuer is not None
            warmup_script, script = (
                write_exchange_script(
                    workdir / f"{target.name}-{scenario}-{run}.lua",
                    target.ci_issuer,
                    target.base_url,
                    seconds,
                    options.threads,
                )
                for run, seconds in (("warmup", options.warmup), ("run", options.duration))
            )
        else:
            body = urllib.parse.urlencode(bodies[scenario])
            script = warmup_script = write_lua_script(
                workdir / f"{target.name}-{scenario}.lua", scenario, body, authorization
            )
        print(f"  {target.name} {scenario}: warm-up {options.warmup} s ...", flush=True)
        run_wrk(url, warmup_script, options, options.warmup)
        print(f"  {target.name} {scenario}: {options.duration} s ...", flush=True)
        result = run_wrk(url, script, options, options.duration)
        results.append(ScenarioResult(scenario, target.name, url, result))
    return results


def run_server(name: str, options: Options, secret: str, workdir: Path) -> list[ScenarioResult]:
    starters = {"authserver": start_authserver, "peer": start_peer}
    server_dir = workdir / name
    server_dir.mkdir()
    print(f"{name}: starting ...", flush=True)
    server, target = starters[name](options, secret, server_dir)
    try:
        with running(server):
            discovery = server.wait_ready(target.base_url + DISCOVERY_PATH)
            advertised = discovery.get("token_endpoint")
            if advertised != target.base_url + target.paths["token"]:
                print(f"  warning: {name} advertises token_endpoint {advertised!r}", flush=True)
            return benchmark(target, options, secret, server_dir)
    finally:
        if target.ci_issuer is not None:
            target.ci_issuer.close()


def ratio(results: Sequence[ScenarioResult], scenario: str) -> float | None:
    by_server = {r.server: r.result.requests_per_sec for r in results if r.scenario == scenario}
    ours, peer = by_server.get("authserver"), by_server.get("peer")
    if ours is None or peer is None or peer == 0:
        return None
    return ours / peer


def print_report(results: Sequence[ScenarioResult], meta: Mapping[str, Any]) -> None:
    print()
    print(
        f"{meta['duration_s']} s per run, {meta['connections']} connections, "
        f"{meta['threads']} wrk threads, {meta['algorithm']}, "
        f"authserver workers {meta['authserver_workers']}, "
        f"oidc-provider {meta.get('peer_version') or '-'}, {meta['cpu_count']} CPUs"
    )
    row_format = "{:<14} | {:<10} | {:>9} | {:>8} | {:>8} | {:>6}"
    header = row_format.format("scenario", "server", "req/s", "p50 ms", "p99 ms", "errors")
    print(header)
    print("-" * len(header))
    for scenario in SCENARIOS:
        for row in (r for r in results if r.scenario == scenario):
            res = row.result
            print(
                row_format.format(
                    scenario,
                    row.server,
                    f"{res.requests_per_sec:.1f}",
                    f"{res.latency_p50_ms:.2f}",
                    f"{res.latency_p99_ms:.2f}",
                    res.errors,
                )
            )
        value = ratio(results, scenario)
        if value is not None:
            print(f"{scenario:<13} | authserver/peer req/s ratio: {value:.3f}")
    errors = [r for r in results if r.result.errors]
    for row in errors:
        res = row.result
        print(
            f"note: {row.server} {row.scenario}: {res.non_2xx} non-2xx, "
            f"{res.bad_bodies} 2xx without the expected field, socket errors {res.socket_errors}"
        )


def write_results(path: Path, results: Sequence[ScenarioResult], meta: Mapping[str, Any]) -> None:
    document = {
        "meta": dict(meta),
        "results": [
            {
                "scenario": r.scenario,
                "server": r.server,
                "url": r.url,
                **asdict(r.result),
                "errors": r.result.errors,
            }
            for r in results
        ],
        "ratio_authserver_over_peer": {s: ratio(results, s) for s in SCENARIOS},
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
    args = parser.parse_args(argv)
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
        servers=(args.only,) if args.only else SERVERS,
        reinstall_peer=args.reinstall_peer,
        output=args.output,
        observability=not args.no_observability,
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
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "wrk": command_version(["wrk", "--version"]).split(" Copyright", 1)[0],
    }
    results: list[ScenarioResult] = []
    workdir: Path | None = None
    try:
        require_executable("wrk")
        if "peer" in options.servers:
            meta["peer_version"] = ensure_peer_installed(options.reinstall_peer)
            meta["node"] = command_version(["node", "--version"])
        workdir = Path(tempfile.mkdtemp(prefix="authserver-bench-"))
        for name in options.servers:
            results.extend(run_server(name, options, secret, workdir))
    except BenchError as exc:
        print(f"bench: error: {exc}", file=sys.stderr)
        if workdir is not None:
            print(f"bench: configs, scripts and server logs kept in {workdir}", file=sys.stderr)
        return 1
    shutil.rmtree(workdir, ignore_errors=True)
    print_report(results, meta)
    write_results(options.output, results, meta)
    print(f"\nresults written to {options.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
