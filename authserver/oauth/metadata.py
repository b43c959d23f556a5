"""Server metadata: RFC 8414 §2 and OpenID Connect Discovery 1.0 §3.

Only what works is advertised (DESIGN.md): a grant or endpoint appears here in the
same change that makes it work.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ..keys.manager import ALGORITHMS
from .clients import SECRET_AUTH_METHODS, Client

#: Paths of our endpoints, relative to the issuer.
TOKEN_PATH = "/oauth2/token"  # noqa: S105 - a path, not a secret
INTROSPECTION_PATH = "/oauth2/introspect"
REVOCATION_PATH = "/oauth2/revoke"
JWKS_PATH = "/.well-known/jwks.json"


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
        "grant_types_supported": ["client_credentials"],
        # RFC 8414 §2 makes this REQUIRED; no response type works until the
        # authorization endpoint exists, so the honest list is empty.
        "response_types_supported": [],
        "scopes_supported": scopes,
        "token_endpoint_auth_methods_supported": list(SECRET_AUTH_METHODS),
        "introspection_endpoint_auth_methods_supported": list(SECRET_AUTH_METHODS),
        "revocation_endpoint_auth_methods_supported": [*SECRET_AUTH_METHODS, "none"],
        # RFC 9068 access tokens are signed with the configured algorithm; every
        # algorithm we can sign with may be seen in JWKS during a roll-over.
        "access_token_signing_alg_values_supported": [signing_algorithm]
        + [a for a in ALGORITHMS if a != signing_algorithm],
    }
