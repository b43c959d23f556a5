"""The login page itself: CSRF, ``next`` only on our origin, cookies, brute-force limits."""

from __future__ import annotations

from urllib.parse import parse_qsl, urlsplit

import pytest
from flask import Flask

from authserver.web.services import Services
from authserver.web.signin import safe_next

from .support.factories import PASSWORD
from .support.flows import form_field


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("/oauth2/authorize?client_id=cli", "/oauth2/authorize?client_id=cli"),
        ("/device", "/device"),
        ("https://evil.example.com/", "/"),
        ("//evil.example.com/x", "/"),
        ("/\\evil.example.com", "/"),
        ("/ok\\..", "/"),
        ("javascript:alert(1)", "/"),
        ("/x\r\nLocation: https://evil", "/"),
        ("", "/"),
        (None, "/"),
    ],
)
def test_next_stays_on_our_origin(value: str | None, expected: str) -> None:
    assert safe_next(value) == expected


def _login(client, username: str, password: str, next_url: str = "/"):  # type: ignore[no-untyped-def]
    page = client.get("/login", query_string={"next": next_url, "force": "1"})
    assert page.status_code == 200
    return client.post(
        "/login",
        data={
            "csrf_token": form_field(page.text, "csrf_token"),
            "username": username,
            "password": password,
            "next": next_url,
        },
    )


def test_login_sets_a_hardened_session_cookie_and_follows_next(app: Flask) -> None:
    Services.of(app).users.create_local("carol", PASSWORD, "user")
    client = app.test_client()
    response = _login(client, "Carol", PASSWORD, "/device")
    assert response.status_code == 302
    assert response.headers["Location"] == "/device"
    cookie = next(
        h for h in response.headers.getlist("Set-Cookie") if h.startswith("authserver_session=")
    )
    assert "HttpOnly" in cookie
    assert "SameSite=Lax" in cookie
    assert "Secure" not in cookie  # http loopback issuer in tests
    home = client.get("/")
    assert home.status_code == 200
    assert "carol" in home.text


def test_login_to_another_origin_lands_home(app: Flask) -> None:
    Services.of(app).users.create_local("dave", PASSWORD, "user")
    response = _login(app.test_client(), "dave", PASSWORD, "https://evil.example.com/")
    assert response.status_code == 302
    assert response.headers["Location"] == "/"


def test_secure_cookie_on_https_issuer(make_app) -> None:  # type: ignore[no-untyped-def]
    app = make_app(issuer="https://auth.example.com")
    Services.of(app).users.create_local("erin", PASSWORD, "user")
    client = app.test_client()
    response = _login(client, "erin", PASSWORD)
    cookie = next(
        h for h in response.headers.getlist("Set-Cookie") if h.startswith("authserver_session=")
    )
    assert "Secure" in cookie


def test_post_without_csrf_token_is_refused_and_signs_nobody_in(app: Flask) -> None:
    Services.of(app).users.create_local("frank", PASSWORD, "user")
    client = app.test_client()
    response = client.post("/login", data={"username": "frank", "password": PASSWORD})
    assert response.status_code == 400
    assert "expired" in response.text
    assert client.get("/").status_code == 302  # still not signed in


def test_wrong_password_is_401_with_a_message(app: Flask) -> None:
    Services.of(app).users.create_local("gina", PASSWORD, "user")
    response = _login(app.test_client(), "gina", "not the password at all")
    assert response.status_code == 401
    assert "Wrong username or password." in response.text


def test_failed_sign_ins_are_limited_per_account_and_address(app: Flask) -> None:
    """10 tries per account from one address in 15 minutes; the owner elsewhere is not
    locked out by someone guessing (a per-account limit alone would let anyone lock
    any account)."""
    Services.of(app).users.create_local("hank", PASSWORD, "user")
    attacker = app.test_client()
    attacker.environ_base["REMOTE_ADDR"] = "10.0.0.1"
    for _ in range(10):
        assert _login(attacker, "hank", "wrong password guess").status_code == 401
    response = _login(attacker, "hank", PASSWORD)
    assert response.status_code == 429
    assert "Too many failed sign-ins" in response.text
    owner = app.test_client()
    owner.environ_base["REMOTE_ADDR"] = "10.0.1.1"
    assert _login(owner, "hank", PASSWORD).status_code == 302
    # another account from the attacker's address is not affected
    Services.of(app).users.create_local("ivy", PASSWORD, "user")
    assert _login(attacker, "ivy", PASSWORD).status_code == 302


def test_one_ipv6_host_is_one_address_for_the_limits(app: Flask) -> None:
    """Addresses of one /64 share the per-account+address counter."""
    Services.of(app).users.create_local("lena", PASSWORD, "user")
    for i in range(10):
        client = app.test_client()
        client.environ_base["REMOTE_ADDR"] = f"2001:db8:1:2::{i + 1:x}"
        assert _login(client, "lena", "wrong password guess").status_code == 401
    client = app.test_client()
    client.environ_base["REMOTE_ADDR"] = "2001:db8:1:2::ffff"
    assert _login(client, "lena", PASSWORD).status_code == 429


