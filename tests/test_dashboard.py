"""The admin dashboard (``/dashboard``) through the Flask test client, on every backend.

Who gets in (admins by their current role; others a 403; nobody signed in is sent to the
login page), what each page changes in the database and the audit log (the admin named
as actor), that a secret is shown once, that every change needs the CSRF token, and
that bad input is a clear message that changes nothing.
"""

from __future__ import annotations

import base64
import csv
import html
import io
import re
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from authserver.web import admin
from authserver.web.services import Services

from .conftest import AppFactory
from .support.factories import PASSWORD, new_local_user
from .support.flows import flask_sign_in, form_field

TOKEN_FIELD = re.compile(r'id="service-account-token" value="([^"]+)"')
PASSWORD_FIELD = re.compile(r'id="generated-password" value="([^"]+)"')


# -- helpers --------------------------------------------------------------------------


def text(response: TestResponse) -> str:
    return response.get_data(as_text=True)


def alert(response: TestResponse) -> str:
    """The page's error (role="alert"), unescaped."""
    match = re.search(r'role="alert"[^>]*>([^<]*)<', text(response))
    assert match, f"no alert in the page ({response.status_code}):\n{text(response)[:3000]}"
    return html.unescape(match.group(1))


def notice(response: TestResponse) -> str:
    match = re.search(r'class="notice" role="status">([^<]*)<', text(response))
    assert match, text(response)[:3000]
    return html.unescape(match.group(1))


def csrf(client: FlaskClient, path: str = "/dashboard/users") -> str:
    page = client.get(path)
    assert page.status_code == 200, text(page)
    return form_field(text(page), "csrf_token")


def post(client: FlaskClient, path: str, data: dict[str, Any], **kw: Any) -> TestResponse:
    """A dashboard form, sent with the CSRF token as the page would."""
    return client.post(path, data={"csrf_token": csrf(client), **data}, **kw)


def people(app: Flask) -> dict[str, Any]:
    with app.app_context():
        return {p.username: p for p in Services.of(app).users.list()}


def audit_events(app: Flask, event: str | None = None) -> list[Any]:
    Services.of(app).events.flush()
    with app.app_context():
        return Services.of(app).audit.page(limit=200, event=event)


def service_account_names(app: Flask) -> set[str]:
    with app.app_context():
        return {sa.name for sa in Services.of(app).service_accounts.list()}


def client_credentials(client: FlaskClient, token: str, *, basic: bool) -> TestResponse:
    """``grant_type=client_credentials`` with a service-account token (DESIGN.md)."""
    client_id = token.removeprefix("as_sa_").split(".", 1)[0]
    if basic:
        auth = base64.b64encode(f"{client_id}:{token}".encode()).decode()
        return client.post(
            "/oauth2/token",
            data={"grant_type": "client_credentials"},
            headers={"Authorization": f"Basic {auth}"},
        )
    return client.post(
        "/oauth2/token", data={"grant_type": "client_credentials", "client_secret": token}
    )


@pytest.fixture
def admin_app(make_app: AppFactory) -> Flask:
    return make_app()


@pytest.fixture
def root(admin_app: Flask) -> str:
    return new_local_user(admin_app, "admin")


@pytest.fixture
def dash(admin_app: Flask, root: str) -> FlaskClient:
    """A test client signed in as the admin ``root``."""
    return flask_sign_in(admin_app, root)


# -- who gets in --------------------------------------------------------------------------


def test_anonymous_is_sent_to_login_and_changes_nothing(app: Flask) -> None:
    client = app.test_client()
    for path in ("/dashboard", "/dashboard/users", "/dashboard/audit?event=login"):
        response = client.get(path)
        assert response.status_code == 302, path
        location = urlsplit(response.headers["Location"])
        assert location.path == "/login"
        assert parse_qs(location.query)["next"] == [path]
    response = client.post("/dashboard/users", data={"username": "mallory", "role": "admin"})
    assert response.status_code == 302
    assert parse_qs(urlsplit(response.headers["Location"]).query)["next"] == ["/dashboard"]
    assert "mallory" not in people(app)


def test_login_page_brings_an_admin_back_to_the_dashboard(app: Flask) -> None:
    name = new_local_user(app, "admin")
    client = app.test_client()
    page = client.get("/login", query_string={"next": "/dashboard/keys"})
    response = client.post(
        "/login",
        data={
            "csrf_token": form_field(text(page), "csrf_token"),
            "username": name,
            "password": PASSWORD,
            "next": "/dashboard/keys",
        },
    )
    assert response.status_code == 302
    assert response.headers["Location"] == "/dashboard/keys"
    keys = client.get("/dashboard/keys")
    assert keys.status_code == 200
    assert "<h1>Signing keys</h1>" in text(keys)


