"""The one conformance suite for the ephemeral store protocol.

Every test runs against all three implementations: :class:`SqlEphemeralStore` on SQLite,
:class:`SqlEphemeralStore` on PostgreSQL (both over the table the real migrations create)
and :class:`RedisEphemeralStore`. DESIGN.md, "Durable vs ephemeral state": single use must
be atomic (Redis ``GETDEL`` / SQL ``DELETE ... RETURNING``) under concurrency, on both;
the concurrency tests below hit one key from many threads at once to prove it.

Each test works under a random key prefix of its own (the PostgreSQL table is shared by
the session) and removes what it wrote; Redis keys also live under a per-test namespace.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

import pytest
import redis
import sqlalchemy as sa

from authserver.app import create_app
from authserver.clock import SYSTEM_CLOCK, Clock, ManualClock
from authserver.settings import Settings
from authserver.storage.ephemeral import EphemeralStore, RedisEphemeralStore, SqlEphemeralStore
from authserver.storage.migrations import upgrade_database
from authserver.storage.models import db

STORES = ["sql-sqlite", "sql-postgresql", "redis"]
SQL_STORES = ["sql-sqlite", "sql-postgresql"]

#: A TTL that expires within a test, and a wait that safely outlasts it.
SHORT_TTL = 0.3
PAST_SHORT_TTL = 0.6
#: A TTL that never expires within a test.
LONG_TTL = 60.0

THREADS = 20
ROUNDS = 5

T = TypeVar("T")
Key = Callable[[str], str]


# -- fixtures -----------------------------------------------------------------------


def _migrated_engine(database_url: str) -> sa.Engine:
    """The engine of an app on ``database_url``, its schema built by the real migrations."""
    app = create_app(
        Settings.model_validate({"database_url": database_url, "secret_key": "x" * 40})
    )
    upgrade_database(app)
    with app.app_context():
        return db.engine


@pytest.fixture
def sqlite_engine(tmp_path: Path) -> Iterator[sa.Engine]:
    engine = _migrated_engine(f"sqlite:///{tmp_path / 'authserver.db'}")
    yield engine
    engine.dispose()


@pytest.fixture(scope="module")
def pg_engine(pg_database_url: str) -> Iterator[sa.Engine]:
    engine = _migrated_engine(pg_database_url)
    yield engine
    engine.dispose()


@pytest.fixture
def prefix() -> str:
    """This test's own key prefix (hex and dashes: no LIKE wildcards)."""
    return f"t-{secrets.token_hex(6)}-"


@pytest.fixture
def key(prefix: str) -> Key:
    """``key("code")``: a key that belongs to this test alone."""
    return lambda name: prefix + name


@pytest.fixture
def clock() -> ManualClock:
    """The clock a SQL store's TTLs run on in a test."""
    return ManualClock()


class StoreTime:
    """The time a store's TTLs run on: for a SQL store, a manual clock that waiting
    moves; for Redis, Redis's own, which only sleeping moves."""

    def __init__(self, manual: ManualClock | None) -> None:
        self._manual = manual
        self.clock: Clock = manual or SYSTEM_CLOCK

    def now(self) -> float:
        return self.clock.now()

    def wait(self, seconds: float) -> None:
        if self._manual is None:
            time.sleep(seconds)
        else:
            self._manual.advance(seconds)


@pytest.fixture
def store_time(store: EphemeralStore, clock: ManualClock) -> StoreTime:
    return StoreTime(None if isinstance(store, RedisEphemeralStore) else clock)


@pytest.fixture(params=STORES)
def store(
    request: pytest.FixtureRequest, prefix: str, clock: ManualClock
) -> Iterator[EphemeralStore]:
    if request.param == "redis":
        url = request.getfixturevalue("redis_url")
        namespace = f"authserver-test:{secrets.token_hex(4)}:"
        yield RedisEphemeralStore.from_url(url, prefix=namespace)
        admin = redis.Redis.from_url(url)
        try:
            for name in admin.scan_iter(match=namespace + "*"):
                admin.delete(name)
        finally:
            admin.close()
        return
    engine = _sql_engine(request)
    yield SqlEphemeralStore(engine, clock)
    if request.param == "sql-postgresql":
        with engine.begin() as conn:
            conn.execute(
                sa.text("DELETE FROM ephemeral_entries WHERE key LIKE :p"), {"p": prefix + "%"}
            )


