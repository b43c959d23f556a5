"""What every command shares: its errors (one line, an exit code), its parser class,
and the table and JSON output of the listings (DESIGN.md, "CLI")."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, NoReturn

#: What a command runs: the parsed arguments in, the exit status out.
Handler = Callable[[argparse.Namespace], int]


EXIT_FAILURE = 1


EXIT_USAGE = 2


class CliError(Exception):
    """A failure to report as one line, with an exit code."""

    def __init__(self, message: str, code: int = EXIT_FAILURE) -> None:
        super().__init__(message)
        self.code = code


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"authserver: error: {message}\n")


def os_reason(exc: Exception) -> str:
    return exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)


def print_json(items: Sequence[Mapping[str, object]]) -> None:
    """``--output json``: a list of the admin API's objects (its ``items``; times in
    ISO 8601), and nothing else on standard output."""
    import json

    json.dump(list(items), sys.stdout, indent=2)
    print()


def print_object(item: Mapping[str, object]) -> None:
    """``--output json`` of a ``show`` command: the one object the admin API returns
    for it, and nothing else on standard output."""
    import json

    json.dump(dict(item), sys.stdout, indent=2)
    print()


def print_fields(item: Mapping[str, object]) -> None:
    """``--output table`` of a ``show`` command: one ``field  value`` line each."""
    rows = [("FIELD", "VALUE")]
    for key, value in item.items():
        if value is None or value == []:
            text = "-"
        elif isinstance(value, bool):
            text = "yes" if value else "no"
        elif isinstance(value, list):
            text = ",".join(str(part) for part in value)
        else:
            text = str(value)
        rows.append((key, text))
    print_table(rows)


def output_argument(command: argparse.ArgumentParser, *, one: bool = False) -> None:
    """``--output table|json``: of a listing (a list of objects) or, with ``one``, of a
    ``show`` command (one object)."""
    what = "one object" if one else "a list of objects"
    command.add_argument(
        "--output",
        choices=("table", "json"),
        default="table",
        help=f"a table for people, or JSON for scripts: {what} as the admin "
        "API returns them (default: %(default)s)",
    )


def print_table(rows: Sequence[Sequence[str]]) -> None:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print(
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        )


if TYPE_CHECKING:
    #: The subcommands of ``authserver`` or of one of its groups (``users``, ``keys``, …).
    Subcommands = argparse._SubParsersAction["Parser"]


def add_command(
    sub: Subcommands,
    common: Parser,
    name: str,
    handler: Handler,
    help_text: str,
) -> argparse.ArgumentParser:
    """A command ``name`` that runs ``handler``, with the options every command takes."""
    command = sub.add_parser(name, help=help_text, description=help_text, parents=[common])
    command.set_defaults(handler=handler)
    return command


def name_argument(
    command: argparse.ArgumentParser, help_text: str = "the service account's name"
) -> argparse.ArgumentParser:
    """The NAME of the one thing a command is about (``authserver GROUP COMMAND NAME``)."""
    command.add_argument("name", metavar="NAME", help=help_text)
    return command


def add_group(
    sub: Subcommands,
    common: Parser,
    name: str,
    help_text: str,
    dest: str,
) -> Subcommands:
    """A group of commands (``authserver NAME COMMAND``); one of them is required."""
    group = sub.add_parser(name, help=help_text, parents=[common])
    commands = group.add_subparsers(dest=dest, metavar="COMMAND", parser_class=Parser)
    commands.required = True
    return commands
