"""OpenID Connect: userinfo (Core §5.3), prompt and max_age (Core §3.1.2.1), consent,
discovery (Discovery §3-4) and RP-initiated logout (RP-Initiated Logout 1.0)."""

from __future__ import annotations

import html
import re
import secrets
import time
from typing import Any
from urllib.parse import parse_qsl, urljoin, urlsplit

import jwt
import pytest
import requests
from flask.testing import FlaskClient

from authserver.web.services import Services

from .conftest import AppFactory
from .support.factories import PASSWORD, SECRETS, create_user
from .support.flows import (
    authorize,
    authorize_confirmed,
    flask_authorize,
    form_field,
    login,
    pkce_pair,
    signed_in_session,
)
from .support.servers import InProcessServer

WEBAPP_REDIRECT = "https://app.example.com/cb"
WEBAPP_BYE = "https://app.example.com/bye"


@pytest.fixture(scope="module")
def alice_id(app_server: InProcessServer) -> str:
    """Create alice (role user) on this server; her user id, the ``sub`` of her tokens."""
    return create_user(app_server, "alice")


@pytest.fixture
def browser(app_server: InProcessServer, alice_id: str) -> requests.Session:
    return signed_in_session(app_server.url, "alice")


def query_of(url: str) -> dict[str, str]:
    return dict(parse_qsl(urlsplit(url).query))


def loopback() -> str:
    return f"http://127.0.0.1:{secrets.randbelow(20000) + 40000}/callback"


def cli_params(scope: str = "openid profile", **extra: str) -> tuple[dict[str, str], str]:
    """Authorization request parameters for ``cli``, and the PKCE verifier."""
    verifier, challenge = pkce_pair()
    params = {
        "response_type": "code",
        "client_id": "cli",
        "redirect_uri": loopback(),
        "scope": scope,
        "state": secrets.token_urlsafe(8),
        "code_challenge": challenge,
        "code_challenge_method": "S256",
        **extra,
    }
    return params, verifier


def webapp_params(scope: str = "openid profile", **extra: str) -> dict[str, str]:
    return {
        "response_type": "code",
        "client_id": "webapp",
        "redirect_uri": WEBAPP_REDIRECT,
        "scope": scope,
        "state": secrets.token_urlsafe(8),
        **extra,
    }


def client_redirect(response: requests.Response, redirect_uri: str) -> dict[str, str]:
    """The parameters of a redirect back to the client at ``redirect_uri``."""
    assert response.status_code == 302, (response.status_code, response.text[:500])
    location = response.headers["Location"]
    assert location.startswith(redirect_uri + "?"), location
    return query_of(location)


def assert_login_page(response: requests.Response) -> None:
    assert response.status_code == 200, response.text[:500]
    assert 'name="password"' in response.text
    assert 'name="csrf_token"' in response.text


