"""``authserver db``: the database schema (its migrations)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from .context import announcing_new_database, cli_settings, log_migrations
from .output import add_command, add_group, print_table

if TYPE_CHECKING:
    from ..storage.migrations import Migration
    from .output import Parser, Subcommands


def cmd_db_upgrade(args: argparse.Namespace) -> int:
    from ..storage.migrations import upgrade_database

    settings = cli_settings(args)
    log_migrations(settings)
    with announcing_new_database(args, settings) as app:
        upgrade_database(app)
    print("database schema is current")
    return 0


def _migration_history(args: argparse.Namespace) -> tuple[list[Migration], set[str], str]:
    """This version's migrations, the database's revisions, and what to call a database
    with none. A SQLite file that does not exist is not created by looking at it."""
    from sqlalchemy.engine import make_url

    from ..app import create_app
    from ..storage.database import normalize_database_url
    from ..storage.migrations import migration_history

    settings = cli_settings(args)
    url = make_url(normalize_database_url(settings.database_url))
    is_sqlite_file = settings.is_sqlite and url.database not in (None, "", ":memory:")
    if is_sqlite_file and not Path(str(url.database)).exists():
        migrations, current = migration_history(create_app(settings), read_database=False)
        return migrations, current, f"none (no database at {url.database} yet)"
    migrations, current = migration_history(create_app(settings))
    return migrations, current, "none (an empty database)"


def cmd_db_current(args: argparse.Namespace) -> int:
    """Where the database stands; ``db upgrade`` is what moves it (never ``serve`` on
    PostgreSQL)."""
    migrations, current, empty = _migration_history(args)
    known = {m.revision for m in migrations}
    pending = sum(not m.is_applied for m in migrations)
    head = ", ".join(m.revision for m in migrations if m.is_head)
    where = ", ".join(sorted(current)) or empty
    if current - known:
        print(f"{where}: not a migration of this version (a newer release's?); its head is {head}")
    elif pending:
        print(f"{where}; {pending} pending, up to {head}: run `authserver db upgrade`")
    else:
        print(f"{where} (head)")
    return 0


def cmd_db_history(args: argparse.Namespace) -> int:
    migrations, _, _ = _migration_history(args)
    rows = [("REVISION", "STATE", "DESCRIPTION")]
    for m in migrations:
        state = "current" if m.is_current else "applied" if m.is_applied else "pending"
        rows.append((m.revision, f"{state} (head)" if m.is_head else state, m.description))
    print_table(rows)
    return 0


def register(sub: Subcommands, common: Parser) -> None:
    db_commands = add_group(sub, common, "db", "database schema", "db_command")
    add_command(db_commands, common, "upgrade", cmd_db_upgrade, "apply migrations up to the newest")
    add_command(
        db_commands,
        common,
        "current",
        cmd_db_current,
        "show the database's migration, and what is pending",
    )
    add_command(
        db_commands,
        common,
        "history",
        cmd_db_history,
        "list this version's migrations, newest first",
    )
