"""``private_key_jwt`` client authentication: RFC 7523 §2.2 and §3, OIDC Core §9.

A client proves who it is with a JWT signed by one of its registered public keys
(a service account's key file, or a static client's ``jwks``). The checks, in order,
each an ``invalid_client`` (RFC 7521 §4.2.1) when it fails:

1. ``client_assertion_type`` is ``…:client-assertion-type:jwt-bearer`` (RFC 7523 §2.2)
   and ``client_assertion`` one compact JWS of reasonable size whose payload is a
   JSON object;
2. ``iss`` = ``sub`` = the client id (§3 items 1, 2), and a ``client_id`` parameter, if
   sent, names the same client (RFC 7521 §4.2);
3. ``alg`` is asymmetric and ours to accept (ES256, RS256, EdDSA: never ``none`` or
   HS*, RFC 8725 §3.1) and the signature verifies with one of the client's keys of
   that algorithm (the header's ``kid`` picks it when present; §3 item 9);
4. ``aud`` names us: the issuer, the token endpoint, or the endpoint it is presented
   at (§3 item 3);
5. ``exp`` is present and not past (§3 item 4); ``nbf`` and ``iat`` not ahead beyond
   the leeway (items 5, 6); and the assertion is fresh: with ``iat``, at most
   ``MAX_AGE`` old; without, ``exp`` at most ``MAX_AGE`` ahead (§3: the server "MAY
   reject JWTs with an exp claim value that is unreasonably far in the future");
6. ``jti`` is present and seen for the first time (§3 item 7; OIDC Core §9: "the JWT
   MUST NOT be reused"): one atomic set-if-absent in the ephemeral store, kept for as
   long as the assertion could still pass step 5, so a replay is always caught.

Step 5 bounds what step 6 must remember: a client library that signs hour-long
assertions (Authlib's default) is accepted for their first ``MAX_AGE`` seconds, and
no ``jti`` needs keeping for longer than that. Nothing is written before the
signature has verified.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from joserfc import jws
from joserfc.errors import JoseError
from joserfc.jwk import ECKey, OKPKey, RSAKey, import_key

from ...clock import SYSTEM_CLOCK, Clock
from ...keys.material import REGISTRY

#: RFC 7523 §2.2.
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
#: RFC 7591 §2 method name (OIDC Core §9).
PRIVATE_KEY_JWT = "private_key_jwt"
#: Asymmetric only; the client's key decides which one of these it uses.
ASSERTION_ALGORITHMS = ("ES256", "RS256", "EdDSA")
#: The longest an assertion is accepted after it was made (seconds).
MAX_AGE = 300
#: Clock skew allowed between the client and us (seconds).
LEEWAY = 60
#: A compact JWS longer than this is no client assertion (an RS4096 one is ~1 KB).
MAX_ASSERTION_LENGTH = 8192
#: Ephemeral-store keys of used ``jti`` values, per client.
JTI_PREFIX = "client-assertion-jti:"

_KEY_TYPES = {"ES256": ECKey, "RS256": RSAKey, "EdDSA": OKPKey}


class AssertionRefused(Exception):
    """The assertion does not authenticate the client; ``str()`` is the RFC 6749
    ``error_description``."""


class SingleUseStore(Protocol):
    def add(self, key: str, value: bytes, ttl: float) -> bool: ...


@dataclass(frozen=True)
class VerifiedAssertion:
    client_id: str
    #: The ``kid`` of the client key that verified it.
    kid: str


def assertion_subject(form: Mapping[str, str]) -> str | None:
    """The client id the request's assertion claims (not yet verified), ``None`` if
    the request carries no assertion; :class:`AssertionRefused` if it is malformed."""
    assertion_type = form.get("client_assertion_type")
    assertion = form.get("client_assertion")
    if not assertion_type and not assertion:
        return None
    if assertion_type != ASSERTION_TYPE:
        raise AssertionRefused(f"client_assertion_type must be {ASSERTION_TYPE}.")
    if not assertion:
        raise AssertionRefused("The client_assertion parameter is missing.")
    _, claims = _parse(assertion)
    subject = claims.get("sub")
    if not isinstance(subject, str) or not subject or claims.get("iss") != subject:
        raise AssertionRefused("The client assertion's iss and sub must both be the client id.")
    client_id = form.get("client_id")
    if client_id and client_id != subject:
        raise AssertionRefused("The client_id is not the client the assertion names.")
    return subject


class ClientAssertions:
    """Verifies assertions for one server (its issuer and endpoints)."""

    def __init__(
        self,
        audiences: Iterable[str],
        store: SingleUseStore,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self.audiences = frozenset(audiences)
        self.store = store
        self.now = clock.now

    def verify(
        self, assertion: str, client_id: str, jwks: Sequence[Mapping[str, Any]], endpoint: str
    ) -> VerifiedAssertion:
        """Steps 3 to 6 for a client whose public keys are ``jwks``; ``endpoint`` is
        the URL the assertion was presented at."""
        header, claims = _parse(assertion)
        kid = self._check_signature(assertion, header, jwks)
        self._check_claims(claims, endpoint)
        self._use_once(client_id, claims)
        return VerifiedAssertion(client_id, kid)

    def _check_signature(
        self, assertion: str, header: Mapping[str, Any], jwks: Sequence[Mapping[str, Any]]
    ) -> str:
        alg = header.get("alg")
        if alg not in ASSERTION_ALGORITHMS:
            raise AssertionRefused(
                "The client assertion must be signed with ES256, RS256 or EdDSA."
            )
        wanted = header.get("kid")
        for jwk in jwks:
            if jwk.get("alg", alg) != alg or (wanted is not None and jwk.get("kid") != wanted):
                continue
            try:
                key = import_key(dict(jwk))
                if not isinstance(key, _KEY_TYPES[alg]):
                    continue
                jws.deserialize_compact(assertion, key, algorithms=[alg], registry=REGISTRY)
            except (JoseError, ValueError, TypeError):
                continue
            return str(jwk.get("kid") or "")
        raise AssertionRefused("The client assertion is not signed by a key of this client.")

    def _check_claims(self, claims: Mapping[str, Any], endpoint: str) -> None:
        audience = claims.get("aud")
        audiences = audience if isinstance(audience, list) else [audience]
        accepted = self.audiences | {endpoint}
        if not any(isinstance(a, str) and a in accepted for a in audiences):
            raise AssertionRefused(
                "The client assertion's aud must be this server's issuer or token endpoint."
            )
        now = self.now()
        exp, iat, nbf = (_number(claims, name) for name in ("exp", "iat", "nbf"))
        if exp is None:
            raise AssertionRefused("The client assertion has no exp.")
        if exp + LEEWAY <= now:
            raise AssertionRefused("The client assertion has expired.")
        if (iat is not None and iat > now + LEEWAY) or (nbf is not None and nbf > now + LEEWAY):
            raise AssertionRefused("The client assertion is not valid yet (iat or nbf ahead).")
        if iat is not None:
            if iat + MAX_AGE + LEEWAY <= now:
                raise AssertionRefused(
                    f"The client assertion is more than {MAX_AGE} seconds old (iat)."
                )
        elif exp > now + MAX_AGE + LEEWAY:
            raise AssertionRefused(
                f"The client assertion's exp is more than {MAX_AGE} seconds ahead; "
                "sign assertions that live at most that long, or include iat."
            )
        jti = claims.get("jti")
        if not isinstance(jti, str) or not jti:
            raise AssertionRefused("The client assertion has no jti.")

    def _use_once(self, client_id: str, claims: Mapping[str, Any]) -> None:
        now = self.now()
        exp = _number(claims, "exp") or now
        iat = _number(claims, "iat")
        # The last moment _check_claims would still accept it, plus a margin.
        last = min(exp, iat + MAX_AGE) if iat is not None else exp
        ttl = max(last + LEEWAY - now, 1.0) + 1.0
        # Per client; hashed, so that any client id and jti fit the store's keys.
        digest = hashlib.sha256(f"{client_id}\x00{claims['jti']}".encode()).hexdigest()
        if not self.store.add(JTI_PREFIX + digest, b"1", ttl):
            raise AssertionRefused("The client assertion was used before (jti).")


def _parse(assertion: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Header and claims of a compact JWS, unverified."""
    if len(assertion) > MAX_ASSERTION_LENGTH or assertion.count(".") != 2:
        raise AssertionRefused("The client assertion is not a signed JWT.")
    try:
        obj = jws.extract_compact(assertion.encode("ascii"))
        claims = json.loads(obj.payload)
        header = obj.headers()
    except (JoseError, ValueError, TypeError, UnicodeError):
        raise AssertionRefused("The client assertion is not a signed JWT.") from None
    if not isinstance(claims, dict) or not isinstance(header, dict):
        raise AssertionRefused("The client assertion's payload is not a JSON object.")
    try:
        # JSON may escape lone surrogates ("\ud800"), which no client id or jti holds.
        json.dumps([header, claims], ensure_ascii=False).encode()
    except (UnicodeEncodeError, ValueError):
        raise AssertionRefused("The client assertion has text that is not Unicode.") from None
    return header, claims


def _number(claims: Mapping[str, Any], name: str) -> float | None:
    value = claims.get(name)
    if value is None:
        return None
    try:
        number = float(value) if not isinstance(value, bool) else math.nan
    except (TypeError, ValueError, OverflowError):
        number = math.nan
    if not isinstance(value, int | float) or not math.isfinite(number):
        raise AssertionRefused(f"The client assertion's {name} is not a number.")
    return number
