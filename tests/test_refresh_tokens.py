"""Refresh tokens (RFC 6749 §6): rotation, reuse detection (RFC 9700 §4.14.2), the retry
grace window, revocation (RFC 7009), client binding, scope, expiry, and the person
re-read on every refresh. Live servers for the wire behaviour, in-process apps where a
setting has to be short (grace, idle and absolute expiry) or a person disabled.
"""

from __future__ import annotations

import secrets

import pytest
import redis
import requests
import sqlalchemy as sa
import yaml
from authlib.integrations.base_client import OAuthError
from authlib.integrations.requests_client import OAuth2Session

from authserver.clock import ManualClock
from authserver.web.services import Services

from .conftest import AppFactory
from .support.factories import SECRETS, database_url, new_local_user, new_user, token_row
from .support.flows import (
    OFFLINE_SCOPE,
    REDIRECT_URI,
    assert_oauth_error,
    code_for,
    flask_refresh,
    flask_sign_in,
    flask_tokens,
    jwt_claims,
    live_tokens,
    redeem,
    refresh,
    signed_in_session,
)
from .support.servers import InProcessServer


@pytest.fixture(scope="module")
def live_user(app_server: InProcessServer) -> str:
    """One person for the tests that do not change theirs."""
    return new_user(app_server)


# -- rotation -------------------------------------------------------------------------


def test_rotation_with_authlib_client(app_server: InProcessServer, live_user: str) -> None:
    first = live_tokens(app_server, live_user)
    client = OAuth2Session(client_id="cli", token_endpoint_auth_method="none")
    token_url = app_server.url + "/oauth2/token"
    try:
        second = client.refresh_token(token_url, refresh_token=first["refresh_token"])
        third = client.refresh_token(token_url, refresh_token=second["refresh_token"])
    finally:
        client.close()
    tokens = [first["refresh_token"], second["refresh_token"], third["refresh_token"]]
    assert len(set(tokens)) == 3, "every refresh rotates the refresh token"
    assert all(t.startswith("as_rt_") for t in tokens)
    for body in (second, third):
        assert body["token_type"].lower() == "bearer"
        assert body["expires_in"] > 0
        assert body["scope"] == OFFLINE_SCOPE
        claims = jwt_claims(body["access_token"])
        assert claims["client_id"] == "cli"
        assert claims["iss"] == app_server.url
        assert claims["roles"] == ["user"]
        assert claims["sub"] == jwt_claims(first["access_token"])["sub"]
    assert second["access_token"] != first["access_token"]
    # The old tokens are marked used (rotated), all three are of one family.
    url = database_url(app_server)
    rows = [token_row(url, t) for t in tokens]
    assert all(rows), rows
    assert rows[0]["rotated_at"] is not None  # type: ignore[index]
    assert rows[1]["rotated_at"] is not None  # type: ignore[index]
    assert rows[2]["rotated_at"] is None  # type: ignore[index]
    assert len({row["family_id"] for row in rows if row}) == 1
    assert all(row["revoked_at"] is None for row in rows if row)


def test_retry_within_grace_returns_the_same_response(
    app_server: InProcessServer, live_user: str
) -> None:
    first = live_tokens(app_server, live_user)
    response = refresh(app_server.url, first["refresh_token"])
    assert response.status_code == 200, response.text
    retry = refresh(app_server.url, first["refresh_token"])  # lost response, same token
    assert retry.status_code == 200, retry.text
    assert retry.json()["refresh_token"] == response.json()["refresh_token"]
    assert retry.json()["access_token"] == response.json()["access_token"]
    # No theft was assumed: the successor still works.
    after = refresh(app_server.url, response.json()["refresh_token"])
    assert after.status_code == 200, after.text


def test_reuse_after_grace_revokes_the_family(make_app: AppFactory) -> None:
    clock = ManualClock()
    app = make_app(clock=clock, tokens={"refresh_retry_grace": "1s"})
    client = flask_sign_in(app, new_local_user(app))
    first = flask_tokens(client)
    second = flask_refresh(client, first["refresh_token"])
    assert second.status_code == 200, second.get_json()
    third = flask_refresh(client, second.get_json()["refresh_token"])
    assert third.status_code == 200, third.get_json()
    newest = third.get_json()["refresh_token"]
    clock.advance(1.3)
    assert_oauth_error(flask_refresh(client, first["refresh_token"]), "invalid_grant")
    # Theft detected: the whole family is dead, the newest token included.
    assert_oauth_error(flask_refresh(client, newest), "invalid_grant")


