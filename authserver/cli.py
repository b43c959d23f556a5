"""The ``authserver`` command (DESIGN.md, "CLI").

Errors are one clear line on stderr and a non-zero exit (2 for bad usage or config),
never a traceback.
"""

from __future__ import annotations

import argparse
import getpass
import logging
import os
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, TextIO

from . import __version__
from .bootstrap import (
    DEMO_CLIENT_SECRET_FILE,
    initial_password_path,
    prepare_embedded_default,
    write_private_file,
)
from .logs import configure_logging
from .settings import (
    Settings,
    SettingsError,
    instance_dir,
    load_settings,
    uses_embedded_default,
)
from .web.services import Services

if TYPE_CHECKING:
    from flask import Flask

    from .identity.service_accounts import ServiceAccountInfo, ServiceAccountService
    from .identity.users import UserService
    from .key_file import KeyFile
    from .storage.migrations import Migration

EXIT_FAILURE = 1
EXIT_USAGE = 2


class CliError(Exception):
    """A failure to report as one line, with an exit code."""

    def __init__(self, message: str, code: int = EXIT_FAILURE) -> None:
        super().__init__(message)
        self.code = code


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"authserver: error: {message}\n")


def _instance(args: argparse.Namespace) -> Path:
    """The instance directory: ``--instance-dir``, else :func:`instance_dir`."""
    if args.instance_dir:
        return Path(args.instance_dir).expanduser().absolute()
    return instance_dir()


def _settings(args: argparse.Namespace) -> Settings:
    instance = _instance(args)
    if uses_embedded_default(args.config):
        prepare_embedded_default(instance)
    settings = load_settings(args.config, instance=instance)
    configure_logging(settings.log_format, settings.log_level)
    return settings


def _app(args: argparse.Namespace, settings: Settings | None = None) -> Flask:
    """The app, for commands that use the database.

    On SQLite (the embedded default) the schema is brought up to date first, as
    ``serve`` does; on PostgreSQL that stays the explicit ``db upgrade``, and a schema
    behind it is one line that says so (not the first query's missing table).
    """
    from .app import create_app
    from .storage.migrations import pending_migrations, upgrade_database

    settings = settings or _settings(args)
    if not settings.is_sqlite:
        app = create_app(settings)
        if pending_migrations(app):
            raise CliError("the database schema is not current: run `authserver db upgrade` first")
        return app
    with _announcing_new_database(args, settings) as app:
        upgrade_database(app)
    return app


@contextmanager
def _announcing_new_database(args: argparse.Namespace, settings: Settings) -> Iterator[Flask]:
    """The app, for a body that migrates its database; then, if that database was new,
    one line on stderr says where it is (state never lands in a surprise place)."""
    from sqlalchemy.engine import make_url

    from .app import create_app
    from .storage.database import normalize_database_url
    from .storage.migrations import is_empty_database

    url = make_url(normalize_database_url(settings.database_url))
    sqlite_file = Path(url.database) if settings.is_sqlite and url.database else None
    if sqlite_file is not None and url.database != ":memory:":
        is_new = not sqlite_file.exists()
        what = f"created a new SQLite database at {sqlite_file}"
    else:
        is_new = False
        what = f"set up a new database at {url.render_as_string(hide_password=True)}"
    app = create_app(settings)
    if sqlite_file is None:
        is_new = is_empty_database(app)
    yield app
    if not is_new:
        return
    _say(settings, what)
    legacy = Path.cwd() / "instance" / "authserver.db"
    if uses_embedded_default(args.config) and legacy.exists() and legacy != sqlite_file:
        _say(
            settings,
            f"note: {legacy.parent} is no longer used; the embedded default "
            f"keeps its state in {_instance(args)} (AUTHSERVER_HOME={legacy.parent} or "
            "--instance-dir picks the old one)",
        )


def _say(settings: Settings, text: str) -> None:
    """A notice on stderr: a plain line, or a log record when the logs are JSON (then
    every line ``serve`` writes is one)."""
    if settings.log_format == "json":
        logging.getLogger("authserver").warning(text)
    else:
        print(f"authserver: {text}", file=sys.stderr, flush=True)


# -- commands -----------------------------------------------------------------------


def _log_migrations(settings: Settings) -> None:
    """Show the migrations being applied, for the commands whose job includes that
    (unless ``log_level`` asks for less)."""
    level = max(logging.INFO, logging.getLevelName(settings.log_level.upper()))
    logging.getLogger("alembic.runtime.migration").setLevel(level)