def test_non_admin_gets_403_and_changes_nothing(app: Flask) -> None:
    role = "viewer"
    name = new_local_user(app, role)
    client = flask_sign_in(app, name)
    for path in ("/dashboard/users", "/dashboard/service-accounts", "/dashboard/audit"):
        response = client.get(path)
        assert response.status_code == 403, path
        assert f"whose role is {role}" in text(response)
        assert 'role="alert"' in text(response)
    # The form of another page's CSRF token cannot help: the check comes first.
    token = form_field(text(client.get("/login", query_string={"force": "1"})), "csrf_token")
    response = client.post(
        "/dashboard/users", data={"csrf_token": token, "username": "mallory", "role": "admin"}
    )
    assert response.status_code == 403
    assert "mallory" not in people(app)
    assert people(app)[name].role == role


def test_role_is_read_on_every_request(admin_app: Flask, root: str, dash: FlaskClient) -> None:
    """A demoted or disabled admin is out at once, without signing out."""
    assert dash.get("/dashboard/users").status_code == 200
    with admin_app.app_context():
        Services.of(admin_app).users.set_role(root, "user")
    assert dash.get("/dashboard/users").status_code == 403
    with admin_app.app_context():
        Services.of(admin_app).users.set_role(root, "admin")
        Services.of(admin_app).users.set_disabled(root, True)
    response = dash.get("/dashboard/users")
    assert response.status_code == 302
    assert urlsplit(response.headers["Location"]).path == "/login"


def test_pages_are_accessible_html_without_scripts(root: str, dash: FlaskClient) -> None:
    for path in (
        "/dashboard/users",
        f"/dashboard/users/email?username={root}",
        "/dashboard/service-accounts",
        "/dashboard/clients",
        "/dashboard/keys",
        "/dashboard/audit",
    ):
        response = dash.get(path)
        assert response.status_code == 200, path
        body = text(response)
        assert '<html lang="en">' in body
        assert '<nav aria-label="Dashboard">' in body
        assert 'aria-current="page"' in body
        assert "<script" not in body
        assert "<th>" not in body  # every header cell has scope=col
        assert not re.search(r"<(?:link|img|iframe)\b|\bsrc=", body)  # nothing from elsewhere
        csp = response.headers["Content-Security-Policy"]
        assert "default-src 'none'" in csp
        assert "script-src" not in csp
        assert response.headers["Cache-Control"] == "no-store"
        assert response.headers["X-Frame-Options"] == "DENY"
        # every visible input and select has a <label for=...>
        labelled = set(re.findall(r'<label[^>]*for="([^"]+)"', body))
        for tag in re.findall(r"<(?:input|select)\b[^>]*>", body):
            if 'type="hidden"' in tag:
                continue
            ident = re.search(r'id="([^"]+)"', tag)
            assert ident, f"{path}: {tag} has no id"
            assert ident.group(1) in labelled, f"{path}: {tag} has no label"


# -- users ----------------------------------------------------------------------------------


def test_admin_creates_updates_and_deletes_users(
    admin_app: Flask, root: str, dash: FlaskClient
) -> None:
    response = post(
        dash, "/dashboard/users", {"username": "Alice", "role": "viewer", "password": PASSWORD}
    )
    assert response.status_code == 303
    assert response.headers["Location"] == "/dashboard/users"
    alice = people(admin_app)["alice"]
    assert (alice.role, alice.source, alice.disabled) == ("viewer", "local", False)
    listing = dash.get("/dashboard/users")
    assert notice(listing) == "User alice created with role viewer."
    assert 'data-username="alice"' in text(listing)
    assert PASSWORD not in text(listing)

    # Without a password: one is generated and shown once, and it signs in.
    response = post(dash, "/dashboard/users", {"username": "bob", "role": "user"})
    assert response.status_code == 201
    generated = html.unescape(PASSWORD_FIELD.search(text(response)).group(1))  # type: ignore[union-attr]
    assert "shown only this once" in text(response)
    with admin_app.app_context():
        assert Services.of(admin_app).users.authenticate("bob", generated)
    assert generated not in text(dash.get("/dashboard/users"))

    response = post(dash, "/dashboard/users/role", {"username": "alice", "role": "admin"})
    assert response.status_code == 303
    assert people(admin_app)["alice"].role == "admin"
    assert notice(dash.get("/dashboard/users")) == "The role of alice is now admin."

    response = post(dash, "/dashboard/users/disabled", {"username": "alice", "disabled": "true"})
    assert response.status_code == 303
    assert people(admin_app)["alice"].disabled is True
    assert "disabled" in text(dash.get("/dashboard/users"))
    response = post(dash, "/dashboard/users/disabled", {"username": "alice", "disabled": "false"})
    assert response.status_code == 303
    assert people(admin_app)["alice"].disabled is False

    # Deleting: the GET is only the confirmation page.
    confirm = dash.get("/dashboard/users/delete", query_string={"username": "alice"})
    assert confirm.status_code == 200
    assert "Delete user alice" in text(confirm)
    assert "alice" in people(admin_app)
    response = post(dash, "/dashboard/users/delete", {"username": "alice"})
    assert response.status_code == 303
    assert "alice" not in people(admin_app)
    assert notice(dash.get("/dashboard/users")) == "User alice deleted."

    events = [(e.event, e.target, e.actor) for e in reversed(audit_events(admin_app))]
    assert [e for e in events if e[0] != "login"] == [
        ("user_created", "alice", root),
        ("user_created", "bob", root),
        ("user_updated", "alice", root),
        ("user_updated", "alice", root),
        ("user_updated", "alice", root),
        ("user_deleted", "alice", root),
    ]