def test_failed_sign_ins_are_limited_per_address(app: Flask) -> None:
    client = app.test_client()
    client.environ_base["REMOTE_ADDR"] = "10.9.9.9"
    for i in range(60):
        assert _login(client, f"nobody{i}", "wrong password guess").status_code == 401
    Services.of(app).users.create_local("jack", PASSWORD, "user")
    assert _login(client, "jack", PASSWORD).status_code == 429


def test_control_characters_in_the_username_are_a_failed_sign_in(app: Flask) -> None:
    response = _login(app.test_client(), "ad\x00min", "whatever password")
    assert response.status_code == 401
    assert "Wrong username or password." in response.text


# -- odd input at the authorization endpoint: a clear 4xx, never a 500 -----------------


@pytest.mark.parametrize(
    ("params", "status"),
    [
        ({"redirect_uri": "http://[::1"}, 400),
        ({"redirect_uri": "http://[abc]/callback"}, 400),
        ({"response_type": "é"}, 302),
        ({"response_type": 'a"b'}, 302),
        ({"response_type": "\x01"}, 302),
        ({"response_type": "token"}, 302),
        ({"client_id": "nope", "response_type": "é"}, 400),
        ({"max_age": "²"}, 302),
        ({"scope": "openid", "redirect_uri": None}, 400),
    ],
)
def test_odd_authorization_requests_are_clear_errors(
    app: Flask, params: dict[str, str | None], status: int
) -> None:
    from .support.flows import pkce_pair

    Services.of(app).users.create_local("mia", PASSWORD, "user")
    client = app.test_client()
    assert _login(client, "mia", PASSWORD).status_code == 302
    _, challenge = pkce_pair()
    query: dict[str, str | None] = {
        "response_type": "code",
        "client_id": "cli",
        "redirect_uri": "http://127.0.0.1:40001/callback",
        "code_challenge": challenge,
        "code_challenge_method": "S256",
        "state": "s1",
        **params,
    }
    response = client.get(
        "/oauth2/authorize", query_string={k: v for k, v in query.items() if v is not None}
    )
    assert response.status_code == status, response.text
    if status == 302:
        location = response.headers["Location"]
        assert location.startswith("http://127.0.0.1:40001/callback?error=")
        assert "state=s1" in location
        assert "iss=" in location
    else:
        assert "Location" not in response.headers
        assert "text/html" in response.content_type


def test_public_client_confirms_when_the_sign_in_is_not_fresh(
    app: Flask, monkeypatch: pytest.MonkeyPatch
) -> None:
    """RFC 8252 §8.6: no silent code for a loopback listener on an old session."""
    from authserver.oauth.rfc6749.authorization import checks

    from .support.flows import pkce_pair

    Services.of(app).users.create_local("nina", PASSWORD, "user")
    client = app.test_client()
    _, challenge = pkce_pair()
    query = {
        "response_type": "code",
        "client_id": "cli",
        "redirect_uri": "http://127.0.0.1:40002/callback",
        "code_challenge": challenge,
        "code_challenge_method": "S256",
        "scope": "openid offline_access",
    }
    to_login = client.get("/oauth2/authorize", query_string=query)
    assert to_login.status_code == 302
    assert to_login.headers["Location"].startswith("/login?")
    monkeypatch.setattr(checks, "FRESH_SIGNIN_SECONDS", -1)
    assert _login(client, "nina", PASSWORD, "/").status_code == 302
    page = client.get("/oauth2/authorize", query_string=query)
    assert page.status_code == 200
    assert "Allow" in page.text
    assert "offline_access" in page.text
    silent = client.get("/oauth2/authorize", query_string={**query, "prompt": "none"})
    assert "error=consent_required" in silent.headers["Location"]
    approved = client.post(
        "/oauth2/authorize",
        query_string=query,
        data={"csrf_token": form_field(page.text, "csrf_token"), "approve": "1"},
    )
    assert approved.status_code == 302
    assert "code=" in approved.headers["Location"]
    # not remembered: the next silent request asks again
    assert client.get("/oauth2/authorize", query_string=query).status_code == 200


