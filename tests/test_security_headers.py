"""Issue 16 "Also": nosniff everywhere, HSTS when served over https, ``form-action``
limited to what each page posts to (browsers apply it to the redirect after the POST)."""

from __future__ import annotations

import re

import requests

from .conftest import AppFactory
from .support.factories import create_user
from .support.flows import authorize, signed_in_session
from .support.servers import InProcessServer
from .test_oidc import webapp_params


def form_action(response: requests.Response) -> list[str]:
    match = re.search(r"form-action ([^;]*)", response.headers["Content-Security-Policy"])
    assert match, response.headers["Content-Security-Policy"]
    return match.group(1).split()


def test_nosniff_and_form_action_on_pages(app_server: InProcessServer) -> None:
    for path in ("/.well-known/openid-configuration", "/.well-known/jwks.json", "/login"):
        response = requests.get(app_server.url + path, timeout=10)
        assert response.headers["X-Content-Type-Options"] == "nosniff", path
        assert "Strict-Transport-Security" not in response.headers  # plain-http issuer
    login = requests.get(app_server.url + "/login", timeout=10)
    assert form_action(login) == ["'self'"]

    create_user(app_server, "hedda")
    browser = signed_in_session(app_server.url, "hedda")
    consent = authorize(browser, app_server.url, webapp_params("openid", prompt="consent"))
    assert consent.status_code == 200, consent.text[:300]
    assert form_action(consent) == ["'self'", "https://app.example.com"]
    assert consent.headers["X-Content-Type-Options"] == "nosniff"


def test_hsts_when_the_issuer_is_https(make_app: AppFactory) -> None:
    app = make_app(issuer="https://auth.example.com")
    client = app.test_client()
    response = client.get("/.well-known/openid-configuration")
    assert response.headers["Strict-Transport-Security"].startswith("max-age=")
    assert response.headers["X-Content-Type-Options"] == "nosniff"