def test_unknown_and_malformed_refresh_tokens(app_server: InProcessServer) -> None:
    for token in ("as_rt_" + secrets.token_urlsafe(32), "nonsense", "as_rt_" + "x" * 500):
        assert_oauth_error(refresh(app_server.url, token), "invalid_grant")


# -- revocation -------------------------------------------------------------------------


def revoke(url: str, token: str, auth: tuple[str, str] | None = None) -> requests.Response:
    data = {"token": token, "token_type_hint": "refresh_token"}
    if auth is None:
        data["client_id"] = "cli"
    return requests.post(url + "/oauth2/revoke", data=data, auth=auth, timeout=30)


def test_revoking_the_current_token_kills_the_family(
    app_server: InProcessServer, live_user: str
) -> None:
    first = live_tokens(app_server, live_user)
    current = refresh(app_server.url, first["refresh_token"]).json()["refresh_token"]
    response = revoke(app_server.url, current)
    assert response.status_code == 200, response.text
    assert_oauth_error(refresh(app_server.url, current), "invalid_grant")
    row = token_row(database_url(app_server), current)
    assert row is not None
    assert row["revoked_at"] is not None


def test_revoking_an_old_token_kills_the_newest(
    app_server: InProcessServer, live_user: str
) -> None:
    first = live_tokens(app_server, live_user)
    current = refresh(app_server.url, first["refresh_token"]).json()["refresh_token"]
    assert revoke(app_server.url, first["refresh_token"]).status_code == 200
    assert_oauth_error(refresh(app_server.url, current), "invalid_grant")
    # Inside the grace window too: a revoked family gives nothing back.
    assert_oauth_error(refresh(app_server.url, first["refresh_token"]), "invalid_grant")


def test_another_client_cannot_revoke_or_use_the_token(
    app_server: InProcessServer, live_user: str
) -> None:
    token = live_tokens(app_server, live_user)["refresh_token"]
    webapp = ("webapp", SECRETS["webapp"])
    # §2.1: the server checks the token was issued to the revoking client.
    revoke(app_server.url, token, auth=webapp)
    # RFC 6749 §6 / §10.4: the token is bound to the client it was issued to.
    assert_oauth_error(refresh(app_server.url, token, auth=webapp), "invalid_grant")
    response = refresh(app_server.url, token)
    assert response.status_code == 200, response.text


# -- scope ------------------------------------------------------------------------------


def test_scope_may_narrow_but_not_widen(app_server: InProcessServer, live_user: str) -> None:
    first = live_tokens(app_server, live_user)
    wider = refresh(app_server.url, first["refresh_token"], scope=OFFLINE_SCOPE + " all")
    assert_oauth_error(wider, "invalid_scope")
    # The refused request did not use the token up.
    narrower = refresh(app_server.url, first["refresh_token"], scope="openid offline_access")
    assert narrower.status_code == 200, narrower.text
    body = narrower.json()
    assert body["scope"] == "openid offline_access"
    assert jwt_claims(body["access_token"])["scope"] == "openid offline_access"


# -- the person is re-read --------------------------------------------------------------


@pytest.mark.live
def test_role_change_shows_in_the_next_token(app_server: InProcessServer) -> None:
    user = new_user(app_server)
    first = live_tokens(app_server, user)
    assert jwt_claims(first["access_token"])["roles"] == ["user"]
    result = app_server.cli("users", "set-role", user, "admin")
    assert result.returncode == 0, result.stderr
    response = refresh(app_server.url, first["refresh_token"])
    assert response.status_code == 200, response.text
    assert jwt_claims(response.json()["access_token"])["roles"] == ["admin"]


@pytest.mark.live
def test_deleted_user_cannot_refresh(app_server: InProcessServer) -> None:
    user = new_user(app_server)
    first = live_tokens(app_server, user)
    result = app_server.cli("users", "delete", user)
    assert result.returncode == 0, result.stderr
    assert_oauth_error(refresh(app_server.url, first["refresh_token"]), "invalid_grant")


def test_disabled_user_cannot_refresh(make_app: AppFactory) -> None:
    app = make_app()
    user = new_local_user(app, role="viewer")
    client = flask_sign_in(app, user)
    first = flask_tokens(client)
    assert jwt_claims(first["access_token"])["roles"] == ["viewer"]
    with app.app_context():
        Services.of(app).users.set_disabled(user, True)
    assert_oauth_error(flask_refresh(client, first["refresh_token"]), "invalid_grant")
    # Enabling the person again does not bring the old sign-in back.
    with app.app_context():
        Services.of(app).users.set_disabled(user, False)
    assert_oauth_error(flask_refresh(client, first["refresh_token"]), "invalid_grant")