def cmd_serve(args: argparse.Namespace) -> int:
    from .serve import (
        ServeOptionError,
        gunicorn_options,
        prepare_metrics_dir,
        run_dev,
        run_gunicorn,
    )
    from .settings import parse_bind

    if bool(args.tls_cert) != bool(args.tls_key):
        raise CliError("--tls-cert and --tls-key go together", EXIT_USAGE)
    try:
        bind = None if args.bind is None else parse_bind(args.bind)
    except ValueError as exc:
        raise CliError(f"--bind: {exc}", EXIT_USAGE) from None
    settings = _settings(args)
    _log_migrations(settings)
    try:
        options = gunicorn_options(settings, bind, args.workers, args.tls_cert, args.tls_key)
    except ServeOptionError as exc:
        raise CliError(str(exc), EXIT_USAGE) from None
    if settings.redis_url:
        _check_redis(settings.redis_url)
    if not args.dev and settings.metrics.access != "off":
        prepare_metrics_dir()  # before the app (and prometheus_client) is loaded
    app = _app(args, settings)  # applies the migrations on SQLite, checks them elsewhere
    with app.app_context():
        for line in Services.of(app).key_lines:
            line.ensure_keys()
        _initial_admin(app, settings)
        from .storage.models import db

        db.engine.dispose()  # workers open their own connections after the fork
    if uses_embedded_default(args.config):
        _say(
            settings,
            "embedded default config; demo client `demo`, secret in "
            f"{_instance(args) / DEMO_CLIENT_SECRET_FILE}",
        )
    if args.dev:
        try:
            run_dev(app, bind or settings.server.bind, args.tls_cert, args.tls_key)
        except ServeOptionError as exc:
            raise CliError(str(exc), EXIT_USAGE) from None
    else:
        run_gunicorn(settings, options)
    return 0


def _check_redis(url: str) -> None:
    """Refuse to start on a Redis that does not answer, saying so, before anything is
    changed (issue 11.1). One try, with the store's own timeout."""
    import redis

    from .storage.ephemeral import RedisEphemeralStore

    store = RedisEphemeralStore.from_url(url)
    try:
        store.ping()
    except redis.RedisError as exc:
        # redis-py's message names the host and port, never the URL's password.
        raise CliError(f"cannot reach Redis (redis_url): {exc}") from exc
    finally:
        store.close()


def _initial_admin(app: Flask, settings: Settings) -> None:
    """The first admin of an empty database: from ``initial_admin``, or a one-time
    password printed here (never a fixed default password)."""
    from .identity.users import UserError

    if not settings.local_users:
        return
    try:
        password = Services.of(app).users.ensure_initial_admin(settings.initial_admin)
    except UserError as exc:
        raise CliError(f"initial_admin: {exc}", EXIT_USAGE) from exc
    if password:
        name = settings.initial_admin.username if settings.initial_admin else "admin"
        _show_initial_password(settings, name, password)


def _show_initial_password(settings: Settings, name: str, password: str) -> None:
    """The first admin's one-time password: on the terminal when stderr is one; else
    (a container, a service manager, a log collector) never in the log, but in a file
    readable by the server's user only, beside the secret key, which the log names."""
    if sys.stderr.isatty():
        print(
            f"authserver: the database had no users; created admin `{name}` with the "
            f"one-time password {password}\n"
            "authserver: it is shown only now; sign in and keep it somewhere safe, or reset "
            f"it with `authserver users delete {name}` and `users create {name} --role admin`",
            file=sys.stderr,
            flush=True,
        )
        return
    path = initial_password_path(settings)
    try:
        write_private_file(path, password + "\n")
    except OSError as exc:
        # The admin exists now: a password nobody can read would lock everyone out.
        print(
            f"authserver: cannot write {path} ({exc.strerror}); the one-time password of "
            f"admin `{name}`, shown this once: {password}",
            file=sys.stderr,
            flush=True,
        )
        return
    logging.getLogger("authserver").warning(
        "the database had no users; created admin `%s` with a one-time password, written "
        "to %s (not logged: stderr is not a terminal); it is good for one sign-in, which "
        "asks for a new password",
        name,
        path.resolve(),
    )


def cmd_db_upgrade(args: argparse.Namespace) -> int:
    from .storage.migrations import upgrade_database

    settings = _settings(args)
    _log_migrations(settings)
    with _announcing_new_database(args, settings) as app:
        upgrade_database(app)
    print("database schema is current")
    return 0


def _migration_history(args: argparse.Namespace) -> tuple[list[Migration], set[str], str]:
    """This version's migrations, the database's revisions, and what to call a database
    with none. A SQLite file that does not exist is not created by looking at it."""
    from sqlalchemy.engine import make_url

    from .app import create_app
    from .storage.database import normalize_database_url
    from .storage.migrations import migration_history

    settings = _settings(args)
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
    _print_table(rows)
    return 0


def cmd_hash_secret(args: argparse.Namespace) -> int:
    from .oauth.secrets import hash_secret

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


def cmd_keys_list(args: argparse.Namespace) -> int:
    from .web.admin import keys_json

    app = _app(args)
    with app.app_context():
        statuses = [s for line in Services.of(app).key_lines for s in line.statuses()]
        items = keys_json() if args.output == "json" else []
    if not statuses:
        print("no signing keys yet: the first is made when the server starts", file=sys.stderr)
    if args.output == "json":
        _print_json(items)
        return 0
    rows = [("KID", "ALG", "STATE", "SIGNS FROM", "PUBLISHED UNTIL")]
    for s in statuses:
        until = f"{s.published_until:%Y-%m-%d %H:%M:%S}Z" if s.published_until else "-"
        rows.append((s.kid, s.algorithm, s.state, f"{s.activates_at:%Y-%m-%d %H:%M:%S}Z", until))
    _print_table(rows)
    return 0


