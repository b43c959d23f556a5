"""``authserver users ...`` through the entry point (a real subprocess), on both databases."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import sqlalchemy as sa
import yaml

from authserver.identity.users import UserService
from authserver.settings import RbacSettings
from authserver.storage.audit import SqlAuditLog
from authserver.storage.users import SqlUserRepository

from .support.factories import PASSWORD, empty_pg, standard_config
from .support.servers import run_cli, stderr_lines
from .test_htpasswd import FORMS, htpasswd

pytestmark = pytest.mark.live


@dataclass
class Cli:
    config: Path
    workdir: Path
    database_url: str
    engines: list[sa.Engine] = field(default_factory=list)

    def __call__(
        self, *args: str, input_text: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        return run_cli("--config", str(self.config), *args, cwd=self.workdir, input_text=input_text)

    def service(self) -> UserService:
        """The service, straight on the database the command used."""
        engine = sa.create_engine(self.database_url)
        self.engines.append(engine)
        return UserService(SqlUserRepository(engine), RbacSettings())

    def audit(self) -> list[tuple[str, str | None, str | None, dict[str, object]]]:
        """(event, actor, target, details) of every audit event, oldest first."""
        engine = sa.create_engine(self.database_url)
        self.engines.append(engine)
        records = reversed(SqlAuditLog(engine).page(limit=1000))
        return [(r.event, r.actor, r.target, r.details) for r in records]

    def close(self) -> None:
        for engine in self.engines:
            engine.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def cli(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Cli]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    else:
        url = request.getfixturevalue("pg_database_url")
        empty_pg(url)
    config = tmp_path / "authserver.yaml"
    config.write_text(
        yaml.safe_dump(standard_config("http://127.0.0.1:8080", url, tmp_path / "sk"))
    )
    runner = Cli(config, tmp_path, url)
    if request.param == "postgresql":
        upgraded = runner("db", "upgrade")
        assert upgraded.returncode == 0, upgraded.stderr
    yield runner
    runner.close()


def ok(result: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert result.returncode == 0, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    return result


def fails(result: subprocess.CompletedProcess[str], code: int, needle: str) -> None:
    assert result.returncode == code, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    assert needle in result.stderr, result.stderr
    assert len(stderr_lines(result.stderr)) == 1, result.stderr


def listed(cli: Cli) -> dict[str, list[str]]:
    lines = ok(cli("users", "list")).stdout.splitlines()
    assert lines[0].split()[:3] == ["USERNAME", "ROLE", "SOURCE"]
    return {line.split()[0]: line.split()[1:] for line in lines[1:]}


def test_create_prints_a_generated_password_once(cli: Cli) -> None:
    result = ok(cli("users", "create", "Alice"))
    password = result.stdout.strip()
    assert len(password.splitlines()) == 1
    assert len(password) >= 20
    assert "created user alice (role user)" in result.stderr
    person = cli.service().authenticate("alice", password)
    assert person is not None
    assert person.source == "local"
    rows = listed(cli)
    assert rows["alice"][:3] == ["user", "local", "-"]
    assert rows["alice"][-1] == "no"
    assert password not in ok(cli("users", "list")).stdout


def test_create_with_password_on_stdin(cli: Cli) -> None:
    result = ok(
        cli(
            "users",
            "create",
            "bob",
            "--role",
            "admin",
            "--password-stdin",
            input_text="bob's long password\n",
        )
    )
    assert result.stdout == ""  # nothing generated, nothing printed
    person = cli.service().authenticate("bob", "bob's long password")
    assert person is not None
    assert person.role == "admin"
    fails(
        cli("users", "create", "carl", "--password-stdin", input_text="short\n"), 2, "at least 12"
    )
    fails(cli("users", "create", "carl", "--password-stdin", input_text=""), 2, "no password")
    fails(
        cli("users", "create", "bob", "--password-stdin", input_text="another long password"),
        1,
        "user 'bob' already exists",
    )
    fails(cli("users", "create", "has space"), 2, "whitespace")
    assert sorted(listed(cli)) == ["bob"]


def test_set_role_and_delete(cli: Cli) -> None:
    ok(cli("users", "create", "dana"))
    assert "now has role admin" in ok(cli("users", "set-role", "DANA", "admin")).stdout
    assert listed(cli)["dana"][0] == "admin"
    fails(cli("users", "set-role", "dana", "root"), 2, "unknown role 'root'")
    assert listed(cli)["dana"][0] == "admin"
    fails(cli("users", "create", "eli", "--role", "root"), 2, "unknown role 'root'")
    fails(cli("users", "set-role", "nobody", "user"), 1, "no user 'nobody'")
    cli.service().create_local("keeper", None, "admin")  # dana is not the last admin
    assert "deleted user dana" in ok(cli("users", "delete", "dana")).stdout
    cli.service().delete("keeper")
    fails(cli("users", "delete", "dana"), 1, "no user 'dana'")
    assert listed(cli) == {}
    missing = cli("users", "set-role", "dana")  # argparse: usage, then the error
    assert missing.returncode == 2
    assert "arguments are required: ROLE" in missing.stderr
    # every change is in the audit trail, as the CLI's; the refused ones are not
    audit = cli.audit()
    assert [(event, target, details) for event, _, target, details in audit] == [
        ("user_created", "dana", {"role": "user"}),
        ("user_updated", "dana", {"role": "admin"}),
        ("user_deleted", "dana", {}),
    ]
    for _, actor, _, _ in audit:
        assert actor is not None
        assert actor.startswith("cli")


def test_import_export_round_trip_never_exports_passwords(cli: Cli) -> None:
    source = cli.workdir / "in.csv"
    source.write_text(
        "username,password,role\r\n"
        "fred,fred's long password,admin\r\n"
        "gail,gail's long password,user\r\n",
        newline="",
    )
    assert "imported 2 users" in ok(cli("users", "import-csv", str(source))).stdout
    service = cli.service()
    assert service.authenticate("fred", "fred's long password") is not None
    target = cli.workdir / "out.csv"
    ok(cli("users", "export-csv", str(target)))
    exported = target.read_text()
    assert exported == "username,password,role,email\nfred,,admin,\ngail,,user,\n"
    assert "long password" not in exported
    to_stdout = ok(cli("users", "export-csv", "-"))
    assert to_stdout.stdout == exported
    assert "exported 2 users" in to_stdout.stderr
    # an exported file has no passwords, so it cannot be imported back as it is
    fails(cli("users", "import-csv", str(target)), 1, "line 2: user 'fred' has no password")
    assert [(event, details) for event, _, _, details in cli.audit()] == [
        ("users_imported", {"count": 2})
    ]


def test_a_bad_csv_changes_nothing(cli: Cli) -> None:
    source = cli.workdir / "bad.csv"
    source.write_text(
        "username,password,role\n"
        "hank,hank's long password,user\n"
        "iris,iris's long password,superuser\n"
        "jack,jack's long password,admin\n"
    )
    fails(cli("users", "import-csv", str(source)), 1, "line 3: unknown role 'superuser'")
    assert listed(cli) == {}
    fails(cli("users", "import-csv", str(cli.workdir / "missing.csv")), 2, "cannot read")
    ok(
        cli(
            "users",
            "import-csv",
            "-",
            input_text="username,password,role\nkate,kate's long password,\n",
        )
    )
    assert sorted(listed(cli)) == ["kate"]


# -- issue 9.8: names that look like another are refused ---------------------------------

#: "admin" with a Cyrillic a; "ace" all in Cyrillic letters; "admin" with a Greek o.
LOOK_ALIKES = {
    "\u0430dmin": "mixes scripts (Cyrillic, Latin)",
    "\u0430\u0441\u0435": "looks like a name in Latin letters",
    "r\u03bfot": "mixes scripts (Greek, Latin)",
    "\u2168": "a character a username may not have",  # ROMAN NUMERAL NINE
}


@pytest.mark.parametrize("name", LOOK_ALIKES)
def test_create_refuses_a_name_that_looks_like_another(cli: Cli, name: str) -> None:
    ok(cli("users", "create", "admin", "--role", "admin"))
    fails(cli("users", "create", name), 2, LOOK_ALIKES[name])
    assert sorted(listed(cli)) == ["admin"]


def test_fullwidth_letters_are_the_same_name(cli: Cli) -> None:
    """RFC 8265 §3.3 width mapping: fullwidth "admin" is "admin", not a second user."""
    ok(cli("users", "create", "admin", "--role", "admin"))
    fails(
        cli("users", "create", "\uff41\uff44\uff4d\uff49\uff4e"), 1, "user 'admin' already exists"
    )
    ok(cli("users", "create", "\uff42\uff4f\uff42"))  # fullwidth "bob" is stored as bob
    assert sorted(listed(cli)) == ["admin", "bob"]


def test_names_in_one_script_or_a_usual_mix_are_taken(cli: Cli) -> None:
    for name in ("\u0438\u0432\u0430\u043d", "\u65e5\u672c\u30c6\u30b9\u30c8", "jos\u00e9"):
        ok(cli("users", "create", name))  # Cyrillic "ivan"; Han with Katakana; Latin
    assert sorted(listed(cli)) == sorted(
        ["\u0438\u0432\u0430\u043d", "\u65e5\u672c\u30c6\u30b9\u30c8", "jos\u00e9"]
    )


def test_import_refuses_a_look_alike_and_changes_nothing(cli: Cli) -> None:
    source = cli.workdir / "look-alike.csv"
    source.write_text(
        "username,password,role\n"
        "hank,hank's long password,user\n"
        "\u0430dmin,mallory's long password,admin\n",
        encoding="utf-8",
    )
    fails(cli("users", "import-csv", str(source)), 1, "line 3: username '\u0430dmin' mixes")
    assert listed(cli) == {}


# -- issue 15.7: local users' email addresses -------------------------------------------


def test_create_and_set_email(cli: Cli) -> None:
    created = ok(cli("users", "create", "lena", "--email", "Lena@Example.COM"))
    assert "created user lena (role user, email Lena@example.com)" in created.stderr
    lena = cli.service().by_username("lena")
    assert lena is not None
    assert (lena.email, lena.email_verified) == ("Lena@example.com", True)
    assert listed(cli)["lena"][2] == "Lena@example.com"

    fails(cli("users", "create", "mia", "--email", "lena@example.com"), 1, "already has the email")
    fails(cli("users", "create", "mia", "--email", "mia@localhost"), 2, "the domain must be")
    ok(cli("users", "create", "mia"))
    fails(cli("users", "set-email", "mia", "LENA@example.com"), 1, "user 'lena' already has")
    fails(cli("users", "set-email", "mia", "not an address"), 2, "not an email address")
    fails(cli("users", "set-email", "mia"), 2, "give an email address, or --remove")
    fails(cli("users", "set-email", "mia", "m@example.com", "--remove"), 2, "not both")
    fails(cli("users", "set-email", "nobody", "n@example.com"), 1, "no user 'nobody'")
    assert "now has the email address mia@example.com (verified)" in (
        ok(cli("users", "set-email", "MIA", "mia@Example.com")).stdout
    )
    mia = cli.service().by_username("mia")
    assert mia is not None
    assert (mia.email, mia.email_verified) == ("mia@example.com", True)
    assert "now has no email address" in ok(cli("users", "set-email", "mia", "--remove")).stdout
    mia = cli.service().by_username("mia")
    assert mia is not None
    assert (mia.email, mia.email_verified) == (None, None)
    assert [(event, target, details) for event, _, target, details in cli.audit()] == [
        ("user_created", "lena", {"role": "user", "email": "Lena@example.com"}),
        ("user_created", "mia", {"role": "user"}),
        ("user_updated", "mia", {"email": "mia@example.com"}),
        ("user_updated", "mia", {"email": None}),
    ]


def test_csv_carries_email_addresses_both_ways(cli: Cli) -> None:
    source = cli.workdir / "in.csv"
    source.write_text(
        "username,password,role,email\n"
        "nina,nina's long password,admin,Nina@Example.com\n"
        "otto,otto's long password,,\n"
    )
    assert "imported 2 users" in ok(cli("users", "import-csv", str(source))).stdout
    nina = cli.service().by_username("nina")
    assert nina is not None
    assert (nina.email, nina.email_verified) == ("Nina@example.com", True)
    exported = ok(cli("users", "export-csv", "-")).stdout
    assert exported == "username,password,role,email\nnina,,admin,Nina@example.com\notto,,user,\n"
    # a taken address, one in the file twice, or a bad one: no user is imported
    for rows, message in [
        ("pia,pia's long password,user,NINA@example.com\n", "line 2: user 'nina' already has"),
        (
            "pia,pia's long password,user,p@example.com\n"
            "quin,quin's long password,user,P@example.com\n",
            "line 3: the email address 'P@example.com' is also on line 2",
        ),
        ("pia,pia's long password,user,pia@\n", "line 2: 'pia@' is not an email address"),
        ("pia,pia's long password,user\n", "line 2: expected 4 cells"),
    ]:
        source.write_text("username,password,role,email\n" + rows)
        fails(cli("users", "import-csv", str(source)), 1, message)
    assert sorted(listed(cli)) == ["nina", "otto"]


# -- issue 15.8: users import-htpasswd ------------------------------------------------


def test_import_htpasswd_through_the_cli(cli: Cli) -> None:
    source = cli.workdir / "users.htpasswd"
    source.write_text(
        "# made with htpasswd\n"
        + "".join(htpasswd(f"{form}-user", f"{form}'s password", form) + "\n" for form in FORMS)
        + "\n"
    )
    result = ok(cli("users", "import-htpasswd", str(source), "--role", "viewer"))
    assert "imported 4 users" in result.stdout
    rows = listed(cli)
    assert sorted(rows) == sorted(f"{form}-user" for form in FORMS)
    for name in rows:
        assert rows[name][:3] == ["viewer", "local", "-"]  # role, source, no email
    engine = sa.create_engine(cli.database_url)
    cli.engines.append(engine)
    service = UserService(SqlUserRepository(engine), RbacSettings())

    def stored(name: str) -> str:
        with engine.connect() as conn:
            return str(
                conn.execute(
                    sa.text("SELECT password_hash FROM users WHERE username = :name"),
                    {"name": name},
                ).scalar_one()
            )

    for form, (_, prefix) in FORMS.items():
        name = f"{form}-user"
        assert stored(name).startswith(prefix), form  # kept as imported until a sign-in
        person = service.authenticate(name, f"{form}'s password")
        assert person is not None, form
        assert not person.password_must_change
        assert stored(name).startswith("$argon2id$"), form
    ok(cli("users", "import-htpasswd", "-", input_text=htpasswd("Stdin", PASSWORD) + "\n"))
    assert "stdin" in listed(cli)
    assert listed(cli)["stdin"][0] == "user"  # rbac.default_role
    assert [(event, details) for event, _, _, details in cli.audit()] == [
        ("users_imported", {"count": 4, "format": "htpasswd"}),
        ("users_imported", {"count": 1, "format": "htpasswd"}),
    ]


def test_a_bad_htpasswd_file_imports_nothing(cli: Cli) -> None:
    ok(cli("users", "create", "taken"))
    good = htpasswd("fine", PASSWORD)
    source = cli.workdir / "bad.htpasswd"
    for lines, message in [
        ([good, "weak:{SHA}mN7MYuzjmaIu0w1JDvMzvn/ec4U="], "line 2: {SHA} is an unsalted SHA-1"),
        ([good, "", "no colon here"], "line 3: an htpasswd line is user:hash"),
        ([good, htpasswd("two\u0430", PASSWORD)], "line 2: username 'two\u0430' mixes scripts"),
        ([good, htpasswd("FINE", PASSWORD)], "line 2: user 'fine' is also on line 1"),
        ([good, htpasswd("taken", PASSWORD)], "line 2: user 'taken' already exists"),
        (["x:plain", "y:plain"], "line 1: not a hash htpasswd makes with a salt"),
    ]:
        source.write_text("\n".join(lines) + "\n")
        fails(cli("users", "import-htpasswd", str(source)), 1, message)
    fails(cli("users", "import-htpasswd", str(source)), 1, "(and 1 more bad lines)")
    fails(cli("users", "import-htpasswd", str(source)), 1, "no user was imported")
    source.write_text("# only a comment\n\n")
    fails(cli("users", "import-htpasswd", str(source)), 1, "the file has no htpasswd line")
    fails(cli("users", "import-htpasswd", str(cli.workdir / "missing")), 2, "cannot read")
    source.write_text(good + "\n")
    fails(cli("users", "import-htpasswd", str(source), "--role", "root"), 2, "unknown role")
    assert sorted(listed(cli)) == ["taken"]
    assert [event for event, _, _, _ in cli.audit()] == ["user_created"]
