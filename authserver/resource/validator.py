"""Validation of our access tokens (RFC 9068 §4), with the issuer's keys cached.

:class:`TokenValidator` checks a JWT access token as RFC 9068 §4 asks: ``typ``
``at+jwt``, an asymmetric ``alg`` that matches its key, the signature by a key of the
issuer's JWKS, and ``iss``, ``aud``, ``sub`` and ``exp`` (RFC 7519 §4.1).
:class:`IssuerKeys` finds the keys by discovery (RFC 8414, OpenID Connect Discovery)
and caches them. ``requests`` and joserfc only.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import requests
from joserfc import jwt
from joserfc.errors import (
    BadSignatureError,
    ExpiredTokenError,
    InvalidClaimError,
    JoseError,
    MissingClaimError,
    UnsupportedAlgorithmError,
)
from joserfc.jwa import JWSAlgModel
from joserfc.jwk import ECKey, Key, OKPKey, RSAKey, import_key
from joserfc.jws import JWSRegistry, extract_compact

#: header ``alg`` -> (key type, curve or None); asymmetric only, never ``none`` or HS*.
ALGORITHMS: dict[str, tuple[type[Key], str | None]] = {
    "RS256": (RSAKey, None),
    "ES256": (ECKey, "P-256"),
    "EdDSA": (OKPKey, "Ed25519"),
}
#: RFC 9068 §4: the ``typ`` header of an access token.
ACCESS_TOKEN_TYPES = frozenset({"at+jwt", "application/at+jwt"})


class InvalidToken(Exception):
    """The token is not acceptable; ``reason`` is short and safe to show to the caller."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class KeysUnavailable(InvalidToken):
    """The issuer's metadata or keys could not be fetched (or were not acceptable)."""


def _strings(value: object) -> tuple[str, ...]:
    if isinstance(value, str):
        return tuple(value.split())
    if isinstance(value, list | tuple):
        return tuple(v for v in value if isinstance(v, str))
    return ()


@dataclass(frozen=True)
class Claims:
    """The claims of a validated access token."""

    sub: str
    client_id: str | None
    scopes: tuple[str, ...]
    roles: tuple[str, ...]
    email: str | None
    groups: tuple[str, ...]
    exp: int
    raw: dict[str, Any] = field(default_factory=dict, compare=False, hash=False, repr=False)

    @classmethod
    def from_payload(cls, payload: Mapping[str, Any]) -> Claims:
        email = payload.get("email")
        client_id = payload.get("client_id")
        return cls(
            sub=str(payload["sub"]),
            client_id=client_id if isinstance(client_id, str) else None,
            scopes=_strings(payload.get("scope")),
            roles=_strings(payload.get("roles")),
            email=email if isinstance(email, str) else None,
            groups=_strings(payload.get("groups")),
            exp=int(payload["exp"]),
            raw=dict(payload),
        )

    def has_scope(self, scope: str) -> bool:
        return scope in self.scopes

    def has_role(self, role: str) -> bool:
        return role in self.roles


class _Registry(JWSRegistry):
    """Exactly the one algorithm the key allows; no deprecation noise for ``EdDSA``."""

    def get_alg(self, name: str) -> JWSAlgModel:
        if name not in ALGORITHMS or not self.allowed or name not in self.allowed:
            raise UnsupportedAlgorithmError(f"Algorithm of '{name}' is not allowed")
        return self.algorithms[name]


class IssuerMismatch(KeysUnavailable):
    """The issuer's metadata names another issuer (RFC 8414 §3.3): not a fault of the
    network, so a retry will not help."""


#: ``fetch_json(url, timeout) -> body``; raises :class:`KeysUnavailable` on failure.
FetchJson = Callable[[str, float], dict[str, Any]]


def fetch_json(url: str, timeout: float) -> dict[str, Any]:
    """GET a JSON object, or :class:`KeysUnavailable`."""
    try:
        response = requests.get(url, timeout=timeout, headers={"Accept": "application/json"})
        response.raise_for_status()
        body = response.json()
    except (requests.RequestException, ValueError) as error:
        raise KeysUnavailable("cannot fetch keys") from error
    if not isinstance(body, dict):
        raise KeysUnavailable("cannot fetch keys")
    return body


