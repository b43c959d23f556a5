"""Revoking a refresh-token family also denies the access tokens it issued (RFC 7009 §2.1:
revoking a refresh token "SHOULD also invalidate all access tokens based on the same
authorization grant"; RFC 9700 §4.14.2 for reuse)."""

from __future__ import annotations

import pytest
from authlib.integrations.base_client import OAuthError
from authlib.integrations.requests_client import OAuth2Session
from flask.testing import FlaskClient

from authserver.clock import ManualClock
from authserver.errors import DependencyUnavailable
from authserver.oauth.refresh import FAMILY_TOKENS_PREFIX
from authserver.web.services import Services

from .conftest import AppFactory
from .support.factories import PASSWORD, new_local_user, new_user
from .support.flows import (
    assert_oauth_error,
    flask_refresh,
    flask_sign_in,
    flask_tokens,
    introspect,
    live_tokens,
    refresh,
)
from .support.servers import LiveServer
from .test_rbac import admin_api, api, person_tokens


def _userinfo(client: FlaskClient, access_token: str) -> int:
    return client.get(
        "/oauth2/userinfo", headers={"Authorization": f"Bearer {access_token}"}
    ).status_code


def test_revoking_a_refresh_token_denies_the_familys_access_tokens(
    make_app: AppFactory,
) -> None:
    app = make_app()
    client = flask_sign_in(app, new_local_user(app))
    first = flask_tokens(client)
    second = flask_refresh(client, first["refresh_token"]).get_json()
    other = flask_tokens(client)  # another sign-in: another family
    assert _userinfo(client, first["access_token"]) == 200
    assert _userinfo(client, second["access_token"]) == 200
    revoked = client.post(
        "/oauth2/revoke", data={"token": second["refresh_token"], "client_id": "cli"}
    )
    assert revoked.status_code == 200
    assert _userinfo(client, first["access_token"]) == 401
    assert _userinfo(client, second["access_token"]) == 401
    assert _userinfo(client, other["access_token"]) == 200


def test_a_retried_password_change_denies_what_a_failed_one_could_not(
    make_app: AppFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The families die durably first; when the ephemeral store fails while their access
    tokens are denied, the change is an error (503 at the API) and the retry must still
    deny them, though the families are already revoked by then."""
    app = make_app()
    username = new_local_user(app)
    client = flask_sign_in(app, username)
    tokens = flask_tokens(client)
    assert _userinfo(client, tokens["access_token"]) == 200
    owner = Services.of(app).oauth.refresh_tokens
    real_get = owner.cache.get

    def failing_get(key: str) -> bytes | None:
        if key.startswith(FAMILY_TOKENS_PREFIX):
            raise DependencyUnavailable("the ephemeral store did not answer")
        return real_get(key)

    users = Services.of(app).users
    with app.app_context():
        monkeypatch.setattr(owner.cache, "get", failing_get)
        with pytest.raises(DependencyUnavailable):
            users.set_password(username, "a much newer password")
        monkeypatch.setattr(owner.cache, "get", real_get)
        assert _userinfo(client, tokens["access_token"]) == 200  # not denied yet
        users.set_password(username, "a much newer password")  # the retry
    assert _userinfo(client, tokens["access_token"]) == 401
    assert_oauth_error(flask_refresh(client, tokens["refresh_token"]), "invalid_grant")


def test_reuse_denies_the_access_tokens_of_the_family(make_app: AppFactory) -> None:
    clock = ManualClock()
    app = make_app(clock=clock, tokens={"refresh_retry_grace": "1s"})
    client = flask_sign_in(app, new_local_user(app))
    first = flask_tokens(client)
    second = flask_refresh(client, first["refresh_token"]).get_json()
    clock.advance(1.2)
    reused = flask_refresh(client, first["refresh_token"])
    assert reused.status_code == 400
    assert reused.get_json()["error"] == "invalid_grant"
    assert _userinfo(client, second["access_token"]) == 401
    assert _userinfo(client, first["access_token"]) == 401


# -- a new password ends the person's families, access tokens included ------------------


def test_a_new_password_denies_the_live_access_tokens_of_the_persons_families(
    live_server: LiveServer,
) -> None:
    """A password reset is how an account is taken back: the refresh tokens die with the
    old password, and so do the access tokens they issued (as ``/oauth2/revoke`` does,
    RFC 7009 §2.1), on every sign-in of that person; another person's stay live."""
    user, bystander = new_user(live_server), new_user(live_server)
    api_tokens = person_tokens(live_server, user, admin_api(live_server))
    tokens = live_tokens(live_server, user)
    others = live_tokens(live_server, bystander)
    for token in (tokens, others):
        assert introspect(live_server, token["access_token"])["active"] is True
    assert api(live_server, "GET", "/me", api_tokens["access_token"]).status_code == 200

    # The person sets a new one, as they do today: at the admin API, with the current one.
    changed = api(
        live_server,
        "PUT",
        f"/users/{user}/password",
        api_tokens["access_token"],
        json={"password": "a much newer password", "current_password": PASSWORD},
    )
    assert changed.status_code == 204, changed.text

    assert introspect(live_server, tokens["access_token"]) == {"active": False}
    assert api(live_server, "GET", "/me", api_tokens["access_token"]).status_code == 401
    for token in (api_tokens, tokens):
        assert_oauth_error(refresh(live_server.url, token["refresh_token"]), "invalid_grant")
    assert introspect(live_server, others["access_token"])["active"] is True
    assert refresh(live_server.url, others["refresh_token"]).status_code == 200


def test_an_admin_setting_a_password_denies_the_persons_access_tokens(
    live_server: LiveServer,
) -> None:
    user, admin = new_user(live_server), new_user(live_server, "admin")
    tokens = live_tokens(live_server, user)
    admin_token = person_tokens(live_server, admin, admin_api(live_server))["access_token"]
    session = OAuth2Session("cli", token=tokens, token_endpoint_auth_method="none")
    assert session.get(live_server.url + "/oauth2/userinfo", timeout=10).status_code == 200

    changed = api(
        live_server,
        "PUT",
        f"/users/{user}/password",
        admin_token,
        json={"password": "an admin's new password"},
    )
    assert changed.status_code == 204, changed.text

    assert introspect(live_server, tokens["access_token"]) == {"active": False}
    assert session.get(live_server.url + "/oauth2/userinfo", timeout=10).status_code == 401
    try:
        with pytest.raises(OAuthError) as raised:
            session.refresh_token(live_server.url + "/oauth2/token")
    finally:
        session.close()
    assert raised.value.error == "invalid_grant"


def test_deleting_a_person_denies_their_access_tokens(live_server: LiveServer) -> None:
    user, admin = new_user(live_server), new_user(live_server, "admin")
    tokens = live_tokens(live_server, user)
    admin_token = person_tokens(live_server, admin, admin_api(live_server))["access_token"]
    assert introspect(live_server, tokens["access_token"])["active"] is True

    deleted = api(live_server, "DELETE", f"/users/{user}", admin_token)
    assert deleted.status_code == 204, deleted.text

    assert introspect(live_server, tokens["access_token"]) == {"active": False}
    assert_oauth_error(refresh(live_server.url, tokens["refresh_token"]), "invalid_grant")
