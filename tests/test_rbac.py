"""RBAC end to end (issue #4): roles in tokens, enforced by the admin API and by the
example resource server; a role change shows in the next refreshed token and, at the
admin API, at once.

Everything runs against a live ``authserver serve``: people sign in through the login
form and get tokens with the code flow (PKCE) of the public ``cli`` client.
"""

from __future__ import annotations

from typing import Any

import pytest
import requests

from .support.factories import AUDIENCES, PASSWORD, SECRETS, new_user
from .support.flows import REDIRECT_URI, code_for, jwt_claims, redeem, refresh, signed_in_session
from .support.servers import InProcessServer
from .test_resource import load_example

SCOPE = "openid profile offline_access all"


def person_tokens(
    server: InProcessServer, username: str, audience: str, password: str = PASSWORD
) -> dict[str, Any]:
    """The token response for ``username`` through the code flow, for ``audience``."""
    session = signed_in_session(server.url, username, password)
    code, verifier, _ = code_for(
        session, server.url, redirect_uri=REDIRECT_URI, scope=SCOPE, resource=audience
    )
    response = redeem(server.url, code, verifier)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def admin_api(server: InProcessServer) -> str:
    """The admin API's URL: the ``aud`` its tokens must carry."""
    return server.url + "/api/v1"


def api(
    server: InProcessServer, method: str, path: str, token: str, **kw: Any
) -> requests.Response:
    return requests.request(
        method,
        f"{server.url}/api/v1{path}",
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
        **kw,
    )


def assert_forbidden(response: requests.Response) -> None:
    assert response.status_code == 403, response.text
    assert response.json()["error"] == "insufficient_scope"
    assert 'error="insufficient_scope"' in response.headers["WWW-Authenticate"]


def test_user_role_reads_but_cannot_change(app_server: InProcessServer) -> None:
    user = new_user(app_server)
    token = person_tokens(app_server, user, admin_api(app_server))["access_token"]
    claims = jwt_claims(token)
    assert claims["roles"] == ["user"]
    assert claims["aud"] == admin_api(app_server)
    assert claims["groups"] == []

    listed = api(app_server, "GET", "/users", token)
    assert listed.status_code == 200, listed.text
    assert user in [u["username"] for u in listed.json()["items"]]
    roles = api(app_server, "GET", "/roles", token).json()["items"]
    assert {r["name"]: r["permissions"] for r in roles}["viewer"] == ["read"]

    assert_forbidden(api(app_server, "POST", "/users", token, json={"username": "mallory"}))
    assert_forbidden(api(app_server, "PATCH", f"/users/{user}", token, json={"role": "admin"}))
    assert_forbidden(api(app_server, "GET", "/service-accounts", token))
    assert_forbidden(api(app_server, "POST", "/keys/rotate", token))
    assert_forbidden(api(app_server, "GET", "/audit-events", token))
    # nothing changed
    me = api(app_server, "GET", "/me", token).json()
    assert me["user"]["role"] == "user"
    assert api(app_server, "GET", "/users/mallory", token).status_code == 404


def test_user_changes_only_their_own_password(app_server: InProcessServer) -> None:
    user, other = new_user(app_server), new_user(app_server)
    token = person_tokens(app_server, user, admin_api(app_server))["access_token"]
    new_password = "a much newer password"
    path = f"/users/{user}/password"
    # one's own password only with the current one: a stolen token is not the account
    for wrong in ({"password": new_password}, {"password": new_password, "current_password": "x"}):
        refused = api(app_server, "PUT", path, token, json=wrong)
        assert refused.status_code == 400, refused.text
        assert "current_password" in refused.json()["error_description"]
    changed = api(
        app_server,
        "PUT",
        path,
        token,
        json={"password": new_password, "current_password": PASSWORD},
    )
    assert changed.status_code == 204, changed.text
    # a new password ends the tokens of the old one (as /oauth2/revoke would)
    ended = api(app_server, "GET", "/me", token)
    assert ended.status_code == 401, ended.text
    assert ended.json()["error"] == "invalid_token"
    assert signed_in_session(app_server.url, user, new_password)
    token = person_tokens(app_server, user, admin_api(app_server), new_password)["access_token"]
    assert_forbidden(
        api(app_server, "PUT", f"/users/{other}/password", token, json={"password": new_password})
    )
    short = api(
        app_server,
        "PUT",
        path,
        token,
        json={"password": "short", "current_password": new_password},
    )
    assert short.status_code == 400
    assert "at least 12 characters" in short.json()["error_description"]


