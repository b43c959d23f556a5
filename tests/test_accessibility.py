"""Every page in Chromium, checked by axe-core, and the main journeys by keyboard alone.

axe-core comes from npm, pinned in tests/a11y/package-lock.json; ``make install`` puts
it in tests/a11y/node_modules (``npm ci --prefix tests/a11y``). Each page is reached the
way a person reaches it (the login form, an authorization request of a real client, a
device flow started at the device endpoint, the dashboard's links and forms), then axe
runs in it and no violation of impact ``serious`` or ``critical`` may remain.

The pages' CSP (``default-src 'none'``, scripts by nonce only) refuses the script tag
that injects axe, so the contexts of the axe runs have ``bypass_csp=True``; the keyboard
journeys run in ordinary contexts, under the CSP.

To check one more page: one more function decorated with ``@visits("name")`` that
takes a page (of a fresh context) and the :class:`Site`, goes there and checks it
arrived.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import pytest
import requests
from playwright.sync_api import Browser, BrowserContext, Page, expect

from .support.factories import PASSWORD, SECRETS
from .support.flows import pkce_pair, poll_once
from .support.servers import LiveServer
from .test_browser import TIMEOUT_MS, WEBAPP_REDIRECT, path_of, start_device

pytestmark = pytest.mark.live

AXE_JS = Path(__file__).parent / "a11y" / "node_modules" / "axe-core" / "axe.min.js"
ADMIN = "a11y-admin"
USER = "a11y-user"
SERVICE_ACCOUNT = "deploy-bot"
#: What must not be found; axe's other impacts (moderate, minor) are reported only.
BLOCKING = ("serious", "critical")


# -- the server, its people and a browser ---------------------------------------------


@dataclass
class Site:
    """A live server with an admin, a user and a service account, and the cookies of
    those already signed in (through the login form, once each)."""

    server: LiveServer
    browser: Browser
    cookies: dict[str, list[Any]] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return self.server.url

    def sign_in(self, page: Page, username: str, *, fresh: bool = False) -> None:
        """``username`` signed in in ``page``'s context: through the login form the
        first time (or every time, ``fresh``), afterwards with the cookies it set."""
        if username in self.cookies and not fresh:
            page.context.add_cookies(self.cookies[username])
            return
        page.goto(self.url + "/login")
        login_form(page, username)
        page.wait_for_url(lambda url: path_of(url) == "/")
        if not fresh:
            self.cookies[username] = list(page.context.cookies())

    def one_time_password(self) -> str:
        """The first admin's (``admin``), which ``serve`` wrote beside its secret key."""
        return (self.server.workdir / "initial_admin_password").read_text().strip()


def login_form(page: Page, username: str, password: str = PASSWORD) -> None:
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()


@pytest.fixture(scope="module")
def site(live_server: LiveServer, browser: Browser) -> Site:
    people = f"username,password,role\n{ADMIN},{PASSWORD},admin\n{USER},{PASSWORD},user\n"
    made = live_server.cli("users", "import-csv", "-", input_text=people)
    assert made.returncode == 0, made.stderr
    made = live_server.cli("service-accounts", "create", SERVICE_ACCOUNT, "--role", "user")
    assert made.returncode == 0, made.stderr
    return Site(live_server, browser)


@pytest.fixture(scope="module")
def axe_source() -> str:
    if not AXE_JS.exists():
        pytest.fail(
            f"{AXE_JS} is missing: run `make install` (or `npm ci --prefix tests/a11y`)",
            pytrace=False,
        )
    return AXE_JS.read_text()


@pytest.fixture
def axe_page(site: Site) -> Iterator[Page]:
    """A page of a fresh context whose pages run injected scripts despite the CSP."""
    ctx = site.browser.new_context(bypass_csp=True, viewport={"width": 1280, "height": 900})
    ctx.set_default_timeout(TIMEOUT_MS)
    yield ctx.new_page()
    ctx.close()


@pytest.fixture
def context(site: Site) -> Iterator[BrowserContext]:
    """An ordinary context (the CSP in force) for the keyboard journeys."""
    ctx = site.browser.new_context(viewport={"width": 1280, "height": 900})
    ctx.set_default_timeout(TIMEOUT_MS)
    yield ctx
    ctx.close()


# -- the pages ------------------------------------------------------------------------

PAGES: dict[str, Callable[[Page, Site], None]] = {}