#: (form, status, the message) of new users that must be refused.
BAD_NEW_USERS = [
    ({"username": "", "role": "user"}, 400, "a username may not be empty"),
    ({"username": "   ", "role": "user"}, 400, "a username may not be empty"),
    ({"username": "carol", "role": "superuser"}, 400, "unknown role 'superuser'"),
    ({"username": "two words", "role": "user"}, 400, "whitespace"),
    ({"username": "carol", "role": "user", "password": "short"}, 400, "at least 12"),
    ({"username": "existing", "role": "user"}, 409, "user 'existing' already exists"),
    ({"username": "x" * 300, "role": "user"}, 400, "Username: Field cannot be longer"),
]


def test_bad_new_user_is_a_clear_message_that_changes_nothing(
    admin_app: Flask, dash: FlaskClient
) -> None:
    with admin_app.app_context():
        Services.of(admin_app).users.create_local("existing", PASSWORD, "viewer")
    before = people(admin_app)
    events = len(audit_events(admin_app))
    for data, status, error in BAD_NEW_USERS:
        response = post(dash, "/dashboard/users", data)
        assert response.status_code == status, data
        assert error in alert(response), data
        assert "Traceback" not in text(response)
        # The form keeps what was typed (but never a password).
        if data["username"].strip() and len(data["username"]) < 255:
            assert f'value="{data["username"]}"' in text(response)
        assert 'value="short"' not in text(response)
    assert people(admin_app).keys() == before.keys()
    assert people(admin_app)["existing"].role == "viewer"
    assert len(audit_events(admin_app)) == events


def test_bad_user_changes_are_clear_messages(
    admin_app: Flask, root: str, dash: FlaskClient
) -> None:
    other = new_local_user(admin_app, "user")
    new_local_user(admin_app, "admin")  # root is not the last admin: the rule here is "yourself"
    before = {name: (p.role, p.disabled) for name, p in people(admin_app).items()}
    cases = [
        ("/dashboard/users/role", {"username": "ghost", "role": "user"}, 404, "no user 'ghost'"),
        ("/dashboard/users/role", {"username": other, "role": "wizard"}, 400, "unknown role"),
        ("/dashboard/users/role", {"username": root, "role": "user"}, 400, "cannot take the admin"),
        ("/dashboard/users/disabled", {"username": root, "disabled": "true"}, 400, "disable"),
        ("/dashboard/users/disabled", {"username": root, "disabled": "maybe"}, 400, "Invalid"),
        ("/dashboard/users/delete", {"username": root}, 400, "cannot delete yourself"),
        ("/dashboard/users/delete", {"username": "ghost"}, 404, "no user 'ghost'"),
    ]
    for path, data, status, error in cases:
        response = post(dash, path, data)
        assert response.status_code == status, (path, data, text(response)[:2000])
        assert error in alert(response), (path, data)
    confirm = dash.get("/dashboard/users/delete", query_string={"username": "ghost"})
    assert confirm.status_code == 404
    assert {name: (p.role, p.disabled) for name, p in people(admin_app).items()} == before
    assert [e.event for e in audit_events(admin_app) if e.event != "login"] == []


