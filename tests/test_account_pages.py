"""The person's pages (``/`` and ``/account``), the dashboard's password reset, the
audit page's names and the ``branding:`` config, over HTTP against a live
``authserver serve`` (issue 13.7-13.8).

What is asserted is what matters: the status, what the page says, the rows (refresh
families revoked and why, audit events and who they name), that a token of an ended
sign-in no longer works, and that the pages' CSP is the same with branding on.
"""

from __future__ import annotations

import html
import json
import re
import struct
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import sqlalchemy as sa
from flask import Flask

from authserver.settings import SettingsError, load_settings, read_logo
from authserver.web.services import Services

from .conftest import BACKENDS
from .support.factories import PASSWORD, create_user, database_url
from .support.flows import (
    flask_sign_in,
    form_field,
    introspect,
    live_tokens,
    login,
    refresh,
    signed_in_session,
)
from .support.servers import LiveServer, run_cli, serving

NEW_PASSWORD = "a new long password 42"
PAGE_CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)


# -- helpers --------------------------------------------------------------------------


def png(width: int = 2, height: int = 1) -> bytes:
    """A small valid PNG (RGB, one colour), made here: no binary file in the tree."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    rows = b"".join(b"\x00" + b"\x25\x63\xeb" * width for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


def text_of(body: str) -> str:
    """The text of the page's ``main``, tags dropped and spaces collapsed."""
    main = body[body.index("<main") : body.index("</main>")]
    words = re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ", main))).strip()
    return re.sub(r" ([.,;:])", r"\1", words)


def alert(body: str) -> str:
    match = re.search(r'role="alert"[^>]*>([^<]*)<', body)
    assert match, body[:3000]
    return html.unescape(match.group(1))


def notices(body: str) -> list[str]:
    return [html.unescape(m) for m in re.findall(r'class="notice" role="status">([^<]*)<', body)]


def post_form(
    session: requests.Session, server: LiveServer, page_path: str, action: str, data: dict[str, str]
) -> requests.Response:
    """A page's form, sent with the CSRF token the page carries (not followed)."""
    page = session.get(server.url + page_path, timeout=10)
    assert page.status_code == 200, page.text
    token = form_field(page.text, "csrf_token")
    return session.post(
        server.url + action, data={"csrf_token": token, **data}, allow_redirects=False, timeout=30
    )


def query(server: LiveServer, sql: str, **params: Any) -> list[dict[str, Any]]:
    engine = sa.create_engine(database_url(server))
    try:
        with engine.connect() as conn:
            return [dict(row) for row in conn.execute(sa.text(sql), params).mappings()]
    finally:
        engine.dispose()


def families(server: LiveServer, user_id: str) -> list[dict[str, Any]]:
    return query(
        server,
        "SELECT id, client_id, revoked_at, revoked_reason FROM refresh_families "
        "WHERE user_id = :uid ORDER BY created_at",
        uid=user_id,
    )


def audit_rows(server: LiveServer, event: str) -> list[dict[str, Any]]:
    return query(
        server,
        "SELECT actor, target, client_id, details FROM audit_events WHERE event = :event "
        "ORDER BY id",
        event=event,
    )


# -- / and /account ---------------------------------------------------------------------


def test_home_links_to_the_account_page_and_for_admins_the_dashboard(
    live_server: LiveServer,
) -> None:
    create_user(live_server, "home-user")
    create_user(live_server, "home-admin", role="admin")
    anonymous = requests.get(live_server.url + "/", allow_redirects=False, timeout=10)
    assert anonymous.status_code == 302
    assert anonymous.headers["Location"].endswith("/login")

    user = signed_in_session(live_server.url, "home-user")
    home = user.get(live_server.url + "/", timeout=10)
    assert home.status_code == 200
    assert "You are signed in as home-user." in text_of(home.text)
    assert 'href="/account"' in home.text
    assert "/dashboard" not in home.text
    assert home.headers["Content-Security-Policy"] == PAGE_CSP

    admin = signed_in_session(live_server.url, "home-admin")
    home = admin.get(live_server.url + "/", timeout=10)
    assert 'href="/account"' in home.text
    assert 'href="/dashboard"' in home.text


