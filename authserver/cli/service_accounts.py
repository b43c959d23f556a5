"""``authserver service-accounts``: tokens and key files for CI jobs and services."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from .context import admin_app, check_role, cli_settings, service_account_admin
from .output import (
    EXIT_USAGE,
    CliError,
    add_command,
    add_group,
    name_argument,
    os_reason,
    output_argument,
    print_fields,
    print_json,
    print_object,
    print_table,
)

if TYPE_CHECKING:
    from ..identity.service_accounts import ServiceAccountInfo
    from ..key_file import KeyFile
    from .output import Parser, Subcommands


def _expires_in(value: str | None) -> float | None:
    """``--expires-in``: a duration as in the config (``30d``, ``12h``) or ``never``."""
    from ..identity.service_accounts import DEFAULT_EXPIRY_SECONDS
    from ..settings import parse_duration

    if value is None:
        return DEFAULT_EXPIRY_SECONDS
    if value.strip().lower() == "never":
        return None
    try:
        return parse_duration(value)
    except ValueError as exc:
        raise CliError(f"--expires-in {value!r}: {exc}, or never", EXIT_USAGE) from None


def _scopes(values: list[str] | None) -> list[str] | None:
    if values is None:
        return None
    return [scope for value in values for scope in value.replace(",", " ").split()]


def _when(value: datetime | None) -> str:
    return f"{value:%Y-%m-%d %H:%M}Z" if value is not None else "-"


def _expiry(info: ServiceAccountInfo, now: datetime | None = None) -> str:
    if info.expires_at is None:
        return "never"
    if info.expired(now or datetime.now(UTC)):
        return f"expired {_when(info.expires_at)}"
    return _when(info.expires_at)


def _say_what(verb: str, info: ServiceAccountInfo) -> None:
    """The account that was created (or rotated, or given a key), on standard error."""
    scopes = " ".join(info.scopes) or "none"
    print(
        f"authserver: {verb} service account {info.name} (client id {info.client_id}, "
        f"role {info.role}, scopes {scopes}, expires {_expiry(info)})",
        file=sys.stderr,
    )


def _show_token(verb: str, info: ServiceAccountInfo, token: str) -> None:
    _say_what(verb, info)
    print(
        "authserver: its token, shown this once (use it as the client secret, with or "
        "without the client id):",
        file=sys.stderr,
        flush=True,
    )
    print(token)


def cmd_service_accounts_create(args: argparse.Namespace) -> int:
    from ..identity.service_accounts import check_key_algorithm, validate_name
    from ..identity.users import AlreadyExists, UserError

    expires_in = _expires_in(args.expires_in)
    scopes = _scopes(args.scope)
    try:
        validate_name(args.name)
        if args.key_file is not None:
            check_key_algorithm(args.key_algorithm)
    except UserError as exc:
        raise CliError(str(exc), EXIT_USAGE) from None
    settings = cli_settings(args)
    check_role(settings, args.role)
    with _new_key_file(args.key_file) as stream, admin_app(args, settings) as app:
        accounts = service_account_admin(app)
        key_file: KeyFile | None = None
        try:
            if stream is not None:
                info, key_file = accounts.create_with_key(
                    args.name, args.role, scopes, expires_in, args.key_algorithm
                )
                token = None
            else:
                info, token = accounts.create(args.name, args.role, scopes, expires_in)
        except AlreadyExists:
            raise
        except UserError as exc:  # the rest is the input: a scope, the expiry
            raise CliError(str(exc), EXIT_USAGE) from None
        if stream is not None and key_file is not None:
            _write_key_file(stream, key_file)
    if token is not None:
        _show_token("created", info, token)
    elif key_file is not None:
        _show_key_file("created", info, key_file, args.key_file)
    return 0


@contextmanager
def _new_key_file(path: str | None) -> Iterator[TextIO | None]:
    """The new key file, opened (0600, never over an existing file) before anything is
    stored; removed again if what follows fails, so no key is stored whose file is
    lost and no file is left whose key is not stored."""
    from ..key_file import KeyFileError, open_new_key_file

    if path is None:
        yield None
        return
    try:
        stream = open_new_key_file(path)
    except KeyFileError as exc:
        raise CliError(str(exc), EXIT_USAGE) from None
    done = False
    try:
        yield stream
        done = True
    finally:
        stream.close()
        if not done:
            Path(path).unlink(missing_ok=True)


def _write_key_file(stream: TextIO, key_file: KeyFile) -> None:
    from ..key_file import dump_key_file

    try:
        dump_key_file(stream, key_file)
    except OSError as exc:
        raise CliError(
            f"cannot write the key file ({os_reason(exc)}); its key {key_file.key_id} is "
            "stored but unusable: remove it with `service-accounts remove-key`"
        ) from None


def _show_key_file(verb: str, info: ServiceAccountInfo, key_file: KeyFile, path: str) -> None:
    _say_what(verb, info)
    print(
        f"authserver: wrote its key {key_file.key_id} ({key_file.algorithm}) to {path}; "
        "the private key is in that file only. Use it with "
        f"`authserver token --key-file {path}` or AUTHSERVER_CREDENTIALS={path}",
        file=sys.stderr,
    )
    print(key_file.key_id)


def cmd_service_accounts_add_key(args: argparse.Namespace) -> int:
    from ..identity.service_accounts import check_key_algorithm
    from ..identity.users import UserError

    try:
        check_key_algorithm(args.key_algorithm)
    except UserError as exc:
        raise CliError(str(exc), EXIT_USAGE) from None
    with _new_key_file(args.key_file) as stream, admin_app(args) as app:
        assert stream is not None
        info, key_file = service_account_admin(app).add_key(args.name, args.key_algorithm)
        _write_key_file(stream, key_file)
    _show_key_file("added a key to", info, key_file, args.key_file)
    print("authserver: its other keys keep working until removed (remove-key)", file=sys.stderr)
    return 0


def cmd_service_accounts_remove_key(args: argparse.Namespace) -> int:
    with admin_app(args) as app:
        info = service_account_admin(app).remove_key(args.name, args.kid)
    print(
        f"removed key {args.kid} of service account {info.name}; its access tokens run out "
        "on their own"
    )
    return 0


def cmd_service_accounts_keys(args: argparse.Namespace) -> int:
    with admin_app(args) as app:
        keys = service_account_admin(app).keys(args.name)
    if not keys:
        print(f"service account {args.name} has no keys", file=sys.stderr)
    if args.output == "json":
        print_json([key.as_dict() for key in keys])
        return 0
    rows = [("KID", "ALGORITHM", "CREATED", "CREATED BY")]
    rows += [(k.kid, k.algorithm, _when(k.created_at), k.created_by or "-") for k in keys]
    print_table(rows)
    return 0


def cmd_service_accounts_list(args: argparse.Namespace) -> int:
    with admin_app(args) as app:
        accounts = service_account_admin(app).list()
    if not accounts:
        print("no service accounts yet", file=sys.stderr)
    if args.output == "json":
        print_json([info.as_dict() for info in accounts])
        return 0
    rows = [("NAME", "CLIENT_ID", "ROLE", "SCOPES", "CREATED", "EXPIRES", "LAST USED")]
    for info in accounts:
        rows.append(
            (
                info.name,
                info.client_id,
                info.role,
                ",".join(info.scopes) or "-",
                _when(info.created_at),
                _expiry(info),
                _when(info.last_used_at),
            )
        )
    print_table(rows)
    return 0


def cmd_service_accounts_show(args: argparse.Namespace) -> int:
    with admin_app(args) as app:
        info = service_account_admin(app).get(args.name)
    if args.output == "json":
        print_object(info.as_dict())
    else:
        print_fields(info.as_dict())
    return 0


def cmd_service_accounts_rotate(args: argparse.Namespace) -> int:
    with admin_app(args) as app:
        info, token = service_account_admin(app).rotate(args.name)
    _show_token("rotated", info, token)
    print("authserver: the old token no longer works", file=sys.stderr)
    return 0


def cmd_service_accounts_revoke(args: argparse.Namespace) -> int:
    with admin_app(args) as app:
        info = service_account_admin(app).revoke(args.name)
    print(
        f"revoked service account {info.name} ({info.client_id}); its access tokens "
        "run out on their own"
    )
    return 0


def key_file_arguments(command: argparse.ArgumentParser, *, required: bool) -> None:
    command.add_argument(
        "--key-file",
        metavar="PATH",
        required=required,
        help="write a new key file here (0600; never over an existing file): the account "
        "authenticates with its private key (private_key_jwt) instead of a token"
        if not required
        else "write the new key file here (0600; never over an existing file)",
    )
    command.add_argument(
        "--key-algorithm",
        default="ES256",
        choices=("ES256", "RS256", "EdDSA"),
        help="the key file's algorithm (default: %(default)s)",
    )


def register(sub: Subcommands, common: Parser) -> None:
    accounts_commands = add_group(
        sub,
        common,
        "service-accounts",
        "service accounts: tokens for CI jobs and services",
        "service_accounts_command",
    )
    sa_create = name_argument(
        add_command(
            accounts_commands,
            common,
            "create",
            cmd_service_accounts_create,
            "create a service account and print its token, once",
        )
    )
    sa_create.add_argument(
        "--role", metavar="ROLE", help="one of rbac.roles (default: default_role)"
    )
    sa_create.add_argument(
        "--expires-in",
        metavar="DURATION",
        help="e.g. 30d, 12h, or never (default: 30d)",
    )
    sa_create.add_argument(
        "--scope",
        action="append",
        metavar="SCOPE",
        help="a scope it may ask for, within its role's permissions; repeatable "
        "(default: all of the role's)",
    )
    key_file_arguments(sa_create, required=False)
    output_argument(
        add_command(
            accounts_commands, common, "list", cmd_service_accounts_list, "list service accounts"
        )
    )
    sa_add_key = name_argument(
        add_command(
            accounts_commands,
            common,
            "add-key",
            cmd_service_accounts_add_key,
            "give a service account one more key, written to a new key file; its other "
            "keys keep working (rotation without downtime)",
        )
    )
    key_file_arguments(sa_add_key, required=True)
    sa_remove_key = name_argument(
        add_command(
            accounts_commands,
            common,
            "remove-key",
            cmd_service_accounts_remove_key,
            "remove a key of a service account: its key file stops working",
        )
    )
    sa_remove_key.add_argument("kid", metavar="KID", help="the key id (service-accounts keys NAME)")
    sa_keys = name_argument(
        add_command(
            accounts_commands,
            common,
            "keys",
            cmd_service_accounts_keys,
            "list the keys of a service account",
        )
    )
    output_argument(sa_keys)
    sa_show = add_command(
        accounts_commands, common, "show", cmd_service_accounts_show, "show one service account"
    )
    sa_show.add_argument("name", metavar="NAME", help="the service account's name")
    output_argument(sa_show, one=True)
    for name, handler, help_text in (
        (
            "rotate",
            cmd_service_accounts_rotate,
            "give a service account a new token (printed once); the old one stops working",
        ),
        (
            "revoke",
            cmd_service_accounts_revoke,
            "delete a service account: its token stops working",
        ),
    ):
        name_argument(add_command(accounts_commands, common, name, handler, help_text))
