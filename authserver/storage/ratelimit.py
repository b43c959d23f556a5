"""Rate limits (brute-force protection) with their counters in the ephemeral store.

The algorithm is the ``limits`` library's :class:`~limits.strategies.FixedWindowRateLimiter`
(the engine under Flask-Limiter); this module only gives it a storage backend,
:class:`EphemeralRateLimitStorage`, over whichever :class:`EphemeralStore` the app built
(Redis, or SQL), so every node of a deployment shares the same counters.

:class:`RateLimits` is what callers use: limits are strings in the ``limits`` notation
(``"5/minute"``, ``"5/minute;30/hour"``), identifiers say whose attempts are counted
(``"login", username``)::

    limits = RateLimits(store)
    if not limits.hit("5/minute;30/hour", "login", username):
        ...  # refuse; retry in limits.retry_after("5/minute;30/hour", "login", username) s
"""

from __future__ import annotations

import functools
import hashlib
import math
from urllib.parse import quote

import redis
from limits import RateLimitItem, parse_many
from limits.storage import Storage
from limits.strategies import FixedWindowRateLimiter
from sqlalchemy.exc import SQLAlchemyError

from ..clock import SYSTEM_CLOCK, Clock
from ..errors import DependencyUnavailable
from .ephemeral import EphemeralStore

#: Storage keys longer than this are replaced by a hash (the SQL key column is 255 long).
_MAX_KEY = 200


class EphemeralRateLimitStorage(Storage):
    """A ``limits`` storage over an :class:`EphemeralStore`; keys go under ``namespace``.

    Enough for the fixed-window strategy (``incr``/``get``/``get_expiry``), which the
    store's atomic fixed-window counter implements exactly. Not registered under a URI
    scheme (``STORAGE_SCHEME = None``): ``limits`` registers schemes globally at import
    time, and a URI could not carry the store object anyway. Build it directly.
    """

    STORAGE_SCHEME = None

    def __init__(
        self, store: EphemeralStore, namespace: str = "rl:", clock: Clock = SYSTEM_CLOCK
    ) -> None:
        super().__init__()
        self._store = store
        self._namespace = namespace
        self._clock = clock

    @property
    def base_exceptions(self) -> tuple[type[Exception], ...]:
        return (redis.RedisError, SQLAlchemyError)

    def incr(self, key: str, expiry: float, amount: int = 1) -> int:
        try:
            return self._store.incr(self._key(key), expiry, amount)
        except SQLAlchemyError as exc:  # the SQL store's database; Redis raises it itself
            raise DependencyUnavailable("database") from exc

    def get(self, key: str) -> int:
        return self._counter(key)[0]

    def get_expiry(self, key: str) -> float:
        """When the window of ``key`` ends (unix time); now if it has no window."""
        count, expires_at = self._counter(key)
        return expires_at if count else self._clock.now()

    def _counter(self, key: str) -> tuple[int, float]:
        try:
            return self._store.counter(self._key(key))
        except SQLAlchemyError as exc:
            raise DependencyUnavailable("database") from exc

    def check(self) -> bool:
        try:
            self._store.ping()
        except self.base_exceptions:
            return False
        return True

    def reset(self) -> int | None:
        """Unsupported: the store cannot enumerate keys. Use :meth:`clear` per key."""
        raise NotImplementedError("the ephemeral store cannot list keys; clear them one by one")

    def clear(self, key: str) -> None:
        self._store.delete(self._key(key))

    def _key(self, key: str) -> str:
        full = self._namespace + key
        if len(full) <= _MAX_KEY:
            return full
        # ``limits`` keys start with a namespace ("LIMITER/"), so never with "h:".
        return f"{self._namespace}h:{hashlib.sha256(key.encode()).hexdigest()}"


class RateLimits:
    """Fixed-window rate limits over the ephemeral store.

    A limit string may hold several limits (``"5/minute;30/hour"``): all apply, and every
    hit counts against each of them, allowed or not (as a refused hit does in one
    fixed window), so the outcome does not depend on their order.
    """

    def __init__(
        self, store: EphemeralStore, namespace: str = "rl:", clock: Clock = SYSTEM_CLOCK
    ) -> None:
        self.storage = EphemeralRateLimitStorage(store, namespace, clock)
        self._limiter = FixedWindowRateLimiter(self.storage)
        self._store = store
        self._clock = clock

    def degraded(self, seconds: float) -> bool:
        """Whether the counters' store failed in the last ``seconds``: a limit that may
        fail open then need not wait on it (a stalled Redis answers nothing in 1 s)."""
        return self._store.failed_within(seconds)

    def hit(self, limit: str, *identifiers: str) -> bool:
        """Count one attempt; ``False`` if it is over any of the limits."""
        items = _parse(limit)
        ids = _ids(identifiers)
        results = [self._limiter.hit(item, *ids) for item in items]
        return all(results)

    def test(self, limit: str, *identifiers: str) -> bool:
        """Whether one more attempt would be allowed now, without counting one."""
        ids = _ids(identifiers)
        return all(self._limiter.test(item, *ids) for item in _parse(limit))

    def clear(self, limit: str, *identifiers: str) -> None:
        """Forget the attempts counted (e.g. after a successful login)."""
        ids = _ids(identifiers)
        for item in _parse(limit):
            self._limiter.clear(item, *ids)

    def used(self, limit: str, *identifiers: str) -> bool:
        """Whether any attempt was counted in the current window of any of the limits."""
        ids = _ids(identifiers)
        return any(
            self._limiter.get_window_stats(item, *ids).remaining < item.amount
            for item in _parse(limit)
        )

    def retry_after(self, limit: str, *identifiers: str) -> int:
        """Whole seconds until an attempt is allowed again; 0 if one is allowed now."""
        ids = _ids(identifiers)
        wait = 0
        for item in _parse(limit):
            stats = self._limiter.get_window_stats(item, *ids)
            if stats.remaining > 0:
                continue
            seconds = math.ceil(stats.reset_time - self._clock.now())
            wait = max(wait, min(max(seconds, 1), item.get_expiry()))
        return wait


@functools.lru_cache(maxsize=128)
def _parse(limit: str) -> tuple[RateLimitItem, ...]:
    """The limits of ``limit``; :class:`ValueError` if it is not in ``limits`` notation."""
    items = tuple(parse_many(limit))
    if not items:
        raise ValueError(f"no rate limit in {limit!r}")
    return items


def _ids(identifiers: tuple[str, ...]) -> tuple[str, ...]:
    """Identifiers with "/" escaped: ``limits`` joins them with "/" into one key."""
    return tuple(quote(identifier, safe="") for identifier in identifiers)