def cmd_keys_rotate(args: argparse.Namespace) -> int:
    import time

    app = _app(args)
    with app.app_context():
        # Every line rotates together: a compromised secret key compromises them all.
        lines = Services.of(app).key_lines
        records = [line.rotate(immediate=args.now) for line in lines]
        _audit(
            app,
            "keys_rotated",
            target=",".join(record.kid for record in records),
            immediate=args.now,
        )
        if args.now:
            # Issue 9.4: withdraw the old keys only once every worker signs with the new
            # one, and return only once every worker has dropped them, so that after
            # this command no token signed with a withdrawn key is issued anywhere.
            wait = max(line.propagation_seconds for line in lines)
            print(
                f"the new key signs now; withdrawing the old keys in {wait:.0f} s, "
                "once every worker has switched",
                file=sys.stderr,
                flush=True,
            )
            time.sleep(wait)
            for line, record in zip(lines, records, strict=True):
                line.withdraw_before(record)
            time.sleep(wait)
    for record in records:
        signs_from = f"{record.activates_at:%Y-%m-%d %H:%M:%S}Z"
        print(f"new key {record.kid} ({record.algorithm}) published; signs from {signs_from}")
    if args.now:
        print("older keys withdrawn on every worker")
    return 0


def cmd_audit_prune(args: argparse.Namespace) -> int:
    """Delete audit events older than ``--older-than`` or ``audit_retention``."""
    from datetime import UTC, datetime, timedelta

    from .settings import parse_duration

    settings = _settings(args)
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
    app = _app(args, settings)
    with app.app_context():
        deleted = Services.of(app).audit.prune(before)
        _audit(app, "audit_pruned", before=before.isoformat(), deleted=deleted)
        Services.of(app).events.flush()
    print(f"deleted {deleted} audit events from before {before:%Y-%m-%d %H:%M:%S}Z")
    return 0


def cmd_clients_list(args: argparse.Namespace) -> int:
    settings = _settings(args)
    if args.output == "json":
        from .app import static_clients
        from .oauth.secrets import SecretVerifier
        from .web.admin import client_json

        _print_json([client_json(c) for c in static_clients(settings, SecretVerifier())])
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
    _print_table(rows)
    return 0


# -- users ----------------------------------------------------------------------------


def _actor() -> str:
    """Who acts, for the audit trail: ``cli:<OS user>`` (``cli`` if that is unknown)."""
    try:
        return f"cli:{getpass.getuser()}"
    except Exception:  # no name for this uid, no USER/LOGNAME: still audit it
        return "cli"


def _audit(app: Flask, event: str, **details: Any) -> None:
    """Record an admin change made from here, as the admin API does (``web/admin.py``)."""
    Services.of(app).events(event, actor=_actor(), address="local", **details)


@contextmanager
def _admin(args: argparse.Namespace, settings: Settings | None = None) -> Iterator[Flask]:
    """The app, in its context, with ``UserError`` as a one-line failure."""
    from .identity.users import UserError

    app = _app(args, settings)
    with app.app_context():
        try:
            yield app
        except UserError as exc:
            raise CliError(str(exc)) from None


@contextmanager
def _users(
    args: argparse.Namespace, settings: Settings | None = None
) -> Iterator[tuple[UserService, Flask]]:
    """The user service (and its app), with ``UserError`` as a one-line failure."""
    with _admin(args, settings) as app:
        yield Services.of(app).users, app


def _check_role(settings: Settings, role: str | None) -> None:
    if role is not None and role not in settings.rbac.roles:
        roles = ", ".join(settings.rbac.roles)
        raise CliError(f"unknown role {role!r}; the roles are: {roles}", EXIT_USAGE)


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
    from .identity.users import UserError, validate_email, validate_password, validate_username

    password = None
    try:
        validate_username(args.name)
        if args.email is not None:
            validate_email(args.email)
        if args.password_stdin:
            password = validate_password(_read_password())
    except UserError as exc:
        raise CliError(str(exc), EXIT_USAGE) from None
    settings = _settings(args)
    _check_role(settings, args.role)
    with _users(args, settings) as (users, app):
        person, generated = users.create_local(args.name, password, args.role, args.email)
        details = {"email": person.email} if person.email else {}
        _audit(app, "user_created", target=person.username, role=person.role, **details)
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
    with _users(args) as (users, _):
        people = users.list()
    if not people:
        print("no users yet", file=sys.stderr)
    if args.output == "json":
        from .web.admin import user_json

        _print_json([user_json(person) for person in people])
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
    _print_table(rows)
    return 0


def cmd_users_set_role(args: argparse.Namespace) -> int:
    settings = _settings(args)
    _check_role(settings, args.role)
    with _users(args, settings) as (users, app):
        person = users.set_role(args.name, args.role)
        _audit(app, "user_updated", target=person.username, role=person.role)
    print(f"user {person.username} now has role {person.role}")
    return 0


