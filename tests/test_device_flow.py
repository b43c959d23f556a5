"""The device authorization grant (RFC 8628): a headless client polls the token endpoint
while a person approves on the verification page in a browser."""

from __future__ import annotations

import re
import threading
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from flask.testing import FlaskClient

from authserver.clock import ManualClock

from .conftest import AppFactory, Backend
from .support.factories import AUDIENCES, PASSWORD, SECRETS, new_local_user, new_user
from .support.flows import (
    DEVICE_GRANT,
    answer_confirmation,
    assert_oauth_error,
    decide,
    device_authorization,
    flask_poll,
    flask_sign_in,
    form_field,
    jwt_claims,
    login,
    poll_once,
    refresh,
    signed_in_session,
)
from .support.servers import InProcessServer

USER_CODE = re.compile(r"^[BCDFGHJKLMNPQRSTVWXZ]{4}-[BCDFGHJKLMNPQRSTVWXZ]{4}$")
SLOW_DOWN_STEP = 5  # RFC 8628 §3.5


@pytest.fixture(scope="module")
def live_user(app_server: InProcessServer) -> str:
    return new_user(app_server)


@pytest.fixture(scope="module")
def browser(app_server: InProcessServer, live_user: str) -> requests.Session:
    """The person's browser, signed in once for the module."""
    return signed_in_session(app_server.url, live_user)


@dataclass
class Poller:
    """A well-behaved device (§3.5): waits ``interval`` between polls, +5 s per slow_down."""

    url: str
    device_code: str
    interval: float
    timeout: float = 120
    errors: list[str] = field(default_factory=list)
    waits: list[float] = field(default_factory=list)
    response: requests.Response | None = None
    failure: BaseException | None = None
    first_poll: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        try:
            deadline = time.monotonic() + self.timeout
            while True:
                response = poll_once(self.url, self.device_code)
                self.first_poll.set()
                if response.status_code == 200:
                    self.response = response
                    return
                error = response.json()["error"]
                self.errors.append(error)
                if error == "slow_down":
                    self.interval += SLOW_DOWN_STEP
                elif error != "authorization_pending":
                    self.response = response
                    return
                if time.monotonic() + self.interval > deadline:
                    raise TimeoutError(f"no answer after polls {self.errors}")
                self.waits.append(self.interval)
                time.sleep(self.interval)
        except BaseException as exc:  # reported by the test thread
            self.failure = exc
            self.first_poll.set()

    def start(self) -> threading.Thread:
        thread = threading.Thread(target=self.run, daemon=True)
        thread.start()
        return thread


# -- the device authorization response ------------------------------------------------


def test_device_authorization_response(app_server: InProcessServer) -> None:
    body = device_authorization(app_server.url)
    assert set(body) >= {
        "device_code",
        "user_code",
        "verification_uri",
        "verification_uri_complete",
        "expires_in",
        "interval",
    }
    assert USER_CODE.match(body["user_code"]), body["user_code"]
    assert len(body["device_code"]) >= 32
    assert body["verification_uri"] == app_server.url + "/device"
    complete = urlsplit(body["verification_uri_complete"])
    assert f"{complete.scheme}://{complete.netloc}{complete.path}" == body["verification_uri"]
    assert parse_qs(complete.query) == {"user_code": [body["user_code"]]}
    assert body["expires_in"] == 600
    assert body["interval"] == 5
    other = device_authorization(app_server.url)
    assert other["device_code"] != body["device_code"]
    assert other["user_code"] != body["user_code"]


def test_client_without_the_device_grant(app_server: InProcessServer) -> None:
    webapp = ("webapp", SECRETS["webapp"])
    response = requests.post(
        app_server.url + "/oauth2/device_authorization",
        data={"scope": "openid"},
        auth=webapp,
        timeout=30,
    )
    assert_oauth_error(response, "unauthorized_client")
    device_code = device_authorization(app_server.url)["device_code"]
    response = requests.post(
        app_server.url + "/oauth2/token",
        data={"grant_type": DEVICE_GRANT, "device_code": device_code},
        auth=webapp,
        timeout=30,
    )
    assert_oauth_error(response, "unauthorized_client")
    unknown = requests.post(
        app_server.url + "/oauth2/device_authorization",
        data={"client_id": "nobody"},
        timeout=30,
    )
    assert_oauth_error(unknown, "invalid_client", 401)


# -- the whole flow -----------------------------------------------------------------------