# -- storage ------------------------------------------------------------------------------


def _every_value(url: str) -> list[tuple[str, object]]:
    """Every value of every row of every table: ``(table, value)``."""
    engine = sa.create_engine(url)
    try:
        metadata = sa.MetaData()
        metadata.reflect(engine)
        values: list[tuple[str, object]] = []
        with engine.connect() as conn:
            for table in metadata.sorted_tables:
                for row in conn.execute(sa.select(table)):
                    values += [(table.name, value) for value in row]
    finally:
        engine.dispose()
    return values


def _contains(value: object, secret: str) -> bool:
    if isinstance(value, bytes | bytearray | memoryview):
        return secret.encode() in bytes(value)
    return secret in str(value)


def test_database_holds_no_raw_refresh_token(app_server: InProcessServer, live_user: str) -> None:
    first = live_tokens(app_server, live_user)
    second = refresh(app_server.url, first["refresh_token"]).json()
    tokens = [first["refresh_token"], second["refresh_token"]]
    url = database_url(app_server)
    for token in tokens:
        row = token_row(url, token)
        assert row is not None, "stored under its SHA-256"
        assert row["token_hash"] != token
        secret_part = token.removeprefix("as_rt_")
        leaks = [
            (table, value) for table, value in _every_value(url) if _contains(value, secret_part)
        ]
        assert leaks == [], f"raw refresh token stored in {[t for t, _ in leaks]}"
    config = yaml.safe_load(app_server.config_path.read_text())
    if config.get("redis_url"):
        client = redis.Redis.from_url(config["redis_url"])
        try:
            for key in client.scan_iter(count=1000):
                assert not any(_contains(key, t.removeprefix("as_rt_")) for t in tokens)
                if client.type(key) == b"string":
                    value = client.get(key) or b""
                    assert not any(_contains(value, t.removeprefix("as_rt_")) for t in tokens), key
        finally:
            client.close()


# -- expiry ---------------------------------------------------------------------------------


def test_idle_expiry(make_app: AppFactory) -> None:
    clock = ManualClock()
    app = make_app(clock=clock, tokens={"refresh_token_idle_ttl": "1s"})
    client = flask_sign_in(app, new_local_user(app))
    first = flask_tokens(client)
    clock.advance(1.5)
    assert_oauth_error(flask_refresh(client, first["refresh_token"]), "invalid_grant")


def test_use_restarts_the_idle_clock(make_app: AppFactory) -> None:
    clock = ManualClock()
    app = make_app(clock=clock, tokens={"refresh_token_idle_ttl": "2s"})
    client = flask_sign_in(app, new_local_user(app))
    token = flask_tokens(client)["refresh_token"]
    for _ in range(2):  # 2.4 s in all: longer than the idle TTL, each use within it
        clock.advance(1.2)
        response = flask_refresh(client, token)
        assert response.status_code == 200, response.get_json()
        token = response.get_json()["refresh_token"]


def test_absolute_expiry(make_app: AppFactory) -> None:
    clock = ManualClock()
    app = make_app(clock=clock, tokens={"refresh_token_ttl": "2s", "refresh_token_idle_ttl": "1h"})
    client = flask_sign_in(app, new_local_user(app))
    token = flask_tokens(client)["refresh_token"]
    clock.advance(1)
    response = flask_refresh(client, token)
    assert response.status_code == 200, response.get_json()
    clock.advance(1.3)
    # The fresh successor is inside its idle TTL, but the family's lifetime is over.
    assert_oauth_error(flask_refresh(client, response.get_json()["refresh_token"]), "invalid_grant")


def test_refresh_without_offline_access_gets_no_refresh_token(
    app_server: InProcessServer, live_user: str
) -> None:
    """``cli`` is registered with offline_access: without asking for it, no refresh token."""
    session = signed_in_session(app_server.url, live_user)
    code, verifier, _ = code_for(
        session, app_server.url, redirect_uri=REDIRECT_URI, scope="openid profile"
    )
    response = redeem(app_server.url, code, verifier)
    assert response.status_code == 200, response.text
    assert "refresh_token" not in response.json()


def test_authlib_client_sees_invalid_grant(app_server: InProcessServer) -> None:
    client = OAuth2Session(client_id="cli", token_endpoint_auth_method="none")
    try:
        with pytest.raises(OAuthError) as raised:
            client.refresh_token(
                app_server.url + "/oauth2/token",
                refresh_token="as_rt_" + secrets.token_urlsafe(32),
            )
    finally:
        client.close()
    assert raised.value.error == "invalid_grant"