def cmd_users_set_email(args: argparse.Namespace) -> int:
    from .identity.users import UserError, validate_email

    if (args.email is None) == (not args.remove):
        raise CliError("give an email address, or --remove (not both)", EXIT_USAGE)
    if args.email is not None:
        try:
            validate_email(args.email)
        except UserError as exc:
            raise CliError(str(exc), EXIT_USAGE) from None
    with _users(args) as (users, app):
        person = users.set_email(args.name, args.email)
        _audit(app, "user_updated", target=person.username, email=person.email)
    if person.email:
        print(f"user {person.username} now has the email address {person.email} (verified)")
    else:
        print(f"user {person.username} now has no email address")
    return 0


def cmd_users_delete(args: argparse.Namespace) -> int:
    with _users(args) as (users, app):
        person = users.delete(args.name)
        _audit(app, "user_deleted", target=person.username)
    print(f"deleted user {person.username} and their refresh tokens")
    return 0


def cmd_users_import_csv(args: argparse.Namespace) -> int:
    try:
        if args.file == "-":
            text = sys.stdin.read()
        else:
            with open(args.file, encoding="utf-8-sig", newline="") as stream:
                text = stream.read()
    except (OSError, UnicodeDecodeError) as exc:
        raise CliError(f"cannot read {args.file}: {_os_reason(exc)}", EXIT_USAGE) from None
    import io

    with _users(args) as (users, app):
        count = users.import_csv(io.StringIO(text, newline=""))
        _audit(app, "users_imported", count=count)
    print(f"imported {count} users")
    return 0


def cmd_users_import_htpasswd(args: argparse.Namespace) -> int:
    try:
        if args.file == "-":
            text = sys.stdin.read()
        else:
            with open(args.file, encoding="utf-8-sig") as stream:
                text = stream.read()
    except (OSError, UnicodeDecodeError) as exc:
        raise CliError(f"cannot read {args.file}: {_os_reason(exc)}", EXIT_USAGE) from None
    settings = _settings(args)
    _check_role(settings, args.role)
    with _users(args, settings) as (users, app):
        count = users.import_htpasswd(text.splitlines(), args.role)
        _audit(app, "users_imported", count=count, format="htpasswd")
    print(f"imported {count} users; each one's hash becomes argon2id at their first sign-in")
    return 0


def cmd_users_export_csv(args: argparse.Namespace) -> int:
    import io

    buffer = io.StringIO()
    with _users(args) as (users, _):
        count = users.export_csv(buffer)
    if args.file == "-":
        sys.stdout.write(buffer.getvalue())
    else:
        try:
            with open(args.file, "w", encoding="utf-8", newline="") as stream:
                stream.write(buffer.getvalue())
        except OSError as exc:
            raise CliError(f"cannot write {args.file}: {_os_reason(exc)}", EXIT_USAGE) from None
    print(f"exported {count} users (without passwords)", file=sys.stderr)
    return 0


# -- service accounts -------------------------------------------------------------------


def _service_accounts(app: Flask) -> ServiceAccountService:
    service = Services.of(app).service_accounts
    return service


def _expires_in(value: str | None) -> float | None:
    """``--expires-in``: a duration as in the config (``30d``, ``12h``) or ``never``."""
    from .identity.service_accounts import DEFAULT_EXPIRY_SECONDS
    from .settings import parse_duration

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


def _show_token(verb: str, info: ServiceAccountInfo, token: str) -> None:
    scopes = " ".join(info.scopes) or "none"
    print(
        f"authserver: {verb} service account {info.name} (client id {info.client_id}, "
        f"role {info.role}, scopes {scopes}, expires {_expiry(info)})",
        file=sys.stderr,
    )
    print(
        "authserver: its token, shown this once (use it as the client secret, with or "
        "without the client id):",
        file=sys.stderr,
        flush=True,
    )
    print(token)


def cmd_service_accounts_create(args: argparse.Namespace) -> int:
    from .identity.service_accounts import check_key_algorithm, validate_name
    from .identity.users import AlreadyExists, UserError

    expires_in = _expires_in(args.expires_in)
    scopes = _scopes(args.scope)
    try:
        validate_name(args.name)
        if args.key_file is not None:
            check_key_algorithm(args.key_algorithm)
    except UserError as exc:
        raise CliError(str(exc), EXIT_USAGE) from None
    settings = _settings(args)
    _check_role(settings, args.role)
    with _new_key_file(args.key_file) as stream, _admin(args, settings) as app:
        actor = _actor()
        service = _service_accounts(app)
        key_file: KeyFile | None = None
        try:
            if stream is not None:
                info, key_file = service.create_with_key(
                    args.name,
                    role=args.role,
                    scopes=scopes,
                    expires_in=expires_in,
                    created_by=actor,
                    algorithm=args.key_algorithm,
                )
                token = None
            else:
                info, token = service.create(
                    args.name,
                    role=args.role,
                    scopes=scopes,
                    expires_in=expires_in,
                    created_by=actor,
                )
        except AlreadyExists:
            raise
        except UserError as exc:  # the rest is the input: a scope, the expiry
            raise CliError(str(exc), EXIT_USAGE) from None
        _audit(
            app,
            "service_account_created",
            target=info.name,
            client_id=info.client_id,
            role=info.role,
            scopes=" ".join(info.scopes),
            expires_at=info.expires_at.isoformat() if info.expires_at else None,
            **({"kid": key_file.key_id} if key_file else {}),
        )
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
    from .key_file import KeyFileError, open_new_key_file

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
    from .key_file import dump_key_file

    try:
        dump_key_file(stream, key_file)
    except OSError as exc:
        raise CliError(
            f"cannot write the key file ({_os_reason(exc)}); its key {key_file.key_id} is "
            "stored but unusable: remove it with `service-accounts remove-key`"
        ) from None