def test_full_flow_with_a_polling_device(
    app_server: InProcessServer, live_user: str, browser: requests.Session
) -> None:
    auth = device_authorization(app_server.url)
    poller = Poller(app_server.url, auth["device_code"], auth["interval"])
    thread = poller.start()
    assert poller.first_poll.wait(60)
    # The person opens verification_uri_complete: the code is already filled in.
    confirm = browser.get(auth["verification_uri_complete"], timeout=30)
    decided = answer_confirmation(browser, app_server.url, confirm, auth["user_code"])
    assert decided.status_code == 200, decided.text
    thread.join(120)
    assert not thread.is_alive()
    if poller.failure is not None:
        raise poller.failure
    assert poller.response is not None
    assert poller.response.status_code == 200, poller.response.text
    # It waited as told and was never told to slow down.
    assert poller.errors
    assert set(poller.errors) == {"authorization_pending"}
    assert all(wait >= auth["interval"] for wait in poller.waits)
    body = poller.response.json()
    assert body["token_type"].lower() == "bearer"
    assert body["expires_in"] > 0
    assert body["scope"] == "openid profile offline_access"
    assert body["refresh_token"].startswith("as_rt_")
    assert "id_token" in body
    claims = jwt_claims(body["access_token"])
    assert claims["client_id"] == "cli"
    assert claims["roles"] == ["user"]
    assert claims["iss"] == app_server.url
    assert claims["aud"] in (AUDIENCES[0], [AUDIENCES[0]])
    assert claims["scope"] == "openid profile offline_access"
    assert jwt_claims(body["id_token"])["sub"] == claims["sub"]
    discovery = requests.get(app_server.url + "/.well-known/openid-configuration", timeout=30)
    userinfo = requests.get(
        discovery.json()["userinfo_endpoint"],
        headers={"Authorization": "Bearer " + body["access_token"]},
        timeout=30,
    )
    assert userinfo.status_code == 200, userinfo.text
    assert userinfo.json()["sub"] == claims["sub"]
    assert userinfo.json()["preferred_username"] == live_user
    # The refresh token works like one from the code flow.
    refreshed = refresh(app_server.url, body["refresh_token"])
    assert refreshed.status_code == 200, refreshed.text
    assert jwt_claims(refreshed.json()["access_token"])["sub"] == claims["sub"]


def test_code_typed_on_the_page(app_server: InProcessServer, browser: requests.Session) -> None:
    """The person types the code in lower case without the dash; no offline_access asked."""
    auth = device_authorization(app_server.url, scope="all")
    typed = auth["user_code"].replace("-", " ").lower()
    page = browser.get(app_server.url + "/device", timeout=30)
    confirm = browser.post(
        app_server.url + "/device",
        data={"csrf_token": form_field(page.text, "csrf_token"), "user_code": typed},
        timeout=30,
    )
    decided = answer_confirmation(browser, app_server.url, confirm, auth["user_code"])
    assert decided.status_code == 200, decided.text
    response = poll_once(app_server.url, auth["device_code"])
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["scope"] == "all"
    assert "refresh_token" not in body
    assert "id_token" not in body


def test_device_code_yields_tokens_once(
    app_server: InProcessServer, browser: requests.Session
) -> None:
    auth = device_authorization(app_server.url)
    assert decide(browser, app_server.url, auth["user_code"]).status_code == 200
    first = poll_once(app_server.url, auth["device_code"])
    assert first.status_code == 200, first.text
    assert_oauth_error(poll_once(app_server.url, auth["device_code"]), "invalid_grant")
    # And the user code is spent: the page no longer offers it.
    page = browser.get(auth["verification_uri_complete"], timeout=30)
    assert page.status_code == 400


def test_deny(app_server: InProcessServer, browser: requests.Session) -> None:
    auth = device_authorization(app_server.url)
    denied = decide(browser, app_server.url, auth["user_code"], "deny")
    assert denied.status_code == 200, denied.text
    assert_oauth_error(poll_once(app_server.url, auth["device_code"]), "access_denied")
    # One answer per code: it cannot be approved afterwards.
    again = browser.get(auth["verification_uri_complete"], timeout=30)
    assert again.status_code == 400


def test_decision_needs_the_csrf_token(
    app_server: InProcessServer, browser: requests.Session
) -> None:
    auth = device_authorization(app_server.url)
    forged = browser.post(
        app_server.url + "/device/decide",
        data={"user_code": auth["user_code"], "approve": "1"},
        allow_redirects=False,
        timeout=30,
    )
    assert forged.status_code == 400
    assert_oauth_error(poll_once(app_server.url, auth["device_code"]), "authorization_pending")


def test_polling_too_fast_is_slow_down(app_server: InProcessServer) -> None:
    auth = device_authorization(app_server.url)
    first = poll_once(app_server.url, auth["device_code"])
    assert_oauth_error(first, "authorization_pending")
    assert_oauth_error(poll_once(app_server.url, auth["device_code"]), "slow_down")
    assert_oauth_error(poll_once(app_server.url, auth["device_code"]), "slow_down")


def test_an_approved_request_is_answered_however_fast_the_poll(
    app_server: InProcessServer, browser: requests.Session
) -> None:
    """§3.5: ``slow_down`` is a variant of ``authorization_pending``; once the person has
    decided, the next poll gets the answer, also from a device that never slowed down
    (flytekit keeps its first interval: issue 15.3)."""
    auth = device_authorization(app_server.url)
    assert_oauth_error(poll_once(app_server.url, auth["device_code"]), "authorization_pending")
    assert_oauth_error(poll_once(app_server.url, auth["device_code"]), "slow_down")
    assert decide(browser, app_server.url, auth["user_code"]).status_code == 200
    response = poll_once(app_server.url, auth["device_code"])
    assert response.status_code == 200, response.text
    assert response.json()["token_type"] == "Bearer"


