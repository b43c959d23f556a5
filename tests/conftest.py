"""Fixtures: every backend, a fresh app per test, and live ``authserver serve`` processes
(the helpers they build on are in tests/support/).

Backends: SQLite always; PostgreSQL and Redis from ``AUTHSERVER_TEST_DATABASE_URL`` and
``AUTHSERVER_TEST_REDIS_URL`` (``make test`` points them at the local services). When
one is not configured the tests that need it are skipped, except under CI (``CI`` set),
where they fail: CI must never pass by skipping a backend.
"""

from __future__ import annotations

import os
import secrets
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
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

from .support.factories import empty_pg, standard_config
from .support.servers import LIVE_TEST, InProcessServer, LiveServer, free_port, live_config, serving
from .support.wsgi import route_to_app

PG_URL = os.environ.get("AUTHSERVER_TEST_DATABASE_URL")
REDIS_URL = os.environ.get("AUTHSERVER_TEST_REDIS_URL")
IN_CI = bool(os.environ.get("CI"))


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
    empty_pg(url)
    yield Backend("postgresql+redis", url, redis_url)


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
        close_app(app)


def close_app(app: Flask) -> None:
    """Let go of what an app holds: its database connections and its Redis pool. The
    audit events it holds are written first: a writer thread that woke later would
    open a connection that nothing closes."""
    Services.of(app).events.flush()
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
    close_app(app)
    if server is not None:
        with server.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        server.dispose()


# -- live servers -------------------------------------------------------------------


@pytest.fixture(scope="module", params=BACKENDS)
def live_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveServer]:
    """A real ``authserver serve`` (gunicorn, 2 workers) with the standard clients.

    Its failure limits are out of reach: a module's tests all come from 127.0.0.1 and
    many send wrong secrets on purpose. tests/test_guessing_limits.py tests the limits.
    """
    workdir = tmp_path_factory.mktemp("live")
    with serving(request, workdir, without_failure_limits) as server:
        yield server
    if request.param == "sqlite":
        shutil.rmtree(workdir, ignore_errors=True)


def without_failure_limits(config: dict[str, Any]) -> None:
    config["rate_limits"] = dict.fromkeys(RateLimitSettings.model_fields, "100000/minute")


@pytest.fixture(scope="module", params=BACKENDS)
def app_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[InProcessServer]:
    """What ``live_server`` is, in this process: the same config on the same backends,
    reached by ``requests`` and Authlib through WSGI (tests/support/wsgi.py), so the
    endpoints' tests need no ``authserver serve``."""
    workdir = tmp_path_factory.mktemp("app-server")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    config = live_config(request, workdir, url)
    without_failure_limits(config)
    config_path = workdir / "authserver.yaml"
    config_path.write_text(yaml.safe_dump(config))
    app = create_app(Settings.model_validate(config))
    upgrade_database(app)
    try:
        with route_to_app(app, url, f"http://localhost:{port}"):
            yield InProcessServer(url, config_path, workdir, app)
    finally:
        close_app(app)


#: Fixtures that start a process (``authserver serve``, Chromium): a test that uses one
#: is ``live`` without saying so.
LIVE_FIXTURES = {"live_server", "browser"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        info = getattr(item, "_fixtureinfo", None)
        defined = info.name2fixturedefs if info else {}
        # This module's fixtures, not a test module's own of the same name.
        if any(
            defined.get(name, [None])[-1].func.__module__ == __name__
            for name in LIVE_FIXTURES
            if name in defined
        ):
            item.add_marker(pytest.mark.live)


def pytest_runtest_setup(item: pytest.Item) -> None:
    LIVE_TEST["marked"] = item.get_closest_marker("live") is not None
    LIVE_TEST["name"] = item.nodeid


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