def _show_key_file(verb: str, info: ServiceAccountInfo, key_file: KeyFile, path: str) -> None:
    scopes = " ".join(info.scopes) or "none"
    print(
        f"authserver: {verb} service account {info.name} (client id {info.client_id}, "
        f"role {info.role}, scopes {scopes}, expires {_expiry(info)})",
        file=sys.stderr,
    )
    print(
        f"authserver: wrote its key {key_file.key_id} ({key_file.algorithm}) to {path}; "
        "the private key is in that file only. Use it with "
        f"`authserver token --key-file {path}` or AUTHSERVER_CREDENTIALS={path}",
        file=sys.stderr,
    )
    print(key_file.key_id)


def cmd_service_accounts_add_key(args: argparse.Namespace) -> int:
    from .identity.service_accounts import check_key_algorithm
    from .identity.users import UserError

    try:
        check_key_algorithm(args.key_algorithm)
    except UserError as exc:
        raise CliError(str(exc), EXIT_USAGE) from None
    with _new_key_file(args.key_file) as stream, _admin(args) as app:
        assert stream is not None
        info, key_file = _service_accounts(app).add_key(
            args.name, created_by=_actor(), algorithm=args.key_algorithm
        )
        _audit(
            app,
            "service_account_key_added",
            target=info.name,
            client_id=info.client_id,
            kid=key_file.key_id,
            algorithm=key_file.algorithm,
        )
        _write_key_file(stream, key_file)
    _show_key_file("added a key to", info, key_file, args.key_file)
    print("authserver: its other keys keep working until removed (remove-key)", file=sys.stderr)
    return 0


def cmd_service_accounts_remove_key(args: argparse.Namespace) -> int:
    with _admin(args) as app:
        info = _service_accounts(app).remove_key(args.name, args.kid)
        _audit(
            app,
            "service_account_key_removed",
            target=info.name,
            client_id=info.client_id,
            kid=args.kid,
        )
    print(
        f"removed key {args.kid} of service account {info.name}; its access tokens run out "
        "on their own"
    )
    return 0


def cmd_service_accounts_keys(args: argparse.Namespace) -> int:
    with _admin(args) as app:
        keys = _service_accounts(app).keys(args.name)
    if not keys:
        print(f"service account {args.name} has no keys", file=sys.stderr)
    rows = [("KID", "ALGORITHM", "CREATED", "CREATED BY")]
    rows += [(k.kid, k.algorithm, _when(k.created_at), k.created_by or "-") for k in keys]
    _print_table(rows)
    return 0


def cmd_service_accounts_list(args: argparse.Namespace) -> int:
    with _admin(args) as app:
        accounts = _service_accounts(app).list()
    if not accounts:
        print("no service accounts yet", file=sys.stderr)
    if args.output == "json":
        _print_json([info.as_dict() for info in accounts])
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
    _print_table(rows)
    return 0


def cmd_service_accounts_rotate(args: argparse.Namespace) -> int:
    with _admin(args) as app:
        info, token = _service_accounts(app).rotate(args.name)
        _audit(
            app,
            "service_account_rotated",
            target=info.name,
            client_id=info.client_id,
            role=info.role,
        )
    _show_token("rotated", info, token)
    print("authserver: the old token no longer works", file=sys.stderr)
    return 0


def cmd_service_accounts_revoke(args: argparse.Namespace) -> int:
    with _admin(args) as app:
        info = _service_accounts(app).revoke(args.name)
        _audit(
            app,
            "service_account_revoked",
            target=info.name,
            client_id=info.client_id,
            role=info.role,
        )
    print(
        f"revoked service account {info.name} ({info.client_id}); its access tokens "
        "run out on their own"
    )
    return 0


# -- a person's sign-in: login and token (the client side; no config, no database) ---


@contextmanager
def _client_errors() -> Iterator[None]:
    """``LoginError`` as a one-line failure."""
    try:
        from .client import LoginError
    except ImportError as exc:  # requests is not a server dependency
        name = exc.name or "requests"
        raise CliError(f"this command needs the {name} package: pip install {name}") from None
    try:
        yield
    except LoginError as exc:
        raise CliError(str(exc)) from None


