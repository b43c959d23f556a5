"""``authserver serve``: run the server (gunicorn, or Flask's development server)."""

from __future__ import annotations

import argparse
import logging
import sys
from typing import TYPE_CHECKING

from ..bootstrap import (
    DEMO_CLIENT_SECRET_FILE,
    INITIAL_PASSWORD_FILE,
    initial_password_path,
    write_private_file,
)
from ..settings import Settings, uses_embedded_default
from .context import cli_settings, database_app, instance_path, log_migrations, say
from .output import EXIT_USAGE, CliError, add_command

if TYPE_CHECKING:
    from flask import Flask

    from .output import Parser, Subcommands


def cmd_serve(args: argparse.Namespace) -> int:
    from ..serve import (
        ServeOptionError,
        gunicorn_options,
        prepare_metrics_dir,
        run_dev,
        run_gunicorn,
    )
    from ..settings import parse_bind

    if bool(args.tls_cert) != bool(args.tls_key):
        raise CliError("--tls-cert and --tls-key go together", EXIT_USAGE)
    try:
        bind = None if args.bind is None else parse_bind(args.bind)
    except ValueError as exc:
        raise CliError(f"--bind: {exc}", EXIT_USAGE) from None
    settings = cli_settings(args)
    log_migrations(settings)
    try:
        options = gunicorn_options(settings, bind, args.workers, args.tls_cert, args.tls_key)
    except ServeOptionError as exc:
        raise CliError(str(exc), EXIT_USAGE) from None
    if settings.redis_url:
        _check_redis(settings.redis_url)
    if not args.dev and settings.metrics.access != "off":
        prepare_metrics_dir()  # before the app (and prometheus_client) is loaded
    app = database_app(args, settings)  # applies the migrations on SQLite, checks them elsewhere
    from ..web.services import Services

    with app.app_context():
        for line in Services.of(app).key_lines:
            line.ensure_keys()
        _initial_admin(app, settings)
        from ..storage.models import db

        db.engine.dispose()  # workers open their own connections after the fork
    if uses_embedded_default(args.config):
        say(
            settings,
            "embedded default config; demo client `demo`, secret in "
            f"{instance_path(args) / DEMO_CLIENT_SECRET_FILE}",
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

    from ..storage.ephemeral import RedisEphemeralStore

    store = RedisEphemeralStore.from_url(url)
    try:
        store.ping()
    except redis.RedisError as exc:
        # redis-py's message names the host and port, never the URL's password.
        raise CliError(f"cannot reach Redis (redis_url): {exc}") from exc
    finally:
        store.close()


__all__ = ["INITIAL_PASSWORD_FILE"]


def _initial_admin(app: Flask, settings: Settings) -> None:
    """The first admin of an empty database: from ``initial_admin``, or a one-time
    password printed here (never a fixed default password)."""
    from ..identity.users import UserError

    if not settings.local_users:
        return
    try:
        from ..web.services import Services

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


def positive_int(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a whole number") from None
    if number < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return number


def register(sub: Subcommands, common: Parser) -> None:
    serve = add_command(sub, common, "serve", cmd_serve, "run the server (gunicorn)")
    serve.add_argument(
        "--bind",
        metavar="HOST:PORT",
        help="where to listen: HOST:PORT, [IPv6]:PORT, unix:PATH, or PORT for "
        "127.0.0.1:PORT (default: server.bind, 127.0.0.1:8080)",
    )
    serve.add_argument(
        "--workers",
        type=positive_int,
        metavar="N",
        help="worker processes (default: server.workers, else the CPUs, at least 2)",
    )
    serve.add_argument("--dev", action="store_true", help="Flask's development server, one process")
    serve.add_argument(
        "--tls-cert", metavar="FILE", help="serve https with this PEM certificate (with --tls-key)"
    )
    serve.add_argument("--tls-key", metavar="FILE", help="the certificate's PEM private key")
