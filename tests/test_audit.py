"""The audit log (issue #4): every security-relevant action as a row of ``audit_events``,
with who, what, when and from where, and never a token or secret value; paged newest
first at ``/api/v1/audit-events``.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
import sqlalchemy as sa
import yaml
from flask import Flask

from authserver.clock import ManualClock
from authserver.web.services import Services

from .conftest import AppFactory, Backend
from .support.factories import SECRETS, new_local_user, standard_config
from .support.flows import flask_refresh, flask_sign_in, flask_tokens, form_field
from .support.servers import run_cli

ISSUER = "http://127.0.0.1:8080"
ADMIN_API = ISSUER + "/api/v1"


def rows(app: Flask) -> list[dict[str, Any]]:
    """Every audit event, oldest first, as plain dicts."""
    Services.of(app).events.flush()
    with app.app_context():
        engine = app.extensions["sqlalchemy"].engines[None]
    with engine.connect() as conn:
        result = conn.execute(sa.text("SELECT * FROM audit_events ORDER BY id"))
        out = [dict(row._mapping) for row in result]
    for row in out:
        if isinstance(row["details"], str):
            row["details"] = json.loads(row["details"])
    return out


def of(app: Flask, event: str) -> list[dict[str, Any]]:
    return [r for r in rows(app) if r["event"] == event]


def admin_token(app: Flask) -> str:
    """An access token of an admin service account, for this server's API."""
    with app.app_context():
        _, token = Services.of(app).service_accounts.create(
            "auditor", role="admin", created_by="test"
        )
    response = app.test_client().post(
        "/oauth2/token",
        data={"grant_type": "client_credentials", "client_secret": token, "audience": ADMIN_API},
    )
    assert response.status_code == 200, response.get_json()
    access: str = response.get_json()["access_token"]
    return access


def test_sign_ins_succeeded_and_failed(make_app: AppFactory) -> None:
    app = make_app()
    user = new_local_user(app)
    flask_sign_in(app, user, address="198.51.100.7")
    client = app.test_client()
    client.environ_base["REMOTE_ADDR"] = "203.0.113.9"
    page = client.get("/login").get_data(as_text=True)
    response = client.post(
        "/login",
        data={
            "csrf_token": form_field(page, "csrf_token"),
            "username": user,
            "password": "not the password at all",
        },
    )
    assert response.status_code == 401

    (login,) = of(app, "login")
    assert login["actor"] == user
    assert login["address"] == "198.51.100.7"
    assert login["details"]["method"] == "password"
    assert login["at"] is not None
    (failed,) = of(app, "login_failed")
    assert failed["actor"] == user
    assert failed["address"] == "203.0.113.9"
    assert "not the password" not in json.dumps(failed["details"])


def test_token_issuance_per_grant_without_token_values(make_app: AppFactory) -> None:
    clock = ManualClock()
    app = make_app(clock=clock, tokens={"refresh_retry_grace": "1s"})
    client = flask_sign_in(app, new_local_user(app))
    first = flask_tokens(client)
    second = flask_refresh(client, first["refresh_token"]).get_json()
    cc = app.test_client().post(
        "/oauth2/token", data={"grant_type": "client_credentials"}, auth=("ci", SECRETS["ci"])
    )
    assert cc.status_code == 200
    issued = of(app, "token_issued")
    grants = [r["details"]["grant_type"] for r in issued]
    assert grants == ["authorization_code", "refresh_token", "client_credentials"]
    assert {r["client_id"] for r in issued} == {"cli", "ci"}
    assert issued[-1]["actor"] == "ci"
    assert all(r["details"]["jti"] and r["details"]["scope"] is not None for r in issued)

    # refresh reuse after the grace: detected, and the family revoked
    clock.advance(1.3)
    assert flask_refresh(client, first["refresh_token"]).status_code == 400
    (reuse,) = of(app, "refresh_reuse_detected")
    assert reuse["client_id"] == "cli"
    assert reuse["details"]["family_id"]

    # no token value anywhere in the log
    secrets = [
        first["access_token"],
        first["refresh_token"],
        first["id_token"],
        second["access_token"],
        second["refresh_token"],
        cc.get_json()["access_token"],
    ]
    dump = json.dumps(rows(app), default=str)
    for value in secrets:
        assert value not in dump
        assert value.split(".")[-1] not in dump


