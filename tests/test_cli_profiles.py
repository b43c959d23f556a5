"""The person's CLI beyond ``login`` and ``token`` (issue 13): profiles in the client
config file, ``logout`` (RFC 7009), ``whoami``, ``status``, machine credentials for
``token`` (client secrets, service-account tokens) cached until near expiry, the device
flow's progress on a TTY, and one clear line for a device login without such a client.

Through the entry point, against a live server, with the cache and the XDG config
directory in the test's own directory.
"""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from .support.factories import PASSWORD, SECRETS
from .support.flows import jwt_claims
from .support.servers import LiveServer, authserver_command, free_port, run_cli
from .test_cli_login import (
    AUTHORIZE_URL,
    USER_CODE,
    CliProcess,
    approve_device,
    assert_one_line_error,
    follow_to_client,
)

pytestmark = pytest.mark.live


@pytest.fixture(scope="module")
def yara(live_server: LiveServer) -> str:
    result = live_server.cli(
        "users", "create", "yara", "--password-stdin", input_text=PASSWORD + "\n"
    )
    assert result.returncode == 0, result.stderr
    return "yara"


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return {
        "AUTHSERVER_CACHE_DIR": str(tmp_path / "cache"),
        "XDG_CONFIG_HOME": str(tmp_path / "config"),
    }


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    return tmp_path / "config" / "authserver" / "config.yaml"


def cli(
    tmp_path: Path, env: dict[str, str], *args: str, **more: str
) -> subprocess.CompletedProcess[str]:
    return run_cli(*args, cwd=tmp_path, env={**env, **more})


