"""``authserver keys``: the signing keys."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from .context import database_app, key_admin
from .output import add_command, add_group, output_argument, print_json, print_table

if TYPE_CHECKING:
    from .output import Parser, Subcommands


def cmd_keys_list(args: argparse.Namespace) -> int:
    from ..admin.shapes import keys_json

    app = database_app(args)
    with app.app_context():
        keys = key_admin(app)
        statuses = keys.statuses()
        items = keys_json(keys.lines) if args.output == "json" else []
    if not statuses:
        print("no signing keys yet: the first is made when the server starts", file=sys.stderr)
    if args.output == "json":
        print_json(items)
        return 0
    rows = [("KID", "ALG", "STATE", "SIGNS FROM", "PUBLISHED UNTIL")]
    for s in statuses:
        until = f"{s.published_until:%Y-%m-%d %H:%M:%S}Z" if s.published_until else "-"
        rows.append((s.kid, s.algorithm, s.state, f"{s.activates_at:%Y-%m-%d %H:%M:%S}Z", until))
    print_table(rows)
    return 0


def cmd_keys_rotate(args: argparse.Namespace) -> int:
    import time

    app = database_app(args)
    with app.app_context():
        keys = key_admin(app)
        records = keys.rotate(args.now)
        if args.now:
            # Issue 9.4: withdraw the old keys only once every worker signs with the new
            # one, and return only once every worker has dropped them, so that after
            # this command no token signed with a withdrawn key is issued anywhere.
            wait = keys.propagation_seconds
            print(
                f"the new key signs now; withdrawing the old keys in {wait:.0f} s, "
                "once every worker has switched",
                file=sys.stderr,
                flush=True,
            )
            time.sleep(wait)
            keys.withdraw_before(records)
            time.sleep(wait)
    for record in records:
        signs_from = f"{record.activates_at:%Y-%m-%d %H:%M:%S}Z"
        print(f"new key {record.kid} ({record.algorithm}) published; signs from {signs_from}")
    if args.now:
        print("older keys withdrawn on every worker")
    return 0


def register(sub: Subcommands, common: Parser) -> None:
    keys_commands = add_group(sub, common, "keys", "signing keys", "keys_command")
    output_argument(
        add_command(
            keys_commands, common, "list", cmd_keys_list, "list signing keys and their state"
        )
    )
    rotate = add_command(
        keys_commands, common, "rotate", cmd_keys_rotate, "publish a new signing key"
    )
    rotate.add_argument(
        "--now",
        action="store_true",
        help="sign with it at once (a compromised key), not after publish_ahead",
    )