def visits(name: str) -> Callable[[Callable[[Page, Site], None]], Callable[[Page, Site], None]]:
    def register(go: Callable[[Page, Site], None]) -> Callable[[Page, Site], None]:
        PAGES[name] = go
        return go

    return register


def heading(page: Page, text: str) -> None:
    expect(page.locator("h1")).to_contain_text(text)


def webapp_authorization(site: Site) -> tuple[str, str, str]:
    """An authorization request of ``webapp`` (it asks for consent): its URL, state
    and PKCE verifier."""
    verifier, challenge = pkce_pair()
    state = secrets.token_urlsafe(12)
    params = {
        "response_type": "code",
        "client_id": "webapp",
        "redirect_uri": WEBAPP_REDIRECT,
        "scope": "openid profile read",
        "state": state,
        "code_challenge": challenge,
        "code_challenge_method": "S256",
    }
    return site.url + "/oauth2/authorize?" + urlencode(params), state, verifier


@visits("login")
def _login(page: Page, site: Site) -> None:
    page.goto(site.url + "/dashboard")
    heading(page, "Sign in")


@visits("login-wrong-password")
def _login_wrong(page: Page, site: Site) -> None:
    page.goto(site.url + "/login")
    login_form(page, USER, "not the password")
    expect(page.get_by_role("alert")).to_have_text("Wrong username or password.")


@visits("new-password")
def _new_password(page: Page, site: Site) -> None:
    page.goto(site.url + "/login")
    login_form(page, "admin", site.one_time_password())
    heading(page, "Choose a new password")


def signed_in_at(page: Page, site: Site, username: str, url: str, title: str) -> None:
    """``username``, signed in, opens ``url``, whose heading says ``title``."""
    site.sign_in(page, username)
    page.goto(url if url.startswith("http") else site.url + url)
    heading(page, title)


@visits("home")
def _home(page: Page, site: Site) -> None:
    signed_in_at(page, site, USER, "/", "Signed in")


@visits("home-admin")
def _home_admin(page: Page, site: Site) -> None:
    signed_in_at(page, site, ADMIN, "/", "Signed in")
    expect(page.get_by_role("link", name="Admin dashboard")).to_be_visible()


@visits("account")
def _account(page: Page, site: Site) -> None:
    signed_in_at(page, site, USER, "/account", "Your account")
    expect(page.get_by_label("Current password")).to_be_visible()


@visits("account-wrong-password")
def _account_wrong_password(page: Page, site: Site) -> None:
    signed_in_at(page, site, USER, "/account", "Your account")
    page.get_by_label("Current password").fill("not the password")
    page.get_by_label("New password", exact=True).fill("a new password of length")
    page.get_by_label("New password again").fill("a new password of length")
    page.get_by_role("button", name="Change password").click()
    expect(page.get_by_role("alert")).to_contain_text("current password is wrong")


@visits("consent")
def _consent(page: Page, site: Site) -> None:
    signed_in_at(page, site, USER, webapp_authorization(site)[0], "Allow webapp access?")


@visits("authorization-error")
def _authorization_error(page: Page, site: Site) -> None:
    page.goto(site.url + "/oauth2/authorize?response_type=code&client_id=no-such-client")
    heading(page, "This sign-in link is not valid")


@visits("device")
def _device(page: Page, site: Site) -> None:
    signed_in_at(page, site, USER, "/device", "Connect a device")


@visits("device-wrong-code")
def _device_wrong(page: Page, site: Site) -> None:
    signed_in_at(page, site, USER, "/device", "Connect a device")
    page.get_by_label("Code").fill("NOPE-NOPE")
    page.get_by_role("button", name="Continue").click()
    expect(page.get_by_role("alert")).to_contain_text("not valid")


@visits("device-confirm")
def _device_confirm(page: Page, site: Site) -> None:
    device = start_device(site.server)
    signed_in_at(page, site, USER, device["verification_uri_complete"], "Approve this device?")
    expect(page.locator("#shown-code")).to_have_text(device["user_code"])


@visits("logout")
def _logout(page: Page, site: Site) -> None:
    signed_in_at(page, site, USER, "/logout", "Sign out?")


@visits("signed-out")
def _signed_out(page: Page, site: Site) -> None:
    site.sign_in(page, USER, fresh=True)  # a session of its own, ended here
    page.goto(site.url + "/logout")
    page.get_by_role("button", name="Sign out").click()
    heading(page, "Signed out")


