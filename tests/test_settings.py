"""Settings: YAML, env overrides, ``<key>_file`` secrets, all errors at once."""

from __future__ import annotations

import re
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from authserver.bootstrap import load_secret_key, prepare_embedded_default
from authserver.client.env import CLIENT_ENV_VARS
from authserver.settings import (
    Settings,
    SettingsError,
    instance_dir,
    load_settings,
    parse_duration,
)

from .support.factories import bcrypt_hash


def write(tmp_path: Path, config: object) -> Path:
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.fixture
def embedded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An instance directory where the embedded default has made its files, and a
    working directory elsewhere."""
    instance = tmp_path / "home"
    monkeypatch.chdir(tmp_path)
    prepare_embedded_default(instance)
    return instance


def test_embedded_default_loads(embedded: Path) -> None:
    settings = load_settings(None, environ={"AUTHSERVER_HOME": str(embedded)})
    assert settings.clients[0].client_id == "demo"
    assert settings.clients[0].client_secret_hash == (
        (embedded / "demo_client_secret.hash").read_text().strip()
    )
    assert settings.issuer == "http://127.0.0.1:8080"
    assert settings.database_url == f"sqlite:///{embedded / 'authserver.db'}"
    assert settings.secret_key_file == str(embedded / "secret_key")
    assert settings.redis_url is None
    assert stat.S_IMODE(embedded.stat().st_mode) == 0o700
    assert not (embedded.parent / "instance").exists()


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({"AUTHSERVER_HOME": "/srv/auth", "XDG_DATA_HOME": "/xdg", "HOME": "/h"}, "/srv/auth"),
        ({"XDG_DATA_HOME": "/xdg", "HOME": "/h"}, "/xdg/authserver"),
        ({"XDG_DATA_HOME": "relative/ignored", "HOME": "/h"}, "/h/.local/share/authserver"),
        ({"XDG_DATA_HOME": "", "HOME": "/h"}, "/h/.local/share/authserver"),
    ],
)
def test_instance_dir(environ: dict[str, str], expected: str) -> None:
    assert instance_dir(environ) == Path(expected)


def test_unset_paths_of_a_config_are_in_the_instance_directory(tmp_path: Path) -> None:
    """Not in the working directory, wherever a command runs from."""
    settings = load_settings(write(tmp_path, {}), environ={"AUTHSERVER_HOME": "/srv/auth"})
    assert settings.database_url == "sqlite:////srv/auth/authserver.db"
    assert settings.secret_key_file == "/srv/auth/secret_key"
    given = load_settings(
        write(tmp_path, {"database_url": "sqlite:///x.db", "secret_key_file": "sk"}),
        environ={"AUTHSERVER_HOME": "/srv/auth"},
    )
    assert (given.database_url, given.secret_key_file) == ("sqlite:///x.db", "sk")
    from_file = tmp_path / "db-url"
    from_file.write_text("sqlite:////data/a.db\n")
    settings = load_settings(write(tmp_path, {"database_url_file": str(from_file)}), environ={})
    assert settings.database_url == "sqlite:////data/a.db"


def test_home_variable_is_not_a_setting(tmp_path: Path) -> None:
    settings = load_settings(write(tmp_path, {}), environ={"AUTHSERVER_HOME": str(tmp_path)})
    assert settings.secret_key_file == str(tmp_path / "secret_key")


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30d", 2592000), ("1h", 3600), ("15m", 900), ("45s", 45), (90, 90), ("500ms", 0.5)],
)
def test_durations(text: object, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "10x", "-1h", "0s", True, "1.5h"])
def test_bad_durations(text: object) -> None:
    with pytest.raises(ValueError, match=r"duration|zero"):
        parse_duration(text)


def test_env_overrides_nested_keys(tmp_path: Path) -> None:
    path = write(tmp_path, {"issuer": "https://auth.example.com"})
    settings = load_settings(
        path,
        environ={
            "AUTHSERVER_TOKENS__ACCESS_TOKEN_TTL": "5m",
            "AUTHSERVER_TOKENS__AUDIENCES": "[https://a.example.com, https://b.example.com]",
            "AUTHSERVER_REDIS_URL": "redis://127.0.0.1:6379/2",
            "AUTHSERVER_TEST_DATABASE_URL": "ignored: not a setting",
        },
    )
    assert settings.tokens.access_token_ttl == 300
    assert settings.tokens.audiences == ("https://a.example.com", "https://b.example.com")
    assert settings.redis_url == "redis://127.0.0.1:6379/2"
    assert settings.issuer == "https://auth.example.com"


UPSTREAM = {"AUTHSERVER_UPSTREAM__ISSUER": "https://idp.example.com"}


@pytest.mark.parametrize(
    ("environ", "path", "expected"),
    [
        # Strings are verbatim: what YAML would take for a comment, a number, a
        # boolean or null is part of the value (DESIGN.md, "Environment variables").
        (
            {"AUTHSERVER_INITIAL_ADMIN__PASSWORD": "#hash-first password"},
            "initial_admin.password",
            "#hash-first password",
        ),
        (
            {"AUTHSERVER_DATABASE_URL": "postgresql+psycopg://u:p#ss@db/x"},
            "database_url",
            "postgresql+psycopg://u:p#ss@db/x",
        ),
        ({"AUTHSERVER_SECRET_KEY": "0x" + "ab" * 20}, "secret_key", "0x" + "ab" * 20),
        (
            {"AUTHSERVER_ISSUER": "https://auth.example.com:8443"},
            "issuer",
            "https://auth.example.com:8443",
        ),
        (
            {
                **UPSTREAM,
                "AUTHSERVER_UPSTREAM__CLIENT_ID": "0012345",
                "AUTHSERVER_UPSTREAM__CLIENT_SECRET": "yes",
            },
            "upstream.client_id",
            "0012345",
        ),
        (
            {
                **UPSTREAM,
                "AUTHSERVER_UPSTREAM__CLIENT_ID": "x",
                "AUTHSERVER_UPSTREAM__CLIENT_SECRET": "yes",
            },
            "upstream.client_secret",
            "yes",
        ),
        ({"AUTHSERVER_INITIAL_ADMIN__PASSWORD": "null"}, "initial_admin.password", "null"),
        ({"AUTHSERVER_REDIS_PREFIX": " spaced: "}, "redis_prefix", " spaced: "),
        ({"AUTHSERVER_SIGNING__ALGORITHM": "ES256"}, "signing.algorithm", "ES256"),
        (
            {"AUTHSERVER_RATE_LIMITS__LOGIN_PER_ACCOUNT": "5/minute"},
            "rate_limits.login_per_account",
            "5/minute",
        ),
        # An empty value unsets a setting that may be null.
        ({"AUTHSERVER_REDIS_URL": ""}, "redis_url", None),
        ({"AUTHSERVER_AUDIT_RETENTION": ""}, "audit_retention", None),
        # Booleans, integers and durations are read from the string.
        ({"AUTHSERVER_LOCAL_USERS": "false"}, "local_users", False),
        ({"AUTHSERVER_LOCAL_USERS": "0"}, "local_users", False),
        ({"AUTHSERVER_LOCAL_USERS": "True"}, "local_users", True),
        (
            {
                **UPSTREAM,
                "AUTHSERVER_UPSTREAM__CLIENT_ID": "x",
                "AUTHSERVER_UPSTREAM__ASSUME_EMAIL_VERIFIED": "yes",
            },
            "upstream.assume_email_verified",
            True,
        ),
        ({"AUTHSERVER_MAX_FORM_BYTES": "1024"}, "max_form_bytes", 1024),
        ({"AUTHSERVER_SIGNING__ROTATE_EVERY": "7d"}, "signing.rotate_every", 7 * 86400),
        ({"AUTHSERVER_TOKENS__ACCESS_TOKEN_TTL": " 300 "}, "tokens.access_token_ttl", 300),
        ({"AUTHSERVER_AUDIT_RETENTION": "90d"}, "audit_retention", 90 * 86400),
        # Lists and mappings are parsed, as YAML or JSON.
        (
            {"AUTHSERVER_TOKENS__AUDIENCES": '["https://a.example.com", "https://b.example.com"]'},
            "tokens.audiences",
            ("https://a.example.com", "https://b.example.com"),
        ),
        ({"AUTHSERVER_TRUSTED_FORWARDERS": "[10.0.0.0/8]"}, "trusted_forwarders", ("10.0.0.0/8",)),
        ({"AUTHSERVER_RBAC__ROLES__VIEWER": "[read]"}, "rbac.roles.viewer", ("read",)),
        (
            {"AUTHSERVER_RBAC__GROUP_ROLES": '{"ops": "admin"}'},
            "rbac.group_roles",
            {"ops": "admin"},
        ),
        ({"AUTHSERVER_SIGNING": "{algorithm: EdDSA}"}, "signing.algorithm", "EdDSA"),
        (
            {
                "AUTHSERVER_CLIENTS": '[{"client_id": "app", "public": true,'
                ' "grant_types": ["authorization_code"],'
                ' "redirect_uris": ["http://127.0.0.1/cb"]}]'
            },
            "clients.0.client_id",
            "app",
        ),
    ],
)
def test_env_values_are_read_by_the_type_of_their_setting(
    tmp_path: Path, environ: dict[str, str], path: str, expected: object
) -> None:
    settings = load_settings(write(tmp_path, {}), environ=environ)
    value: Any = settings
    for part in path.split("."):
        if part.isdigit():
            value = value[int(part)]
        elif isinstance(value, dict):
            value = value[part]
        else:
            value = getattr(value, part)
    assert value == expected


@pytest.mark.parametrize(
    ("name", "value", "problem"),
    [
        (
            "AUTHSERVER_LOCAL_USERS",
            "maybe",
            "local_users (from AUTHSERVER_LOCAL_USERS): Input should be a valid boolean",
        ),
        (
            "AUTHSERVER_MAX_FORM_BYTES",
            "64k",
            "max_form_bytes (from AUTHSERVER_MAX_FORM_BYTES): Input should be a valid integer",
        ),
        (
            "AUTHSERVER_TOKENS__AUDIENCES",
            "https://a.example.com",
            "AUTHSERVER_TOKENS__AUDIENCES: must be a list in YAML or JSON",
        ),
        ("AUTHSERVER_RBAC__ROLES", "[a", "AUTHSERVER_RBAC__ROLES: not valid YAML or JSON"),
        ("AUTHSERVER_RBAC__GROUP_ROLES", "ops", "AUTHSERVER_RBAC__GROUP_ROLES: must be a mapping"),
        (
            "AUTHSERVER_AUDIENCE",
            "https://api.example.com",
            "audience (from AUTHSERVER_AUDIENCE): unknown setting",
        ),
        (
            "AUTHSERVER_TOKENS__TTL",
            "1h",
            "tokens.ttl (from AUTHSERVER_TOKENS__TTL): unknown setting",
        ),
    ],
)
def test_bad_env_values_name_their_variable(
    tmp_path: Path, name: str, value: str, problem: str
) -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings(write(tmp_path, {}), environ={name: value})
    assert any(p.startswith(problem) for p in caught.value.problems), caught.value.problems


def test_the_person_s_cli_variables_are_not_settings(tmp_path: Path) -> None:
    """One shell may hold the server's and the person's CLI's variables (DESIGN.md)."""
    environ = dict.fromkeys(CLIENT_ENV_VARS, "/some/value")
    settings = load_settings(write(tmp_path, {"issuer": "https://auth.example.com"}), environ)
    assert settings.issuer == "https://auth.example.com"
    for name in CLIENT_ENV_VARS:
        key = name.removeprefix("AUTHSERVER_").lower()
        assert key.split("__")[0] not in Settings.model_fields, name


