"""The admin layer (``authserver/admin/``): one copy of each admin operation, its rules
and its audit event, whichever front end (admin API, dashboard, CLI) calls it.

The operations and the audit trail work without Flask; the admin API now keeps the
dashboard's rule that an admin does not lock themself out, and every front end records
the same ``service_account_created`` event (with ``scopes``).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from flask import Flask

from authserver.admin.audit import Actor, AuditTrail
from authserver.admin.users import UserAdmin, check_not_yourself
from authserver.identity.users import NotFound, UserError, UserService
from authserver.settings import RbacSettings
from authserver.storage.audit import SqlAuditLog
from authserver.storage.users import SqlUserRepository

from .conftest import AppFactory
from .support.factories import new_local_user
from .support.flows import flask_authorize, flask_sign_in, pkce_pair
from .test_audit import of
from .test_users import engine_of

ISSUER = "http://127.0.0.1:8080"
API = "/api/v1"
REDIRECT_URI = "http://127.0.0.1:43210/callback"


class Recorder:
    """An event sink that keeps what it is given."""

    def __init__(self) -> None:
        self.events: list[tuple[str, dict[str, Any]]] = []

    def __call__(self, event: str, **details: Any) -> None:
        self.events.append((event, details))


def test_operations_record_their_actor_without_flask(make_app: AppFactory) -> None:
    app = make_app()
    users = UserService(SqlUserRepository(engine_of(app)), RbacSettings())
    events = Recorder()
    by = Actor(name="cli:ops", address="local")
    admin = UserAdmin(users, RbacSettings(), events, by)
    person, generated = admin.create("nora", None, None)
    assert generated
    admin.update("nora", role="admin", disabled=None)
    admin.update("nora", role="admin", disabled=None)  # no change: no event
    users.create_local("keeper", None, "admin")  # so nora is not the last admin
    admin.delete("nora")
    assert events.events == [
        (
            "user_created",
            {"actor": "cli:ops", "address": "local", "target": "nora", "role": "user"},
        ),
        (
            "user_updated",
            {"actor": "cli:ops", "address": "local", "target": "nora", "role": "admin"},
        ),
        ("user_deleted", {"actor": "cli:ops", "address": "local", "target": "nora"}),
    ]
    with pytest.raises(NotFound, match="no user 'nora'"):
        admin.get("nora")
    assert person.username == "nora"


def test_an_admin_may_not_lock_themself_out() -> None:
    me = Actor(name="root", address="192.0.2.1", person_id="p-1")

    class Target:
        id = "p-1"

    for what in ("delete", "disable", "take the admin role from"):
        with pytest.raises(UserError, match=f"You cannot {what} yourself here"):
            check_not_yourself(me, Target(), what)  # type: ignore[arg-type]
    check_not_yourself(Actor(name="cli:ops", address="local"), Target(), "delete")  # type: ignore[arg-type]
    check_not_yourself(me, None, "delete")


def test_the_audit_trail_takes_who_and_where_from_its_scope(make_app: AppFactory) -> None:
    app = make_app()
    noted: list[str] = []

    class Scope:
        def context(self) -> Actor | None:
            return Actor(name="alice", address="198.51.100.7")

        def note_client_id(self, client_id: str) -> None:
            noted.append(client_id)

    trail = AuditTrail(SqlAuditLog(engine_of(app)), scope=Scope())
    trail("token_revoked", client_id="cli", claims={"jti": "j-1", "sub": "s-1"})
    trail("user_deleted", actor="cli:ops", address="local", target="bob")
    trail.flush()
    page = trail.audit_log.page(before=None, limit=10, event=None)
    by_event = {row.event: row for row in page}
    assert by_event["token_revoked"].actor == "alice"
    assert by_event["token_revoked"].address == "198.51.100.7"
    assert by_event["user_deleted"].actor == "cli:ops"  # what is given wins
    assert by_event["user_deleted"].address == "local"
    assert noted == ["cli"]


def _person_api_token(app: Flask, username: str) -> str:
    """An access token for the admin API of a person signed in through the login page."""
    client = flask_sign_in(app, username)
    verifier, challenge = pkce_pair()
    response = flask_authorize(
        client,
        {
            "response_type": "code",
            "client_id": "cli",
            "redirect_uri": REDIRECT_URI,
            "scope": "openid",
            "state": "s",
            "code_challenge": challenge,
            "code_challenge_method": "S256",
            "resource": ISSUER + API,
        },
    )
    assert response.status_code == 302, response.get_data(as_text=True)
    code = parse_qs(urlsplit(response.headers["Location"]).query)["code"][0]
    tokens = client.post(
        "/oauth2/token",
        data={
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": REDIRECT_URI,
            "client_id": "cli",
            "code_verifier": verifier,
        },
    )
    assert tokens.status_code == 200, tokens.get_data(as_text=True)
    token: str = tokens.get_json()["access_token"]
    return token


def test_the_admin_api_keeps_an_admin_from_locking_themself_out(make_app: AppFactory) -> None:
    app = make_app()
    me = new_local_user(app, "admin")
    other = new_local_user(app, "admin")
    headers = {"Authorization": f"Bearer {_person_api_token(app, me)}"}
    api = app.test_client()
    for method, body, what in (
        ("patch", {"role": "user"}, "take the admin role from"),
        ("patch", {"disabled": True}, "disable"),
        ("delete", None, "delete"),
    ):
        response = getattr(api, method)(f"{API}/users/{me}", json=body, headers=headers)
        assert response.status_code == 400, response.get_data(as_text=True)
        assert response.get_json() == {
            "error": "invalid_request",
            "error_description": f"You cannot {what} yourself here; another admin, or "
            "`authserver users`, can.",
        }
    mine = api.get(f"{API}/users/{me}", headers=headers).get_json()
    assert (mine["role"], mine["disabled"]) == ("admin", False)
    # Another admin is fair game, and so is one's own admin role kept as it is.
    assert (
        api.patch(f"{API}/users/{me}", json={"role": "admin"}, headers=headers).status_code == 200
    )
    assert (
        api.patch(f"{API}/users/{other}", json={"role": "user"}, headers=headers).status_code == 200
    )
    assert api.delete(f"{API}/users/{other}", headers=headers).status_code == 204


def test_service_account_events_are_the_same_from_the_api_as_from_the_cli(
    make_app: AppFactory,
) -> None:
    app = make_app()
    me = new_local_user(app, "admin")
    headers = {"Authorization": f"Bearer {_person_api_token(app, me)}"}
    api = app.test_client()
    api.environ_base["REMOTE_ADDR"] = "192.0.2.9"
    created = api.post(
        f"{API}/service-accounts",
        json={"name": "builder", "role": "user", "scopes": ["read"]},
        headers=headers,
    )
    assert created.status_code == 201, created.get_data(as_text=True)
    assert api.post(f"{API}/service-accounts/builder/rotate", headers=headers).status_code == 200
    assert api.delete(f"{API}/service-accounts/builder", headers=headers).status_code == 204
    client_id = created.get_json()["service_account"]["client_id"]
    (row,) = of(app, "service_account_created")
    assert (row["actor"], row["address"], row["target"], row["client_id"]) == (
        me,
        "192.0.2.9",
        "builder",
        client_id,
    )
    assert row["details"]["role"] == "user"
    assert row["details"]["scopes"] == "read"
    assert "expires_at" in row["details"]
    for event in ("service_account_rotated", "service_account_revoked"):
        (row,) = of(app, event)
        assert (row["actor"], row["client_id"], row["details"]) == (me, client_id, {"role": "user"})
