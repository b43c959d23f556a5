"""The trusted auth-proxy header (oauth2-proxy in front of us), in-process.

The header is believed only from an address inside ``auth_proxy.trusted_proxies``
(the TCP peer, never ``X-Forwarded-For``); from anywhere else, or when it holds no
email address, it is ignored as if it were absent.
"""

from __future__ import annotations

import secrets
from typing import Any
from urllib.parse import parse_qs, urlsplit

import jwt
import pytest
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from authserver.web.services import Services

from .conftest import AppFactory
from .support.factories import AUDIENCES
from .support.flows import form_field, pkce_pair

HEADER = "X-Auth-Request-Email"
PROXY = {"email_header": HEADER, "trusted_proxies": ["127.0.0.1/32"]}
TRUSTED = {"REMOTE_ADDR": "127.0.0.1"}
UNTRUSTED = {"REMOTE_ADDR": "10.1.2.3"}
REDIRECT_URI = "http://127.0.0.1:43210/callback"


@pytest.fixture
def proxy_app(make_app: AppFactory) -> Flask:
    return make_app(auth_proxy=PROXY)


def _users(app: Flask) -> list[Any]:
    with app.app_context():
        return list(Services.of(app).users.list())


def _authorize(
    client: FlaskClient, environ: dict[str, str], headers: dict[str, str]
) -> tuple[TestResponse, dict[str, str], str]:
    verifier, challenge = pkce_pair()
    params = {
        "response_type": "code",
        "client_id": "cli",
        "redirect_uri": REDIRECT_URI,
        "scope": "openid profile email offline_access",
        "state": secrets.token_urlsafe(8),
        "code_challenge": challenge,
        "code_challenge_method": "S256",
    }
    response = client.get(
        "/oauth2/authorize", query_string=params, headers=headers, environ_base=environ
    )
    if response.status_code == 200 and 'id="approve"' in response.get_data(as_text=True):
        # RFC 8252 §8.6: a proxy sign-in involves no interaction with us, so a public
        # client's code waits for the person's click on the confirmation page (never
        # the login page).
        response = client.post(
            "/oauth2/authorize",
            query_string=params,
            headers=headers,
            environ_base=environ,
            data={
                "csrf_token": form_field(response.get_data(as_text=True), "csrf_token"),
                "approve": "1",
            },
        )
    return response, params, verifier


def _redirected_to_login(response: TestResponse) -> None:
    assert response.status_code == 302, (response.status_code, response.get_data(as_text=True))
    location = response.headers["Location"]
    assert urlsplit(location).path == "/login", location


def _code(response: TestResponse, params: dict[str, str]) -> str:
    assert response.status_code == 302, (response.status_code, response.get_data(as_text=True))
    location = response.headers["Location"]
    assert location.startswith(REDIRECT_URI + "?"), location
    query = {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}
    assert query.get("state") == params["state"]
    assert "code" in query, query
    return query["code"]


def _redeem(client: FlaskClient, code: str, verifier: str) -> dict[str, Any]:
    response = client.post(
        "/oauth2/token",
        data={
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": REDIRECT_URI,
            "client_id": "cli",
            "code_verifier": verifier,
        },
    )
    assert response.status_code == 200, response.get_data(as_text=True)
    tokens: dict[str, Any] = response.get_json()
    return tokens


def _claims(client: FlaskClient, token: str) -> dict[str, Any]:
    metadata = client.get("/.well-known/openid-configuration").get_json()
    jwks_path = urlsplit(metadata["jwks_uri"]).path
    keys = jwt.PyJWKSet.from_dict(client.get(jwks_path).get_json())
    kid = jwt.get_unverified_header(token)["kid"]
    key = next(k for k in keys.keys if k.key_id == kid)
    claims: dict[str, Any] = jwt.decode(
        token,
        key,
        algorithms=["RS256"],
        audience=AUDIENCES,
        issuer=metadata["issuer"],
        options={"require": ["exp", "iat", "iss", "aud", "sub", "jti"]},
    )
    return claims


def test_trusted_proxy_header_signs_the_person_in(proxy_app: Flask) -> None:
    client = proxy_app.test_client()
    assert _users(proxy_app) == []
    email = "Alice.Proxy@Example.com"

    response, params, verifier = _authorize(client, TRUSTED, {HEADER: email})
    code = _code(response, params)  # no login page on the way
    tokens = _redeem(client, code, verifier)

    users = _users(proxy_app)
    assert len(users) == 1
    person = users[0]
    assert person.source == "proxy"
    assert person.role == "user"  # rbac.default_role
    assert person.username == email.lower()

    claims = _claims(client, tokens["access_token"])
    assert claims["sub"] == person.id
    assert claims["email"] == person.email
    assert claims["email"].lower() == email.lower()
    assert claims["roles"] == ["user"]
    assert claims["client_id"] == "cli"

    info = client.get(
        "/oauth2/userinfo", headers={"Authorization": f"Bearer {tokens['access_token']}"}
    )
    assert info.status_code == 200, info.get_data(as_text=True)
    assert info.get_json()["sub"] == person.id