def test_revocations(make_app: AppFactory) -> None:
    app = make_app()
    client = flask_sign_in(app, new_local_user(app))
    tokens = flask_tokens(client)
    for token in (tokens["access_token"], tokens["refresh_token"]):
        response = client.post("/oauth2/revoke", data={"token": token, "client_id": "cli"})
        assert response.status_code == 200
    assert len(of(app, "token_revoked")) == 1
    (family,) = of(app, "refresh_revoked")
    assert family["client_id"] == "cli"


def test_admin_changes_name_the_admin_and_where_from(make_app: AppFactory) -> None:
    app = make_app()
    token = admin_token(app)
    api = app.test_client()
    api.environ_base["REMOTE_ADDR"] = "192.0.2.44"
    headers = {"Authorization": f"Bearer {token}"}
    created = api.post(
        "/api/v1/users", json={"username": "carol", "role": "viewer"}, headers=headers
    )
    assert created.status_code == 201
    assert (
        api.patch("/api/v1/users/carol", json={"role": "user"}, headers=headers).status_code == 200
    )
    assert api.delete("/api/v1/users/carol", headers=headers).status_code == 204
    sa_created = api.post("/api/v1/service-accounts", json={"name": "deployer"}, headers=headers)
    assert sa_created.status_code == 201
    assert api.post("/api/v1/service-accounts/deployer/rotate", headers=headers).status_code == 200
    assert api.delete("/api/v1/service-accounts/deployer", headers=headers).status_code == 204
    assert api.post("/api/v1/keys/rotate", headers=headers).status_code == 201

    events = [r for r in rows(app) if r["address"] == "192.0.2.44"]
    assert [e["event"] for e in events] == [
        "user_created",
        "user_updated",
        "user_deleted",
        "service_account_created",
        "service_account_rotated",
        "service_account_revoked",
        "keys_rotated",
    ]
    with app.app_context():
        auditor = Services.of(app).service_accounts.get("auditor")
    assert {e["actor"] for e in events} == {auditor.client_id}
    assert events[0]["target"] == "carol"
    assert events[0]["details"]["role"] == "viewer"
    assert events[1]["details"]["role"] == "user"
    assert events[3]["target"] == "deployer"
    new_token = sa_created.get_json()["token"]
    assert new_token not in json.dumps(rows(app), default=str)


def test_paged_newest_first(make_app: AppFactory) -> None:
    app = make_app()
    token = admin_token(app)
    client = app.test_client()
    for _ in range(5):
        client.post(
            "/oauth2/token", data={"grant_type": "client_credentials"}, auth=("ci", SECRETS["ci"])
        )
    headers = {"Authorization": f"Bearer {token}"}
    seen: list[int] = []
    url: str | None = "/api/v1/audit-events?limit=2&event=token_issued"
    while url:
        page = client.get(url.removeprefix(ISSUER), headers=headers)
        assert page.status_code == 200, page.get_json()
        body = page.get_json()
        assert len(body["items"]) <= 2
        assert all(item["event"] == "token_issued" for item in body["items"])
        seen += [item["id"] for item in body["items"]]
        url = body["next"]
    assert seen == sorted(seen, reverse=True)
    assert len(seen) == len(set(seen)) == 6  # five for ci, one for the auditor
    bad = client.get("/api/v1/audit-events?limit=0", headers=headers)
    assert bad.status_code == 400
    assert bad.get_json()["error"] == "invalid_request"


