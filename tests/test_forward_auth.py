"""Forward auth: oauth2-proxy's protocol (``/oauth2/auth``, ``/start``, ``/callback``,
``/sign_out``) for hosts behind a proxy, in-process on both backends (DESIGN.md,
"Integrations"; SkyPilot's own server drives it in tests/test_skypilot.py).

The browser is the Flask test client, which keeps cookies per host as a browser does:
authserver's own on ``127.0.0.1:8080`` (the issuer), the protected host's on
``app.example.com``.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

import pytest
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from authserver.clock import ManualClock
from authserver.identity.forward_auth import (
    ForwardAuth,
    ForwardAuthError,
    HostRules,
    redirect_target,
)
from authserver.oauth.metadata import admin_api_audience
from authserver.web.services import Services

from .conftest import AppFactory
from .support.factories import AUDIENCES, PASSWORD, SECRETS
from .support.flows import form_field

ISSUER = "http://127.0.0.1:8080"
APP = "http://app.example.com"
FORWARD = {"allowed_hosts": ["app.example.com", ".apps.example.com"]}
COOKIE = "_authserver_forward"


@pytest.fixture
def fwd_app(make_app: AppFactory) -> Flask:
    app = make_app(forward_auth=FORWARD)
    with app.app_context():
        users = Services.of(app).users
        users.create_local("alice", PASSWORD, "user")
        users.create_local("bob", PASSWORD, "admin")
    return app


def _auth(client: FlaskClient, host: str = "app.example.com", **headers: str) -> TestResponse:
    """SkyPilot's question: ``Host`` without the port, the original URL in
    ``X-Forwarded-Uri``, the browser's cookies."""
    return client.get(
        "/oauth2/auth",
        base_url=f"http://{host}",
        headers={"X-Forwarded-Uri": f"http://{host}:46580/dashboard", **headers},
    )


def _sign_in(client: FlaskClient, username: str, rd: str = "/dashboard/?x=1") -> TestResponse:
    """/oauth2/start on the protected host, the login form on ours, the callback: the
    response to the callback."""
    start = client.get("/oauth2/start", base_url=APP, query_string={"rd": rd})
    assert start.status_code == 302, start.get_data(as_text=True)
    to_signin = start.headers["Location"]
    assert to_signin.startswith(ISSUER + "/login/forward?state=")
    path = to_signin.removeprefix(ISSUER)
    to_login = client.get(path, base_url=ISSUER)
    assert to_login.status_code == 302
    login_path = to_login.headers["Location"]
    assert urlsplit(login_path).path == "/login"
    page = client.get(login_path, base_url=ISSUER)
    assert page.status_code == 200
    body = page.get_data(as_text=True)
    # The form's POST ends on the protected host: CSP form-action must allow it.
    assert APP in page.headers["Content-Security-Policy"]
    posted = client.post(
        "/login",
        base_url=ISSUER,
        data={
            "csrf_token": form_field(body, "csrf_token"),
            "username": username,
            "password": PASSWORD,
            "next": form_field(body, "next"),
        },
    )
    assert posted.status_code == 302, posted.get_data(as_text=True)
    assert posted.headers["Location"] == path
    to_callback = client.get(path, base_url=ISSUER)
    assert to_callback.status_code == 302
    callback = to_callback.headers["Location"]
    assert callback.startswith(APP + "/oauth2/callback?code=")
    return client.get(callback.removeprefix(APP), base_url=APP)


def _audit(app: Flask, event: str) -> list[dict[str, Any]]:
    Services.of(app).events.flush()
    with app.app_context():
        return [r.as_dict() for r in Services.of(app).audit.page(event=event)]


