"""The people's pages in a real browser: login, the device page and consent.

Debian's Chromium, driven by Playwright against a live ``authserver serve``, does what a
person does: follows the authorization redirect, types into the login form, reads the
error, enters a device code and clicks Approve or Deny. A small HTTP server on a
loopback port plays the CLI's redirect listener (RFC 8252 §7.3). Playwright never
downloads a browser here: without Chromium the tests skip, and under CI they fail.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import jwt
import pytest
import requests
import sqlalchemy as sa
import yaml
from playwright.sync_api import Browser, BrowserContext, Page, Route, expect

from .support.factories import PASSWORD
from .support.flows import pkce_pair
from .support.servers import LiveServer, free_port

TIMEOUT_MS = 15_000
DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
WEBAPP_REDIRECT = "https://app.example.com/cb"


# -- fixtures -----------------------------------------------------------------------


@pytest.fixture
def context(browser: Browser) -> Iterator[BrowserContext]:
    ctx = browser.new_context()
    ctx.set_default_timeout(TIMEOUT_MS)
    yield ctx
    ctx.close()


@pytest.fixture
def page(context: BrowserContext) -> Page:
    return context.new_page()


@dataclass(frozen=True)
class Person:
    username: str
    id: str


@pytest.fixture(scope="module")
def bob(live_server: LiveServer) -> Person:
    created = live_server.cli(
        "users", "create", "bob", "--role", "user", "--password-stdin", input_text=PASSWORD + "\n"
    )
    assert created.returncode == 0, created.stderr
    config = yaml.safe_load(live_server.config_path.read_text())
    engine = sa.create_engine(config["database_url"])
    try:
        with engine.connect() as conn:
            user_id = conn.execute(
                sa.text("SELECT id FROM users WHERE username = 'bob'")
            ).scalar_one()
    finally:
        engine.dispose()
    return Person("bob", str(user_id))


@dataclass
class Listener:
    """The CLI's loopback redirect listener: records the query of each callback."""

    port: int
    queries: list[dict[str, str]] = field(default_factory=list)

    @property
    def redirect_uri(self) -> str:
        return f"http://127.0.0.1:{self.port}/callback"


@pytest.fixture
def listener() -> Iterator[Listener]:
    port = free_port()
    recorded = Listener(port)

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            url = urlsplit(self.path)
            if url.path != "/callback":
                self.send_error(404)
                return
            recorded.queries.append(dict(parse_qsl(url.query)))
            body = b"<!doctype html><title>Signed in</title><p>You can close this window."
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield recorded
    server.shutdown()
    server.server_close()
    thread.join(timeout=10)


# -- helpers ------------------------------------------------------------------------


def path_of(url: str) -> str:
    return urlsplit(url).path


def sign_in(page: Page, username: str = "bob", password: str = PASSWORD) -> None:
    """Type into the login form the page is on and press the button."""
    assert path_of(page.url) == "/login", page.url
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()


def access_claims(server: LiveServer, token: str) -> dict[str, Any]:
    """The access token's claims, checked against our JWKS."""
    discovery = requests.get(server.url + "/.well-known/openid-configuration", timeout=10).json()
    key = jwt.PyJWKClient(discovery["jwks_uri"]).get_signing_key_from_jwt(token)
    assert jwt.get_unverified_header(token)["typ"].lower() == "at+jwt"
    claims: dict[str, Any] = jwt.decode(
        token,
        key.key,
        algorithms=["RS256"],
        issuer=server.url,
        options={"verify_aud": False},
    )
    return claims