def test_slow_down_adds_five_seconds(make_app: AppFactory, backend: Backend) -> None:
    clock = ManualClock()
    app = make_app(clock=clock, tokens={"device_poll_interval": "1s"})
    client = app.test_client()
    auth = client.post(
        "/oauth2/device_authorization", data={"client_id": "cli", "scope": "all"}
    ).get_json()
    assert auth["interval"] == 1
    code = auth["device_code"]
    assert_oauth_error(flask_poll(client, code), "authorization_pending")
    assert_oauth_error(flask_poll(client, code), "slow_down")
    # The device now waits interval + 5 = 6 s, and is served.
    backend.wait(clock, auth["interval"] + SLOW_DOWN_STEP + 0.2)
    assert_oauth_error(flask_poll(client, code), "authorization_pending")
    # Back at the first interval is too fast now: the 5 s stay added.
    backend.wait(clock, auth["interval"] + 0.3)
    assert_oauth_error(flask_poll(client, code), "slow_down")


def test_expired_device_code(make_app: AppFactory) -> None:
    app = make_app(tokens={"device_code_ttl": "2s", "device_poll_interval": "1s"})
    user = new_local_user(app)
    client = flask_sign_in(app, user)
    auth = client.post(
        "/oauth2/device_authorization", data={"client_id": "cli", "scope": "all"}
    ).get_json()
    assert auth["expires_in"] == 2
    time.sleep(2.2)
    assert_oauth_error(flask_poll(client, auth["device_code"]), "expired_token")
    # The person is told the code is no good any more, and cannot approve it.
    page = client.get("/device", query_string={"user_code": auth["user_code"]})
    assert page.status_code == 400
    assert_oauth_error(flask_poll(client, auth["device_code"]), "expired_token")


# -- the verification page ------------------------------------------------------------------


def test_verification_page_needs_sign_in(app_server: InProcessServer, live_user: str) -> None:
    auth = device_authorization(app_server.url)
    session = requests.Session()
    plain = session.get(app_server.url + "/device", allow_redirects=False, timeout=30)
    assert plain.status_code == 302
    location = urlsplit(plain.headers["Location"])
    assert location.path == "/login"
    assert parse_qs(location.query)["next"] == ["/device"]
    complete = session.get(auth["verification_uri_complete"], allow_redirects=False, timeout=30)
    assert complete.status_code == 302
    next_url = parse_qs(urlsplit(complete.headers["Location"]).query)["next"][0]
    assert next_url == "/device?user_code=" + auth["user_code"]
    # Signing in goes back to the confirmation page with the code filled in.
    signed_in = login(session, app_server.url, live_user, PASSWORD, next_url)
    assert signed_in.status_code == 302
    back = session.get(app_server.url + signed_in.headers["Location"], timeout=30)
    assert back.status_code == 200
    assert auth["user_code"] in back.text
    # An unauthenticated POST approves nothing.
    anonymous = requests.post(
        app_server.url + "/device/decide",
        data={"user_code": auth["user_code"], "approve": "1"},
        allow_redirects=False,
        timeout=30,
    )
    assert anonymous.status_code == 302
    assert_oauth_error(poll_once(app_server.url, auth["device_code"]), "authorization_pending")


def test_wrong_user_code(app_server: InProcessServer, browser: requests.Session) -> None:
    page = browser.get(app_server.url + "/device", timeout=30)
    response = browser.post(
        app_server.url + "/device",
        data={"csrf_token": form_field(page.text, "csrf_token"), "user_code": "BBBB-BBBB"},
        timeout=30,
    )
    assert response.status_code == 400
    assert "not valid" in response.text
    assert 'name="approve"' not in response.text


def test_wrong_user_codes_are_rate_limited(make_app: AppFactory) -> None:
    app = make_app()
    user = new_local_user(app)
    auth = (
        app.test_client()
        .post("/oauth2/device_authorization", data={"client_id": "cli", "scope": "all"})
        .get_json()
    )
    guesser = flask_sign_in(app, user, address="192.0.2.10")
    for _ in range(10):
        assert _enter_code(guesser, "BBBB-BBBB").status_code == 400
    assert _enter_code(guesser, "BBBB-BBBB").status_code == 429
    # Now even the right code is refused from that address...
    assert _enter_code(guesser, auth["user_code"]).status_code == 429
    blocked = guesser.get("/device", query_string={"user_code": auth["user_code"]})
    assert blocked.status_code == 429
    # ...but not from another one.
    other = flask_sign_in(app, user, address="192.0.2.11")
    confirm = _enter_code(other, auth["user_code"])
    assert confirm.status_code == 200
    assert auth["user_code"] in confirm.get_data(as_text=True)


def _enter_code(client: FlaskClient, user_code: str) -> Any:
    page = client.get("/device")
    assert page.status_code == 200
    return client.post(
        "/device",
        data={
            "csrf_token": form_field(page.get_data(as_text=True), "csrf_token"),
            "user_code": user_code,
        },
    )
