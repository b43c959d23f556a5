"""Refresh tokens and their families: opaque, stored as hashes, rotated on every use
(RFC 6749 §6, RFC 9700 §4.14.2). This module is the one owner of families: it alone
revokes them (one family, or every family of a person), and a family that dies takes the
live access tokens it issued with it (RFC 7009 §2.1).

Each sign-in starts a *family*. Every refresh marks the presented token rotated
(one atomic update, so of concurrent uses exactly one wins) and adds its successor
to the family. Presenting a rotated token again is reuse: the whole family is
revoked (theft detection), except within ``retry_grace`` seconds of the rotation,
when the same response is returned again from a short cache. That cache entry is
encrypted under a key derived from the presented token, so only its holder can
read it (DESIGN.md, "Durable vs ephemeral state").
"""

from __future__ import annotations

import hashlib
import json
import secrets
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import KW_ONLY, dataclass
from typing import Any, Protocol

from cryptography.fernet import Fernet, InvalidToken

from ..clock import SYSTEM_CLOCK, Clock
from ..keys.encryption import derive_fernet

#: Refresh tokens are recognisable (secret scanners, logs): ``as_rt_<random>``.
REFRESH_TOKEN_PREFIX = "as_rt_"  # noqa: S105 - a prefix, not a secret
RETRY_CACHE_PREFIX = "refresh-retry:"
REPLAY_POLL_SECONDS = 0.05
#: Access tokens issued in a refresh-token family (jti, exp), to deny with the family.
FAMILY_TOKENS_PREFIX = "family-tokens:"

#: Scopes that ask for a refresh token. ``offline_access`` is OpenID Connect's (Core
#: §11; Okta's, Keycloak's). ``offline`` is what Flyte's CLIs ask for (flyteadmin's
#: default ``flyteClient.scopes`` is ``[all, offline]``), and what flyteadmin's own
#: authorization server, fosite, gives refresh tokens for: its ``RefreshTokenScopes``
#: default to ``offline`` and ``offline_access`` alike (issue 15.1).
OFFLINE_SCOPES = frozenset({"offline_access", "offline"})


def wants_refresh_token(registered: Collection[str], granted: Collection[str]) -> bool:
    """Whether a person's sign-in gets a refresh token (for a client with the grant).

    A client registered with an offline scope gets one when it asked for one of them,
    as an admin who registers ``offline`` expects from Okta's ``offline_access``; a
    client registered with neither gets one always (its config allows refresh without
    asking).
    """
    offline = OFFLINE_SCOPES.intersection(registered)
    return not offline or not offline.isdisjoint(granted)


class RefreshRecord(Protocol):
    """One stored refresh token with its family (what a lookup returns)."""

    @property
    def token_hash(self) -> str: ...
    @property
    def family_id(self) -> str: ...
    @property
    def user_id(self) -> str: ...
    @property
    def client_id(self) -> str: ...
    @property
    def scope(self) -> str: ...
    @property
    def audience(self) -> str: ...
    @property
    def auth_time(self) -> int: ...
    @property
    def family_expires_at(self) -> float: ...
    @property
    def family_revoked(self) -> bool: ...
    @property
    def idle_expires_at(self) -> float: ...
    @property
    def rotated_at(self) -> float | None: ...


class FamilySummary(Protocol):
    """A live family, as its person sees it (an account page's list of sign-ins)."""

    @property
    def family_id(self) -> str: ...
    @property
    def client_id(self) -> str: ...
    @property
    def scope(self) -> str: ...
    @property
    def created_at(self) -> float: ...
    @property
    def last_used_at(self) -> float: ...
    @property
    def expires_at(self) -> float: ...