class IssuerKeys:
    """The public signing keys of one issuer, found by discovery and cached.

    Fetched lazily, on the first ``kid`` asked for; an unknown ``kid`` refetches the
    keys at most once per ``refresh_min_interval`` seconds (so a stream of tokens with
    made-up ``kid`` values costs the issuer one request a minute, not one each).
    With ``max_age``, keys are also refetched once they are that old; while the issuer
    cannot be reached the keys held keep working. Symmetric and private keys are never
    taken. Thread-safe. Shared by
    :class:`TokenValidator` and the authorization server's workload identity federation.
    """

    def __init__(
        self,
        issuer: str,
        *,
        refresh_min_interval: float = 60,
        http_timeout: float = 5,
        max_age: float | None = None,
        failure_cool_down: float = 0,
        fetch: FetchJson = fetch_json,
    ) -> None:
        self.issuer = issuer
        #: Keys older than this are fetched again before use (a key the issuer has
        #: withdrawn stops working); ``None``: only an unknown ``kid`` refetches.
        self.max_age = max_age
        #: After a failed fetch, answer from the keys held (or fail at once) this long.
        self.failure_cool_down = failure_cool_down
        self._failure: KeysUnavailable | None = None
        self._failed_until = float("-inf")
        self.refresh_min_interval = refresh_min_interval
        self.http_timeout = http_timeout
        self._fetch = fetch
        self._lock = threading.Lock()
        self._jwks_uri: str | None = None
        self._keys: dict[str, Key] | None = None
        self._fetched_at = float("-inf")
        self._generation = 0
        #: how many times the JWKS was fetched (for monitoring and tests)
        self.fetches = 0

    def _get_json(self, url: str) -> dict[str, Any]:
        return self._fetch(url, self.http_timeout)

    def _discover(self) -> str:
        base = self.issuer.rstrip("/")
        metadata: dict[str, Any] | None = None
        for suffix in (
            "/.well-known/openid-configuration",
            "/.well-known/oauth-authorization-server",
        ):
            try:
                metadata = self._get_json(base + suffix)
                break
            except KeysUnavailable:
                continue
        if metadata is None:
            raise KeysUnavailable("cannot fetch keys")
        if metadata.get("issuer") != self.issuer:  # RFC 8414 §3.3: exactly
            raise IssuerMismatch("issuer metadata mismatch")
        jwks_uri = metadata.get("jwks_uri")
        if not isinstance(jwks_uri, str) or not jwks_uri:
            raise KeysUnavailable("issuer publishes no keys")
        return jwks_uri

    def _fetch_keys(self) -> dict[str, Key]:
        if self._jwks_uri is None:
            self._jwks_uri = self._discover()
        self.fetches += 1
        body = self._get_json(self._jwks_uri)
        keys: dict[str, Key] = {}
        entries = body.get("keys")
        for entry in entries if isinstance(entries, list) else []:
            if not isinstance(entry, dict) or not isinstance(entry.get("kid"), str):
                continue
            if entry.get("kty") not in ("RSA", "EC", "OKP") or entry.get("use", "sig") != "sig":
                continue  # symmetric keys never verify a token
            try:
                key = import_key(entry)
            except (JoseError, ValueError, TypeError, KeyError):
                continue
            if key.is_private:
                continue
            keys[entry["kid"]] = key
        return keys

    def _is_stale(self, now: float) -> bool:
        return self.max_age is not None and now - self._fetched_at >= self.max_age

    def key(self, kid: str) -> Key:
        """The key named ``kid``; :class:`InvalidToken` ("unknown signing key") if the
        issuer has none, :class:`KeysUnavailable` if its keys cannot be fetched."""
        keys, generation = self._keys, self._generation
        if keys is not None and kid in keys and not self._is_stale(time.monotonic()):
            return keys[kid]
        with self._lock:
            if self._generation != generation:
                # another thread fetched while we waited: use its result, do not refetch
                if self._keys is not None and kid in self._keys:
                    return self._keys[kid]
                if self._keys is None:
                    raise KeysUnavailable("cannot fetch keys")
                raise InvalidToken("unknown signing key")
            now = time.monotonic()
            if self._failure is not None and now < self._failed_until:
                # The issuer failed a moment ago: answer from what we hold, without
                # making this request wait on it again.
                if self._keys is not None and kid in self._keys:
                    return self._keys[kid]
                raise type(self._failure)(self._failure.reason)
            stale = self._is_stale(now)
            if (
                self._keys is not None
                and not stale
                and now - self._fetched_at < self.refresh_min_interval
            ):
                raise InvalidToken("unknown signing key")
            self._fetched_at = now
            self._generation += 1
            try:
                self._keys = self._fetch_keys()
            except KeysUnavailable as failure:
                # A failure keeps the old keys (or none); a key we knew still works.
                self._failure, self._failed_until = failure, now + self.failure_cool_down
                if self._keys is not None and kid in self._keys:
                    return self._keys[kid]
                raise
            self._failure = None
            if kid in self._keys:
                return self._keys[kid]
        raise InvalidToken("unknown signing key")


