"""Revoking a refresh-token family also denies the access tokens it issued (RFC 7009 §2.1:
revoking a refresh token "SHOULD also invalidate all access tokens based on the same
authorization grant"; RFC 9700 §4.14.2 for reuse)."""

from __future__ import annotations

import time

from flask.testing import FlaskClient

from .conftest import AppFactory
from .support.factories import new_local_user
from .support.flows import flask_refresh, flask_sign_in, flask_tokens


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


def test_reuse_denies_the_access_tokens_of_the_family(make_app: AppFactory) -> None:
    app = make_app(tokens={"refresh_retry_grace": "1s"})
    client = flask_sign_in(app, new_local_user(app))
    first = flask_tokens(client)
    second = flask_refresh(client, first["refresh_token"]).get_json()
    time.sleep(1.2)
    reused = flask_refresh(client, first["refresh_token"])
    assert reused.status_code == 400
    assert reused.get_json()["error"] == "invalid_grant"
    assert _userinfo(client, second["access_token"]) == 401
    assert _userinfo(client, first["access_token"]) == 401
