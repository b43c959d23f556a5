"""Client credentials grant, RFC 6749 §4.4, against a live ``authserver serve``.

The client is Authlib's ``OAuth2Session``; the token is checked by PyJWT's
``PyJWKClient`` from our JWKS URL, as a resource server would.
"""

from __future__ import annotations

import jwt
import pytest
import requests
from authlib.integrations.requests_client import OAuth2Session

from .flyteadmin import flyteadmin_accepts
from .support.factories import AUDIENCES, SECRETS
from .support.servers import LiveServer


def _metadata(server: LiveServer) -> dict[str, object]:
    response = requests.get(server.url + "/.well-known/oauth-authorization-server", timeout=5)
    assert response.status_code == 200
    return dict(response.json())


def _validate(server: LiveServer, token: str, audience: str) -> dict[str, object]:
    jwks = jwt.PyJWKClient(str(_metadata(server)["jwks_uri"]))
    key = jwks.get_signing_key_from_jwt(token)
    claims: dict[str, object] = jwt.decode(
        token,
        key,
        algorithms=["RS256"],
        audience=audience,
        issuer=server.url,
        options={"require": ["exp", "iat", "iss", "aud", "sub", "jti"]},
    )
    return claims


@pytest.mark.parametrize("client_id", ["ci", "ci-b64", "ci-argon"])
def test_token_through_authlib_client_validates_with_pyjwt(
    live_server: LiveServer, client_id: str
) -> None:
    metadata = _metadata(live_server)
    session = OAuth2Session(client_id, SECRETS[client_id], scope="all")
    token = session.fetch_token(str(metadata["token_endpoint"]), grant_type="client_credentials")

    assert token["token_type"] == "Bearer"
    assert token["scope"] == "all"
    assert 3590 <= token["expires_in"] <= 3600
    header = jwt.get_unverified_header(token["access_token"])
    assert header["typ"] == "at+jwt"
    assert header["alg"] == "RS256"
    assert header["kid"]
    claims = _validate(live_server, token["access_token"], AUDIENCES[0])
    assert claims["iss"] == live_server.url
    assert claims["sub"] == client_id
    assert claims["client_id"] == client_id
    assert claims["aud"] == AUDIENCES[0]
    assert claims["scope"] == "all"
    assert int(str(claims["exp"])) - int(str(claims["iat"])) == 3600
    assert "roles" in claims


def test_roles_claim_carries_the_clients_roles(live_server: LiveServer) -> None:
    session = OAuth2Session("ci-b64", SECRETS["ci-b64"])
    token = session.fetch_token(live_server.url + "/oauth2/token", grant_type="client_credentials")
    claims = _validate(live_server, token["access_token"], AUDIENCES[0])
    assert claims["roles"] == ["admin"]


def test_client_secret_post_works_and_response_is_not_cached(live_server: LiveServer) -> None:
    response = requests.post(
        live_server.url + "/oauth2/token",
        data={
            "grant_type": "client_credentials",
            "client_id": "ci",
            "client_secret": SECRETS["ci"],
        },
        timeout=10,
    )
    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "no-store"
    body = response.json()
    assert set(body) == {"access_token", "token_type", "expires_in", "scope"}
    # With no scope asked for, the client's registered scopes are granted (RFC 6749 §3.3).
    assert body["scope"] == "all read write"


@pytest.mark.parametrize("parameter", ["audience", "resource"])
def test_audience_is_chosen_from_the_allowed_list(live_server: LiveServer, parameter: str) -> None:
    response = requests.post(
        live_server.url + "/oauth2/token",
        data={"grant_type": "client_credentials", parameter: AUDIENCES[1], "scope": "read"},
        auth=("ci", SECRETS["ci"]),
        timeout=10,
    )
    assert response.status_code == 200, response.text
    claims = _validate(live_server, response.json()["access_token"], AUDIENCES[1])
    assert claims["aud"] == AUDIENCES[1]
    assert claims["scope"] == "read"


def test_unknown_extra_parameters_are_ignored(live_server: LiveServer) -> None:
    # RFC 6749 §3.2: "The authorization server MUST ignore unrecognized request parameters."
    response = requests.post(
        live_server.url + "/oauth2/token",
        data={"grant_type": "client_credentials", "flavour": "vanilla", "x-trace": "1"},
        auth=("ci", SECRETS["ci"]),
        timeout=10,
    )
    assert response.status_code == 200, response.text


def test_every_worker_signs_with_the_same_key(live_server: LiveServer) -> None:
    kids = set()
    for _ in range(12):
        response = requests.post(
            live_server.url + "/oauth2/token",
            data={"grant_type": "client_credentials"},
            auth=("ci", SECRETS["ci"]),
            timeout=10,
        )
        kids.add(jwt.get_unverified_header(response.json()["access_token"])["kid"])
    assert len(kids) == 1


def test_flyteadmin_accepts_client_credentials_tokens(live_server: LiveServer) -> None:
    """Issue 15.1: ``scp`` as a JSON array beside the RFC 9068 ``scope`` string."""
    response = requests.post(
        live_server.url + "/oauth2/token",
        data={"grant_type": "client_credentials", "audience": AUDIENCES[1]},
        auth=("ci", SECRETS["ci"]),
        timeout=10,
    )
    assert response.status_code == 200, response.text
    token = response.json()["access_token"]
    claims = _validate(live_server, token, AUDIENCES[1])
    assert claims["scp"] == ["all", "read", "write"]
    assert claims["scope"] == "all read write"
    assert flyteadmin_accepts(live_server.url, token, {AUDIENCES[1]})
    assert not flyteadmin_accepts(live_server.url, token, {"https://other.example"})
    narrow = requests.post(
        live_server.url + "/oauth2/token",
        data={"grant_type": "client_credentials", "scope": "read", "audience": AUDIENCES[1]},
        auth=("ci", SECRETS["ci"]),
        timeout=10,
    ).json()["access_token"]
    assert _validate(live_server, narrow, AUDIENCES[1])["scp"] == ["read"]
    assert not flyteadmin_accepts(live_server.url, narrow, {AUDIENCES[1]})  # no `all`
