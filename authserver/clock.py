"""One clock, built by the wiring and passed to whatever reads the time.

Code that decides by the time (expiry of codes and sessions, ``max_age``, pacing of the
device grant, the ephemeral store's TTLs, key rotation) takes a :class:`Clock` instead of
calling :func:`time.time` itself, so that a test moves the time with
:class:`ManualClock.advance` instead of sleeping. A leaf module: it imports nothing of the
server, and every layer may import it.
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime
from typing import Protocol


class Clock(Protocol):
    """Wall time (seconds since the epoch) and a monotonic reading for intervals."""

    def now(self) -> float:
        """Seconds since the epoch, as :func:`time.time`."""
        ...

    def monotonic(self) -> float:
        """A reading that never goes back, as :func:`time.monotonic`."""
        ...

    def utcnow(self) -> datetime:
        """:meth:`now` as an aware UTC datetime (for SQL timestamps)."""
        ...


class SystemClock:
    """The real time."""

    def now(self) -> float:
        return time.time()

    def monotonic(self) -> float:
        return time.monotonic()

    def utcnow(self) -> datetime:
        return datetime.now(UTC)


class ManualClock:
    """A clock that moves only when told to (tests).

    Both readings start at ``start`` (default: the real time when built) and move
    together by :meth:`advance`.
    """

    def __init__(self, start: float | None = None) -> None:
        self._now = time.time() if start is None else start
        self._monotonic = 0.0
        self._lock = threading.Lock()

    def now(self) -> float:
        with self._lock:
            return self._now

    def monotonic(self) -> float:
        with self._lock:
            return self._monotonic

    def utcnow(self) -> datetime:
        return datetime.fromtimestamp(self.now(), UTC)

    def advance(self, seconds: float) -> None:
        """Move both readings forward by ``seconds``."""
        if seconds < 0:
            raise ValueError("a clock does not go back")
        with self._lock:
            self._now += seconds
            self._monotonic += seconds


SYSTEM_CLOCK: Clock = SystemClock()
