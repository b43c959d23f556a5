"""Applying and checking Alembic migrations (through Flask-Migrate)."""

from __future__ import annotations

from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from flask import Flask
from flask_migrate import upgrade

from .models import db


def upgrade_database(app: Flask) -> None:
    """``authserver db upgrade``: bring the schema to the newest revision."""
    with app.app_context():
        upgrade(directory=app.extensions["migrate"].directory)


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
