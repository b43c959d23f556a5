"""The audit trail: every security-relevant event, durably, with who, what and where.

The protocol layers report events through one callable (``events(name, **details)``);
this one adds who acts and from where, and writes a row of ``audit_events``. A front
end passes those in: an admin operation with its :class:`Actor`, and the web layer, for
events raised deep in a request, through the :class:`RequestScope` it gives the trail
(``web/audit.py``). Nothing here knows of Flask. Token values never go in: only their
ids (``jti``), subjects, clients, scopes and grant types.

Sign-ins, refresh-token reuse, revocations and admin changes are written before the
response goes out. ``token_issued``, one row per token and the bulk of the log, is
written in batches by a thread of each worker, at most ``BATCH_SECONDS`` late: one
transaction per batch instead of one per token (on SQLite, one write lock shared by
every worker). While the database is down the events are held in memory and written
when it returns. A worker that stops writes what it holds; one killed outright
(SIGKILL, out of memory) loses what it held: normally the last fraction of a second of
issuance rows, during a database outage every event of the outage in that worker (the
events are in the server's log at DEBUG, WARNING for the notable ones).
"""

from __future__ import annotations

import atexit
import logging
import os
import queue
import re
import secrets
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy.exc import SQLAlchemyError

from ..clock import SYSTEM_CLOCK, Clock
from ..errors import DependencyUnavailable
from ..oauth.clients import SERVICE_ACCOUNT_ID_PREFIX
from ..storage.audit import AuditRecord, SqlAuditLog
from ..storage.janitor import Janitor, PruneCounts

log = logging.getLogger("authserver")

#: Events that go to the log at WARNING as well.
NOTABLE = frozenset(
    {"refresh_reuse_detected", "code_replayed", "login_throttled", "client_auth_throttled"}
)
#: Events kept in the database; the rest (e.g. ``device_authorization``) only in the log.
AUDITED = frozenset(
    {
        "login",
        "login_failed",
        "login_throttled",
        "logout",
        "signed_out_everywhere",
        "client_auth_failed",
        "client_auth_throttled",
        "token_issued",
        "refresh_reuse_detected",
        "refresh_revoked",
        "token_revoked",
        "code_replayed",
        "federation_refused",
        "authorization_granted",
        "authorization_denied",
        "device_approved",
        "device_denied",
        "user_created",
        "user_updated",
        "user_deleted",
        "users_imported",
        "password_changed",
        "service_account_created",
        "service_account_rotated",
        "service_account_revoked",
        "service_account_key_added",
        "service_account_key_removed",
        "keys_rotated",
        "audit_pruned",
        "janitor_pruned",
        "forward_auth_login",
        "forward_auth_logout",
    }
)
#: High-volume events, written in batches (see the module's docstring).
BATCHED = frozenset({"token_issued"})
BATCH_SECONDS = 0.25
BATCH_MAX = 500
#: Events a worker holds while the database is down (~1 KiB each); then 503.
HOLD_MAX = 100_000
RETRY_SECONDS = 1.0
#: Claims worth keeping from an issued or revoked token (never the token itself).
_CLAIMS = ("jti", "scope", "aud", "exp")
_PLAIN = (str, int, float, bool, type(None))