def test_the_same_header_is_the_same_person(proxy_app: Flask) -> None:
    first_client, second_client = proxy_app.test_client(), proxy_app.test_client()
    response, params, verifier = _authorize(first_client, TRUSTED, {HEADER: "bob@example.com"})
    first = _claims(
        first_client, _redeem(first_client, _code(response, params), verifier)["access_token"]
    )
    response, params, verifier = _authorize(second_client, TRUSTED, {HEADER: "BOB@example.com"})
    second = _claims(
        second_client, _redeem(second_client, _code(response, params), verifier)["access_token"]
    )
    assert first["sub"] == second["sub"]
    assert len(_users(proxy_app)) == 1


def test_ipv4_mapped_ipv6_peer_counts_as_its_ipv4_address(proxy_app: Flask) -> None:
    client = proxy_app.test_client()
    response, params, _verifier = _authorize(
        client, {"REMOTE_ADDR": "::ffff:127.0.0.1"}, {HEADER: "carol@example.com"}
    )
    _code(response, params)
    assert [p.username for p in _users(proxy_app)] == ["carol@example.com"]


@pytest.mark.parametrize(
    ("environ", "extra_headers"),
    [
        (UNTRUSTED, {}),
        # A client cannot talk its way into the trusted range.
        (UNTRUSTED, {"X-Forwarded-For": "127.0.0.1", "X-Real-IP": "127.0.0.1"}),
        ({"REMOTE_ADDR": "127.0.0.2"}, {}),  # next to the /32, not in it
        ({"REMOTE_ADDR": "::1"}, {}),  # loopback, but not a listed network
    ],
    ids=["untrusted", "forwarded-for", "neighbour", "ipv6-loopback"],
)
def test_untrusted_address_header_is_ignored(
    proxy_app: Flask, environ: dict[str, str], extra_headers: dict[str, str]
) -> None:
    client = proxy_app.test_client()
    response, _params, _verifier = _authorize(
        client, environ, {HEADER: "mallory@example.com", **extra_headers}
    )
    _redirected_to_login(response)
    assert _users(proxy_app) == []  # no user was created


def test_untrusted_header_does_not_become_a_session(proxy_app: Flask) -> None:
    """The header from a stranger signs nobody in, now or on the next request."""
    client = proxy_app.test_client()
    response, _params, _verifier = _authorize(client, UNTRUSTED, {HEADER: "mallory@example.com"})
    _redirected_to_login(response)
    response, _params, _verifier = _authorize(client, UNTRUSTED, {})
    _redirected_to_login(response)
    assert _users(proxy_app) == []


@pytest.mark.parametrize(
    "value",
    [
        "",
        "   ",
        "not-an-email",
        "alice",
        "a b@example.com",
        "alice@example.com bob@example.com",
        "x" * 300 + "@example.com",
        "\u0430dmin@example.com",
    ],
    ids=[
        "empty",
        "blank",
        "no-at",
        "bare-name",
        "space",
        "two-addresses",
        "too-long",
        "look-alike",
    ],
)
def test_garbage_header_is_ignored(proxy_app: Flask, value: str) -> None:
    client = proxy_app.test_client()
    response, _params, _verifier = _authorize(client, TRUSTED, {HEADER: value})
    _redirected_to_login(response)
    assert _users(proxy_app) == []


def test_header_does_not_take_over_a_local_user(proxy_app: Flask) -> None:
    """A proxy email that is a local user's name signs nobody in as that user."""
    with proxy_app.app_context():
        local, _ = Services.of(proxy_app).users.create_local(
            "dave@example.com", "correct horse battery staple", "admin"
        )
    client = proxy_app.test_client()
    response, _params, _verifier = _authorize(client, TRUSTED, {HEADER: "dave@example.com"})
    assert response.status_code < 500, response.get_data(as_text=True)
    assert response.status_code != 302 or not response.headers["Location"].startswith(
        REDIRECT_URI
    ), response.headers["Location"]
    users = _users(proxy_app)
    assert [(p.id, p.source, p.role) for p in users] == [(local.id, "local", "admin")]


def test_disabled_proxy_user_is_not_signed_in(proxy_app: Flask) -> None:
    client = proxy_app.test_client()
    response, params, _verifier = _authorize(client, TRUSTED, {HEADER: "erin@example.com"})
    _code(response, params)
    with proxy_app.app_context():
        Services.of(proxy_app).users.set_disabled("erin@example.com", True)
    response, _params, _verifier = _authorize(
        proxy_app.test_client(), TRUSTED, {HEADER: "erin@example.com"}
    )
    _redirected_to_login(response)


def test_without_auth_proxy_config_the_header_means_nothing(make_app: AppFactory) -> None:
    app = make_app()
    response, _params, _verifier = _authorize(
        app.test_client(), TRUSTED, {HEADER: "frank@example.com"}
    )
    _redirected_to_login(response)
    assert _users(app) == []
