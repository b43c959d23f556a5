"""The ``authserver`` command, through its entry point (a real subprocess)."""

from __future__ import annotations

import base64
import stat
import subprocess
from pathlib import Path

import bcrypt
import pytest
import requests
import yaml

from authserver.oauth.secrets import check_secret

from .support.factories import standard_config
from .support.servers import free_port, run_cli, start_server, stop_server

pytestmark = pytest.mark.live


def write_config(tmp_path: Path, **overrides: object) -> Path:
    config = standard_config(
        "http://127.0.0.1:8080", f"sqlite:///{tmp_path / 'db.sqlite'}", tmp_path / "sk"
    )
    config.update(overrides)
    path = tmp_path / "authserver.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def assert_clean_failure(
    result: subprocess.CompletedProcess[str], code: int, *needles: str
) -> None:
    assert result.returncode == code, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    for needle in needles:
        assert needle in result.stderr, result.stderr


def test_hash_secret_reads_stdin_and_prints_a_working_hash(tmp_path: Path) -> None:
    result = run_cli("hash-secret", cwd=tmp_path, input_text="my-ci-secret\n")
    assert result.returncode == 0, result.stderr
    printed = result.stdout.strip()
    assert printed.startswith("$2b$12$")
    assert bcrypt.checkpw(b"my-ci-secret", printed.encode())
    argon = run_cli("hash-secret", "--scheme", "argon2id", cwd=tmp_path, input_text="my-ci-secret")
    assert argon.stdout.startswith("$argon2id$")
    assert check_secret("my-ci-secret", argon.stdout.strip())


def test_hash_secret_refuses_empty_and_overlong_input(tmp_path: Path) -> None:
    assert_clean_failure(run_cli("hash-secret", cwd=tmp_path, input_text=""), 2, "no secret")
    long_secret = "x" * 80
    assert_clean_failure(
        run_cli("hash-secret", cwd=tmp_path, input_text=long_secret), 2, "72 bytes"
    )


def test_invalid_config_lists_every_problem_with_exit_2(tmp_path: Path) -> None:
    config = write_config(
        tmp_path,
        issuer="not a url",
        clients=[
            {"client_id": "a", "client_secret_hash": "plain-text-secret"},
            {"client_id": "b", "public": True, "redirect_uris": ["/relative"]},
        ],
        colour="blue",
    )
    result = run_cli("--config", str(config), "clients", "list", cwd=tmp_path)
    assert_clean_failure(
        result,
        2,
        "issuer: must be an absolute http(s) URL",
        "clients[0].client_secret_hash: must be a bcrypt hash",
        "clients[1].redirect_uris[0]: must be an absolute URI",
        "colour: unknown setting",
    )


