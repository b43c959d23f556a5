"""``authserver logout`` and ``whoami``: ending a sign-in (RFC 7009 revocation) and
reading who the cached tokens say you are, with no network."""

from __future__ import annotations

import base64
import json
from typing import Any

import requests

from .cache import CachedToken
from .http import HTTP_TIMEOUT, LoginError, discover, reason


def revoke_sign_in(issuer: str, client_id: str, token: CachedToken) -> str | None:
    """Revoke the refresh token, then the access token, at the server's revocation
    endpoint (RFC 7009 §2.1, from discovery; a public client names itself with
    ``client_id``). ``None`` when done, else why not (the caller warns and carries on:
    the cache is cleared anyway)."""
    try:
        metadata = discover(issuer)
    except LoginError as exc:
        return str(exc)
    endpoint = metadata.revocation_endpoint
    if not endpoint:
        return f"{issuer} has no revocation endpoint"
    for value, hint in (
        (token.refresh_token, "refresh_token"),
        (token.access_token, "access_token"),
    ):
        if not value:
            continue
        try:
            response = requests.post(
                endpoint,
                data={"token": value, "token_type_hint": hint, "client_id": client_id},
                headers={"Accept": "application/json"},
                timeout=HTTP_TIMEOUT,
            )
        except requests.RequestException as exc:
            return f"cannot reach {endpoint}: {reason(exc)}"
        # §2.2: 200 for a revoked (or already invalid) token; anything else is a refusal.
        if response.status_code != 200:
            return f"{endpoint} answered HTTP {response.status_code}{_error_of(response)}"
    return None


def _error_of(response: requests.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return ""
    return f" ({body.get('error')})" if isinstance(body, dict) and body.get("error") else ""


def jwt_claims(token: str | None) -> dict[str, Any]:
    """The claims of a JWT, unverified: what the token says, for showing only (its
    signature was checked by the server that takes it, never here); ``{}`` for what is
    not a JWT."""
    if not token or token.count(".") != 2:
        return {}
    payload = token.split(".")[1]
    try:
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (ValueError, TypeError):
        return {}
    return claims if isinstance(claims, dict) else {}


def who(token: CachedToken) -> dict[str, Any]:
    """Who a cached sign-in says you are: the access token's subject, roles, audience,
    client and expiry, with the name and email of the ID token when there is one."""
    access = jwt_claims(token.access_token)
    identity = jwt_claims(token.id_token)
    roles = access.get("roles", identity.get("roles", []))
    audience = access.get("aud")
    return {
        "sub": access.get("sub") or identity.get("sub"),
        "username": identity.get("preferred_username") or access.get("preferred_username"),
        "email": identity.get("email") or access.get("email"),
        "roles": roles if isinstance(roles, list) else [roles],
        "audience": audience if isinstance(audience, list) else [audience] if audience else [],
        "client_id": access.get("client_id"),
        "scope": token.scope,
        "expires_at": token.expires_at,
        "has_refresh_token": token.refresh_token is not None,
    }
