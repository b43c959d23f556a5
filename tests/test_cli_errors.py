"""Errors that used to leak internals are one line that says the fix (issue 13.6),
through the entry point."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from .support.servers import run_cli
from .test_cli import assert_clean_failure, write_config

pytestmark = pytest.mark.live


def test_postgresql_without_its_extra_names_the_extra(tmp_path: Path) -> None:
    # A Python where the driver cannot be imported, as without `authserver[postgres]`.
    shim = tmp_path / "shim"
    shim.mkdir()
    (shim / "sitecustomize.py").write_text('import sys\nsys.modules["psycopg"] = None\n')
    path = os.pathsep.join(filter(None, [str(shim), os.environ.get("PYTHONPATH")]))
    config = str(write_config(tmp_path, database_url="postgresql://nobody@127.0.0.1:1/none"))
    for command in (["users", "list"], ["db", "upgrade"]):
        result = run_cli("--config", config, *command, cwd=tmp_path, env={"PYTHONPATH": path})
        assert_clean_failure(result, 2, "pip install 'authserver[postgres]'")
        assert result.stderr.count("\n") == 1, result.stderr


@pytest.fixture
def empty_pg_database(pg_database_url: str) -> Iterator[str]:
    """A new, empty PostgreSQL database of this test's own (dropped after)."""
    name = f"authserver_empty_{secrets.token_hex(4)}"
    admin = sa.create_engine(pg_database_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        yield sa.make_url(pg_database_url).set(database=name).render_as_string(False)
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def test_admin_commands_on_an_unmigrated_postgresql_say_db_upgrade(
    tmp_path: Path, empty_pg_database: str
) -> None:
    config = str(write_config(tmp_path, database_url=empty_pg_database))
    for command in (
        ["users", "list"],
        ["users", "delete", "nobody"],
        ["service-accounts", "list"],
        ["keys", "list"],
        ["audit", "prune", "--older-than", "90d"],
    ):
        result = run_cli("--config", config, *command, cwd=tmp_path)
        assert_clean_failure(result, 1, "run `authserver db upgrade` first")
        assert result.stderr.count("\n") == 1, (command, result.stderr)
    # Checking changed nothing: the database is still empty, and db upgrade fixes it.
    engine = sa.create_engine(empty_pg_database)
    assert sa.inspect(engine).get_table_names() == []
    engine.dispose()
    assert run_cli("--config", config, "db", "upgrade", cwd=tmp_path).returncode == 0
    listed = run_cli("--config", config, "users", "list", cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr


@pytest.mark.parametrize(
    ("text", "line"),
    [
        ("issuer: http://127.0.0.1:8080\nclients: [unclosed\n", "line 3, column 1"),
        ("issuer: http://127.0.0.1:8080\n\tdatabase_url: x\n", "line 2, column 1"),
        ("issuer: http://127.0.0.1:8080\nsigning:\n  algorithm: RS256\n rotate: 1d\n", "line 4"),
    ],
)
def test_bad_yaml_names_the_file_and_the_line(tmp_path: Path, text: str, line: str) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(text)
    result = run_cli("--config", str(bad), "users", "list", cwd=tmp_path)
    assert_clean_failure(result, 2, f"config file {bad}, {line}", "not valid YAML")
    assert "<unicode string>" not in result.stderr
    # The heading, then the one problem on one line.
    assert result.stderr.count("\n") == 2, result.stderr
