"""The authorization code grant with PKCE (RFC 6749 §4.1, RFC 7636, OAuth 2.1 §4.1),
driven like a real CLI would: Authlib's client against a live server, a browser session
signed in through the login form, and the tokens checked with PyJWT against our JWKS.
"""

from __future__ import annotations

import base64
import hashlib
import html
import re
import secrets
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urljoin, urlsplit

import jwt
import pytest
import requests
from authlib.common.security import generate_token
from authlib.integrations.requests_client import OAuth2Session
from flask import Flask
from flask.testing import FlaskClient

from authserver.clock import ManualClock
from authserver.oauth.rfc6749 import authorization_code
from authserver.web.services import Services

from .conftest import AppFactory, Backend
from .support.factories import AUDIENCES, PASSWORD, SECRETS
from .support.factories import create_user as create_user_id
from .support.flows import (
    JWKSClient,
    authorize,
    authorize_confirmed,
    flask_authorize,
    form_field,
    introspect,
    pkce_pair,
    redirect_params,
    signed_in_session,
)
from .support.servers import InProcessServer

CLI_SCOPE = "openid profile email offline_access"


@dataclass(frozen=True)
class User:
    username: str
    id: str


def create_user(server: InProcessServer, username: str, role: str = "user") -> User:
    return User(username, create_user_id(server, username, role))


@pytest.fixture(scope="module")
def alice(app_server: InProcessServer) -> User:
    return create_user(app_server, "alice")


@pytest.fixture
def browser(app_server: InProcessServer, alice: User) -> requests.Session:
    """A browser where alice is signed in."""
    return signed_in_session(app_server.url, alice.username)


def free_loopback_port() -> int:
    return secrets.randbelow(20000) + 40000


def query_of(url: str) -> dict[str, str]:
    return dict(parse_qsl(urlsplit(url).query))


def visit(browser: requests.Session, server: InProcessServer, url: str) -> requests.Response:
    """Open an authorization URL in the browser; the last response of our server."""
    assert url.startswith(server.url + "/oauth2/authorize?")
    query = query_of(url)
    if query["client_id"] == "cli":  # public: the person confirms (issue 16.13)
        return authorize_confirmed(browser, server.url, query)
    return authorize(browser, server.url, query)  # the caller answers the consent page


def token_request(
    server: InProcessServer, data: dict[str, str], **kwargs: Any
) -> requests.Response:
    return requests.post(server.url + "/oauth2/token", data=data, timeout=10, **kwargs)


def userinfo(server: InProcessServer, access_token: str) -> requests.Response:
    return requests.get(
        server.url + "/oauth2/userinfo",
        headers={"Authorization": f"Bearer {access_token}"},
        timeout=10,
    )


def assert_oauth_error(response: requests.Response, error: str, status: int = 400) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["error"] == error, body
    assert body.get("error_description")
    assert not {"access_token", "refresh_token", "id_token"} & body.keys()
    assert response.headers["Cache-Control"] == "no-store"


def cli_code(
    browser: requests.Session,
    server: InProcessServer,
    *,
    redirect_uri: str | None = None,
    scope: str = CLI_SCOPE,
) -> tuple[str, str, str]:
    """``(code, verifier, redirect_uri)`` of a fresh authorization for ``cli``."""
    redirect_uri = redirect_uri or f"http://127.0.0.1:{free_loopback_port()}/callback"
    verifier, challenge = pkce_pair()
    params = {
        "response_type": "code",
        "client_id": "cli",
        "redirect_uri": redirect_uri,
        "scope": scope,
        "state": secrets.token_urlsafe(8),
        "code_challenge": challenge,
        "code_challenge_method": "S256",
    }
    result = redirect_params(authorize_confirmed(browser, server.url, params))
    assert "code" in result, result
    return result["code"], verifier, redirect_uri


