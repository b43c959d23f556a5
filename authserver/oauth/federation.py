"""Workload identity federation: an external JWT (a CI job's OIDC token, a Kubernetes
service-account token) traded for one of our access tokens (DESIGN.md, "Machine
identity without shared secrets").

Both grants that carry such a token, RFC 8693 token exchange
(:mod:`.rfc8693.token_exchange`) and the RFC 7523 JWT bearer grant
(:mod:`.rfc7523.jwt_bearer`), hand it to :meth:`Federation.verify`: one ordered list of
small checks (:data:`CHECKS`), each refusing with a reason the audit log keeps. The
first ``federated_identities`` rule (in config order) that trusts the token's issuer,
its ``aud``, its claims and the authenticating client (if the rule names one) decides
the subject, role, scopes and lifetime of what we issue. :meth:`Federation.redeem`,
the single-use check, comes last of all, once the grant has accepted the rest of the
request.

Keys are found by discovery and cached per issuer (:class:`authserver.resource.IssuerKeys`,
the resource library's cache, with its limit on refetches for an unknown ``kid``); an
issuer that cannot be reached is :class:`~authserver.errors.DependencyUnavailable`
(503), never a refusal, so a CI job retries instead of failing for good.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from joserfc import jwt
from joserfc.errors import BadSignatureError, JoseError, UnsupportedAlgorithmError
from joserfc.jwa import JWSAlgModel
from joserfc.jwk import ECKey, Key, OKPKey, RSAKey
from joserfc.jws import JWSRegistry, extract_compact

from ..clock import SYSTEM_CLOCK, Clock
from ..errors import DependencyUnavailable
from ..resource import InvalidToken, IssuerKeys, IssuerMismatch, KeysUnavailable
from ..settings import SUBJECT_FIELD, FederatedIdentitySettings
from .clients import Client
from .secrets import SecretVerifier
from .vocabulary import GRANT_JWT_BEARER, GRANT_TOKEN_EXCHANGE

#: Clock skew allowed on the external token's ``exp``, ``nbf`` and ``iat``
#: (RFC 7523 §3: "a small leeway, usually no more than a few minutes").
LEEWAY_SECONDS = 60
#: An ``exp`` further ahead than this is refused (Kubernetes' extended service-account
#: tokens live a year; a single-use record must not outlive what a store can keep).
MAX_LIFETIME_SECONDS = 2 * 366 * 86400
#: Seconds to wait for an external issuer's discovery document or keys.
HTTP_TIMEOUT_SECONDS = 3
#: An issuer's keys are fetched again once this old, so that a key it withdrew stops
#: working here within the hour.
KEYS_MAX_AGE_SECONDS = 3600
#: After a failed fetch, the issuer is not asked again for this long (the 503's
#: ``Retry-After``): a CI fleet retrying must not hold every worker on its timeout.
ISSUER_RETRY_SECONDS = 5
#: An external token seen once (``single_use``), until it expires.
SEEN_PREFIX = "federation-seen:"
#: The claim of our token naming the rule that issued it.
RULE_CLAIM = "federation"
#: The ``client_id`` of a token no client asked for: ``federated:<rule name>``.
CLIENT_ID_PREFIX = "federated:"

#: Header ``alg`` -> key type: asymmetric only. ``none`` and HS* never (RFC 8725 §3.1:
#: an HMAC "verified" with a public key is a forgery anyone can make).
ALGORITHMS: dict[str, tuple[type[Key], tuple[str, ...]]] = {
    "RS256": (RSAKey, ()),
    "RS384": (RSAKey, ()),
    "RS512": (RSAKey, ()),
    "PS256": (RSAKey, ()),
    "PS384": (RSAKey, ()),
    "PS512": (RSAKey, ()),
    "ES256": (ECKey, ("P-256",)),
    "ES384": (ECKey, ("P-384",)),
    "ES512": (ECKey, ("P-521",)),
    "EdDSA": (OKPKey, ("Ed25519", "Ed448")),
    # RFC 9864's fully specified names for the same signatures.
    "Ed25519": (OKPKey, ("Ed25519",)),
    "Ed448": (OKPKey, ("Ed448",)),
}


class FederationRefused(Exception):
    """The external token is not accepted: ``invalid_grant`` (RFC 7523 §3.1).

    ``reason`` is what the audit log keeps; ``description`` what the caller is told
    (never what a rule expects: that would teach a forger what to claim).
    """

    def __init__(self, reason: str, description: str, **context: str) -> None:
        super().__init__(reason)
        self.reason = reason
        self.description = description
        self.context = context


class KeySource(Protocol):
    """An issuer's public keys by ``kid`` (:class:`~authserver.resource.IssuerKeys`)."""

    def key(self, kid: str) -> Key: ...