def cli_tokens(browser: requests.Session, server: InProcessServer, scope: str) -> dict[str, Any]:
    params, verifier = cli_params(scope)
    response = authorize_confirmed(browser, server.url, params)
    result = client_redirect(response, params["redirect_uri"])
    response = requests.post(
        server.url + "/oauth2/token",
        data={
            "grant_type": "authorization_code",
            "code": result["code"],
            "redirect_uri": params["redirect_uri"],
            "client_id": "cli",
            "code_verifier": verifier,
        },
        timeout=10,
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def userinfo(server: InProcessServer, token: str | None, method: str = "GET") -> requests.Response:
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    return requests.request(method, server.url + "/oauth2/userinfo", headers=headers, timeout=10)


def submit_form(
    browser: requests.Session, server: InProcessServer, page: requests.Response, **fields: str
) -> requests.Response:
    """Post the page's form (to its own action) with its CSRF token and ``fields``."""
    action = re.search(r'<form method="post" action="([^"]*)"', page.text)
    assert action, page.text
    return browser.post(
        urljoin(server.url + "/", html.unescape(action.group(1))),
        data={"csrf_token": form_field(page.text, "csrf_token"), **fields},
        allow_redirects=False,
        timeout=10,
    )


def assert_consent_page(response: requests.Response) -> None:
    assert response.status_code == 200, response.text[:500]
    assert 'name="approve"' in response.text
    assert 'name="deny"' in response.text
    assert "webapp" in response.text


def webapp_tokens(browser: requests.Session, server: InProcessServer) -> dict[str, Any]:
    """Sign in to webapp (pressing Allow if asked); its token response."""
    params = webapp_params(nonce=secrets.token_urlsafe(8))
    response = authorize(browser, server.url, params)
    if response.status_code == 200:
        assert_consent_page(response)
        response = submit_form(browser, server, response, approve="1")
    code = client_redirect(response, WEBAPP_REDIRECT)["code"]
    token = requests.post(
        server.url + "/oauth2/token",
        data={"grant_type": "authorization_code", "code": code, "redirect_uri": WEBAPP_REDIRECT},
        auth=("webapp", SECRETS["webapp"]),
        timeout=10,
    )
    assert token.status_code == 200, token.text
    body: dict[str, Any] = token.json()
    return body


# -- userinfo ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("scope", "claims"),
    [
        ("openid", {"sub"}),
        ("openid profile", {"sub", "name", "preferred_username", "groups", "roles"}),
        # alice, a local user, has no email address: the email scope adds nothing
        ("openid email", {"sub"}),
        (
            "openid profile email offline_access",
            {"sub", "name", "preferred_username", "groups", "roles"},
        ),
    ],
)
def test_userinfo_claims_follow_the_scopes(
    app_server: InProcessServer,
    browser: requests.Session,
    alice_id: str,
    scope: str,
    claims: set[str],
) -> None:
    tokens = cli_tokens(browser, app_server, scope)
    for method in ("GET", "POST"):
        response = userinfo(app_server, tokens["access_token"], method)
        assert response.status_code == 200, response.text
        assert response.headers["Content-Type"].startswith("application/json")
        body = response.json()
        assert set(body) == claims
        assert body["sub"] == alice_id
    if "profile" in scope:
        assert body["preferred_username"] == "alice"
        assert body["name"] == "alice"
        assert body["roles"] == ["user"]
        assert body["groups"] == []


def test_userinfo_without_a_token_is_401(app_server: InProcessServer) -> None:
    response = userinfo(app_server, None)
    assert response.status_code == 401
    challenge = response.headers["WWW-Authenticate"]
    assert challenge.startswith("Bearer")
    # RFC 6750 §3.1: with no credentials at all the challenge SHOULD NOT carry an error.
    assert "error=" not in challenge


@pytest.mark.parametrize("token", ["garbage", "a.b.c", "eyJhbGciOiJub25lIn0.e30."])
def test_userinfo_with_a_bad_token_is_401_invalid_token(
    app_server: InProcessServer, token: str
) -> None:
    response = userinfo(app_server, token)
    assert response.status_code == 401
    challenge = response.headers["WWW-Authenticate"]
    assert challenge.startswith("Bearer ")
    assert 'error="invalid_token"' in challenge


def test_userinfo_with_a_tampered_token_is_401(
    app_server: InProcessServer, browser: requests.Session
) -> None:
    token = cli_tokens(browser, app_server, "openid")["access_token"]
    header, payload, signature = token.split(".")
    forged = f"{header}.{payload}.{signature[:-4]}AAAA"
    response = userinfo(app_server, forged)
    assert response.status_code == 401
    assert 'error="invalid_token"' in response.headers["WWW-Authenticate"]


def test_userinfo_without_openid_scope_is_403(
    app_server: InProcessServer, browser: requests.Session
) -> None:
    token = cli_tokens(browser, app_server, "profile")["access_token"]
    response = userinfo(app_server, token)
    assert response.status_code == 403
    assert 'error="insufficient_scope"' in response.headers["WWW-Authenticate"]
    assert response.json()["error"] == "insufficient_scope"

    machine = requests.post(
        app_server.url + "/oauth2/token",
        data={"grant_type": "client_credentials"},
        auth=("ci", SECRETS["ci"]),
        timeout=10,
    )
    assert machine.status_code == 200, machine.text
    response = userinfo(app_server, machine.json()["access_token"])
    assert response.status_code == 403
    assert 'error="insufficient_scope"' in response.headers["WWW-Authenticate"]


