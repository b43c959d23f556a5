"""Server metadata: RFC 8414 §2 and OpenID Connect Discovery 1.0 §3.

Only what works is advertised (DESIGN.md): a grant or endpoint appears here in the
same change that makes it work.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ..keys.material import ALGORITHMS
from ..paths import (
    ADMIN_API_PATH,
    AUTHORIZATION_PATH,
    DEVICE_AUTHORIZATION_PATH,
    END_SESSION_PATH,
    INTROSPECTION_PATH,
    JWKS_PATH,
    REVOCATION_PATH,
    TOKEN_PATH,
    USERINFO_PATH,
)
from .clients import CONFIDENTIAL_AUTH_METHODS, Client
from .rfc7523.client_assertion import ASSERTION_ALGORITHMS


def admin_api_audience(issuer: str) -> str:
    """The audience of tokens for our admin API: its URL (RFC 8707 §2), never the
    bare issuer, so that no token issued by default can act there."""
    return issuer.rstrip("/") + ADMIN_API_PATH


def server_metadata(
    issuer: str, base_url: str, clients: Iterable[Client], signing_algorithm: str
) -> dict[str, Any]:
    """``issuer`` exactly as configured (RFC 8414 §3.3); endpoints under ``base_url``."""
    scopes = sorted({scope for client in clients for scope in client.scopes})
    return {
        "issuer": issuer,
        "token_endpoint": base_url + TOKEN_PATH,
        "jwks_uri": base_url + JWKS_PATH,
        "introspection_endpoint": base_url + INTROSPECTION_PATH,
        "revocation_endpoint": base_url + REVOCATION_PATH,
        "authorization_endpoint": base_url + AUTHORIZATION_PATH,
        "device_authorization_endpoint": base_url + DEVICE_AUTHORIZATION_PATH,
        "userinfo_endpoint": base_url + USERINFO_PATH,
        "end_session_endpoint": base_url + END_SESSION_PATH,
        "grant_types_supported": [
            "authorization_code",
            "refresh_token",
            "client_credentials",
            "urn:ietf:params:oauth:grant-type:device_code",
            # Workload identity federation (RFC 8693, RFC 7523 §2.1).
            "urn:ietf:params:oauth:grant-type:token-exchange",
            "urn:ietf:params:oauth:grant-type:jwt-bearer",
        ],
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "code_challenge_methods_supported": ["S256"],
        "authorization_response_iss_parameter_supported": True,
        "subject_types_supported": ["public"],
        # ID tokens are always RS256 (OIDC Discovery §3 requires it to be offered).
        "id_token_signing_alg_values_supported": ["RS256"],
        "prompt_values_supported": ["none", "login", "consent"],
        "claims_supported": [
            "sub",
            "iss",
            "aud",
            "exp",
            "iat",
            "auth_time",
            "nonce",
            "at_hash",
            "azp",
            "name",
            "preferred_username",
            "email",
            "email_verified",
            "groups",
            "roles",
        ],
        "scopes_supported": scopes,
        "token_endpoint_auth_methods_supported": [*CONFIDENTIAL_AUTH_METHODS, "none"],
        "introspection_endpoint_auth_methods_supported": list(CONFIDENTIAL_AUTH_METHODS),
        "revocation_endpoint_auth_methods_supported": [*CONFIDENTIAL_AUTH_METHODS, "none"],
        # RFC 8414 §2: required with private_key_jwt; asymmetric only (RFC 7523 §2.2).
        "token_endpoint_auth_signing_alg_values_supported": list(ASSERTION_ALGORITHMS),
        "introspection_endpoint_auth_signing_alg_values_supported": list(ASSERTION_ALGORITHMS),
        "revocation_endpoint_auth_signing_alg_values_supported": list(ASSERTION_ALGORITHMS),
        # RFC 9068 access tokens are signed with the configured algorithm; every
        # algorithm we can sign with may be seen in JWKS during a roll-over.
        "access_token_signing_alg_values_supported": [signing_algorithm]
        + [a for a in ALGORITHMS if a != signing_algorithm],
    }