class TokenValidator:
    """Validates access tokens of one issuer for one (or several) audiences.

    Discovery and keys are fetched lazily, on the first token, and cached
    (:class:`IssuerKeys`); an unknown ``kid`` refetches the keys at most once per
    ``jwks_refresh_min_interval`` seconds. Thread-safe.
    """

    def __init__(
        self,
        issuer: str,
        audience: str | Sequence[str],
        *,
        leeway: int = 30,
        jwks_refresh_min_interval: float = 60,
        http_timeout: float = 5,
    ) -> None:
        self.issuer = issuer
        self.audiences: tuple[str, ...] = (
            (audience,) if isinstance(audience, str) else tuple(audience)
        )
        if not self.audiences:
            raise ValueError("at least one audience is required")
        self.leeway = leeway
        self.keys = IssuerKeys(
            issuer, refresh_min_interval=jwks_refresh_min_interval, http_timeout=http_timeout
        )

    @property
    def jwks_fetches(self) -> int:
        """How many times the JWKS was fetched (for monitoring and tests)."""
        return self.keys.fetches

    def _key(self, kid: str) -> Key:
        return self.keys.key(kid)

    # -- validation -----------------------------------------------------------------

    def validate(self, token: str) -> Claims:
        """The claims of ``token``, or :class:`InvalidToken` with a reason."""
        try:
            return self._validate(token)
        except InvalidToken:
            raise
        except Exception as error:  # never leak another exception type
            raise InvalidToken("invalid token") from error

    def _validate(self, token: str) -> Claims:
        if not isinstance(token, str) or token.count(".") != 2:
            raise InvalidToken("malformed token")
        try:
            header = extract_compact(token.encode("ascii")).headers()
        except (JoseError, ValueError, UnicodeError) as error:
            raise InvalidToken("malformed token") from error
        alg = header.get("alg")
        if not isinstance(alg, str) or alg not in ALGORITHMS:
            raise InvalidToken("unsupported algorithm")
        if header.get("typ") not in ACCESS_TOKEN_TYPES:
            raise InvalidToken("not an access token")
        kid = header.get("kid")
        if not isinstance(kid, str):
            raise InvalidToken("unknown signing key")
        key = self._key(kid)
        key_type, curve = ALGORITHMS[alg]
        if not isinstance(key, key_type) or (curve and key.as_dict().get("crv") != curve):
            raise InvalidToken("algorithm does not match the key")
        if key.alg and key.alg != alg:
            raise InvalidToken("algorithm does not match the key")
        try:
            decoded = jwt.decode(token, key, algorithms=[alg], registry=_Registry(algorithms=[alg]))
        except BadSignatureError as error:
            raise InvalidToken("bad signature") from error
        except JoseError as error:
            raise InvalidToken("malformed token") from error
        registry = jwt.JWTClaimsRegistry(
            leeway=self.leeway,
            iss={"essential": True, "value": self.issuer},
            aud={"essential": True, "values": list(self.audiences)},
            sub={"essential": True},
            exp={"essential": True},
        )
        try:
            registry.validate(decoded.claims)
        except ExpiredTokenError as error:
            raise InvalidToken("token expired") from error
        except MissingClaimError as error:
            raise InvalidToken(f"missing claim {error.claim}") from error
        except InvalidClaimError as error:
            name = error.claim
            reason = {
                "iss": "wrong issuer",
                "aud": "wrong audience",
                "nbf": "token not yet valid",
                "iat": "token issued in the future",
            }.get(name, f"invalid claim {name}")
            raise InvalidToken(reason) from error
        return Claims.from_payload(decoded.claims)
