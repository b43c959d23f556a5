"""``authserver clients list`` and ``authserver hash-secret``: the static clients of the
config, and the hash of a client secret for it."""

from __future__ import annotations

import argparse
import getpass
import sys
from typing import TYPE_CHECKING

from .context import cli_settings
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
    from .output import Parser, Subcommands


def cmd_hash_secret(args: argparse.Namespace) -> int:
    from ..oauth.secrets import hash_secret

    tty = sys.stdin.isatty()
    secret = getpass.getpass("secret: ") if tty else sys.stdin.read().rstrip("\r\n")
    if not secret:
        raise CliError("no secret on standard input", EXIT_USAGE)
    if args.scheme == "bcrypt" and len(secret.encode()) > 72:
        raise CliError(
            "bcrypt reads at most 72 bytes; use --scheme argon2id for this secret", EXIT_USAGE
        )
    print(hash_secret(secret, args.scheme))
    return 0


def cmd_clients_list(args: argparse.Namespace) -> int:
    settings = cli_settings(args)
    if args.output == "json":
        from ..admin.shapes import client_json
        from ..app import static_clients
        from ..oauth.secrets import SecretVerifier

        print_json([client_json(c) for c in static_clients(settings, SecretVerifier())])
        return 0
    rows = [("CLIENT_ID", "TYPE", "GRANT TYPES", "SCOPES", "ROLES")]
    for c in settings.clients:
        rows.append(
            (
                c.client_id,
                "public" if c.public else "confidential",
                ",".join(c.grant_types),
                " ".join(c.scopes) or "-",
                ",".join(c.roles) or "-",
            )
        )
    print_table(rows)
    return 0


def register_hash_secret(sub: Subcommands, common: Parser) -> None:
    hash_cmd = add_command(
        sub, common, "hash-secret", cmd_hash_secret, "read a secret on stdin, print its hash"
    )
    hash_cmd.add_argument(
        "--scheme",
        choices=("bcrypt", "argon2id"),
        default="bcrypt",
        help="the hash's scheme (default: %(default)s)",
    )


def register(sub: Subcommands, common: Parser) -> None:
    clients_commands = add_group(sub, common, "clients", "clients", "clients_command")
    output_argument(
        add_command(
            clients_commands,
            common,
            "list",
            cmd_clients_list,
            "list the static clients of the config",
        )
    )