def test_account_page_shows_the_person_their_roles_and_signed_in_clients(
    live_server: LiveServer,
) -> None:
    user_id = create_user(live_server, "acct-view", role="viewer")
    anonymous = requests.get(live_server.url + "/account", allow_redirects=False, timeout=10)
    assert anonymous.status_code == 302
    assert "/login?next=/account" in anonymous.headers["Location"]

    live_tokens(live_server, "acct-view")
    live_tokens(live_server, "acct-view")
    session = signed_in_session(live_server.url, "acct-view")
    page = session.get(live_server.url + "/account", timeout=10)
    assert page.status_code == 200
    assert page.headers["Content-Security-Policy"] == PAGE_CSP
    assert page.headers["Cache-Control"] == "no-store"
    shown = text_of(page.text)
    assert "Username acct-view" in shown
    assert "Roles viewer" in shown
    assert "Signs in through a password kept by this server" in shown
    assert 'id="change-password"' in page.text
    rows = re.findall(r'<tr data-client-id="([^"]+)"', page.text)
    assert rows == ["cli", "cli"]
    assert len(families(live_server, user_id)) == 2


def test_changing_ones_password_ends_the_other_sessions_and_refresh_tokens(
    live_server: LiveServer,
) -> None:
    user_id = create_user(live_server, "acct-pw")
    tokens = live_tokens(live_server, "acct-pw")
    other = signed_in_session(live_server.url, "acct-pw")
    session = signed_in_session(live_server.url, "acct-pw")
    action = "/account/password"

    def change(current: str, new: str, confirm: str) -> requests.Response:
        return post_form(
            session,
            live_server,
            "/account",
            action,
            {"current": current, "password": new, "confirm": confirm},
        )

    # Bad input: a clear message, and nothing changes.
    for (current, new, confirm), status, said in (
        (("wrong password!!", NEW_PASSWORD, NEW_PASSWORD), 400, "current password is wrong"),
        ((PASSWORD, NEW_PASSWORD, NEW_PASSWORD + "x"), 400, "two new passwords differ"),
        ((PASSWORD, "short", "short"), 400, "at least 12"),
        (("", NEW_PASSWORD, NEW_PASSWORD), 400, "Enter your current password"),
    ):
        refused = change(current, new, confirm)
        assert refused.status_code == status, refused.text
        assert said in alert(refused.text)
        assert "Traceback" not in refused.text
    no_csrf = session.post(
        live_server.url + action,
        data={"current": PASSWORD, "password": NEW_PASSWORD, "confirm": NEW_PASSWORD},
        allow_redirects=False,
        timeout=10,
    )
    assert no_csrf.status_code == 400
    assert "form expired" in alert(no_csrf.text)
    assert all(f["revoked_at"] is None for f in families(live_server, user_id))
    assert not [r for r in audit_rows(live_server, "password_changed") if r["target"] == "acct-pw"]

    changed = change(PASSWORD, NEW_PASSWORD, NEW_PASSWORD)
    assert changed.status_code == 303
    assert changed.headers["Location"] == "/account"
    # This browser is signed in again; the other session is over.
    after = session.get(live_server.url + "/account", timeout=10)
    assert after.status_code == 200
    assert any("Your password is changed" in n for n in notices(after.text))
    assert other.get(live_server.url + "/account", allow_redirects=False).status_code == 302
    # The refresh token and the access token it came with are dead.
    assert refresh(live_server.url, tokens["refresh_token"]).json()["error"] == "invalid_grant"
    assert introspect(live_server, tokens["access_token"]) == {"active": False}
    [family] = families(live_server, user_id)
    assert family["revoked_at"] is not None
    assert family["revoked_reason"] == "password"
    rows = [r for r in audit_rows(live_server, "password_changed") if r["target"] == "acct-pw"]
    assert [(r["actor"], r["target"]) for r in rows] == [("acct-pw", "acct-pw")]
    # The old password no longer signs in; the new one does.
    assert login(requests.Session(), live_server.url, "acct-pw", PASSWORD).status_code == 401
    assert login(requests.Session(), live_server.url, "acct-pw", NEW_PASSWORD).status_code == 302