def test_sign_in_lands_on_rd_and_auth_names_the_person(fwd_app: Flask) -> None:
    client = fwd_app.test_client()
    assert _auth(client).status_code == 401

    done = _sign_in(client, "alice")
    assert done.status_code == 302
    assert done.headers["Location"] == APP + "/dashboard/?x=1"
    cookie = next(c for c in done.headers.getlist("Set-Cookie") if c.startswith(COOKIE + "="))
    assert "HttpOnly" in cookie
    assert "SameSite=Lax" in cookie
    assert "Path=/" in cookie

    answer = _auth(client)
    assert answer.status_code == 202
    assert answer.headers["X-Auth-Request-User"] == "alice"
    # No email known: the username, as SkyPilot needs the header on every request.
    assert answer.headers["X-Auth-Request-Email"] == "alice"
    assert answer.headers["X-Auth-Request-Preferred-Username"] == "alice"
    assert answer.headers["X-Auth-Request-Groups"] == ""
    assert answer.headers["Cache-Control"] == "no-store"

    # The same answer for nginx/Traefik's headers (the browser's cookies passed on),
    # and none for another host.
    cookie_value = client.get_cookie(COOKIE, domain="app.example.com")
    assert cookie_value is not None
    nginx = fwd_app.test_client(use_cookies=False).get(
        "/oauth2/auth",
        base_url="http://authserver.internal",
        headers={
            "X-Forwarded-Host": "app.example.com",
            "X-Forwarded-Proto": "http",
            "Cookie": f"{COOKIE}={cookie_value.value}",
        },
    )
    assert nginx.status_code == 202
    assert nginx.headers["X-Auth-Request-User"] == "alice"
    # Whatever method the proxy asks with (the original request's, for some).
    posted = fwd_app.test_client(use_cookies=False).post(
        "/oauth2/auth",
        base_url="http://authserver.internal",
        headers={
            "X-Forwarded-Host": "app.example.com",
            "Cookie": f"{COOKIE}={cookie_value.value}",
        },
        data="ignored",
    )
    assert posted.status_code == 202
    other = fwd_app.test_client(use_cookies=False).get(
        "/oauth2/auth",
        base_url="http://authserver.internal",
        headers={
            "X-Forwarded-Host": "other.apps.example.com",
            "Cookie": f"{COOKIE}={cookie_value.value}",
        },
    )
    assert other.status_code == 401

    logins = _audit(fwd_app, "forward_auth_login")
    assert len(logins) == 1
    assert logins[0]["details"]["username"] == "alice"
    assert logins[0]["details"]["host"] == "app.example.com"


def test_a_copied_cookie_is_not_good_on_another_host(fwd_app: Flask) -> None:
    client = fwd_app.test_client()
    _sign_in(client, "alice")
    cookie = client.get_cookie(COOKIE, domain="app.example.com")
    assert cookie is not None
    thief = fwd_app.test_client()
    thief.set_cookie(COOKIE, cookie.value, domain="x.apps.example.com")
    assert _auth(thief, host="x.apps.example.com").status_code == 401
    # One character of the signature changed (a fixed "AA" ending was, once in a few
    # hundred runs, the signature's own ending: the last base64 character has 4 values).
    changed = "B" if cookie.value[-2] == "A" else "A"
    thief.set_cookie(
        COOKIE, cookie.value[:-2] + changed + cookie.value[-1], domain="app.example.com"
    )
    assert _auth(thief).status_code == 401


def test_sign_out_ends_the_session_and_the_sign_in_behind_it(fwd_app: Flask) -> None:
    client = fwd_app.test_client()
    _sign_in(client, "alice")
    cookie = client.get_cookie(COOKIE, domain="app.example.com")
    assert cookie is not None
    assert _auth(client).status_code == 202

    out = client.get("/oauth2/sign_out", base_url=APP, query_string={"rd": "/bye"})
    assert out.status_code == 302
    assert out.headers["Location"] == APP + "/bye"
    assert _auth(client).status_code == 401
    # A copy of the cookie taken before is dead too (its sign-in is on the denylist).
    copy = fwd_app.test_client()
    copy.set_cookie(COOKIE, cookie.value, domain="app.example.com")
    assert _auth(copy).status_code == 401
    # And so is the sign-in at authserver: starting again asks for the password.
    start = client.get("/oauth2/start", base_url=APP, query_string={"rd": "/"})
    to_login = client.get(start.headers["Location"].removeprefix(ISSUER), base_url=ISSUER)
    assert urlsplit(to_login.headers["Location"]).path == "/login"
    assert len(_audit(fwd_app, "forward_auth_logout")) == 1


