"""The flow driver: what tests do again and again to get and use tokens.

Authorization code + PKCE (RFC 6749 §4.1, RFC 7636) through the real login form and
authorization endpoint, the device flow (RFC 8628), refresh (RFC 6749 §6), client
credentials (RFC 6749 §4.4) and introspection (RFC 7662). Two transports: ``requests``
against a base URL (a live server), and a Flask test client (``flask_*``: an in-process
app). Pages are parsed like a browser would, CSRF token included.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import re
import secrets
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urljoin, urlsplit

import jwt
import requests
from flask import Flask
from flask.testing import FlaskClient

from .factories import PASSWORD, SECRETS

if TYPE_CHECKING:
    from .servers import InProcessServer, LiveServer

REDIRECT_URI = "http://127.0.0.1:43210/callback"
OFFLINE_SCOPE = "openid profile offline_access"
DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"


def jwt_claims(token: str) -> dict[str, Any]:
    """The payload of a JWT (its signature is checked by the tests of the token path)."""
    payload = token.split(".")[1]
    claims: dict[str, Any] = json.loads(
        base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
    )
    return claims


class JWKSClient(jwt.PyJWKClient):
    """PyJWT's JWKS client, fetching over ``requests`` (so an in-process server's
    too): the keys are those the endpoint serves; PyJWT picks and checks them."""

    def fetch_data(self) -> Any:
        response = requests.get(self.uri, headers=self.headers, timeout=self.timeout)
        response.raise_for_status()
        jwk_set = response.json()
        if self.jwk_set_cache is not None:
            self.jwk_set_cache.put(jwk_set)
        return jwk_set


# -- the browser side: login form, authorization endpoint ---------------------------


def pkce_pair() -> tuple[str, str]:
    """``(code_verifier, S256 code_challenge)`` (RFC 7636 §4.1-4.2)."""
    verifier = secrets.token_urlsafe(48)
    digest = hashlib.sha256(verifier.encode()).digest()
    return verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def form_field(page: str, name: str) -> str:
    match = re.search(rf'name="{name}"[^>]*value="([^"]*)"', page) or re.search(
        rf'value="([^"]*)"[^>]*name="{name}"', page
    )
    assert match, f"no {name} field in the page:\n{page[:2000]}"
    return html.unescape(match.group(1))


def login(
    session: requests.Session, base_url: str, username: str, password: str, next_url: str = "/"
) -> requests.Response:
    """Sign in through the login form; returns the response to the POST (not followed)."""
    page = session.get(base_url + "/login", params={"next": next_url, "force": "1"}, timeout=10)
    assert page.status_code == 200, page.text
    return session.post(
        base_url + "/login",
        data={
            "csrf_token": form_field(page.text, "csrf_token"),
            "username": username,
            "password": password,
            "next": next_url,
        },
        allow_redirects=False,
        timeout=10,
    )


def authorize(
    session: requests.Session, base_url: str, params: dict[str, str]
) -> requests.Response:
    """GET the authorization endpoint and follow redirects that stay on our server.

    Returns the last response: a redirect to the client (``Location`` elsewhere) or a
    page of ours.
    """
    response = session.get(
        base_url + "/oauth2/authorize", params=params, allow_redirects=False, timeout=10
    )
    for _ in range(5):
        location = response.headers.get("Location")
        if response.status_code not in (301, 302, 303) or not location:
            return response
        target = urljoin(base_url + "/", location)
        if not target.startswith(base_url + "/"):
            return response
        response = session.get(target, allow_redirects=False, timeout=10)
    return response


def redirect_params(response: requests.Response) -> dict[str, str]:
    """The query parameters of a redirect to the client (code, state, iss or error)."""
    assert response.status_code == 302, (response.status_code, response.text[:500])
    query = parse_qs(urlsplit(response.headers["Location"]).query)
    return {k: v[0] for k, v in query.items()}


def signed_in_session(base_url: str, username: str, password: str = PASSWORD) -> requests.Session:
    session = requests.Session()
    response = login(session, base_url, username, password)
    assert response.status_code == 302, response.text
    return session


def code_for(
    session: requests.Session,
    base_url: str,
    *,
    client_id: str = "cli",
    redirect_uri: str = "http://127.0.0.1:43210/callback",
    scope: str = "openid profile offline_access",
    **extra: str,
) -> tuple[str, str, dict[str, Any]]:
    """Run the authorization request for a signed-in session: ``(code, verifier, params)``."""
    verifier, challenge = pkce_pair()
    params = {
        "response_type": "code",
        "client_id": client_id,
        "redirect_uri": redirect_uri,
        "scope": scope,
        "state": secrets.token_urlsafe(8),
        "code_challenge": challenge,
        "code_challenge_method": "S256",
        **extra,
    }
    result = redirect_params(authorize_confirmed(session, base_url, params))
    assert "code" in result, result
    return result["code"], verifier, result


def authorize_confirmed(
    session: requests.Session, base_url: str, params: dict[str, str]
) -> requests.Response:
    """:func:`authorize`, clicking Allow on the confirmation page if one comes: a
    sign-in this request did not start leaves a public client's code to the person's
    click (RFC 8252 §8.6, issue 16.13)."""
    response = authorize(session, base_url, params)
    if response.status_code == 200 and 'id="approve"' in response.text:
        response = confirm(session, base_url, response, params)
    return response


def confirm(
    session: requests.Session,
    base_url: str,
    page: requests.Response,
    params: dict[str, str],
    answer: str = "approve",
) -> requests.Response:
    """Click Allow (or Deny) on the consent or confirmation page of ``params``."""
    return session.post(
        base_url + "/oauth2/authorize",
        params=params,
        data={"csrf_token": form_field(page.text, "csrf_token"), answer: "1"},
        allow_redirects=False,
        timeout=10,
    )


def flask_authorize(client: Any, query: dict[str, str]) -> Any:
    """GET the authorization endpoint with a Flask test client, clicking Allow on the
    confirmation page if one comes (a sign-in this request did not start, issue 16.13)."""
    response = client.get("/oauth2/authorize", query_string=query)
    text = response.get_data(as_text=True)
    if response.status_code == 200 and 'id="approve"' in text:
        response = client.post(
            "/oauth2/authorize",
            query_string=query,
            data={"csrf_token": form_field(text, "csrf_token"), "approve": "1"},
        )
    return response


# -- authorization code, refresh ----------------------------------------------------


def redeem(url: str, code: str, verifier: str) -> requests.Response:
    return requests.post(
        url + "/oauth2/token",
        data={
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": REDIRECT_URI,
            "client_id": "cli",
            "code_verifier": verifier,
        },
        timeout=30,
    )


def live_tokens(
    server: LiveServer | InProcessServer, username: str, scope: str = OFFLINE_SCOPE
) -> dict[str, Any]:
    """Sign in, authorize ``cli`` with PKCE and redeem the code: the token response."""
    session = signed_in_session(server.url, username)
    code, verifier, _ = code_for(session, server.url, redirect_uri=REDIRECT_URI, scope=scope)
    response = redeem(server.url, code, verifier)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    assert body["refresh_token"].startswith("as_rt_"), body
    return body


def refresh(
    url: str, token: str, *, auth: tuple[str, str] | None = None, **extra: str
) -> requests.Response:
    """A refresh request: as public ``cli`` (client_id in the body) unless ``auth``."""
    data = {"grant_type": "refresh_token", "refresh_token": token, **extra}
    if auth is None:
        data["client_id"] = "cli"
    return requests.post(url + "/oauth2/token", data=data, auth=auth, timeout=30)


def assert_oauth_error(response: Any, error: str, status: int = 400) -> None:
    """An RFC 6749 §5.2 error response (requests or Flask test response)."""
    body = response.json() if isinstance(response, requests.Response) else response.get_json()
    assert response.status_code == status, (response.status_code, body)
    assert body["error"] == error, body
    assert body.get("error_description"), body


def flask_sign_in(app: Flask, username: str, address: str = "127.0.0.1") -> FlaskClient:
    """A Flask test client signed in through the login form, from ``address``."""
    client = app.test_client()
    client.environ_base["REMOTE_ADDR"] = address
    page = client.get("/login", query_string={"next": "/", "force": "1"})
    assert page.status_code == 200, page.get_data(as_text=True)
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
    return client


def flask_tokens(client: FlaskClient, scope: str = OFFLINE_SCOPE) -> dict[str, Any]:
    """The code flow for ``cli`` through a signed-in test client: the token response."""
    verifier, challenge = pkce_pair()
    query = {
        "response_type": "code",
        "client_id": "cli",
        "redirect_uri": REDIRECT_URI,
        "scope": scope,
        "state": "s",
        "code_challenge": challenge,
        "code_challenge_method": "S256",
    }
    response = flask_authorize(client, query)  # the person confirms (issue 16.13)
    assert response.status_code == 302, response.get_data(as_text=True)
    query = parse_qs(urlsplit(response.headers["Location"]).query)
    assert "code" in query, query
    token = client.post(
        "/oauth2/token",
        data={
            "grant_type": "authorization_code",
            "code": query["code"][0],
            "redirect_uri": REDIRECT_URI,
            "client_id": "cli",
            "code_verifier": verifier,
        },
    )
    assert token.status_code == 200, token.get_data(as_text=True)
    body: dict[str, Any] = token.get_json()
    assert body["refresh_token"].startswith("as_rt_"), body
    return body


def flask_refresh(client: FlaskClient, token: str, **extra: str) -> Any:
    return client.post(
        "/oauth2/token",
        data={"grant_type": "refresh_token", "refresh_token": token, "client_id": "cli", **extra},
    )


# -- device flow (RFC 8628) -----------------------------------------------------------


def device_authorization(
    url: str, scope: str = "openid profile offline_access", **extra: str
) -> dict[str, Any]:
    response = requests.post(
        url + "/oauth2/device_authorization",
        data={"client_id": "cli", "scope": scope, **extra},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    assert response.headers["Cache-Control"] == "no-store"
    body: dict[str, Any] = response.json()
    return body


def poll_once(url: str, device_code: str) -> requests.Response:
    return requests.post(
        url + "/oauth2/token",
        data={"grant_type": DEVICE_GRANT, "device_code": device_code, "client_id": "cli"},
        timeout=30,
    )


def flask_poll(client: FlaskClient, device_code: str) -> Any:
    return client.post(
        "/oauth2/token",
        data={"grant_type": DEVICE_GRANT, "device_code": device_code, "client_id": "cli"},
    )


def decide(
    session: requests.Session, url: str, user_code: str, answer: str = "approve"
) -> requests.Response:
    """Enter the code on /device, check the confirmation page, then approve or deny."""
    page = session.get(url + "/device", timeout=30)
    assert page.status_code == 200, page.text
    confirm = session.post(
        url + "/device",
        data={"csrf_token": form_field(page.text, "csrf_token"), "user_code": user_code},
        timeout=30,
    )
    return answer_confirmation(session, url, confirm, user_code, answer)


def answer_confirmation(
    session: requests.Session,
    url: str,
    confirm: requests.Response,
    user_code: str,
    answer: str = "approve",
) -> requests.Response:
    assert confirm.status_code == 200, confirm.text
    assert user_code in confirm.text
    assert "cli" in confirm.text
    return session.post(
        url + "/device/decide",
        data={
            "csrf_token": form_field(confirm.text, "csrf_token"),
            "user_code": form_field(confirm.text, "user_code"),
            answer: "1",
        },
        allow_redirects=False,
        timeout=30,
    )


# -- client credentials, introspection ------------------------------------------------


def client_credentials(url: str) -> requests.Response:
    return requests.post(
        url + "/oauth2/token",
        data={"grant_type": "client_credentials", "scope": "all"},
        auth=("ci", SECRETS["ci"]),
        timeout=30,
    )


def introspect(server: LiveServer | InProcessServer, token: str) -> dict[str, Any]:
    response = requests.post(
        server.url + "/oauth2/introspect",
        data={"token": token},
        auth=("rs", SECRETS["rs"]),
        timeout=10,
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body
