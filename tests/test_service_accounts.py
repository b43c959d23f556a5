"""Service accounts (issue #4, DESIGN.md): one token string, ``as_sa_<client_id>.<secret>``,
traded for an access token with the client credentials grant (RFC 6749 §4.4), by HTTP
Basic ``<client_id>:<token>`` or by the token alone as ``client_secret``. Rotated,
revoked or expired, it is ``invalid_client`` (RFC 6749 §5.2).
"""

from __future__ import annotations

import base64
from typing import Any

import pytest
import requests
import sqlalchemy as sa
from authlib.integrations.requests_client import OAuth2Session
from flask import Flask
from flask.testing import FlaskClient

from authserver.clock import ManualClock
from authserver.identity.service_accounts import ServiceAccountService
from authserver.identity.users import AlreadyExists, NotFound, UserError
from authserver.web.services import Services

from .conftest import AppFactory
from .support.factories import AUDIENCES
from .support.flows import assert_oauth_error, jwt_claims
from .support.servers import LiveServer


def accounts(app: Flask) -> ServiceAccountService:
    service = Services.of(app).service_accounts
    return service


def create(app: Flask, name: str = "ci-job", **kw: Any) -> tuple[str, str]:
    """A new service account: ``(client_id, token)``."""
    with app.app_context():
        info, token = accounts(app).create(name, **kw)
    return info.client_id, token


def basic(client_id: str, secret: str) -> dict[str, str]:
    raw = base64.b64encode(f"{client_id}:{secret}".encode()).decode()
    return {"Authorization": f"Basic {raw}"}


def token_request(
    client: FlaskClient, token: str, client_id: str | None = None, **form: str
) -> Any:
    """Client credentials with the token alone (or, given ``client_id``, by Basic)."""
    data = {"grant_type": "client_credentials", **form}
    if client_id is None:
        return client.post("/oauth2/token", data={**data, "client_secret": token})
    return client.post("/oauth2/token", data=data, headers=basic(client_id, token))


def test_token_format_and_claims(make_app: AppFactory) -> None:
    app = make_app()
    client_id, token = create(app, role="viewer")
    assert client_id.startswith("sa-")
    assert token.startswith(f"as_sa_{client_id}.")
    assert len(token.split(".", 1)[1]) >= 43  # 256 bits

    client = app.test_client()
    for response in (token_request(client, token), token_request(client, token, client_id)):
        assert response.status_code == 200, response.get_json()
        body = response.get_json()
        assert body["token_type"] == "Bearer"
        assert body["scope"] == "read"  # the viewer role's permissions
        claims = jwt_claims(body["access_token"])
        assert claims["sub"] == client_id
        assert claims["client_id"] == client_id
        assert claims["roles"] == ["viewer"]
        assert claims["aud"] == AUDIENCES[0]


def test_the_token_is_stored_as_a_hash_only(make_app: AppFactory) -> None:
    app = make_app()
    _, token = create(app)
    with app.app_context():
        engine = app.extensions["sqlalchemy"].engines[None]
    with engine.connect() as conn:
        rows = [tuple(map(str, r)) for r in conn.execute(sa.text("SELECT * FROM service_accounts"))]
    assert rows
    secret = token.split(".", 1)[1]
    assert not any(secret in cell for row in rows for cell in row)


def test_wrong_and_mangled_tokens_are_invalid_client(make_app: AppFactory) -> None:
    app = make_app()
    client_id, token = create(app)
    other_id, other = create(app, "other-job")
    client = app.test_client()
    bad = [
        token[:-2] + ("AA" if not token.endswith("AA") else "BB"),  # a wrong secret
        token.replace(client_id, other_id),  # another's id with this secret
        f"as_sa_{client_id}.",  # no secret
        "as_sa_.x",
        "as_sa_sa-nope.abc",
    ]
    for candidate in bad:
        assert_oauth_error(token_request(client, candidate), "invalid_client", 400)
    # Basic with another account's id and this token
    assert_oauth_error(token_request(client, token, other_id), "invalid_client", 401)
    # both still work
    assert token_request(client, token).status_code == 200
    assert token_request(client, other, other_id).status_code == 200


def test_scopes_within_the_role(make_app: AppFactory) -> None:
    app = make_app()
    _, token = create(app, role="user", scopes=["read"])
    client = app.test_client()
    assert token_request(client, token, scope="read").get_json()["scope"] == "read"
    assert_oauth_error(token_request(client, token, scope="write"), "invalid_scope")
    with app.app_context(), pytest.raises(UserError, match="does not permit scope 'all'"):
        accounts(app).create("too-wide", role="viewer", scopes=["all"])
    # an admin ("*") may hold any scope
    _, admin_token = create(app, "admin-job", role="admin", scopes=["all", "read"])
    assert token_request(client, admin_token, scope="all").get_json()["scope"] == "all"


def test_only_client_credentials(make_app: AppFactory) -> None:
    app = make_app()
    client_id, token = create(app)
    response = app.test_client().post(
        "/oauth2/token",
        data={"grant_type": "refresh_token", "refresh_token": "as_rt_x"},
        headers=basic(client_id, token),
    )
    assert_oauth_error(response, "unauthorized_client")


