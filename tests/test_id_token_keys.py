"""ID tokens are RS256 whatever signs access tokens (OIDC Discovery §3: RS256 MUST be
offered); with ES256 or EdDSA access tokens, a second line of RS256 keys signs them."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import jwt
import pytest

from authserver.web.services import Services

from .support.factories import PASSWORD
from .support.flows import flask_authorize, form_field, pkce_pair


@pytest.mark.parametrize("algorithm", ["ES256", "EdDSA"])
def test_id_tokens_are_rs256_when_access_tokens_are_not(make_app, algorithm: str) -> None:  # type: ignore[no-untyped-def]
    app = make_app(signing={"algorithm": algorithm})
    Services.of(app).users.create_local("kate", PASSWORD, "user")
    client = app.test_client()
    page = client.get("/login", query_string={"force": "1"})
    client.post(
        "/login",
        data={
            "csrf_token": form_field(page.text, "csrf_token"),
            "username": "kate",
            "password": PASSWORD,
            "next": "/",
        },
    )
    verifier, challenge = pkce_pair()
    redirect_uri = "http://127.0.0.1:40000/callback"
    response = flask_authorize(
        client,
        {
            "response_type": "code",
            "client_id": "cli",
            "redirect_uri": redirect_uri,
            "scope": "openid profile",
            "code_challenge": challenge,
            "code_challenge_method": "S256",
            "nonce": "n-1",
        },
    )
    assert response.status_code == 302
    code = parse_qs(urlsplit(response.headers["Location"]).query)["code"][0]
    tokens = client.post(
        "/oauth2/token",
        data={
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": redirect_uri,
            "client_id": "cli",
            "code_verifier": verifier,
        },
    ).json
    jwks = jwt.PyJWKSet.from_dict(client.get("/.well-known/jwks.json").json)
    by_kid = {key.key_id: key for key in jwks.keys}

    access_header = jwt.get_unverified_header(tokens["access_token"])
    assert access_header["alg"] == algorithm
    id_header = jwt.get_unverified_header(tokens["id_token"])
    assert id_header["alg"] == "RS256"
    claims = jwt.decode(
        tokens["id_token"],
        by_kid[id_header["kid"]].key,
        algorithms=["RS256"],
        audience="cli",
        issuer="http://127.0.0.1:8080",
    )
    assert claims["nonce"] == "n-1"
    jwt.decode(
        tokens["access_token"],
        by_kid[access_header["kid"]].key,
        algorithms=[algorithm],
        audience="https://api.example.com",
    )
    metadata = client.get("/.well-known/openid-configuration").json
    assert metadata["id_token_signing_alg_values_supported"] == ["RS256"]
    # userinfo still accepts the (non-RS256) access token
    info = client.get(
        "/oauth2/userinfo", headers={"Authorization": "Bearer " + tokens["access_token"]}
    )
    assert info.status_code == 200
    assert info.json["sub"] == claims["sub"]