class EventIds:
    """Audit ids from event time: microseconds since the epoch * 1000 + a tag of this
    process, strictly increasing within the process. Ids of different workers and
    nodes then sort by time too (to the microsecond), and never collide unless two
    processes drew the same tag and emitted in the same microsecond; a batch that
    collides is written again under a new tag (see ``SqlAuditLog.record_many``)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._last = 0
        self._pid = 0
        self._tag = 0

    def next(self, at: datetime) -> int:
        with self._lock:
            if self._pid != os.getpid():  # a forked worker draws its own tag
                self._pid = os.getpid()
                self._tag = secrets.randbelow(1000)
            micros = max(int(at.timestamp() * 1_000_000), self._last + 1)
            self._last = micros
            return micros * 1000 + self._tag


@dataclass(frozen=True)
class Actor:
    """Who acts and from where, as a front end knows it.

    ``name`` is what the row's ``actor`` says: a username, a service account's or
    client's id, or ``cli:<OS user>``; ``address`` the client's address (``local`` for
    the CLI). ``person_id`` is the acting person's ``sub`` when a person acts, for the
    rules about oneself (:func:`authserver.admin.users.check_not_yourself`).
    """

    name: str | None = None
    address: str | None = None
    person_id: str | None = None


class RequestScope(Protocol):
    """What the web layer tells the trail about the request an event happens in."""

    def context(self) -> Actor | None:
        """Who acts in the current request and from where; ``None`` outside one."""
        ...

    def note_client_id(self, client_id: str) -> None:
        """The client of the current request is known (the access log names it)."""
        ...


class AuditTrail:
    """The ``events`` callable of ``create_app``.

    Every audited event goes through one queue per worker, in the order the events
    happened, and gets its id from its time (:class:`EventIds`), so that ids follow
    event time across workers and nodes (a ``token_revoked`` row never comes before the
    ``token_issued`` row of the same jti). Events that must be written before the
    response goes out flush the queue themselves; ``token_issued`` waits for the
    writer thread.

    While the database is down, events are held (at most :data:`HOLD_MAX`) and written
    when it is back; the outage is logged once, not per row. When the hold is full an
    action that must be audited is refused with 503 instead of going unrecorded.

    ``observe`` (the metrics' :meth:`~authserver.web.metrics.Metrics.count_event`) sees
    every event first, audited or not, but for one refused so.
    """

    def __init__(
        self,
        audit_log: SqlAuditLog,
        observe: Callable[[str, Mapping[str, Any]], None] | None = None,
        *,
        scope: RequestScope | None = None,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self.audit_log = audit_log
        #: Who acts and from where in the current request, for an event that does not
        #: say so itself (the web layer's; none for the CLI).
        self._scope = scope
        self._clock = clock
        #: Sees every event accepted, audited or not, before its row is built (the
        #: metrics count them); it must not change ``details``.
        self._observe = observe
        self._pending: queue.SimpleQueue[dict[str, Any]] = queue.SimpleQueue()
        #: Rows taken off the queue whose write failed: written first when it works.
        self._held: list[dict[str, Any]] = []
        self._wake = threading.Event()
        #: Held while rows are between the queue and the database.
        self._writing = threading.Lock()
        self._writer_pid = 0
        self._outage_since: float | None = None
        self._ids = EventIds()
        atexit.register(self.flush)

    def __call__(self, event: str, **details: Any) -> None:
        refused = event in AUDITED and len(self._held) >= HOLD_MAX
        if self._observe is not None and not refused:
            self._observe(event, details)
        level = logging.WARNING if event in NOTABLE else logging.DEBUG
        logged = log.isEnabledFor(level)
        if not logged and event not in AUDITED:
            return
        row = self._row(event, details)
        if logged:
            log.log(level, "%s %s", event, row)
        if event not in AUDITED:
            return
        if refused:
            # The database has been down long enough to fill the hold: refuse the
            # action rather than lose its record (the request changed nothing yet
            # for the events emitted before the work, and 503 tells the client).
            raise DependencyUnavailable("database", retry_after=5)
        now = self._clock.utcnow()
        row["event"] = event
        row["at"] = now
        row["id"] = self._ids.next(now)
        self._pending.put(row)
        if self._writer_pid != os.getpid():  # none yet in this (forked) process
            self._writer_pid = os.getpid()
            threading.Thread(target=self._write_batches, name="audit-writer", daemon=True).start()
        if event in BATCHED:
            self._wake.set()
        else:
            self.flush()

    @property
    def held(self) -> int:
        """Events waiting for the database (for /readyz and the metrics)."""
        return len(self._held)

    def flush(self) -> None:
        """Write every event held so far (readers of the log call this first)."""
        with self._writing:
            while True:
                rows = self._held[:BATCH_MAX]
                while len(rows) < BATCH_MAX:
                    try:
                        rows.append(self._pending.get_nowait())
                    except queue.Empty:
                        break
                if not rows:
                    return
                if not self._store(rows):
                    # Keep them, in order, for the next attempt (the writer retries).
                    self._held = rows + self._held[BATCH_MAX:]
                    self._wake.set()
                    return
                del self._held[:BATCH_MAX]

    def _write_batches(self) -> None:
        while True:
            self._wake.wait()
            # Let the batch fill; while the database is down, try again every second.
            time.sleep(BATCH_SECONDS if self._outage_since is None else RETRY_SECONDS)
            self._wake.clear()
            self.flush()
            if self._held:
                self._wake.set()

    def _store(self, rows: list[dict[str, Any]]) -> bool:
        try:
            self.audit_log.record_many(rows)
        except SQLAlchemyError as exc:
            if self._outage_since is None:
                self._outage_since = self._clock.monotonic()
                log.error(
                    "audit events cannot be written (%s); holding them until the "
                    "database answers (at most %d)",
                    type(exc).__name__,
                    HOLD_MAX,
                )
            return False
        if self._outage_since is not None:
            log.warning(
                "audit events written again after %.0f s; the held events are stored",
                self._clock.monotonic() - self._outage_since,
            )
            self._outage_since = None
        return True

    def _row(self, event: str, details: dict[str, Any]) -> dict[str, Any]:
        client = details.pop("client", None)
        claims = details.pop("claims", None) or {}
        client_id = (
            getattr(client, "client_id", None)
            or details.pop("client_id", None)
            or claims.get("client_id")
        )
        target = details.pop("target", None) or details.pop("user_id", None) or claims.get("sub")
        actor = details.pop("actor", None)
        address = details.pop("address", None)
        context = self._scope.context() if self._scope is not None else None
        if context is not None:
            actor = actor or context.name
            address = address or context.address
            if client_id and self._scope is not None:
                self._scope.note_client_id(client_id)
        if actor is None:
            # Without a named actor the subject acts (a sign-in, a token for them), or
            # the client does (client credentials, revocation).
            actor = details.get("username") or target or client_id
        extra = {k: claims[k] for k in _CLAIMS if k in claims}
        extra.update({k: v for k, v in details.items() if isinstance(v, _PLAIN)})
        return {
            "actor": actor,
            "client_id": client_id,
            "target": target,
            "address": address,
            "details": extra,
        }


#: A person's id (``users.id``, an access token's ``sub``) as the audit rows hold it.
PERSON_ID = re.compile(r"[0-9a-f]{32}")


def audit_names(
    rows: Iterable[AuditRecord],
    usernames: Callable[[Iterable[str]], Mapping[str, str]],
    service_account_names: Callable[[Iterable[str]], Mapping[str, str]],
) -> dict[str, str]:
    """What to show for the ids in ``rows``' actor, target and client: ``{id: name}``
    for a person's id (their username) and a service account's client id (its name),
    found with one lookup of each kind for the whole page. An id whose row is gone
    (a deleted user) is not in the answer: it is shown as it is."""
    values = {
        value
        for row in rows
        for value in (row.actor, row.target, row.client_id)
        if value is not None
    }
    people = [v for v in values if PERSON_ID.fullmatch(v)]
    accounts = [v for v in values if v.startswith(SERVICE_ACCOUNT_ID_PREFIX)]
    names: dict[str, str] = {}
    if people:
        names.update(usernames(people))
    if accounts:
        names.update(service_account_names(accounts))
    return names


#: What records an event: :class:`AuditTrail`, or a test's stand-in.
EventSink = Callable[..., None]


def record(events: EventSink, by: Actor, event: str, **details: Any) -> None:
    """Record ``event`` as done by ``by`` (an admin change, from any front end)."""
    events(event, actor=by.name, address=by.address, **details)


def prune_audit_log(trail: AuditTrail, before: datetime, by: Actor) -> int:
    """Delete the events from before ``before``; the pruning is an event itself, written
    at once. Returns how many were deleted."""
    deleted = trail.audit_log.prune(before)
    record(trail, by, "audit_pruned", before=before.isoformat(), deleted=deleted)
    trail.flush()
    return deleted


def run_janitor(janitor: Janitor, trail: AuditTrail, by: Actor, batch_size: int) -> PruneCounts:
    """Delete the rows that can never be used again (``storage/janitor.py``), in batches
    of ``batch_size``; ``janitor_pruned``, with the counts per table, is written at once.
    """
    counts = janitor.run(batch_size)
    audit_before = janitor.audit_cutoff()
    record(
        trail,
        by,
        "janitor_pruned",
        **counts.as_dict(),
        family_keep_seconds=janitor.family_keep,
        audit_before=None if audit_before is None else audit_before.isoformat(),
    )
    trail.flush()
    return counts