def test_the_client_reads_only_its_listed_variables() -> None:
    package = Path(__file__).resolve().parent.parent / "authserver" / "client"
    modules = sorted(package.glob("*.py"))
    assert package / "env.py" in modules
    for module in modules:
        named = set(re.findall(r"AUTHSERVER_[A-Z0-9_]*[A-Z0-9]", module.read_text()))
        assert named <= CLIENT_ENV_VARS, (module.name, named - CLIENT_ENV_VARS)


def test_the_settings_load_only_the_client_s_list_of_variables() -> None:
    """The settings (which oauth/ reads) import ``authserver.client.env`` and nothing
    else of the client: not its HTTP client (``authlib.integrations``)."""
    code = (
        "import sys, authserver.settings; "
        "print(sorted(m for m in sys.modules if m.startswith(('authserver.client', "
        "'authlib.integrations'))))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).resolve().parent.parent,  # this checkout's authserver
    )
    assert result.stdout.strip() == "['authserver.client', 'authserver.client.env']"
    import authserver.client as client

    assert sorted(client.__all__) == sorted(client._MODULES)
    assert all(getattr(client, name) is not None for name in client.__all__)


def test_secret_file_keys(tmp_path: Path) -> None:
    hash_file = tmp_path / "ci.hash"
    hash_file.write_text(bcrypt_hash("s") + "\n")
    url_file = tmp_path / "db"
    url_file.write_text("postgresql+psycopg://u:p@db/x\n")
    path = write(
        tmp_path,
        {
            "database_url_file": str(url_file),
            "clients": [{"client_id": "ci", "client_secret_hash_file": str(hash_file)}],
        },
    )
    settings = load_settings(path, environ={})
    assert settings.database_url == "postgresql+psycopg://u:p@db/x"
    assert settings.clients[0].client_secret_hash == hash_file.read_text().strip()


