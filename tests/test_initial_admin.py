"""The first admin: a one-time password made by ``serve`` on an empty database, or
``initial_admin`` from config; never a fixed default password. The one-time password
goes to the terminal when stderr is one, and otherwise (as here, and in a container)
to a 0600 file beside the secret key, never into the log."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import requests
import sqlalchemy as sa
from playwright.sync_api import Browser, expect

from .support.factories import standard_config
from .support.flows import login
from .support.servers import LiveServer, free_port, start_server, stop_server

pytestmark = pytest.mark.live


def one_time_password(server: LiveServer, directory: Path) -> str:
    """The password from its file, which the log names; the log never holds it."""
    path = directory / "initial_admin_password"
    assert f"written to {path.resolve()}" in server.log(), server.log()
    assert path.stat().st_mode & 0o777 == 0o600
    password = path.read_text().strip()
    assert len(password) >= 16
    assert password not in server.log()
    return password


def test_serve_makes_a_one_time_admin_password_once(tmp_path: Path) -> None:
    port = free_port()
    config = standard_config(
        f"http://127.0.0.1:{port}", f"sqlite:///{tmp_path / 'a.db'}", tmp_path / "secret_key"
    )
    server = start_server(tmp_path, config, port)
    try:
        password = one_time_password(server, tmp_path)
        session = requests.Session()
        response = login(session, server.url, "admin", password)
        assert response.status_code == 302
        listed = server.cli("users", "list")
        assert "admin" in listed.stdout
    finally:
        stop_server(server)
    # a second start does not make another admin nor a password
    (tmp_path / "initial_admin_password").unlink()
    server = start_server(tmp_path / "again", {**config}, port)
    try:
        assert "one-time password" not in server.log()
        assert not (tmp_path / "initial_admin_password").exists()
    finally:
        stop_server(server)


def test_initial_admin_from_config_prints_nothing(tmp_path: Path) -> None:
    port = free_port()
    config = standard_config(
        f"http://127.0.0.1:{port}", f"sqlite:///{tmp_path / 'a.db'}", tmp_path / "secret_key"
    )
    (tmp_path / "admin_password").write_text("a configured admin password\n")
    config["initial_admin"] = {
        "username": "root",
        "password_file": str(tmp_path / "admin_password"),
    }
    server = start_server(tmp_path, config, port)
    try:
        assert "one-time password" not in server.log()
        session = requests.Session()
        assert login(session, server.url, "root", "a configured admin password").status_code == 302
        assert login(requests.Session(), server.url, "admin", "admin").status_code == 401
    finally:
        stop_server(server)


def test_the_one_time_password_must_be_replaced_at_first_sign_in(
    tmp_path: Path, browser: Browser
) -> None:
    """Issue 16.11, in a real browser: the printed password signs nobody in; it leads to
    a page that sets the admin's own password, after which it is worthless."""
    port = free_port()
    database = tmp_path / "a.db"
    config = standard_config(
        f"http://127.0.0.1:{port}", f"sqlite:///{database}", tmp_path / "secret_key"
    )
    server = start_server(tmp_path, config, port)
    try:
        one_time = one_time_password(server, tmp_path)
        context = browser.new_context()
        context.set_default_timeout(15_000)
        page = context.new_page()
        page.goto(server.url + "/login?next=/")
        page.fill("#username", "admin")
        page.fill("#password", one_time)
        page.click("#sign-in")
        expect(page.locator("h1")).to_have_text("Choose a new password")
        # Not signed in yet: the home page sends the browser back to the login page.
        home = requests.get(
            server.url + "/",
            cookies={c["name"]: c["value"] for c in context.cookies()},
            allow_redirects=False,
            timeout=10,
        )
        assert home.status_code == 302
        assert home.headers["Location"].endswith("/login")
        for new, again, error in [
            ("a new admin password", "another admin password", "The two passwords differ."),
            (one_time, one_time, "other than the one-time password"),
            ("short", "short", "at least 12 characters"),
        ]:
            page.fill("#password", new)
            page.fill("#confirm", again)
            page.click("#set-password")
            expect(page.locator(".error")).to_contain_text(error)
        page.fill("#password", "the admin's own password")
        page.fill("#confirm", "the admin's own password")
        page.click("#set-password")
        expect(page.locator("main")).to_contain_text("You are signed in as admin")
        context.close()

        assert login(requests.Session(), server.url, "admin", one_time).status_code == 401
        session = requests.Session()
        signed_in = login(session, server.url, "admin", "the admin's own password")
        assert signed_in.status_code == 302
        assert signed_in.headers["Location"] == "/"  # straight in, no second change
    finally:
        stop_server(server)
    engine = sa.create_engine(f"sqlite:///{database}")
    with engine.connect() as conn:
        events = [
            row.event
            for row in conn.execute(sa.text("SELECT event FROM audit_events ORDER BY id"))
            if row.event in ("login", "password_changed", "login_failed")
        ]
        must_change = conn.execute(
            sa.text("SELECT password_must_change FROM users WHERE username = 'admin'")
        ).scalar_one()
    engine.dispose()
    assert events == ["password_changed", "login", "login_failed", "login"]
    assert not must_change


def test_on_a_terminal_the_password_is_shown_there(tmp_path: Path) -> None:
    """stderr a terminal (a person at ``authserver serve``): shown there, no file."""
    import os
    import pty
    import select
    import subprocess
    import time

    import yaml

    from .support.servers import authserver_command

    port = free_port()
    config = standard_config(
        f"http://127.0.0.1:{port}", f"sqlite:///{tmp_path / 'a.db'}", tmp_path / "secret_key"
    )
    (tmp_path / "authserver.yaml").write_text(yaml.safe_dump(config))
    master, slave = pty.openpty()
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUTHSERVER_")}
    process = subprocess.Popen(
        [
            *authserver_command(),
            "--config",
            str(tmp_path / "authserver.yaml"),
            "serve",
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            "1",
        ],
        cwd=tmp_path,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=slave,
        env=env,
        start_new_session=True,
    )
    os.close(slave)
    seen = b""
    try:
        deadline = time.monotonic() + 60
        while b"one-time password" not in seen and time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 1)
            if ready:
                seen += os.read(master, 4096)
        match = re.search(rb"created admin `admin` with the one-time password (\S+)", seen)
        assert match, seen.decode(errors="replace")
        assert not (tmp_path / "initial_admin_password").exists()
    finally:
        import signal

        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=20)
        os.close(master)