def cmd_login(args: argparse.Namespace) -> int:
    with _client_errors():
        from .client import TokenCache, cache_key, login_device, login_loopback

        cache = TokenCache()

        def show(text: str) -> None:
            print(text, file=sys.stderr, flush=True)

        if args.device:
            token = login_device(
                args.issuer, args.client_id, args.scope, show, audience=args.audience
            )
        else:

            def open_browser(url: str) -> None:
                if args.no_browser:
                    show(f"Open this URL in a browser to sign in:\n{url}")
                    return
                show(f"Opening a browser to sign in. If none opens, visit:\n{url}")
                import webbrowser

                webbrowser.open(url)

            token = login_loopback(
                args.issuer, args.client_id, args.scope, open_browser, audience=args.audience
            )
        cache.store(args.issuer, cache_key(args.client_id, args.audience), token)
    granted = f" (scope {token.scope})" if token.scope else ""
    print(
        f"authserver: signed in to {args.issuer}{granted}; tokens cached in {cache.path}",
        file=sys.stderr,
    )
    return 0


def cmd_token(args: argparse.Namespace) -> int:
    with _client_errors():
        if args.federated:
            from .client import exchange_federated_token

            if not args.issuer:
                raise CliError("--federated needs --issuer (the server to trade it at)", EXIT_USAGE)

            print(exchange_federated_token(args.issuer, args.federated, audience=args.audience))
            return 0
        from .client import fresh_access_token, key_file_access_token, key_file_path

        key_file = key_file_path(args.key_file)
        if key_file is not None:
            print(key_file_access_token(key_file, audience=args.audience, scope=args.scope))
            return 0
        if args.scope is not None:
            raise CliError(
                "--scope goes with --key-file (a person's scopes are chosen at login)", EXIT_USAGE
            )
        if not args.issuer:
            raise CliError("the --issuer argument is required (or --key-file)", EXIT_USAGE)
        print(fresh_access_token(args.issuer, args.client_id, audience=args.audience))
    return 0


def _os_reason(exc: Exception) -> str:
    return exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)


def _print_json(items: Sequence[Mapping[str, object]]) -> None:
    """``--output json``: a list of the admin API's objects (its ``items``; times in
    ISO 8601), and nothing else on standard output."""
    import json

    json.dump(list(items), sys.stdout, indent=2)
    print()


def _output_argument(command: argparse.ArgumentParser) -> None:
    command.add_argument(
        "--output",
        choices=("table", "json"),
        default="table",
        help="a table for people, or JSON for scripts: a list of objects as the admin "
        "API returns them (default: %(default)s)",
    )


def _print_table(rows: Sequence[Sequence[str]]) -> None:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print(
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        )


