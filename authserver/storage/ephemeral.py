"""The ephemeral store: short-lived state with a TTL (DESIGN.md, "Durable vs ephemeral").

Authorization and device codes, federation state, rate-limit counters, the revoked-jti
denylist and the refresh retry cache live here. One protocol, two implementations:
:class:`RedisEphemeralStore` (required for more than one node) and
:class:`SqlEphemeralStore` (the embedded default). Single use is atomic on both:
Redis ``GETDEL``, SQL ``DELETE ... RETURNING``.
"""

from __future__ import annotations

import logging
import math
import random
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Protocol, cast

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry
from sqlalchemy import Engine, Table, and_, bindparam, case, delete, func, select
from sqlalchemy.dialects import postgresql, sqlite

from ..clock import SYSTEM_CLOCK, Clock
from ..errors import DependencyUnavailable
from .models import EphemeralEntry

log = logging.getLogger(__name__)


class EphemeralStore(Protocol):
    """Keys are strings, values bytes, every entry has a TTL in seconds."""

    def put(self, key: str, value: bytes, ttl: float) -> None:
        """Set ``key``, replacing any value it had."""

    def add(self, key: str, value: bytes, ttl: float) -> bool:
        """Set ``key`` only if it does not exist; ``True`` if this call set it."""

    def get(self, key: str) -> bytes | None:
        """The value, or ``None`` if absent or expired."""

    def take(self, key: str) -> bytes | None:
        """Atomically read and delete: of many concurrent takers, one gets the value."""

    def delete(self, key: str) -> None:
        """Remove ``key`` if present."""

    def incr(self, key: str, ttl: float, amount: int = 1) -> int:
        """Add ``amount`` (at least 1) to a counter and return the new count.

        A fixed window: a new (or expired) counter starts at ``amount`` and lives ``ttl``
        seconds from this call; later increments do not extend it.
        """

    def counter(self, key: str) -> tuple[int, float]:
        """A counter's count and expiry (unix time), read together; ``(0, 0.0)`` if absent."""

    def ping(self) -> None:
        """Raise if the backing service cannot be reached."""

    def failed_within(self, seconds: float) -> bool:
        """Whether a call failed for want of the backing service in the last ``seconds``
        (what best-effort callers may skip it for, rather than wait on it)."""


