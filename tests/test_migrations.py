"""The migrations build exactly the schema the models describe, on SQLite and PostgreSQL;
``authserver db current`` and ``db history`` say where a database stands."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa
import yaml
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from flask import Flask

from authserver.app import migrations_directory
from authserver.storage.models import db

from .support.servers import run_cli


def test_migrated_schema_matches_the_models(app: Flask) -> None:
    with app.app_context(), db.engine.connect() as conn:
        differences = compare_metadata(MigrationContext.configure(conn), db.metadata)
    assert differences == []


@pytest.mark.live
def test_db_current_and_history_through_the_cli(tmp_path: Path) -> None:
    script = ScriptDirectory(migrations_directory())
    revisions = [r.revision for r in script.walk_revisions()]  # newest first
    (head,) = script.get_heads()
    database = tmp_path / "authserver.db"
    config = tmp_path / "authserver.yaml"
    config.write_text(
        yaml.safe_dump(
            {"database_url": f"sqlite:///{database}", "secret_key_file": str(tmp_path / "sk")}
        )
    )

    def db(*args: str) -> str:
        result = run_cli("--config", str(config), "db", *args, cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        return result.stdout

    # No database yet: nothing applied, and looking does not create one.
    assert db("current") == (
        f"none (no database at {database} yet); {len(revisions)} pending, up to {head}: "
        "run `authserver db upgrade`\n"
    )
    history = db("history").splitlines()
    assert history[0].split() == ["REVISION", "STATE", "DESCRIPTION"]
    assert [line.split()[:2] for line in history[1:3]] == [
        [head, "pending"],
        [revisions[1], "pending"],
    ]
    assert not database.exists()

    db("upgrade")
    assert db("current") == f"{head} (head)\n"

    # One behind, as after installing a release with a new migration.
    engine = sa.create_engine(f"sqlite:///{database}")
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE alembic_version SET version_num = :v"), {"v": revisions[1]})
    engine.dispose()
    assert (
        db("current") == f"{revisions[1]}; 1 pending, up to {head}: run `authserver db upgrade`\n"
    )
    history = db("history").splitlines()
    assert history[1].split()[:3] == [head, "pending", "(head)"]
    assert history[2].split()[:2] == [revisions[1], "current"]
    assert {line.split()[1] for line in history[3:]} == {"applied"}