def test_sign_out_everywhere_revokes_every_family_and_session(live_server: LiveServer) -> None:
    user_id = create_user(live_server, "acct-out")
    first = live_tokens(live_server, "acct-out")
    second = live_tokens(live_server, "acct-out")
    other = signed_in_session(live_server.url, "acct-out")
    session = signed_in_session(live_server.url, "acct-out")

    no_csrf = session.post(
        live_server.url + "/account/sign-out-everywhere", allow_redirects=False, timeout=10
    )
    assert no_csrf.status_code == 400
    assert all(f["revoked_at"] is None for f in families(live_server, user_id))

    done = post_form(session, live_server, "/account", "/account/sign-out-everywhere", {})
    assert done.status_code == 303
    assert done.headers["Location"] == "/login?next=/account"
    landed = session.get(live_server.url + done.headers["Location"], timeout=10)
    assert landed.status_code == 200
    assert notices(landed.text) == [
        "You are signed out everywhere: every browser session, and 2 signed-in clients."
    ]
    for browser in (session, other):
        assert browser.get(live_server.url + "/account", allow_redirects=False).status_code == 302
    for tokens in (first, second):
        assert refresh(live_server.url, tokens["refresh_token"]).json()["error"] == "invalid_grant"
        assert introspect(live_server, tokens["access_token"]) == {"active": False}
    rows = families(live_server, user_id)
    assert len(rows) == 2
    assert {r["revoked_reason"] for r in rows} == {"signed_out"}
    [row] = [
        r for r in audit_rows(live_server, "signed_out_everywhere") if r["target"] == "acct-out"
    ]
    assert row["actor"] == "acct-out"
    details = row["details"] if isinstance(row["details"], dict) else json.loads(row["details"])
    assert details["refresh_families"] == 2
    # The password still works: only the sessions ended.
    assert login(requests.Session(), live_server.url, "acct-out", PASSWORD).status_code == 302


# -- the dashboard: an admin resets a password -----------------------------------------------


def test_admin_resets_a_password_from_the_dashboard(live_server: LiveServer) -> None:
    create_user(live_server, "reset-admin", role="admin")
    user_id = create_user(live_server, "reset-me")
    tokens = live_tokens(live_server, "reset-me")
    victim = signed_in_session(live_server.url, "reset-me")
    admin = signed_in_session(live_server.url, "reset-admin")

    users = admin.get(live_server.url + "/dashboard/users", timeout=10)
    assert 'href="/dashboard/users/password?username=reset-me"' in users.text
    # No reset link for oneself: one's own password needs the current one.
    assert "/dashboard/users/password?username=reset-admin" not in users.text
    self_reset = admin.get(
        live_server.url + "/dashboard/users/password", params={"username": "reset-admin"}
    )
    assert self_reset.status_code == 400
    assert "account page" in alert(self_reset.text)
    missing = admin.get(live_server.url + "/dashboard/users/password", params={"username": "nope"})
    assert missing.status_code == 404

    form_page = "/dashboard/users/password?username=reset-me"
    action = "/dashboard/users/password"
    mismatch = post_form(
        admin,
        live_server,
        form_page,
        action,
        {"username": "reset-me", "how": "set", "password": NEW_PASSWORD, "confirm": "other"},
    )
    assert mismatch.status_code == 400
    assert "differ" in alert(mismatch.text)
    short = post_form(
        admin,
        live_server,
        form_page,
        action,
        {"username": "reset-me", "how": "set", "password": "short", "confirm": "short"},
    )
    assert short.status_code == 400
    assert "at least 12" in alert(short.text)
    assert all(f["revoked_at"] is None for f in families(live_server, user_id))

    generated = post_form(
        admin, live_server, form_page, action, {"username": "reset-me", "how": "generate"}
    )
    assert generated.status_code == 200, generated.text
    assert generated.headers["Cache-Control"] == "no-store"
    password = html.unescape(
        re.search(r'id="generated-password" value="([^"]+)"', generated.text).group(1)  # type: ignore[union-attr]
    )
    assert len(password) >= 12
    assert login(requests.Session(), live_server.url, "reset-me", PASSWORD).status_code == 401
    assert login(requests.Session(), live_server.url, "reset-me", password).status_code == 302
    assert victim.get(live_server.url + "/account", allow_redirects=False).status_code == 302
    assert refresh(live_server.url, tokens["refresh_token"]).json()["error"] == "invalid_grant"
    assert introspect(live_server, tokens["access_token"]) == {"active": False}
    assert [f["revoked_reason"] for f in families(live_server, user_id)] == ["password"]

    typed = post_form(
        admin,
        live_server,
        form_page,
        action,
        {"username": "reset-me", "how": "set", "password": NEW_PASSWORD, "confirm": NEW_PASSWORD},
    )
    assert typed.status_code == 303
    listing = admin.get(live_server.url + typed.headers["Location"], timeout=10)
    assert "New password set for reset-me" in notices(listing.text)[0]
    assert NEW_PASSWORD not in listing.text
    assert login(requests.Session(), live_server.url, "reset-me", NEW_PASSWORD).status_code == 302
    # The same row as `authserver users set-password`: the admin acts on the user.
    rows = [r for r in audit_rows(live_server, "password_changed") if r["target"] == "reset-me"]
    assert [(r["actor"], r["target"]) for r in rows] == [("reset-admin", "reset-me")] * 2
    cli = live_server.cli(
        "users", "set-password", "reset-me", "--password-stdin", input_text=PASSWORD + "\n"
    )
    assert cli.returncode == 0, cli.stderr
    rows = [r for r in audit_rows(live_server, "password_changed") if r["target"] == "reset-me"]
    assert len(rows) == 3
    assert rows[-1]["actor"].startswith("cli:")