class RedisEphemeralStore:
    """Redis implementation; ``prefix`` namespaces one deployment's keys.

    A Redis that is down or stalled costs a request at most :attr:`TIMEOUT` seconds, and
    only the first request: after a failure the store answers
    :class:`~authserver.errors.DependencyUnavailable` at once for :attr:`COOL_DOWN`
    seconds (a circuit breaker), so worker threads never pile up waiting on it and what
    does not need Redis keeps its speed. It tries again by itself after that.
    """

    #: Seconds a command (or a connection attempt) may take.
    TIMEOUT = 1.0
    #: Seconds to fail fast after a failure before trying Redis again.
    COOL_DOWN = 1.0

    #: INCRBY, and the TTL on the first increment only: one fixed window per counter.
    #: (amount >= 1, so the count equals the amount exactly when the key was new.)
    _INCR = (
        "local v = redis.call('INCRBY', KEYS[1], ARGV[2]) "
        "if v == tonumber(ARGV[2]) then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end return v"
    )
    #: The count and its remaining lifetime in one atomic read.
    _COUNTER = "return {redis.call('GET', KEYS[1]), redis.call('PTTL', KEYS[1])}"

    def __init__(self, client: redis.Redis, prefix: str = "authserver:") -> None:
        self._redis = client
        self._prefix = prefix
        self._incr = client.register_script(self._INCR)
        self._counter = client.register_script(self._COUNTER)
        self._down_until = 0.0
        self._failed_at = float("-inf")

    @classmethod
    def from_url(cls, url: str, prefix: str = "authserver:") -> RedisEphemeralStore:
        client = redis.Redis.from_url(
            url,
            socket_timeout=cls.TIMEOUT,
            socket_connect_timeout=cls.TIMEOUT,
            # redis-py retries 3 times with back-off by default: up to ~19 s per call.
            retry=Retry(NoBackoff(), 0),
            health_check_interval=0,
        )
        return cls(client, prefix)

    def with_timeout(self, seconds: float) -> RedisEphemeralStore:
        """The same Redis and keys through a pool of its own whose calls give up after
        ``seconds``, with a breaker of its own: for callers that fail open (the failure
        limits), so that a worker that has not yet met a stalled Redis loses ``seconds``
        on it, not :attr:`TIMEOUT`."""
        # The address, database, credentials and retry policy; not the old pool's own
        # bookkeeping (redis-py's maintenance handler is bound to that pool).
        kwargs = {
            key: value
            for key, value in self._redis.connection_pool.connection_kwargs.items()
            if not key.startswith(("maint_notifications", "orig_"))
        }
        kwargs.update(socket_timeout=seconds, socket_connect_timeout=seconds)
        pool = redis.ConnectionPool(
            connection_class=self._redis.connection_pool.connection_class, **kwargs
        )
        return RedisEphemeralStore(redis.Redis(connection_pool=pool), self._prefix)

    @contextmanager
    def _guard(self) -> Iterator[None]:
        if time.monotonic() < self._down_until:
            raise DependencyUnavailable("redis", retry_after=math.ceil(self.COOL_DOWN) + 1)
        try:
            yield
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            if time.monotonic() >= self._down_until:
                log.warning("redis is unavailable: %s", exc)
            self._failed_at = time.monotonic()
            self._down_until = self._failed_at + self.COOL_DOWN
            raise DependencyUnavailable("redis", retry_after=math.ceil(self.COOL_DOWN) + 1) from exc

    def put(self, key: str, value: bytes, ttl: float) -> None:
        with self._guard():
            self._redis.set(self._prefix + key, value, px=_ms(ttl))

    def add(self, key: str, value: bytes, ttl: float) -> bool:
        with self._guard():
            return bool(self._redis.set(self._prefix + key, value, px=_ms(ttl), nx=True))

    def get(self, key: str) -> bytes | None:
        with self._guard():
            return cast("bytes | None", self._redis.get(self._prefix + key))

    def take(self, key: str) -> bytes | None:
        with self._guard():
            return cast("bytes | None", self._redis.getdel(self._prefix + key))

    def delete(self, key: str) -> None:
        with self._guard():
            self._redis.delete(self._prefix + key)

    def incr(self, key: str, ttl: float, amount: int = 1) -> int:
        _check_amount(amount)
        with self._guard():
            return int(cast(int, self._incr(keys=[self._prefix + key], args=[_ms(ttl), amount])))

    def counter(self, key: str) -> tuple[int, float]:
        # Lua turns a nil GET into false, which comes back as None.
        with self._guard():
            value, pttl = cast("list[Any]", self._counter(keys=[self._prefix + key]))
        if value is None or int(pttl) <= 0:
            return 0, 0.0
        return int(value), time.time() + int(pttl) / 1000

    def ping(self) -> None:
        # Unguarded: a health check wants the real reason, and must not trip the breaker.
        self._redis.ping()

    def failed_within(self, seconds: float) -> bool:
        return time.monotonic() - self._failed_at < seconds

    def close(self) -> None:
        """Close the connection pool (tests; a server keeps it for its lifetime)."""
        self._redis.close()