def test_signing_out_at_authserver_ends_the_forward_session(fwd_app: Flask) -> None:
    client = fwd_app.test_client()
    _sign_in(client, "alice")
    assert _auth(client).status_code == 202
    page = client.get("/logout", base_url=ISSUER)
    client.post(
        "/logout",
        base_url=ISSUER,
        data={"csrf_token": form_field(page.get_data(as_text=True), "csrf_token")},
    )
    assert _auth(client).status_code == 401


@pytest.mark.parametrize("change", ["disable", "delete", "password"])
def test_a_disabled_deleted_or_re_passworded_person_is_signed_out(
    fwd_app: Flask, change: str
) -> None:
    client = fwd_app.test_client()
    _sign_in(client, "alice")
    assert _auth(client).status_code == 202
    with fwd_app.app_context():
        users = Services.of(fwd_app).users
        if change == "disable":
            users.set_disabled("alice", True)
        elif change == "delete":
            users.delete("alice")
        else:
            users.set_password("alice", "another long password 123")
    assert _auth(client).status_code == 401


def test_a_bearer_access_token_of_an_allowed_audience(fwd_app: Flask) -> None:
    client = fwd_app.test_client()

    def token(audience: str) -> str:
        response = client.post(
            "/oauth2/token",
            base_url=ISSUER,
            data={"grant_type": "client_credentials", "audience": audience},
            auth=("ci", SECRETS["ci"]),
        )
        assert response.status_code == 200, response.get_data(as_text=True)
        return str(response.get_json()["access_token"])

    good = _auth(client, Authorization=f"Bearer {token(AUDIENCES[1])}")
    assert good.status_code == 202
    assert good.headers["X-Auth-Request-User"] == "ci"
    assert good.headers["X-Auth-Request-Email"] == "ci"

    # The admin API's audience is not one of tokens.audiences: refused here.
    api = _auth(client, Authorization=f"Bearer {token(admin_api_audience(ISSUER))}")
    assert api.status_code == 401
    assert "invalid_token" in api.headers["WWW-Authenticate"]
    assert _auth(client, Authorization="Bearer not-a-token").status_code == 401
    # A bad bearer token is not saved by a good cookie: what was sent is judged.
    _sign_in(client, "alice")
    assert _auth(client, Authorization="Bearer not-a-token").status_code == 401
    # Another scheme is the protected app's own: the cookie decides.
    basic = _auth(client, Authorization="Basic YWxpY2U6cHc=")
    assert basic.status_code == 202
    assert basic.headers["X-Auth-Request-User"] == "alice"


def test_a_bearer_token_of_a_person_carries_their_identity(fwd_app: Flask) -> None:
    with fwd_app.app_context(), fwd_app.test_request_context():
        server = Services.of(fwd_app).oauth
        person = Services.of(fwd_app).users.by_username("bob")
        issued = server.access_tokens.issue(
            server.clients.get("cli"),
            subject=person.id,
            audience=AUDIENCES[0],
            scopes=["openid"],
            roles=list(person.roles),
        )
    client = fwd_app.test_client()
    answer = _auth(client, Authorization=f"Bearer {issued.access_token}")
    assert answer.status_code == 202
    assert answer.headers["X-Auth-Request-User"] == "bob"
    with fwd_app.app_context():
        Services.of(fwd_app).users.set_disabled("bob", True)
    assert _auth(client, Authorization=f"Bearer {issued.access_token}").status_code == 401


def test_the_callback_needs_the_browser_that_started(fwd_app: Flask) -> None:
    """Login CSRF: a code obtained in the attacker's browser is no good in another's."""
    attacker = fwd_app.test_client()
    start = attacker.get("/oauth2/start", base_url=APP, query_string={"rd": "/"})
    path = start.headers["Location"].removeprefix(ISSUER)
    page = attacker.get("/login", base_url=ISSUER, query_string={"next": path})
    body = page.get_data(as_text=True)
    attacker.post(
        "/login",
        base_url=ISSUER,
        data={
            "csrf_token": form_field(body, "csrf_token"),
            "username": "alice",
            "password": PASSWORD,
            "next": path,
        },
    )
    callback = attacker.get(path, base_url=ISSUER).headers["Location"].removeprefix(APP)
    victim = fwd_app.test_client()
    refused = victim.get(callback, base_url=APP)
    assert refused.status_code == 400
    assert "another browser" in refused.get_data(as_text=True)
    assert not any(c.startswith(COOKIE + "=") for c in refused.headers.getlist("Set-Cookie"))
    # The code is spent: not even its own browser can use it now.
    assert attacker.get(callback, base_url=APP).status_code == 400
    assert _auth(victim).status_code == 401


