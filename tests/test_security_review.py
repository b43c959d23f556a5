"""Issue 16 (the OAuth security review): each finding through the real interface, on
both backends, against a live server of this module's own."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from typing import Any

import jwt
import pytest
import requests

from .conftest import BACKENDS
from .support.factories import AUDIENCES, PASSWORD, SECRETS, create_user
from .support.flows import authorize, authorize_confirmed, introspect, signed_in_session
from .support.servers import (
    LiveServer,
    serving,
)
from .test_oidc import (
    WEBAPP_REDIRECT,
    assert_consent_page,
    cli_params,
    cli_tokens,
    client_redirect,
    submit_form,
    webapp_params,
)
from .test_rbac import admin_api, api, person_tokens

pytestmark = pytest.mark.live


def review_config(config: dict[str, Any]) -> dict[str, Any]:
    """The standard config, with ``webapp`` (a consent client) allowed the roles scope."""
    for client in config["clients"]:
        if client["client_id"] == "webapp":
            client["scopes"] = [*client["scopes"], "roles"]
    return config


@pytest.fixture(scope="module", params=BACKENDS)
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveServer]:
    workdir = tmp_path_factory.mktemp("review")
    with serving(request, workdir, review_config) as live:
        for name, role in (("boss", "admin"), ("carol", "user")):
            create_user(live, name, role)
        yield live
    shutil.rmtree(workdir, ignore_errors=True)


def claims_of(token: str) -> dict[str, Any]:
    decoded: dict[str, Any] = jwt.decode(token, options={"verify_signature": False})
    return decoded


def webapp_code_tokens(
    browser: requests.Session, server: LiveServer, scope: str
) -> tuple[str, dict[str, Any]]:
    """Sign in to webapp with ``scope``; the consent page's text and the token response."""
    page = authorize(browser, server.url, webapp_params(scope, prompt="consent"))
    assert_consent_page(page)
    code = client_redirect(submit_form(browser, server, page, approve="1"), WEBAPP_REDIRECT)
    token = requests.post(
        server.url + "/oauth2/token",
        data={
            "grant_type": "authorization_code",
            "code": code["code"],
            "redirect_uri": WEBAPP_REDIRECT,
        },
        auth=("webapp", SECRETS["webapp"]),
        timeout=10,
    )
    assert token.status_code == 200, token.text
    body: dict[str, Any] = token.json()
    return page.text, body


# -- 16.1 roles reach a consent client only through a consented scope ------------------


def test_consent_client_gets_no_roles_or_groups_without_the_scope(server: LiveServer) -> None:
    browser = signed_in_session(server.url, "boss")
    page, body = webapp_code_tokens(browser, server, "openid profile")
    assert "admin" not in page
    claims = claims_of(body["access_token"])
    assert claims["roles"] == []
    assert "groups" not in claims
    assert "roles" not in claims_of(body["id_token"])
    info = requests.get(
        server.url + "/oauth2/userinfo",
        headers={"Authorization": "Bearer " + body["access_token"]},
        timeout=10,
    )
    assert info.status_code == 200
    assert "roles" not in info.json()
    assert "groups" not in info.json()
    assert info.json()["preferred_username"] == "boss"


def test_consent_page_names_the_roles_the_roles_scope_grants(server: LiveServer) -> None:
    browser = signed_in_session(server.url, "boss")
    page, body = webapp_code_tokens(browser, server, "openid roles")
    assert "<code>roles</code>" in page
    assert "admin" in page
    assert claims_of(body["access_token"])["roles"] == ["admin"]


def test_first_party_client_still_gets_the_roles(server: LiveServer) -> None:
    browser = signed_in_session(server.url, "boss")
    body = cli_tokens(browser, server, "openid profile")  # type: ignore[arg-type]
    assert claims_of(body["access_token"])["roles"] == ["admin"]


# -- 16.2 a password set or reset ends the person's sessions ---------------------------


