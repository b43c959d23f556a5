"""Fixtures: every backend, a fresh app per test, and live ``authserver serve`` processes.

Backends: SQLite always; PostgreSQL and Redis from ``AUTHSERVER_TEST_DATABASE_URL`` and
``AUTHSERVER_TEST_REDIS_URL`` (``make test`` points them at the local services). When
one is not configured the tests that need it are skipped, except under CI (``CI`` set),
where they fail: CI must never pass by skipping a backend.
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import bcrypt
import pytest
import requests
import sqlalchemy as sa
import yaml
from flask import Flask
from playwright.sync_api import Browser, sync_playwright

from authserver.app import create_app
from authserver.clock import Clock, ManualClock
from authserver.settings import RateLimitSettings, Settings
from authserver.storage.ephemeral import EphemeralStore, RedisEphemeralStore
from authserver.storage.migrations import upgrade_database
from authserver.storage.models import db
from authserver.web.services import Services

PG_URL = os.environ.get("AUTHSERVER_TEST_DATABASE_URL")
REDIS_URL = os.environ.get("AUTHSERVER_TEST_REDIS_URL")
IN_CI = bool(os.environ.get("CI"))

#: Secrets of the standard test clients (their hashes go into the config).
SECRETS = {
    "ci": "ci-secret-0123456789",
    "ci-b64": "b64-secret-0123456789",
    "ci-argon": "argon-secret-0123456789",
    "reader": "reader-secret-0123456789",
    "rs": "resource-server-secret-0123",
    "webapp": "webapp-secret-0123456789",
}
AUDIENCES = ["https://api.example.com", "https://flyte.example.com"]


def _require(url: str | None, what: str) -> str:
    if url:
        return url
    message = f"{what} is not configured (set AUTHSERVER_TEST_{what.upper()}_URL; `make test` does)"
    if IN_CI:
        pytest.fail(message)
    pytest.skip(message)


# -- PostgreSQL: one database for the session, emptied between tests ------------------


@pytest.fixture(scope="session")
def pg_database_url() -> Iterator[str]:
    base = _require(PG_URL, "database")
    name = f"authserver_test_{secrets.token_hex(4)}"
    admin = sa.create_engine(base, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    except sa.exc.OperationalError as exc:  # unreachable: a failure, never a skip
        pytest.fail(f"PostgreSQL at {base} is not reachable: {exc.orig}")
    url = sa.engine.make_url(base).set(database=name).render_as_string(hide_password=False)
    yield url
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(scope="session")
def redis_url() -> str:
    url = _require(REDIS_URL, "redis")
    import redis

    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=3)
        client.ping()
        client.close()
    except redis.RedisError as exc:
        pytest.fail(f"Redis at {url} is not reachable: {exc}")
    return url


# -- settings and apps ------------------------------------------------------------


def bcrypt_hash(secret: str, rounds: int = 4) -> str:
    """Low cost keeps the suite fast; the scheme and code paths are the real ones."""
    return bcrypt.hashpw(secret.encode(), bcrypt.gensalt(rounds=rounds)).decode()


def standard_config(issuer: str, database_url: str, secret_key_file: Path) -> dict[str, Any]:
    import base64

    from argon2 import PasswordHasher

    return {
        "issuer": issuer,
        "database_url": database_url,
        "secret_key_file": str(secret_key_file),
        "signing": {"algorithm": "RS256", "rotate_every": "30d", "publish_ahead": "10m"},
        "tokens": {"access_token_ttl": "1h", "audiences": AUDIENCES},
        "clients": [
            {
                "client_id": "ci",
                "client_secret_hash": bcrypt_hash(SECRETS["ci"]),
                "grant_types": ["client_credentials"],
                "scopes": ["all", "read", "write"],
                "roles": ["user"],
            },
            {
                "client_id": "ci-b64",
                "client_secret_hash": base64.b64encode(
                    bcrypt_hash(SECRETS["ci-b64"]).encode()
                ).decode(),
                "grant_types": ["client_credentials"],
                "scopes": ["all"],
                "roles": ["admin"],
            },
            {
                "client_id": "ci-argon",
                "client_secret_hash": PasswordHasher(time_cost=1, memory_cost=8192).hash(
                    SECRETS["ci-argon"]
                ),
                "grant_types": ["client_credentials"],
                "scopes": ["all"],
            },
            {
                # confidential, but not allowed client credentials
                "client_id": "reader",
                "client_secret_hash": bcrypt_hash(SECRETS["reader"]),
                "grant_types": ["authorization_code"],
                "redirect_uris": ["https://reader.example.com/cb"],
                "scopes": ["read"],
            },
            {
                # a resource server: may introspect every client's tokens
                "client_id": "rs",
                "client_secret_hash": bcrypt_hash(SECRETS["rs"]),
                "grant_types": ["client_credentials"],
                "scopes": ["read"],
                "introspect": True,
            },
            {
                "client_id": "cli",
                "public": True,
                "grant_types": [
                    "authorization_code",
                    "refresh_token",
                    "urn:ietf:params:oauth:grant-type:device_code",
                ],
                "redirect_uris": [
                    "http://127.0.0.1/callback",
                    "http://localhost:53593/callback",
                ],
                "scopes": ["openid", "profile", "email", "offline_access", "all"],
            },
            {
                # a confidential web app that asks for consent
                "client_id": "webapp",
                "client_secret_hash": bcrypt_hash(SECRETS["webapp"]),
                "grant_types": ["authorization_code", "refresh_token"],
                "redirect_uris": ["https://app.example.com/cb"],
                "post_logout_redirect_uris": ["https://app.example.com/bye"],
                "scopes": ["openid", "profile", "email", "groups", "offline_access", "read"],
                "consent": True,
            },
        ],
        "rbac": {
            "default_role": "user",
            "roles": {"admin": ["*"], "user": ["read", "write"], "viewer": ["read"]},
            "group_roles": {"platform-admins": "admin", "viewers": "viewer"},
        },
    }


@dataclass
class Backend:
    """Where an app keeps its state: the SQL database and the ephemeral store."""

    name: str
    database_url: str
    redis_url: str | None = None
    redis_prefix: str = field(default_factory=lambda: f"authserver-test:{secrets.token_hex(4)}:")

    def ephemeral(self) -> EphemeralStore | None:
        """A Redis store under a prefix of this test's own; ``None``: the app's SQL store."""
        if self.redis_url:
            return RedisEphemeralStore.from_url(self.redis_url, prefix=self.redis_prefix)
        return None

    def wait(self, clock: ManualClock, seconds: float) -> None:
        """Let ``seconds`` pass for the ephemeral store of an app built on ``clock``:
        the SQL store's TTLs run on that clock; Redis's on Redis's own, which only
        sleeping moves (the app's clock moves along, so both agree)."""
        if self.redis_url:
            time.sleep(seconds)
        clock.advance(seconds)


BACKENDS = ["sqlite", "postgresql+redis"]


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    """Every app-level test runs on SQLite (SQL ephemeral store) and on PostgreSQL + Redis."""
    if request.param == "sqlite":
        yield Backend("sqlite", f"sqlite:///{tmp_path / 'authserver.db'}")
        return
    url = request.getfixturevalue("pg_database_url")
    redis_url = request.getfixturevalue("redis_url")
    _empty_pg(url)
    yield Backend("postgresql+redis", url, redis_url)


def _empty_pg(url: str) -> None:
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        tables = [
            row[0]
            for row in conn.execute(
                sa.text("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
            )
            if row[0] != "alembic_version"
        ]
        if tables:
            conn.execute(sa.text(f"TRUNCATE {', '.join(tables)}"))
    engine.dispose()


AppFactory = Callable[..., Flask]


@pytest.fixture
def make_app(backend: Backend, tmp_path: Path) -> Iterator[AppFactory]:
    """Build a migrated app on ``backend``; keyword arguments override config keys, and
    ``clock`` (a :class:`~authserver.clock.ManualClock`) replaces the real time."""
    built: list[Flask] = []

    def factory(*, clock: Clock | None = None, **overrides: Any) -> Flask:
        config = standard_config(
            "http://127.0.0.1:8080", backend.database_url, tmp_path / "secret_key"
        )
        for key, value in overrides.items():
            if isinstance(value, dict) and isinstance(config.get(key), dict):
                config[key] = {**config[key], **value}
            else:
                config[key] = value
        if backend.redis_url:
            config["redis_url"] = backend.redis_url
        app = create_app(
            Settings.model_validate(config), ephemeral=backend.ephemeral(), clock=clock
        )
        upgrade_database(app)
        built.append(app)
        return app

    yield factory
    for app in built:
        with app.app_context():
            db.engine.dispose()
        store = Services.of(app).ephemeral
        if isinstance(store, RedisEphemeralStore):
            store.close()


@pytest.fixture
def app(make_app: AppFactory) -> Flask:
    return make_app()


@pytest.fixture(scope="module", params=BACKENDS)
def module_app(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Flask]:
    """One app per backend for a module's generated requests (building one per
    example costs more than the requests). On PostgreSQL it has a database of its
    own, which the per-test emptying of the shared one does not touch."""
    workdir = tmp_path_factory.mktemp("module-app")
    database_url = f"sqlite:///{workdir / 'authserver.db'}"
    backend = Backend(request.param, database_url)
    server: sa.Engine | None = None
    name = f"authserver_module_{secrets.token_hex(4)}"
    if request.param != "sqlite":
        shared = request.getfixturevalue("pg_database_url")
        server = sa.create_engine(shared, isolation_level="AUTOCOMMIT")
        with server.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
        database_url = sa.make_url(shared).set(database=name).render_as_string(False)
        backend = Backend(request.param, database_url, request.getfixturevalue("redis_url"))
    config = standard_config("http://127.0.0.1:8080", database_url, workdir / "secret_key")
    if backend.redis_url:
        config["redis_url"] = backend.redis_url
    app = create_app(Settings.model_validate(config), ephemeral=backend.ephemeral())
    upgrade_database(app)
    with app.app_context():
        # Something to list, find and page through, besides what generated calls make.
        service_accounts = Services.of(app).service_accounts
        service_accounts.create("deploy-bot", role="user", created_by="test")
        Services.of(app).users.create_local("alice", "alice-password-123", "user")
    yield app
    with app.app_context():
        db.engine.dispose()
    store = Services.of(app).ephemeral
    if isinstance(store, RedisEphemeralStore):
        store.close()
    if server is not None:
        with server.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        server.dispose()


# -- live servers -------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


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


def command_env(cwd: Path, env: dict[str, str] | None) -> dict[str, str]:
    """The environment of an ``authserver`` process: none of this shell's
    ``AUTHSERVER_*``, and an instance directory under ``cwd`` (never the real
    ``~/.local/share/authserver``) unless ``env`` names one."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("AUTHSERVER_")}
    full_env["XDG_DATA_HOME"] = str(cwd / "xdg-data")
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
    _empty_pg(pg_url)
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
    workdir.mkdir(parents=True, exist_ok=True)
    config_path = workdir / "authserver.yaml"
    args = ["serve", "--bind", f"127.0.0.1:{port}", "--workers", "2", *extra]
    if config is not None:
        config_path.write_text(yaml.safe_dump(config))
        args = ["--config", str(config_path), *args]
    log_path = workdir / "server.log"
    full_env = command_env(workdir, env)
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [*authserver_command(), *args],
            cwd=workdir,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=full_env,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    server = LiveServer(url, config_path, workdir, process, log_path)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"authserver exited with {process.returncode}:\n{server.log()}")
        try:
            if (
                requests.get(url + "/.well-known/openid-configuration", timeout=1).status_code
                == 200
            ):
                return server
        except requests.ConnectionError:
            pass
        time.sleep(0.2)
    stop_server(server)
    raise RuntimeError(f"authserver did not start within 60 s:\n{server.log()}")


def stop_server(server: LiveServer) -> None:
    import signal

    if server.process.poll() is None:
        os.killpg(server.process.pid, signal.SIGTERM)
        try:
            server.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(server.process.pid, signal.SIGKILL)
            server.process.wait(timeout=10)


@pytest.fixture(scope="module", params=BACKENDS)
def live_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveServer]:
    """A real ``authserver serve`` (gunicorn, 2 workers) with the standard clients.

    Its failure limits are out of reach: a module's tests all come from 127.0.0.1 and
    many send wrong secrets on purpose. tests/test_guessing_limits.py tests the limits.
    """
    workdir = tmp_path_factory.mktemp("live")
    port = free_port()
    config = live_config(request, workdir, f"http://127.0.0.1:{port}")
    config["rate_limits"] = dict.fromkeys(RateLimitSettings.model_fields, "100000/minute")
    if request.param != "sqlite":
        upgrade_with_cli(workdir, config)
    server = start_server(workdir, config, port)
    yield server
    stop_server(server)
    if request.param == "sqlite":
        shutil.rmtree(workdir, ignore_errors=True)


# -- a browser for the page tests ------------------------------------------------------

CHROMIUM = Path("/usr/bin/chromium")
#: Quiet on a closed network, and able to run as root in a container.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """One Chromium for the module; each test gets its own context (fresh cookies)."""
    if not CHROMIUM.exists():
        message = f"{CHROMIUM} is missing (apt-get install chromium; .ci/run does)"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield launched
        launched.close()