def redeem(
    server: InProcessServer, code: str, verifier: str | None, redirect_uri: str, **extra: str
) -> requests.Response:
    data = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": redirect_uri,
        "client_id": "cli",
        **extra,
    }
    if verifier is not None:
        data["code_verifier"] = verifier
    return token_request(server, data)


def jwks_client(server: InProcessServer) -> jwt.PyJWKClient:
    return JWKSClient(server.url + "/.well-known/jwks.json")


def at_hash(access_token: str) -> str:
    digest = hashlib.sha256(access_token.encode()).digest()
    return base64.urlsafe_b64encode(digest[:16]).rstrip(b"=").decode()


# -- the whole flow, as the CLI does it ------------------------------------------------


def test_cli_pkce_flow_issues_valid_tokens(
    app_server: InProcessServer, alice: User, browser: requests.Session
) -> None:
    redirect_uri = f"http://127.0.0.1:{free_loopback_port()}/callback"
    oauth = OAuth2Session(
        client_id="cli", code_challenge_method="S256", redirect_uri=redirect_uri, scope=CLI_SCOPE
    )
    verifier = generate_token(48)
    nonce = secrets.token_urlsafe(12)
    url, state = oauth.create_authorization_url(
        app_server.url + "/oauth2/authorize", code_verifier=verifier, nonce=nonce
    )
    before = int(time.time())
    response = visit(browser, app_server, url)
    assert response.status_code == 302
    location = response.headers["Location"]
    assert location.startswith(redirect_uri + "?")
    params = query_of(location)
    assert params["state"] == state
    assert params["iss"] == app_server.url  # RFC 9207
    assert "error" not in params

    token = oauth.fetch_token(
        app_server.url + "/oauth2/token", authorization_response=location, code_verifier=verifier
    )
    assert token["token_type"] == "Bearer"
    assert token["expires_in"] == 3600
    assert set(token["scope"].split()) == set(CLI_SCOPE.split())
    assert token["refresh_token"].startswith("as_rt_")

    keys = jwks_client(app_server)
    access_token = token["access_token"]
    header = jwt.get_unverified_header(access_token)
    assert header["typ"] == "at+jwt"
    assert header["kid"]
    claims = jwt.decode(
        access_token,
        keys.get_signing_key_from_jwt(access_token).key,
        algorithms=["RS256"],
        audience=AUDIENCES[0],
        issuer=app_server.url,
        options={"require": ["iss", "sub", "aud", "exp", "iat", "jti"]},
    )
    assert claims["sub"] == alice.id
    assert claims["client_id"] == "cli"
    assert set(claims["scope"].split()) == set(CLI_SCOPE.split())
    assert claims["roles"] == ["user"]
    assert claims["groups"] == []  # a local user has no groups
    assert "email" not in claims  # nor an email address to put there
    assert claims["exp"] - claims["iat"] == 3600

    id_token = token["id_token"]
    id_claims = jwt.decode(
        id_token,
        keys.get_signing_key_from_jwt(id_token).key,
        algorithms=["RS256"],
        audience="cli",
        issuer=app_server.url,
        options={"require": ["iss", "sub", "aud", "exp", "iat", "auth_time"]},
    )
    assert id_claims["sub"] == alice.id
    assert id_claims["azp"] == "cli"
    assert id_claims["nonce"] == nonce
    assert id_claims["at_hash"] == at_hash(access_token)
    # alice signed in (the fixture) shortly before this authorization
    assert before - 60 <= id_claims["auth_time"] <= id_claims["iat"]
    assert id_claims["preferred_username"] == "alice"

    info = userinfo(app_server, access_token)
    assert info.status_code == 200, info.text
    assert info.json()["sub"] == alice.id