def test_admin_sets_and_removes_email_addresses(
    admin_app: Flask, root: str, dash: FlaskClient
) -> None:
    """Issue 15.7: an address set here is verified (an admin's word) and one person's."""
    response = post(
        dash,
        "/dashboard/users",
        {"username": "fay", "role": "user", "password": PASSWORD, "email": "Fay@Example.com"},
    )
    assert response.status_code == 303, alert(response)
    fay = people(admin_app)["fay"]
    assert (fay.email, fay.email_verified) == ("Fay@example.com", True)
    listing = text(dash.get("/dashboard/users"))
    assert 'Fay@example.com <span class="muted">(verified)</span>' in listing
    assert 'href="/dashboard/users/email?username=fay"' in listing

    # the same address for another new user: 409, nothing made, the form kept
    response = post(
        dash, "/dashboard/users", {"username": "gus", "role": "user", "email": "fay@EXAMPLE.com"}
    )
    assert response.status_code == 409
    assert alert(response) == "user 'fay' already has the email address 'fay@example.com'"
    assert 'value="fay@EXAMPLE.com"' in text(response)
    assert "gus" not in people(admin_app)

    edit = dash.get("/dashboard/users/email", query_string={"username": "fay"})
    assert edit.status_code == 200
    assert 'value="Fay@example.com"' in text(edit)
    response = post(dash, "/dashboard/users/email", {"username": "fay", "email": "fay@new.example"})
    assert response.status_code == 303
    assert notice(dash.get("/dashboard/users")) == (
        "The email address of fay is now fay@new.example."
    )
    assert people(admin_app)["fay"].email == "fay@new.example"

    post(dash, "/dashboard/users", {"username": "gus", "role": "user", "password": PASSWORD})
    for email, status, error in [
        ("FAY@new.example", 409, "user 'fay' already has the email address"),
        ("gus@localhost", 400, "the domain must be a host name"),
        ("x" * 300, 400, "Email: Field cannot be longer than 254 characters."),
    ]:
        response = post(dash, "/dashboard/users/email", {"username": "gus", "email": email})
        assert response.status_code == status, email
        assert error in alert(response), email
    assert people(admin_app)["gus"].email is None
    response = post(dash, "/dashboard/users/email", {"username": "ghost", "email": "g@x.example"})
    assert response.status_code == 404
    assert alert(response) == "no user 'ghost'"

    response = post(dash, "/dashboard/users/email", {"username": "fay", "email": ""})
    assert response.status_code == 303
    assert notice(dash.get("/dashboard/users")) == "User fay has no email address now."
    fay = people(admin_app)["fay"]
    assert (fay.email, fay.email_verified) == (None, None)

    # an upstream person's address is the upstream's: no edit link, no edit
    with admin_app.app_context():
        upstream = Services.of(admin_app).users.provisioning.federated(
            "https://idp.example.com", "hal-1", email="hal@example.com", name=None, groups=[]
        )
    assert f"/dashboard/users/email?username={upstream.username}" not in text(
        dash.get("/dashboard/users")
    )
    for response in (
        dash.get("/dashboard/users/email", query_string={"username": upstream.username}),
        post(dash, "/dashboard/users/email", {"username": upstream.username, "email": ""}),
    ):
        assert response.status_code == 400
        assert "signs in through upstream" in alert(response)
    assert people(admin_app)[upstream.username].email == "hal@example.com"

    events = [(e.event, e.target, e.details, e.actor) for e in reversed(audit_events(admin_app))]
    assert [e for e in events if e[0] != "login"] == [
        ("user_created", "fay", {"role": "user", "email": "Fay@example.com"}, root),
        ("user_updated", "fay", {"email": "fay@new.example"}, root),
        ("user_created", "gus", {"role": "user"}, root),
        ("user_updated", "fay", {"email": None}, root),
    ]


def test_csrf_token_missing_or_wrong_is_400_and_changes_nothing(
    admin_app: Flask, root: str, dash: FlaskClient
) -> None:
    victim = new_local_user(admin_app, "user")
    with admin_app.app_context():
        Services.of(admin_app).service_accounts.create("deploy")
        kids = {k["kid"] for k in _keys(admin_app)}
    posts = [
        ("/dashboard/users", {"username": "mallory", "role": "admin"}),
        ("/dashboard/users/role", {"username": victim, "role": "admin"}),
        ("/dashboard/users/disabled", {"username": victim, "disabled": "true"}),
        ("/dashboard/users/delete", {"username": victim}),
        ("/dashboard/users/import", {"file": (io.BytesIO(b"username,password,role\n"), "a.csv")}),
        ("/dashboard/service-accounts", {"name": "evil", "role": "admin", "expires_in": "30 days"}),
        ("/dashboard/service-accounts/rotate", {"name": "deploy"}),
        ("/dashboard/service-accounts/revoke", {"name": "deploy"}),
        ("/dashboard/keys/rotate", {"rotate_now": "1"}),
    ]
    for token in (None, "not-a-token"):
        for path, data in posts:
            body = dict(data) if token is None else {"csrf_token": token, **data}
            if "file" in body:
                body["file"] = (io.BytesIO(b"username,password,role\n"), "a.csv")
            response = dash.post(path, data=body)
            assert response.status_code == 400, path
            assert "CSRF" in alert(response), path
            assert "as_sa_" not in text(response)
    assert "mallory" not in people(admin_app)
    assert (people(admin_app)[victim].role, people(admin_app)[victim].disabled) == ("user", False)
    assert service_account_names(admin_app) == {"deploy"}
    assert {k["kid"] for k in _keys(admin_app)} == kids
    assert [e.event for e in audit_events(admin_app) if e.event != "login"] == []