def start_device(server: LiveServer) -> dict[str, Any]:
    response = requests.post(
        server.url + "/oauth2/device_authorization",
        data={"client_id": "cli", "scope": "openid profile"},
        timeout=10,
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    assert {"device_code", "user_code", "verification_uri_complete", "interval"} <= body.keys()
    return body


@dataclass
class PollResult:
    status: int
    body: dict[str, Any]
    seen: list[str]  # the errors answered before the last response


def poll_device(server: LiveServer, device: dict[str, Any], limit: float = 90) -> PollResult:
    """Poll the token endpoint like a device does (RFC 8628 §3.4-3.5)."""
    interval = float(device["interval"])
    seen: list[str] = []
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        time.sleep(interval)
        response = requests.post(
            server.url + "/oauth2/token",
            data={
                "grant_type": DEVICE_GRANT,
                "device_code": device["device_code"],
                "client_id": "cli",
            },
            timeout=10,
        )
        body: dict[str, Any] = response.json()
        error = body.get("error")
        if error == "authorization_pending":
            seen.append(error)
            continue
        if error == "slow_down":
            seen.append(error)
            interval += 5
            continue
        return PollResult(response.status_code, body, seen)
    raise AssertionError(f"the device request was not decided within {limit} s: {seen}")


def unlabelled_inputs(page: Page) -> list[str]:
    """Visible form controls without a <label> (ids or names, for the message)."""
    found: list[str] = page.evaluate(
        """() => Array.from(document.querySelectorAll(
                'input:not([type=hidden]), select, textarea'))
            .filter(el => !el.labels || el.labels.length === 0)
            .map(el => el.id || el.name || el.outerHTML)"""
    )
    return found


# -- a. the login page, from a CLI's authorization request --------------------------


@pytest.mark.live
def test_cli_sign_in_through_the_login_page(
    live_server: LiveServer, bob: Person, context: BrowserContext, page: Page, listener: Listener
) -> None:
    verifier, challenge = pkce_pair()
    state = secrets.token_urlsafe(12)
    params = {
        "response_type": "code",
        "client_id": "cli",
        "redirect_uri": listener.redirect_uri,
        "scope": "openid profile",
        "state": state,
        "code_challenge": challenge,
        "code_challenge_method": "S256",
    }
    page.goto(live_server.url + "/oauth2/authorize?" + urlencode(params))
    assert path_of(page.url) == "/login", page.url
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()

    # A wrong password: the same page, an alert, a 401 and no redirect.
    with page.expect_response(
        lambda r: r.request.method == "POST" and path_of(r.url) == "/login"
    ) as posted:
        sign_in(page, password="not the password")
    assert posted.value.status == 401
    expect(page.get_by_role("alert")).to_have_text("Wrong username or password.")
    assert path_of(page.url) == "/login", page.url
    assert listener.queries == []

    # The right one: back through the authorization endpoint to the listener.
    sign_in(page)
    page.wait_for_url(lambda url: url.startswith(listener.redirect_uri + "?"))
    expect(page.get_by_text("You can close this window.")).to_be_visible()
    assert len(listener.queries) == 1, listener.queries
    query = listener.queries[0]
    assert query["state"] == state
    assert query["iss"] == live_server.url
    assert query["code"]
    assert "error" not in query

    token = requests.post(
        live_server.url + "/oauth2/token",
        data={
            "grant_type": "authorization_code",
            "code": query["code"],
            "redirect_uri": listener.redirect_uri,
            "client_id": "cli",
            "code_verifier": verifier,
        },
        timeout=10,
    )
    assert token.status_code == 200, token.text
    claims = access_claims(live_server, token.json()["access_token"])
    assert claims["sub"] == bob.id
    assert claims["client_id"] == "cli"

    cookies = {c["name"]: c for c in context.cookies(live_server.url)}
    assert "authserver_session" in cookies, cookies
    session_cookie = cookies["authserver_session"]
    assert session_cookie["httpOnly"] is True
    assert session_cookie["sameSite"] == "Lax"
    assert session_cookie["secure"] is False  # plain http on loopback


# -- b. the device verification page -----------------------------------------------


@pytest.mark.live
def test_device_page_approve_then_deny(
    live_server: LiveServer, bob: Person, browser: Browser, page: Page
) -> None:
    device = start_device(live_server)
    with ThreadPoolExecutor(max_workers=1) as pool:
        poller = pool.submit(poll_device, live_server, device)

        page.goto(live_server.url + "/device")
        assert path_of(page.url) == "/login", page.url
        sign_in(page)
        page.wait_for_url(lambda url: path_of(url) == "/device")
        # People type codes as they like: lower case and without the dash is the same code.
        page.get_by_label("Code").fill(device["user_code"].replace("-", "").lower())
        page.locator("#continue").click()

        expect(page.locator("#shown-code")).to_have_text(device["user_code"])
        expect(page.get_by_text("cli", exact=True)).to_be_visible()
        page.locator("#approve").click()
        expect(page.get_by_role("heading")).to_have_text("Device connected")
        expect(page.locator("#message")).to_be_visible()

        approved = poller.result(timeout=120)
    assert approved.status == 200, approved.body
    assert approved.body["token_type"].lower() == "bearer"
    assert access_claims(live_server, approved.body["access_token"])["sub"] == bob.id

    # A second request, opened through verification_uri_complete in a browser not signed
    # in yet: the code survives the trip through the login page. Denied this time.
    second = start_device(live_server)
    assert second["user_code"] != device["user_code"]
    other = browser.new_context()
    other.set_default_timeout(TIMEOUT_MS)
    try:
        with ThreadPoolExecutor(max_workers=1) as pool:
            poller = pool.submit(poll_device, live_server, second)
            fresh = other.new_page()
            fresh.goto(second["verification_uri_complete"])
            sign_in(fresh)
            expect(fresh.locator("#shown-code")).to_have_text(second["user_code"])
            fresh.locator("#deny").click()
            expect(fresh.get_by_role("heading")).to_have_text("Request denied")
            denied = poller.result(timeout=120)
    finally:
        other.close()
    assert denied.status == 400, denied.body
    assert denied.body["error"] == "access_denied"
    assert "access_token" not in denied.body


# -- c. the consent page ------------------------------------------------------------


@pytest.mark.live
def test_consent_page_deny_redirects_access_denied(
    live_server: LiveServer, bob: Person, page: Page
) -> None:
    landed: list[str] = []

    def app_example(route: Route) -> None:  # the network is closed: answer locally
        landed.append(route.request.url)
        route.fulfill(status=200, content_type="text/html", body="<p>webapp callback</p>")

    page.route("https://app.example.com/**", app_example)
    _, challenge = pkce_pair()
    state = secrets.token_urlsafe(12)
    scopes = ["openid", "profile", "read"]
    params = {
        "response_type": "code",
        "client_id": "webapp",
        "redirect_uri": WEBAPP_REDIRECT,
        "scope": " ".join(scopes),
        "state": state,
        "code_challenge": challenge,
        "code_challenge_method": "S256",
    }
    page.goto(live_server.url + "/oauth2/authorize?" + urlencode(params))
    sign_in(page)

    expect(page.get_by_role("heading")).to_contain_text("webapp")
    listed = page.locator("ul.scopes li code")
    expect(listed).to_have_text(scopes)
    assert landed == []

    page.locator("#deny").click()
    page.wait_for_url(lambda url: url.startswith(WEBAPP_REDIRECT + "?"))
    assert len(landed) == 1, landed
    assert landed[0].startswith(WEBAPP_REDIRECT + "?")
    query = dict(parse_qsl(urlsplit(landed[0]).query))
    assert query["error"] == "access_denied"
    assert query["state"] == state
    assert query["iss"] == live_server.url
    assert "code" not in query


# -- d. labels and the keyboard -----------------------------------------------------


@pytest.mark.live
def test_forms_are_labelled_and_work_from_the_keyboard(
    live_server: LiveServer, bob: Person, page: Page
) -> None:
    page.goto(live_server.url + "/device")
    assert path_of(page.url) == "/login", page.url
    assert page.locator("html").get_attribute("lang") == "en"
    assert unlabelled_inputs(page) == []
    expect(page.get_by_label("Username")).to_have_attribute("id", "username")
    expect(page.get_by_label("Password")).to_have_attribute("type", "password")

    # Sign in with the keyboard alone: focus starts on Username, Tab moves on, Enter submits.
    expect(page.get_by_label("Username")).to_be_focused()
    page.keyboard.type("bob")
    page.keyboard.press("Tab")
    expect(page.get_by_label("Password")).to_be_focused()
    page.keyboard.type(PASSWORD)
    page.keyboard.press("Enter")
    page.wait_for_url(lambda url: path_of(url) == "/device")

    assert unlabelled_inputs(page) == []
    code = page.get_by_label("Code")
    expect(code).to_have_attribute("id", "user_code")
    expect(code).to_be_focused()
    page.keyboard.type("nope-nope")
    page.keyboard.press("Enter")
    expect(page.get_by_role("alert")).to_contain_text("not valid")
    assert unlabelled_inputs(page) == []
    expect(page.get_by_label("Code")).to_be_visible()


def test_accessibility_check_counts_unlabelled_inputs(page: Page) -> None:
    """The label check above can fail: an input without a label is found."""
    page.set_content(
        '<label for="a">A</label><input id="a"><input id="b" name="b">'
        '<input type="hidden" name="c">'
    )
    assert unlabelled_inputs(page) == ["b"]
    assert page.get_by_label("A").count() == 1