def test_limits_key_on_the_forwarded_client_only_behind_a_trusted_forwarder(
    make_app,  # type: ignore[no-untyped-def]
) -> None:
    """Behind a TLS proxy every request comes from the proxy: with ``trusted_forwarders``
    the client's own address (right-most untrusted X-Forwarded-For hop) is what counts."""
    app = make_app(trusted_forwarders=["10.0.0.0/8"])
    Services.of(app).users.create_local("olga", PASSWORD, "user")
    attacker = app.test_client()
    attacker.environ_base["REMOTE_ADDR"] = "10.0.0.5"
    # the attacker writes a fake left-most hop; the proxy appends the real one
    headers = {"X-Forwarded-For": "1.2.3.4, 198.51.100.7"}
    for _ in range(10):
        page = attacker.get("/login", query_string={"force": "1"})
        response = attacker.post(
            "/login",
            headers=headers,
            data={
                "csrf_token": form_field(page.text, "csrf_token"),
                "username": "olga",
                "password": "wrong password guess",
                "next": "/",
            },
        )
        assert response.status_code == 401
    page = attacker.get("/login", query_string={"force": "1"})
    blocked = attacker.post(
        "/login",
        headers=headers,
        data={
            "csrf_token": form_field(page.text, "csrf_token"),
            "username": "olga",
            "password": PASSWORD,
            "next": "/",
        },
    )
    assert blocked.status_code == 429
    # the owner comes through the same proxy from another address: not blocked
    owner = app.test_client()
    owner.environ_base["REMOTE_ADDR"] = "10.0.0.5"
    page = owner.get("/login", query_string={"force": "1"})
    ok = owner.post(
        "/login",
        headers={"X-Forwarded-For": "203.0.113.9"},
        data={
            "csrf_token": form_field(page.text, "csrf_token"),
            "username": "olga",
            "password": PASSWORD,
            "next": "/",
        },
    )
    assert ok.status_code == 302


def test_forwarded_for_from_an_untrusted_peer_is_ignored(app: Flask) -> None:
    """Without trusted_forwarders, a client cannot pick its own rate-limit key."""
    Services.of(app).users.create_local("pia", PASSWORD, "user")
    client = app.test_client()
    client.environ_base["REMOTE_ADDR"] = "10.7.7.7"
    for i in range(10):
        page = client.get("/login", query_string={"force": "1"})
        response = client.post(
            "/login",
            headers={"X-Forwarded-For": f"192.0.2.{i}"},
            data={
                "csrf_token": form_field(page.text, "csrf_token"),
                "username": "pia",
                "password": "wrong password guess",
                "next": "/",
            },
        )
        assert response.status_code == 401
    assert _login(client, "pia", PASSWORD).status_code == 429


def test_a_fullwidth_username_signs_in_as_the_same_person(app: Flask) -> None:
    """RFC 8265 §3.3: what is typed is compared in the stored form, width-mapped."""
    Services.of(app).users.create_local("carol", PASSWORD, "user")
    client = app.test_client()
    response = _login(client, "\uff23\uff41\uff52\uff4f\uff4c", PASSWORD)  # fullwidth Carol
    assert response.status_code == 302
    assert "carol" in client.get("/").text


def _cli_query(port: int) -> dict[str, str]:
    from .support.flows import pkce_pair

    _, challenge = pkce_pair()
    return {
        "response_type": "code",
        "client_id": "cli",
        "redirect_uri": f"http://127.0.0.1:{port}/callback",
        "code_challenge": challenge,
        "code_challenge_method": "S256",
        "scope": "openid offline_access",
        "state": "s-" + str(port),
    }


def test_a_fresh_sign_in_spares_the_click_only_for_the_request_that_asked_for_it(
    app: Flask,
) -> None:
    """Issue 16.13 (RFC 8252 §8.6): the sign-in an authorization request sent the
    person to is the interaction for that request, once; any other request of a public
    client within the same minutes (another local program's) gets the confirmation."""
    Services.of(app).users.create_local("olga", PASSWORD, "user")
    client = app.test_client()
    asked = _cli_query(40003)
    to_login = client.get("/oauth2/authorize", query_string=asked)
    assert to_login.status_code == 302
    next_url = dict(parse_qsl(urlsplit(to_login.headers["Location"]).query))["next"]
    signed_in = _login(client, "olga", PASSWORD, next_url)
    assert signed_in.status_code == 302
    assert signed_in.headers["Location"] == next_url
    issued = client.get(next_url)
    assert issued.status_code == 302
    assert issued.headers["Location"].startswith("http://127.0.0.1:40003/callback?code=")

    # Another program's request, seconds later: the person is asked.
    other = client.get("/oauth2/authorize", query_string=_cli_query(40004))
    assert other.status_code == 200
    assert 'id="approve"' in other.text
    # And the same request again (its one exemption is used up): asked too.
    again = client.get("/oauth2/authorize", query_string=asked)
    assert again.status_code == 200
    assert 'id="approve"' in again.text


def test_a_sign_in_not_started_by_the_request_does_not_spare_the_click(app: Flask) -> None:
    Services.of(app).users.create_local("pia", PASSWORD, "user")
    client = app.test_client()
    assert _login(client, "pia", PASSWORD).status_code == 302
    page = client.get("/oauth2/authorize", query_string=_cli_query(40005))
    assert page.status_code == 200
    assert 'id="approve"' in page.text