def test_secret_file_problems_are_named(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        {
            "redis_url_file": str(tmp_path / "missing"),
            "clients": [
                {"client_id": "ci", "client_secret_hash": "x", "client_secret_hash_file": "y"}
            ],
        },
    )
    with pytest.raises(SettingsError) as caught:
        load_settings(path, environ={})
    problems = "\n".join(caught.value.problems)
    assert "redis_url_file: cannot read" in problems
    assert (
        "clients[0].client_secret_hash_file: give client_secret_hash or client_secret_hash_file"
        in problems
    )


def test_every_error_is_reported_at_once(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        {
            "issuer": "https://auth.example.com/?q=1",
            "database_url": "mysql://x",
            "signing": {"algorithm": "HS256", "rotate_every": "soon"},
            "tokens": {"access_token_ttl": 0},
            "clients": [
                {"client_id": "ok", "client_secret_hash": bcrypt_hash("s")},
                {
                    "client_id": "bad",
                    "client_secret_hash": bcrypt_hash("s"),
                    "redirect_uris": ["nope"],
                },
                {"client_id": "pub", "public": True, "grant_types": ["client_credentials"]},
                {"client_id": "ok", "client_secret_hash": bcrypt_hash("s")},
            ],
            "rbac": {"default_role": "viewer"},
            "typo_key": 1,
        },
    )
    with pytest.raises(SettingsError) as caught:
        load_settings(path, environ={})
    problems = caught.value.problems
    expected = [
        "issuer: must have no query or fragment (RFC 8414 §2)",
        "database_url: must be a sqlite:/// or postgresql+psycopg:// URL",
        "signing.algorithm:",
        "signing.rotate_every: must be a duration",
        "tokens.access_token_ttl: must be longer than zero",
        "clients[1].redirect_uris[0]: must be an absolute URI",
        "clients[2]: a public client cannot use client_credentials",
        "rbac: default_role 'viewer' is not one of rbac.roles",
        "typo_key: unknown setting",
    ]
    for needle in expected:
        assert any(p.startswith(needle) for p in problems), (needle, problems)


