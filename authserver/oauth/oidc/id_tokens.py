"""OpenID Connect Core 1.0: ID tokens (§2, §3.1.3.6) and the claims of ``/userinfo`` (§5.3)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from authlib.oidc.core.util import create_half_hash

from ...clock import SYSTEM_CLOCK, Clock
from ..clients import Client
from ..subjects import Subject, userinfo_claims
from ..tokens import Signer

OPENID_SCOPE = "openid"


@dataclass(eq=False)
class IdTokens:
    issuer: str
    signer: Signer
    #: Seconds (whole ones: ``exp``).
    ttl: float
    clock: Clock = SYSTEM_CLOCK

    def issue(
        self,
        client: Client,
        person: Subject,
        *,
        scopes: Sequence[str],
        auth_time: int,
        access_token: str,
        nonce: str | None = None,
    ) -> str:
        """§2: ``iss sub aud exp iat auth_time``, ``nonce`` if the request had one,
        ``at_hash`` (§3.1.3.6) and ``azp``; plus the claims its scopes ask for."""
        now = int(self.clock.now())
        claims: dict[str, Any] = userinfo_claims(person, scopes, client.consent)
        claims.update(
            {
                "iss": self.issuer,
                "sub": person.id,
                "aud": client.client_id,
                "azp": client.client_id,
                "exp": now + int(self.ttl),
                "iat": now,
                "auth_time": auth_time,
            }
        )
        if nonce:
            claims["nonce"] = nonce
        algorithm = getattr(self.signer, "algorithm", "RS256")
        at_hash = create_half_hash(access_token, algorithm)
        if at_hash is not None:
            claims["at_hash"] = at_hash.decode()
        return self.signer.sign({"typ": "JWT"}, claims)

    def _own_claims(self, id_token: str) -> dict[str, Any] | None:
        """The claims of an ID token of ours, expired or not (logout hints).

        Only an ID token: our access tokens are signed by the same keys, so they are
        told apart by ``typ`` (``at+jwt``, RFC 9068 §2.1) and by claims only access
        tokens carry (RFC 8725 §3.12: mutually exclusive validation rules)."""
        try:
            decoded = self.signer.verify(id_token)
        except ValueError:
            return None
        if str(decoded.header.get("typ", "")).lower() in ("at+jwt", "application/at+jwt"):
            return None
        claims = dict(decoded.claims)
        if "scope" in claims or "client_id" in claims or "azp" not in claims:
            return None
        return claims if claims.get("iss") == self.issuer else None

    def audience_of(self, id_token: str) -> str | None:
        """The client an ID token of ours was issued to."""
        aud = (self._own_claims(id_token) or {}).get("aud")
        return aud if isinstance(aud, str) else None

    def subject_of(self, id_token: str) -> str | None:
        """The ``sub`` of an ID token of ours."""
        sub = (self._own_claims(id_token) or {}).get("sub")
        return sub if isinstance(sub, str) else None