def test_password_reset_ends_existing_sessions(server: LiveServer) -> None:
    created = server.cli("users", "create", "dave", "--password-stdin", input_text=PASSWORD + "\n")
    assert created.returncode == 0, created.stderr
    browser = signed_in_session(server.url, "dave")
    params, _ = cli_params("openid")
    first = authorize_confirmed(browser, server.url, params)
    assert "code" in client_redirect(first, params["redirect_uri"])

    admin_token = person_tokens(server, "boss", admin_api(server))["access_token"]
    reset = api(
        server, "PUT", "/users/dave/password", admin_token, json={"password": "a brand new one!"}
    )
    assert reset.status_code == 204, reset.text

    # The old session no longer mints codes: the person must sign in again.
    params, _ = cli_params("openid")
    again = authorize(browser, server.url, params)
    assert again.status_code == 200, again.headers
    assert 'name="password"' in again.text
    # ... with the new password, after which codes flow again.
    fresh = signed_in_session(server.url, "dave", "a brand new one!")
    params, _ = cli_params("openid")
    again_ok = authorize_confirmed(fresh, server.url, params)
    assert "code" in client_redirect(again_ok, params["redirect_uri"])


# -- 16.9 an access token is not an id_token_hint --------------------------------------


def test_access_token_as_id_token_hint_asks_for_confirmation(server: LiveServer) -> None:
    browser = signed_in_session(server.url, "carol")
    body = cli_tokens(browser, server, "openid profile")  # type: ignore[arg-type]
    response = browser.get(
        server.url + "/logout",
        params={"id_token_hint": body["access_token"]},
        allow_redirects=False,
        timeout=10,
    )
    assert response.status_code == 200, response.headers
    assert 'action="/logout' in response.text  # the confirmation, not a sign-out
    params, _ = cli_params("openid")
    still = authorize_confirmed(browser, server.url, params)
    assert "code" in client_redirect(still, params["redirect_uri"])
    # The ID token itself still signs out at once.
    gone = browser.get(
        server.url + "/logout",
        params={"id_token_hint": body["id_token"]},
        allow_redirects=False,
        timeout=10,
    )
    assert gone.status_code in (200, 302)
    params, _ = cli_params("openid")
    assert 'name="password"' in authorize(browser, server.url, params).text


# -- 16.4 introspection answers only for the caller's audiences ------------------------


def test_introspection_refuses_tokens_for_other_audiences(server: LiveServer) -> None:
    admin_token = person_tokens(server, "boss", admin_api(server))["access_token"]
    assert introspect(server, admin_token) == {"active": False}
    # A token for a configured audience is still described to the resource server.
    for_api = person_tokens(server, "carol", AUDIENCES[0])["access_token"]
    body = introspect(server, for_api)
    assert body["active"] is True
    assert body["aud"] == AUDIENCES[0]


# -- 16.7 a token of a rotated service-account secret loses the admin API at once -------


def test_rotation_ends_admin_api_access_of_tokens_of_the_old_secret(server: LiveServer) -> None:
    created = server.cli("service-accounts", "create", "deployer", "--role", "admin")
    assert created.returncode == 0, created.stderr
    sa_token = next(w for w in created.stdout.split() if w.startswith("as_sa_"))

    def access_token(secret: str) -> str:
        response = requests.post(
            server.url + "/oauth2/token",
            data={
                "grant_type": "client_credentials",
                "client_secret": secret,
                "resource": admin_api(server),
            },
            timeout=10,
        )
        assert response.status_code == 200, response.text
        token: str = response.json()["access_token"]
        return token

    old = access_token(sa_token)
    assert api(server, "GET", "/service-accounts", old).status_code == 200
    rotated = server.cli("service-accounts", "rotate", "deployer")
    assert rotated.returncode == 0, rotated.stderr
    new_secret = next(w for w in rotated.stdout.split() if w.startswith("as_sa_"))
    # Even within the second of the rotation (iat is whole seconds), the old one is out.
    refused = api(server, "GET", "/service-accounts", old)
    assert refused.status_code == 401, refused.text
    assert refused.json()["error"] == "invalid_token"
    assert api(server, "GET", "/service-accounts", access_token(new_secret)).status_code == 200