def introspect(server: str, token: str) -> dict[str, Any]:
    response = requests.post(
        server + "/oauth2/introspect", data={"token": token}, auth=("rs", SECRETS["rs"]), timeout=30
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def cache_entries(tmp_path: Path) -> dict[str, Any]:
    path = tmp_path / "cache" / "tokens.json"
    data: dict[str, Any] = json.loads(path.read_text()) if path.exists() else {}
    return data


def device_login(
    server: str, user: str, tmp_path: Path, env: dict[str, str], *args: str
) -> tuple[int, str]:
    login = CliProcess("login", *args, cwd=tmp_path, env=env)
    try:
        approve_device(server, user, login.wait_for(USER_CODE).group(1))
        return login.finish()
    finally:
        login.stop()


# -- profiles, whoami, status, logout ---------------------------------------------------


def test_a_profile_then_no_flags_whoami_status_and_logout(
    live_server: LiveServer, yara: str, tmp_path: Path, env: dict[str, str], config_file: Path
) -> None:
    code, output = device_login(
        live_server.url, yara, tmp_path, env, "--issuer", live_server.url, "--device"
    )
    assert code == 0, output
    assert f"saved as profile 'default' in {config_file}" in output
    # not a TTY: no spinner, no progress line
    assert "waiting for the approval" not in output
    assert "\r" not in output

    # The profile: what the login used, in a file of the owner's only.
    assert stat.S_IMODE(config_file.stat().st_mode) == 0o600
    saved = yaml.safe_load(config_file.read_text())
    assert saved["profiles"]["default"] == {
        "issuer": live_server.url,
        "client_id": "cli",
        "scopes": "openid profile offline_access",
        "flow": "device",
    }
    assert not list(config_file.parent.glob(".*.tmp"))  # replaced atomically

    # `token` needs no flags now; a second `login` neither (the profile's device flow).
    token = cli(tmp_path, env, "token")
    assert token.returncode == 0, token.stderr
    entry = cache_entries(tmp_path)[live_server.url]["cli"]
    assert token.stdout == entry["access_token"] + "\n"
    code, output = device_login(live_server.url, yara, tmp_path, env)
    assert code == 0, output
    assert "saved as profile" not in output  # nothing changed
    entry = cache_entries(tmp_path)[live_server.url]["cli"]
    claims = jwt_claims(entry["access_token"])

    # whoami: from the cache, no network.
    whoami = cli(tmp_path, env, "whoami")
    assert whoami.returncode == 0, whoami.stderr
    rows = dict(re.split(r"\s{2,}", line, maxsplit=1) for line in whoami.stdout.splitlines())
    assert rows["username"] == yara
    assert rows["subject"] == claims["sub"]
    assert rows["roles"] == "user"
    assert rows["issuer"] == live_server.url
    assert rows["expires"].startswith(time.strftime("%Y-%m-%d", time.gmtime(claims["exp"])))
    as_json = json.loads(cli(tmp_path, env, "whoami", "--output", "json").stdout)
    assert as_json["sub"] == claims["sub"]
    assert as_json["username"] == yara
    assert as_json["roles"] == ["user"]
    assert as_json["client_id"] == "cli"
    assert as_json["profile"] == "default"
    assert as_json["expired"] is False
    assert as_json["expires_at"] == time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(claims["exp"]))

    status = json.loads(cli(tmp_path, env, "status", "--output", "json").stdout)
    assert status == [
        {
            "profile": "default",
            "default": True,
            "issuer": live_server.url,
            "client_id": "cli",
            "audience": None,
            "flow": "device",
            "state": "signed in",
            "expires_at": as_json["expires_at"],
        }
    ]
    table = cli(tmp_path, env, "status")
    assert table.returncode == 0
    assert re.search(
        r"^default \*\s+" + re.escape(live_server.url) + r"\s+cli\s", table.stdout, re.M
    )

    # logout: both tokens revoked at the server (introspection says so), the entry gone.
    assert introspect(live_server.url, entry["access_token"])["active"] is True
    logout = cli(tmp_path, env, "logout")
    assert logout.returncode == 0, logout.stderr
    assert "revoked" in logout.stderr
    assert introspect(live_server.url, entry["access_token"]) == {"active": False}
    # (only its own client may introspect a refresh token, and `cli` is public: use it)
    refreshed = requests.post(
        live_server.url + "/oauth2/token",
        data={
            "grant_type": "refresh_token",
            "refresh_token": entry["refresh_token"],
            "client_id": "cli",
        },
        timeout=30,
    )
    assert refreshed.status_code == 400, refreshed.text
    assert refreshed.json()["error"] == "invalid_grant"
    assert live_server.url not in cache_entries(tmp_path)
    assert stat.S_IMODE((tmp_path / "cache" / "tokens.json").stat().st_mode) == 0o600

    assert_one_line_error(cli(tmp_path, env, "whoami"), "not signed in", "authserver login")
    assert_one_line_error(cli(tmp_path, env, "token"), "not signed in", "authserver login")
    status = json.loads(cli(tmp_path, env, "status", "--output", "json").stdout)
    assert status[0]["state"] == "signed out"
    # the profile stays: signing in again needs no flags
    assert yaml.safe_load(config_file.read_text())["profiles"]["default"]["issuer"]
    again = cli(tmp_path, env, "logout")
    assert again.returncode == 0
    assert "nothing to do" in again.stderr


def test_named_profiles_and_flags_over_them(
    live_server: LiveServer, yara: str, tmp_path: Path, env: dict[str, str], config_file: Path
) -> None:
    admin_api = live_server.url + "/api/v1"
    code, output = device_login(
        live_server.url,
        yara,
        tmp_path,
        env,
        "--issuer",
        live_server.url,
        "--device",
        "--audience",
        admin_api,
        "--profile",
        "admin",
    )
    assert code == 0, output
    profiles = yaml.safe_load(config_file.read_text())["profiles"]
    assert list(profiles) == ["admin"]
    assert profiles["admin"]["audience"] == admin_api

    # --profile and AUTHSERVER_PROFILE pick it; its audience comes with it.
    by_flag = cli(tmp_path, env, "token", "--profile", "admin")
    assert by_flag.returncode == 0, by_flag.stderr
    assert jwt_claims(by_flag.stdout.strip())["aud"] == admin_api
    by_env = cli(tmp_path, env, "token", AUTHSERVER_PROFILE="admin")
    assert by_env.stdout == by_flag.stdout

    # A flag overrides the profile: another issuer is not signed in.
    other = f"http://127.0.0.1:{free_port()}"
    assert_one_line_error(
        cli(tmp_path, env, "token", "--profile", "admin", "--issuer", other), other, "not signed in"
    )

    # A profile that does not exist: one line naming the ones that do, exit 2.
    for result in (
        cli(tmp_path, env, "token", "--profile", "nope"),
        cli(tmp_path, env, "whoami", AUTHSERVER_PROFILE="nope"),
        cli(tmp_path, env, "login", "--profile", "nope"),
        cli(tmp_path, env, "status", "--profile", "nope"),
    ):
        assert_one_line_error(result, "no profile 'nope'", "the profiles are: admin")
        assert result.returncode == 2
    # The default profile is not there either: no issuer, one line with the fix.
    result = cli(tmp_path, env, "token")
    assert_one_line_error(result, "no issuer", "authserver login --issuer URL")
    assert result.returncode == 2

    # whoami for the profile names the audience.
    whoami = json.loads(
        cli(tmp_path, env, "whoami", "--profile", "admin", "--output", "json").stdout
    )
    assert whoami["audience"] == [admin_api]
    assert whoami["username"] == yara


