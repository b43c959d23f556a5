"""``authserver users``: people (local, federated and proxy users)."""

from __future__ import annotations

import argparse
import getpass
import sys
from typing import TYPE_CHECKING

from .context import check_role, cli_settings, users_admin
from .output import (
    EXIT_USAGE,
    CliError,
    add_command,
    add_group,
    os_reason,
    output_argument,
    print_fields,
    print_json,
    print_object,
    print_table,
)

if TYPE_CHECKING:
    from .output import Parser, Subcommands


def _read_password() -> str:
    if sys.stdin.isatty():
        password = getpass.getpass("password: ")
        if getpass.getpass("again: ") != password:
            raise CliError("the passwords differ", EXIT_USAGE)
    else:
        password = sys.stdin.readline().rstrip("\r\n")
    if not password:
        raise CliError("no password on standard input", EXIT_USAGE)
    return password


def cmd_users_create(args: argparse.Namespace) -> int:
    from ..identity.users import UserError, validate_email, validate_password, validate_username

    password = None
    try:
        validate_username(args.name)
        if args.email is not None:
            validate_email(args.email)
        if args.password_stdin:
            password = validate_password(_read_password())
    except UserError as exc:
        raise CliError(str(exc), EXIT_USAGE) from None
    settings = cli_settings(args)
    check_role(settings, args.role)
    with users_admin(args, settings) as users:
        person, generated = users.create(args.name, args.role, password, args.email)
    email = f", email {person.email}" if person.email else ""
    print(
        f"authserver: created user {person.username} (role {person.role}{email})",
        file=sys.stderr,
    )
    if not settings.local_users:
        print(
            "authserver: local_users is off: the password works once it is turned on",
            file=sys.stderr,
        )
    if generated is not None:
        print("authserver: its password, shown this once:", file=sys.stderr)
        print(generated)
    return 0


def cmd_users_list(args: argparse.Namespace) -> int:
    with users_admin(args) as users:
        people = users.list()
    if not people:
        print("no users yet", file=sys.stderr)
    if args.output == "json":
        from ..admin.shapes import user_json

        print_json([user_json(person) for person in people])
        return 0
    rows = [("USERNAME", "ROLE", "SOURCE", "EMAIL", "CREATED", "LAST LOGIN", "DISABLED")]
    for person in people:
        last = f"{person.last_login_at:%Y-%m-%d %H:%M}Z" if person.last_login_at else "-"
        rows.append(
            (
                person.username,
                person.role,
                person.source,
                person.email or "-",
                f"{person.created_at:%Y-%m-%d %H:%M}Z",
                last,
                "yes" if person.disabled else "no",
            )
        )
    print_table(rows)
    return 0


def cmd_users_show(args: argparse.Namespace) -> int:
    from ..admin.shapes import user_json

    with users_admin(args) as users:
        person = users.get(args.name)
    if args.output == "json":
        print_object(user_json(person))
    else:
        print_fields(user_json(person))
    return 0


def cmd_users_set_role(args: argparse.Namespace) -> int:
    settings = cli_settings(args)
    check_role(settings, args.role)
    with users_admin(args, settings) as users:
        person = users.set_role(args.name, args.role)
    print(f"user {person.username} now has role {person.role}")
    return 0


def cmd_users_set_email(args: argparse.Namespace) -> int:
    from ..identity.users import UserError, validate_email

    if (args.email is None) == (not args.remove):
        raise CliError("give an email address, or --remove (not both)", EXIT_USAGE)
    if args.email is not None:
        try:
            validate_email(args.email)
        except UserError as exc:
            raise CliError(str(exc), EXIT_USAGE) from None
    with users_admin(args) as users:
        person = users.set_email(args.name, args.email)
    if person.email:
        print(f"user {person.username} now has the email address {person.email} (verified)")
    else:
        print(f"user {person.username} now has no email address")
    return 0


def cmd_users_set_password(args: argparse.Namespace) -> int:
    """A local user's new password, through the admin layer: their refresh tokens (and
    the access tokens those issued) and their sessions end, and it is audited."""
    from ..identity.users import UserError, generate_password, validate_password

    password = None
    if args.password_stdin:
        try:
            password = validate_password(_read_password())
        except UserError as exc:
            raise CliError(str(exc), EXIT_USAGE) from None
    with users_admin(args) as users:
        person = users.get(args.name)
        new = password if password is not None else generate_password()
        users.change_password(person, new)
    print(
        f"authserver: set a new password for {person.username}; their refresh tokens and "
        "sessions have ended",
        file=sys.stderr,
    )
    if password is None:
        print("authserver: the new password, shown this once:", file=sys.stderr, flush=True)
        print(new)
    return 0


def _set_disabled(args: argparse.Namespace, disabled: bool) -> int:
    with users_admin(args) as users:
        person = users.update(args.name, role=None, disabled=disabled)
    if person.disabled:
        print(f"user {person.username} is disabled: they can no longer sign in")
    else:
        print(f"user {person.username} is enabled")
    return 0


def cmd_users_disable(args: argparse.Namespace) -> int:
    return _set_disabled(args, True)


def cmd_users_enable(args: argparse.Namespace) -> int:
    return _set_disabled(args, False)


def cmd_users_delete(args: argparse.Namespace) -> int:
    with users_admin(args) as users:
        person = users.delete(args.name)
    print(f"deleted user {person.username} and their refresh tokens")
    return 0


def _read_input(path: str, newline: str | None = None) -> str:
    """The text of ``path`` (``-``: standard input); a file that cannot be read is a
    usage error, named."""
    try:
        if path == "-":
            return sys.stdin.read()
        with open(path, encoding="utf-8-sig", newline=newline) as stream:
            return stream.read()
    except (OSError, UnicodeDecodeError) as exc:
        raise CliError(f"cannot read {path}: {os_reason(exc)}", EXIT_USAGE) from None