def _sql_engine(request: pytest.FixtureRequest) -> sa.Engine:
    """The engine under this test's SQL store (the fixture value ``store`` used too)."""
    name = request.node.callspec.params["store"]
    fixture = {"sql-sqlite": "sqlite_engine", "sql-postgresql": "pg_engine"}[name]
    engine: sa.Engine = request.getfixturevalue(fixture)
    return engine


# -- helpers ------------------------------------------------------------------------


def _all_at_once(count: int, call: Callable[[], T]) -> list[T]:
    """Run ``call`` in ``count`` threads released together by a barrier; their results."""
    barrier = threading.Barrier(count, timeout=30)

    def worker() -> T:
        barrier.wait()
        return call()

    with ThreadPoolExecutor(max_workers=count) as pool:
        futures = [pool.submit(worker) for _ in range(count)]
        return [future.result(timeout=60) for future in futures]


def _rows(engine: sa.Engine, prefix: str) -> dict[str, float]:
    """The rows under ``prefix`` in ``ephemeral_entries``, expired or not: key -> expires_at."""
    with engine.connect() as conn:
        result = conn.execute(
            sa.text("SELECT key, expires_at FROM ephemeral_entries WHERE key LIKE :p"),
            {"p": prefix + "%"},
        )
        return {row.key: row.expires_at for row in result}


# -- put / get / delete -------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [b"plain ascii", b"\x00\xff\xfe\x80 not utf-8 \xc3\x28", bytes(range(256)), b""],
    ids=["ascii", "non-utf8", "all-bytes", "empty"],
)
def test_put_then_get_returns_the_same_bytes(store: EphemeralStore, key: Key, value: bytes) -> None:
    store.put(key("k"), value, LONG_TTL)
    assert store.get(key("k")) == value
    assert store.get(key("k")) == value  # get does not consume


def test_put_overwrites_the_previous_value(store: EphemeralStore, key: Key) -> None:
    store.put(key("k"), b"first", LONG_TTL)
    store.put(key("k"), b"second \xff", LONG_TTL)
    assert store.get(key("k")) == b"second \xff"


def test_get_of_a_missing_key_is_none(store: EphemeralStore, key: Key) -> None:
    assert store.get(key("never-written")) is None


def test_keys_are_independent(store: EphemeralStore, key: Key) -> None:
    store.put(key("a"), b"A", LONG_TTL)
    store.put(key("b"), b"B", LONG_TTL)
    store.delete(key("a"))
    assert store.get(key("a")) is None
    assert store.get(key("b")) == b"B"


def test_delete_removes_the_entry(store: EphemeralStore, key: Key) -> None:
    store.put(key("k"), b"value", LONG_TTL)
    store.delete(key("k"))
    assert store.get(key("k")) is None
    assert store.take(key("k")) is None


def test_delete_of_a_missing_key_leaves_other_entries_alone(
    store: EphemeralStore, key: Key
) -> None:
    store.put(key("other"), b"kept", LONG_TTL)
    store.delete(key("missing"))
    store.delete(key("missing"))
    assert store.get(key("missing")) is None
    assert store.get(key("other")) == b"kept"


# -- add ------------------------------------------------------------------------------


def test_add_sets_only_when_absent(store: EphemeralStore, key: Key) -> None:
    assert store.add(key("k"), b"first", LONG_TTL) is True
    assert store.add(key("k"), b"second", LONG_TTL) is False
    assert store.get(key("k")) == b"first"


def test_add_succeeds_again_after_delete(store: EphemeralStore, key: Key) -> None:
    assert store.add(key("k"), b"first", LONG_TTL) is True
    store.delete(key("k"))
    assert store.add(key("k"), b"second", LONG_TTL) is True
    assert store.get(key("k")) == b"second"


