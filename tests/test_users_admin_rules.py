"""The last enabled admin (issue 13.4): nobody demotes, disables or deletes them, from
the admin layer itself, the admin API (over HTTP, 409 ``conflict``) or the dashboard
(its form); a CSV import cannot change them either. Each refusal changes no row and
records no event.

The CLI's side is in ``test_cli_users_more.py`` (through the entry point).
"""

from __future__ import annotations

import io
import threading
from typing import Any

import pytest
import requests
from flask import Flask

from authserver.admin.audit import Actor
from authserver.admin.users import LastAdmin, UserAdmin, check_not_last_admin
from authserver.identity.users import UserError, UserService
from authserver.settings import RbacSettings
from authserver.storage.users import LastOfRole, SqlUserRepository
from authserver.web.services import Services

from .conftest import AppFactory
from .support.factories import PASSWORD, SECRETS, new_local_user
from .support.flows import flask_sign_in
from .support.servers import InProcessServer
from .test_dashboard import alert, audit_events, people, post
from .test_users import engine_of


class Recorder:
    def __init__(self) -> None:
        self.events: list[tuple[str, dict[str, Any]]] = []

    def __call__(self, event: str, **details: Any) -> None:
        self.events.append((event, details))


def rows(users: UserService) -> dict[str, tuple[str, bool]]:
    return {p.username: (p.role, p.disabled) for p in users.list()}


def layer(app: Flask) -> tuple[UserService, UserAdmin, Recorder]:
    users = UserService(SqlUserRepository(engine_of(app)), RbacSettings())
    events = Recorder()
    return (
        users,
        UserAdmin(users, RbacSettings(), events, Actor(name="cli:ops", address="local")),
        events,
    )


def test_the_admin_layer_keeps_the_last_enabled_admin(make_app: AppFactory) -> None:
    users, admin, events = layer(make_app())
    users.create_local("alice", PASSWORD, "admin")
    users.create_local("bob", PASSWORD, "user")
    users.create_local("carol", PASSWORD, "admin")
    users.set_disabled("carol", True)  # a disabled admin does not count
    before = rows(users)
    refusals = [
        (lambda: admin.update("alice", role="user", disabled=None), "take the admin role from"),
        (lambda: admin.update("ALICE", role="user", disabled=True), "take the admin role from"),
        (lambda: admin.update("alice", role=None, disabled=True), "disable"),
        (lambda: admin.set_role("alice", "user"), "take the admin role from"),
        (lambda: admin.delete("alice"), "delete"),
    ]
    for change, what in refusals:
        with pytest.raises(LastAdmin) as refused:
            change()
        assert str(refused.value) == (
            f"refusing to {what} 'alice': they are the last enabled admin; make another admin first"
        )
        assert isinstance(refused.value, UserError)  # every front end's one-line error
    assert rows(users) == before
    assert events.events == []
    # What leaves an admin is fine: keeping the role, changing others, the disabled one.
    admin.update("alice", role="admin", disabled=False)
    admin.set_role("alice", "admin")
    admin.update("bob", role="user", disabled=True)
    admin.update("carol", role="user", disabled=None)
    admin.delete("carol")
    assert rows(users) == {"alice": ("admin", False), "bob": ("user", True)}
    # With a second enabled admin, the first may go.
    admin.update("bob", role="admin", disabled=False)
    admin.update("alice", role=None, disabled=True)
    with pytest.raises(LastAdmin, match="'bob'"):
        admin.delete("bob")
    admin.update("alice", role=None, disabled=False)
    admin.delete("bob")
    assert rows(users) == {"alice": ("admin", False)}
    # An unknown name is still "no user", not a last-admin refusal.
    with pytest.raises(UserError, match="no user 'ghost'"):
        admin.set_role("ghost", "user")
    with pytest.raises(UserError, match="no user 'ghost'"):
        admin.delete("ghost")