def _session_for(client: FlaskClient, user_id: str) -> None:
    with client.session_transaction() as session:
        session.update(
            uid=user_id, auth_time=int(time.time()), sid=secrets.token_urlsafe(8), method="upstream"
        )


def _flask_cli_tokens(client: FlaskClient, scope: str, **extra: str) -> dict[str, Any]:
    """The code flow for ``cli`` through a signed-in test client: the token response."""
    params, verifier = cli_params(scope, **extra)
    response = flask_authorize(client, params)  # the person confirms (issue 16.13)
    assert response.status_code == 302, response.get_data(as_text=True)
    code = query_of(response.headers["Location"])["code"]
    issued = client.post(
        "/oauth2/token",
        data={
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": params["redirect_uri"],
            "client_id": "cli",
            "code_verifier": verifier,
        },
    )
    assert issued.status_code == 200, issued.get_data(as_text=True)
    body: dict[str, Any] = issued.get_json()
    return body


def test_email_claim_only_with_the_email_scope(make_app: AppFactory) -> None:
    """A federated person has an email address; userinfo shows it for ``email`` only."""
    app = make_app()
    carol = Services.of(app).users.provisioning.federated(
        "https://idp.example.com",
        "carol-1",
        email="carol@example.com",
        name="Carol",
        groups=["viewers"],
    )
    client = app.test_client()
    _session_for(client, carol.id)

    def token(scope: str) -> dict[str, Any]:
        return _flask_cli_tokens(client, scope)

    def info(access_token: str) -> dict[str, Any]:
        response = client.get(
            "/oauth2/userinfo", headers={"Authorization": f"Bearer {access_token}"}
        )
        assert response.status_code == 200, response.get_data(as_text=True)
        body: dict[str, Any] = response.get_json()
        return body

    with_email = token("openid email")
    assert info(with_email["access_token"]) == {
        "sub": carol.id,
        # no email_verified: we pass the IdP's address on without vouching for it
        "email": "carol@example.com",
    }
    profile = info(token("openid profile")["access_token"])
    assert "email" not in profile
    assert profile["name"] == "Carol"
    assert profile["groups"] == ["viewers"]
    assert profile["roles"] == ["viewer"]
    # DESIGN.md: access tokens for people carry email and groups, whatever the scope.
    claims = jwt.decode(with_email["access_token"], options={"verify_signature": False})
    assert claims["email"] == "carol@example.com"
    assert claims["groups"] == ["viewers"]
    assert claims["roles"] == ["viewer"]


# -- prompt and max_age --------------------------------------------------------------------


def test_prompt_none_without_a_session_is_login_required(app_server: InProcessServer) -> None:
    params, _ = cli_params(prompt="none")
    response = authorize(requests.Session(), app_server.url, params)
    result = client_redirect(response, params["redirect_uri"])
    assert result["error"] == "login_required"
    assert result["state"] == params["state"]
    assert result["iss"] == app_server.url
    assert "code" not in result


def test_prompt_none_with_a_session_gives_a_code(
    app_server: InProcessServer, browser: requests.Session
) -> None:
    """OIDC Core §3.1.2.1 with a confidential client whose consent is remembered. A
    public client's code always needs an interaction for its very request (RFC 8252
    §8.6, issue 16.13), which prompt=none forbids: consent_required."""
    params = webapp_params()
    page = authorize(browser, app_server.url, params)
    client_redirect(submit_form(browser, app_server, page, approve="1"), WEBAPP_REDIRECT)
    quiet = webapp_params(prompt="none")
    result = client_redirect(authorize(browser, app_server.url, quiet), WEBAPP_REDIRECT)
    assert "code" in result
    assert result["state"] == quiet["state"]
    public, _ = cli_params(prompt="none")
    refused = client_redirect(authorize(browser, app_server.url, public), public["redirect_uri"])
    assert refused["error"] == "consent_required"
    assert refused["state"] == public["state"]


