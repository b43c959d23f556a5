"""What the list commands write: a reader that goes away early, and ``--output json``
(issue 13.5), through the entry point."""

from __future__ import annotations

import json
import secrets
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
import yaml

from authserver.storage.models import User

from .support.factories import empty_pg
from .support.servers import authserver_command, command_env, run_cli
from .test_cli import write_config

pytestmark = pytest.mark.live


def add_users(database_url: str, count: int) -> None:
    """``count`` proxy users straight into the database (no password hashing: fast)."""
    engine = sa.create_engine(database_url)
    now = datetime.now(UTC)
    with engine.begin() as conn:
        conn.execute(
            sa.insert(User.__table__),
            [
                {
                    "id": secrets.token_hex(16),
                    "username": f"person-{n:05d}@example.com",
                    "role": "viewer",
                    "groups": [],
                    "source": "proxy",
                    "created_at": now,
                }
                for n in range(count)
            ],
        )
    engine.dispose()


def test_a_listing_piped_into_head_stops_quietly(tmp_path: Path) -> None:
    config = str(write_config(tmp_path))
    assert run_cli("--config", config, "db", "upgrade", cwd=tmp_path).returncode == 0
    # Far more than a pipe holds (64 KiB), so the writer meets the closed pipe.
    add_users(f"sqlite:///{tmp_path / 'db.sqlite'}", 3000)
    process = subprocess.Popen(
        [*authserver_command(), "--config", config, "users", "list"],
        cwd=tmp_path,
        env=command_env(tmp_path, None),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert process.stdout is not None
    assert process.stderr is not None
    assert process.stdout.readline().split()[0] == b"USERNAME"  # as `head -1` would
    process.stdout.close()
    stderr = process.stderr.read().decode()
    process.stderr.close()
    assert process.wait(timeout=120) == 141, stderr  # as a shell reports SIGPIPE
    assert stderr == ""  # no BrokenPipeError, no "Exception ignored"


@pytest.fixture(params=["sqlite", "postgresql"])
def config(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    """A migrated database on each backend, and its config file."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    else:
        url = request.getfixturevalue("pg_database_url")
        empty_pg(url)
    path = write_config(tmp_path, database_url=url)
    upgraded = run_cli("--config", str(path), "db", "upgrade", cwd=tmp_path)
    assert upgraded.returncode == 0, upgraded.stderr
    return path


def json_list(config: Path, *command: str) -> tuple[list[dict[str, Any]], str]:
    """The parsed standard output of ``command --output json``, and its stderr."""
    result = run_cli("--config", str(config), *command, "--output", "json", cwd=config.parent)
    assert result.returncode == 0, result.stderr
    items = json.loads(result.stdout)  # nothing but the JSON on stdout
    assert isinstance(items, list)
    return items, result.stderr


def is_iso_time(value: object) -> bool:
    return isinstance(value, str) and datetime.fromisoformat(value).tzinfo is not None


def test_empty_lists_are_empty_json_with_the_notice_on_stderr(config: Path) -> None:
    assert json_list(config, "users", "list") == ([], "no users yet\n")
    assert json_list(config, "service-accounts", "list") == ([], "no service accounts yet\n")
    items, stderr = json_list(config, "keys", "list")
    assert items == []
    assert "no signing keys yet" in stderr


def test_list_commands_write_json_objects_with_stable_keys(config: Path) -> None:
    def cli(*args: str) -> None:
        result = run_cli("--config", str(config), *args, cwd=config.parent)
        assert result.returncode == 0, result.stderr

    cli("users", "create", "alice", "--role", "admin", "--email", "alice@example.com")
    cli("service-accounts", "create", "ci-bot", "--expires-in", "never")
    cli("keys", "rotate")

    users, _ = json_list(config, "users", "list")
    assert [u["username"] for u in users] == ["alice"]
    assert set(users[0]) == {
        "id", "username", "email", "email_verified", "name", "role", "groups", "source",
        "disabled", "created_at", "last_login_at",
    }  # fmt: skip
    assert users[0]["role"] == "admin"
    assert users[0]["email"] == "alice@example.com"
    assert users[0]["disabled"] is False
    assert is_iso_time(users[0]["created_at"])
    assert users[0]["last_login_at"] is None

    accounts, _ = json_list(config, "service-accounts", "list")
    assert [a["name"] for a in accounts] == ["ci-bot"]
    assert set(accounts[0]) == {
        "client_id", "name", "role", "scopes", "created_at", "created_by", "expires_at",
        "rotated_at", "last_used_at",
    }  # fmt: skip
    assert is_iso_time(accounts[0]["created_at"])
    assert accounts[0]["expires_at"] is None

    keys, _ = json_list(config, "keys", "list")
    assert {k["state"] for k in keys} >= {"active", "next"}
    for key in keys:
        assert set(key) == {
            "kid", "algorithm", "use", "state", "created_at", "signs_from", "published_until",
        }  # fmt: skip
        assert is_iso_time(key["signs_from"])

    clients, stderr = json_list(config, "clients", "list")
    assert stderr == ""
    configured = yaml.safe_load(config.read_text())["clients"]
    assert [c["client_id"] for c in clients] == [c["client_id"] for c in configured]
    by_id = {c["client_id"]: c for c in clients}
    assert by_id["ci"]["type"] == "confidential"
    assert by_id["cli"]["type"] == "public"
    assert "client_secret_hash" not in by_id["ci"]


def test_output_table_is_the_default_and_other_formats_are_usage_errors(config: Path) -> None:
    table = run_cli("--config", str(config), "clients", "list", cwd=config.parent)
    explicit = run_cli(
        "--config", str(config), "clients", "list", "--output", "table", cwd=config.parent
    )
    assert table.stdout == explicit.stdout
    assert table.stdout.startswith("CLIENT_ID")
    wrong = run_cli("--config", str(config), "users", "list", "--output", "yaml", cwd=config.parent)
    assert wrong.returncode == 2
    assert "invalid choice: 'yaml'" in wrong.stderr