@dataclass(frozen=True)
class Rule:
    """A ``federated_identities`` rule with the client its tokens are issued to."""

    settings: FederatedIdentitySettings
    audience: str
    client: Client

    @property
    def name(self) -> str:
        return self.settings.name


@dataclass
class Presented:
    """An external token on its way through the checks."""

    token: str
    client: Client | None
    now: float
    header: dict[str, Any] = dataclasses.field(default_factory=dict)
    claims: dict[str, Any] = dataclasses.field(default_factory=dict)
    rules: list[Rule] = dataclasses.field(default_factory=list)
    subject: str = ""

    def context(self) -> dict[str, str]:
        """What the audit row says about the token (never the token)."""
        found = {"issuer": self.claims.get("iss"), "external_sub": self.claims.get("sub")}
        return {k: v[:200] for k, v in found.items() if isinstance(v, str)}


@dataclass(frozen=True)
class Match:
    """An accepted token: the rule and what we issue."""

    rule: Rule
    subject: str
    claims: dict[str, Any]
    token: str = dataclasses.field(repr=False)
    now: float = 0.0

    def actor(self) -> dict[str, str]:
        """RFC 8693 §4.1 ``act``: who the token was issued on the strength of."""
        return {"sub": str(self.claims["sub"]), "iss": str(self.claims["iss"])}


class _OneAlgorithm(JWSRegistry):
    """Exactly the one algorithm checked beforehand; no deprecation noise for EdDSA."""

    def get_alg(self, name: str) -> JWSAlgModel:
        if name not in ALGORITHMS or not self.allowed or name not in self.allowed:
            raise UnsupportedAlgorithmError(f"Algorithm of '{name}' is not allowed")
        return self.algorithms[name]


def render_subject(template: str, claims: Mapping[str, Any]) -> str | None:
    """``github:{repository}:{ref}`` over ``claims``; ``None`` if a claim named is
    missing or not a string or number (a subject is never made of part of one)."""
    missing = False

    def field(match: Any) -> str:
        nonlocal missing
        text: str = match.group(0)
        if text in ("{{", "}}"):
            return text[0]
        value = claims.get(match.group(1))
        if isinstance(value, bool) or not isinstance(value, str | int) or value == "":
            missing = True
            return ""
        return str(value)

    rendered = SUBJECT_FIELD.sub(field, template)
    return None if missing else rendered


def claim_matches(value: Any, pattern: str | Sequence[str]) -> bool:
    """A claim against a rule's pattern: exact or glob (:func:`fnmatch.fnmatchcase`, so
    case counts); a list of patterns matches if any does. A list-valued claim matches
    if any of its strings does; ``true``/``false`` and numbers compare as text."""
    patterns = [pattern] if isinstance(pattern, str) else list(pattern)
    if isinstance(value, bool):
        values = ["true" if value else "false"]
    elif isinstance(value, str | int):
        values = [str(value)]
    elif isinstance(value, list):
        values = [v for v in value if isinstance(v, str)]
    else:
        return False
    return any(fnmatch.fnmatchcase(v, p) for v in values for p in patterns)


def _audiences(claims: Mapping[str, Any]) -> list[str]:
    aud = claims.get("aud")
    if isinstance(aud, str):
        return [aud]
    if isinstance(aud, list):
        return [a for a in aud if isinstance(a, str)]
    return []