def test_without_a_session_the_login_page_comes_first(app_server: InProcessServer) -> None:
    params, _ = cli_params()
    assert_login_page(authorize(requests.Session(), app_server.url, params))


def relogin(
    browser: requests.Session, server: InProcessServer, page: requests.Response
) -> requests.Response:
    """Sign in again on a login page, then follow the way back to the client."""
    next_url = form_field(page.text, "next")
    assert next_url.startswith("/oauth2/authorize?")
    response = login(browser, server.url, "alice", PASSWORD, next_url)
    assert response.status_code == 302, response.text
    return authorize(browser, server.url, query_of(response.headers["Location"]))


def id_token_auth_time(
    server: InProcessServer, params: dict[str, str], verifier: str, code: str
) -> int:
    response = requests.post(
        server.url + "/oauth2/token",
        data={
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": params["redirect_uri"],
            "client_id": "cli",
            "code_verifier": verifier,
        },
        timeout=10,
    )
    assert response.status_code == 200, response.text
    claims = jwt.decode(response.json()["id_token"], options={"verify_signature": False})
    return int(claims["auth_time"])


def test_prompt_login_shows_the_login_page_although_signed_in(
    app_server: InProcessServer, browser: requests.Session
) -> None:
    params, verifier = cli_params(prompt="login")
    page = authorize(browser, app_server.url, params)
    assert_login_page(page)
    time.sleep(1)
    before = int(time.time())
    result = client_redirect(relogin(browser, app_server, page), params["redirect_uri"])
    assert result["state"] == params["state"]
    assert id_token_auth_time(app_server, params, verifier, result["code"]) >= before


def test_max_age_older_than_the_sign_in_shows_the_login_page(
    app_server: InProcessServer, browser: requests.Session
) -> None:
    time.sleep(1.1)
    params, _ = cli_params(max_age="0")
    assert_login_page(authorize(browser, app_server.url, params))


def test_a_fresh_sign_in_satisfies_max_age_zero(
    app_server: InProcessServer, browser: requests.Session
) -> None:
    # OIDC Core §3.1.2.1: max_age=0 is like prompt=login; a fresh sign-in satisfies it.
    params, verifier = cli_params(max_age="0")
    page = authorize(browser, app_server.url, params)
    assert_login_page(page)
    before = int(time.time())
    result = client_redirect(relogin(browser, app_server, page), params["redirect_uri"])
    assert id_token_auth_time(app_server, params, verifier, result["code"]) >= before


def test_max_age_within_the_sign_in_gives_a_code(
    app_server: InProcessServer, browser: requests.Session
) -> None:
    params, _ = cli_params(max_age="3600")
    page = authorize(browser, app_server.url, params)
    assert page.status_code == 200  # the confirmation, not the login page: recent enough
    assert 'id="approve"' in page.text
    confirmed = authorize_confirmed(browser, app_server.url, params)
    result = client_redirect(confirmed, params["redirect_uri"])
    assert "code" in result


@pytest.mark.parametrize(
    "extra", [{"prompt": "none login"}, {"prompt": "bogus"}, {"max_age": "soon"}]
)
def test_bad_prompt_or_max_age_is_invalid_request(
    app_server: InProcessServer, browser: requests.Session, extra: dict[str, str]
) -> None:
    params, _ = cli_params(**extra)
    result = client_redirect(authorize(browser, app_server.url, params), params["redirect_uri"])
    assert result["error"] == "invalid_request"
    assert result["state"] == params["state"]
    assert result["iss"] == app_server.url


# -- consent ---------------------------------------------------------------------------------