def test_a_broken_config_file_is_named_with_line_and_column(
    tmp_path: Path, env: dict[str, str], config_file: Path
) -> None:
    config_file.parent.mkdir(parents=True)
    config_file.write_text("profiles:\n  default:\n    issuer: [http://x\n")
    result = cli(tmp_path, env, "token")
    assert_one_line_error(result, str(config_file), "line 4, column 1", "not valid YAML")
    assert result.returncode == 2

    config_file.write_text("profiles:\n  default:\n    issuer: https://a.example\n    flow: fax\n")
    assert_one_line_error(
        cli(tmp_path, env, "status"), str(config_file), "flow must be loopback or device"
    )
    config_file.write_text("profiles:\n  default:\n    isuer: https://a.example\n")
    assert_one_line_error(cli(tmp_path, env, "whoami"), "unknown key 'isuer'")

    # AUTHSERVER_CLIENT_CONFIG points elsewhere
    other = tmp_path / "elsewhere.yaml"
    other.write_text("default_profile: work\nprofiles:\n  work:\n    issuer: https://a.example\n")
    listed = cli(tmp_path, env, "status", "--output", "json", AUTHSERVER_CLIENT_CONFIG=str(other))
    assert listed.returncode == 0, listed.stderr
    assert [(p["profile"], p["default"], p["state"]) for p in json.loads(listed.stdout)] == [
        ("work", True, "signed out")
    ]


def test_logout_offline_clears_the_cache_with_a_warning(
    tmp_path: Path, env: dict[str, str]
) -> None:
    issuer = f"http://127.0.0.1:{free_port()}"
    (tmp_path / "cache").mkdir()
    entry = {
        "access_token": "a.b.c",
        "expires_at": int(time.time()) + 600,
        "refresh_token": "as_rt_x",
        "id_token": None,
        "scope": "openid",
    }
    (tmp_path / "cache" / "tokens.json").write_text(json.dumps({issuer: {"cli": entry}}))
    result = cli(tmp_path, env, "logout", "--issuer", issuer)
    assert result.returncode == 0, result.stderr
    assert "warning" in result.stderr
    assert "cannot reach" in result.stderr
    assert "removed from this machine only" in result.stderr
    assert cache_entries(tmp_path) == {}


# -- machine credentials ------------------------------------------------------------------