@pytest.mark.parametrize(
    "redirect_uri",
    [
        "http://127.0.0.1:{port}/callback",
        "http://127.0.0.1/callback",
        "http://localhost:{port}/callback",
        "http://localhost/callback",
        "http://localhost:53593/callback",
    ],
)
def test_loopback_redirect_uri_matches_any_port(
    app_server: InProcessServer, browser: requests.Session, redirect_uri: str
) -> None:
    """RFC 8252 §7.3: for loopback redirect URIs the port is the app's to choose."""
    redirect_uri = redirect_uri.format(port=free_loopback_port())
    code, verifier, _ = cli_code(browser, app_server, redirect_uri=redirect_uri)
    response = redeem(app_server, code, verifier, redirect_uri)
    assert response.status_code == 200, response.text
    assert response.json()["access_token"]


def assert_shown_not_redirected(response: requests.Response) -> None:
    """RFC 6749 §4.1.2.1: a bad client_id or redirect_uri is shown to the person."""
    assert response.status_code == 400, response.text
    assert "Location" not in response.headers
    assert response.headers["Content-Type"].startswith("text/html")


@pytest.mark.parametrize(
    "redirect_uri",
    [
        "https://evil.example.com/callback",
        "http://127.0.0.1:5000/other",  # a loopback host, but another path
        "http://localhost.evil.example/callback",
        "https://127.0.0.1/callback",  # another scheme
        "http://127.0.0.1/callback?x=1",
        "http://localhost:53593/callback/",
    ],
)
def test_unregistered_redirect_uri_is_shown_never_redirected(
    app_server: InProcessServer, browser: requests.Session, redirect_uri: str
) -> None:
    _, challenge = pkce_pair()
    response = authorize(
        browser,
        app_server.url,
        {
            "response_type": "code",
            "client_id": "cli",
            "redirect_uri": redirect_uri,
            "scope": "openid",
            "state": "s1",
            "code_challenge": challenge,
            "code_challenge_method": "S256",
        },
    )
    assert_shown_not_redirected(response)


def test_unknown_client_id_is_shown_never_redirected(
    app_server: InProcessServer, browser: requests.Session
) -> None:
    _, challenge = pkce_pair()
    response = authorize(
        browser,
        app_server.url,
        {
            "response_type": "code",
            "client_id": "nobody",
            "redirect_uri": "http://127.0.0.1:5000/callback",
            "scope": "openid",
            "state": "s1",
            "code_challenge": challenge,
            "code_challenge_method": "S256",
        },
    )
    assert_shown_not_redirected(response)


def test_bad_redirect_uri_is_shown_even_before_sign_in(app_server: InProcessServer) -> None:
    response = requests.get(
        app_server.url + "/oauth2/authorize",
        params={
            "response_type": "code",
            "client_id": "cli",
            "redirect_uri": "https://evil.example.com/callback",
            "code_challenge": pkce_pair()[1],
            "code_challenge_method": "S256",
        },
        allow_redirects=False,
        timeout=10,
    )
    assert_shown_not_redirected(response)


# -- a confidential client --------------------------------------------------------------


def approve_consent(
    browser: requests.Session, server: InProcessServer, page: requests.Response
) -> requests.Response:
    """Press Allow on the consent page; the redirect back to the client."""
    assert page.status_code == 200, page.text
    assert 'name="approve"' in page.text
    action = re.search(r'<form method="post" action="([^"]*)"', page.text)
    assert action, page.text
    response = browser.post(
        urljoin(server.url + "/", html.unescape(action.group(1))),
        data={"csrf_token": form_field(page.text, "csrf_token"), "approve": "1"},
        allow_redirects=False,
        timeout=10,
    )
    assert response.status_code == 302, response.text
    return response


