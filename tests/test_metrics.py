"""``GET /metrics`` (issue 11.2): Prometheus text format, counters summed over gunicorn
workers, bounded labels, and who may read it (``metrics.access``)."""

from __future__ import annotations

import glob
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from flask import Flask
from flask.testing import FlaskClient
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.parser import text_string_to_metric_families

from authserver.clock import ManualClock
from authserver.settings import Settings, SettingsError, load_settings
from authserver.web.services import Services

from .conftest import BACKENDS, AppFactory
from .support.factories import SECRETS, new_local_user
from .support.flows import (
    assert_oauth_error,
    flask_refresh,
    flask_sign_in,
    flask_tokens,
    form_field,
)
from .support.servers import (
    LiveServer,
    free_port,
    serving,
    start_server,
    stop_server,
)

TOKENS = "authserver_tokens_issued_total"
REQUESTS = "authserver_http_requests_total"


def sample(text: str, name: str, **labels: str) -> float:
    """The value of the sample ``name`` with exactly ``labels`` (0 when absent)."""
    for family in text_string_to_metric_families(text):
        for item in family.samples:
            if item.name == name and item.labels == labels:
                return float(item.value)
    return 0.0


def scrape(client: FlaskClient) -> str:
    response = client.get("/metrics")
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.headers["Content-Type"].startswith("text/plain")
    return response.get_data(as_text=True)


def client_credentials(client: FlaskClient, secret: str = SECRETS["ci"]) -> int:
    response = client.post(
        "/oauth2/token",
        data={"grant_type": "client_credentials"},
        auth=("ci", secret),
    )
    return response.status_code


# -- in one process (a registry per app) -----------------------------------------------


def test_tokens_requests_and_latency_are_counted(app: Flask) -> None:
    client = app.test_client()
    for _ in range(3):
        assert client_credentials(client) == 200
    assert client.get("/no/such/path/abc123").status_code == 404
    text = scrape(client)
    assert sample(text, TOKENS, grant_type="client_credentials", client_id="ci") == 3
    token = {"endpoint": "oauth.token", "method": "POST", "status": "200"}
    assert sample(text, REQUESTS, **token) == 3
    count = "authserver_http_request_duration_seconds_count"
    assert sample(text, count, endpoint="oauth.token") == 3
    assert sample(text, "authserver_http_request_duration_seconds_sum", endpoint="oauth.token") > 0
    # The label is the Flask endpoint, never the path asked for (bounded cardinality).
    assert sample(text, REQUESTS, endpoint="unmatched", method="GET", status="404") == 1
    assert "abc123" not in text


def test_failures_are_counted_every_time(app: Flask) -> None:
    """Every wrong client secret counts, though the audit log has one row a minute."""
    client = app.test_client()
    for _ in range(3):
        assert client_credentials(client, "wrong-secret-0123456789") == 401
    page = client.get("/login", query_string={"force": "1"})
    wrong = client.post(
        "/login",
        data={
            "csrf_token": form_field(page.get_data(as_text=True), "csrf_token"),
            "username": "nobody-here",
            "password": "wrong password",
            "next": "/",
        },
    )
    assert wrong.status_code == 401
    text = scrape(client)
    assert sample(text, "authserver_client_auth_failures_total") == 3
    assert sample(text, "authserver_login_failures_total", method="password") == 1
    # Neither the client id guessed at nor the username is a label.
    assert "nobody-here" not in text


def test_refresh_reuse_is_counted(make_app: AppFactory) -> None:
    clock = ManualClock()
    app = make_app(clock=clock, tokens={"refresh_retry_grace": "200ms"})
    client = flask_sign_in(app, new_local_user(app))
    first = flask_tokens(client)
    assert flask_refresh(client, first["refresh_token"]).status_code == 200
    clock.advance(0.3)
    assert_oauth_error(flask_refresh(client, first["refresh_token"]), "invalid_grant")
    text = scrape(client)
    assert sample(text, "authserver_refresh_reuse_detected_total", client_id="cli") == 1
    assert sample(text, TOKENS, grant_type="refresh_token", client_id="cli") == 1
    assert sample(text, TOKENS, grant_type="authorization_code", client_id="cli") == 1


def test_only_trusted_addresses_may_read_by_default(app: Flask) -> None:
    client = app.test_client()
    assert client.get("/metrics").status_code == 200  # the test client is 127.0.0.1
    outside = client.get("/metrics", environ_base={"REMOTE_ADDR": "192.0.2.7"})
    assert outside.status_code == 403
    # A proxy on this host that trusted_forwarders does not name: the peer is the
    # proxy, the client is anybody.
    proxied = client.get("/metrics", headers={"X-Forwarded-For": "192.0.2.7"})
    assert proxied.status_code == 403
    assert client.get("/metrics", headers={"Forwarded": "for=192.0.2.7"}).status_code == 403


def test_trusted_networks_behind_a_known_proxy(make_app: AppFactory) -> None:
    app = make_app(
        trusted_forwarders=["127.0.0.1/32"],
        metrics={"access": "trusted", "trusted": ["10.0.0.0/8"]},
    )
    client = app.test_client()
    scraper = {"X-Forwarded-For": "10.1.2.3"}
    assert client.get("/metrics", headers=scraper).status_code == 200
    assert client.get("/metrics", headers={"X-Forwarded-For": "192.0.2.7"}).status_code == 403
    assert client.get("/metrics").status_code == 403  # the proxy itself is not trusted


def test_open_and_off(make_app: AppFactory) -> None:
    opened = make_app(metrics={"access": "open"}).test_client()
    assert opened.get("/metrics", environ_base={"REMOTE_ADDR": "192.0.2.7"}).status_code == 200
    off = make_app(metrics={"access": "off"})
    assert Services.of(off).metrics is None
    assert off.test_client().get("/metrics").status_code == 404