def test_a_get_changes_nothing(admin_app: Flask, dash: FlaskClient) -> None:
    victim = new_local_user(admin_app, "user")
    for path in (
        f"/dashboard/users/delete?username={victim}",
        "/dashboard/users/role?username=x&role=admin",
        "/dashboard/keys/rotate?rotate_now=1",
        "/dashboard/service-accounts/revoke?name=x",
    ):
        assert dash.get(path).status_code in (200, 404, 405), path
    assert victim in people(admin_app)
    assert [e.event for e in audit_events(admin_app) if e.event != "login"] == []


# -- CSV ----------------------------------------------------------------------------------


def _upload(client: FlaskClient, content: bytes, name: str = "people.csv") -> TestResponse:
    return post(
        client,
        "/dashboard/users/import",
        {"file": (io.BytesIO(content), name, "text/csv")},
        content_type="multipart/form-data",
    )


def test_csv_import_is_all_or_nothing(admin_app: Flask, root: str, dash: FlaskClient) -> None:
    good = (
        "\ufeffusername,password,role\n"
        f"dora,{PASSWORD},viewer\n"
        f"eve,{PASSWORD},\n"
        "\n"
        f"frank,{PASSWORD},admin\n"
    ).encode()
    response = _upload(dash, good)
    assert response.status_code == 303
    assert notice(dash.get("/dashboard/users")) == "Imported 3 users."
    found = people(admin_app)
    assert {n: found[n].role for n in ("dora", "eve", "frank")} == {
        "dora": "viewer",
        "eve": "user",
        "frank": "admin",
    }
    with admin_app.app_context():
        assert Services.of(admin_app).users.authenticate("eve", PASSWORD)
    [imported] = audit_events(admin_app, "users_imported")
    assert (imported.actor, imported.details["count"]) == (root, 3)

    before = set(people(admin_app))
    bad_files = [
        (f"username,password,role\ngina,{PASSWORD},user\nhank,{PASSWORD},wizard\n", "line 3"),
        (f"username,password,role\ndora,{PASSWORD},user\n", "line 2"),
        ("username,password,role\nivan,,user\n", "line 2"),
        (f"name,secret,role\njo,{PASSWORD},user\n", "header must be exactly"),
        ("", "the CSV file is empty"),
    ]
    for content, error in bad_files:
        response = _upload(dash, content.encode())
        assert response.status_code == 400, content
        message = alert(response)
        assert error in message, message
        assert set(people(admin_app)) == before
    response = _upload(dash, b"username,password,role\n\xff\xfe,x,y\n")
    assert response.status_code == 400
    assert "not UTF-8" in alert(response)
    response = post(dash, "/dashboard/users/import", {}, content_type="multipart/form-data")
    assert response.status_code == 400
    assert "Choose a CSV file" in alert(response)
    assert set(people(admin_app)) == before
    assert len(audit_events(admin_app, "users_imported")) == 1


def test_csv_upload_over_the_limit_is_refused(make_app: AppFactory) -> None:
    app = make_app(max_form_bytes=4096)
    client = flask_sign_in(app, new_local_user(app, "admin"))
    content = "username,password,role\n" + "".join(f"user{i},{PASSWORD},user\n" for i in range(200))
    response = _upload(client, content.encode())
    assert response.status_code == 413
    assert "larger than 4096 bytes" in alert(response)
    assert "user1" not in people(app)