def test_a_code_is_good_once(fwd_app: Flask) -> None:
    client = fwd_app.test_client()
    done = _sign_in(client, "alice")
    assert done.status_code == 302
    code = parse_qs(urlsplit(done.request.url).query)["code"][0]
    again = client.get("/oauth2/callback", base_url=APP, query_string={"code": code})
    assert again.status_code == 400
    assert "already used" in again.get_data(as_text=True)


@pytest.mark.parametrize(
    "rd",
    [
        "https://evil.example.net/",
        "//evil.example.net/",
        "/\\evil.example.net/",
        "\\\\evil.example.net",
        "http://app.example.com@evil.example.net/",
        "http://evil.example.net\\@app.example.com/",
        "https://app.example.com.evil.example.net/",
        "javascript:alert(1)",
        "/%2F%2Fevil.example.net",  # stays a path on the protected host: allowed below
        "/\t/evil.example.net",
        "http:evil.example.net",
        "https://apps.example.com/",  # the bare parent of .apps.example.com
        "http://app.example.com:99999/",
    ],
)
def test_start_refuses_rd_off_the_allowed_hosts(fwd_app: Flask, rd: str) -> None:
    client = fwd_app.test_client()
    response = client.get("/oauth2/start", base_url=APP, query_string={"rd": rd})
    if rd == "/%2F%2Fevil.example.net":
        # A path with encoded slashes is a path of the protected host, not a host.
        assert response.status_code == 302
        with fwd_app.app_context():
            state = parse_qs(urlsplit(response.headers["Location"]).query)["state"][0]
            origin = Services.of(fwd_app).forward_auth.pending_origin(state)
        assert origin == APP
        return
    assert response.status_code == 400, rd
    assert "Location" not in response.headers
    assert not response.headers.getlist("Set-Cookie")


def test_start_refuses_a_host_that_is_not_protected(fwd_app: Flask) -> None:
    client = fwd_app.test_client()
    response = client.get(
        "/oauth2/start", base_url="http://evil.example.net", query_string={"rd": "/"}
    )
    assert response.status_code == 400
    forwarded = client.get(
        "/oauth2/start",
        base_url=APP,
        query_string={"rd": "/"},
        headers={"X-Forwarded-Host": "evil.example.net"},
    )
    assert forwarded.status_code == 400


def test_sign_out_never_redirects_off_the_allowed_hosts(fwd_app: Flask) -> None:
    client = fwd_app.test_client()
    out = client.get("/oauth2/sign_out", base_url=APP, query_string={"rd": "//evil.example.net"})
    assert out.status_code == 302
    assert out.headers["Location"] == APP + "/"
    elsewhere = client.get(
        "/oauth2/sign_out",
        base_url=APP,
        query_string={"rd": "https://x.apps.example.com/"},
        headers={"X-Forwarded-Proto": "https"},
    )
    assert elsewhere.headers["Location"] == "https://x.apps.example.com/"


def test_the_forward_scheme_and_an_absolute_rd(fwd_app: Flask) -> None:
    client = fwd_app.test_client()
    start = client.get(
        "/oauth2/start",
        base_url=APP,
        query_string={"rd": "https://x.apps.example.com/path?q=1"},
        headers={"X-Forwarded-Proto": "https"},
    )
    assert start.status_code == 302
    nonce = next(c for c in start.headers.getlist("Set-Cookie") if "_csrf=" in c)
    assert "Secure" in nonce
    assert "Path=/oauth2/" in nonce


