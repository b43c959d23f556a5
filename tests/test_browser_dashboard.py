"""The admin dashboard in a real browser (issue #4): Debian's Chromium, driven by
Playwright against a live ``authserver serve``, signs in as an admin through the login
page, creates a service account, reads its token off the page, trades it for an access
token (DESIGN.md: HTTP Basic ``<client_id>:<token>`` or the token alone as
``client_secret``), revokes it in the page and sees the token refused. The pages load
nothing from anywhere but the server itself.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator

import pytest
import requests
from playwright.sync_api import Browser, BrowserContext, Page, Request, expect

from .support.factories import PASSWORD
from .support.servers import LiveServer
from .test_browser import TIMEOUT_MS, path_of, unlabelled_inputs

pytestmark = pytest.mark.live

ADMIN = "dash-admin"


@pytest.fixture
def context(browser: Browser, live_server: LiveServer) -> Iterator[BrowserContext]:
    ctx = browser.new_context(viewport={"width": 1280, "height": 900})
    ctx.set_default_timeout(TIMEOUT_MS)
    # The copy button writes to the clipboard; the test reads it back.
    ctx.grant_permissions(["clipboard-read", "clipboard-write"], origin=live_server.url)
    yield ctx
    ctx.close()


@pytest.fixture
def requested(context: BrowserContext) -> list[str]:
    """Every URL the browser asks for, from any page of the context."""
    urls: list[str] = []

    def record(request: Request) -> None:
        urls.append(request.url)

    context.on("request", record)
    return urls


@pytest.fixture
def page(context: BrowserContext, requested: list[str]) -> Page:
    return context.new_page()


@pytest.fixture(scope="module")
def admin_user(live_server: LiveServer) -> str:
    created = live_server.cli(
        "users", "create", ADMIN, "--role", "admin", "--password-stdin", input_text=PASSWORD + "\n"
    )
    assert created.returncode == 0, created.stderr
    return ADMIN


def token_request(server: LiveServer, token: str, *, basic: bool) -> requests.Response:
    data = {"grant_type": "client_credentials"}
    if basic:
        client_id = token.removeprefix("as_sa_").split(".", 1)[0]
        auth = base64.b64encode(f"{client_id}:{token}".encode()).decode()
        return requests.post(
            server.url + "/oauth2/token",
            data=data,
            headers={"Authorization": f"Basic {auth}"},
            timeout=10,
        )
    return requests.post(
        server.url + "/oauth2/token", data={**data, "client_secret": token}, timeout=10
    )


def test_service_account_from_the_dashboard_works_until_revoked(
    live_server: LiveServer, admin_user: str, page: Page, requested: list[str]
) -> None:
    # Signing in is the normal login page, which brings the admin back.
    page.goto(live_server.url + "/dashboard")
    assert path_of(page.url) == "/login", page.url
    page.get_by_label("Username").fill(admin_user)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(lambda url: path_of(url) == "/dashboard/users")
    assert page.locator("html").get_attribute("lang") == "en"
    nav = page.get_by_role("navigation", name="Dashboard")
    expect(nav.get_by_role("link", name="Users")).to_have_attribute("aria-current", "page")
    expect(page.get_by_role("row").filter(has_text=admin_user)).to_be_visible()
    assert unlabelled_inputs(page) == []

    nav.get_by_role("link", name="Service accounts").click()
    page.wait_for_url(lambda url: path_of(url) == "/dashboard/service-accounts")
    assert unlabelled_inputs(page) == []
    page.get_by_label("Name").fill("ci-deploy")
    page.get_by_label("Role").select_option("user")
    expect(page.get_by_label("Expires in")).to_have_value("30 days")
    page.get_by_role("button", name="Create service account").click()

    # The token, once, with a labelled copy button that copies exactly it.
    expect(page.get_by_role("heading")).to_have_text("Service account ci-deploy created")
    field = page.locator("#service-account-token")
    expect(field).to_have_attribute("readonly", "")
    token = field.input_value()
    assert token.startswith("as_sa_"), token
    expect(page.get_by_label("Token")).to_have_value(token)
    expect(page.get_by_text("it is shown only this once")).to_be_visible()
    copy = page.get_by_role("button", name="Copy token")
    expect(copy).to_be_visible()
    copy.click()
    expect(page.locator("#copy-status")).to_have_text("Copied.")
    assert page.evaluate("() => navigator.clipboard.readText()") == token

    for basic in (True, False):
        issued = token_request(live_server, token, basic=basic)
        assert issued.status_code == 200, issued.text
        body = issued.json()
        assert body["access_token"]
        assert body["token_type"].lower() == "bearer"

    # Back to the list: the token is not there. Revoke, through the confirmation page.
    page.get_by_role("link", name="Back to service accounts").click()
    page.wait_for_url(lambda url: path_of(url) == "/dashboard/service-accounts")
    row = page.get_by_role("row").filter(has_text="ci-deploy")
    expect(row).to_be_visible()
    assert token not in page.content()
    row.get_by_role("link", name="Revoke… ci-deploy").click()
    expect(page.get_by_role("heading")).to_have_text("Revoke service account ci-deploy?")
    page.get_by_role("button", name="Revoke ci-deploy").click()
    page.wait_for_url(lambda url: path_of(url) == "/dashboard/service-accounts")
    expect(page.get_by_role("status")).to_contain_text("ci-deploy revoked")
    expect(page.get_by_role("row").filter(has_text="ci-deploy")).to_have_count(0)

    for basic in (True, False):
        refused = token_request(live_server, token, basic=basic)
        # RFC 6749 §5.2: 401 when the client authenticated with the Authorization header.
        assert refused.status_code == (401 if basic else 400), refused.text
        assert refused.json()["error"] == "invalid_client"

    # The audit log names the admin; and nothing came from anywhere but the server.
    nav.get_by_role("link", name="Audit log").click()
    page.get_by_label("Event").select_option("service_account_revoked")
    page.get_by_role("button", name="Show").click()
    revoked = page.locator('tr[data-event="service_account_revoked"]')
    expect(revoked).to_have_count(1)
    expect(revoked.locator("td.actor")).to_have_text(admin_user)
    assert requested, "no request was seen"
    foreign = [url for url in requested if not url.startswith(live_server.url + "/")]
    assert foreign == []


def test_dashboard_refuses_a_signed_in_non_admin(
    live_server: LiveServer, page: Page, requested: list[str]
) -> None:
    created = live_server.cli(
        "users", "create", "dash-user", "--password-stdin", input_text=PASSWORD + "\n"
    )
    assert created.returncode == 0, created.stderr
    page.goto(live_server.url + "/dashboard/service-accounts")
    page.get_by_label("Username").fill("dash-user")
    page.get_by_label("Password").fill(PASSWORD)
    with page.expect_response(lambda r: path_of(r.url) == "/dashboard/service-accounts") as landed:
        page.get_by_role("button", name="Sign in").click()
    assert landed.value.status == 403
    expect(page.get_by_role("alert")).to_contain_text("The dashboard is for admins.")
    assert all(url.startswith(live_server.url + "/") for url in requested)