def test_consent_allow_gives_a_code_and_is_remembered(
    app_server: InProcessServer, browser: requests.Session
) -> None:
    params = webapp_params()
    page = authorize(browser, app_server.url, params)
    assert_consent_page(page)
    assert "openid" in page.text
    assert "profile" in page.text
    result = client_redirect(submit_form(browser, app_server, page, approve="1"), WEBAPP_REDIRECT)
    assert "code" in result
    assert result["state"] == params["state"]
    assert result["iss"] == app_server.url

    # The same client and scopes again: no page, straight back with a code.
    again = webapp_params()
    result = client_redirect(authorize(browser, app_server.url, again), WEBAPP_REDIRECT)
    assert "code" in result
    assert result["state"] == again["state"]
    # ... even with prompt=none
    quiet = webapp_params(prompt="none")
    assert "code" in client_redirect(authorize(browser, app_server.url, quiet), WEBAPP_REDIRECT)
    # prompt=consent asks again
    assert_consent_page(authorize(browser, app_server.url, webapp_params(prompt="consent")))


def test_consent_deny_is_access_denied(
    app_server: InProcessServer, browser: requests.Session
) -> None:
    params = webapp_params()
    page = authorize(browser, app_server.url, params)
    assert_consent_page(page)
    result = client_redirect(submit_form(browser, app_server, page, deny="1"), WEBAPP_REDIRECT)
    assert result["error"] == "access_denied"
    assert result["state"] == params["state"]
    assert result["iss"] == app_server.url
    assert "code" not in result
    # Denying is not remembered as consent.
    assert_consent_page(authorize(browser, app_server.url, webapp_params()))


def test_consent_without_csrf_token_is_refused(
    app_server: InProcessServer, browser: requests.Session
) -> None:
    params = webapp_params()
    assert_consent_page(authorize(browser, app_server.url, params))
    response = browser.post(
        app_server.url + "/oauth2/authorize",
        params=params,
        data={"approve": "1"},
        allow_redirects=False,
        timeout=10,
    )
    assert response.status_code == 400
    assert "Location" not in response.headers


def test_prompt_none_without_consent_is_consent_required(
    app_server: InProcessServer, browser: requests.Session
) -> None:
    params = webapp_params(prompt="none")
    result = client_redirect(authorize(browser, app_server.url, params), WEBAPP_REDIRECT)
    assert result["error"] == "consent_required"
    assert result["state"] == params["state"]
    assert result["iss"] == app_server.url
    assert "code" not in result


def test_consent_covers_only_the_scopes_granted(
    app_server: InProcessServer, browser: requests.Session
) -> None:
    page = authorize(browser, app_server.url, webapp_params("openid"))
    client_redirect(submit_form(browser, app_server, page, approve="1"), WEBAPP_REDIRECT)
    assert_consent_page(authorize(browser, app_server.url, webapp_params("openid email")))


# -- discovery -------------------------------------------------------------------------------


def test_discovery_document(app_server: InProcessServer) -> None:
    response = requests.get(app_server.url + "/.well-known/openid-configuration", timeout=10)
    assert response.status_code == 200
    meta = response.json()
    assert meta["issuer"] == app_server.url
    base = app_server.url
    assert meta["authorization_endpoint"] == base + "/oauth2/authorize"
    assert meta["token_endpoint"] == base + "/oauth2/token"
    assert meta["userinfo_endpoint"] == base + "/oauth2/userinfo"
    assert meta["end_session_endpoint"] == base + "/logout"
    assert meta["device_authorization_endpoint"] == base + "/oauth2/device_authorization"
    assert meta["jwks_uri"] == base + "/.well-known/jwks.json"
    assert meta["code_challenge_methods_supported"] == ["S256"]
    assert meta["authorization_response_iss_parameter_supported"] is True
    assert "code" in meta["response_types_supported"]
    assert "openid" in meta["scopes_supported"]
    assert "RS256" in meta["id_token_signing_alg_values_supported"]
    assert {"none", "login", "consent"} <= set(meta["prompt_values_supported"])
    other = requests.get(app_server.url + "/.well-known/oauth-authorization-server", timeout=10)
    assert other.status_code == 200
    assert other.json() == meta