def test_csv_export_has_no_passwords(admin_app: Flask, root: str, dash: FlaskClient) -> None:
    new = post(dash, "/dashboard/users", {"username": "kim", "role": "viewer"})
    generated = html.unescape(PASSWORD_FIELD.search(text(new)).group(1))  # type: ignore[union-attr]
    response = dash.get("/dashboard/users/export.csv")
    assert response.status_code == 200
    assert response.mimetype == "text/csv"
    assert response.headers["Content-Disposition"] == 'attachment; filename="users.csv"'
    assert response.headers["Cache-Control"] == "no-store"
    body = text(response)
    assert PASSWORD not in body
    assert generated not in body
    assert "argon2" not in body
    rows = list(csv.reader(io.StringIO(body)))
    assert rows[0] == ["username", "password", "role", "email"]
    assert sorted(rows[1:]) == sorted([[root, "", "admin", ""], ["kim", "", "viewer", ""]])
    # What was exported imports again elsewhere once passwords are filled in.
    assert 'href="/dashboard/users/export.csv"' in text(dash.get("/dashboard/users"))


# -- service accounts -----------------------------------------------------------------------


def test_service_account_token_shown_once_rotated_and_revoked(
    admin_app: Flask, root: str, dash: FlaskClient
) -> None:
    response = post(
        dash,
        "/dashboard/service-accounts",
        {"name": "deploy", "role": "user", "expires_in": "7 days"},
    )
    assert response.status_code == 201
    body = text(response)
    token = html.unescape(TOKEN_FIELD.search(body).group(1))  # type: ignore[union-attr]
    assert token.startswith("as_sa_")
    assert "shown only this once" in body
    assert 'id="copy-secret"' in body
    # The copy button's script runs by this response's nonce; no other script may.
    nonce = re.search(r"script-src 'nonce-([^']+)'", response.headers["Content-Security-Policy"])
    assert nonce
    assert f'<script nonce="{nonce.group(1)}">' in body
    assert body.count("<script") == 1
    assert response.headers["Cache-Control"] == "no-store"

    listing = text(dash.get("/dashboard/service-accounts"))
    client_id = token.removeprefix("as_sa_").split(".", 1)[0]
    assert 'data-name="deploy"' in listing
    assert client_id in listing
    assert token not in listing
    assert token.split(".", 1)[1] not in listing
    with admin_app.app_context():
        info = Services.of(admin_app).service_accounts.get("deploy")
    assert (info.role, info.created_by) == ("user", root)
    assert info.expires_at is not None
    assert 6.9 * 86400 < (info.expires_at - info.created_at).total_seconds() <= 7 * 86400

    oauth = admin_app.test_client()
    for basic in (True, False):
        issued = client_credentials(oauth, token, basic=basic)
        assert issued.status_code == 200, issued.get_json()
        assert issued.get_json()["access_token"]

    # Rotate: the confirmation page, then a new token; the old one is dead.
    confirm = dash.get("/dashboard/service-accounts/rotate", query_string={"name": "deploy"})
    assert confirm.status_code == 200
    assert "Rotate token of deploy" in text(confirm)
    assert client_credentials(oauth, token, basic=True).status_code == 200
    rotated = post(dash, "/dashboard/service-accounts/rotate", {"name": "deploy"})
    assert rotated.status_code == 200
    new_token = html.unescape(TOKEN_FIELD.search(text(rotated)).group(1))  # type: ignore[union-attr]
    assert new_token != token
    assert new_token.startswith(f"as_sa_{client_id}.")
    for basic in (True, False):
        refused = client_credentials(oauth, token, basic=basic)
        # RFC 6749 §5.2: 401 when the client used the Authorization header.
        assert refused.status_code == (401 if basic else 400), refused.get_json()
        assert refused.get_json()["error"] == "invalid_client"
        assert client_credentials(oauth, new_token, basic=basic).status_code == 200

    # Revoke: the confirmation page changes nothing; the POST kills the token.
    confirm = dash.get("/dashboard/service-accounts/revoke", query_string={"name": "deploy"})
    assert "Revoke deploy" in text(confirm)
    assert service_account_names(admin_app) == {"deploy"}
    revoked = post(dash, "/dashboard/service-accounts/revoke", {"name": "deploy"})
    assert revoked.status_code == 303
    assert "revoked" in notice(dash.get("/dashboard/service-accounts"))
    assert service_account_names(admin_app) == set()
    refused = client_credentials(oauth, new_token, basic=True)
    assert refused.status_code == 401
    assert refused.get_json()["error"] == "invalid_client"

    events = [
        (e.event, e.target, e.actor, e.client_id)
        for e in reversed(audit_events(admin_app))
        if e.event.startswith("service_account")
    ]
    assert events == [
        ("service_account_created", "deploy", root, client_id),
        ("service_account_rotated", "deploy", root, client_id),
        ("service_account_revoked", "deploy", root, client_id),
    ]
    for event in audit_events(admin_app):
        assert token not in repr(event)
        assert new_token not in repr(event)


