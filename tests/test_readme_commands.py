"""README's command table lists every command the CLI has (issue 13: "README's command
table lists every command"), so a new command cannot land undocumented."""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from pathlib import Path

from authserver.cli import build_parser

README = Path(__file__).resolve().parent.parent / "README.md"


def _commands(parser: argparse.ArgumentParser, prefix: tuple[str, ...] = ()) -> Iterator[str]:
    groups = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not groups:
        yield " ".join(prefix)
        return
    for group in groups:
        for name, sub in group.choices.items():
            yield from _commands(sub, (*prefix, name))


def _command_table() -> str:
    """The rows of the table under "The commands so far"."""
    text = README.read_text(encoding="utf-8")
    start = text.index("The commands so far")
    rows = []
    for line in text[start:].splitlines()[1:]:
        if rows and not line.startswith("|"):
            break
        if line.startswith("| `authserver "):
            rows.append(line.split(" | ", 1)[0])
    return "\n".join(rows)


def test_every_command_is_in_the_readme_table() -> None:
    table = _command_table()
    commands = list(_commands(build_parser()))
    assert len(commands) > 30  # the walk found the command groups
    missing = [c for c in commands if f"`authserver {c}" not in table and f"`{c}" not in table]
    assert not missing, f"README's command table lacks: {', '.join(missing)}"


def _options(
    parser: argparse.ArgumentParser, prefix: tuple[str, ...] = ()
) -> Iterator[tuple[str, argparse.Action]]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _options(sub, (*prefix, name))
        elif not isinstance(action, argparse._HelpAction):
            yield " ".join(prefix), action


def test_every_option_says_what_it_is_and_its_default() -> None:
    """Issue 13.5: every option and argument of every command has help text, and an
    option with a default says it (``--help`` is the reference at the terminal)."""
    options = list(_options(build_parser()))
    assert len(options) > 100
    silent = [
        f"{command} {'/'.join(action.option_strings) or action.dest}"
        for command, action in options
        if not action.help or action.help == argparse.SUPPRESS
    ]
    assert not silent, f"no help text: {', '.join(silent)}"
    unsaid = [
        f"{command} {'/'.join(action.option_strings)}"
        for command, action in options
        if action.option_strings
        and action.default not in (None, False, argparse.SUPPRESS)
        and "default" not in str(action.help)
    ]
    assert not unsaid, f"a default that --help does not show: {', '.join(unsaid)}"