#: How to call each advertised endpoint with nothing in hand.
ENDPOINT_METHODS = {
    "authorization_endpoint": "GET",
    "token_endpoint": "POST",
    "userinfo_endpoint": "GET",
    "end_session_endpoint": "GET",
    "device_authorization_endpoint": "POST",
    "introspection_endpoint": "POST",
    "revocation_endpoint": "POST",
    "jwks_uri": "GET",
}


def test_every_advertised_endpoint_answers(app_server: InProcessServer) -> None:
    meta = requests.get(app_server.url + "/.well-known/openid-configuration", timeout=10).json()
    advertised = {k for k in meta if k.endswith("_endpoint") or k == "jwks_uri"}
    assert advertised <= set(ENDPOINT_METHODS), advertised - set(ENDPOINT_METHODS)
    for key in sorted(advertised):
        url = meta[key]
        assert url.startswith(app_server.url + "/"), (key, url)
        response = requests.request(
            ENDPOINT_METHODS[key], url, data={}, allow_redirects=False, timeout=10
        )
        assert response.status_code not in (404, 405), (key, response.status_code)
        assert response.status_code < 500, (key, response.status_code, response.text[:300])
    jwks = requests.get(meta["jwks_uri"], timeout=10)
    assert jwks.status_code == 200
    assert jwks.json()["keys"]


# -- RP-initiated logout ---------------------------------------------------------------------


def is_signed_in(browser: requests.Session, server: InProcessServer) -> bool:
    """Whether an authorization in this browser goes straight back with a code."""
    params, _ = cli_params()
    response = authorize_confirmed(browser, server.url, params)
    if response.status_code == 200:
        assert_login_page(response)
        return False
    return "code" in client_redirect(response, params["redirect_uri"])


def test_logout_with_hint_and_registered_uri_redirects_with_state(
    app_server: InProcessServer, browser: requests.Session
) -> None:
    id_token = webapp_tokens(browser, app_server)["id_token"]
    copied = requests.Session()
    copied.cookies.update(browser.cookies)
    assert is_signed_in(copied, app_server)
    response = browser.get(
        app_server.url + "/logout",
        params={
            "id_token_hint": id_token,
            "post_logout_redirect_uri": WEBAPP_BYE,
            "state": "bye-state",
        },
        allow_redirects=False,
        timeout=10,
    )
    assert response.status_code == 302, response.text
    location = response.headers["Location"]
    assert location.startswith(WEBAPP_BYE)
    assert query_of(location) == {"state": "bye-state"}
    assert not is_signed_in(browser, app_server)
    # A copy of the old session cookie is signed out too.
    assert not is_signed_in(copied, app_server)


def test_logout_with_hint_and_client_id_redirects(
    app_server: InProcessServer, browser: requests.Session
) -> None:
    id_token = webapp_tokens(browser, app_server)["id_token"]
    response = browser.get(
        app_server.url + "/logout",
        params={
            "id_token_hint": id_token,
            "client_id": "webapp",
            "post_logout_redirect_uri": WEBAPP_BYE,
        },
        allow_redirects=False,
        timeout=10,
    )
    assert response.status_code == 302, response.text
    assert response.headers["Location"] == WEBAPP_BYE
    assert not is_signed_in(browser, app_server)


@pytest.mark.parametrize(
    "target",
    [
        "https://evil.example.com/bye",
        "https://app.example.com/bye/other",
        "https://app.example.com/bye?next=https://evil.example.com",
    ],
)
def test_logout_to_an_unregistered_uri_ends_on_our_page(
    app_server: InProcessServer, browser: requests.Session, target: str
) -> None:
    id_token = webapp_tokens(browser, app_server)["id_token"]
    response = browser.get(
        app_server.url + "/logout",
        params={"id_token_hint": id_token, "post_logout_redirect_uri": target, "state": "x"},
        allow_redirects=False,
        timeout=10,
    )
    assert response.status_code == 200, response.text
    assert "Location" not in response.headers
    assert "Signed out" in response.text
    assert not is_signed_in(browser, app_server)