@pytest.mark.parametrize("change", ["demote", "disable", "delete"])
def test_two_admins_removing_each_other_at_once_leave_one(
    make_app: AppFactory, change: str
) -> None:
    """Each admin takes the other's role (or disables, or deletes them) at the same
    moment: both rules see another admin, but the write itself decides again, in its
    own transaction (PostgreSQL locks the admins' rows; SQLite has one writer), so one
    change is refused and one admin is left, round after round."""
    users, _, _ = layer(make_app())
    users.create_local("alice", PASSWORD, "admin")
    for round_ in range(8):
        other = f"bob{round_}"
        users.create_local(other, PASSWORD, "admin")
        names = (users.list()[0].username, other)  # the admin left last round, and a new one
        barrier = threading.Barrier(2)
        outcomes: dict[str, str] = {}

        def remove(
            target: str,
            barrier: threading.Barrier = barrier,
            outcomes: dict[str, str] = outcomes,
        ) -> None:
            admin = UserAdmin(users, RbacSettings(), Recorder(), Actor(name="x", address="local"))
            barrier.wait()
            try:
                if change == "demote":
                    admin.update(target, role="user", disabled=None)
                elif change == "disable":
                    admin.update(target, role=None, disabled=True)
                else:
                    admin.delete(target)
            except LastAdmin:
                outcomes[target] = "refused"
            else:
                outcomes[target] = "done"

        threads = [threading.Thread(target=remove, args=(name,)) for name in names]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        assert sorted(outcomes.values()) == ["done", "refused"], outcomes
        admins = [p for p in users.list() if p.role == "admin" and not p.disabled]
        assert [p.username for p in admins] == [n for n in names if outcomes[n] == "refused"]
        for person in users.list():  # the next round starts from one admin
            if person.username not in {a.username for a in admins}:
                users.delete(person.username)


def test_the_store_refuses_the_last_of_a_role_and_changes_nothing(make_app: AppFactory) -> None:
    repo = SqlUserRepository(engine_of(make_app()))
    users = UserService(repo, RbacSettings())
    alice = users.create_local("alice", PASSWORD, "admin")[0]
    users.create_local("bob", PASSWORD, "user")
    with pytest.raises(LastOfRole):
        repo.update_keeping_one(alice.id, "admin", role="user")
    with pytest.raises(LastOfRole):
        repo.delete(alice.id, keep_one="admin")
    assert rows(users) == {"alice": ("admin", False), "bob": ("user", False)}
    # The row decides, as it is at the write, not as a caller read it: a person who is
    # not an enabled admin (now) may be changed or deleted with the guard on.
    bob = users.by_username("bob")
    assert bob is not None
    assert repo.update_keeping_one(bob.id, "admin", disabled=True)
    assert repo.delete(bob.id, keep_one="admin")
    # Nobody to keep: the change is made; an unknown id is False, as before.
    assert repo.update_keeping_one(alice.id, None, role="user")
    assert not repo.update_keeping_one("0" * 32, "admin", role="user")


def test_a_rule_that_names_nobody_when_there_is_no_admin(make_app: AppFactory) -> None:
    """A server with no admin at all (the CLI needs none) refuses nothing: there is no
    last admin to keep."""
    users, admin, _ = layer(make_app())
    users.create_local("dan", PASSWORD, "user")
    person = admin.get("dan")
    check_not_last_admin(users, person, "delete")
    admin.delete("dan")
    assert rows(users) == {}


def test_a_csv_import_never_changes_an_existing_admin(make_app: AppFactory) -> None:
    """The import only creates: a row naming the last admin (with another role) is a
    bad row, and nothing at all is imported."""
    users, admin, events = layer(make_app())
    users.create_local("alice", PASSWORD, "admin")
    before = rows(users)
    text = (
        "username,password,role\n"
        "new-one,a long enough password,user\n"
        "alice,a long enough password,user\n"
    )
    with pytest.raises(UserError, match="line 3: user 'alice' already exists; no user was"):
        admin.import_csv(io.StringIO(text, newline=""))
    assert rows(users) == before
    assert events.events == []


