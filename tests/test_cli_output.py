"""What the list commands write: a reader that goes away early, and ``--output json``
(issue 13.5), through the entry point."""

from __future__ import annotations

import secrets
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import sqlalchemy as sa

from authserver.storage.models import User

from .conftest import authserver_command, command_env, run_cli
from .test_cli import write_config


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