# -- the audit page: names, not ids --------------------------------------------------------------


def test_audit_page_names_people_and_falls_back_to_the_id(live_server: LiveServer) -> None:
    create_user(live_server, "audit-admin", role="admin")
    kept_id = create_user(live_server, "audit-kept")
    gone_id = create_user(live_server, "audit-gone")
    live_tokens(live_server, "audit-kept")
    live_tokens(live_server, "audit-gone")
    assert live_server.cli("users", "delete", "audit-gone").returncode == 0
    admin = signed_in_session(live_server.url, "audit-admin")
    page = admin.get(
        live_server.url + "/dashboard/audit", params={"event": "login", "limit": 200}, timeout=10
    )
    assert page.status_code == 200
    targets = re.findall(r'<td class="wrap">([^<]*)</td>', page.text)
    assert "audit-kept" in targets
    assert kept_id not in page.text  # shown by name
    assert gone_id in targets  # the row is gone: the id, as it is
    # Details are a list of key: value, not JSON.
    assert re.search(r"<dt>method</dt><dd>password</dd>", page.text)
    assert "{&#34;" not in page.text
    assert '{"' not in page.text


def test_audit_page_looks_names_up_in_one_batch(make_app: Any) -> None:
    """However many rows, the names cost one query for people and one for service
    accounts (not one a row)."""
    app: Flask = make_app()
    with app.app_context():
        services = Services.of(app)
        people = [services.users.create_local(f"batch-{i}", PASSWORD, "user")[0] for i in range(12)]
        services.users.create_local("batch-admin", PASSWORD, "admin")
        account, _ = services.service_accounts.create("batch-bot", role="user")
        for person in people:
            services.events("login", user_id=person.id, username=person.username, method="x")
            services.events("token_issued", client_id=account.client_id, user_id=account.client_id)
        services.events.flush()
        engine = services.audit._engine  # counting its statements
    client = flask_sign_in(app, "batch-admin")
    statements: list[str] = []

    def count(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        statements.append(statement)

    sa.event.listen(engine, "before_cursor_execute", count)
    try:
        page = client.get("/dashboard/audit", query_string={"limit": "100"})
    finally:
        sa.event.remove(engine, "before_cursor_execute", count)
    body = page.get_data(as_text=True)
    assert page.status_code == 200
    for person in people:
        assert person.id not in body
        assert f'<td class="wrap">{person.username}</td>' in body
    assert "batch-bot" in body
    lookups = [s for s in statements if "FROM users" in s and " IN " in s.upper()]
    assert len(lookups) == 1, statements
    accounts = [s for s in statements if "FROM service_accounts" in s and " IN " in s.upper()]
    assert len(accounts) == 1, statements
    assert len(statements) < 15, statements


# -- branding -------------------------------------------------------------------------------------


@pytest.fixture(scope="module", params=BACKENDS)
def branded_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveServer]:
    """A live server with ``branding:`` (a PNG logo) and a trusted auth proxy."""
    workdir = tmp_path_factory.mktemp("branded")
    logo = workdir / "logo.png"
    logo.write_bytes(png())

    def configure(config: dict[str, Any]) -> None:
        config["branding"] = {"name": "Example Corp", "logo": str(logo)}
        config["auth_proxy"] = {"trusted_proxies": ["127.0.0.1/32"]}

    with serving(request, workdir, configure) as server:
        yield server


