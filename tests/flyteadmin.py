"""A port of what flyteadmin checks of a token issued by an external authorization server.

flyteadmin with ``authServerType: External`` (issue 15) does, for every call:

1. ``getJwksForIssuer`` (auth/authzserver/resource_server.go): ``externalAuthServer.baseUrl``
   with one trailing ``/``, resolved against ``metadataUrl`` (by default
   ``.well-known/oauth-authorization-server``); the ``jwks_uri`` found there verifies the
   signature (go-oidc's ``RemoteKeySet``). The issuer is not compared.
2. jwt-go's ``Claims.Valid()``: ``exp``, ``iat`` and ``nbf`` against the clock, no leeway.
3. ``verifyClaims`` (auth/authzserver/claims_verifier.go), with the allowed audiences
   ``allowedAudience`` plus the public URL it was called on: ``aud`` (a string or an
   array) must hold one of them; scopes come only from ``scp``, where a JSON array is the
   scopes and a string gives none (before Flyte 1.15.1; since, one scope holding the
   whole string, which is never ``all`` for ``"all offline"``); a token with neither
   ``client_id`` nor scopes is given ``all``.
4. ``BlanketAuthorization`` (auth/interceptor.go): ``all`` must be among the scopes.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import Any
from urllib.parse import urljoin, urlsplit, urlunsplit

import jwt
import requests

#: flyteadmin's default ``metadataUrl`` (oauth2MetadataEndpoint).
OAUTH2_METADATA_PATH = ".well-known/oauth-authorization-server"
#: What go-oidc verifies (RSA, ECDSA, RSA-PSS, Ed25519).
GO_OIDC_ALGORITHMS = ["RS256", "RS384", "RS512", "ES256", "ES384", "ES512", "PS256", "EdDSA"]
SCOPE_ALL = "all"


class FlyteadminRefused(Exception):
    """flyteadmin would answer ``Unauthenticated``; the message says why."""


@dataclass(frozen=True)
class IdentityContext:
    """What ``verifyClaims`` builds (auth.NewIdentityContext)."""

    audience: str
    subject: str
    client_id: str
    scopes: frozenset[str]
    email: str | None
    claims: dict[str, Any]


def metadata_url(base_url: str, metadata_path: str = OAUTH2_METADATA_PATH) -> str:
    """``{baseUrl}/`` resolved against ``metadataUrl``, as flyteadmin resolves it."""
    parts = urlsplit(base_url)
    base = urlunsplit(parts._replace(path=parts.path.rstrip("/") + "/"))
    return urljoin(base, metadata_path)


def authenticate(
    base_url: str,
    token: str,
    allowed_audiences: Collection[str],
    *,
    metadata_path: str = OAUTH2_METADATA_PATH,
) -> IdentityContext:
    """Steps 1-3: the identity flyteadmin sees, or :class:`FlyteadminRefused`."""
    response = requests.get(metadata_url(base_url, metadata_path), timeout=10)
    if response.status_code != 200:
        raise FlyteadminRefused(f"metadata: {response.status_code}")
    jwks = jwt.PyJWKClient(response.json()["jwks_uri"])
    try:
        key = jwks.get_signing_key_from_jwt(token)
        claims: dict[str, Any] = jwt.decode(
            token,
            key.key,
            algorithms=GO_OIDC_ALGORITHMS,
            options={"verify_aud": False, "verify_iss": False},
            leeway=0,
        )
    except jwt.PyJWTError as exc:
        raise FlyteadminRefused(f"failed to validate token: {exc}") from exc
    return verify_claims(set(allowed_audiences), claims)


def verify_claims(expected_audience: set[str], claims: dict[str, Any]) -> IdentityContext:
    """``verifyClaims``: the audience, the subject, the client and the scopes."""
    aud = claims.get("aud")
    audiences = [aud] if isinstance(aud, str) else list(aud or [])
    found = next((a for a in audiences if a in expected_audience), None)
    if found is None:
        raise FlyteadminRefused(f"invalid audience {audiences}, wanted {sorted(expected_audience)}")
    client_id = claims.get("client_id") or ""
    scp = claims.get("scp")
    if isinstance(scp, list):
        scopes = frozenset(str(s) for s in scp)
    elif scp is None or isinstance(scp, str):
        scopes = frozenset()  # a string: no scopes before 1.15.1 (see the module doc)
    else:
        raise FlyteadminRefused(f"failed getting scope claims due to unknown type {type(scp)}")
    if not client_id and not scopes:
        scopes = frozenset({SCOPE_ALL})
    email = claims.get("email")
    return IdentityContext(found, str(claims.get("sub", "")), client_id, scopes, email, claims)


def blanket_authorization(identity: IdentityContext) -> None:
    """Step 4: ``all`` in the scopes, or ``Unauthenticated``."""
    if SCOPE_ALL not in identity.scopes:
        raise FlyteadminRefused("authenticated user doesn't have required scope")


def flyteadmin_identity(
    base_url: str, token: str, allowed_audiences: Collection[str]
) -> IdentityContext:
    """Steps 1-4: the identity of an accepted token; raises if flyteadmin refuses it."""
    identity = authenticate(base_url, token, allowed_audiences)
    blanket_authorization(identity)
    return identity


def flyteadmin_accepts(base_url: str, token: str, allowed_audiences: Collection[str]) -> bool:
    try:
        flyteadmin_identity(base_url, token, allowed_audiences)
    except FlyteadminRefused:
        return False
    return True