class SqlEphemeralStore:
    """SQL implementation over the ``ephemeral_entries`` table (SQLite or PostgreSQL).

    Expired rows are invisible to every read and are purged now and then on writes.
    """

    #: On about one write in this many, expired rows are deleted.
    PURGE_ONE_IN = 200

    def __init__(self, engine: Engine, clock: Clock = SYSTEM_CLOCK) -> None:
        self._engine = engine
        #: TTLs run on this clock (Redis's run on Redis's own).
        self._clock = clock
        self._insert = postgresql.insert if engine.dialect.name == "postgresql" else sqlite.insert
        self._table = cast(Table, EphemeralEntry.__table__)
        entry = self._table.c
        # Built once: reads are on the token hot path (the revoked-jti denylist).
        self._get = select(entry.value).where(
            entry.key == bindparam("key"), entry.expires_at > bindparam("now")
        )
        self._take = (
            delete(self._table)
            .where(entry.key == bindparam("key"), entry.expires_at > bindparam("now"))
            .returning(entry.value)
        )
        self._delete = delete(self._table).where(entry.key == bindparam("key"))
        self._counter = select(entry.counter, entry.expires_at).where(
            entry.key == bindparam("key"), entry.expires_at > bindparam("now")
        )

    def put(self, key: str, value: bytes, ttl: float) -> None:
        expires_at = self._clock.now() + ttl
        insert = self._insert(self._table).values(
            key=key, value=value, counter=0, expires_at=expires_at
        )
        stmt = insert.on_conflict_do_update(
            index_elements=["key"], set_={"value": value, "counter": 0, "expires_at": expires_at}
        )
        self._write(stmt)

    def add(self, key: str, value: bytes, ttl: float) -> bool:
        now = self._clock.now()
        entry = self._table.c
        insert = self._insert(self._table).values(
            key=key, value=value, counter=0, expires_at=now + ttl
        )
        # An expired row counts as absent: take it over, atomically, in the same statement.
        stmt = insert.on_conflict_do_update(
            index_elements=["key"],
            set_={"value": value, "counter": 0, "expires_at": now + ttl},
            where=entry.expires_at <= now,
        ).returning(entry.key)
        return self._write(stmt) is not None

    def get(self, key: str) -> bytes | None:
        with self._engine.connect() as conn:
            value = conn.execute(self._get, {"key": key, "now": self._clock.now()}).scalar()
        return cast("bytes | None", value)

    def take(self, key: str) -> bytes | None:
        return cast("bytes | None", self._write(self._take, {"key": key, "now": self._clock.now()}))

    def delete(self, key: str) -> None:
        self._write(self._delete, {"key": key})

    def incr(self, key: str, ttl: float, amount: int = 1) -> int:
        _check_amount(amount)
        now = self._clock.now()
        entry = self._table.c
        insert = self._insert(self._table).values(
            key=key, value=None, counter=amount, expires_at=now + ttl
        )
        expired = entry.expires_at <= now
        stmt = insert.on_conflict_do_update(
            index_elements=["key"],
            set_={
                "counter": case((expired, amount), else_=entry.counter + amount),
                "expires_at": case((expired, now + ttl), else_=entry.expires_at),
                "value": None,
            },
        ).returning(entry.counter)
        return int(cast(int, self._write(stmt)))

    def counter(self, key: str) -> tuple[int, float]:
        with self._engine.connect() as conn:
            row = conn.execute(self._counter, {"key": key, "now": self._clock.now()}).first()
        if row is None:
            return 0, 0.0
        return int(row.counter), float(row.expires_at)

    def ping(self) -> None:
        with self._engine.connect() as conn:
            conn.execute(select(1))

    def failed_within(self, seconds: float) -> bool:
        # The database's own pool timeouts bound its calls; nothing is skipped.
        return False

    def purge_expired(self, limit: int | None = None) -> int:
        """Delete expired entries (at most ``limit`` of them, oldest first); how many.

        An expired entry is invisible to every read already, and :meth:`add` and
        :meth:`incr` take its key over as new: deleting it changes no answer.
        """
        entry = self._table.c
        expired = entry.expires_at <= self._clock.now()
        if limit is not None:
            # One short transaction per batch (the janitor), the same shape on both
            # databases: DELETE ... WHERE key IN (SELECT key ... LIMIT n).
            # The outer test again: a key renewed between the two (add, incr, put) stays.
            batch = select(entry.key).where(expired).order_by(entry.expires_at).limit(limit)
            expired = and_(entry.key.in_(batch.scalar_subquery()), expired)
        with self._engine.begin() as conn:
            result = conn.execute(delete(self._table).where(expired))
            return int(result.rowcount)

    def count_expired(self) -> int:
        """How many entries :meth:`purge_expired` would delete now."""
        stmt = (
            select(func.count())
            .select_from(self._table)
            .where(self._table.c.expires_at <= self._clock.now())
        )
        with self._engine.connect() as conn:
            return int(conn.execute(stmt).scalar() or 0)

    def _write(self, stmt: object, params: dict[str, object] | None = None) -> object:
        with self._engine.begin() as conn:
            result = conn.execute(stmt, params)  # type: ignore[call-overload]
            value = result.scalar() if result.returns_rows else None
        if random.randrange(self.PURGE_ONE_IN) == 0:  # noqa: S311 - not security relevant
            self.purge_expired()
        return value


def _check_amount(amount: int) -> None:
    if amount < 1:
        raise ValueError(f"a counter is incremented by at least 1, not {amount}")


def _ms(ttl: float) -> int:
    return max(1, int(ttl * 1000))