def test_missing_config_file_and_bad_yaml_are_clean_errors(tmp_path: Path) -> None:
    missing = run_cli("--config", str(tmp_path / "nope.yaml"), "keys", "list", cwd=tmp_path)
    assert_clean_failure(missing, 2, "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("issuer: [unclosed\n")
    assert_clean_failure(
        run_cli("--config", str(bad), "keys", "list", cwd=tmp_path), 2, "not valid YAML"
    )


def test_config_from_environment_and_env_overrides(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    result = run_cli("clients", "list", cwd=tmp_path, env={"AUTHSERVER_CONFIG": str(config)})
    assert result.returncode == 0, result.stderr
    assert "ci-b64" in result.stdout
    bad_env = run_cli(
        "clients",
        "list",
        cwd=tmp_path,
        env={"AUTHSERVER_CONFIG": str(config), "AUTHSERVER_SIGNING__ALGORITHM": "HS256"},
    )
    assert_clean_failure(bad_env, 2, "signing.algorithm (from AUTHSERVER_SIGNING__ALGORITHM)")


def test_usage_errors_exit_2(tmp_path: Path) -> None:
    assert_clean_failure(run_cli("frobnicate", cwd=tmp_path), 2, "invalid choice")
    assert_clean_failure(run_cli("serve", "--workers", "0", cwd=tmp_path), 2, "at least 1")
    assert_clean_failure(run_cli("keys", cwd=tmp_path), 2, "required")


def test_clients_list(tmp_path: Path) -> None:
    result = run_cli("--config", str(write_config(tmp_path)), "clients", "list", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split()[:2] == ["CLIENT_ID", "TYPE"]
    rows = {line.split()[0]: line.split()[1] for line in lines[1:]}
    assert rows["ci"] == "confidential"
    assert rows["cli"] == "public"


def test_db_upgrade_then_keys_rotate_and_list(tmp_path: Path) -> None:
    config = str(write_config(tmp_path))
    upgraded = run_cli("--config", config, "db", "upgrade", cwd=tmp_path)
    assert upgraded.returncode == 0, upgraded.stderr
    assert "current" in upgraded.stdout
    first = run_cli("--config", config, "keys", "list", cwd=tmp_path)
    assert first.stderr.count("\n") <= 1, first.stderr  # no library chatter
    assert first.returncode == 0, first.stderr
    assert len(first.stdout.splitlines()) == 1  # only the header: no key before serve
    assert "no signing keys yet" in first.stderr
    rotated = run_cli("--config", config, "keys", "rotate", cwd=tmp_path)
    assert rotated.returncode == 0, rotated.stderr
    assert rotated.stdout.startswith("new key ")
    states = sorted(
        line.split()[2]
        for line in run_cli("--config", config, "keys", "list", cwd=tmp_path).stdout.splitlines()[
            1:
        ]
    )
    assert states == ["active", "next"]


def test_unreachable_database_is_one_line(tmp_path: Path) -> None:
    config = write_config(tmp_path, database_url="postgresql+psycopg://nobody@127.0.0.1:1/none")
    result = run_cli("--config", str(config), "keys", "list", cwd=tmp_path)
    assert_clean_failure(result, 1, "cannot use the database")
    assert len(result.stderr.strip().splitlines()) == 1


def test_serve_refuses_postgres_with_pending_migrations(
    tmp_path: Path, pg_database_url: str
) -> None:
    import sqlalchemy as sa

    engine = sa.create_engine(pg_database_url)
    with engine.begin() as conn:
        conn.execute(sa.text("DROP TABLE IF EXISTS alembic_version"))
    engine.dispose()
    config = write_config(tmp_path, database_url=pg_database_url)
    result = run_cli(
        "--config", str(config), "serve", "--bind", f"127.0.0.1:{free_port()}", cwd=tmp_path
    )
    assert_clean_failure(result, 1, "authserver db upgrade")
    # and db upgrade fixes it (the tables exist; stamp-free re-run must not fail)
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "DROP TABLE IF EXISTS signing_keys, ephemeral_entries, refresh_tokens, "
                "refresh_families, users, id_token_signing_keys, service_account_keys, "
                "service_accounts, audit_events"
            )
        )
    engine.dispose()
    assert run_cli("--config", str(config), "db", "upgrade", cwd=tmp_path).returncode == 0


def test_db_upgrade_says_when_it_sets_up_a_new_postgresql_database(
    tmp_path: Path, pg_database_url: str
) -> None:
    import secrets

    import sqlalchemy as sa

    name = f"authserver_new_{secrets.token_hex(4)}"
    admin = sa.create_engine(pg_database_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    url = sa.make_url(pg_database_url).set(database=name)
    try:
        config = str(write_config(tmp_path, database_url=url.render_as_string(False)))
        first = run_cli("--config", config, "db", "upgrade", cwd=tmp_path)
        assert first.returncode == 0, first.stderr
        assert f"authserver: set up a new database at {url}\n" in first.stderr
        again = run_cli("--config", config, "db", "upgrade", cwd=tmp_path)
        assert again.returncode == 0, again.stderr
        assert "new database" not in again.stderr
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def test_embedded_default_serves_the_demo_client(tmp_path: Path) -> None:
    """No config at all: SQLite and generated secrets in the instance directory
    (``AUTHSERVER_HOME``), never in the working directory; they persist."""
    port = free_port()
    home = tmp_path / "home"
    workdir = tmp_path / "work"
    server = start_server(workdir, None, port, env={"AUTHSERVER_HOME": str(home)})
    try:
        secret_file = home / "demo_client_secret"
        assert f"secret in {secret_file}" in server.log()
        assert f"created a new SQLite database at {home / 'authserver.db'}" in server.log()
        assert stat.S_IMODE(secret_file.stat().st_mode) == 0o600
        assert stat.S_IMODE((home / "secret_key").stat().st_mode) == 0o600
        secret = secret_file.read_text().strip()
        response = requests.post(
            f"http://127.0.0.1:{port}/oauth2/token",
            data={"grant_type": "client_credentials"},
            auth=("demo", secret),
            timeout=10,
        )
        assert response.status_code == 200, response.text
        metadata = requests.get(
            f"http://127.0.0.1:{port}/.well-known/openid-configuration", timeout=5
        )
        assert metadata.json()["issuer"] == "http://127.0.0.1:8080"
        kid = requests.get(f"http://127.0.0.1:{port}/.well-known/jwks.json", timeout=5).json()[
            "keys"
        ][0]["kid"]
    finally:
        stop_server(server)
    assert (home / "authserver.db").exists()
    assert not (workdir / "instance").exists()

    # A restart, from another directory, keeps the same secret and signing key.
    server = start_server(tmp_path / "elsewhere", None, port, env={"AUTHSERVER_HOME": str(home)})
    try:
        assert "created a new" not in server.log()
        assert secret_file.read_text().strip() == secret
        again = requests.get(f"http://127.0.0.1:{port}/.well-known/jwks.json", timeout=5).json()
        assert again["keys"][0]["kid"] == kid
        header = response.json()["access_token"].split(".")[0]
        assert kid in base64.urlsafe_b64decode(header + "==").decode()
    finally:
        stop_server(server)


def test_commands_use_one_instance_directory_from_anywhere(tmp_path: Path) -> None:
    """Issue 11.5: ``users list`` from another directory sees the same database, and a
    command that creates a database says where, once."""
    data_home = tmp_path / "data"
    env = {"XDG_DATA_HOME": str(data_home)}
    first, second = tmp_path / "a", tmp_path / "b"
    first.mkdir()
    second.mkdir()
    database = data_home / "authserver" / "authserver.db"
    created = run_cli("users", "create", "alice", cwd=first, env=env)
    assert created.returncode == 0, created.stderr
    assert f"authserver: created a new SQLite database at {database}\n" in created.stderr
    listed = run_cli("users", "list", cwd=second, env=env)
    assert listed.returncode == 0, listed.stderr
    assert "alice" in listed.stdout
    assert "created a new" not in listed.stderr
    assert not (first / "instance").exists()
    assert not (second / "instance").exists()

    # Without XDG_DATA_HOME: ~/.local/share/authserver.
    fallback = run_cli("users", "list", cwd=first, env={"XDG_DATA_HOME": "", "HOME": str(first)})
    assert fallback.returncode == 0, fallback.stderr
    assert (first / ".local" / "share" / "authserver" / "authserver.db").exists()


def test_instance_dir_option_and_home_variable_name_one_place(tmp_path: Path) -> None:
    home = tmp_path / "state"
    created = run_cli("--instance-dir", str(home), "users", "create", "bob", cwd=tmp_path)
    assert created.returncode == 0, created.stderr
    assert str(home / "authserver.db") in created.stderr
    listed = run_cli("users", "list", cwd=tmp_path, env={"AUTHSERVER_HOME": str(home)})
    assert listed.returncode == 0, listed.stderr
    assert "bob" in listed.stdout
    # After the command name too, like --config.
    again = run_cli("users", "list", "--instance-dir", str(home), cwd=tmp_path)
    assert "bob" in again.stdout


def test_an_old_instance_directory_is_pointed_out(tmp_path: Path) -> None:
    """Upgrading from a version that kept the embedded default's state in ./instance."""
    (tmp_path / "instance").mkdir()
    (tmp_path / "instance" / "authserver.db").write_bytes(b"")
    result = run_cli("keys", "list", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert f"{tmp_path / 'instance'} is no longer used" in result.stderr
    assert f"AUTHSERVER_HOME={tmp_path / 'instance'}" in result.stderr


def test_key_commands_work_on_a_fresh_sqlite_database(tmp_path: Path) -> None:
    config = str(write_config(tmp_path))
    rotated = run_cli("--config", config, "keys", "rotate", cwd=tmp_path)
    assert rotated.returncode == 0, rotated.stderr
    states = sorted(
        line.split()[2]
        for line in run_cli("--config", config, "keys", "list", cwd=tmp_path).stdout.splitlines()[
            1:
        ]
    )
    assert states == ["active", "next"]


def test_debug_variable_is_not_a_setting(tmp_path: Path) -> None:
    result = run_cli(
        "--config",
        str(write_config(tmp_path)),
        "clients",
        "list",
        cwd=tmp_path,
        env={"AUTHSERVER_DEBUG": "1"},
    )
    assert result.returncode == 0, result.stderr


def test_the_person_s_cli_variables_do_not_stop_server_commands(tmp_path: Path) -> None:
    """DESIGN.md, "Environment variables": one shell may hold both sides' variables."""
    config = str(write_config(tmp_path))
    shell = {
        "AUTHSERVER_CACHE_DIR": str(tmp_path / "cache"),
        "AUTHSERVER_PROFILE": "work",
        "AUTHSERVER_CLIENT_CONFIG": str(tmp_path / "client.yaml"),
        "AUTHSERVER_CLIENT_SECRET_FROM_FILE": str(tmp_path / "secret"),
        "RESOURCE_ISSUER": "https://auth.example.com",
        "RESOURCE_AUDIENCE": "https://api.example.com",
    }
    result = run_cli("--config", config, "clients", "list", cwd=tmp_path, env=shell)
    assert result.returncode == 0, result.stderr
    unknown = run_cli(
        "--config",
        config,
        "clients",
        "list",
        cwd=tmp_path,
        env={**shell, "AUTHSERVER_AUDIENCE": "https://api.example.com"},
    )
    assert_clean_failure(unknown, 2, "audience (from AUTHSERVER_AUDIENCE): unknown setting")


def test_string_values_from_the_environment_are_verbatim(tmp_path: Path) -> None:
    """A ``#`` in a database URL is part of the path, not a YAML comment."""
    database = tmp_path / "data #1" / "auth.db"
    result = run_cli(
        "--config",
        str(write_config(tmp_path)),
        "db",
        "upgrade",
        cwd=tmp_path,
        env={"AUTHSERVER_DATABASE_URL": f"sqlite:///{database}"},
    )
    assert result.returncode == 0, result.stderr
    assert database.exists()