@pytest.mark.live
def test_role_change_shows_in_the_refreshed_token_and_at_the_api(
    app_server: InProcessServer,
) -> None:
    user = new_user(app_server)
    first = person_tokens(app_server, user, admin_api(app_server))
    assert jwt_claims(first["access_token"])["roles"] == ["user"]

    assert app_server.cli("users", "set-role", user, "admin").returncode == 0
    refreshed = refresh(app_server.url, first["refresh_token"])
    assert refreshed.status_code == 200, refreshed.text
    admin_token = refreshed.json()["access_token"]
    assert jwt_claims(admin_token)["roles"] == ["admin"]
    created = api(app_server, "POST", "/users", admin_token, json={"username": f"{user}-b"})
    assert created.status_code == 201, created.text

    # Demoted: the admin API reads the role from the database, not from the token.
    new_user(app_server, "admin")  # so that user is not the last admin (issue 13.4)
    assert app_server.cli("users", "set-role", user, "viewer").returncode == 0
    assert_forbidden(api(app_server, "GET", "/service-accounts", admin_token))
    assert api(app_server, "GET", "/users", admin_token).status_code == 403
    # Promoted again: let in again, with the same token.
    assert app_server.cli("users", "set-role", user, "admin").returncode == 0
    with_admin = api(app_server, "GET", "/service-accounts", admin_token)
    assert with_admin.status_code == 200, with_admin.text


def test_tokens_for_another_audience_are_refused(app_server: InProcessServer) -> None:
    """RFC 9068 §4: the admin API takes only tokens whose ``aud`` is this server."""
    token = requests.post(
        app_server.url + "/oauth2/token",
        data={"grant_type": "client_credentials"},
        auth=("ci-b64", SECRETS["ci-b64"]),
        timeout=10,
    ).json()["access_token"]
    assert jwt_claims(token)["aud"] == AUDIENCES[0]
    assert jwt_claims(token)["roles"] == ["admin"]
    response = api(app_server, "GET", "/users", token)
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_token"
    assert 'error="invalid_token"' in response.headers["WWW-Authenticate"]
    missing = requests.get(app_server.url + "/api/v1/users", timeout=10)
    assert missing.status_code == 401
    assert "error=" not in missing.headers["WWW-Authenticate"]  # RFC 6750 §3.1


def test_example_resource_server_admin_route(
    app_server: InProcessServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RESOURCE_ISSUER", app_server.url)
    monkeypatch.setenv("RESOURCE_AUDIENCE", AUDIENCES[0])
    client = load_example().create_app().test_client()
    user = new_user(app_server)
    admin = new_user(app_server, role="admin")

    user_token = person_tokens(app_server, user, AUDIENCES[0])["access_token"]
    response = client.get("/api/admin", headers={"Authorization": f"Bearer {user_token}"})
    assert response.status_code == 403
    assert response.json is not None
    assert response.json["error"] == "insufficient_scope"
    assert (
        client.get("/api/data", headers={"Authorization": f"Bearer {user_token}"}).status_code
        == 200
    )

    admin_token = person_tokens(app_server, admin, AUDIENCES[0])["access_token"]
    assert jwt_claims(admin_token)["roles"] == ["admin"]
    response = client.get("/api/admin", headers={"Authorization": f"Bearer {admin_token}"})
    assert response.status_code == 200, response.json