@visits("dashboard-forbidden")
def _dashboard_forbidden(page: Page, site: Site) -> None:
    site.sign_in(page, USER)
    page.goto(site.url + "/dashboard")
    expect(page.get_by_role("alert")).to_contain_text("The dashboard is for admins.")


def dashboard(page: Page, site: Site, link: str, title: str) -> None:
    """The admin, signed in, on the dashboard page its navigation calls ``link``."""
    site.sign_in(page, ADMIN)
    page.goto(site.url + "/dashboard")
    page.get_by_role("navigation", name="Dashboard").get_by_role("link", name=link).click()
    heading(page, title)


@visits("dashboard-users")
def _users(page: Page, site: Site) -> None:
    dashboard(page, site, "Users", "Users")
    expect(page.get_by_role("row").filter(has_text=USER)).to_be_visible()


@visits("dashboard-users-error")
def _users_error(page: Page, site: Site) -> None:
    dashboard(page, site, "Users", "Users")
    page.get_by_label("Username").fill("no spaces allowed")
    page.get_by_role("button", name="Create user").click()
    expect(page.get_by_role("alert")).to_be_visible()


@visits("dashboard-user-email")
def _user_email(page: Page, site: Site) -> None:
    dashboard(page, site, "Users", "Users")
    page.get_by_role("link", name=f"Email… of {USER}").click()
    expect(page.get_by_label("Email")).to_be_visible()


@visits("dashboard-user-password")
def _user_password(page: Page, site: Site) -> None:
    dashboard(page, site, "Users", "Users")
    page.get_by_role("link", name=f"Password… of {USER}").click()
    expect(page.get_by_role("button", name=f"Reset password of {USER}")).to_be_visible()


@visits("dashboard-confirm")
def _confirm(page: Page, site: Site) -> None:
    dashboard(page, site, "Users", "Users")
    page.get_by_role("link", name=f"Delete… {USER}").click()
    expect(page.locator("#confirm")).to_be_visible()


@visits("dashboard-service-accounts")
def _service_accounts(page: Page, site: Site) -> None:
    dashboard(page, site, "Service accounts", "Service accounts")
    expect(page.get_by_role("row").filter(has_text=SERVICE_ACCOUNT)).to_be_visible()


@visits("dashboard-secret")
def _secret(page: Page, site: Site) -> None:
    dashboard(page, site, "Service accounts", "Service accounts")
    name = f"bot-{secrets.token_hex(3)}"
    page.get_by_label("Name").fill(name)
    page.get_by_role("button", name="Create service account").click()
    heading(page, f"Service account {name} created")


@visits("dashboard-clients")
def _clients(page: Page, site: Site) -> None:
    dashboard(page, site, "Clients", "Clients")
    expect(page.get_by_role("row").filter(has_text="webapp")).to_be_visible()


@visits("dashboard-keys")
def _keys(page: Page, site: Site) -> None:
    dashboard(page, site, "Signing keys", "Signing keys")


@visits("dashboard-audit")
def _audit(page: Page, site: Site) -> None:
    dashboard(page, site, "Audit log", "Audit log")
    expect(page.locator('tr[data-event="login"]').first).to_be_visible()


# -- axe ------------------------------------------------------------------------------

AXE_RUN = """async (rules) => {
  const options = {resultTypes: ["violations"]};
  if (rules) options.runOnly = {type: "rule", values: rules};
  const results = await axe.run(document, options);
  return results.violations.map(v => ({
    id: v.id, impact: v.impact, help: v.help, helpUrl: v.helpUrl,
    targets: v.nodes.map(n => n.target.join(" ")),
  }));
}"""


#: What can differ between the colour schemes (the pages declare both): checked again
#: in the dark one.
SCHEME_RULES = ["color-contrast", "link-in-text-block"]


PHONE = {"width": 375, "height": 740}
PAGE_SCROLLS_SIDEWAYS = (
    "() => document.documentElement.scrollWidth > document.documentElement.clientWidth"
)


def axe_violations(page: Page, source: str) -> list[dict[str, Any]]:
    """What axe finds in ``page``: every rule in the light colour scheme, the colour
    rules again in the dark one."""
    page.add_script_tag(content=source)
    found: list[dict[str, Any]] = []
    for scheme, rules in (("light", None), ("dark", SCHEME_RULES)):
        page.emulate_media(color_scheme=scheme)
        found += [{**v, "scheme": scheme} for v in page.evaluate(AXE_RUN, rules)]
    return found