def test_service_account_expiry_choices(admin_app: Flask, dash: FlaskClient) -> None:
    choices = [("1 day", 86400), ("30 days", 30 * 86400), ("365 days", 365 * 86400)]
    for index, (expires_in, seconds) in enumerate([*choices, ("never", None)]):
        response = post(
            dash,
            "/dashboard/service-accounts",
            {"name": f"job{index}", "role": "viewer", "scopes": "read", "expires_in": expires_in},
        )
        assert response.status_code == 201
        with admin_app.app_context():
            info = Services.of(admin_app).service_accounts.get(f"job{index}")
        assert info.scopes == ("read",)
        if seconds is None:
            assert info.expires_at is None
        else:
            assert info.expires_at is not None
            lifetime = (info.expires_at - info.created_at).total_seconds()
            assert lifetime == pytest.approx(seconds, abs=5)
    row = text(dash.get("/dashboard/service-accounts")).split('data-name="job3"', 1)[1]
    assert "<td>never</td>" in row.split("</tr>", 1)[0]


def test_new_service_account_form_defaults_to_30_days(dash: FlaskClient) -> None:
    page = text(dash.get("/dashboard/service-accounts"))
    assert re.search(r'<option selected value="30 days">30 days</option>', page), page
    for label in ("1 day", "7 days", "90 days", "365 days", "never"):
        assert f'<option value="{label}">{label}</option>' in page


#: (form, status, the message) of new service accounts that must be refused.
BAD_SERVICE_ACCOUNTS = [
    ({"name": "", "role": "user"}, 400, "a service account name is 1 to 64"),
    ({"name": "bad name!", "role": "user"}, 400, "a service account name"),
    ({"name": "job", "role": "wizard"}, 400, "unknown role 'wizard'"),
    ({"name": "job", "role": "viewer", "scopes": "write"}, 400, "does not permit scope"),
    ({"name": "job", "role": "user", "expires_in": "5y"}, 400, "Expires in: Not a valid"),
    ({"name": "taken", "role": "user"}, 409, "service account 'taken' already exists"),
]


def test_bad_service_account_is_a_clear_message_that_changes_nothing(
    admin_app: Flask, dash: FlaskClient
) -> None:
    with admin_app.app_context():
        Services.of(admin_app).service_accounts.create("taken")
    for data, status, error in BAD_SERVICE_ACCOUNTS:
        response = post(dash, "/dashboard/service-accounts", {"expires_in": "30 days", **data})
        assert response.status_code == status, data
        assert error in alert(response), data
        assert "as_sa_" not in text(response)
    assert service_account_names(admin_app) == {"taken"}
    assert audit_events(admin_app, "service_account_created") == []


def test_unknown_service_account_is_404(admin_app: Flask, dash: FlaskClient) -> None:
    for path in ("/dashboard/service-accounts/rotate", "/dashboard/service-accounts/revoke"):
        assert dash.get(path, query_string={"name": "ghost"}).status_code == 404
        response = post(dash, path, {"name": "ghost"})
        assert response.status_code == 404
        assert alert(response) == "no service account 'ghost'"
    assert [e.event for e in audit_events(admin_app) if e.event != "login"] == []


# -- clients, keys, audit log ---------------------------------------------------------------


def test_clients_page_lists_static_clients_without_secrets(dash: FlaskClient) -> None:
    body = text(dash.get("/dashboard/clients"))
    for client_id in ("ci", "ci-b64", "ci-argon", "reader", "rs", "cli", "webapp"):
        assert f'data-client-id="{client_id}"' in body
    assert "$2b$" not in body
    assert "argon2" not in body
    assert "https://app.example.com/cb" in body
    assert '<form method="post"' not in body.split("</header>", 1)[1]  # read-only


def _keys(app: Flask) -> list[dict[str, Any]]:
    with app.test_request_context():
        return admin.keys_json()


def test_keys_rotate_now_and_publish_first(admin_app: Flask, root: str, dash: FlaskClient) -> None:
    assert dash.get("/dashboard/keys").status_code == 200
    response = post(dash, "/dashboard/keys/rotate", {"rotate_publish": "1"})
    assert response.status_code == 303
    [published] = [k for k in _keys(admin_app) if k["state"] == "next"]
    page = dash.get("/dashboard/keys")
    assert published["kid"] in notice(page)
    assert f'data-kid="{published["kid"]}"' in text(page)

    response = post(dash, "/dashboard/keys/rotate", {"rotate_now": "1"})
    assert response.status_code == 303
    [active] = [k for k in _keys(admin_app) if k["state"] == "active"]
    assert active["kid"] in notice(dash.get("/dashboard/keys"))
    assert active["kid"] != published["kid"]

    response = post(dash, "/dashboard/keys/rotate", {})
    assert response.status_code == 400
    assert "Rotate now" in alert(response)
    events = audit_events(admin_app, "keys_rotated")
    assert [(e.actor, e.details["immediate"]) for e in reversed(events)] == [
        (root, False),
        (root, True),
    ]


