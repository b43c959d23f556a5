"""The ``authserver`` command (DESIGN.md, "CLI"): one module per command group.

Errors are one clear line on stderr and a non-zero exit (2 for bad usage or config),
never a traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from .. import __version__
from ..logs import configure_logging
from ..settings import SettingsError
from . import audit, clients, db, keys, login, serve, service_accounts, users
from .output import EXIT_FAILURE, EXIT_USAGE, CliError, Handler, Parser
from .serve import INITIAL_PASSWORD_FILE

__all__ = [
    "EXIT_BROKEN_PIPE",
    "EXIT_FAILURE",
    "EXIT_USAGE",
    "INITIAL_PASSWORD_FILE",
    "CliError",
    "build_parser",
    "main",
]


def build_parser() -> argparse.ArgumentParser:
    common = Parser(add_help=False)
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
    parser = Parser(
        prog="authserver",
        description="A self-hosted OAuth 2.1 / OpenID Connect authorization server.",
        parents=[common],
    )
    parser.add_argument("--version", action="version", version=f"authserver {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    commands.required = True
    # In the order of ``authserver --help``.
    serve.register(commands, common)
    db.register(commands, common)
    clients.register_hash_secret(commands, common)
    keys.register(commands, common)
    audit.register(commands, common)
    clients.register(commands, common)
    users.register(commands, common)
    service_accounts.register(commands, common)
    login.register(commands, common)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "config"):
        args.config = None
    if not hasattr(args, "instance_dir"):
        args.instance_dir = None
    # Until the settings say otherwise (see cli_settings): text, ours from info on.
    configure_logging()
    try:
        handler: Handler = args.handler
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
