"""``/healthz`` and ``/readyz`` (issue 11.1), and ``serve`` refusing a Redis it cannot
reach. Outages against a live server are in tests/test_faults_redis.py and
tests/test_faults_database.py."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from flask import Flask

from authserver.web.health import CHECK_TIMEOUT, Readiness
from authserver.web.services import Services

from .support.factories import standard_config
from .support.servers import free_port, run_cli


def test_healthz(app: Flask) -> None:
    response = app.test_client().get("/healthz")
    assert response.status_code == 200
    assert response.get_json() == {"status": "ok"}
    assert response.headers["Cache-Control"] == "no-store"


def test_readyz_names_each_check(app: Flask) -> None:
    response = app.test_client().get("/readyz")
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    expected = {"database": "ok", "signing_key": "ok"}
    if Services.of(app).settings.redis_url:
        expected["redis"] = "ok"
    assert body == {"status": "ok", "checks": expected}


def test_a_stalled_check_costs_its_deadline_once_per_run() -> None:
    """A dependency that never answers: 503 after the deadline, naming it; a probe
    meanwhile waits on the same stuck run instead of starting another."""
    release = threading.Event()
    calls = []

    def stalled() -> None:
        calls.append(1)
        release.wait(30)

    def broken() -> None:
        raise ConnectionRefusedError("10.0.0.5:5432 secret-host")

    readiness = Readiness({"database": stalled, "redis": broken, "signing_key": lambda: None})
    try:
        start = time.monotonic()
        checks = readiness()
        assert time.monotonic() - start < CHECK_TIMEOUT + 0.5
        assert checks == {
            "database": f"down: no answer within {CHECK_TIMEOUT:g} s",
            # Only the kind of failure: the message may name hosts.
            "redis": "down: ConnectionRefusedError",
            "signing_key": "ok",
        }
        assert readiness()["database"].startswith("down:")
        assert len(calls) == 1
    finally:
        release.set()
    deadline = time.monotonic() + 5
    while readiness()["database"] != "ok":
        assert time.monotonic() < deadline
    # The stuck run has ended: the next probe runs the check again.
    assert readiness()["database"] == "ok"
    assert len(calls) == 2


def test_readyz_answers_503_with_what_is_down(app: Flask) -> None:
    def down() -> None:
        raise TimeoutError

    readiness = Services.of(app).readiness
    readiness.checks[0] = type(readiness.checks[0])("database", down)
    response = app.test_client().get("/readyz")
    assert response.status_code == 503
    body = response.get_json()
    assert body["status"] == "unavailable"
    assert body["checks"]["database"] == "down: TimeoutError"
    assert body["checks"]["signing_key"] == "ok"
    assert app.test_client().get("/healthz").status_code == 200


@pytest.mark.live
def test_serve_says_when_it_cannot_reach_redis(tmp_path: Path) -> None:
    port = free_port()
    config = standard_config(
        "http://127.0.0.1:8080", f"sqlite:///{tmp_path / 'authserver.db'}", tmp_path / "key"
    )
    config["redis_url"] = f"redis://:hunter2-password@127.0.0.1:{port}/0"
    import yaml

    (tmp_path / "authserver.yaml").write_text(yaml.safe_dump(config))
    result = run_cli(
        "--config",
        str(tmp_path / "authserver.yaml"),
        "serve",
        "--bind",
        f"127.0.0.1:{port}",
        cwd=tmp_path,
    )
    assert result.returncode == 1, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("authserver: error: cannot reach Redis (redis_url): ")
    assert f"127.0.0.1:{port}" in lines[0]
    assert "hunter2" not in result.stderr
    assert "Traceback" not in result.stderr