def test_metrics_settings_are_validated(tmp_path: Path) -> None:
    path = tmp_path / "authserver.yaml"
    path.write_text("metrics:\n  access: sometimes\n  trusted: [not-a-network]\n  bogus: 1\n")
    with pytest.raises(SettingsError) as failed:
        load_settings(str(path))
    message = str(failed.value)
    assert "metrics.access" in message
    assert "metrics.trusted[0]" in message
    assert "metrics.bogus" in message
    assert Settings().metrics.access == "trusted"
    assert Settings().metrics.trusted == ("127.0.0.1/32", "::1/128")


# -- live: gunicorn with 2 workers -------------------------------------------------------


@pytest.fixture(scope="module", params=BACKENDS)
def metrics_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveServer]:
    with serving(request, tmp_path_factory.mktemp("metrics")) as server:
        yield server


def live_scrape(server: LiveServer) -> str:
    # A fresh connection each time: any worker may answer.
    response = requests.get(server.url + "/metrics", timeout=10)
    assert response.status_code == 200, response.text
    return response.text


def metrics_dir(server: LiveServer) -> str:
    """The directory of the workers' metric files, from what the workers have mapped
    (``serve`` sets it in its own environment, which /proc does not show)."""
    pid = server.process.pid
    workers = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    for worker in workers:
        for line in Path(f"/proc/{worker}/maps").read_text().splitlines():
            path = line.split()[-1]
            if "/authserver-metrics-" in path:
                return os.path.dirname(path)
    raise AssertionError("no worker has a metrics file mapped")


def workers_have_built_their_apps(server: LiveServer, workers: int = 2) -> bool:
    """Whether every worker has built its app: each maps its counter file then (the
    unlabelled counters have a value from the start)."""
    pid = server.process.pid
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return len(children) == workers and all(
        f"/counter_{child}.db" in Path(f"/proc/{child}/maps").read_text() for child in children
    )


def tokens_by_worker(directory: str) -> dict[str, float]:
    """Each worker's own count of tokens for ``ci`` (one counter file per process)."""
    counts = {}
    for path in glob.glob(os.path.join(directory, "counter_*.db")):
        for metric in MultiProcessCollector.merge([path]):
            for item in metric.samples:
                if item.name == TOKENS and item.labels.get("client_id") == "ci":
                    counts[Path(path).stem] = item.value
    return counts


@pytest.mark.live
def test_counters_sum_over_the_workers(metrics_server: LiveServer) -> None:
    before = sample(
        live_scrape(metrics_server), TOKENS, grant_type="client_credentials", client_id="ci"
    )
    directory = metrics_dir(metrics_server)
    statuses: list[int] = []
    lock = threading.Lock()

    def load(count: int) -> None:
        for _ in range(count):  # a new connection per request: spread over the workers
            response = requests.post(
                metrics_server.url + "/oauth2/token",
                data={"grant_type": "client_credentials"},
                auth=("ci", SECRETS["ci"]),
                timeout=30,
            )
            with lock:
                statuses.append(response.status_code)

    # Until both workers have issued some (the kernel hands connections to whichever
    # worker accepts first), within a bound.
    for _ in range(10):
        threads = [threading.Thread(target=load, args=(5,)) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        if len([n for n in tokens_by_worker(directory).values() if n > 0]) >= 2:
            break
    spread = tokens_by_worker(directory)
    assert len([n for n in spread.values() if n > 0]) >= 2, spread
    assert set(statuses) == {200}, statuses
    issued = len(statuses)
    # Every scrape, whichever worker answers it, shows the sum: exactly N more.
    for _ in range(4):
        after = sample(
            live_scrape(metrics_server), TOKENS, grant_type="client_credentials", client_id="ci"
        )
        assert after - before == issued, (before, after, issued, spread)
    assert sum(spread.values()) == after


@pytest.mark.live
def test_a_dead_workers_counts_stay_in_the_sum(metrics_server: LiveServer) -> None:
    """A worker killed outright (out of memory, say): gunicorn starts another, and the
    counters do not go back (Prometheus would read a drop as a counter reset)."""
    for _ in range(3):
        assert client_credentials_live(metrics_server) == 200
    labels = {"grant_type": "client_credentials", "client_id": "ci"}
    before = sample(live_scrape(metrics_server), TOKENS, **labels)
    pid = metrics_server.process.pid
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    os.kill(int(children[0]), signal.SIGKILL)
    deadline = time.monotonic() + 30
    while not workers_have_built_their_apps(metrics_server):
        assert time.monotonic() < deadline, "gunicorn did not replace the worker"
        time.sleep(0.1)
    for _ in range(4):
        assert sample(live_scrape(metrics_server), TOKENS, **labels) == before
    assert client_credentials_live(metrics_server) == 200
    assert sample(live_scrape(metrics_server), TOKENS, **labels) == before + 1


def client_credentials_live(server: LiveServer) -> int:
    return requests.post(
        server.url + "/oauth2/token",
        data={"grant_type": "client_credentials"},
        auth=("ci", SECRETS["ci"]),
        timeout=30,
    ).status_code


@pytest.mark.live
def test_serve_removes_its_metrics_directory(tmp_path: Path) -> None:
    port = free_port()
    config = {"issuer": f"http://127.0.0.1:{port}"}
    config["database_url"] = f"sqlite:///{tmp_path / 'authserver.db'}"
    config["secret_key_file"] = str(tmp_path / "secret_key")
    server = start_server(tmp_path, config, port)
    try:
        directory = metrics_dir(server)
        assert os.path.isdir(directory)
        assert oct(os.stat(directory).st_mode & 0o777) == "0o700"
    finally:
        stop_server(server)
    assert not os.path.exists(directory)