def describe(violations: list[dict[str, Any]]) -> str:
    return "\n".join(
        f"  {v['impact']}: {v['id']} ({v['help']}; {v['scheme']} scheme) {v['helpUrl']}\n"
        + "".join(f"      at {target}\n" for target in v["targets"])
        for v in violations
    )


@pytest.mark.parametrize("name", list(PAGES))
def test_page_has_no_serious_accessibility_violations(
    name: str, axe_source: str, site: Site, axe_page: Page
) -> None:
    PAGES[name](axe_page, site)
    assert axe_page.locator("html").get_attribute("lang") == "en"
    violations = axe_violations(axe_page, axe_source)
    blocking = [v for v in violations if v["impact"] in BLOCKING]
    others = [v for v in violations if v["impact"] not in BLOCKING]
    if others:
        print(f"{name}: {path_of(axe_page.url)}: minor or moderate:\n{describe(others)}")
    assert not blocking, (
        f"{name} ({path_of(axe_page.url)}): axe-core found serious or critical"
        f" violations:\n{describe(blocking)}"
    )
    # At a phone's width the page itself never scrolls sideways: wide tables scroll
    # inside their own (focusable, named) region.
    axe_page.set_viewport_size(PHONE)
    assert not axe_page.evaluate(PAGE_SCROLLS_SIDEWAYS), (
        f"{name}: the page scrolls sideways at 375 px"
    )


def test_axe_finds_what_it_should(axe_source: str, site: Site, axe_page: Page) -> None:
    """The check above can fail: an unlabelled field and text without contrast are found."""
    axe_page.goto(site.url + "/login")
    axe_page.evaluate(
        """() => {
          document.querySelector("label[for=username]").remove();
          document.querySelector("h1").style.color = "#eeeeee";
        }"""
    )
    found = {v["id"] for v in axe_violations(axe_page, axe_source) if v["impact"] in BLOCKING}
    assert {"label", "color-contrast"} <= found, found


# -- the keyboard alone ---------------------------------------------------------------

FOCUSED = """() => {
  const el = document.activeElement;
  const style = getComputedStyle(el);
  const box = el.getBoundingClientRect();
  return {
    tag: el.tagName.toLowerCase(), id: el.id, text: (el.innerText || el.value || "").trim(),
    focusVisible: el.matches(":focus-visible"), outline: style.outlineStyle,
    outlineWidth: parseFloat(style.outlineWidth) || 0,
    onScreen: box.width > 0 && box.height > 0 && box.right > 0 && box.bottom > 0,
  };
}"""

FOCUS_RULES = r"""() => Array.from(document.styleSheets)
  .flatMap(sheet => Array.from(sheet.cssRules))
  .filter(rule => rule.selectorText && rule.selectorText.includes(":focus-visible")
          && /(^|;)\s*outline:/.test(rule.style.cssText)
          && !/outline:\s*none/.test(rule.style.cssText))
  .map(rule => rule.selectorText)"""


def focused(page: Page) -> dict[str, Any]:
    found: dict[str, Any] = page.evaluate(FOCUSED)
    return found


def assert_focus_shows(page: Page) -> dict[str, Any]:
    """The focused element is on screen with a visible outline, which the page's own
    stylesheet draws for ``:focus-visible``."""
    now = focused(page)
    assert now["focusVisible"], now
    assert now["onScreen"], now
    assert now["outline"] != "none", now
    assert now["outlineWidth"] >= 2, now
    assert page.evaluate(FOCUS_RULES), "no :focus-visible outline in the page's stylesheet"
    return now


def tab_to(page: Page, want: Callable[[dict[str, Any]], bool], *, limit: int = 60) -> None:
    """Press Tab until the focused element is the one ``want`` accepts."""
    seen = []
    for _ in range(limit):
        page.keyboard.press("Tab")
        now = focused(page)
        if want(now):
            assert_focus_shows(page)
            return
        seen.append(now["id"] or now["text"][:30] or now["tag"])
    raise AssertionError(f"not reached with {limit} Tabs; focus went through {seen}")


