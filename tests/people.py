"""Helpers for tests of people's sign-in: PKCE pairs, the login form, the authorize redirect.

They drive the real pages over HTTP with ``requests`` (or a Flask test client through
:class:`FlaskSession`), parsing the CSRF token out of the form like a browser would.
"""

from __future__ import annotations

import base64
import hashlib
import html
import re
import secrets
from typing import Any
from urllib.parse import parse_qs, urljoin, urlsplit

import requests

PASSWORD = "correct horse battery staple"


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