class RefreshStore(Protocol):
    def create_family(
        self,
        *,
        user_id: str,
        client_id: str,
        scope: str,
        audience: str,
        auth_time: int,
        expires_at: float,
    ) -> str: ...

    def add_token(self, family_id: str, token_hash: str, idle_expires_at: float) -> None: ...

    def lookup(self, token_hash: str) -> RefreshRecord | None: ...

    def rotate(
        self, token_hash: str, at: float, successor_hash: str, idle_expires_at: float
    ) -> bool:
        """In one transaction: set ``rotated_at`` if unset and add the successor to the
        family. ``True`` only for the one caller that did; otherwise nothing changes."""

    def revoke_family(self, family_id: str, reason: str) -> bool:
        """``True`` if the family was live until now."""

    def revoke_user_families(
        self, user_id: str, reason: str, since: float
    ) -> tuple[int, list[str]]:
        """Revoke every live family of a user: how many were live, and the ids of all
        their families revoked at ``since`` (unix time) or later, these included."""

    def live_families(self, user_id: str, now: float) -> Sequence[FamilySummary]:
        """The user's families still usable at ``now``, most recently used first."""


class EphemeralCache(Protocol):
    """The ephemeral store, as far as families use it: the retry cache and the list of
    access tokens each family issued."""

    def put(self, key: str, value: bytes, ttl: float) -> None: ...

    def get(self, key: str) -> bytes | None: ...

    def delete(self, key: str) -> None: ...


class AccessTokenDenylist(Protocol):
    """What revoking a family needs of the access tokens (``tokens.AccessTokens``)."""

    @property
    def ttl(self) -> int: ...

    def revoke(self, claims: dict[str, Any]) -> None: ...


class RotationLost(Exception):
    """Another request rotated this refresh token first (RFC 9700 §4.14.2: reuse)."""