def test_duplicate_client_ids_are_refused(tmp_path: Path) -> None:
    client = {"client_id": "ci", "client_secret_hash": bcrypt_hash("s")}
    with pytest.raises(SettingsError, match="appears twice"):
        load_settings(write(tmp_path, {"clients": [client, client]}), environ={})


def test_settings_are_immutable(embedded: Path) -> None:
    from pydantic import ValidationError

    settings = load_settings(None, environ={"AUTHSERVER_HOME": str(embedded)})
    with pytest.raises(ValidationError):
        settings.issuer = "https://other.example.com"  # type: ignore[misc]


def test_secret_key_file_is_generated_once(tmp_path: Path) -> None:
    settings = load_settings(
        write(tmp_path, {"secret_key_file": str(tmp_path / "k" / "sk")}), environ={}
    )
    first = load_secret_key(settings)
    assert load_secret_key(settings) == first
    assert len(first) >= 32


@pytest.mark.parametrize(
    ("issuer", "ok"),
    [
        ("https://auth.example.com", True),
        ("https://auth.example.com/", True),
        ("http://127.0.0.1:8080", True),
        ("http://localhost:8080", True),
        ("http://[::1]:8080", True),
        ("http://auth.internal:8080", False),
        ("http://10.0.0.5", False),
    ],
)
def test_issuer_must_be_https_except_on_loopback(tmp_path: Path, issuer: str, ok: bool) -> None:
    path = write(tmp_path, {"issuer": issuer})
    if ok:
        settings = load_settings(path, environ={})
        assert settings.issuer == issuer  # exactly as configured (DESIGN.md)
        assert not settings.base_url.endswith("/")
    else:
        with pytest.raises(SettingsError, match="issuer: must be https"):
            load_settings(path, environ={})


@pytest.mark.parametrize("name", ["authserver.example.yaml", "compose.yaml"])
def test_shipped_configs_load(name: str) -> None:
    config = Path(__file__).resolve().parent.parent / "config" / name
    settings = load_settings(config, environ={})
    assert settings.clients