# -- the admin API, over HTTP ------------------------------------------------------------


def api_token(server: InProcessServer) -> str:
    """A token of the static client ``ci-b64`` (role admin, not a person) for the API."""
    response = requests.post(
        server.url + "/oauth2/token",
        data={"grant_type": "client_credentials", "audience": server.url + "/api/v1"},
        auth=("ci-b64", SECRETS["ci-b64"]),
        timeout=30,
    )
    assert response.status_code == 200, response.text
    token: str = response.json()["access_token"]
    return token


def only_admin(server: InProcessServer) -> str:
    """A new local admin, made the only enabled one (other admins of this module's
    server demoted through the person service)."""
    name = new_local_user(server.app, "admin")
    with server.app.app_context():
        users = Services.of(server.app).users
        for person in users.list():
            if person.role == "admin" and person.username != name:
                users.set_role(person.username, "user")
    return name


def test_the_admin_api_answers_409_for_the_last_admin(app_server: InProcessServer) -> None:
    alice = only_admin(app_server)
    headers = {"Authorization": f"Bearer {api_token(app_server)}"}
    url = f"{app_server.url}/api/v1/users/{alice}"
    before = requests.get(url, headers=headers, timeout=10).json()
    for method, body, what in (
        ("PATCH", {"role": "user"}, "take the admin role from"),
        ("PATCH", {"disabled": True}, "disable"),
        ("PATCH", {"role": "viewer", "email": "new@example.com"}, "take the admin role from"),
        ("DELETE", None, "delete"),
    ):
        response = requests.request(method, url, json=body, headers=headers, timeout=10)
        assert response.status_code == 409, response.text
        assert response.json() == {
            "error": "conflict",
            "error_description": f"refusing to {what} {alice!r}: they are the last enabled "
            "admin; make another admin first",
        }
        assert requests.get(url, headers=headers, timeout=10).json() == before
    # The document says so.
    document = requests.get(f"{app_server.url}/api/v1/openapi.json", timeout=10).json()
    operations = document["paths"]["/users/{username}"]
    for method in ("patch", "delete"):
        assert "409" in operations[method]["responses"]
        assert "last enabled admin" in operations[method]["description"]
    # Another admin, and the first may be demoted.
    bob = new_local_user(app_server.app, "admin")
    changed = requests.patch(url, json={"role": "user"}, headers=headers, timeout=10)
    assert changed.status_code == 200, changed.text
    assert changed.json()["role"] == "user"
    gone = requests.delete(f"{app_server.url}/api/v1/users/{bob}", headers=headers, timeout=10)
    assert gone.status_code == 409, gone.text


# -- the dashboard, through its forms ----------------------------------------------------


def test_the_dashboard_refuses_to_leave_no_admin(make_app: AppFactory) -> None:
    app = make_app()
    root = new_local_user(app, "admin")
    new_local_user(app, "user")
    dash = flask_sign_in(app, root)
    before = {name: (p.role, p.disabled) for name, p in people(app).items()}
    message = (
        f"refusing to {{}} {root!r}: they are the last enabled admin; make another admin first"
    )
    for path, data, what in (
        ("/dashboard/users/role", {"username": root, "role": "user"}, "take the admin role from"),
        ("/dashboard/users/disabled", {"username": root, "disabled": "true"}, "disable"),
        ("/dashboard/users/delete", {"username": root}, "delete"),
    ):
        response = post(dash, path, data)
        assert response.status_code == 409, (path, response.get_data(as_text=True)[:2000])
        assert alert(response) == message.format(what)
        assert {name: (p.role, p.disabled) for name, p in people(app).items()} == before
    assert [e.event for e in audit_events(app) if e.event != "login"] == []
    # The dashboard still works for its admin.
    assert dash.get("/dashboard/users").status_code == 200
