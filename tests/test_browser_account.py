"""The person's pages, the dashboard's password reset and audit names, and branding, in
a real browser (Debian's Chromium through Playwright, against a live ``authserver
serve``), some at a phone's width (375 px): nothing makes the page itself scroll
sideways, a wide table scrolls in its own labelled region.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, BrowserContext, ConsoleMessage, Page, expect

from . import test_account_pages
from .support.factories import PASSWORD, create_user
from .support.servers import LiveServer
from .test_account_pages import NEW_PASSWORD
from .test_browser import TIMEOUT_MS, path_of

pytestmark = pytest.mark.live

PHONE = {"width": 375, "height": 740}
#: The live server with ``branding:`` and an auth proxy, as the HTTP tests have it.
branded_server = test_account_pages.branded_server


@pytest.fixture
def phone(browser: Browser) -> Iterator[BrowserContext]:
    ctx = browser.new_context(viewport=PHONE, device_scale_factor=2, is_mobile=True)
    ctx.set_default_timeout(TIMEOUT_MS)
    yield ctx
    ctx.close()


@pytest.fixture
def desktop(browser: Browser) -> Iterator[BrowserContext]:
    ctx = browser.new_context(viewport={"width": 1280, "height": 900})
    ctx.set_default_timeout(TIMEOUT_MS)
    yield ctx
    ctx.close()


def sign_in(page: Page, username: str, password: str = PASSWORD) -> None:
    assert path_of(page.url) == "/login", page.url
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()


def page_overflows(page: Page) -> bool:
    """Whether the page itself is wider than the window (it would scroll sideways)."""
    return bool(
        page.evaluate(
            "() => document.documentElement.scrollWidth > document.documentElement.clientWidth"
        )
    )


def visible_unlabelled(page: Page) -> list[str]:
    found: list[str] = page.evaluate(
        """() => Array.from(document.querySelectorAll(
                'input:not([type=hidden]), select, textarea'))
            .filter(el => el.offsetParent !== null && (!el.labels || el.labels.length === 0))
            .map(el => el.id || el.name || el.outerHTML)"""
    )
    return found


def test_account_page_on_a_phone(live_server: LiveServer, phone: BrowserContext) -> None:
    create_user(live_server, "pw-phone", role="viewer")
    page = phone.new_page()
    page.goto(live_server.url + "/account")
    sign_in(page, "pw-phone")
    page.wait_for_url(lambda url: path_of(url) == "/account")
    expect(page.get_by_role("heading", level=1)).to_have_text("Your account")
    expect(page.locator("#account-username")).to_have_text("pw-phone")
    expect(page.locator("#account-roles")).to_have_text("viewer")
    expect(page.get_by_role("region", name="Your signed-in clients")).to_be_visible()
    assert not page_overflows(page)
    assert visible_unlabelled(page) == []

    # A wrong current password: a clear alert, the form again.
    page.get_by_label("Current password").fill("not my password")
    page.get_by_label("New password", exact=True).fill(NEW_PASSWORD)
    page.get_by_label("New password again").fill(NEW_PASSWORD)
    page.get_by_role("button", name="Change password").click()
    expect(page.get_by_role("alert")).to_contain_text("The current password is wrong")

    page.get_by_label("Current password").fill(PASSWORD)
    page.get_by_label("New password", exact=True).fill(NEW_PASSWORD)
    page.get_by_label("New password again").fill(NEW_PASSWORD)
    page.get_by_role("button", name="Change password").click()
    page.wait_for_url(lambda url: path_of(url) == "/account")
    expect(page.get_by_role("status")).to_contain_text("Your password is changed")
    assert not page_overflows(page)

    page.get_by_role("button", name="Sign out everywhere").click()
    page.wait_for_url(lambda url: path_of(url) == "/login")
    expect(page.get_by_role("status")).to_contain_text("You are signed out everywhere")
    page.goto(live_server.url + "/account")
    assert path_of(page.url) == "/login"
    sign_in(page, "pw-phone", NEW_PASSWORD)
    page.wait_for_url(lambda url: path_of(url) == "/account")


def test_home_links_an_admin_to_the_dashboard(
    live_server: LiveServer, desktop: BrowserContext
) -> None:
    create_user(live_server, "home-browser-admin", role="admin")
    page = desktop.new_page()
    page.goto(live_server.url + "/login")
    sign_in(page, "home-browser-admin")
    page.wait_for_url(lambda url: path_of(url) == "/")
    links = page.get_by_role("navigation", name="Where to go")
    expect(links.get_by_role("link", name="Your account")).to_be_visible()
    links.get_by_role("link", name="Admin dashboard").click()
    page.wait_for_url(lambda url: path_of(url) == "/dashboard/users")


def test_admin_resets_a_password_and_reads_the_audit_log_on_a_phone(
    live_server: LiveServer, browser: Browser, phone: BrowserContext
) -> None:
    create_user(live_server, "phone-admin", role="admin")
    target_id = create_user(live_server, "phone-target")
    page = phone.new_page()
    page.goto(live_server.url + "/dashboard/users")
    sign_in(page, "phone-admin")
    page.wait_for_url(lambda url: path_of(url) == "/dashboard/users")
    region = page.get_by_role("region", name="Users table")
    expect(region).to_be_visible()
    assert not page_overflows(page)
    # The table is wider than a phone: it scrolls inside its region.
    assert region.evaluate("el => el.scrollWidth > el.clientWidth")

    page.get_by_role("link", name="Password… of phone-target").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Reset the password of phone-target")
    assert visible_unlabelled(page) == []
    expect(page.get_by_label("New password")).to_have_value("generate")
    page.get_by_role("button", name="Reset password of phone-target").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("New password for phone-target")
    password = page.get_by_label("Password", exact=True).input_value()
    assert len(password) >= 12
    assert not page_overflows(page)

    # The user signs in with it, in a browser of their own.
    other = browser.new_context(viewport=PHONE)
    other.set_default_timeout(TIMEOUT_MS)
    try:
        check = other.new_page()
        check.goto(live_server.url + "/account")
        sign_in(check, "phone-target", password)
        check.wait_for_url(lambda url: path_of(url) == "/account")
    finally:
        other.close()

    page.goto(live_server.url + "/dashboard/audit?event=password_changed")
    row = page.locator('tr[data-event="password_changed"]').first
    expect(row.locator("td.actor")).to_have_text("phone-admin")
    expect(row.locator("td").nth(4)).to_have_text("phone-target")
    assert not page_overflows(page)
    page.goto(live_server.url + "/dashboard/audit?event=login")
    logins = page.locator('tr[data-event="login"]')
    expect(logins.filter(has_text="phone-target").first).to_be_visible()
    assert target_id not in page.content()
    expect(logins.first.locator("td.details dt").first).to_have_text("username")
    region = page.get_by_role("region", name="Audit log table")
    assert region.evaluate("el => el.scrollWidth > el.clientWidth")
    assert not page_overflows(page)


def test_branding_on_the_login_page_and_the_dashboard(
    branded_server: LiveServer, desktop: BrowserContext
) -> None:
    violations: list[str] = []

    def console(message: ConsoleMessage) -> None:
        if "Content Security Policy" in message.text:
            violations.append(message.text)

    requested: list[str] = []
    desktop.on("request", lambda request: requested.append(request.url))
    create_user(branded_server, "brand-admin", role="admin")
    page = desktop.new_page()
    page.on("console", console)
    page.goto(branded_server.url + "/login")
    expect(page.get_by_role("heading", level=1)).to_have_text("Sign in to Example Corp")
    expect(page.get_by_role("banner")).to_contain_text("Example Corp")
    logo = page.locator("#brand-logo")
    expect(logo).to_be_visible()
    assert logo.evaluate("img => img.complete && img.naturalWidth") == 2
    sign_in(page, "brand-admin")
    page.wait_for_url(lambda url: path_of(url) == "/")
    page.goto(branded_server.url + "/dashboard/users")
    expect(page.locator("header #brand-name")).to_have_text("Example Corp")
    assert page.locator("header #brand-logo").evaluate("img => img.naturalWidth") == 2
    assert violations == []
    assert [url for url in requested if not url.startswith(branded_server.url + "/")] == []
    assert any("/branding/logo?v=" in url for url in requested)