def test_without_forward_auth_configured_the_endpoints_are_absent(app: Flask) -> None:
    client = app.test_client()
    assert client.get("/oauth2/auth").status_code == 404
    assert client.get("/oauth2/start?rd=/").status_code == 404


def test_the_settings_name_every_bad_host() -> None:
    from pydantic import ValidationError

    from authserver.settings import ForwardAuthSettings

    with pytest.raises(ValidationError) as caught:
        ForwardAuthSettings.model_validate(
            {"allowed_hosts": ["ok.example.com", "https://x/", "a:0"], "cookie_name": "a b"}
        )
    text = str(caught.value)
    assert "'https://x/' is not a host name" in text
    assert "'a:0' has a bad port" in text
    assert "cookie_name" in text
    with pytest.raises(ValidationError):
        ForwardAuthSettings.model_validate({"allowed_hosts": []})


# -- the protocol module alone --------------------------------------------------------


RULES = HostRules(("app.example.com", ".apps.example.com", "pinned.example.com:8443"))


@pytest.mark.parametrize(
    ("rd", "expected"),
    [
        (None, "http://app.example.com:46580/"),
        ("/dashboard/", "http://app.example.com:46580/dashboard/"),
        ("http://x.apps.example.com/a?b=c", "http://x.apps.example.com/a?b=c"),
        ("https://pinned.example.com:8443/", "https://pinned.example.com:8443/"),
        ("https://APP.example.com/", "https://APP.example.com/"),
    ],
)
def test_redirect_target_allows(rd: str | None, expected: str) -> None:
    assert redirect_target(rd, "http", "app.example.com:46580", RULES) == expected


@pytest.mark.parametrize(
    "rd",
    [
        "https://pinned.example.com/",
        "https://pinned.example.com:9000/",
        "http://x.apps.example.com:80@evil.example.net/",
        "https://xapps.example.com/",
        "ftp://app.example.com/",
        "/ok/\x00",
        "https://app.example.com//evil.example.net",
        quote("//evil.example.net"),  # %2F%2F...: not a path, not a URL
    ],
)
def test_redirect_target_refuses(rd: str) -> None:
    with pytest.raises(ForwardAuthError):
        redirect_target(rd, "http", "app.example.com", RULES)


def test_a_session_ends_at_its_lifetime() -> None:
    class Store(dict[str, bytes]):
        def put(self, key: str, value: bytes, ttl: float) -> None:
            self[key] = value

        def take(self, key: str) -> bytes | None:
            return self.pop(key, None)

    clock = ManualClock(1_000_000.0)
    service = ForwardAuth(Store(), b"k" * 32, RULES, session_lifetime=3600, clock=clock)
    started = service.start("/", "http", "app.example.com")
    callback = service.issue_code(
        started.state, user_id="u1", sid="s1", auth_time=clock.now(), credentials_generation=0
    )
    code = parse_qs(urlsplit(callback).query)["code"][0]
    redeemed = service.redeem(code, started.nonce, "app.example.com")
    assert service.session_of(redeemed.cookie, "app.example.com:46580") is not None
    clock.advance(3601)
    assert service.session_of(redeemed.cookie, "app.example.com") is None


def test_the_skypilot_recipe_is_a_valid_config() -> None:
    """examples/skypilot/authserver.yaml, with its secret files stood in for."""
    from pathlib import Path

    import yaml

    from authserver.settings import Settings

    path = Path(__file__).resolve().parent.parent / "examples" / "skypilot" / "authserver.yaml"
    raw = yaml.safe_load(path.read_text())
    raw["database_url"] = raw.pop("database_url_file") and "sqlite:///x.db"
    raw["initial_admin"]["password"] = raw["initial_admin"].pop("password_file") and "x" * 16
    for client in raw["clients"]:
        client["client_secret_hash"] = client.pop("client_secret_hash_file") and (
            "$2b$04$" + "a" * 53
        )
    settings = Settings.model_validate(raw)
    assert settings.forward_auth is not None
    assert settings.forward_auth.allowed_hosts == ("skypilot.example.com",)
    assert settings.tokens.audiences == ("https://skypilot.example.com",)
