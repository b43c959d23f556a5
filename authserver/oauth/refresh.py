"""Refresh tokens: opaque, stored as hashes, rotated on every use (RFC 9700 §4.14.2).

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
from collections.abc import Callable, Collection
from typing import Any, Protocol

from cryptography.fernet import Fernet, InvalidToken

from ..keys.encryption import derive_fernet

#: Refresh tokens are recognisable (secret scanners, logs): ``as_rt_<random>``.
REFRESH_TOKEN_PREFIX = "as_rt_"  # noqa: S105 - a prefix, not a secret
RETRY_CACHE_PREFIX = "refresh-retry:"

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


class RetryCache(Protocol):
    def put(self, key: str, value: bytes, ttl: float) -> None: ...

    def get(self, key: str) -> bytes | None: ...


class RotationLost(Exception):
    """Another request rotated this refresh token first (RFC 9700 §4.14.2: reuse)."""


def hash_refresh_token(token: str) -> str:
    """What the database keeps (SHA-256; the token has 256 bits of entropy)."""
    return hashlib.sha256(token.encode()).hexdigest()


class RefreshTokens:
    def __init__(
        self,
        store: RefreshStore,
        cache: RetryCache,
        *,
        ttl: float,
        idle_ttl: float,
        retry_grace: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self._cache = cache
        self.ttl = ttl
        self.idle_ttl = idle_ttl
        self.retry_grace = retry_grace
        self._clock = clock

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
            expires_at=self._clock() + self.ttl,
        )
        return family_id, self.next_token(family_id)

    def next_token(self, family_id: str) -> str:
        token = REFRESH_TOKEN_PREFIX + secrets.token_urlsafe(32)
        self.store.add_token(family_id, hash_refresh_token(token), self._clock() + self.idle_ttl)
        return token

    def lookup(self, token: str) -> RefreshRecord | None:
        if not token.startswith(REFRESH_TOKEN_PREFIX) or len(token) > 200:
            return None
        return self.store.lookup(hash_refresh_token(token))

    def is_live(self, record: RefreshRecord) -> bool:
        now = self._clock()
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
        now = self._clock()
        if not self.store.rotate(
            record.token_hash, now, hash_refresh_token(token), now + self.idle_ttl
        ):
            raise RotationLost
        return token

    def within_grace(self, record: RefreshRecord) -> bool:
        rotated_at = record.rotated_at if record.rotated_at is not None else self._clock()
        return self._clock() - rotated_at <= self.retry_grace

    def revoke_family(self, family_id: str, reason: str) -> bool:
        return self.store.revoke_family(family_id, reason)

    # -- the retry cache --------------------------------------------------------------

    def remember_response(self, token: str, response: dict[str, Any]) -> None:
        data = _fernet(token).encrypt(json.dumps(response).encode())
        self._cache.put(_cache_key(token), data, self.retry_grace + 1)

    def replay_response(self, token: str, wait: float = 2.0) -> dict[str, Any] | None:
        """The response the winning request gave, waiting briefly for it to be written."""
        deadline = time.monotonic() + wait
        while True:
            data = self._cache.get(_cache_key(token))
            if data is not None:
                try:
                    result: dict[str, Any] = json.loads(_fernet(token).decrypt(data))
                except (InvalidToken, ValueError):
                    return None
                return result
            if time.monotonic() >= deadline:
                return None
            time.sleep(0.05)


def _cache_key(token: str) -> str:
    # Not the stored hash: a database leak must not name cache entries.
    return RETRY_CACHE_PREFIX + hashlib.sha256(b"retry-key:" + token.encode()).hexdigest()


def _fernet(token: str) -> Fernet:
    return derive_fernet(token.encode(), b"authserver refresh retry")