def test_add_succeeds_again_after_take(store: EphemeralStore, key: Key) -> None:
    assert store.add(key("k"), b"first", LONG_TTL) is True
    assert store.take(key("k")) == b"first"
    assert store.add(key("k"), b"second", LONG_TTL) is True
    assert store.get(key("k")) == b"second"


def test_add_takes_over_an_expired_entry(
    store: EphemeralStore, key: Key, store_time: StoreTime
) -> None:
    assert store.add(key("k"), b"first", SHORT_TTL) is True
    assert store.add(key("k"), b"second", LONG_TTL) is False
    assert store.get(key("k")) == b"first"
    store_time.wait(PAST_SHORT_TTL)
    assert store.add(key("k"), b"third", LONG_TTL) is True
    assert store.get(key("k")) == b"third"
    # The new entry has the new TTL, not the expired one's.
    assert store.add(key("k"), b"fourth", LONG_TTL) is False


# -- TTL ------------------------------------------------------------------------------


def test_entries_expire_after_their_ttl(
    store: EphemeralStore, key: Key, store_time: StoreTime
) -> None:
    store.put(key("get"), b"g", SHORT_TTL)
    store.put(key("take"), b"t", SHORT_TTL)
    store.put(key("long"), b"l", LONG_TTL)
    store.put(key("renewed"), b"old", SHORT_TTL)
    store.put(key("renewed"), b"new", LONG_TTL)  # put replaces the TTL too
    assert store.get(key("get")) == b"g"
    assert store.get(key("take")) == b"t"

    store_time.wait(PAST_SHORT_TTL)

    assert store.get(key("get")) is None
    assert store.take(key("take")) is None
    assert store.get(key("take")) is None
    assert store.get(key("long")) == b"l"
    assert store.get(key("renewed")) == b"new"
    # An expired key can be written again, and is live again.
    store.put(key("get"), b"again", LONG_TTL)
    assert store.get(key("get")) == b"again"
    assert store.take(key("get")) == b"again"


# -- take -----------------------------------------------------------------------------


def test_take_returns_the_value_once(store: EphemeralStore, key: Key) -> None:
    store.put(key("k"), b"\x01code\xff", LONG_TTL)
    assert store.take(key("k")) == b"\x01code\xff"
    assert store.take(key("k")) is None
    assert store.get(key("k")) is None


def test_take_of_a_missing_key_is_none(store: EphemeralStore, key: Key) -> None:
    assert store.take(key("never-written")) is None


def test_take_is_atomic_under_concurrency(store: EphemeralStore, key: Key) -> None:
    """Of 20 threads taking the same key at the same moment, exactly one gets the value."""
    for round_ in range(ROUNDS):
        name, value = key(f"code-{round_}"), f"code-{round_}".encode()
        store.put(name, value, LONG_TTL)

        def take(name: str = name) -> bytes | None:
            return store.take(name)

        results = _all_at_once(THREADS, take)
        winners = [result for result in results if result is not None]
        assert winners == [value], f"round {round_}: {results}"
        assert results.count(None) == THREADS - 1
        assert store.get(name) is None


# -- add under concurrency ----------------------------------------------------------


def test_add_is_atomic_under_concurrency(store: EphemeralStore, key: Key) -> None:
    """Of 20 threads adding the same key at the same moment, exactly one sets it."""
    for round_ in range(ROUNDS):
        name = key(f"nonce-{round_}")

        def add(name: str = name) -> tuple[bool, bytes]:
            value = f"adder-{threading.get_ident()}".encode()  # distinct per thread
            return store.add(name, value, LONG_TTL), value

        results = _all_at_once(THREADS, add)
        assert len({value for _, value in results}) == THREADS
        winners = [value for added, value in results if added]
        assert len(winners) == 1, f"round {round_}: {results}"
        assert store.get(name) == winners[0]


# -- incr -----------------------------------------------------------------------------


def test_incr_counts_up_from_one(store: EphemeralStore, key: Key) -> None:
    assert [store.incr(key("c"), LONG_TTL) for _ in range(5)] == [1, 2, 3, 4, 5]


