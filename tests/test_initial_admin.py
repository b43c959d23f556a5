"""The first admin: a one-time password printed by ``serve`` on an empty database, or
``initial_admin`` from config; never a fixed default password."""

from __future__ import annotations

import re
from pathlib import Path

import requests

from .conftest import free_port, standard_config, start_server, stop_server
from .people import login


def test_serve_prints_a_one_time_admin_password_once(tmp_path: Path) -> None:
    port = free_port()
    config = standard_config(
        f"http://127.0.0.1:{port}", f"sqlite:///{tmp_path / 'a.db'}", tmp_path / "secret_key"
    )
    server = start_server(tmp_path, config, port)
    try:
        match = re.search(r"created admin `admin` with the one-time password (\S+)", server.log())
        assert match, server.log()
        password = match.group(1)
        session = requests.Session()
        response = login(session, server.url, "admin", password)
        assert response.status_code == 302
        listed = server.cli("users", "list")
        assert "admin" in listed.stdout
    finally:
        stop_server(server)
    # a second start does not make another admin nor print a password
    server = start_server(tmp_path / "again", {**config}, port)
    try:
        assert "one-time password" not in server.log()
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
