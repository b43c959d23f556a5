"""``authserver db``: the database schema (its migrations)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from .context import announcing_new_database, cli_actor, cli_settings, database_app, log_migrations
from .output import (
    EXIT_USAGE,
    CliError,
    add_command,
    add_group,
    output_argument,
    print_json,
    print_table,
)

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


def cmd_db_prune(args: argparse.Namespace) -> int:
    """Delete what can never be used again (``storage/janitor.py`` says what, and why it
    is safe); ``--dry-run`` counts it and changes nothing."""
    from ..admin.audit import run_janitor
    from ..web.services import Services

    if args.batch_size is not None and args.batch_size < 1:
        raise CliError(f"--batch-size: must be at least 1, not {args.batch_size}", EXIT_USAGE)
    settings = cli_settings(args)
    batch_size = args.batch_size or settings.janitor.batch_size
    app = database_app(args, settings)
    with app.app_context():
        services = Services.of(app)
        if args.dry_run:
            counts = services.janitor.count()
        else:
            counts = run_janitor(services.janitor, services.events, cli_actor(), batch_size)
    if args.output == "json":
        print_json(
            [
                {"table": table, "rows": rows, "dry_run": args.dry_run}
                for table, rows in counts.as_dict().items()
            ]
        )
        return 0
    rows = [("TABLE", "WOULD DELETE" if args.dry_run else "DELETED")]
    rows += [(table, str(count)) for table, count in counts.as_dict().items()]
    print_table(rows)
    if settings.audit_retention is None:
        print("audit_events: kept (no audit_retention set)")
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
    prune = add_command(
        db_commands,
        common,
        "prune",
        cmd_db_prune,
        "delete expired and revoked refresh tokens, expired ephemeral entries and, with "
        "audit_retention, old audit events",
    )
    prune.add_argument(
        "--dry-run", action="store_true", help="count what would be deleted; change nothing"
    )
    prune.add_argument(
        "--batch-size",
        type=int,
        metavar="N",
        help="rows deleted per transaction (default: janitor.batch_size, 1000)",
    )
    output_argument(prune)