def test_confidential_client_with_basic_auth_and_without_pkce(
    app_server: InProcessServer, alice: User, browser: requests.Session
) -> None:
    redirect_uri = "https://app.example.com/cb"
    oauth = OAuth2Session(
        client_id="webapp",
        client_secret=SECRETS["webapp"],
        token_endpoint_auth_method="client_secret_basic",
        redirect_uri=redirect_uri,
        scope="openid profile read",
    )
    url, state = oauth.create_authorization_url(app_server.url + "/oauth2/authorize")
    assert "code_challenge" not in url
    response = visit(browser, app_server, url)
    response = approve_consent(browser, app_server, response)  # webapp asks for consent
    location = response.headers["Location"]
    assert location.startswith(redirect_uri + "?")
    assert query_of(location)["state"] == state
    assert query_of(location)["iss"] == app_server.url

    token = oauth.fetch_token(app_server.url + "/oauth2/token", authorization_response=location)
    keys = jwks_client(app_server)
    claims = jwt.decode(
        token["access_token"],
        keys.get_signing_key_from_jwt(token["access_token"]).key,
        algorithms=["RS256"],
        audience=AUDIENCES[0],
        issuer=app_server.url,
    )
    assert claims["client_id"] == "webapp"
    assert claims["sub"] == alice.id
    assert set(claims["scope"].split()) == {"openid", "profile", "read"}
    id_claims = jwt.decode(
        token["id_token"],
        keys.get_signing_key_from_jwt(token["id_token"]).key,
        algorithms=["RS256"],
        audience="webapp",
        issuer=app_server.url,
    )
    assert id_claims["sub"] == alice.id
    assert "nonce" not in id_claims


def test_confidential_client_with_a_wrong_secret_is_invalid_client(
    app_server: InProcessServer, browser: requests.Session
) -> None:
    params = {
        "response_type": "code",
        "client_id": "webapp",
        "redirect_uri": "https://app.example.com/cb",
        "scope": "read",
        "state": "s",
    }
    response = authorize(browser, app_server.url, params)
    response = approve_consent(browser, app_server, response)  # webapp asks for consent
    code = redirect_params(response)["code"]
    data = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": params["redirect_uri"],
    }
    wrong = token_request(app_server, data, auth=("webapp", "wrong"))
    assert_oauth_error(wrong, "invalid_client", 401)


# -- bad authorization requests: an error redirect, no code ------------------------------


def authorization_error(
    browser: requests.Session, server: InProcessServer, **pkce: str
) -> dict[str, str]:
    redirect_uri = f"http://127.0.0.1:{free_loopback_port()}/callback"
    params = {
        "response_type": "code",
        "client_id": "cli",
        "redirect_uri": redirect_uri,
        "scope": "openid",
        "state": "st-42",
        **pkce,
    }
    response = authorize(browser, server.url, params)
    assert response.headers["Location"].startswith(redirect_uri + "?")
    result = redirect_params(response)
    assert "code" not in result
    assert result["state"] == "st-42"
    assert result["iss"] == server.url
    return result


def test_pkce_plain_is_refused(app_server: InProcessServer, browser: requests.Session) -> None:
    verifier = secrets.token_urlsafe(48)
    result = authorization_error(
        browser, app_server, code_challenge=verifier, code_challenge_method="plain"
    )
    assert result["error"] == "invalid_request"


def test_code_challenge_without_method_is_refused(
    app_server: InProcessServer, browser: requests.Session
) -> None:
    # RFC 7636 §4.3: no method means plain, which we do not accept.
    result = authorization_error(browser, app_server, code_challenge=pkce_pair()[1])
    assert result["error"] == "invalid_request"


def test_public_client_without_code_challenge_is_refused(
    app_server: InProcessServer, browser: requests.Session
) -> None:
    result = authorization_error(browser, app_server)
    assert result["error"] == "invalid_request"
    result = authorization_error(browser, app_server, code_challenge_method="S256")
    assert result["error"] == "invalid_request"


# -- bad token requests: the right error, and nothing issued or revoked -------------------


@pytest.fixture
def earlier_token(app_server: InProcessServer, browser: requests.Session) -> str:
    """An access token alice got before the bad request: it must stay valid."""
    code, verifier, redirect_uri = cli_code(browser, app_server)
    response = redeem(app_server, code, verifier, redirect_uri)
    assert response.status_code == 200, response.text
    return str(response.json()["access_token"])


