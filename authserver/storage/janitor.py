"""The janitor: deletes what can never be used again, so tables stop growing without bound.

What goes, each table in batches of short transactions (``DELETE ... WHERE id IN
(SELECT id ... LIMIT n)``, the same shape on SQLite and PostgreSQL; the families' batches
walk their primary key, each after the last id of the one before), so that a large
table is never locked for long:

``refresh_families`` (and their ``refresh_tokens``)
    A family that no request could use for :meth:`Janitor.family_keep` seconds: past its
    absolute expiry, revoked, or with every member past its idle expiry (the refresh
    grant answers "expired" before it looks at rotation, so an idle-dead family's rotated
    members can no longer trip reuse detection either). Rotation with
    reuse detection (RFC 9700 §4.14.2) needs a family's rotated members for as long as
    the family could still refresh: a rotated member presented again is what reveals a
    stolen token, and it revokes the family. A live family therefore loses nothing
    here. Once the family is dead, a presented member is refused (``invalid_grant``)
    with or without its row, and no new token can come of it; what a dead family's row
    still does is let a revocation (RFC 7009 §2.1) or a retried reuse detection deny the
    access tokens the family issued, which live at most ``tokens.access_token_ttl``.
    So the rule: a family is deleted ``access_token_ttl + refresh_retry_grace + 60 s``
    after it died (the retry window of a refresh whose response was lost, and a minute
    for clocks and requests in flight), never earlier.
``ephemeral_entries``
    Entries of the SQL ephemeral store past their ``expires_at`` (revoked-jti denylist
    entries, spent and expired authorization and device codes, rate-limit counters, login
    state): every read ignores them already. (Redis expires its own keys; the table is
    still swept when Redis is configured, for what it held before.)
``audit_events``
    Only with ``audit_retention`` set, and only when run by ``authserver db prune``: the
    events older than it (what ``authserver audit prune`` deletes). The server's own
    periodic runs (``janitor.interval``) never delete audit events.

Nothing here reads the wall clock: the janitor is given the server's :class:`Clock`.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta

from ..clock import SYSTEM_CLOCK, Clock
from .audit import SqlAuditLog
from .ephemeral import EphemeralStore, SqlEphemeralStore
from .refresh import SqlRefreshStore

#: Rows deleted per transaction unless told otherwise.
DEFAULT_BATCH_SIZE = 1000
#: The ephemeral-store key that one worker of a deployment holds while its run is due.
LOCK_KEY = "janitor:lock"
#: Seconds of margin on a dead family's keep: clock skew, requests in flight.
KEEP_MARGIN = 60.0


@dataclass(frozen=True)
class PruneCounts:
    """Rows deleted (or, for a dry run, that would be), per table."""

    refresh_families: int = 0
    refresh_tokens: int = 0
    ephemeral_entries: int = 0
    audit_events: int = 0

    def as_dict(self) -> dict[str, int]:
        return asdict(self)

    @property
    def total(self) -> int:
        return sum(self.as_dict().values())


class Janitor:
    """Deletes the dead rows of the durable tables (see the module's docstring)."""

    def __init__(
        self,
        refresh: SqlRefreshStore,
        ephemeral: SqlEphemeralStore,
        audit: SqlAuditLog,
        *,
        access_token_ttl: float,
        refresh_retry_grace: float,
        audit_retention: float | None = None,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self._refresh = refresh
        self._ephemeral = ephemeral
        self._audit = audit
        self._clock = clock
        #: Seconds a dead refresh-token family is kept (RFC 9700 §4.14.2, RFC 7009 §2.1).
        self.family_keep = access_token_ttl + refresh_retry_grace + KEEP_MARGIN
        self.audit_retention = audit_retention

    def family_cutoff(self) -> float:
        """Families dead since before this unix time go."""
        return self._clock.now() - self.family_keep

    def audit_cutoff(self) -> datetime | None:
        """Audit events from before this go; ``None``: none (no ``audit_retention``)."""
        if self.audit_retention is None:
            return None
        return self._clock.utcnow() - timedelta(seconds=self.audit_retention)

    def count(self) -> PruneCounts:
        """What :meth:`run` would delete now, changing nothing (``--dry-run``)."""
        families, tokens = self._refresh.count_dead_families(self.family_cutoff())
        audit_before = self.audit_cutoff()
        return PruneCounts(
            refresh_families=families,
            refresh_tokens=tokens,
            ephemeral_entries=self._ephemeral.count_expired(),
            audit_events=0 if audit_before is None else self._audit.count_before(audit_before),
        )

    def run_if_due(
        self, lock: EphemeralStore, interval: float, batch_size: int = DEFAULT_BATCH_SIZE
    ) -> PruneCounts | None:
        """:meth:`run` (without the audit events), unless another worker of the
        deployment ran it in the last ``interval`` seconds; ``None`` then.

        The lock is an entry of the deployment's ephemeral store set only if absent
        (Redis ``SET NX PX``, SQL ``INSERT ... ON CONFLICT``) that expires by itself: one
        run per interval across every worker and node, and a worker that dies holding it
        delays the next run by at most one interval.
        """
        if not lock.add(LOCK_KEY, str(os.getpid()).encode(), interval):
            return None
        return self.run(batch_size, audit=False)

    def run(self, batch_size: int = DEFAULT_BATCH_SIZE, *, audit: bool = True) -> PruneCounts:
        """Delete every dead row, ``batch_size`` rows per transaction; the counts.
        ``audit=False`` leaves the audit events alone (the server's own runs)."""
        if batch_size < 1:
            raise ValueError(f"the batch size is at least 1, not {batch_size}")
        families = tokens = 0
        cutoff = self.family_cutoff()
        last: str | None = ""
        while last is not None:
            deleted, members, last = self._refresh.delete_dead_families(cutoff, batch_size, last)
            families += deleted
            tokens += members
            if deleted < batch_size:
                break
        entries = _in_batches(lambda: self._ephemeral.purge_expired(batch_size), batch_size)
        audit_events = 0
        audit_before = self.audit_cutoff() if audit else None
        if audit_before is not None:
            audit_events = _in_batches(
                lambda: self._audit.prune(audit_before, batch_size), batch_size
            )
        return PruneCounts(
            refresh_families=families,
            refresh_tokens=tokens,
            ephemeral_entries=entries,
            audit_events=audit_events,
        )


def _in_batches(delete_batch: Callable[[], int], batch_size: int) -> int:
    """Run ``delete_batch`` until one deletes less than a full batch; the total."""
    total = 0
    while True:
        deleted = delete_batch()
        total += deleted
        if deleted < batch_size:
            return total