def test_logout_with_another_clients_id_does_not_redirect(
    app_server: InProcessServer, browser: requests.Session
) -> None:
    """The hint names webapp; a client_id of cli must not borrow webapp's URIs."""
    id_token = webapp_tokens(browser, app_server)["id_token"]
    response = browser.get(
        app_server.url + "/logout",
        params={
            "id_token_hint": id_token,
            "client_id": "cli",
            "post_logout_redirect_uri": WEBAPP_BYE,
        },
        allow_redirects=False,
        timeout=10,
    )
    assert "Location" not in response.headers
    assert response.status_code == 200


def test_logout_without_hint_asks_first(
    app_server: InProcessServer, browser: requests.Session
) -> None:
    response = browser.get(
        app_server.url + "/logout",
        params={"post_logout_redirect_uri": WEBAPP_BYE, "client_id": "webapp", "state": "s9"},
        allow_redirects=False,
        timeout=10,
    )
    assert response.status_code == 200
    assert "Location" not in response.headers
    assert 'name="csrf_token"' in response.text
    assert '<form method="post"' in response.text
    assert is_signed_in(browser, app_server)

    # A POST without the CSRF token does nothing.
    forged = browser.post(app_server.url + "/logout", data={}, allow_redirects=False, timeout=10)
    assert forged.status_code == 400
    assert is_signed_in(browser, app_server)

    confirmed = submit_form(browser, app_server, response)
    assert confirmed.status_code == 302, confirmed.text
    assert confirmed.headers["Location"] == WEBAPP_BYE + "?state=s9"
    assert not is_signed_in(browser, app_server)


def test_logout_confirmation_without_redirect_shows_signed_out(
    app_server: InProcessServer, browser: requests.Session
) -> None:
    page = browser.get(app_server.url + "/logout", allow_redirects=False, timeout=10)
    assert page.status_code == 200
    assert is_signed_in(browser, app_server)
    done = submit_form(browser, app_server, page)
    assert done.status_code == 200, done.text
    assert "Signed out" in done.text
    assert not is_signed_in(browser, app_server)


def test_logout_with_a_hint_of_someone_else_asks_first(
    app_server: InProcessServer, browser: requests.Session
) -> None:
    bob_name = f"bob{secrets.token_hex(3)}"
    create_user(app_server, bob_name)
    bob = signed_in_session(app_server.url, bob_name)
    bobs_token = webapp_tokens(bob, app_server)["id_token"]
    response = browser.get(
        app_server.url + "/logout",
        params={"id_token_hint": bobs_token, "post_logout_redirect_uri": WEBAPP_BYE},
        allow_redirects=False,
        timeout=10,
    )
    assert response.status_code == 200
    assert "Location" not in response.headers
    assert 'name="csrf_token"' in response.text
    assert is_signed_in(browser, app_server)


def test_claims_supported_advertises_what_is_issued(make_app: AppFactory) -> None:
    """Issue 16 "Also": OIDC Discovery §3 ``claims_supported`` names the claims of our ID
    tokens and userinfo, no more and no fewer."""
    app = make_app()
    dana = Services.of(app).users.provisioning.federated(
        "https://idp.example.com",
        "dana-1",
        email="dana@example.com",
        name="Dana",
        groups=["viewers"],
        email_verified=True,
    )
    client = app.test_client()
    _session_for(client, dana.id)
    issued = _flask_cli_tokens(client, "openid profile email groups roles", nonce="n-1")
    id_token = jwt.decode(issued["id_token"], options={"verify_signature": False})
    info = client.get(
        "/oauth2/userinfo", headers={"Authorization": f"Bearer {issued['access_token']}"}
    ).get_json()
    advertised = set(client.get("/.well-known/openid-configuration").get_json()["claims_supported"])
    assert advertised == set(id_token) | set(info)
