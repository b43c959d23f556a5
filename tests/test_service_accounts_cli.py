"""``authserver service-accounts ...`` through the entry point, against a live server.

The commands run on the database of a real ``authserver serve`` (both backends); the
tokens they print are traded for access tokens at its token endpoint, as a CI job would.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest
import requests
import sqlalchemy as sa
import yaml

from authserver.storage.audit import AuditRecord, SqlAuditLog

from .support.factories import AUDIENCES, standard_config
from .support.servers import LiveServer, run_cli, stderr_lines

pytestmark = pytest.mark.live

TOKEN_PREFIX = "as_sa_"


def ok(result: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert result.returncode == 0, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    return result


def fails(result: subprocess.CompletedProcess[str], code: int, needle: str) -> None:
    assert result.returncode == code, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    assert needle in result.stderr, result.stderr
    assert len(stderr_lines(result.stderr)) == 1, result.stderr
    assert result.stdout == ""


def create(server: LiveServer, name: str, *options: str) -> tuple[str, str]:
    """Create one; (client id, token), checking that only the token is on stdout."""
    result = ok(server.cli("service-accounts", "create", name, *options))
    token = result.stdout.strip()
    assert result.stdout == token + "\n"
    assert token.startswith(TOKEN_PREFIX)
    client_id, dot, secret = token[len(TOKEN_PREFIX) :].partition(".")
    assert dot
    assert len(secret) >= 32
    assert token not in result.stderr
    assert f"created service account {name} (client id {client_id}" in result.stderr
    return client_id, token


def listed(server: LiveServer) -> dict[str, dict[str, str]]:
    """``service-accounts list`` as {name: {column: value}} (dates keep their spaces)."""
    result = ok(server.cli("service-accounts", "list"))
    assert TOKEN_PREFIX not in result.stdout
    lines = result.stdout.splitlines()
    header = lines[0]
    columns = ["NAME", "CLIENT_ID", "ROLE", "SCOPES", "CREATED", "EXPIRES", "LAST USED"]
    assert header.split("  ")[0] == "NAME"
    starts = [header.index(column) for column in columns]
    rows = {}
    for line in lines[1:]:
        cells = [
            line[start:end].strip() for start, end in zip(starts, [*starts[1:], None], strict=True)
        ]
        rows[cells[0]] = dict(zip(columns, cells, strict=True))
    return rows


def token_endpoint(server: LiveServer) -> str:
    metadata = requests.get(server.url + "/.well-known/oauth-authorization-server", timeout=5)
    return str(metadata.json()["token_endpoint"])


def trade_basic(server: LiveServer, client_id: str, token: str) -> requests.Response:
    return requests.post(
        token_endpoint(server),
        data={"grant_type": "client_credentials"},
        auth=(client_id, token),
        timeout=10,
    )


def trade_alone(server: LiveServer, token: str) -> requests.Response:
    return requests.post(
        token_endpoint(server),
        data={"grant_type": "client_credentials", "client_secret": token},
        timeout=10,
    )


def claims_of(server: LiveServer, response: requests.Response) -> dict[str, Any]:
    assert response.status_code == 200, response.text
    access_token = response.json()["access_token"]
    metadata = requests.get(server.url + "/.well-known/openid-configuration", timeout=5)
    key = jwt.PyJWKClient(str(metadata.json()["jwks_uri"])).get_signing_key_from_jwt(access_token)
    claims: dict[str, Any] = jwt.decode(
        access_token, key, algorithms=["RS256"], audience=AUDIENCES[0], issuer=server.url
    )
    return claims


def refused(response: requests.Response) -> None:
    """``invalid_client``: 401 with HTTP Basic, 400 with the secret in the body (§5.2)."""
    basic = "Authorization" in response.request.headers
    assert response.status_code == (401 if basic else 400), response.text
    assert response.json()["error"] == "invalid_client"


@pytest.fixture
def engine(live_server: LiveServer) -> Iterator[sa.Engine]:
    """The live server's database, to read its audit trail."""
    config = yaml.safe_load(live_server.config_path.read_text())
    engine = sa.create_engine(config["database_url"])
    yield engine
    engine.dispose()


def audit_rows(engine: sa.Engine, target: str) -> list[AuditRecord]:
    """The audit events about ``target``, oldest first."""
    records = SqlAuditLog(engine).page(limit=1000)
    return [record for record in reversed(records) if record.target == target]


def test_create_list_and_trade_the_token(live_server: LiveServer, engine: sa.Engine) -> None:
    client_id, token = create(live_server, "deploy-bot", "--role", "viewer")
    forever_id, forever = create(
        live_server, "nightly", "--expires-in", "never", "--scope", "write"
    )

    rows = listed(live_server)
    bot = rows["deploy-bot"]
    assert (bot["CLIENT_ID"], bot["ROLE"], bot["SCOPES"]) == (client_id, "viewer", "read")
    assert bot["EXPIRES"] not in ("never", "-")
    assert "expired" not in bot["EXPIRES"]
    assert bot["LAST USED"] == "-"
    nightly = rows["nightly"]
    assert (nightly["ROLE"], nightly["SCOPES"], nightly["EXPIRES"]) == ("user", "write", "never")

    # HTTP Basic <client_id>:<token>, and the token alone as client_secret
    for response in (trade_basic(live_server, client_id, token), trade_alone(live_server, token)):
        assert response.json()["token_type"].lower() == "bearer"
        claims = claims_of(live_server, response)
        assert claims["client_id"] == client_id
        assert claims["sub"] == client_id
        assert claims["roles"] == ["viewer"]
        assert claims["scope"] == "read"
    claims = claims_of(live_server, trade_alone(live_server, forever))
    assert (claims["client_id"], claims["roles"]) == (forever_id, ["user"])
    assert listed(live_server)["deploy-bot"]["LAST USED"] != "-"

    [created] = audit_rows(engine, "deploy-bot")
    assert created.event == "service_account_created"
    assert created.actor is not None
    assert created.actor.startswith("cli")
    assert created.client_id == client_id
    assert created.address == "local"
    assert created.details["role"] == "viewer"
    assert created.details["expires_at"] is not None