# -- parser -------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    common = _Parser(add_help=False)
    common.add_argument(
        "--config",
        metavar="FILE",
        default=argparse.SUPPRESS,
        help="YAML config file (default: $AUTHSERVER_CONFIG, else the embedded default)",
    )
    common.add_argument(
        "--instance-dir",
        metavar="DIR",
        default=argparse.SUPPRESS,
        help="where the embedded default keeps its state, and a config's unset "
        "database_url and secret_key_file (default: $AUTHSERVER_HOME, else "
        "$XDG_DATA_HOME/authserver, else ~/.local/share/authserver)",
    )
    parser = _Parser(
        prog="authserver",
        description="A self-hosted OAuth 2.1 / OpenID Connect authorization server.",
        parents=[common],
    )
    parser.add_argument("--version", action="version", version=f"authserver {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    commands.required = True

    def add(name: str, handler: Callable[[argparse.Namespace], int], help_text: str, sub=commands):  # type: ignore[no-untyped-def]
        command = sub.add_parser(name, help=help_text, description=help_text, parents=[common])
        command.set_defaults(handler=handler)
        return command

    serve = add("serve", cmd_serve, "run the server (gunicorn)")
    serve.add_argument(
        "--bind",
        metavar="HOST:PORT",
        help="where to listen: HOST:PORT, [IPv6]:PORT, unix:PATH, or PORT for "
        "127.0.0.1:PORT (default: server.bind, 127.0.0.1:8080)",
    )
    serve.add_argument(
        "--workers",
        type=_positive_int,
        metavar="N",
        help="worker processes (default: server.workers, else the CPUs, at least 2)",
    )
    serve.add_argument("--dev", action="store_true", help="Flask's development server, one process")
    serve.add_argument("--tls-cert", metavar="FILE")
    serve.add_argument("--tls-key", metavar="FILE")

    db = commands.add_parser("db", help="database schema", parents=[common])
    db_commands = db.add_subparsers(dest="db_command", metavar="COMMAND", parser_class=_Parser)
    db_commands.required = True
    add("upgrade", cmd_db_upgrade, "apply migrations up to the newest", db_commands)
    add(
        "current", cmd_db_current, "show the database's migration, and what is pending", db_commands
    )
    add("history", cmd_db_history, "list this version's migrations, newest first", db_commands)

    hash_cmd = add("hash-secret", cmd_hash_secret, "read a secret on stdin, print its hash")
    hash_cmd.add_argument("--scheme", choices=("bcrypt", "argon2id"), default="bcrypt")

    keys = commands.add_parser("keys", help="signing keys", parents=[common])
    keys_commands = keys.add_subparsers(
        dest="keys_command", metavar="COMMAND", parser_class=_Parser
    )
    keys_commands.required = True
    _output_argument(add("list", cmd_keys_list, "list signing keys and their state", keys_commands))
    rotate = add("rotate", cmd_keys_rotate, "publish a new signing key", keys_commands)
    rotate.add_argument(
        "--now",
        action="store_true",
        help="sign with it at once (a compromised key), not after publish_ahead",
    )

    audit = commands.add_parser("audit", help="the audit log", parents=[common])
    audit_commands = audit.add_subparsers(
        dest="audit_command", metavar="COMMAND", parser_class=_Parser
    )
    audit_commands.required = True
    prune = add("prune", cmd_audit_prune, "delete audit events past the retention", audit_commands)
    prune.add_argument(
        "--older-than",
        metavar="DURATION",
        help="delete events older than this (e.g. 90d); default: audit_retention",
    )

    clients = commands.add_parser("clients", help="clients", parents=[common])
    clients_commands = clients.add_subparsers(
        dest="clients_command", metavar="COMMAND", parser_class=_Parser
    )
    clients_commands.required = True
    _output_argument(
        add("list", cmd_clients_list, "list the static clients of the config", clients_commands)
    )

    users = commands.add_parser(
        "users", help="people: local, federated and proxy users", parents=[common]
    )
    users_commands = users.add_subparsers(
        dest="users_command", metavar="COMMAND", parser_class=_Parser
    )
    users_commands.required = True
    create = add(
        "create",
        cmd_users_create,
        "create a local user (a random password is printed once unless --password-stdin)",
        users_commands,
    )
    create.add_argument("name", metavar="NAME")
    create.add_argument("--role", metavar="ROLE", help="one of rbac.roles (default: default_role)")
    create.add_argument(
        "--password-stdin", action="store_true", help="read the password from standard input"
    )
    create.add_argument(
        "--email", metavar="ADDR", help="their email address (an admin's word: verified)"
    )
    _output_argument(add("list", cmd_users_list, "list every user", users_commands))
    set_role = add("set-role", cmd_users_set_role, "change a user's role", users_commands)
    set_role.add_argument("name", metavar="NAME")
    set_role.add_argument("role", metavar="ROLE")
    set_email = add(
        "set-email",
        cmd_users_set_email,
        "set or remove a local user's email address (an admin's word: verified)",
        users_commands,
    )
    set_email.add_argument("name", metavar="NAME")
    set_email.add_argument("email", metavar="ADDR", nargs="?")
    set_email.add_argument("--remove", action="store_true", help="remove the address instead")
    delete = add(
        "delete", cmd_users_delete, "delete a user and their refresh tokens", users_commands
    )
    delete.add_argument("name", metavar="NAME")
    import_csv = add(
        "import-csv",
        cmd_users_import_csv,
        "create local users from CSV username,password,role[,email] (all or none)",
        users_commands,
    )
    import_csv.add_argument("file", metavar="FILE", help="the CSV file; - for standard input")
    import_htpasswd = add(
        "import-htpasswd",
        cmd_users_import_htpasswd,
        "create local users from htpasswd lines user:hash (bcrypt, $apr1$, $5$, $6$; all or none)",
        users_commands,
    )
    import_htpasswd.add_argument(
        "file", metavar="FILE", help="the htpasswd file; - for standard input"
    )
    import_htpasswd.add_argument(
        "--role", metavar="ROLE", help="the role of every one (default: default_role)"
    )
    export_csv = add(
        "export-csv",
        cmd_users_export_csv,
        "write every user as CSV username,,role,email (never passwords)",
        users_commands,
    )
    export_csv.add_argument("file", metavar="FILE", help="the CSV file; - for standard output")

    accounts = commands.add_parser(
        "service-accounts",
        help="service accounts: tokens for CI jobs and services",
        parents=[common],
    )
    accounts_commands = accounts.add_subparsers(
        dest="service_accounts_command", metavar="COMMAND", parser_class=_Parser
    )
    accounts_commands.required = True
    sa_create = add(
        "create",
        cmd_service_accounts_create,
        "create a service account and print its token, once",
        accounts_commands,
    )
    sa_create.add_argument("name", metavar="NAME")
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
    _key_file_arguments(sa_create, required=False)
    _output_argument(
        add("list", cmd_service_accounts_list, "list service accounts", accounts_commands)
    )
    sa_add_key = add(
        "add-key",
        cmd_service_accounts_add_key,
        "give a service account one more key, written to a new key file; its other "
        "keys keep working (rotation without downtime)",
        accounts_commands,
    )
    sa_add_key.add_argument("name", metavar="NAME")
    _key_file_arguments(sa_add_key, required=True)
    sa_remove_key = add(
        "remove-key",
        cmd_service_accounts_remove_key,
        "remove a key of a service account: its key file stops working",
        accounts_commands,
    )
    sa_remove_key.add_argument("name", metavar="NAME")
    sa_remove_key.add_argument("kid", metavar="KID", help="the key id (service-accounts keys NAME)")
    sa_keys = add(
        "keys", cmd_service_accounts_keys, "list the keys of a service account", accounts_commands
    )
    sa_keys.add_argument("name", metavar="NAME")
    sa_rotate = add(
        "rotate",
        cmd_service_accounts_rotate,
        "give a service account a new token (printed once); the old one stops working",
        accounts_commands,
    )
    sa_rotate.add_argument("name", metavar="NAME")
    sa_revoke = add(
        "revoke",
        cmd_service_accounts_revoke,
        "delete a service account: its token stops working",
        accounts_commands,
    )
    sa_revoke.add_argument("name", metavar="NAME")

    login = add(
        "login",
        cmd_login,
        "sign in as a person (PKCE with a loopback redirect, or --device) and cache the tokens",
    )
    _client_arguments(login)
    login.add_argument(
        "--scope",
        default="openid profile offline_access",
        help="space-separated scopes (default: %(default)s)",
    )
    login.add_argument(
        "--device", action="store_true", help="the device flow: approve on another device"
    )
    login.add_argument(
        "--no-browser", action="store_true", help="print the sign-in URL instead of opening it"
    )
    token = add("token", cmd_token, "print a fresh access token (refreshed when needed)")
    _client_arguments(token, issuer_required=False)
    token.add_argument(
        "--key-file",
        metavar="PATH",
        help="a service-account key file (default: $AUTHSERVER_CREDENTIALS): client "
        "credentials with private_key_jwt; the issuer is the file's",
    )
    token.add_argument(
        "--scope", metavar="SCOPES", help="with --key-file: space-separated scopes to ask for"
    )
    token.add_argument(
        "--federated",
        metavar="TOKEN|@FILE|env:VAR",
        help="trade this OIDC token of a CI job or Kubernetes (workload identity "
        "federation, RFC 8693) for an access token; no sign-in or secret needed",
    )
    return parser


def _key_file_arguments(command: argparse.ArgumentParser, *, required: bool) -> None:
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


def _client_arguments(command: argparse.ArgumentParser, *, issuer_required: bool = True) -> None:
    command.add_argument(
        "--issuer", required=issuer_required, metavar="URL", help="the server's issuer URL"
    )
    command.add_argument(
        "--client-id", default="cli", metavar="ID", help="a public client (default: %(default)s)"
    )
    command.add_argument(
        "--audience",
        metavar="URL",
        help="the API the tokens are for (RFC 8707 resource), e.g. ISSUER/api/v1 for the "
        "admin API; each audience signs in and is cached apart",
    )


def _positive_int(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a whole number") from None
    if number < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return number


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "config"):
        args.config = None
    if not hasattr(args, "instance_dir"):
        args.instance_dir = None
    # Until the settings say otherwise (see _settings): text, ours from info on.
    configure_logging()
    try:
        handler: Callable[[argparse.Namespace], int] = args.handler
        code = handler(args)
        # A reader that went away (``users list | head``) shows here, not as an
        # "Exception ignored" at the interpreter's exit.
        sys.stdout.flush()
        return code
    except BrokenPipeError:
        return _stdout_closed()
    except SettingsError as exc:
        print(f"authserver: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except CliError as exc:
        print(f"authserver: error: {exc}", file=sys.stderr)
        return exc.code
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # the last line of defence: no traceback at users
        if os.environ.get("AUTHSERVER_DEBUG"):
            raise
        if _is_missing_postgres_driver(exc):
            print(f"authserver: error: {POSTGRES_DRIVER_MISSING}", file=sys.stderr)
            return EXIT_USAGE
        print(f"authserver: error: {_describe(exc)}", file=sys.stderr)
        return EXIT_FAILURE


POSTGRES_DRIVER_MISSING = (
    "database_url names PostgreSQL, whose driver (psycopg) is not installed: "
    "pip install 'authserver[postgres]'"
)


def _is_missing_postgres_driver(exc: BaseException) -> bool:
    """SQLAlchemy imports the driver when the engine is made: without the ``postgres``
    extra that is a ``ModuleNotFoundError`` for ``psycopg`` (or one of its parts)."""
    return isinstance(exc, ModuleNotFoundError) and (exc.name or "").split(".")[0] == "psycopg"


#: The exit status of a command whose reader closed its standard output: a shell's for
#: a process ended by SIGPIPE (128 + 13), as ``seq 1 100000 | head`` reports it, so that
#: ``set -o pipefail`` tells a cut-short listing from a whole one.
EXIT_BROKEN_PIPE = 141


def _stdout_closed() -> int:
    """Standard output's reader is gone: stop quietly, as Python's documentation
    recommends (``signal`` module, "Note on SIGPIPE"): what is still buffered goes to
    ``os.devnull``, so that the flush at exit raises nothing either."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
    return EXIT_BROKEN_PIPE


def _describe(exc: Exception) -> str:
    from sqlalchemy.exc import OperationalError

    if isinstance(exc, OperationalError):
        return f"cannot use the database: {str(exc.orig).strip().splitlines()[0]}"
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


if __name__ == "__main__":
    sys.exit(main())