def cmd_users_import_csv(args: argparse.Namespace) -> int:
    import io

    text = _read_input(args.file, newline="")
    progress = _Counter("hashing passwords") if sys.stderr.isatty() else None
    with users_admin(args) as users:
        try:
            count = users.import_csv(io.StringIO(text, newline=""), progress)
        finally:
            if progress is not None:
                progress.end()
    print(f"imported {count} users ({count} created; an import never changes existing users)")
    return 0


class _Counter:
    """``label: 37/200`` on one line of a terminal's stderr, rewritten in place."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.shown = False

    def __call__(self, done: int, total: int) -> None:
        print(f"\r{self.label}: {done}/{total}", end="", file=sys.stderr, flush=True)
        self.shown = True

    def end(self) -> None:
        if self.shown:
            print(file=sys.stderr, flush=True)


def cmd_users_import_htpasswd(args: argparse.Namespace) -> int:
    text = _read_input(args.file)
    settings = cli_settings(args)
    check_role(settings, args.role)
    with users_admin(args, settings) as users:
        count = users.import_htpasswd(text.splitlines(), args.role)
    print(f"imported {count} users; each one's hash becomes argon2id at their first sign-in")
    return 0


def cmd_users_export_csv(args: argparse.Namespace) -> int:
    import io

    buffer = io.StringIO()
    with users_admin(args) as users:
        count = users.export_csv(buffer)
    if args.file == "-":
        sys.stdout.write(buffer.getvalue())
    else:
        try:
            with open(args.file, "w", encoding="utf-8", newline="") as stream:
                stream.write(buffer.getvalue())
        except OSError as exc:
            raise CliError(f"cannot write {args.file}: {os_reason(exc)}", EXIT_USAGE) from None
    print(f"exported {count} users (without passwords)", file=sys.stderr)
    return 0


def register(sub: Subcommands, common: Parser) -> None:
    users_commands = add_group(
        sub, common, "users", "people: local, federated and proxy users", "users_command"
    )
    create = add_command(
        users_commands,
        common,
        "create",
        cmd_users_create,
        "create a local user (a random password is printed once unless --password-stdin)",
    )
    create.add_argument("name", metavar="NAME", help="the new user's username")
    create.add_argument("--role", metavar="ROLE", help="one of rbac.roles (default: default_role)")
    create.add_argument(
        "--password-stdin", action="store_true", help="read the password from standard input"
    )
    create.add_argument(
        "--email", metavar="ADDR", help="their email address (an admin's word: verified)"
    )
    output_argument(add_command(users_commands, common, "list", cmd_users_list, "list every user"))
    show = add_command(users_commands, common, "show", cmd_users_show, "show one user")
    show.add_argument("name", metavar="NAME", help="the username")
    output_argument(show, one=True)
    set_role = add_command(
        users_commands, common, "set-role", cmd_users_set_role, "change a user's role"
    )
    set_role.add_argument("name", metavar="NAME", help="the username")
    set_role.add_argument("role", metavar="ROLE", help="one of rbac.roles")
    set_email = add_command(
        users_commands,
        common,
        "set-email",
        cmd_users_set_email,
        "set or remove a local user's email address (an admin's word: verified)",
    )
    set_email.add_argument("name", metavar="NAME", help="the username of a local user")
    set_email.add_argument("email", metavar="ADDR", nargs="?", help="the new address (or --remove)")
    set_email.add_argument("--remove", action="store_true", help="remove the address instead")
    set_password = add_command(
        users_commands,
        common,
        "set-password",
        cmd_users_set_password,
        "give a local user a new password (generated and printed once unless "
        "--password-stdin); their refresh tokens and sessions end",
    )
    set_password.add_argument("name", metavar="NAME", help="the username of a local user")
    source = set_password.add_mutually_exclusive_group()
    source.add_argument(
        "--password-stdin", action="store_true", help="read the password from standard input"
    )
    source.add_argument(
        "--generate",
        action="store_true",
        help="generate a random password and print it once (the default)",
    )
    for name, handler, help_text in (
        ("disable", cmd_users_disable, "disable a user: they can no longer sign in"),
        ("enable", cmd_users_enable, "enable a disabled user again"),
    ):
        add_command(users_commands, common, name, handler, help_text).add_argument(
            "name", metavar="NAME", help="the username"
        )
    delete = add_command(
        users_commands,
        common,
        "delete",
        cmd_users_delete,
        "delete a user and their refresh tokens",
    )
    delete.add_argument("name", metavar="NAME", help="the username")
    import_csv = add_command(
        users_commands,
        common,
        "import-csv",
        cmd_users_import_csv,
        "create local users from CSV username,password,role[,email] (all or none)",
    )
    import_csv.add_argument("file", metavar="FILE", help="the CSV file; - for standard input")
    import_htpasswd = add_command(
        users_commands,
        common,
        "import-htpasswd",
        cmd_users_import_htpasswd,
        "create local users from htpasswd lines user:hash (bcrypt, $apr1$, $5$, $6$; all or none)",
    )
    import_htpasswd.add_argument(
        "file", metavar="FILE", help="the htpasswd file; - for standard input"
    )
    import_htpasswd.add_argument(
        "--role", metavar="ROLE", help="the role of every one (default: default_role)"
    )
    export_csv = add_command(
        users_commands,
        common,
        "export-csv",
        cmd_users_export_csv,
        "write every user as CSV username,,role,email (never passwords)",
    )
    export_csv.add_argument("file", metavar="FILE", help="the CSV file; - for standard output")
