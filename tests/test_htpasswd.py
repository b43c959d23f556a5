"""htpasswd lines as passwords (issue 15.8): ``initial_admin.htpasswd`` (SkyPilot's
``initialBasicAuthCredentials`` is ``htpasswd -nb USER PASS``) and ``users
import-htpasswd``. The lines come from the real ``htpasswd`` (apache2-utils, which CI
installs); the hash is verified by libpass and becomes argon2id at the first sign-in.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import requests
import sqlalchemy as sa
import yaml
from flask import Flask

from authserver.identity import passwords
from authserver.identity.users import UserError, UserService
from authserver.settings import InitialAdminSettings, SettingsError, load_settings
from authserver.storage.users import SqlUserRepository
from authserver.web.services import Services

from .conftest import AppFactory
from .support.factories import PASSWORD, standard_config
from .support.flows import form_field, login
from .support.servers import free_port, start_server, stop_server
from .test_users import engine_of

#: htpasswd's flag for each form it writes with a salt, and the prefix of its hash.
FORMS = {
    "bcrypt": ("-B", "$2y$"),
    "apr1": ("-m", "$apr1$"),  # htpasswd's default, what `htpasswd -nb USER PASS` prints
    "sha256": ("-2", "$5$"),
    "sha512": ("-5", "$6$"),
}


#: A well-formed bcrypt hash (of "x", cost 4).
COST_4 = "$2y$04$Jk.226sldCp1wcKC4TkuUOp1mozULqV3bND3SksED0Jns7BcVcwOi"


def htpasswd(user: str, password: str, form: str = "bcrypt") -> str:
    """A line ``user:hash`` made by the real htpasswd (never skipped: CI installs it)."""
    binary = shutil.which("htpasswd")
    assert binary, "htpasswd is missing: apt-get install apache2-utils"
    flag, prefix = FORMS[form]
    extra = ["-C", "4"] if form == "bcrypt" else []  # the lowest cost keeps the suite fast
    result = subprocess.run(
        [binary, "-nb", flag, *extra, user, password],
        capture_output=True,
        text=True,
        check=True,
    )
    line = result.stdout.strip()
    assert line.startswith(f"{user}:{prefix}"), line
    return line


def users_of(app: Flask) -> UserService:
    service = Services.of(app).users
    return service


def stored_hash(app: Flask, username: str) -> str:
    record = SqlUserRepository(engine_of(app)).by_username(username)
    assert record is not None
    return str(record.password_hash)


# -- the hashes --------------------------------------------------------------------------


@pytest.mark.parametrize("form", FORMS)
def test_each_salted_form_verifies_and_is_marked_for_rehash(form: str) -> None:
    user, stored = passwords.parse_htpasswd_line(htpasswd("alice", PASSWORD, form))
    assert user == "alice"
    assert passwords.verify_password(stored, PASSWORD)
    assert not passwords.verify_password(stored, PASSWORD + "!")
    assert not passwords.verify_password(stored, "")
    assert passwords.needs_rehash(stored)


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("alice:{SHA}mN7MYuzjmaIu0w1JDvMzvn/ec4U=", "unsalted SHA-1"),
        ("alice:correct horse battery", "not a hash htpasswd makes with a salt"),
        ("alice:rqXexS6ZhobKA", "not a hash htpasswd makes with a salt"),  # DES crypt
        ("alice:$2y$05$tooshort", "a malformed bcrypt hash"),
        ("alice:" + COST_4.replace("$04$", "$18$"), "bcrypt hash of cost 18 (at most 17)"),
        ("alice:$2y$05$" + "a" * 53, "a malformed bcrypt hash"),  # stray padding bits
        ("alice:$6$rounds=2000000$salt$" + "a" * 86, "of cost 2000000 (at most 1000000)"),
        ("alice", "an htpasswd line is user:hash"),
        (":$2y$05$" + "a" * 53, "an htpasswd line is user:hash"),
    ],
)
def test_other_lines_are_refused_with_the_reason(line: str, reason: str) -> None:
    with pytest.raises(ValueError, match=re.escape(reason)):
        passwords.parse_htpasswd_line(line)


def test_bcrypt_reads_72_bytes_but_a_longer_password_never_passes_on_them() -> None:
    long = "x" * 72
    _, stored = passwords.parse_htpasswd_line(htpasswd("alice", long))
    assert passwords.verify_password(stored, long)
    assert not passwords.verify_password(stored, long + "tail")
    assert not passwords.verify_password(stored, "nul\x00byte")


# -- settings ----------------------------------------------------------------------------


def test_initial_admin_htpasswd_and_its_file(tmp_path: Path) -> None:
    line = htpasswd("sky", PASSWORD)
    config = tmp_path / "authserver.yaml"
    config.write_text(yaml.safe_dump({"initial_admin": {"htpasswd": line}}))
    initial = load_settings(config, {}).initial_admin
    assert initial is not None
    assert (initial.username, initial.htpasswd, initial.password) == ("sky", line, None)
    assert line.split(":", 1)[1] not in repr(initial)

    (tmp_path / "admin.htpasswd").write_text(line + "\n")
    config.write_text(
        yaml.safe_dump({"initial_admin": {"htpasswd_file": str(tmp_path / "admin.htpasswd")}})
    )
    initial = load_settings(config, {}).initial_admin
    assert initial is not None
    assert (initial.username, initial.htpasswd) == ("sky", line)
    config.write_text("{}\n")
    from_env = load_settings(
        config, {"AUTHSERVER_INITIAL_ADMIN__HTPASSWD": htpasswd("ops", PASSWORD, "apr1")}
    ).initial_admin
    assert from_env is not None
    assert from_env.username == "ops"


@pytest.mark.parametrize(
    ("admin", "problem"),
    [
        (
            {"htpasswd": "sky:{SHA}mN7MYuzjmaIu0w1JDvMzvn/ec4U="},
            "initial_admin.htpasswd: {SHA} is an unsalted SHA-1 hash",
        ),
        ({"htpasswd": "sky"}, "initial_admin.htpasswd: an htpasswd line is user:hash"),
        ({"username": "root"}, "initial_admin: username 'root' is not the user of the htpasswd"),
        ({"password": "a long enough password"}, "initial_admin: give password or htpasswd"),
    ],
)
def test_a_bad_initial_admin_htpasswd_names_the_setting(
    tmp_path: Path, admin: dict[str, str], problem: str
) -> None:
    settings = {"htpasswd": htpasswd("sky", PASSWORD), **admin}
    config = tmp_path / "authserver.yaml"
    config.write_text(yaml.safe_dump({"initial_admin": settings}))
    with pytest.raises(SettingsError) as raised:
        load_settings(config, {})
    assert len(raised.value.problems) == 1
    assert raised.value.problems[0].startswith(problem), raised.value.problems
    assert "$2y$" not in str(raised.value)  # the hash is not echoed


# -- the first admin, signing in at the login page -------------------------------------


def sign_in(app: Flask, username: str, password: str) -> int:
    """The status of a sign-in at the login page (302: signed in)."""
    client = app.test_client()
    page = client.get("/login", query_string={"next": "/"})
    response = client.post(
        "/login",
        data={
            "csrf_token": form_field(page.get_data(as_text=True), "csrf_token"),
            "username": username,
            "password": password,
            "next": "/",
        },
    )
    return response.status_code


@pytest.mark.parametrize("form", FORMS)
def test_htpasswd_admin_signs_in_and_the_hash_becomes_argon2id(
    make_app: AppFactory, form: str
) -> None:
    app = make_app()
    initial = InitialAdminSettings.model_validate({"htpasswd": htpasswd("sky", PASSWORD, form)})
    with app.app_context():
        assert users_of(app).ensure_initial_admin(initial) is None  # nothing to print
    person = users_of(app).by_username("sky")
    assert person is not None
    assert (person.role, person.source, person.password_must_change) == ("admin", "local", False)
    assert stored_hash(app, "sky").startswith(FORMS[form][1])

    assert sign_in(app, "sky", "not the password") == 401
    assert stored_hash(app, "sky").startswith(FORMS[form][1])  # a wrong one changes nothing
    assert sign_in(app, "sky", PASSWORD) == 302  # straight in: the operator chose it
    rehashed = stored_hash(app, "sky")
    assert rehashed.startswith("$argon2id$")
    assert not passwords.needs_rehash(rehashed)
    assert sign_in(app, "sky", PASSWORD) == 302
    assert stored_hash(app, "sky") == rehashed
    person = users_of(app).by_username("sky")
    assert person is not None
    assert person.credentials_generation == 0  # a rehash is not a new password


def test_the_first_admin_is_made_only_on_an_empty_database(make_app: AppFactory) -> None:
    app = make_app()
    users_of(app).create_local("someone", PASSWORD)
    initial = InitialAdminSettings.model_validate({"htpasswd": htpasswd("sky", PASSWORD)})
    assert users_of(app).ensure_initial_admin(initial) is None
    assert users_of(app).by_username("sky") is None


@pytest.mark.live
def test_serve_makes_the_htpasswd_admin_and_the_login_page_takes_its_password(
    tmp_path: Path,
) -> None:
    """The whole path: ``initial_admin.htpasswd_file`` as SkyPilot's Helm chart's secret
    would hold it, ``authserver serve``, a sign-in at the login page over HTTP."""
    port = free_port()
    database = tmp_path / "a.db"
    config = standard_config(
        f"http://127.0.0.1:{port}", f"sqlite:///{database}", tmp_path / "secret_key"
    )
    secret = tmp_path / "auth_string"
    secret.write_text(htpasswd("skyadmin", PASSWORD, "apr1") + "\n")  # htpasswd -nb's default
    config["initial_admin"] = {"htpasswd_file": str(secret)}
    server = start_server(tmp_path, config, port)
    try:
        assert "one-time password" not in server.log()
        assert login(requests.Session(), server.url, "skyadmin", "wrong").status_code == 401
        signed_in = login(requests.Session(), server.url, "skyadmin", PASSWORD)
        assert signed_in.status_code == 302
        assert signed_in.headers["Location"] == "/"  # no password change forced
    finally:
        stop_server(server)
    engine = sa.create_engine(f"sqlite:///{database}")
    with engine.connect() as conn:
        row = conn.execute(
            sa.text("SELECT role, password_hash FROM users WHERE username = 'skyadmin'")
        ).one()
    engine.dispose()
    assert row.role == "admin"
    assert row.password_hash.startswith("$argon2id$")


# -- users import-htpasswd (the CLI's tests are in test_users_cli.py) ------------------


def test_import_htpasswd_service_counts_lines_as_the_file_does(make_app: AppFactory) -> None:
    app = make_app()
    lines = ["# comment", "", htpasswd("one", PASSWORD), "  ", "two:$apr1$bad"]
    with pytest.raises(UserError, match=r"^line 5: a malformed apr_md5_crypt hash"):
        users_of(app).import_htpasswd(lines)
    assert users_of(app).list() == []
