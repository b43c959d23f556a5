"""Redis faults against a live server (issue: survive faults and abuse).

Each test runs its own ``redis-server`` on a free port (never the machine's shared one)
and pauses it (SIGSTOP: a stalled Redis, the worst case, since nothing answers) or kills
it. While it is down, what needs it answers 503 ``temporarily_unavailable`` with
``Retry-After`` within a bounded time; what does not (discovery, JWKS, client
credentials for a static client, the login page) keeps answering; a refresh either
completes or changes nothing, so the client's retry after the fault works and the
family survives (RFC 9700 §4.14.2 reuse detection must not fire on a retry).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis
import requests
import sqlalchemy as sa

from .support.factories import empty_pg, new_user, standard_config
from .support.flows import client_credentials, live_tokens, refresh
from .support.servers import LiveServer, free_port, run_cli, start_server, stop_server

pytestmark = pytest.mark.live

#: A stalled dependency may cost a request this long, then 503 (the issue asks ≤ 2 s;
#: the slack is for a loaded CI machine's scheduling, not for waiting on Redis).
BOUND = 2.5


@dataclass
class OwnRedis:
    port: int
    workdir: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        binary = shutil.which("redis-server")
        assert binary, "redis-server is required for the fault tests"
        args = ["--port", str(self.port), "--bind", "127.0.0.1", "--save", ""]
        self.process = subprocess.Popen(
            [binary, *args, "--appendonly", "no", "--dir", str(self.workdir)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                redis.Redis.from_url(self.url, socket_timeout=1).ping()
                return
            except redis.ConnectionError:
                time.sleep(0.1)
        raise RuntimeError("redis-server did not start")

    def pause(self) -> None:
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGSTOP)

    def resume(self) -> None:
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGCONT)

    def kill(self) -> None:
        assert self.process is not None
        self.process.kill()
        self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.resume()
            self.kill()


@pytest.fixture(scope="module")
def own_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OwnRedis]:
    server = OwnRedis(free_port(), tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def faulty_server(
    own_redis: OwnRedis, pg_database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveServer]:
    """A live server on PostgreSQL and the test's own Redis."""
    workdir = tmp_path_factory.mktemp("faults")
    port = free_port()
    empty_pg(pg_database_url)
    config = standard_config(f"http://127.0.0.1:{port}", pg_database_url, workdir / "secret_key")
    config["redis_url"] = own_redis.url
    import yaml

    (workdir / "authserver.yaml").write_text(yaml.safe_dump(config))
    upgraded = run_cli("--config", str(workdir / "authserver.yaml"), "db", "upgrade", cwd=workdir)
    assert upgraded.returncode == 0, upgraded.stderr
    server = start_server(workdir, config, port)
    yield server
    own_redis.resume()
    stop_server(server)


def timed(call: object, *args: object, **kwargs: object) -> tuple[requests.Response, float]:
    start = time.monotonic()
    response = call(*args, **kwargs)  # type: ignore[operator]
    return response, time.monotonic() - start


def assert_unavailable(response: requests.Response) -> None:
    assert response.status_code == 503, response.text
    assert response.json()["error"] == "temporarily_unavailable"
    assert int(response.headers["Retry-After"]) >= 1


def retry_after_fault(url: str, token: str) -> requests.Response:
    """A refresh retried while it answers 503, waiting ``Retry-After`` (at most 15 s)."""
    deadline = time.monotonic() + 15
    while True:
        response = refresh(url, token)
        if response.status_code != 503 or time.monotonic() > deadline:
            return response
        time.sleep(int(response.headers["Retry-After"]))


def reuse_rows(server: LiveServer) -> int:
    import yaml

    url = yaml.safe_load(server.config_path.read_text())["database_url"]
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return int(
                conn.execute(
                    sa.text("SELECT count(*) FROM audit_events WHERE event = :e"),
                    {"e": "refresh_reuse_detected"},
                ).scalar_one()
            )
    finally:
        engine.dispose()