def test_incr_counters_are_independent(store: EphemeralStore, key: Key) -> None:
    assert store.incr(key("a"), LONG_TTL) == 1
    assert store.incr(key("a"), LONG_TTL) == 2
    assert store.incr(key("b"), LONG_TTL) == 1
    assert store.incr(key("a"), LONG_TTL) == 3
    assert store.incr(key("b"), LONG_TTL) == 2


def test_incr_restarts_at_one_after_its_window(
    store: EphemeralStore, key: Key, store_time: StoreTime
) -> None:
    """A fixed window: the TTL starts at the first increment and later ones do not extend it."""
    window = 0.4
    assert store.incr(key("c"), window) == 1
    store_time.wait(0.25)
    assert store.incr(key("c"), window) == 2  # still inside the window
    store_time.wait(0.3)  # 0.55 s after the first increment, 0.3 s after the second
    assert store.incr(key("c"), window) == 1
    assert store.incr(key("c"), window) == 2


def test_incr_loses_no_updates_under_concurrency(store: EphemeralStore, key: Key) -> None:
    """20 threads x 10 increments at once: 200 increments, the next one returns 201."""

    def ten_increments() -> list[int]:
        return [store.incr(key("c"), LONG_TTL) for _ in range(10)]

    results = _all_at_once(THREADS, ten_increments)
    seen = sorted(value for values in results for value in values)
    assert seen == list(range(1, THREADS * 10 + 1))  # every count handed out exactly once
    assert store.incr(key("c"), LONG_TTL) == THREADS * 10 + 1


def test_incr_by_an_amount(store: EphemeralStore, key: Key) -> None:
    assert store.incr(key("c"), LONG_TTL, amount=3) == 3
    assert store.incr(key("c"), LONG_TTL) == 4
    assert store.incr(key("c"), LONG_TTL, amount=10) == 14
    assert store.counter(key("c"))[0] == 14


@pytest.mark.parametrize("amount", [0, -1])
def test_incr_refuses_an_amount_below_one(store: EphemeralStore, key: Key, amount: int) -> None:
    with pytest.raises(ValueError, match="at least 1"):
        store.incr(key("c"), LONG_TTL, amount=amount)
    assert store.counter(key("c")) == (0, 0.0)


def test_incr_by_an_amount_restarts_at_the_amount_after_its_window(
    store: EphemeralStore, key: Key, store_time: StoreTime
) -> None:
    assert store.incr(key("c"), SHORT_TTL, amount=2) == 2
    assert store.incr(key("c"), SHORT_TTL, amount=2) == 4
    store_time.wait(PAST_SHORT_TTL)
    assert store.incr(key("c"), LONG_TTL, amount=5) == 5
    assert store.incr(key("c"), LONG_TTL) == 6


def test_incr_by_an_amount_loses_no_updates_under_concurrency(
    store: EphemeralStore, key: Key
) -> None:
    def increments() -> list[int]:
        return [store.incr(key("c"), LONG_TTL, amount=3) for _ in range(5)]

    results = _all_at_once(THREADS, increments)
    seen = sorted(value for values in results for value in values)
    assert seen == list(range(3, THREADS * 5 * 3 + 1, 3))
    assert store.counter(key("c"))[0] == THREADS * 5 * 3


# -- counter --------------------------------------------------------------------------


def test_counter_of_a_missing_key_is_zero(store: EphemeralStore, key: Key) -> None:
    assert store.counter(key("never-written")) == (0, 0.0)


def test_counter_reads_the_count_and_its_window_end(
    store: EphemeralStore, key: Key, store_time: StoreTime
) -> None:
    before = store_time.now()
    store.incr(key("c"), LONG_TTL)
    after = store_time.now()
    store.incr(key("c"), LONG_TTL)
    count, expires_at = store.counter(key("c"))
    assert count == 2
    # Redis reports a remaining lifetime in whole milliseconds: allow for the rounding.
    assert before + LONG_TTL - 0.01 <= expires_at <= after + LONG_TTL + 0.01
    assert store.counter(key("c")) == (2, pytest.approx(expires_at, abs=0.05))  # no consume


