"""Rate limits over the ephemeral store (``authserver.storage.ratelimit``).

Every test runs on the three stores of the conformance suite (SQL on SQLite, SQL on
PostgreSQL, Redis): its fixtures are reused. The limiter's keys go under this test's own
prefix, so the store fixture's clean-up removes them.
"""

from __future__ import annotations

import pytest

from authserver.storage.ephemeral import EphemeralStore
from authserver.storage.ratelimit import EphemeralRateLimitStorage, RateLimits

from .test_ephemeral_store import THREADS, StoreTime, _all_at_once

# Fixtures, used by name (``x as x``: an explicit re-export, not an unused import).
from .test_ephemeral_store import clock as clock
from .test_ephemeral_store import pg_engine as pg_engine
from .test_ephemeral_store import prefix as prefix
from .test_ephemeral_store import sqlite_engine as sqlite_engine
from .test_ephemeral_store import store as store
from .test_ephemeral_store import store_time as store_time


@pytest.fixture
def limits(store: EphemeralStore, prefix: str, store_time: StoreTime) -> RateLimits:
    return RateLimits(store, namespace=prefix + "rl:", clock=store_time.clock)


def test_allows_up_to_the_limit_then_refuses(limits: RateLimits) -> None:
    assert [limits.hit("5/minute", "login", "alice") for _ in range(7)] == [True] * 5 + [False] * 2
    assert limits.test("5/minute", "login", "alice") is False


def test_identifiers_are_independent(limits: RateLimits) -> None:
    for _ in range(3):
        assert limits.hit("3/minute", "login", "alice")
    assert not limits.hit("3/minute", "login", "alice")
    assert limits.hit("3/minute", "login", "bob")
    assert limits.hit("3/minute", "token", "alice")  # another purpose, another counter
    assert limits.hit("3/minute", "login/alice")  # "/" cannot make two keys collide
    assert limits.hit("3/minute", "login", "alice/x")


def test_the_same_identifiers_under_another_limit_count_apart(limits: RateLimits) -> None:
    assert limits.hit("1/minute", "ip", "10.0.0.1")
    assert not limits.hit("1/minute", "ip", "10.0.0.1")
    assert limits.hit("2/minute", "ip", "10.0.0.1")


def test_every_limit_of_a_list_applies(limits: RateLimits, store_time: StoreTime) -> None:
    both = "5/minute;2/second"
    # The per-second limit refuses the third hit at once...
    assert [limits.hit(both, "u") for _ in range(3)] == [True, True, False]
    store_time.wait(1.1)
    # ...and the per-minute one, counting every hit, refuses the sixth though a new
    # second has begun.
    assert [limits.hit(both, "u") for _ in range(2)] == [True, True]
    store_time.wait(1.1)
    assert limits.hit(both, "u") is False
    assert limits.test(both, "u") is False
    assert 1 <= limits.retry_after(both, "u") <= 60


def test_retry_after_is_zero_while_allowed_then_within_the_window(limits: RateLimits) -> None:
    assert limits.retry_after("2/minute", "u") == 0
    limits.hit("2/minute", "u")
    assert limits.retry_after("2/minute", "u") == 0
    limits.hit("2/minute", "u")
    assert 55 <= limits.retry_after("2/minute", "u") <= 60
    assert limits.retry_after("2/minute", "someone-else") == 0


def test_the_window_expires(limits: RateLimits, store_time: StoreTime) -> None:
    assert [limits.hit("2/1second", "u") for _ in range(3)] == [True, True, False]
    assert limits.retry_after("2/1second", "u") == 1
    store_time.wait(1.1)
    assert limits.test("2/1second", "u") is True
    assert limits.retry_after("2/1second", "u") == 0
    assert [limits.hit("2/1second", "u") for _ in range(3)] == [True, True, False]


def test_test_does_not_consume(limits: RateLimits) -> None:
    for _ in range(10):
        assert limits.test("2/minute", "u") is True
    assert limits.hit("2/minute", "u")
    assert limits.test("2/minute", "u") is True
    assert limits.hit("2/minute", "u")
    assert limits.test("2/minute", "u") is False
    assert limits.test("2/minute", "u") is False
    assert limits.retry_after("2/minute", "u") > 0


def test_clear_forgets_the_attempts(limits: RateLimits) -> None:
    limit = "2/minute;5/hour"
    assert [limits.hit(limit, "u") for _ in range(3)] == [True, True, False]
    assert [limits.hit(limit, "v") for _ in range(3)] == [True, True, False]
    limits.clear(limit, "u")
    assert limits.test(limit, "u") is True
    assert limits.retry_after(limit, "u") == 0
    assert limits.hit(limit, "u")
    assert limits.test(limit, "v") is False  # others keep their count


def test_exactly_the_limit_is_allowed_under_concurrency(limits: RateLimits) -> None:
    """20 threads hitting a 5/minute limit at the same moment: exactly 5 get through."""
    results = _all_at_once(THREADS, lambda: limits.hit("5/minute", "login", "alice"))
    assert results.count(True) == 5
    assert results.count(False) == THREADS - 5
    assert not limits.hit("5/minute", "login", "alice")


def test_long_identifiers_are_hashed_into_a_key_that_fits(limits: RateLimits) -> None:
    long = "x" * 1000  # the SQL key column holds 255 characters
    assert [limits.hit("2/minute", "login", long) for _ in range(3)] == [True, True, False]
    assert limits.hit("2/minute", "login", long + "y")
    limits.clear("2/minute", "login", long)
    assert limits.test("2/minute", "login", long)


@pytest.mark.parametrize("bad", ["", "five per minute", "5/fortnight", "5/minute;;"])
def test_a_bad_limit_string_is_a_value_error(limits: RateLimits, bad: str) -> None:
    with pytest.raises(ValueError, match=r"rate limit|granularity"):
        limits.hit(bad, "u")


def test_storage_health_check(store: EphemeralStore, prefix: str, store_time: StoreTime) -> None:
    storage = EphemeralRateLimitStorage(store, namespace=prefix, clock=store_time.clock)
    assert storage.check() is True
    assert storage.get("k") == 0
    assert storage.incr("k", 60, amount=2) == 2
    assert storage.get("k") == 2
    assert store_time.now() < storage.get_expiry("k") <= store_time.now() + 60
    storage.clear("k")
    assert storage.get("k") == 0
