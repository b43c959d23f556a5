"""The rotation schedule: a pure function of the key list and the time.

Every key carries ``activates_at``. The signing key is, at any moment, the newest
generation whose ``activates_at`` has passed, so every gunicorn worker (on every node)
that has read the list signs with the same key, without talking to the others.

A new key is published in JWKS ``publish_ahead`` before it activates, and JWKS may be
cached for at most half that (and workers re-read the list far more often), so any
resource server that honours Cache-Control (RFC 9111 §5.2.2.1) has the key before the
first token it signs. A key that stopped signing stays published until every token it
signed has expired (``token_ttl`` after its successor activated, plus leeway).

No I/O here and no clock: the caller passes the keys (oldest generation first) and
``now``, and carries out the :data:`Step` it gets back.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal, Protocol, TypeVar

#: Published a while longer than strictly needed, for clock skew at resource servers.
RETIRE_LEEWAY = timedelta(seconds=60)

KeyState = Literal["next", "active", "retired", "expired"]


class ScheduledKey(Protocol):
    """What the schedule reads of a key (a stored ``KeyRecord`` has it)."""

    @property
    def kid(self) -> str: ...
    @property
    def generation(self) -> int: ...
    @property
    def algorithm(self) -> str: ...
    @property
    def created_at(self) -> datetime: ...
    @property
    def activates_at(self) -> datetime: ...


K = TypeVar("K", bound=ScheduledKey)


@dataclass(frozen=True)
class KeyStatus:
    kid: str
    algorithm: str
    generation: int
    created_at: datetime
    activates_at: datetime
    state: KeyState
    #: Until when it stays in JWKS (``None`` while it is next or active).
    published_until: datetime | None


@dataclass(frozen=True)
class CreateKey:
    """Add a key of the next generation that signs from ``activates_at``."""

    activates_at: datetime


@dataclass(frozen=True)
class WithdrawOlder:
    """Withdraw every key older than ``generation`` (an immediate rotation's end)."""

    generation: int


Step = CreateKey | WithdrawOlder


def active_key(keys: Sequence[K], now: datetime) -> K | None:
    """The key that signs at ``now``: the newest one already activated."""
    activated = [k for k in keys if k.activates_at <= now]
    return activated[-1] if activated else None


@dataclass(frozen=True)
class RotationSchedule:
    """When keys are made, sign, and leave JWKS, for one line of keys."""

    #: The configured algorithm; a line of another one rolls over to it.
    algorithm: str
    rotate_every: timedelta
    publish_ahead: timedelta
    #: The lifetime of what a key signs (access tokens).
    token_ttl: timedelta
    #: How long until every worker on every node has re-read the key list.
    propagation: timedelta

    @property
    def jwks_max_age(self) -> int:
        """Seconds JWKS may be cached: half of ``publish_ahead``, at most an hour."""
        return int(min(self.publish_ahead.total_seconds() / 2, 3600))

    def activation_of_rotation(self, now: datetime, *, immediate: bool) -> datetime:
        """When a key made by hand now signs: after ``publish_ahead``, or at once for a
        compromised key."""
        return now if immediate else now + self.publish_ahead

    def published_until(self, keys: Sequence[K], key: K) -> datetime | None:
        """Until when ``key`` stays in JWKS; ``None`` while no successor exists."""
        successors = [k for k in keys if k.generation > key.generation]
        if not successors:
            return None
        return min(s.activates_at for s in successors) + self.token_ttl + RETIRE_LEEWAY

    def is_published(self, keys: Sequence[K], key: K, now: datetime) -> bool:
        until = self.published_until(keys, key)
        return until is None or now < until

    def published(self, keys: Sequence[K], now: datetime) -> list[K]:
        """The keys in JWKS at ``now`` (next, active, and retired ones still in use),
        newest first."""
        return [k for k in reversed(keys) if self.is_published(keys, k, now)]

    def _immediate_rotation_due(self, keys: Sequence[K], active: K, now: datetime) -> bool:
        """Whether the signing key ``active`` came from an immediate rotation (it signed
        as soon as it was made, with older keys before it) and every worker has had the
        time to switch to it, while older keys are still there to withdraw."""
        return (
            active.activates_at - active.created_at < self.publish_ahead / 2
            and any(k.generation < active.generation for k in keys)
            and now >= active.activates_at + self.propagation
        )

    def next_step(self, keys: Sequence[K], now: datetime) -> Step | None:
        """What the key list needs at ``now``: a new key, the end of an immediate
        rotation, or nothing."""
        active = active_key(keys, now)
        if active is not None and self._immediate_rotation_due(keys, active, now):
            return WithdrawOlder(active.generation)
        if active is None:
            # First start (or only future keys): no token was ever signed by any key
            # here, so a key may sign at once without waiting to be published.
            return CreateKey(now)
        pending = [k for k in keys if k.activates_at > now]
        if pending and pending[-1].algorithm == self.algorithm:
            return None
        if active.algorithm != self.algorithm:
            # The configured algorithm changed: roll over to a key of the new one.
            return CreateKey(now + self.publish_ahead)
        if now >= active.activates_at + self.rotate_every - self.publish_ahead:
            return CreateKey(max(now + self.publish_ahead, active.activates_at + self.rotate_every))
        return None

    def statuses(self, keys: Sequence[K], now: datetime) -> list[KeyStatus]:
        """Every key with its state at ``now``, newest first."""
        active = active_key(keys, now)
        result = []
        for key in reversed(keys):
            until = self.published_until(keys, key)
            state: KeyState
            if key.activates_at > now:
                state = "next"
            elif active is not None and key.kid == active.kid:
                state = "active"
            elif until is not None and now < until:
                state = "retired"
            else:
                state = "expired"
            result.append(
                KeyStatus(
                    kid=key.kid,
                    algorithm=key.algorithm,
                    generation=key.generation,
                    created_at=key.created_at,
                    activates_at=key.activates_at,
                    state=state,
                    published_until=until,
                )
            )
        return result