def assert_still_valid(server: InProcessServer, access_token: str) -> None:
    assert userinfo(server, access_token).status_code == 200
    assert introspect(server, access_token)["active"] is True


def test_missing_code_verifier_is_invalid_request(
    app_server: InProcessServer, browser: requests.Session, earlier_token: str
) -> None:
    code, _, redirect_uri = cli_code(browser, app_server)
    assert_oauth_error(redeem(app_server, code, None, redirect_uri), "invalid_request")
    assert_still_valid(app_server, earlier_token)


def test_wrong_code_verifier_is_invalid_grant(
    app_server: InProcessServer, browser: requests.Session, earlier_token: str
) -> None:
    code, _, redirect_uri = cli_code(browser, app_server)
    other_verifier, _ = pkce_pair()
    assert_oauth_error(redeem(app_server, code, other_verifier, redirect_uri), "invalid_grant")
    assert_still_valid(app_server, earlier_token)


def test_mismatched_redirect_uri_is_invalid_grant(
    app_server: InProcessServer, browser: requests.Session, earlier_token: str
) -> None:
    code, verifier, redirect_uri = cli_code(browser, app_server)
    other = redirect_uri.replace("/callback", "/elsewhere")
    assert_oauth_error(redeem(app_server, code, verifier, other), "invalid_grant")
    assert_still_valid(app_server, earlier_token)


def test_missing_redirect_uri_at_token_endpoint_is_refused(
    app_server: InProcessServer, browser: requests.Session
) -> None:
    # RFC 6749 §4.1.3: REQUIRED when the authorization request had one.
    code, verifier, _ = cli_code(browser, app_server)
    response = token_request(
        app_server,
        {
            "grant_type": "authorization_code",
            "code": code,
            "client_id": "cli",
            "code_verifier": verifier,
        },
    )
    assert response.status_code == 400, response.text
    assert response.json()["error"] in ("invalid_request", "invalid_grant")
    assert "access_token" not in response.json()


def test_unknown_code_is_invalid_grant(app_server: InProcessServer, earlier_token: str) -> None:
    verifier, _ = pkce_pair()
    response = redeem(app_server, secrets.token_urlsafe(32), verifier, "http://127.0.0.1/callback")
    assert_oauth_error(response, "invalid_grant")
    assert_still_valid(app_server, earlier_token)


def test_a_failed_redemption_uses_the_code_up(
    app_server: InProcessServer, browser: requests.Session
) -> None:
    """Redemption is an atomic take: a code that failed once is gone (single use)."""
    code, verifier, redirect_uri = cli_code(browser, app_server)
    assert_oauth_error(redeem(app_server, code, pkce_pair()[0], redirect_uri), "invalid_grant")
    assert_oauth_error(redeem(app_server, code, verifier, redirect_uri), "invalid_grant")


def test_code_of_one_client_is_refused_to_another(
    app_server: InProcessServer, browser: requests.Session, earlier_token: str
) -> None:
    code, verifier, redirect_uri = cli_code(browser, app_server)
    response = token_request(
        app_server,
        {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": redirect_uri,
            "code_verifier": verifier,
        },
        auth=("webapp", SECRETS["webapp"]),
    )
    assert_oauth_error(response, "invalid_grant")
    assert_still_valid(app_server, earlier_token)


def test_code_of_a_confidential_client_is_refused_to_a_public_one(
    app_server: InProcessServer, browser: requests.Session
) -> None:
    verifier, challenge = pkce_pair()
    params = {
        "response_type": "code",
        "client_id": "webapp",
        "redirect_uri": "https://app.example.com/cb",
        "scope": "read",
        "state": "s",
        "code_challenge": challenge,
        "code_challenge_method": "S256",
    }
    response = authorize(browser, app_server.url, params)
    response = approve_consent(browser, app_server, response)  # webapp asks for consent
    code = redirect_params(response)["code"]
    assert_oauth_error(redeem(app_server, code, verifier, params["redirect_uri"]), "invalid_grant")


