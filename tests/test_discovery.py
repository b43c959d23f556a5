"""Discovery: RFC 8414 §3 and OIDC Discovery §4; every advertised endpoint works."""

from __future__ import annotations

import time

import requests
from flask import Flask

from authserver.web.services import Services

from .support.factories import SECRETS
from .support.servers import InProcessServer


def test_both_documents_match_and_name_the_issuer_exactly(app_server: InProcessServer) -> None:
    oidc = requests.get(app_server.url + "/.well-known/openid-configuration", timeout=5)
    oauth = requests.get(app_server.url + "/.well-known/oauth-authorization-server", timeout=5)
    assert oidc.status_code == oauth.status_code == 200
    assert oidc.json() == oauth.json()
    metadata = oidc.json()
    assert metadata["issuer"] == app_server.url
    assert set(metadata["grant_types_supported"]) == {
        "authorization_code",
        "refresh_token",
        "client_credentials",
        "urn:ietf:params:oauth:grant-type:device_code",
        "urn:ietf:params:oauth:grant-type:token-exchange",
        "urn:ietf:params:oauth:grant-type:jwt-bearer",
    }
    # Every advertised grant is one the token endpoint knows.
    for grant_type in metadata["grant_types_supported"]:
        answer = requests.post(
            metadata["token_endpoint"], data={"grant_type": grant_type}, timeout=10
        ).json()
        assert answer.get("error") != "unsupported_grant_type", grant_type
    assert metadata["response_types_supported"] == ["code"]
    assert metadata["code_challenge_methods_supported"] == ["S256"]
    assert metadata["authorization_response_iss_parameter_supported"] is True
    assert set(metadata["token_endpoint_auth_methods_supported"]) == {
        "client_secret_basic",
        "client_secret_post",
        "private_key_jwt",
        "none",
    }
    # RFC 8414 §2: required with private_key_jwt; asymmetric algorithms only.
    assert metadata["token_endpoint_auth_signing_alg_values_supported"] == [
        "ES256",
        "RS256",
        "EdDSA",
    ]
    assert "RS256" in metadata["id_token_signing_alg_values_supported"]
    assert metadata["access_token_signing_alg_values_supported"][0] == "RS256"


def test_every_advertised_endpoint_answers(app_server: InProcessServer) -> None:
    metadata = requests.get(app_server.url + "/.well-known/openid-configuration", timeout=5).json()
    jwks = requests.get(metadata["jwks_uri"], timeout=5)
    assert jwks.status_code == 200
    assert jwks.json()["keys"]
    token = requests.post(
        metadata["token_endpoint"],
        data={"grant_type": "client_credentials"},
        auth=("ci", SECRETS["ci"]),
        timeout=10,
    )
    assert token.status_code == 200
    access_token = token.json()["access_token"]
    introspection = requests.post(
        metadata["introspection_endpoint"],
        data={"token": access_token},
        auth=("rs", SECRETS["rs"]),
        timeout=10,
    )
    assert introspection.json()["active"] is True
    revocation = requests.post(
        metadata["revocation_endpoint"],
        data={"token": access_token},
        auth=("ci", SECRETS["ci"]),
        timeout=10,
    )
    assert revocation.status_code == 200


def test_expired_token_is_inactive(app: Flask) -> None:
    """A token we signed whose ``exp`` (plus leeway) has passed (RFC 7662 §2.2)."""
    keys = Services.of(app).keys
    now = int(time.time())
    claims = {
        "iss": "http://127.0.0.1:8080",
        "sub": "ci",
        "aud": "https://api.example.com",
        "iat": now - 7200,
        "exp": now - 3600,
        "jti": "expired-1",
        "client_id": "ci",
        "scope": "all",
    }
    expired = keys.sign({"typ": "at+jwt"}, claims)
    fresh = keys.sign({"typ": "at+jwt"}, {**claims, "exp": now + 60, "jti": "fresh-1"})
    client = app.test_client()
    for token, active in ((expired, False), (fresh, True)):
        response = client.post(
            "/oauth2/introspect", data={"token": token}, auth=("rs", SECRETS["rs"])
        )
        assert response.status_code == 200
        assert response.json["active"] is active


def test_token_of_another_issuer_or_type_is_inactive(app: Flask) -> None:
    keys = Services.of(app).keys
    now = int(time.time())
    base = {"sub": "ci", "iat": now, "exp": now + 600, "jti": "j", "client_id": "ci"}
    other_issuer = keys.sign({"typ": "at+jwt"}, {**base, "iss": "https://elsewhere.example.com"})
    id_token_like = keys.sign({"typ": "JWT"}, {**base, "iss": "http://127.0.0.1:8080"})
    client = app.test_client()
    for token in (other_issuer, id_token_like):
        response = client.post(
            "/oauth2/introspect", data={"token": token}, auth=("rs", SECRETS["rs"])
        )
        assert response.json == {"active": False}
