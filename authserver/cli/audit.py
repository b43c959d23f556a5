"""``authserver audit``: the audit log."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from .context import cli_actor, cli_settings, database_app
from .output import EXIT_USAGE, CliError, add_command, add_group

if TYPE_CHECKING:
    from .output import Parser, Subcommands


def cmd_audit_prune(args: argparse.Namespace) -> int:
    """Delete audit events older than ``--older-than`` or ``audit_retention``."""
    from datetime import UTC, datetime, timedelta

    from ..admin.audit import prune_audit_log
    from ..settings import parse_duration
    from ..web.services import Services

    settings = cli_settings(args)
    if args.older_than is not None:
        try:
            keep = parse_duration(args.older_than)
        except ValueError as exc:
            raise CliError(f"--older-than: {exc}", EXIT_USAGE) from None
    elif settings.audit_retention is not None:
        keep = settings.audit_retention
    else:
        raise CliError(
            "no retention: set audit_retention in the config or pass --older-than", EXIT_USAGE
        )
    if keep <= 0:
        raise CliError("--older-than: must be more than 0", EXIT_USAGE)
    before = datetime.now(UTC) - timedelta(seconds=keep)
    app = database_app(args, settings)
    with app.app_context():
        deleted = prune_audit_log(Services.of(app).events, before, cli_actor())
    print(f"deleted {deleted} audit events from before {before:%Y-%m-%d %H:%M:%S}Z")
    return 0


def register(sub: Subcommands, common: Parser) -> None:
    audit_commands = add_group(sub, common, "audit", "the audit log", "audit_command")
    prune = add_command(
        audit_commands,
        common,
        "prune",
        cmd_audit_prune,
        "delete audit events past the retention",
    )
    prune.add_argument(
        "--older-than",
        metavar="DURATION",
        help="delete events older than this (e.g. 90d); default: audit_retention",
    )