def test_sign_in_and_consent_by_keyboard(site: Site, context: BrowserContext) -> None:
    page = context.new_page()
    url, state, verifier = webapp_authorization(site)
    page.goto(url)
    assert path_of(page.url) == "/login"
    # The first stop is the first field, focused already.
    expect(page.locator("#username")).to_be_focused()
    page.keyboard.type(USER)
    page.keyboard.press("Tab")
    assert focused(page)["id"] == "password"
    page.keyboard.type(PASSWORD)
    page.keyboard.press("Tab")
    assert assert_focus_shows(page)["id"] == "sign-in"
    page.keyboard.press("Shift+Tab")
    assert focused(page)["id"] == "password"
    page.keyboard.press("Enter")

    heading(page, "Allow webapp access?")
    # Tab from the top reaches Allow first, then Deny; back to Allow and press it.
    page.keyboard.press("Tab")
    assert assert_focus_shows(page)["id"] == "approve"
    page.keyboard.press("Tab")
    assert focused(page)["id"] == "deny"
    page.keyboard.press("Shift+Tab")
    assert focused(page)["id"] == "approve"
    with page.expect_request(lambda r: r.url.startswith(WEBAPP_REDIRECT + "?")) as redirected:
        page.keyboard.press("Enter")

    query = dict(parse_qsl(urlsplit(redirected.value.url).query))
    assert query["state"] == state, query
    assert query["code"], query
    issued = requests.post(
        site.url + "/oauth2/token",
        data={
            "grant_type": "authorization_code",
            "code": query["code"],
            "redirect_uri": WEBAPP_REDIRECT,
            "code_verifier": verifier,
        },
        auth=("webapp", SECRETS["webapp"]),
        timeout=10,
    )
    assert issued.status_code == 200, issued.text
    assert issued.json()["access_token"]


def test_device_approval_by_keyboard(site: Site, context: BrowserContext) -> None:
    device = start_device(site.server)
    page = context.new_page()
    page.goto(site.url + "/device")
    expect(page.locator("#username")).to_be_focused()
    page.keyboard.type(USER)
    page.keyboard.press("Tab")
    page.keyboard.type(PASSWORD)
    page.keyboard.press("Enter")

    heading(page, "Connect a device")
    expect(page.locator("#user_code")).to_be_focused()
    page.keyboard.type(device["user_code"].replace("-", "").lower())
    tab_to(page, lambda now: now["id"] == "continue")
    page.keyboard.press("Space")

    heading(page, "Approve this device?")
    tab_to(page, lambda now: now["id"] == "approve")
    page.keyboard.press("Space")
    heading(page, "Device connected")

    polled = poll_once(site.url, device["device_code"])
    assert polled.status_code == 200, polled.text
    assert polled.json()["token_type"].lower() == "bearer"


def test_dashboard_service_account_by_keyboard(site: Site, context: BrowserContext) -> None:
    page = context.new_page()
    page.goto(site.url + "/dashboard")
    expect(page.locator("#username")).to_be_focused()
    page.keyboard.type(ADMIN)
    page.keyboard.press("Tab")
    page.keyboard.type(PASSWORD)
    page.keyboard.press("Enter")
    heading(page, "Users")

    # The first stop is a skip link, shown when focused; it leads into the main content.
    page.keyboard.press("Tab")
    skip = assert_focus_shows(page)
    assert skip["text"] == "Skip to content", skip
    tab_to(page, lambda now: now["text"] == "Service accounts")
    page.keyboard.press("Enter")
    heading(page, "Service accounts")
    page.keyboard.press("Tab")
    assert focused(page)["text"] == "Skip to content"
    page.keyboard.press("Enter")
    assert urlsplit(page.url).fragment == "main"
    page.keyboard.press("Tab")
    # The table's region first (it scrolls sideways on a phone, so the keyboard can
    # reach it), with the visible outline; then the first row's first action.
    region = focused(page)
    assert region["tag"] == "div"
    assert region["text"].startswith("Service accounts, by name")
    assert page.evaluate("() => document.activeElement.getAttribute('aria-label')") == (
        "Service accounts table"
    )
    assert_focus_shows(page)
    page.keyboard.press("Tab")
    first = focused(page)
    assert first["text"].startswith("Add key file"), first  # the table's first row

    name = f"kb-{secrets.token_hex(3)}"
    tab_to(page, lambda now: now["id"] == "sa-name")
    page.keyboard.type(name)
    tab_to(page, lambda now: now["id"] == "create-service-account")
    page.keyboard.press("Enter")
    heading(page, f"Service account {name} created")
    token = page.locator("#service-account-token").input_value()
    assert token.startswith("as_sa_"), token

    tab_to(page, lambda now: now["text"] == "Back to service accounts")
    page.keyboard.press("Enter")
    heading(page, "Service accounts")
    expect(page.locator(f'tr[data-name="{name}"]')).to_be_visible()