def test_client_secret_from_every_source_cached(
    live_server: LiveServer, tmp_path: Path, env: dict[str, str]
) -> None:
    secret_file = tmp_path / "ci-secret"
    secret_file.write_text(SECRETS["ci"] + "\n")
    base = ("token", "--issuer", live_server.url, "--client-id", "ci")
    first = cli(tmp_path, env, *base, "--client-secret-file", str(secret_file))
    assert first.returncode == 0, first.stderr
    token = first.stdout.strip()
    claims = jwt_claims(token)
    assert claims["client_id"] == "ci"
    assert claims["sub"] == "ci"
    assert introspect(live_server.url, token)["active"] is True

    # Every source of the same secret gets the cached token: one token request, not more.
    for more in (
        {"AUTHSERVER_CLIENT_SECRET": SECRETS["ci"]},
        {"AUTHSERVER_CLIENT_SECRET_FROM_FILE": str(secret_file)},
        {"AUTHSERVER_CLIENT_SECRET_FROM_ENV_VAR": "MY_CI_SECRET", "MY_CI_SECRET": SECRETS["ci"]},
    ):
        again = cli(tmp_path, env, *base, **more)
        assert again.returncode == 0, (more, again.stderr)
        assert again.stdout.strip() == token, more
    entries = cache_entries(tmp_path)[live_server.url]
    assert [key for key in entries if key.startswith("secret:ci#")] == [next(iter(entries))]
    assert stat.S_IMODE((tmp_path / "cache" / "tokens.json").stat().st_mode) == 0o600

    # A scope is a token of its own; near its expiry a new one is fetched.
    read = cli(tmp_path, env, *base, "--scope", "read", AUTHSERVER_CLIENT_SECRET=SECRETS["ci"])
    assert read.returncode == 0, read.stderr
    assert jwt_claims(read.stdout.strip())["scope"] == "read"
    data = json.loads((tmp_path / "cache" / "tokens.json").read_text())
    for value in data[live_server.url].values():
        value["expires_at"] = int(time.time()) + 30
    (tmp_path / "cache" / "tokens.json").write_text(json.dumps(data))
    renewed = cli(tmp_path, env, *base, AUTHSERVER_CLIENT_SECRET=SECRETS["ci"])
    assert renewed.returncode == 0, renewed.stderr
    assert renewed.stdout.strip() != token

    # A wrong secret never gets the cached token: the server refuses it, in one line.
    wrong = cli(tmp_path, env, *base, AUTHSERVER_CLIENT_SECRET="not-the-secret")
    assert_one_line_error(wrong, "invalid_client", "ci")
    assert wrong.returncode == 1


def test_credential_sources_that_conflict_or_are_missing(
    tmp_path: Path, env: dict[str, str]
) -> None:
    issuer = "http://127.0.0.1:8080"
    secret_file = tmp_path / "secret"
    secret_file.write_text("s")
    cases = [
        (
            {
                "AUTHSERVER_CLIENT_SECRET": "a",
                "AUTHSERVER_CLIENT_SECRET_FROM_FILE": str(secret_file),
            },
            ["--client-id", "ci"],
            "both AUTHSERVER_CLIENT_SECRET and AUTHSERVER_CLIENT_SECRET_FROM_FILE",
        ),
        (
            {"AUTHSERVER_CLIENT_SECRET": "a", "AUTHSERVER_SERVICE_ACCOUNT_TOKEN": "as_sa_x.y"},
            [],
            "both AUTHSERVER_CLIENT_SECRET and AUTHSERVER_SERVICE_ACCOUNT_TOKEN",
        ),
        ({}, ["--client-secret-file", str(secret_file), "--key-file", "k.json"], "use one"),
        ({"AUTHSERVER_CLIENT_SECRET": "a"}, [], "--client-id"),
        ({"AUTHSERVER_CLIENT_SECRET_FROM_ENV_VAR": "NOT_SET"}, ["--client-id", "ci"], "NOT_SET"),
        ({"AUTHSERVER_SERVICE_ACCOUNT_TOKEN": "not-one"}, [], "as_sa_<client_id>.<secret>"),
    ]
    for more, args, words in cases:
        result = cli(tmp_path, env, "token", "--issuer", issuer, *args, **more)
        assert_one_line_error(result, words)
        assert result.returncode == 2, (more, result.stderr)
    missing = cli(
        tmp_path, env, "token", "--issuer", issuer, "--client-id", "ci",
        "--client-secret-file", str(tmp_path / "absent"),
    )  # fmt: skip
    assert_one_line_error(missing, "cannot read the client secret file", "absent")