class Federation:
    """The rules, the external issuers' keys, and the checks (:data:`CHECKS`)."""

    def __init__(
        self,
        rules: Sequence[FederatedIdentitySettings],
        *,
        issuer: str,
        store: Any,
        keys: Callable[[str], KeySource] | None = None,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        verifier = SecretVerifier(max_entries=1)
        self.rules = [
            Rule(
                settings=rule,
                audience=rule.audience or issuer,
                client=Client(
                    client_id=CLIENT_ID_PREFIX + rule.name,
                    is_public=True,
                    secret_hash=None,
                    grant_types=(GRANT_TOKEN_EXCHANGE, GRANT_JWT_BEARER),
                    redirect_uris=(),
                    scopes=rule.scopes,
                    roles=(rule.role,),
                    verifier=verifier,
                ),
            )
            for rule in rules
        ]
        self.store = store
        self.now = clock.now
        make_keys = keys or (
            lambda url: IssuerKeys(
                url,
                http_timeout=HTTP_TIMEOUT_SECONDS,
                max_age=KEYS_MAX_AGE_SECONDS,
                failure_cool_down=ISSUER_RETRY_SECONDS,
            )
        )
        # One cache per issuer, however many rules name it (its refetch limit is its own).
        self._keys = {rule.issuer: make_keys(rule.issuer) for rule in rules}

    def verify(self, token: str, client: Client | None) -> Match:
        """The rule that accepts ``token`` (presented by ``client``, if one
        authenticated), or :class:`FederationRefused`; nothing is changed by a refusal.
        Raises :class:`DependencyUnavailable` if the issuer's keys cannot be fetched."""
        presented = Presented(token=token, client=client, now=self.now())
        for check in CHECKS:
            check(self, presented)
        return Match(
            rule=presented.rules[0],
            subject=presented.subject,
            claims=presented.claims,
            token=token,
            now=presented.now,
        )

    def redeem(self, match: Match) -> None:
        """RFC 7523 §3 item 7: single use of the token's ``jti`` (else of its SHA-256)
        while it is valid; the atomic set-if-absent of the ephemeral store decides among
        concurrent requests. The grant calls it last, once everything else about the
        request is accepted, so a request refused for another reason (a scope, an
        audience) leaves the token unused."""
        if not match.rule.settings.single_use:
            return
        claims = match.claims
        jti = claims.get("jti")
        seen = f"jti:{jti}" if isinstance(jti, str) and jti else "token:" + match.token
        key = SEEN_PREFIX + hashlib.sha256(f"{claims['iss']}\x00{seen}".encode()).hexdigest()
        ttl = float(claims["exp"]) + LEEWAY_SECONDS - match.now
        if not self.store.add(key, b"1", max(ttl, 1.0)):
            context = {"issuer": str(claims["iss"])[:200], "external_sub": str(claims["sub"])[:200]}
            raise FederationRefused("replayed", "The token was already used.", **context)

    def keys_of(self, issuer: str) -> KeySource:
        return self._keys[issuer]


def _refuse(presented: Presented, reason: str, description: str) -> FederationRefused:
    return FederationRefused(reason, description, **presented.context())


# -- the checks, in order -------------------------------------------------------------


def check_well_formed(federation: Federation, presented: Presented) -> None:
    """RFC 7523 §3 / RFC 8693 §2.1: a JWT in JWS compact form with a JSON object payload."""
    try:
        compact = extract_compact(presented.token.encode("ascii"))
        header = compact.headers()
        claims = json.loads(compact.payload)
    except (JoseError, ValueError, UnicodeError, TypeError, RecursionError):
        # RecursionError: JSON nested deeper than the parser goes (a 64 KiB form allows it).
        raise _refuse(presented, "malformed token", "The token is not a signed JWT.") from None
    if not isinstance(claims, dict):
        raise _refuse(presented, "malformed token", "The token is not a signed JWT.")
    presented.header, presented.claims = dict(header), claims


def check_trusted_issuer(federation: Federation, presented: Presented) -> None:
    """RFC 7523 §3 item 1: ``iss`` names an issuer a rule trusts."""
    iss = presented.claims.get("iss")
    presented.rules = [r for r in federation.rules if r.settings.issuer == iss]
    if not presented.rules:
        raise _refuse(presented, "unknown issuer", "The token's issuer is not trusted here.")


def check_algorithm(federation: Federation, presented: Presented) -> None:
    """RFC 8725 §3.1-3.2: only asymmetric algorithms, never ``none`` or HMAC."""
    alg = presented.header.get("alg")
    if not isinstance(alg, str) or alg not in ALGORITHMS:
        raise _refuse(
            presented, "algorithm not allowed", "The token's signing algorithm is not accepted."
        )


def check_signature(federation: Federation, presented: Presented) -> None:
    """RFC 7523 §3 item 9: signed by a key the issuer publishes (its JWKS, by ``kid``).

    An issuer that cannot be reached is a 503 (the request may succeed later); one whose
    metadata names another issuer (RFC 8414 §3.3) is a refusal.
    """
    alg: str = presented.header["alg"]
    kid = presented.header.get("kid")
    if not isinstance(kid, str):
        raise _refuse(presented, "no kid", "The token names no signing key.")
    try:
        key = federation.keys_of(presented.rules[0].settings.issuer).key(kid)
    except IssuerMismatch:
        raise _refuse(
            presented, "issuer metadata mismatch", "The token's issuer is not trusted here."
        ) from None
    except KeysUnavailable:
        raise DependencyUnavailable("federated_issuer", retry_after=ISSUER_RETRY_SECONDS) from None
    except InvalidToken:
        raise _refuse(
            presented, "unknown signing key", "The token's signing key is not known."
        ) from None
    key_type, curves = ALGORITHMS[alg]
    if (
        not isinstance(key, key_type)
        or (curves and key.as_dict().get("crv") not in curves)
        or (key.alg and key.alg != alg)
    ):
        raise _refuse(presented, "algorithm does not match the key", "The signature is invalid.")
    try:
        jwt.decode(presented.token, key, algorithms=[alg], registry=_OneAlgorithm(algorithms=[alg]))
    except BadSignatureError:
        raise _refuse(presented, "bad signature", "The signature is invalid.") from None
    except (JoseError, ValueError):
        raise _refuse(presented, "malformed token", "The token is not a signed JWT.") from None


def check_lifetime(federation: Federation, presented: Presented) -> None:
    """RFC 7523 §3 items 4-6: ``exp`` required and not passed; ``nbf`` and ``iat`` not
    in the future; each with :data:`LEEWAY_SECONDS`."""
    claims, now = presented.claims, presented.now
    exp = claims.get("exp")
    if isinstance(exp, bool) or not isinstance(exp, int | float):
        raise _refuse(presented, "no exp", "The token has no expiry.")
    if exp + LEEWAY_SECONDS <= now:
        raise _refuse(presented, "expired", "The token has expired.")
    if exp > now + MAX_LIFETIME_SECONDS:
        raise _refuse(presented, "exp too far ahead", "The token's expiry is too far ahead.")
    for name, reason in (("nbf", "not yet valid"), ("iat", "issued in the future")):
        value = claims.get(name)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise _refuse(presented, f"bad {name}", "The token's times are not valid.")
        if value - LEEWAY_SECONDS > now:
            raise _refuse(presented, reason, "The token is not valid yet.")


def check_audience(federation: Federation, presented: Presented) -> None:
    """RFC 7523 §3 item 3: the ``aud`` a rule expects (our issuer unless it says)."""
    audiences = _audiences(presented.claims)
    presented.rules = [r for r in presented.rules if r.audience in audiences]
    if not presented.rules:
        raise _refuse(presented, "wrong audience", "The token is not meant for this server.")


def check_claims(federation: Federation, presented: Presented) -> None:
    """Every claim a rule lists matches (exact or glob; a list: any of)."""
    claims = presented.claims
    presented.rules = [
        r
        for r in presented.rules
        if all(
            name in claims and claim_matches(claims[name], pattern)
            for name, pattern in r.settings.claims.items()
        )
    ]
    if not presented.rules:
        raise _refuse(
            presented, "claims do not match", "The token's claims match no federated identity."
        )


def check_client(federation: Federation, presented: Presented) -> None:
    """A rule that names a client needs that client to have authenticated."""
    client_id = presented.client.client_id if presented.client is not None else None
    presented.rules = [r for r in presented.rules if r.settings.client_id in (None, client_id)]
    if not presented.rules:
        raise _refuse(
            presented,
            "client not allowed",
            "This federated identity needs its client to authenticate.",
        )


def check_subject(federation: Federation, presented: Presented) -> None:
    """The rule's subject template over the claims; a claim it names must be there."""
    subject = render_subject(presented.rules[0].settings.subject, presented.claims)
    if subject is None or "sub" not in presented.claims:
        raise _refuse(
            presented, "subject claim missing", "The token lacks a claim the subject needs."
        )
    presented.subject = subject


CHECKS: tuple[Callable[[Federation, Presented], None], ...] = (
    check_well_formed,
    check_trusted_issuer,
    check_algorithm,
    check_signature,
    check_lifetime,
    check_audience,
    check_claims,
    check_client,
    check_subject,
)
