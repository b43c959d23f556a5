"""Fault figures (issue 9): Redis paused and PostgreSQL stopped under load.

    .venv/bin/python -m bench.faults [--outage 30]

Starts its own Redis and its own PostgreSQL cluster (``initdb``/``pg_ctl``) on free
ports, never the machine's shared ones, and ``authserver serve`` (2 workers) on them.
Load: 3 client-credentials loops, 1 JWKS loop, and 6 refresh-token families each
refreshed in a loop by its own client that retries a 503 after ``Retry-After``. Then,
one after the other: Redis paused (SIGSTOP) for ``--outage`` seconds, PostgreSQL
stopped for as long. Prints, per fault: families lost (a refresh answered anything but
200 or 503), ``token_issued`` audit rows lost (tokens clients received without their
row once the database is back), the slowest JWKS and client-credentials answers during
the fault, and the status codes seen.
"""

from __future__ import annotations

import argparse
import base64
import json
import shutil
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import requests

from tests.support.factories import SECRETS, new_user, standard_config
from tests.support.flows import live_tokens, refresh
from tests.support.servers import free_port, run_cli, start_server, stop_server
from tests.test_faults_database import OwnPostgres, token_issued_rows
from tests.test_faults_redis import OwnRedis


@dataclass
class Window:
    """What the loops saw between ``start`` and ``end`` (monotonic)."""

    start: float
    end: float = 0.0


@dataclass
class Record:
    lock: threading.Lock = field(default_factory=threading.Lock)
    # (when, what, status, seconds)
    calls: list[tuple[float, str, int, float]] = field(default_factory=list)
    jtis: list[str] = field(default_factory=list)
    families_lost: set[int] = field(default_factory=set)

    def add(self, what: str, status: int, started: float) -> None:
        now = time.monotonic()
        with self.lock:
            self.calls.append((now, what, status, now - started))

    def during(self, window: Window, what: str) -> list[tuple[int, float]]:
        return [
            (s, d) for t, w, s, d in self.calls if w == what and window.start <= t <= window.end
        ]


def _jti(token: str) -> str:
    payload = token.split(".")[1]
    return str(json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))["jti"])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--outage", type=float, default=30.0, help="seconds of each fault")
    args = parser.parse_args()

    base = Path(tempfile.mkdtemp(prefix="authserver-faults-"))
    if _root():  # the cluster runs as postgres
        shutil.chown(base, "postgres", "postgres")
    own_redis = OwnRedis(free_port(), base / "redis")
    (base / "redis").mkdir()
    own_pg = OwnPostgres(free_port(), base / "data", base / "run")
    own_redis.start()
    own_pg.init()
    port = free_port()
    workdir = base / "server"
    workdir.mkdir()
    config = standard_config(f"http://127.0.0.1:{port}", own_pg.url, workdir / "secret_key")
    config["redis_url"] = own_redis.url
    import yaml

    (workdir / "authserver.yaml").write_text(yaml.safe_dump(config))
    upgraded = run_cli("--config", str(workdir / "authserver.yaml"), "db", "upgrade", cwd=workdir)
    assert upgraded.returncode == 0, upgraded.stderr
    server = start_server(workdir, config, port)
    url = server.url
    record = Record()
    stop = threading.Event()

    def client_credentials() -> None:
        with requests.Session() as session:
            while not stop.is_set():
                started = time.monotonic()
                response = session.post(
                    url + "/oauth2/token",
                    data={"grant_type": "client_credentials", "scope": "all"},
                    auth=("ci", SECRETS["ci"]),
                    timeout=60,
                )
                record.add("client_credentials", response.status_code, started)
                if response.status_code == 200:
                    with record.lock:
                        record.jtis.append(_jti(response.json()["access_token"]))

    def jwks() -> None:
        while not stop.is_set():
            started = time.monotonic()
            response = requests.get(url + "/.well-known/jwks.json", timeout=60)
            record.add("jwks", response.status_code, started)
            time.sleep(0.05)

    def family(number: int, token: str) -> None:
        while not stop.is_set():
            started = time.monotonic()
            response = refresh(url, token)
            record.add("refresh", response.status_code, started)
            if response.status_code == 200:
                token = response.json()["refresh_token"]
                time.sleep(0.2)
            elif response.status_code == 503:
                time.sleep(int(response.headers.get("Retry-After", "1")))
            else:  # invalid_grant: the family is gone
                record.families_lost.add(number)
                return

    families = [live_tokens(server, new_user(server))["refresh_token"] for _ in range(6)]
    threads = [threading.Thread(target=client_credentials) for _ in range(3)]
    threads.append(threading.Thread(target=jwks))
    threads += [threading.Thread(target=family, args=(n, t)) for n, t in enumerate(families)]
    for thread in threads:
        thread.start()
    faults = [
        ("Redis paused", own_redis.pause, own_redis.resume),
        ("PostgreSQL stopped", own_pg.stop, own_pg.start),
    ]
    results = []
    try:
        time.sleep(5)
        for name, begin, end in faults:
            lost_before = set(record.families_lost)
            window = Window(time.monotonic())
            begin()
            time.sleep(args.outage)
            end()
            window.end = time.monotonic()
            time.sleep(10)  # recovery: a family lost as the fault ends counts for it
            results.append((name, window, record.families_lost - lost_before))
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=90)
    time.sleep(2)  # the held audit rows are written within a second of the database
    with record.lock:
        jtis = set(record.jtis)
    missing = jtis - token_issued_rows(own_pg.url)
    print(f"outage {args.outage:.0f} s each; {len(jtis)} tokens issued in the run")
    for name, window, lost in results:
        print(f"\n{name} for {window.end - window.start:.1f} s:")
        print(f"  refresh families lost: {len(lost)} of {len(families)}")
        for what in ("jwks", "client_credentials", "refresh"):
            seen = record.during(window, what)
            statuses = Counter(status for status, _ in seen)
            slowest = max((d for _, d in seen), default=0.0)
            print(f"  {what}: {dict(statuses)}, slowest {slowest * 1000:.0f} ms")
    print(f"\ntoken_issued rows lost over the run: {len(missing)} of {len(jtis)}")
    log = server.log()
    print(f"server log: {len(log.splitlines())} lines, {log.count('Traceback')} tracebacks")
    stop_server(server)
    kept = Path(tempfile.gettempdir()) / "authserver-faults-server.log"
    shutil.copy(server.log_path, kept)
    print(f"server log kept in {kept}")
    own_redis.stop()
    own_pg.stop()
    shutil.rmtree(base, ignore_errors=True)
    return 0


def _root() -> bool:
    import os

    return os.geteuid() == 0


if __name__ == "__main__":
    raise SystemExit(main())
