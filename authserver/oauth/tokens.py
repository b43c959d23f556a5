"""RFC 9068 JWT access tokens: building, signing and checking them.

Header ``typ: at+jwt`` and ``kid`` (RFC 9068 §2.1); claims ``iss sub aud exp iat jti
client_id scope`` (§2.2) plus ``roles`` (§2.2.3.1 allows authorization claims; DESIGN.md
names ``roles``) and ``scp``: the scopes again as a JSON array, which is where flyteadmin
reads them (it ignores ``scope``, and a string ``scp`` gives no scopes before Flyte 1.15.1
and one scope holding the whole string since), issue 15.1.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from joserfc.jwt import Token

from ..clock import SYSTEM_CLOCK, Clock
from .clients import Client

ACCESS_TOKEN_TYP = "at+jwt"  # noqa: S105 - a media type, not a secret
#: Clock skew allowed when checking our own tokens.
LEEWAY_SECONDS = 30
#: A denylist entry outlives its token by this much more, for clock skew between
#: the node that revokes and the nodes (and Redis) that check.
DENYLIST_PADDING_SECONDS = 60
DENYLIST_PREFIX = "revoked-jti:"


class Signer(Protocol):
    def sign(self, header: dict[str, Any], claims: dict[str, Any]) -> str: ...

    def verify(self, token: str) -> Token:
        """Raise ``ValueError`` unless ``token`` is a JWS signed by one of our keys."""


class Denylist(Protocol):
    def put(self, key: str, value: bytes, ttl: float) -> None: ...

    def get(self, key: str) -> bytes | None: ...


@dataclass(frozen=True)
class IssuedToken:
    access_token: str
    expires_in: int
    scope: str
    claims: dict[str, Any]

    def as_response(self) -> dict[str, Any]:
        """RFC 6749 §5.1; DESIGN.md: always ``token_type``, ``expires_in`` and ``scope``."""
        return {
            "access_token": self.access_token,
            "token_type": "Bearer",
            "expires_in": self.expires_in,
            "scope": self.scope,
        }


class AccessTokens:
    """Issues, checks and revokes our access tokens."""

    def __init__(
        self,
        issuer: str,
        signer: Signer,
        denylist: Denylist,
        ttl: float,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self.issuer = issuer
        self._signer = signer
        self._denylist = denylist
        self._ttl = int(ttl)
        self._clock = clock

    def issue(
        self,
        client: Client,
        *,
        subject: str,
        audience: str,
        scopes: Sequence[str],
        roles: Sequence[str],
        extra: Mapping[str, Any] | None = None,
        ttl: int | None = None,
    ) -> IssuedToken:
        """Sign a new token; ``extra`` adds claims about a person (``email``, ``groups``).

        ``ttl``: a shorter lifetime than the configured one (never a longer one).
        """
        now = int(self._clock.now())
        ttl = self._ttl if ttl is None else min(ttl, self._ttl)
        scope = " ".join(scopes)
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "sub": subject,
            "aud": audience,
            "exp": now + ttl,
            "iat": now,
            "nbf": now,
            "jti": secrets.token_urlsafe(16),
            "client_id": client.client_id,
            "scope": scope,
            "scp": list(scopes),
            "roles": list(roles),
        }
        if extra:
            claims.update({k: v for k, v in extra.items() if k not in claims})
        token = self._signer.sign({"typ": ACCESS_TOKEN_TYP}, claims)
        return IssuedToken(access_token=token, expires_in=ttl, scope=scope, claims=claims)

    @property
    def ttl(self) -> int:
        return self._ttl

    def check(self, token: str) -> dict[str, Any] | None:
        """The claims of a token that is ours, well formed, unexpired and not revoked.

        ``None`` for anything else; RFC 7662 §2.2 answers all of those ``active: false``
        without saying which.
        """
        try:
            decoded = self._signer.verify(token)
        except ValueError:  # malformed, or not signed by a key of ours
            return None
        claims = dict(decoded.claims)
        now = self._clock.now()
        if decoded.header.get("typ", "").lower() not in (ACCESS_TOKEN_TYP, "application/at+jwt"):
            return None
        if claims.get("iss") != self.issuer:
            return None
        exp, jti = claims.get("exp"), claims.get("jti")
        if not isinstance(exp, int) or exp + LEEWAY_SECONDS <= now or not isinstance(jti, str):
            return None
        nbf = claims.get("nbf")
        if isinstance(nbf, int) and nbf - LEEWAY_SECONDS > now:
            return None
        if self._denylist.get(DENYLIST_PREFIX + jti) is not None:
            return None
        return claims

    def revoke(self, claims: dict[str, Any]) -> None:
        """Deny this token's ``jti`` until it would have expired anyway (RFC 7009 §2)."""
        remaining = (
            int(claims["exp"]) + LEEWAY_SECONDS + DENYLIST_PADDING_SECONDS - self._clock.now()
        )
        if remaining > 0:
            self._denylist.put(DENYLIST_PREFIX + str(claims["jti"]), b"1", remaining)