def test_refresh_during_a_stalled_redis_changes_nothing(
    faulty_server: LiveServer, own_redis: OwnRedis
) -> None:
    url = faulty_server.url
    tokens = live_tokens(faulty_server, new_user(faulty_server))
    old = tokens["refresh_token"]
    own_redis.pause()
    try:
        # Several attempts, as a client's retries would make: each 503, bounded.
        for _ in range(3):
            response, elapsed = timed(refresh, url, old)
            assert_unavailable(response)
            assert elapsed < BOUND, f"refresh took {elapsed:.2f} s with Redis stalled"
        # What does not need Redis keeps answering, and quickly.
        for path in ("/.well-known/openid-configuration", "/.well-known/jwks.json", "/login"):
            page, elapsed = timed(requests.get, url + path, timeout=30)
            assert page.status_code == 200, (path, page.status_code)
            assert elapsed < 1.0, f"{path} took {elapsed:.2f} s with Redis stalled"
        issued, elapsed = timed(client_credentials, url)
        assert issued.status_code == 200, issued.text
        assert elapsed < 1.0
        # A browser page that needs Redis gets an HTML page, not JSON.
        html = requests.get(
            url + "/oauth2/authorize",
            params={
                "client_id": "cli",
                "response_type": "code",
                "redirect_uri": "http://127.0.0.1:43210/callback",
                "code_challenge": "x" * 43,
                "code_challenge_method": "S256",
            },
            headers={"Accept": "text/html"},
            timeout=30,
        )
        if html.status_code == 503:
            assert html.headers["Content-Type"].startswith("text/html")
            assert "Temporarily unavailable" in html.text
    finally:
        own_redis.resume()
    # After the fault the client's retry with the same token (after Retry-After, as a
    # client should) completes, and the family lives on: its successor refreshes too.
    retried = retry_after_fault(url, old)
    assert retried.status_code == 200, retried.text
    successor = retried.json()["refresh_token"]
    assert successor != old
    # (each worker finds Redis back within its own cool-down: a 503 there is answered
    # with Retry-After, as during the fault)
    again = retry_after_fault(url, successor)
    assert again.status_code == 200, again.text
    assert reuse_rows(faulty_server) == 0


def test_a_killed_redis_gives_503_and_recovers_without_a_restart(
    faulty_server: LiveServer, own_redis: OwnRedis
) -> None:
    url = faulty_server.url
    tokens = live_tokens(faulty_server, new_user(faulty_server))
    old = tokens["refresh_token"]
    own_redis.kill()
    try:
        response, elapsed = timed(refresh, url, old)
        assert_unavailable(response)
        assert elapsed < BOUND
        jwks, elapsed = timed(requests.get, url + "/.well-known/jwks.json", timeout=30)
        assert jwks.status_code == 200
        assert elapsed < 1.0
    finally:
        own_redis.start()
    # Redis keeps nothing on disk here: what it held is gone, the refresh family (SQL)
    # is not. The retried refresh completes.
    retried = retry_after_fault(url, old)
    assert retried.status_code == 200, retried.text
    assert retry_after_fault(url, retried.json()["refresh_token"]).status_code == 200
    assert reuse_rows(faulty_server) == 0


def test_readyz_names_a_stalled_redis_and_recovers(
    faulty_server: LiveServer, own_redis: OwnRedis
) -> None:
    """Issue 11.1: /readyz says Redis is down within its deadline, /healthz stays 200,
    and /readyz is 200 again by itself once Redis answers; the 503s count in /metrics."""
    url = faulty_server.url
    assert requests.get(url + "/readyz", timeout=10).status_code == 200
    own_redis.pause()
    try:
        ready, elapsed = timed(requests.get, url + "/readyz", timeout=30)
        assert ready.status_code == 503, ready.text
        assert elapsed < BOUND, f"/readyz took {elapsed:.2f} s with Redis stalled"
        body = ready.json()
        assert body["status"] == "unavailable"
        assert body["checks"]["redis"].startswith("down: "), body
        assert body["checks"]["database"] == "ok"
        assert body["checks"]["signing_key"] == "ok"
        healthy, elapsed = timed(requests.get, url + "/healthz", timeout=30)
        assert healthy.status_code == 200
        assert elapsed < 1.0
        # Something that needs Redis: a device code.
        device = requests.post(
            url + "/oauth2/device_authorization", data={"client_id": "cli"}, timeout=30
        )
        assert_unavailable(device)
    finally:
        own_redis.resume()
    deadline = time.monotonic() + 15
    while requests.get(url + "/readyz", timeout=10).status_code != 200:
        assert time.monotonic() < deadline, "/readyz stayed 503 after Redis came back"
        time.sleep(0.2)
    metrics = requests.get(url + "/metrics", timeout=10).text
    assert 'authserver_dependency_unavailable_total{dependency="redis"}' in metrics


def test_the_failure_limits_give_up_on_a_stalled_redis_sooner(own_redis: OwnRedis) -> None:
    """The failure limits fail open, so their reads give up after 250 ms: a worker that
    has not met the outage yet answers a client's first token request well within 1 s."""
    from authserver.errors import DependencyUnavailable
    from authserver.storage.ephemeral import RedisEphemeralStore
    from authserver.storage.ratelimit import RateLimits

    store = RedisEphemeralStore.from_url(own_redis.url, prefix="limits-test:")
    quick = store.with_timeout(0.25)
    limits = RateLimits(quick)
    try:
        assert limits.hit("5/minute", "a")
        own_redis.pause()
        try:
            started = time.monotonic()
            with pytest.raises(DependencyUnavailable):
                limits.hit("5/minute", "a")
            assert time.monotonic() - started < 0.6
            assert limits.degraded(10)
            assert not store.failed_within(10)  # the rest of the store keeps its own breaker
        finally:
            own_redis.resume()
    finally:
        quick.close()
        store.close()