def test_a_nul_in_a_username_is_still_recorded(make_app: AppFactory) -> None:
    """PostgreSQL text cannot hold NUL: the event is stored with it replaced."""
    app = make_app()
    client = app.test_client()
    page = client.get("/login").get_data(as_text=True)
    response = client.post(
        "/login",
        data={
            "csrf_token": form_field(page, "csrf_token"),
            "username": "adm\x00in",
            "password": "not the password at all",
        },
    )
    assert response.status_code == 401
    assert [r["actor"] for r in of(app, "login_failed")] == ["adm\ufffdin"]


@pytest.mark.live
def test_batched_issuance_rows_are_written_when_the_server_stops(
    tmp_path: Any,
) -> None:
    """``token_issued`` rows are written in batches; a server that stops writes the
    batch it holds (gunicorn's graceful stop), so none is lost."""
    from .support.factories import standard_config
    from .support.servers import free_port, start_server, stop_server

    port = free_port()
    config = standard_config(
        f"http://127.0.0.1:{port}", f"sqlite:///{tmp_path / 'a.db'}", tmp_path / "secret_key"
    )
    server = start_server(tmp_path, config, port)
    try:
        for _ in range(20):
            response = requests.post(
                server.url + "/oauth2/token",
                data={"grant_type": "client_credentials"},
                auth=("ci", SECRETS["ci"]),
                timeout=10,
            )
            assert response.status_code == 200
    finally:
        stop_server(server)
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'a.db'}")
    with engine.connect() as conn:
        count = conn.execute(
            sa.text("SELECT count(*) FROM audit_events WHERE event = 'token_issued'")
        ).scalar_one()
    engine.dispose()
    assert count == 20


# -- retention (issue 9.11) ------------------------------------------------------------


@pytest.mark.live
def test_audit_prune_deletes_what_is_past_the_retention(
    make_app: AppFactory, backend: Backend, tmp_path: Path
) -> None:
    app = make_app()
    old = datetime.now(UTC) - timedelta(days=100)
    recent = datetime.now(UTC) - timedelta(days=10)
    Services.of(app).audit.record_many(
        [
            {"event": "login_failed", "at": old, "target": "old"},
            {"event": "login_failed", "at": recent, "target": "recent"},
        ]
    )
    config = standard_config("http://127.0.0.1:8080", backend.database_url, tmp_path / "secret_key")
    if backend.redis_url:
        config["redis_url"] = backend.redis_url
    path = tmp_path / "authserver.yaml"
    path.write_text(yaml.safe_dump(config))

    missing = run_cli("--config", str(path), "audit", "prune", cwd=tmp_path)
    assert missing.returncode == 2
    assert "set audit_retention in the config or pass --older-than" in missing.stderr
    assert "Traceback" not in missing.stderr
    bad = run_cli("--config", str(path), "audit", "prune", "--older-than", "soon", cwd=tmp_path)
    assert bad.returncode == 2
    assert "--older-than" in bad.stderr

    path.write_text(yaml.safe_dump({**config, "audit_retention": "90d"}))
    pruned = run_cli("--config", str(path), "audit", "prune", cwd=tmp_path)
    assert pruned.returncode == 0, pruned.stderr
    assert pruned.stdout.startswith("deleted 1 audit events from before ")
    stored = rows(app)
    targets = [e["target"] for e in stored if e["event"] == "login_failed"]
    assert targets == ["recent"]
    (record,) = [e for e in stored if e["event"] == "audit_pruned"]
    assert record["actor"].startswith("cli:")
    again = run_cli("--config", str(path), "audit", "prune", "--older-than", "5d", cwd=tmp_path)
    assert again.returncode == 0
    assert again.stdout.startswith("deleted 1 audit events")
    remaining = [e["event"] for e in rows(app)]
    assert "login_failed" not in remaining
    assert remaining.count("audit_pruned") == 2
