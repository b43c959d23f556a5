"""Applying and checking Alembic migrations (through Flask-Migrate)."""

from __future__ import annotations

from dataclasses import dataclass

from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.script.revision import RevisionError
from flask import Flask
from flask_migrate import upgrade

from .models import db


def upgrade_database(app: Flask) -> None:
    """``authserver db upgrade``: bring the schema to the newest revision."""
    with app.app_context():
        upgrade(directory=app.extensions["migrate"].directory)


@dataclass(frozen=True)
class Migration:
    """One migration of this version, and whether the database has it."""

    revision: str
    description: str
    is_head: bool
    is_applied: bool
    is_current: bool


def migration_history(
    app: Flask, *, read_database: bool = True
) -> tuple[list[Migration], set[str]]:
    """``authserver db history`` and ``db current``: this version's migrations, newest
    first, and the database's current revisions (empty for a new database, or without
    ``read_database``; one unknown here when a newer release has migrated it)."""
    with app.app_context():
        script = ScriptDirectory.from_config(app.extensions["migrate"].migrate.get_config())
        current: set[str] = set()
        if read_database:
            with db.engine.connect() as conn:
                current = set(MigrationContext.configure(conn).get_current_heads())
        applied: set[str] = set()
        for revision in current:
            try:
                applied |= {r.revision for r in script.iterate_revisions(revision, "base") if r}
            except RevisionError:  # not a revision of this version
                continue
        heads = set(script.get_heads())
        return [
            Migration(
                r.revision, r.doc, r.revision in heads, r.revision in applied, r.revision in current
            )
            for r in script.walk_revisions()
        ], current


def pending_migrations(app: Flask) -> bool:
    """``True`` if the database is behind the newest revision."""
    with app.app_context():
        script = ScriptDirectory.from_config(app.extensions["migrate"].migrate.get_config())
        with db.engine.connect() as conn:
            current = set(MigrationContext.configure(conn).get_current_heads())
        return current != set(script.get_heads())


def is_empty_database(app: Flask) -> bool:
    """``True`` if no migration was ever applied (a new database)."""
    with app.app_context(), db.engine.connect() as conn:
        return not MigrationContext.configure(conn).get_current_heads()
