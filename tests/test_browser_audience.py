"""Issue 16.5 (RFC 8628 §5.4): the consent and device pages name the audience, warn for
the admin API, and remembered consent is keyed on the audience. Chromium for the pages,
HTTP for the remembered consent; both backends."""

from __future__ import annotations

import secrets
from urllib.parse import urlencode

import pytest
from playwright.sync_api import Browser, expect

from .support.factories import AUDIENCES, PASSWORD
from .support.flows import authorize, device_authorization, form_field, pkce_pair, signed_in_session
from .support.servers import LiveServer
from .test_oidc import (
    WEBAPP_REDIRECT,
    assert_consent_page,
    client_redirect,
    submit_form,
    webapp_params,
)

pytestmark = pytest.mark.live


def test_confirmation_page_warns_for_the_admin_api(
    live_server: LiveServer, browser: Browser
) -> None:
    created = live_server.cli(
        "users", "create", "ines", "--role", "admin", "--password-stdin", input_text=PASSWORD + "\n"
    )
    assert created.returncode == 0, created.stderr
    _, challenge = pkce_pair()
    params = {
        "response_type": "code",
        "client_id": "cli",
        "redirect_uri": "http://127.0.0.1:45123/callback",
        "scope": "openid",
        "state": secrets.token_urlsafe(8),
        "code_challenge": challenge,
        "code_challenge_method": "S256",
        "prompt": "consent",
        "resource": live_server.url + "/api/v1",
    }
    context = browser.new_context()
    try:
        page = context.new_page()
        page.goto(live_server.url + "/oauth2/authorize?" + urlencode(params))
        page.get_by_label("Username").fill("ines")
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Sign in").click()
        expect(page.locator("#audience")).to_have_text(live_server.url + "/api/v1")
        expect(page.locator("#admin-api-warning")).to_be_visible()
        expect(page.locator("#admin-api-warning")).to_contain_text("admin API")
    finally:
        context.close()


def test_remembered_consent_is_for_one_audience(live_server: LiveServer) -> None:
    created = live_server.cli(
        "users", "create", "jonas", "--password-stdin", input_text=PASSWORD + "\n"
    )
    assert created.returncode == 0, created.stderr
    browser = signed_in_session(live_server.url, "jonas")
    first = authorize(browser, live_server.url, webapp_params("openid", resource=AUDIENCES[0]))
    assert_consent_page(first)
    assert AUDIENCES[0] in first.text
    assert "admin-api-warning" not in first.text
    code = client_redirect(submit_form(browser, live_server, first, approve="1"), WEBAPP_REDIRECT)
    assert "code" in code
    # The same client and scopes for the same audience: remembered.
    again = authorize(browser, live_server.url, webapp_params("openid", resource=AUDIENCES[0]))
    assert "code" in client_redirect(again, WEBAPP_REDIRECT)
    # Another audience asks again.
    other = authorize(browser, live_server.url, webapp_params("openid", resource=AUDIENCES[1]))
    assert_consent_page(other)
    assert AUDIENCES[1] in other.text


def test_device_page_names_the_audience_and_warns_for_the_admin_api(
    live_server: LiveServer,
) -> None:
    created = live_server.cli(
        "users", "create", "karl", "--password-stdin", input_text=PASSWORD + "\n"
    )
    assert created.returncode == 0, created.stderr
    browser = signed_in_session(live_server.url, "karl")
    for resource, warned in ((live_server.url + "/api/v1", True), (AUDIENCES[1], False)):
        started = device_authorization(live_server.url, "openid", resource=resource)
        page = browser.get(live_server.url + "/device", timeout=30)
        confirm = browser.post(
            live_server.url + "/device",
            data={
                "csrf_token": form_field(page.text, "csrf_token"),
                "user_code": started["user_code"],
            },
            timeout=30,
        )
        assert confirm.status_code == 200, confirm.text
        assert f'<code id="audience">{resource}</code>' in confirm.text
        assert ('id="admin-api-warning"' in confirm.text) is warned