def test_counter_does_not_extend_the_window(
    store: EphemeralStore, key: Key, store_time: StoreTime
) -> None:
    store.incr(key("c"), LONG_TTL)
    first = store.counter(key("c"))[1]
    store_time.wait(0.05)
    store.incr(key("c"), LONG_TTL)
    assert store.counter(key("c"))[1] == pytest.approx(first, abs=0.02)


def test_counter_is_zero_after_expiry_and_delete(
    store: EphemeralStore, key: Key, store_time: StoreTime
) -> None:
    store.incr(key("expiring"), SHORT_TTL, amount=4)
    store.incr(key("deleted"), LONG_TTL, amount=4)
    assert store.counter(key("expiring"))[0] == 4
    store.delete(key("deleted"))
    assert store.counter(key("deleted")) == (0, 0.0)
    store_time.wait(PAST_SHORT_TTL)
    assert store.counter(key("expiring")) == (0, 0.0)


def test_counters_are_independent(store: EphemeralStore, key: Key) -> None:
    store.incr(key("a"), LONG_TTL, amount=2)
    store.incr(key("b"), LONG_TTL)
    assert store.counter(key("a"))[0] == 2
    assert store.counter(key("b"))[0] == 1


# -- ping -----------------------------------------------------------------------------


def test_ping_reaches_the_backing_service(store: EphemeralStore, key: Key) -> None:
    store.ping()
    store.put(key("k"), b"after ping", LONG_TTL)
    assert store.get(key("k")) == b"after ping"


@pytest.mark.parametrize("kind", STORES)
def test_ping_raises_when_the_backing_service_is_unreachable(kind: str, tmp_path: Path) -> None:
    """Needs no running service: each store points at one that is not there."""
    broken: EphemeralStore
    if kind == "redis":
        broken = RedisEphemeralStore.from_url("redis://127.0.0.1:1/0")
        with pytest.raises(redis.ConnectionError):
            broken.ping()
        return
    url = (
        f"sqlite:///{tmp_path / 'no-such-dir' / 'authserver.db'}"
        if kind == "sql-sqlite"
        else "postgresql+psycopg://postgres@127.0.0.1:1/nothing"
    )
    engine = sa.create_engine(url)
    try:
        broken = SqlEphemeralStore(engine)
        with pytest.raises(sa.exc.OperationalError):
            broken.ping()
    finally:
        engine.dispose()


# -- SqlEphemeralStore only ---------------------------------------------------------


@pytest.mark.parametrize("store", SQL_STORES, indirect=True)
def test_purge_expired_removes_expired_rows_and_keeps_live_ones(
    request: pytest.FixtureRequest,
    store: EphemeralStore,
    key: Key,
    prefix: str,
    store_time: StoreTime,
) -> None:
    assert isinstance(store, SqlEphemeralStore)
    engine = _sql_engine(request)
    for name in ("expired-1", "expired-2", "expired-3"):
        store.put(key(name), b"x", SHORT_TTL)
    store.put(key("live"), b"y", LONG_TTL)
    assert store.incr(key("live-counter"), LONG_TTL) == 1
    store_time.wait(PAST_SHORT_TTL)
    # Expired rows stay in the table (invisible to reads) until purged.
    assert len(_rows(engine, prefix)) == 5
    assert store.get(key("expired-1")) is None

    purged = store.purge_expired()

    assert purged >= 3  # PostgreSQL: other tests' expired rows may go too
    if engine.dialect.name == "sqlite":  # a database of this test's own
        assert purged == 3
    assert sorted(_rows(engine, prefix)) == [key("live"), key("live-counter")]
    assert store.get(key("live")) == b"y"
    assert store.incr(key("live-counter"), LONG_TTL) == 2
    store.purge_expired()  # again: nothing of this test's left to purge
    assert sorted(_rows(engine, prefix)) == [key("live"), key("live-counter")]
