"""Service-account key files and ``private_key_jwt`` (RFC 7523 §2.2, OIDC Core §9).

Key files are written by ``authserver service-accounts create --key-file`` through the
entry point, against a live ``authserver serve`` (both backends). The client is
Authlib's own ``PrivateKeyJWT`` or ``authserver token --key-file``; access tokens are
checked with PyJWT through our JWKS, as a resource server would.
"""

from __future__ import annotations

import base64
import json
import os
import stat
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
from authlib.integrations.requests_client import OAuth2Session
from authlib.oauth2.rfc7523 import PrivateKeyJWT
from flask import Flask
from joserfc import jws
from joserfc.jwk import ECKey, OctKey, import_key

from authserver.key_file import (
    ASSERTION_TYPE,
    KEY_FILE_TYPE,
    KeyFile,
    client_assertion,
    generate_key,
    load_key_file,
)
from authserver.settings import Settings
from authserver.web.services import Services

from .support.factories import AUDIENCES, standard_config
from .support.servers import LiveServer, run_cli, stderr_lines

ES256_ONLY = ["ES256"]


def ok(result: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert result.returncode == 0, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    return result


def make_key_file(server: LiveServer, name: str, *options: str) -> tuple[Path, KeyFile]:
    path = server.workdir / f"{name}.json"
    result = ok(server.cli("service-accounts", "create", name, "--key-file", str(path), *options))
    key_file = load_key_file(path)
    # Only the key id on stdout: the private key is in the file alone.
    assert result.stdout == key_file.key_id + "\n"
    assert f"created service account {name} (client id {key_file.client_id}" in result.stderr
    return path, key_file


def token_endpoint(server: LiveServer) -> str:
    metadata = requests.get(server.url + "/.well-known/oauth-authorization-server", timeout=5)
    return str(metadata.json()["token_endpoint"])


def claims_of(server: LiveServer, access_token: str, audience: str = AUDIENCES[0]) -> Any:
    metadata = requests.get(server.url + "/.well-known/openid-configuration", timeout=5).json()
    key = jwt.PyJWKClient(metadata["jwks_uri"]).get_signing_key_from_jwt(access_token)
    return jwt.decode(access_token, key, algorithms=["RS256"], audience=audience, issuer=server.url)


def trade(server: LiveServer, assertion: str, **extra: str) -> requests.Response:
    return requests.post(
        token_endpoint(server),
        data={
            "grant_type": "client_credentials",
            "client_assertion_type": ASSERTION_TYPE,
            "client_assertion": assertion,
            **extra,
        },
        timeout=10,
    )


def refused(response: requests.Response, description: str | None = None) -> None:
    assert response.status_code == 401, response.text
    assert response.json()["error"] == "invalid_client"
    if description is not None:
        assert response.json()["error_description"] == description


def sign(key: Any, claims: dict[str, Any], alg: str = "ES256", **header: Any) -> str:
    return jws.serialize_compact({"alg": alg, **header}, json.dumps(claims), key)


def claims_for(key_file: KeyFile, **changes: Any) -> dict[str, Any]:
    now = int(time.time())
    claims = {
        "iss": key_file.client_id,
        "sub": key_file.client_id,
        "aud": key_file.issuer,
        "iat": now,
        "exp": now + 60,
        "jti": os.urandom(12).hex(),
    }
    claims.update(changes)
    return {k: v for k, v in claims.items() if v is not None}


@pytest.fixture
def engine(live_server: LiveServer) -> Iterator[sa.Engine]:
    config = yaml.safe_load(live_server.config_path.read_text())
    engine = sa.create_engine(config["database_url"])
    yield engine
    engine.dispose()


def every_value_in_the_database(engine: sa.Engine) -> str:
    """Every row of every table, as text."""
    text = []
    with engine.connect() as conn:
        for table in sa.inspect(engine).get_table_names():
            for row in conn.execute(sa.text(f'SELECT * FROM "{table}"')):  # noqa: S608
                text.append(repr(tuple(row)))
    return "\n".join(text)


@pytest.mark.live
def test_authlib_private_key_jwt_with_a_cli_key_file(
    live_server: LiveServer, engine: sa.Engine
) -> None:
    path, key_file = make_key_file(live_server, "keyed-bot", "--role", "viewer")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    document = json.loads(path.read_text())
    assert document["type"] == KEY_FILE_TYPE
    assert document["token_url"] == token_endpoint(live_server)
    assert document["issuer"] == live_server.url
    assert document["private_key"]["alg"] == "ES256"
    assert document["private_key"]["kid"] == document["key_id"]

    endpoint = token_endpoint(live_server)
    with OAuth2Session(
        key_file.client_id,
        key_file.private_key,
        token_endpoint_auth_method=PrivateKeyJWT(endpoint, alg="ES256"),
    ) as session:
        token = session.fetch_token(endpoint, grant_type="client_credentials")
    claims = claims_of(live_server, token["access_token"])
    assert claims["sub"] == claims["client_id"] == key_file.client_id
    assert claims["roles"] == ["viewer"]
    assert claims["scope"] == "read"

    # The database holds the public key, never the private one.
    dump = every_value_in_the_database(engine)
    assert document["private_key"]["x"] in dump
    assert document["private_key"]["d"] not in dump
    listed = ok(live_server.cli("service-accounts", "keys", "keyed-bot")).stdout
    assert key_file.key_id in listed
    assert "ES256" in listed


@pytest.mark.live
def test_replayed_foreign_and_malformed_assertions_are_invalid_client(
    live_server: LiveServer, engine: sa.Engine
) -> None:
    _, key_file = make_key_file(live_server, "replay-bot")
    assertion = client_assertion(key_file)
    assert trade(live_server, assertion).status_code == 200
    refused(trade(live_server, assertion), "The client assertion was used before (jti).")

    foreign = generate_key("ES256")
    jti = "first-use-after-a-refusal"
    refused(
        trade(live_server, sign(foreign, claims_for(key_file, jti=jti), kid=key_file.key_id)),
        "The client assertion is not signed by a key of this client.",
    )
    # A refusal wrote nothing: the same jti is still unused.
    own = sign(key_file.private_key, claims_for(key_file, jti=jti), kid=key_file.key_id)
    assert trade(live_server, own).status_code == 200

    now = int(time.time())
    hs_key = OctKey.import_key(b"k" * 32)
    bad = {
        "expired": sign(key_file.private_key, claims_for(key_file, iat=now - 200, exp=now - 100)),
        "too old": sign(key_file.private_key, claims_for(key_file, iat=now - 600, exp=now + 60)),
        "far exp, no iat": sign(
            key_file.private_key, claims_for(key_file, iat=None, exp=now + 3600)
        ),
        "iat ahead": sign(key_file.private_key, claims_for(key_file, iat=now + 600)),
        "no jti": sign(key_file.private_key, claims_for(key_file, jti=None)),
        "wrong aud": sign(key_file.private_key, claims_for(key_file, aud="https://elsewhere")),
        "iss is not sub": sign(key_file.private_key, claims_for(key_file, iss="someone")),
        "HS256": jws.serialize_compact(
            {"alg": "HS256"}, json.dumps(claims_for(key_file)), hs_key, algorithms=["HS256"]
        ),
        # {"alg":"none"}, an empty signature (RFC 7519 §6.1)
        "none": "eyJhbGciOiJub25lIn0." + client_assertion(key_file).split(".")[1] + ".",
        "not a JWT": "not.a.jwt",
        "lone surrogate": ".".join(
            [
                "eyJhbGciOiJFUzI1NiJ9",
                base64.urlsafe_b64encode(b'{"iss":"sa-\\ud800","sub":"sa-\\ud800"}')
                .rstrip(b"=")
                .decode(),
                "c2ln",
            ]
        ),
        "unknown client": sign(key_file.private_key, claims_for(key_file, iss="sa-0", sub="sa-0")),
    }
    for reason, assertion in bad.items():
        response = trade(live_server, assertion)
        assert response.status_code == 401, (reason, response.text)
        assert response.json()["error"] == "invalid_client", reason
    # Another client_id beside the assertion, or a secret too: refused.
    refused(trade(live_server, client_assertion(key_file), client_id="ci"))
    two = trade(live_server, client_assertion(key_file), client_secret="x")
    assert two.status_code == 400
    assert two.json()["error"] == "invalid_request"


@pytest.mark.live
def test_add_key_and_remove_key_rotate_without_downtime(live_server: LiveServer) -> None:
    first_path, first = make_key_file(live_server, "rolling-bot")
    second_path = live_server.workdir / "rolling-bot-2.json"
    result = ok(
        live_server.cli(
            "service-accounts",
            "add-key",
            "rolling-bot",
            "--key-file",
            str(second_path),
            "--key-algorithm",
            "EdDSA",
        )
    )
    second = load_key_file(second_path)
    assert result.stdout == second.key_id + "\n"
    assert second.client_id == first.client_id
    assert second.algorithm == "EdDSA"
    # Two keys valid at once.
    assert trade(live_server, client_assertion(first)).status_code == 200
    assert trade(live_server, client_assertion(second)).status_code == 200
    # An existing file is never overwritten.
    again = live_server.cli(
        "service-accounts", "add-key", "rolling-bot", "--key-file", str(first_path)
    )
    assert again.returncode == 2
    assert "exists already" in again.stderr
    assert load_key_file(first_path).key_id == first.key_id

    ok(live_server.cli("service-accounts", "remove-key", "rolling-bot", first.key_id))
    refused(trade(live_server, client_assertion(first)))
    assert trade(live_server, client_assertion(second)).status_code == 200
    gone = live_server.cli("service-accounts", "remove-key", "rolling-bot", first.key_id)
    assert gone.returncode != 0
    assert len(stderr_lines(gone.stderr)) == 1
    # An account with keys and no token has no token to rotate.
    rotate = live_server.cli("service-accounts", "rotate", "rolling-bot")
    assert rotate.returncode != 0
    assert "add-key" in rotate.stderr


@pytest.mark.live
def test_authserver_token_key_file_and_credentials_variable(
    live_server: LiveServer, tmp_path: Path
) -> None:
    path, key_file = make_key_file(live_server, "token-bot")
    cache = {"AUTHSERVER_CACHE_DIR": str(tmp_path / "cache")}
    printed = ok(run_cli("token", "--key-file", str(path), cwd=tmp_path, env=cache)).stdout
    access_token = printed.strip()
    assert printed == access_token + "\n"
    claims = claims_of(live_server, access_token)
    assert claims["sub"] == key_file.client_id
    assert claims["roles"] == ["user"]

    # Cached until near expiry: the same token again, and from the variable too.
    again = ok(run_cli("token", "--key-file", str(path), cwd=tmp_path, env=cache)).stdout
    assert again == printed
    from_env = ok(
        run_cli("token", cwd=tmp_path, env={**cache, "AUTHSERVER_CREDENTIALS": str(path)})
    ).stdout
    assert from_env == printed

    # --scope and --audience ask for another token (cached apart).
    scoped = ok(
        run_cli(
            "token",
            "--scope",
            "read",
            "--audience",
            AUDIENCES[1],
            cwd=tmp_path,
            env={"AUTHSERVER_CREDENTIALS": str(path), "AUTHSERVER_CACHE_DIR": str(tmp_path / "c2")},
        )
    ).stdout.strip()
    scoped_claims = claims_of(live_server, scoped, AUDIENCES[1])
    assert scoped_claims["scope"] == "read"

    # A key that was removed: one clear line, no traceback.
    ok(live_server.cli("service-accounts", "remove-key", "token-bot", key_file.key_id))
    fresh_cache = {"AUTHSERVER_CACHE_DIR": str(tmp_path / "c3")}
    refused_run = run_cli("token", "--key-file", str(path), cwd=tmp_path, env=fresh_cache)
    assert refused_run.returncode == 1
    assert "invalid_client" in refused_run.stderr
    assert "Traceback" not in refused_run.stderr
    missing = run_cli("token", "--key-file", str(tmp_path / "nope.json"), cwd=tmp_path)
    assert missing.returncode == 1
    assert "cannot read the key file" in missing.stderr


# -- static clients with jwks (in-process) ----------------------------------------------


def test_a_static_client_with_jwks_and_no_secret(make_app: Any) -> None:
    key = generate_key("ES256")
    public = dict(key.as_dict(private=False))
    app: Flask = make_app(
        clients=[
            {
                "client_id": "signer",
                "jwks": {"keys": [public]},
                "grant_types": ["client_credentials"],
                "scopes": ["read"],
            }
        ]
    )
    client = app.test_client()
    issuer = "http://127.0.0.1:8080"
    key_file = KeyFile("signer", str(key.kid), issuer, issuer + "/oauth2/token", key)
    form = {
        "grant_type": "client_credentials",
        "client_assertion_type": ASSERTION_TYPE,
    }
    response = client.post(
        "/oauth2/token", data={**form, "client_assertion": client_assertion(key_file)}
    )
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["scope"] == "read"
    # No secret to try.
    basic = client.post("/oauth2/token", data=form, auth=("signer", "anything"))
    assert basic.status_code == 401
    # The token endpoint URL is an accepted aud too (Authlib's default).
    by_endpoint = sign(
        key,
        {**claims_for(key_file), "aud": issuer + "/oauth2/token"},
        kid=key_file.key_id,
    )
    assert (
        client.post("/oauth2/token", data={**form, "client_assertion": by_endpoint}).status_code
        == 200
    )


@pytest.mark.parametrize(
    ("jwks", "message"),
    [
        ({"keys": []}, "at least one key"),
        (
            {"keys": [{"kty": "oct", "k": "c2VjcmV0", "kid": "a", "alg": "HS256"}]},
            "private or symmetric",
        ),
        ("private", "private or symmetric"),
        ("no kid", "needs a kid"),
        ("HS alg", "needs alg ES256, RS256 or EdDSA"),
    ],
)
def test_static_jwks_must_be_public_asymmetric_keys(
    tmp_path: Path, jwks: Any, message: str
) -> None:
    key = generate_key("ES256")
    public = dict(key.as_dict(private=False))
    if jwks == "private":
        jwks = {"keys": [dict(key.as_dict(private=True))]}
    elif jwks == "no kid":
        jwks = {"keys": [{k: v for k, v in public.items() if k != "kid"}]}
    elif jwks == "HS alg":
        jwks = {"keys": [{**public, "alg": "HS256"}]}
    config = standard_config("http://127.0.0.1:8080", "sqlite://", tmp_path / "secret")
    config["clients"] = [
        {"client_id": "signer", "jwks": jwks, "grant_types": ["client_credentials"]}
    ]
    with pytest.raises(ValueError, match=message):
        Settings.model_validate(config)


def test_the_repository_refuses_a_private_jwk(app: Flask) -> None:
    from datetime import UTC, datetime

    from authserver.storage.models import db
    from authserver.storage.service_accounts import (
        ServiceAccountKeyRecord,
        SqlServiceAccountRepository,
    )

    service = Services.of(app).service_accounts
    with app.app_context():
        info, _ = service.create_with_key("guarded")
        key = ECKey.generate_key("P-256")
        record = ServiceAccountKeyRecord(
            info.client_id, "x", "ES256", dict(key.as_dict(private=True)), datetime.now(UTC), None
        )
        with pytest.raises(ValueError, match="public part only"):
            SqlServiceAccountRepository(db.engine).add_key(record, 10)
    assert import_key(dict(key.as_dict(private=False)))


# -- the admin API ------------------------------------------------------------------------


def test_admin_api_key_files_and_the_tokens_they_mint(app: Flask) -> None:
    from .test_admin_api_schema import API, ISSUER, bearer, token_for

    http = app.test_client()
    admin = bearer(token_for(app, "ci-b64"))
    created = http.post(
        f"{API}/service-accounts",
        json={"name": "api-keyed", "role": "admin", "key_algorithm": "ES256"},
        headers=admin,
    )
    assert created.status_code == 201, created.get_json()
    body = created.get_json()
    assert "token" not in body
    first = KeyFile.from_document(body["key_file"])
    assert first.client_id == body["service_account"]["client_id"]
    assert first.token_url == ISSUER + "/oauth2/token"

    def api_token(key_file: KeyFile) -> str:
        response = http.post(
            "/oauth2/token",
            data={
                "grant_type": "client_credentials",
                "client_assertion_type": ASSERTION_TYPE,
                "client_assertion": client_assertion(key_file),
                "audience": ISSUER + API,
            },
        )
        assert response.status_code == 200, response.get_json()
        return str(response.get_json()["access_token"])

    first_token = api_token(first)
    assert http.get(f"{API}/me", headers=bearer(first_token)).status_code == 200

    added = http.post(
        f"{API}/service-accounts/api-keyed/keys", json={"algorithm": "RS256"}, headers=admin
    )
    assert added.status_code == 201
    second = KeyFile.from_document(added.get_json()["key_file"])
    assert second.algorithm == "RS256"
    listed = http.get(f"{API}/service-accounts/api-keyed/keys", headers=admin).get_json()
    assert [k["kid"] for k in listed["items"]] == [first.key_id, second.key_id]
    assert all(set(k) == {"kid", "algorithm", "created_at", "created_by"} for k in listed["items"])
    assert first.private_key.as_dict(private=True)["d"] not in json.dumps(listed)
    second_token = api_token(second)

    # A removed key: its assertions and the tokens it minted stop at the admin API.
    removed = http.delete(f"{API}/service-accounts/api-keyed/keys/{first.key_id}", headers=admin)
    assert removed.status_code == 204
    assert http.get(f"{API}/me", headers=bearer(first_token)).status_code == 401
    assert http.get(f"{API}/me", headers=bearer(second_token)).status_code == 200
    stale = http.post(
        "/oauth2/token",
        data={
            "grant_type": "client_credentials",
            "client_assertion_type": ASSERTION_TYPE,
            "client_assertion": client_assertion(first),
        },
    )
    assert stale.status_code == 401
    # Rotating a token it does not have is a client error.
    rotate = http.post(f"{API}/service-accounts/api-keyed/rotate", headers=admin)
    assert rotate.status_code == 400


def test_bad_assertions_are_counted_by_the_failure_throttle(app: Flask) -> None:
    """Like wrong secrets (``client_auth_per_client_address``, 10 a minute): then 429
    with ``Retry-After``. A good assertion costs no slow hash, so it is checked first
    and still passes: the owner is not locked out by a guesser."""
    _, key_file = Services.of(app).service_accounts.create_with_key("throttled")
    http = app.test_client()
    foreign = generate_key("ES256")

    def post(assertion: str) -> Any:
        return http.post(
            "/oauth2/token",
            data={
                "grant_type": "client_credentials",
                "client_assertion_type": ASSERTION_TYPE,
                "client_assertion": assertion,
            },
        )

    statuses = [post(sign(foreign, claims_for(key_file))).status_code for _ in range(11)]
    assert statuses == [401] * 10 + [429]
    throttled = post(sign(foreign, claims_for(key_file)))
    assert throttled.get_json()["error"] == "invalid_client"
    assert int(throttled.headers["Retry-After"]) > 0
    assert post(client_assertion(key_file)).status_code == 200
    Services.of(app).events.flush()
    events = [r.event for r in Services.of(app).audit.page(limit=100)]
    assert "client_auth_failed" in events
    assert "client_auth_throttled" in events


# -- the dashboard ------------------------------------------------------------------------


def test_dashboard_offers_the_key_file_once_as_a_download(make_app: Any) -> None:
    from .support.factories import new_local_user
    from .support.flows import flask_sign_in
    from .test_dashboard import post

    app = make_app()
    dash = flask_sign_in(app, new_local_user(app, "admin"))
    created = post(
        dash,
        "/dashboard/service-accounts",
        {"name": "dash-keyed", "role": "user", "expires_in": "7 days", "credential": "key file"},
    )
    assert created.status_code == 201, created.get_data(as_text=True)[:500]
    assert created.headers["Content-Disposition"].startswith('attachment; filename="dash-keyed-')
    assert created.headers["Cache-Control"] == "no-store"
    first = KeyFile.from_document(created.get_json())
    listing = dash.get("/dashboard/service-accounts").get_data(as_text=True)
    assert "Add key file" in listing
    assert first.private_key.as_dict(private=True)["d"] not in listing

    added = post(dash, "/dashboard/service-accounts/add-key", {"name": "dash-keyed"})
    assert added.status_code == 201
    second = KeyFile.from_document(added.get_json())
    assert second.client_id == first.client_id
    assert second.key_id != first.key_id
    keys = Services.of(app).service_accounts.keys("dash-keyed")
    assert [k.kid for k in keys] == [first.key_id, second.key_id]
    for key_file in (first, second):
        response = app.test_client().post(
            "/oauth2/token",
            data={
                "grant_type": "client_credentials",
                "client_assertion_type": ASSERTION_TYPE,
                "client_assertion": client_assertion(key_file),
            },
        )
        assert response.status_code == 200