def hash_refresh_token(token: str) -> str:
    """What the database keeps (SHA-256; the token has 256 bits of entropy)."""
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(eq=False)
class RefreshTokens:
    """The refresh tokens and the one owner of their families."""

    store: RefreshStore
    cache: EphemeralCache
    access_tokens: AccessTokenDenylist
    _: KW_ONLY
    ttl: float
    idle_ttl: float
    retry_grace: float
    clock: Clock = SYSTEM_CLOCK

    def start_family(
        self, *, user_id: str, client_id: str, scope: str, audience: str, auth_time: int
    ) -> tuple[str, str]:
        """A new family and its first token: ``(family_id, refresh_token)``."""
        family_id = self.store.create_family(
            user_id=user_id,
            client_id=client_id,
            scope=scope,
            audience=audience,
            auth_time=auth_time,
            expires_at=self.clock.now() + self.ttl,
        )
        return family_id, self.next_token(family_id)

    def next_token(self, family_id: str) -> str:
        token = REFRESH_TOKEN_PREFIX + secrets.token_urlsafe(32)
        idle_expires_at = self.clock.now() + self.idle_ttl
        self.store.add_token(family_id, hash_refresh_token(token), idle_expires_at)
        return token

    def lookup(self, token: str) -> RefreshRecord | None:
        if not token.startswith(REFRESH_TOKEN_PREFIX) or len(token) > 200:
            return None
        return self.store.lookup(hash_refresh_token(token))

    def is_live(self, record: RefreshRecord) -> bool:
        now = self.clock.now()
        return (
            not record.family_revoked
            and now < record.family_expires_at
            and now < record.idle_expires_at
            and record.rotated_at is None
        )

    def rotate(self, record: RefreshRecord) -> str:
        """Rotate ``record`` and return its successor, both in one transaction.

        Raises :class:`RotationLost` when another request rotated it first. A refresh
        either completes or changes nothing: what can fail after this (the retry cache)
        is best effort, and what must come before (the family's access-token list) is
        written first, so a client retrying after an error is never taken for a thief.
        """
        token = REFRESH_TOKEN_PREFIX + secrets.token_urlsafe(32)
        now = self.clock.now()
        if not self.store.rotate(
            record.token_hash, now, hash_refresh_token(token), now + self.idle_ttl
        ):
            raise RotationLost
        return token

    def within_grace(self, record: RefreshRecord) -> bool:
        rotated_at = record.rotated_at if record.rotated_at is not None else self.clock.now()
        return self.clock.now() - rotated_at <= self.retry_grace

    # -- families: the one place they are revoked ------------------------------------

    def remember_access_token(self, family_id: str, claims: dict[str, Any]) -> None:
        """Note an access token issued in a family, so that revoking the family (reuse,
        revocation, a replayed code, a new password) denies it too (RFC 7009 §2.1,
        RFC 9700 §4.14). Written before the family's durable change, so a failure here
        changes nothing durable."""
        key = FAMILY_TOKENS_PREFIX + family_id
        now = self.clock.now()
        raw = self.cache.get(key)
        entries = [e for e in json.loads(raw) if e[1] + 60 > now] if raw else []
        entries.append([claims["jti"], claims["exp"]])
        self.cache.put(key, json.dumps(entries[-50:]).encode(), self.access_tokens.ttl + 120)

    def revoke_family(
        self, family_id: str, reason: str, *, on_revoked: Callable[[], None] | None = None
    ) -> bool:
        """Revoke every refresh token of a family and deny the access tokens it issued
        that are still alive; ``True`` if the family was live until now.

        Durable first: the family dies (and ``on_revoked``, the audit event, runs) even
        when the ephemeral store is down; denying the access tokens is then repeated by
        the client's retry (:meth:`deny_access_tokens` is safe to repeat).
        """
        revoked = self.store.revoke_family(family_id, reason)
        if revoked and on_revoked is not None:
            on_revoked()
        self.deny_access_tokens(family_id)
        return revoked

    def revoke_for_user(self, user_id: str, reason: str) -> int:
        """Revoke every live family of a person (a new password, a deleted account) and
        deny their live access tokens; how many families were live.

        Durable first, as :meth:`revoke_family`: the access tokens are denied for every
        family of theirs revoked within an access token's lifetime, not only the ones
        revoked now, so a retry after the ephemeral store failed here (503) still denies
        what the first attempt could not.
        """
        since = self.clock.now() - self.access_tokens.ttl - 120
        revoked, families = self.store.revoke_user_families(user_id, reason, since)
        for family_id in families:
            self.deny_access_tokens(family_id)
        return revoked

    def live_for_user(self, user_id: str) -> Sequence[FamilySummary]:
        """A person's families that can still refresh, most recently used first."""
        return self.store.live_families(user_id, self.clock.now())

    def deny_access_tokens(self, family_id: str) -> None:
        """Deny the live access tokens of a revoked family. Safe to repeat: a request
        that failed here (Redis down, 503) does it again when retried."""
        raw = self.cache.get(FAMILY_TOKENS_PREFIX + family_id)
        entries = json.loads(raw) if raw else []
        for jti, exp in entries:
            self.access_tokens.revoke({"jti": jti, "exp": exp})
        if entries:
            self.cache.delete(FAMILY_TOKENS_PREFIX + family_id)

    # -- the retry cache --------------------------------------------------------------

    def remember_response(self, token: str, response: dict[str, Any]) -> None:
        data = _fernet(token).encrypt(json.dumps(response).encode())
        self.cache.put(_cache_key(token), data, self.retry_grace + 1)

    def replay_response(self, token: str, wait: float = 2.0) -> dict[str, Any] | None:
        """The response the winning request gave, waiting briefly for it to be written.

        The wait is for another request, in real time: counted in polls, not read from
        the clock (a test's manual clock does not move while it sleeps)."""
        for attempt in range(int(wait / REPLAY_POLL_SECONDS) + 1):
            if attempt:
                time.sleep(REPLAY_POLL_SECONDS)
            data = self.cache.get(_cache_key(token))
            if data is not None:
                try:
                    result: dict[str, Any] = json.loads(_fernet(token).decrypt(data))
                except (InvalidToken, ValueError):
                    return None
                return result
        return None


def _cache_key(token: str) -> str:
    # Not the stored hash: a database leak must not name cache entries.
    return RETRY_CACHE_PREFIX + hashlib.sha256(b"retry-key:" + token.encode()).hexdigest()


def _fernet(token: str) -> Fernet:
    return derive_fernet(token.encode(), b"authserver refresh retry")
