"""The login page itself: CSRF, ``next`` only on our origin, cookies, brute-force limits."""

from __future__ import annotations

import pytest
from flask import Flask

from authserver.web.signin import safe_next

from .people import PASSWORD, form_field


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
    app.extensions["authserver.users"].create_local("carol", PASSWORD, "user")
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
    app.extensions["authserver.users"].create_local("dave", PASSWORD, "user")
    response = _login(app.test_client(), "dave", PASSWORD, "https://evil.example.com/")
    assert response.status_code == 302
    assert response.headers["Location"] == "/"


def test_secure_cookie_on_https_issuer(make_app) -> None:  # type: ignore[no-untyped-def]
    app = make_app(issuer="https://auth.example.com")
    app.extensions["authserver.users"].create_local("erin", PASSWORD, "user")
    client = app.test_client()
    response = _login(client, "erin", PASSWORD)
    cookie = next(
        h for h in response.headers.getlist("Set-Cookie") if h.startswith("authserver_session=")
    )
    assert "Secure" in cookie


def test_post_without_csrf_token_is_refused_and_signs_nobody_in(app: Flask) -> None:
    app.extensions["authserver.users"].create_local("frank", PASSWORD, "user")
    client = app.test_client()
    response = client.post("/login", data={"username": "frank", "password": PASSWORD})
    assert response.status_code == 400
    assert "expired" in response.text
    assert client.get("/").status_code == 302  # still not signed in


def test_wrong_password_is_401_with_a_message(app: Flask) -> None:
    app.extensions["authserver.users"].create_local("gina", PASSWORD, "user")
    response = _login(app.test_client(), "gina", "not the password at all")
    assert response.status_code == 401
    assert "Wrong username or password." in response.text


def test_failed_sign_ins_are_limited_per_account(app: Flask) -> None:
    """10 failures per account in 15 minutes; then even the right password waits."""
    app.extensions["authserver.users"].create_local("hank", PASSWORD, "user")
    for i in range(10):
        client = app.test_client()
        # a different address each time: only the per-account limit applies
        client.environ_base["REMOTE_ADDR"] = f"10.0.0.{i + 1}"
        assert _login(client, "hank", "wrong password guess").status_code == 401
    client = app.test_client()
    client.environ_base["REMOTE_ADDR"] = "10.0.1.1"
    response = _login(client, "hank", PASSWORD)
    assert response.status_code == 429
    assert "Too many failed sign-ins" in response.text
    # another account from the same address is not affected
    app.extensions["authserver.users"].create_local("ivy", PASSWORD, "user")
    assert _login(client, "ivy", PASSWORD).status_code == 302


def test_failed_sign_ins_are_limited_per_address(app: Flask) -> None:
    client = app.test_client()
    client.environ_base["REMOTE_ADDR"] = "10.9.9.9"
    for i in range(30):
        assert _login(client, f"nobody{i}", "wrong password guess").status_code == 401
    app.extensions["authserver.users"].create_local("jack", PASSWORD, "user")
    assert _login(client, "jack", PASSWORD).status_code == 429
