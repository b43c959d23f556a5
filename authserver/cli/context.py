"""The settings and the app of a command that uses the database, and who acts, for the
audit trail."""

from __future__ import annotations

import argparse
import getpass
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from ..bootstrap import prepare_embedded_default
from ..logs import configure_logging
from ..settings import (
    Settings,
    instance_dir,
    load_settings,
    uses_embedded_default,
)
from .output import EXIT_USAGE, CliError

if TYPE_CHECKING:
    from flask import Flask

    from ..admin.audit import Actor
    from ..admin.keys import KeyAdmin
    from ..admin.service_accounts import ServiceAccountAdmin
    from ..admin.users import UserAdmin


def instance_path(args: argparse.Namespace) -> Path:
    """The instance directory: ``--instance-dir``, else :func:`instance_dir`."""
    if args.instance_dir:
        return Path(args.instance_dir).expanduser().absolute()
    return instance_dir()


def cli_settings(args: argparse.Namespace) -> Settings:
    instance = instance_path(args)
    if uses_embedded_default(args.config):
        prepare_embedded_default(instance)
    settings = load_settings(args.config, instance=instance)
    configure_logging(settings.log_format, settings.log_level)
    return settings


def database_app(args: argparse.Namespace, settings: Settings | None = None) -> Flask:
    """The app, for commands that use the database.

    On SQLite (the embedded default) the schema is brought up to date first, as
    ``serve`` does; on PostgreSQL that stays the explicit ``db upgrade``, and a schema
    behind it is one line that says so (not the first query's missing table).
    """
    from ..app import create_app
    from ..storage.migrations import pending_migrations, upgrade_database

    settings = settings or cli_settings(args)
    if not settings.is_sqlite:
        app = create_app(settings)
        if pending_migrations(app):
            raise CliError("the database schema is not current: run `authserver db upgrade` first")
        return app
    with announcing_new_database(args, settings) as app:
        upgrade_database(app)
    return app


@contextmanager
def announcing_new_database(args: argparse.Namespace, settings: Settings) -> Iterator[Flask]:
    """The app, for a body that migrates its database; then, if that database was new,
    one line on stderr says where it is (state never lands in a surprise place)."""
    from sqlalchemy.engine import make_url

    from ..app import create_app
    from ..storage.database import normalize_database_url
    from ..storage.migrations import is_empty_database

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
    say(settings, what)
    legacy = Path.cwd() / "instance" / "authserver.db"
    if uses_embedded_default(args.config) and legacy.exists() and legacy != sqlite_file:
        say(
            settings,
            f"note: {legacy.parent} is no longer used; the embedded default "
            f"keeps its state in {instance_path(args)} (AUTHSERVER_HOME={legacy.parent} or "
            "--instance-dir picks the old one)",
        )


def say(settings: Settings, text: str) -> None:
    """A notice on stderr: a plain line, or a log record when the logs are JSON (then
    every line ``serve`` writes is one)."""
    if settings.log_format == "json":
        logging.getLogger("authserver").warning(text)
    else:
        print(f"authserver: {text}", file=sys.stderr, flush=True)


def log_migrations(settings: Settings) -> None:
    """Show the migrations being applied, for the commands whose job includes that
    (unless ``log_level`` asks for less)."""
    level = max(logging.INFO, logging.getLevelName(settings.log_level.upper()))
    logging.getLogger("alembic.runtime.migration").setLevel(level)


def cli_actor() -> Actor:
    """Who acts, for the audit trail: ``cli:<OS user>`` (``cli`` if that is unknown),
    from ``local``."""
    from ..admin.audit import Actor

    try:
        name = f"cli:{getpass.getuser()}"
    except Exception:  # no name for this uid, no USER/LOGNAME: still audit it
        name = "cli"
    return Actor(name=name, address="local")


def user_admin(app: Flask) -> UserAdmin:
    """The operations on people (``authserver.admin``), done from here."""
    from ..admin.users import UserAdmin
    from ..web.services import Services

    services = Services.of(app)
    return UserAdmin(services.users, services.settings.rbac, services.events, cli_actor())


def service_account_admin(app: Flask) -> ServiceAccountAdmin:
    """The operations on service accounts, done from here."""
    from ..admin.service_accounts import ServiceAccountAdmin
    from ..web.services import Services

    services = Services.of(app)
    return ServiceAccountAdmin(services.service_accounts, services.events, cli_actor())


def key_admin(app: Flask) -> KeyAdmin:
    """The operations on the signing keys, done from here."""
    from ..admin.keys import KeyAdmin
    from ..web.services import Services

    services = Services.of(app)
    return KeyAdmin(list(services.key_lines), services.events, cli_actor())


@contextmanager
def admin_app(args: argparse.Namespace, settings: Settings | None = None) -> Iterator[Flask]:
    """The app, in its context, with ``UserError`` as a one-line failure."""
    from ..identity.users import UserError

    app = database_app(args, settings)
    with app.app_context():
        try:
            yield app
        except UserError as exc:
            raise CliError(str(exc)) from None


@contextmanager
def users_admin(args: argparse.Namespace, settings: Settings | None = None) -> Iterator[UserAdmin]:
    """The operations on people, with ``UserError`` as a one-line failure."""
    with admin_app(args, settings) as app:
        yield user_admin(app)


def check_role(settings: Settings, role: str | None) -> None:
    if role is not None and role not in settings.rbac.roles:
        roles = ", ".join(settings.rbac.roles)
        raise CliError(f"unknown role {role!r}; the roles are: {roles}", EXIT_USAGE)