def test_service_account_token_is_exchanged_and_cached(
    live_server: LiveServer, tmp_path: Path, env: dict[str, str]
) -> None:
    created = live_server.cli("service-accounts", "create", "nightly-cli", "--role", "user")
    assert created.returncode == 0, created.stderr
    sa_token = created.stdout.strip()
    client_id = sa_token.removeprefix("as_sa_").split(".")[0]

    first = cli(
        tmp_path,
        env,
        "token",
        "--issuer",
        live_server.url,
        AUTHSERVER_SERVICE_ACCOUNT_TOKEN=sa_token,
    )
    assert first.returncode == 0, first.stderr
    token = first.stdout.strip()
    assert jwt_claims(token)["client_id"] == client_id
    assert introspect(live_server.url, token)["active"] is True
    second = cli(
        tmp_path,
        env,
        "token",
        "--issuer",
        live_server.url,
        AUTHSERVER_SERVICE_ACCOUNT_TOKEN=sa_token,
    )
    assert second.stdout.strip() == token  # cached: no second token request

    # After a rotation the old token is refused (it is a cache entry of its own).
    assert live_server.cli("service-accounts", "rotate", "nightly-cli").returncode == 0
    stale = cli(tmp_path, env, "token", "--issuer", live_server.url, "--scope", "read",
                AUTHSERVER_SERVICE_ACCOUNT_TOKEN=sa_token)  # fmt: skip
    assert_one_line_error(stale, "invalid_client")
    assert_one_line_error(
        cli(
            tmp_path,
            env,
            "token",
            "--issuer",
            live_server.url,
            "--client-id",
            "ci",
            AUTHSERVER_SERVICE_ACCOUNT_TOKEN=sa_token,
        ),
        "--client-id ci is not the client",
    )


# -- the device flow: its error and its progress ------------------------------------------


def test_login_device_without_such_a_public_client(
    live_server: LiveServer, tmp_path: Path, env: dict[str, str]
) -> None:
    for client_id in ("nope", "ci"):
        result = cli(
            tmp_path,
            env,
            "login",
            "--issuer",
            live_server.url,
            "--device",
            "--client-id",
            client_id,
        )
        assert_one_line_error(
            result, f"no public client '{client_id}' with the device grant", "--client-id"
        )
        assert "methods" not in result.stderr


def test_device_flow_shows_progress_on_a_tty(
    live_server: LiveServer, yara: str, tmp_path: Path, env: dict[str, str]
) -> None:
    """stderr on a terminal: a spinner and the code's remaining lifetime, rewritten in
    place; cleared once signed in."""
    primary, secondary = os.openpty()
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("AUTHSERVER_")}
    full_env.update(env)
    process = subprocess.Popen(
        [*authserver_command(), "login", "--issuer", live_server.url, "--device"],
        cwd=tmp_path,
        env=full_env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=secondary,
    )
    os.close(secondary)
    chunks: list[bytes] = []

    def read() -> None:
        while True:
            try:
                data = os.read(primary, 4096)
            except OSError:
                return
            if not data:
                return
            chunks.append(data)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not re.search(
            rb"expires in \d+:\d\d", b"".join(chunks)
        ):
            time.sleep(0.1)
        text = b"".join(chunks).decode()
        code_match = USER_CODE.search(text)
        assert code_match, text
        approve_device(live_server.url, yara, code_match.group(1))
        assert process.wait(timeout=60) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        reader.join(timeout=5)
        os.close(primary)
    text = b"".join(chunks).decode()
    waiting = re.findall(
        r"\r([|/\\-]) waiting for the approval; the code expires in (\d+):(\d\d)", text
    )
    assert len(waiting) >= 2, text
    assert 9 <= int(waiting[0][1]) <= 10  # the 600 s the server gives
    assert "\r\x1b[K" in text  # the line is erased before "signed in"
    assert "signed in" in text.split("\x1b[K")[-1]


def test_loopback_says_so_when_no_browser_starts(
    live_server: LiveServer, yara: str, tmp_path: Path, env: dict[str, str]
) -> None:
    """BROWSER names a command that fails: the URL is printed with what to do."""
    login = CliProcess(
        "login", "--issuer", live_server.url, cwd=tmp_path, env={**env, "BROWSER": "false"}
    )
    try:
        url = login.wait_for(AUTHORIZE_URL).group(1)
        login.wait_for(re.compile("no browser could be started: open the URL above"))
        requests.get(follow_to_client(live_server.url, url, yara), timeout=30)
        code, output = login.finish()
    finally:
        login.stop()
    assert code == 0, output
    assert "signed in" in output