def test_rotate_kills_the_old_token(make_app: AppFactory) -> None:
    app = make_app()
    client_id, old = create(app)
    with app.app_context():
        info, new = accounts(app).rotate("ci-job")
    assert info.client_id == client_id
    assert info.rotated_at is not None
    client = app.test_client()
    assert_oauth_error(token_request(client, old), "invalid_client")
    assert token_request(client, new).status_code == 200


def test_revoke_and_expiry(make_app: AppFactory) -> None:
    clock = ManualClock()
    app = make_app(clock=clock)
    _, token = create(app)
    client = app.test_client()
    with app.app_context():
        accounts(app).revoke("ci-job")
        with pytest.raises(NotFound):
            accounts(app).revoke("ci-job")
    assert_oauth_error(token_request(client, token), "invalid_client")

    _, short = create(app, "short-lived", expires_in=1)
    assert token_request(client, short).status_code == 200
    clock.advance(1.2)
    assert_oauth_error(token_request(client, short), "invalid_client")
    with app.app_context():
        listed = {i.name: i for i in accounts(app).list()}
    assert listed["short-lived"].expires_at is not None


def test_never_expiring_and_last_used(make_app: AppFactory) -> None:
    app = make_app()
    _, token = create(app, "forever", expires_in=None)
    with app.app_context():
        before = accounts(app).get("forever")
    assert before.expires_at is None
    assert before.last_used_at is None
    assert token_request(app.test_client(), token).status_code == 200
    with app.app_context():
        assert accounts(app).get("forever").last_used_at is not None


def test_bad_input_changes_nothing(make_app: AppFactory) -> None:
    app = make_app()
    create(app)
    with app.app_context():
        service = accounts(app)
        for name in ("", "has space", "-dash-first", "x" * 65, "naïve"):
            with pytest.raises(UserError, match="a service account name"):
                service.create(name)
        with pytest.raises(UserError, match="unknown role 'root'"):
            service.create("job-2", role="root")
        with pytest.raises(UserError, match="expiry"):
            service.create("job-2", expires_in=0)
        with pytest.raises(AlreadyExists):
            service.create("ci-job")
        with pytest.raises(NotFound):
            service.rotate("nobody")
        assert [i.name for i in service.list()] == ["ci-job"]


def test_static_clients_cannot_take_the_service_account_prefix(make_app: AppFactory) -> None:
    from authserver.settings import ClientSettings

    with pytest.raises(ValueError, match="kept for service accounts"):
        ClientSettings(client_id="sa-x", client_secret_hash="$2b$04$" + "a" * 53)


@pytest.mark.live
def test_with_authlib_client_against_a_live_server(live_server: LiveServer) -> None:
    result = live_server.cli("service-accounts", "create", "authlib-job", "--role", "admin")
    assert result.returncode == 0, result.stderr
    token = result.stdout.strip()
    client_id = token.removeprefix("as_sa_").split(".", 1)[0]
    url = live_server.url + "/oauth2/token"

    session = OAuth2Session(client_id, token)  # client_secret_basic by default
    body = session.fetch_token(url, grant_type="client_credentials")
    assert jwt_claims(body["access_token"])["roles"] == ["admin"]

    # the token alone, as a CI job's curl sends it
    alone = requests.post(
        url, data={"grant_type": "client_credentials", "client_secret": token}, timeout=10
    )
    assert alone.status_code == 200, alone.text
    assert jwt_claims(alone.json()["access_token"])["client_id"] == client_id

    assert live_server.cli("service-accounts", "revoke", "authlib-job").returncode == 0
    from authlib.integrations.base_client.errors import OAuthError

    with pytest.raises(OAuthError) as refused:
        session.fetch_token(url, grant_type="client_credentials")
    assert refused.value.error == "invalid_client"


def test_rights_follow_the_config(make_app: AppFactory) -> None:
    """A role taken out of ``rbac.roles`` stops its accounts; a permission taken out of
    a role stops that scope."""
    app = make_app()
    _, ops = create(app, "ops-job", role="viewer")
    _, wide = create(app, "wide-job", role="user", scopes=["read", "write"])
    narrowed = make_app(rbac={"roles": {"user": ["read"]}, "group_roles": {}})
    client = narrowed.test_client()
    assert_oauth_error(token_request(client, ops), "invalid_client")
    assert token_request(client, wide).get_json()["scope"] == "read"
    assert_oauth_error(token_request(client, wide, scope="write"), "invalid_scope")


def test_a_rotation_that_lost_a_race_says_so(make_app: AppFactory) -> None:
    app = make_app()
    client_id, token = create(app)
    with app.app_context():
        repo = accounts(app)._repo
        record = repo.get(client_id)
        assert record is not None
        accounts(app).rotate("ci-job")
        # a second rotation that read the row before the first one wrote it
        at = record.info.created_at
        assert not repo.replace_token(client_id, record.token_hash, "0" * 64, at)
        assert repo.get(client_id).token_hash != "0" * 64  # type: ignore[union-attr]
    assert_oauth_error(token_request(app.test_client(), token), "invalid_client")
