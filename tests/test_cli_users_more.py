"""``authserver users set-password|disable|enable|show``, the last admin, ``--output``
on the show commands and ``import-csv``'s progress (issue 13.4-5), through the entry
point (a real subprocess), on both databases."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from authserver.admin.shapes import user_json

from . import test_users_cli as base
from .support.factories import PASSWORD
from .support.servers import authserver_command, command_env, require_live_marker
from .test_users_cli import Cli, fails, listed, ok

pytestmark = pytest.mark.live

cli = base.cli  # the fixture: a config on SQLite or an emptied PostgreSQL

NEW = "a brand new long password"


def test_set_password_from_stdin_or_generated(cli: Cli) -> None:
    ok(cli("users", "create", "alice", "--password-stdin", input_text=PASSWORD + "\n"))
    service = cli.service()
    generation = service.by_username("alice").credentials_generation  # type: ignore[union-attr]

    given = ok(cli("users", "set-password", "ALICE", "--password-stdin", input_text=NEW + "\n"))
    assert given.stdout == ""  # nothing generated, nothing printed
    assert "set a new password for alice" in given.stderr
    assert service.authenticate("alice", NEW) is not None
    assert service.authenticate("alice", PASSWORD) is None

    for flags in ((), ("--generate",)):
        generated = ok(cli("users", "set-password", "alice", *flags, input_text=""))
        password = generated.stdout.strip()
        assert generated.stdout == password + "\n"
        assert len(password) >= 20
        assert "shown this once" in generated.stderr
        assert service.authenticate("alice", password) is not None
        assert service.authenticate("alice", NEW) is None
    # Each change ended the sessions and tokens of the one before (issue 16.2).
    person = service.by_username("alice")
    assert person is not None
    assert person.credentials_generation == generation + 3

    before = service.by_username("alice")
    fails(
        cli("users", "set-password", "alice", "--password-stdin", input_text="short\n"),
        2,
        "at least 12",
    )
    fails(
        cli("users", "set-password", "alice", "--password-stdin", input_text=""),
        2,
        "no password on standard input",
    )
    fails(cli("users", "set-password", "ghost"), 1, "no user 'ghost'")
    both = cli("users", "set-password", "alice", "--password-stdin", "--generate")
    assert both.returncode == 2
    assert "not allowed with argument" in both.stderr
    service.provisioning.proxy_user("pat@example.com")
    pat = service.by_username("pat@example.com")
    fails(
        cli("users", "set-password", "pat@example.com"),
        1,
        "user 'pat@example.com' signs in through proxy; it has no password here",
    )
    assert service.by_username("pat@example.com") == pat
    assert service.by_username("alice") == before
    events = [(e, t, d) for e, actor, t, d in cli.audit() if actor and actor.startswith("cli")]
    assert events[1:] == [("password_changed", "alice", {})] * 3


def test_disable_and_enable(cli: Cli) -> None:
    ok(cli("users", "create", "bob", "--password-stdin", input_text=PASSWORD + "\n"))
    disabled = ok(cli("users", "disable", "bob"))
    assert disabled.stdout == "user bob is disabled: they can no longer sign in\n"
    assert listed(cli)["bob"][-1] == "yes"
    assert cli.service().authenticate("bob", PASSWORD) is None
    ok(cli("users", "disable", "bob"))  # again: no change, no event
    assert ok(cli("users", "enable", "BOB")).stdout == "user bob is enabled\n"
    assert listed(cli)["bob"][-1] == "no"
    assert cli.service().authenticate("bob", PASSWORD) is not None
    fails(cli("users", "enable", "ghost"), 1, "no user 'ghost'")
    assert [(e, t, d) for e, _, t, d in cli.audit()][1:] == [
        ("user_updated", "bob", {"disabled": True}),
        ("user_updated", "bob", {"disabled": False}),
    ]


def test_the_last_admin_stays(cli: Cli) -> None:
    ok(cli("users", "create", "root", "--role", "admin"))
    ok(cli("users", "create", "carl"))
    before = listed(cli)
    for args, what in (
        (("set-role", "root", "user"), "take the admin role from"),
        (("disable", "root"), "disable"),
        (("delete", "ROOT"), "delete"),
    ):
        result = cli("users", *args)
        fails(result, 1, "")
        assert result.stderr == (
            f"authserver: error: refusing to {what} 'root': they are the last enabled admin; "
            "make another admin first\n"
        )
        assert listed(cli) == before
    assert [e for e, _, _, _ in cli.audit()] == ["user_created", "user_created"]
    # Another admin first, and then it may be done.
    ok(cli("users", "set-role", "carl", "admin"))
    ok(cli("users", "disable", "root"))
    fails(cli("users", "delete", "carl"), 1, "refusing to delete 'carl'")
    ok(cli("users", "enable", "root"))
    ok(cli("users", "delete", "carl"))
    assert listed(cli)["root"][0] == "admin"


def test_show_commands_print_a_table_or_one_json_object(cli: Cli) -> None:
    ok(cli("users", "create", "dora", "--role", "admin", "--email", "dora@example.com"))
    shown = json.loads(ok(cli("users", "show", "DORA", "--output", "json")).stdout)
    person = cli.service().by_username("dora")
    assert person is not None
    assert shown == json.loads(json.dumps(user_json(person)))
    table = ok(cli("users", "show", "dora")).stdout.splitlines()
    assert table[0].split() == ["FIELD", "VALUE"]
    fields = dict(line.split(None, 1) for line in table[1:])
    assert fields["username"] == "dora"
    assert fields["email"] == "dora@example.com"
    assert fields["disabled"] == "no"
    assert fields["last_login_at"] == "-"
    fails(cli("users", "show", "ghost", "--output", "json"), 1, "no user 'ghost'")
    bad = cli("users", "show", "dora", "--output", "yaml")
    assert bad.returncode == 2
    assert "invalid choice: 'yaml'" in bad.stderr

    key_file = cli.workdir / "deploy.json"
    ok(cli("service-accounts", "create", "deploy", "--key-file", str(key_file)))
    account = json.loads(ok(cli("service-accounts", "show", "deploy", "--output", "json")).stdout)
    assert account["name"] == "deploy"
    listing = json.loads(ok(cli("service-accounts", "list", "--output", "json")).stdout)
    assert listing == [account]
    keys = json.loads(ok(cli("service-accounts", "keys", "deploy", "--output", "json")).stdout)
    kid = json.loads(key_file.read_text())["key_id"]
    assert [key["kid"] for key in keys] == [kid]
    assert set(keys[0]) == {"kid", "algorithm", "created_at", "created_by"}
    assert ok(cli("service-accounts", "keys", "deploy")).stdout.split()[:4] == [
        "KID",
        "ALGORITHM",
        "CREATED",
        "CREATED",
    ]
    assert "deploy" in ok(cli("service-accounts", "show", "deploy")).stdout
    fails(cli("service-accounts", "show", "ghost"), 1, "ghost")


def _csv(path: Path, count: int) -> Path:
    lines = ["username,password,role"]
    lines += [f"user{i},password number {i:04d},user" for i in range(count)]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_import_csv_ends_with_a_summary_and_shows_progress_only_on_a_tty(cli: Cli) -> None:
    piped = ok(cli("users", "import-csv", str(_csv(cli.workdir / "a.csv", 2))))
    assert piped.stdout == (
        "imported 2 users (2 created; an import never changes existing users)\n"
    )
    assert "hashing" not in piped.stderr

    # stderr a terminal: a counter line, rewritten in place, then the line ends.
    require_live_marker("the authserver CLI")
    source = cli.workdir / "b.csv"
    source.write_text(
        "username,password,role\n"
        + "".join(f"tty{i},password number {i:04d},user\n" for i in range(3))
    )
    controller, terminal = os.openpty()
    try:
        result = subprocess.run(
            [
                *authserver_command(),
                "--config",
                str(cli.config),
                "users",
                "import-csv",
                str(source),
            ],
            cwd=cli.workdir,
            stdout=subprocess.PIPE,
            stderr=terminal,
            stdin=subprocess.DEVNULL,
            env=command_env(cli.workdir, None),
            timeout=120,
            check=False,
        )
        os.close(terminal)
        terminal = -1
        shown = b""
        while True:
            try:
                chunk = os.read(controller, 4096)
            except OSError:  # Linux: EIO once the other side is closed and drained
                break
            if not chunk:
                break
            shown += chunk
    finally:
        if terminal != -1:
            os.close(terminal)
        os.close(controller)
    assert result.returncode == 0, shown
    text = shown.decode()
    assert "\rhashing passwords: 1/3" in text
    assert "\rhashing passwords: 3/3\r\n" in text  # the terminal's newline
    assert result.stdout.decode().startswith("imported 3 users (3 created;")
    assert sorted(name for name in listed(cli) if name.startswith("tty")) == [
        "tty0",
        "tty1",
        "tty2",
    ]