def test_keys_page_with_id_token_keys_of_their_own(make_app: AppFactory) -> None:
    """With ES256 access tokens, ID tokens get an RS256 line; a rotation turns both."""
    app = make_app(signing={"algorithm": "ES256"})
    client = flask_sign_in(app, new_local_user(app, "admin"))
    response = post(client, "/dashboard/keys/rotate", {"rotate_now": "1"})
    assert response.status_code == 303
    page = text(client.get("/dashboard/keys"))
    active = {k["use"]: k for k in _keys(app) if k["state"] == "active"}
    assert (active["access_token"]["algorithm"], active["id_token"]["algorithm"]) == (
        "ES256",
        "RS256",
    )
    for key in active.values():
        assert f'data-kid="{key["kid"]}"' in page
    assert "ID tokens with keys of their own" in re.sub(r"\s+", " ", page)


def test_audit_log_is_paged_and_filtered(admin_app: Flask, root: str, dash: FlaskClient) -> None:
    for index in range(5):
        post(
            dash,
            "/dashboard/users",
            {"username": f"p{index}", "role": "user", "password": PASSWORD},
        )
    post(dash, "/dashboard/users/role", {"username": "p0", "role": "viewer"})

    first = dash.get("/dashboard/audit", query_string={"limit": "2"})
    assert first.status_code == 200
    body = text(first)
    ids = [int(i) for i in re.findall(r'<tr data-id="(\d+)"', body)]
    assert len(ids) == 2
    assert ids == sorted(ids, reverse=True)
    assert re.findall(r'data-event="([^"]+)"', body)[0] == "user_updated"
    older = html.unescape(re.search(r'href="([^"]+)" id="older"', body).group(1))  # type: ignore[union-attr]
    assert parse_qs(urlsplit(older).query) == {"before": [str(ids[-1])], "limit": ["2"]}

    seen = list(ids)
    page_url: str | None = older
    while page_url:
        body = text(dash.get(page_url))
        ids = [int(i) for i in re.findall(r'<tr data-id="(\d+)"', body)]
        assert all(i < seen[-1] for i in ids)
        seen += ids
        match = re.search(r'href="([^"]+)" id="older"', body)
        page_url = html.unescape(match.group(1)) if match else None
    assert len(seen) == len(audit_events(admin_app))
    assert 'id="newest"' in body

    created = text(dash.get("/dashboard/audit", query_string={"event": "user_created"}))
    rows = re.findall(r'data-event="([^"]+)"', created)
    assert rows == ["user_created"] * 5
    actors = re.findall(r'<td class="actor">([^<]*)</td>', created)
    assert actors == [root] * 5
    targets = re.findall(r'<td class="wrap">(p\d)</td>', created)
    assert targets == ["p4", "p3", "p2", "p1", "p0"]
    assert '<option value="user_created" selected>' in created

    for query in ({"before": "x"}, {"limit": "0"}, {"limit": "1000"}, {"event": "e" * 65}):
        response = dash.get("/dashboard/audit", query_string=query)
        assert response.status_code == 400, query
        assert alert(response)


def test_unknown_dashboard_page_is_404(dash: FlaskClient) -> None:
    response = dash.get("/dashboard/nowhere")
    assert response.status_code == 404
    assert "no such dashboard page" in text(response)
    assert dash.get("/dashboard").headers["Location"] == "/dashboard/users"


def test_a_nul_anywhere_is_a_clear_400(admin_app: Flask, dash: FlaskClient) -> None:
    """PostgreSQL cannot compare a NUL: refused before any lookup, never a 500."""
    before = people(admin_app)
    for response in (
        dash.get("/dashboard/audit?event=%00"),
        dash.get("/dashboard/users/delete?username=a%00b"),
        post(dash, "/dashboard/users/role", {"username": "a\x00b", "role": "admin"}),
        post(dash, "/dashboard/users/delete", {"username": "a\x00b"}),
    ):
        assert response.status_code == 400, text(response)
        assert "NUL" in alert(response)
    assert people(admin_app).keys() == before.keys()