# -- a replayed code revokes what the first redemption issued ----------------------------


def test_replayed_code_is_refused_and_revokes_the_first_tokens(
    app_server: InProcessServer, browser: requests.Session
) -> None:
    code, verifier, redirect_uri = cli_code(browser, app_server)
    first = redeem(app_server, code, verifier, redirect_uri)
    assert first.status_code == 200, first.text
    tokens = first.json()
    access_token, refresh_token = tokens["access_token"], tokens["refresh_token"]
    assert_still_valid(app_server, access_token)

    second = redeem(app_server, code, verifier, redirect_uri)
    assert_oauth_error(second, "invalid_grant")

    info = userinfo(app_server, access_token)
    assert info.status_code == 401
    assert 'error="invalid_token"' in info.headers["WWW-Authenticate"]
    assert introspect(app_server, access_token) == {"active": False}
    refreshed = token_request(
        app_server,
        {"grant_type": "refresh_token", "refresh_token": refresh_token, "client_id": "cli"},
    )
    assert_oauth_error(refreshed, "invalid_grant")


def test_replay_leaves_other_sign_ins_alone(
    app_server: InProcessServer, browser: requests.Session, earlier_token: str
) -> None:
    code, verifier, redirect_uri = cli_code(browser, app_server)
    assert redeem(app_server, code, verifier, redirect_uri).status_code == 200
    assert_oauth_error(redeem(app_server, code, verifier, redirect_uri), "invalid_grant")
    assert_still_valid(app_server, earlier_token)


# -- an expired code (in process, with a short lifetime) ----------------------------------


def client_login(client: FlaskClient, username: str) -> None:
    page = client.get("/login", query_string={"next": "/", "force": "1"})
    assert page.status_code == 200
    response = client.post(
        "/login",
        data={
            "csrf_token": form_field(page.get_data(as_text=True), "csrf_token"),
            "username": username,
            "password": PASSWORD,
            "next": "/",
        },
    )
    assert response.status_code == 302, response.get_data(as_text=True)


def client_code(client: FlaskClient, redirect_uri: str) -> tuple[str, str]:
    verifier, challenge = pkce_pair()
    response = flask_authorize(
        client,
        {
            "response_type": "code",
            "client_id": "cli",
            "redirect_uri": redirect_uri,
            "scope": "openid",
            "state": "s",
            "code_challenge": challenge,
            "code_challenge_method": "S256",
        },
    )
    assert response.status_code == 302, response.get_data(as_text=True)
    params = query_of(response.headers["Location"])
    assert "code" in params, params
    return params["code"], verifier


def test_expired_code_is_invalid_grant(
    make_app: AppFactory, backend: Backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(authorization_code, "CODE_TTL_SECONDS", 1)
    clock = ManualClock()
    app: Flask = make_app(clock=clock)
    Services.of(app).users.create_local("alice", PASSWORD, "user")
    client = app.test_client()
    client_login(client, "alice")
    redirect_uri = "http://127.0.0.1:40001/callback"
    fresh, fresh_verifier = client_code(client, redirect_uri)
    stale, stale_verifier = client_code(client, redirect_uri)
    data = {"grant_type": "authorization_code", "redirect_uri": redirect_uri, "client_id": "cli"}
    ok = client.post("/oauth2/token", data={**data, "code": fresh, "code_verifier": fresh_verifier})
    assert ok.status_code == 200, ok.get_data(as_text=True)
    backend.wait(clock, 1.5)
    expired = client.post(
        "/oauth2/token", data={**data, "code": stale, "code_verifier": stale_verifier}
    )
    assert expired.status_code == 400, expired.get_data(as_text=True)
    assert expired.get_json()["error"] == "invalid_grant"
    assert "access_token" not in expired.get_json()