def test_rotate_and_revoke_kill_the_old_token(live_server: LiveServer, engine: sa.Engine) -> None:
    client_id, old = create(live_server, "rotating", "--role", "admin")
    claims_of(live_server, trade_alone(live_server, old))

    rotated = ok(live_server.cli("service-accounts", "rotate", "rotating"))
    new = rotated.stdout.strip()
    assert rotated.stdout == new + "\n"
    assert new.startswith(f"{TOKEN_PREFIX}{client_id}.")
    assert new != old
    refused(trade_alone(live_server, old))
    refused(trade_basic(live_server, client_id, old))
    claims = claims_of(live_server, trade_basic(live_server, client_id, new))
    assert claims["roles"] == ["admin"]
    assert listed(live_server)["rotating"]["CLIENT_ID"] == client_id

    revoked = ok(live_server.cli("service-accounts", "revoke", "rotating"))
    assert "revoked service account rotating" in revoked.stdout
    assert TOKEN_PREFIX not in revoked.stdout
    refused(trade_alone(live_server, new))
    refused(trade_basic(live_server, client_id, new))
    assert "rotating" not in listed(live_server)

    events = [(row.event, row.client_id) for row in audit_rows(engine, "rotating")]
    assert events == [
        ("service_account_created", client_id),
        ("service_account_rotated", client_id),
        ("service_account_revoked", client_id),
    ]


def test_an_expired_token_is_refused(live_server: LiveServer) -> None:
    client_id, token = create(live_server, "short-lived", "--expires-in", "1s")
    time.sleep(1.2)
    refused(trade_alone(live_server, token))
    refused(trade_basic(live_server, client_id, token))
    assert listed(live_server)["short-lived"]["EXPIRES"].startswith("expired")


def test_unknown_names_and_duplicates_change_nothing(
    live_server: LiveServer, engine: sa.Engine
) -> None:
    create(live_server, "taken")
    before = listed(live_server)
    cli = live_server.cli
    fails(cli("service-accounts", "create", "taken"), 1, "service account 'taken' already exists")
    fails(cli("service-accounts", "rotate", "nobody"), 1, "no service account 'nobody'")
    fails(cli("service-accounts", "revoke", "nobody"), 1, "no service account 'nobody'")
    assert listed(live_server) == before
    assert audit_rows(engine, "nobody") == []
    assert [row.event for row in audit_rows(engine, "taken")] == ["service_account_created"]


def test_bad_usage_exits_2_and_changes_nothing(tmp_path: Path) -> None:
    """Input errors are caught before anything is written (no server needed)."""
    config = standard_config(
        "http://127.0.0.1:8080", f"sqlite:///{tmp_path / 'db.sqlite'}", tmp_path / "sk"
    )
    (tmp_path / "authserver.yaml").write_text(yaml.safe_dump(config))

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return run_cli(
            "--config", str(tmp_path / "authserver.yaml"), "service-accounts", *args, cwd=tmp_path
        )

    fails(cli("create", "x1", "--role", "root"), 2, "unknown role 'root'; the roles are: admin")
    fails(cli("create", "x2", "--expires-in", "soon"), 2, "--expires-in 'soon'")
    fails(cli("create", "x3", "--expires-in", "0s"), 2, "--expires-in '0s'")
    fails(cli("create", "x4", "--expires-in", "5000d"), 2, "at most 3650 days")
    fails(
        cli("create", "x5", "--role", "viewer", "--scope", "write"),
        2,
        "role 'viewer' does not permit scope 'write'",
    )
    fails(cli("create", "no good"), 2, "service account name")
    usage = cli("rotate")
    assert usage.returncode == 2
    assert "arguments are required: NAME" in usage.stderr
    empty = ok(cli("list"))
    assert empty.stdout.splitlines()[1:] == []
    assert "no service accounts yet" in empty.stderr
    engine = sa.create_engine(str(config["database_url"]))
    try:
        assert SqlAuditLog(engine).page() == []
    finally:
        engine.dispose()


def test_keys_rotate_is_audited(tmp_path: Path) -> None:
    config = standard_config(
        "http://127.0.0.1:8080", f"sqlite:///{tmp_path / 'db.sqlite'}", tmp_path / "sk"
    )
    (tmp_path / "authserver.yaml").write_text(yaml.safe_dump(config))
    rotated = ok(
        run_cli(
            "--config", str(tmp_path / "authserver.yaml"), "keys", "rotate", "--now", cwd=tmp_path
        )
    )
    kid = rotated.stdout.split()[2]
    engine = sa.create_engine(str(config["database_url"]))
    try:
        [event] = SqlAuditLog(engine).page()
    finally:
        engine.dispose()
    assert (event.event, event.target, event.address) == ("keys_rotated", kid, "local")
    assert event.details == {"immediate": True}
    assert event.actor is not None
    assert event.actor.startswith("cli")