@pytest.mark.live
def test_branding_shows_on_the_login_page_with_the_same_csp(branded_server: LiveServer) -> None:
    page = requests.get(branded_server.url + "/login", timeout=10)
    assert page.status_code == 200
    assert page.headers["Content-Security-Policy"] == PAGE_CSP
    assert "<h1>Sign in to Example Corp</h1>" in page.text
    match = re.search(
        r'<img src="(/branding/logo\?v=[0-9a-f]+)" alt="" id="brand-logo">', page.text
    )
    assert match, page.text
    assert '<span id="brand-name">Example Corp</span>' in page.text

    logo = requests.get(branded_server.url + match.group(1), timeout=10)
    assert logo.status_code == 200
    assert logo.headers["Content-Type"] == "image/png"
    assert logo.content == png()
    assert logo.headers["Cache-Control"] == "public, max-age=86400"
    assert logo.headers["X-Content-Type-Options"] == "nosniff"
    assert "sandbox" in logo.headers["Content-Security-Policy"]
    again = requests.get(
        branded_server.url + "/branding/logo",
        headers={"If-None-Match": logo.headers["ETag"]},
        timeout=10,
    )
    assert again.status_code == 304


def test_no_logo_configured_is_a_404(live_server: LiveServer) -> None:
    page = requests.get(live_server.url + "/login", timeout=10)
    assert "<img" not in page.text
    assert "<h1>Sign in</h1>" in page.text
    missing = requests.get(live_server.url + "/branding/logo", timeout=10)
    assert missing.status_code == 404


@pytest.mark.live
def test_a_proxy_user_sees_their_password_is_managed_upstream(branded_server: LiveServer) -> None:
    session = requests.Session()
    session.headers["X-Auth-Request-Email"] = "pat@example.com"
    page = session.get(branded_server.url + "/account", timeout=10)
    assert page.status_code == 200, page.text
    shown = text_of(page.text)
    assert "Your password is managed by the sign-in proxy in front of this server" in shown
    assert 'id="change-password"' not in page.text
    refused = post_form(
        session,
        branded_server,
        "/account",
        "/account/password",
        {"current": "x" * 12, "password": NEW_PASSWORD, "confirm": NEW_PASSWORD},
    )
    assert refused.status_code == 400
    assert "managed by the sign-in proxy" in alert(refused.text)
    done = post_form(session, branded_server, "/account", "/account/sign-out-everywhere", {})
    assert done.status_code == 303
    assert done.headers["Location"] == "/account"


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (None, "no such file"),
        (b"just some text", "not a PNG, JPEG, GIF, WebP or SVG image"),
        (b"\x89PNG\r\n\x1a\n" + b"\x00" * (600 * 1024), "larger than 512 KiB"),
    ],
)
def test_a_bad_logo_is_a_settings_error(
    tmp_path: Path, content: bytes | None, problem: str
) -> None:
    logo = tmp_path / "logo.png"
    if content is not None:
        logo.write_bytes(content)
    config = tmp_path / "authserver.yaml"
    config.write_text(f"branding:\n  logo: {logo}\n")
    with pytest.raises(SettingsError) as raised:
        load_settings(config, environ={})
    assert raised.value.problems == [f"branding.logo: {logo}: {problem}"]


@pytest.mark.live
def test_serve_refuses_to_start_with_a_bad_logo(tmp_path: Path) -> None:
    config = tmp_path / "authserver.yaml"
    config.write_text(
        f"database_url: sqlite:///{tmp_path / 'a.db'}\nsecret_key_file: {tmp_path / 'key'}\n"
        f"branding:\n  name: Example Corp\n  logo: {tmp_path / 'missing.png'}\n"
    )
    result = run_cli("--config", str(config), "serve", "--bind", "127.0.0.1:1", cwd=tmp_path)
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert f"branding.logo: {tmp_path / 'missing.png'}: no such file" in result.stderr
    assert "Traceback" not in result.stderr


def test_an_svg_logo_is_served_as_svg(tmp_path: Path) -> None:
    logo = tmp_path / "logo.svg"
    logo.write_text('<svg xmlns="http://www.w3.org/2000/svg" width="4" height="4"></svg>')
    config = tmp_path / "authserver.yaml"
    config.write_text(f"branding:\n  logo: {logo}\n")
    settings = load_settings(config, environ={})
    assert settings.branding.logo == str(logo)
    assert read_logo(str(logo)) == (logo.read_bytes(), "image/svg+xml")
