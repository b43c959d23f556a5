"""A PostgreSQL outage under load against a live server (issue: survive faults and abuse).

The test runs its own PostgreSQL cluster (``initdb``/``pg_ctl`` on a free port, never
the machine's shared server), puts client-credentials load on a live server, stops the
cluster for a few seconds and starts it again. Nothing may be lost: every token the
clients received has its ``token_issued`` audit row once the database is back, no
request gets a 500, the outage is logged once per worker (not once per row, and no
traceback), and JWKS keeps answering quickly meanwhile.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
import sqlalchemy as sa
import yaml

from .support.factories import SECRETS, standard_config
from .support.servers import LiveServer, free_port, run_cli, start_server
from .support.servers import stop_server as stop_live_server
from .test_metrics import workers_have_built_their_apps

pytestmark = pytest.mark.live

OUTAGE_SECONDS = 6


def _pg_bin(name: str) -> str:
    found = shutil.which(name) or next(
        iter(sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), reverse=True)), None
    )
    assert found, f"{name} is required for the database fault test (PostgreSQL server binaries)"
    return found


def _as_postgres(*args: str) -> list[str]:
    # initdb refuses to run as root; CI runs as root.
    return ["runuser", "-u", "postgres", "--", *args] if os.geteuid() == 0 else list(args)


@dataclass
class OwnPostgres:
    port: int
    datadir: Path
    socketdir: Path

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/authserver"

    def init(self) -> None:
        for path in (self.datadir, self.socketdir):
            path.mkdir(parents=True)
            if os.geteuid() == 0:
                shutil.chown(path, "postgres", "postgres")
        subprocess.run(
            _as_postgres(
                _pg_bin("initdb"), "-D", str(self.datadir), "-A", "trust", "-U", "postgres"
            ),
            check=True,
            capture_output=True,
        )
        self.start()
        admin = sa.create_engine(
            self.url.rsplit("/", 1)[0] + "/postgres", isolation_level="AUTOCOMMIT"
        )
        with admin.connect() as conn:
            conn.execute(sa.text("CREATE DATABASE authserver"))
        admin.dispose()

    def start(self) -> None:
        options = f"-p {self.port} -k {self.socketdir} -c listen_addresses=127.0.0.1 -c fsync=off"
        log = str(self.socketdir / "postgres.log")
        # The postmaster must not inherit our pipes (run() would wait for it to exit).
        subprocess.run(
            _as_postgres(
                _pg_bin("pg_ctl"), "-D", str(self.datadir), "-o", options, "-l", log, "-w", "start"
            ),
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def stop(self) -> None:
        subprocess.run(
            _as_postgres(_pg_bin("pg_ctl"), "-D", str(self.datadir), "-m", "fast", "-w", "stop"),
            check=False,
            capture_output=True,
        )


@pytest.fixture(scope="module")
def own_postgres() -> Iterator[OwnPostgres]:
    # Not under pytest's tmp dir: that is private to root, and the server runs as postgres.
    base = Path(tempfile.mkdtemp(prefix="authserver-pg-"))
    if os.geteuid() == 0:
        shutil.chown(base, "postgres", "postgres")
    cluster = OwnPostgres(free_port(), base / "data", base / "run")
    try:
        cluster.init()
        yield cluster
    finally:
        cluster.stop()
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="module")
def outage_server(
    own_postgres: OwnPostgres, redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveServer]:
    workdir = tmp_path_factory.mktemp("db-outage")
    port = free_port()
    config = standard_config(f"http://127.0.0.1:{port}", own_postgres.url, workdir / "secret_key")
    config["redis_url"] = redis_url
    config["redis_prefix"] = f"authserver-outage:{port}:"
    (workdir / "authserver.yaml").write_text(yaml.safe_dump(config))
    upgraded = run_cli("--config", str(workdir / "authserver.yaml"), "db", "upgrade", cwd=workdir)
    assert upgraded.returncode == 0, upgraded.stderr
    server = start_server(workdir, config, port)
    yield server
    stop_live_server(server)


def token_issued_rows(url: str) -> set[str]:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                sa.text("SELECT details FROM audit_events WHERE event = 'token_issued'")
            )
            return {row.details["jti"] for row in rows}
    finally:
        engine.dispose()


def test_a_database_outage_loses_no_audit_row(
    outage_server: LiveServer, own_postgres: OwnPostgres
) -> None:
    import base64
    import json

    url = outage_server.url
    issued: list[str] = []
    statuses: Counter[int] = Counter()
    stop = threading.Event()
    lock = threading.Lock()

    def load() -> None:
        with requests.Session() as session:
            while not stop.is_set():
                response = session.post(
                    url + "/oauth2/token",
                    data={"grant_type": "client_credentials", "scope": "all"},
                    auth=("ci", SECRETS["ci"]),
                    timeout=30,
                )
                with lock:
                    statuses[response.status_code] += 1
                    if response.status_code == 200:
                        payload = response.json()["access_token"].split(".")[1]
                        claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
                        issued.append(claims["jti"])

    threads = [threading.Thread(target=load) for _ in range(3)]
    for thread in threads:
        thread.start()
    try:
        time.sleep(2)
        own_postgres.stop()
        during = len(issued)
        jwks_times = []
        deadline = time.monotonic() + OUTAGE_SECONDS
        while time.monotonic() < deadline:
            start = time.monotonic()
            jwks = requests.get(url + "/.well-known/jwks.json", timeout=30)
            jwks_times.append(time.monotonic() - start)
            assert jwks.status_code == 200
            time.sleep(0.2)
        issued_in_outage = len(issued) - during
        own_postgres.start()
        time.sleep(3)
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=60)
    # Tokens kept being issued for static clients while the database was down.
    assert issued_in_outage > 0, statuses
    assert set(statuses) <= {200, 503}, statuses
    assert max(jwks_times) < 1.0, max(jwks_times)
    # Every issued token has its row once the held events are written (≤ a few s).
    deadline = time.monotonic() + 20
    while True:
        stored = token_issued_rows(own_postgres.url)
        if set(issued) <= stored or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    missing = set(issued) - stored
    assert not missing, f"{len(missing)} of {len(issued)} token_issued rows lost"
    log = outage_server.log()
    assert log.count("audit events cannot be written") <= 2, log[-3000:]  # once per worker
    assert "Traceback" not in log, log[-3000:]


def test_readyz_names_a_stopped_database_and_recovers(
    outage_server: LiveServer, own_postgres: OwnPostgres
) -> None:
    """Issue 11.1: /readyz says the database is down (the signing keys in memory still
    sign), /healthz and JWKS stay 200, and /readyz is 200 again by itself."""
    url = outage_server.url
    # Both workers have read the keys (a worker that boots during the outage has
    # none to sign with, and says so).
    deadline = time.monotonic() + 15
    while not workers_have_built_their_apps(outage_server):
        assert time.monotonic() < deadline, "the workers did not start"
        time.sleep(0.1)
    while requests.get(url + "/readyz", timeout=10).status_code != 200:
        assert time.monotonic() < deadline, "/readyz is not 200 before the outage"
        time.sleep(0.2)
    own_postgres.stop()
    try:
        start = time.monotonic()
        ready = requests.get(url + "/readyz", timeout=30)
        assert time.monotonic() - start < 2.5
        assert ready.status_code == 503, ready.text
        checks = ready.json()["checks"]
        assert checks["database"].startswith("down: "), checks
        assert checks["redis"] == "ok"
        assert checks["signing_key"] == "ok", outage_server.log()[-3000:]
        assert requests.get(url + "/healthz", timeout=10).status_code == 200
        assert requests.get(url + "/.well-known/jwks.json", timeout=10).status_code == 200
    finally:
        own_postgres.start()
    deadline = time.monotonic() + 15
    while requests.get(url + "/readyz", timeout=10).status_code != 200:
        assert time.monotonic() < deadline, "/readyz stayed 503 after the database came back"
        time.sleep(0.2)
