"""The audit log: durable, append-only rows of ``audit_events``, read newest first."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Engine, Row, Table, delete, func, insert, select
from sqlalchemy.exc import IntegrityError

from ..clock import SYSTEM_CLOCK, Clock
from .models import AuditEvent, utc

_TABLE = cast(Table, AuditEvent.__table__)

#: Column sizes, so that an over-long value is cut instead of failing the insert.
_LIMITS = {"event": 64, "actor": 255, "client_id": 255, "target": 255, "address": 64}


@dataclass(frozen=True)
class AuditRecord:
    id: int
    at: datetime
    event: str
    actor: str | None
    client_id: str | None
    target: str | None
    address: str | None
    details: dict[str, Any]

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "at": self.at.isoformat(),
            "event": self.event,
            "actor": self.actor,
            "client_id": self.client_id,
            "target": self.target,
            "address": self.address,
            "details": self.details,
        }


class SqlAuditLog:
    def __init__(self, engine: Engine, clock: Clock = SYSTEM_CLOCK) -> None:
        self._engine = engine
        self._clock = clock

    def prune(self, before: datetime, limit: int | None = None) -> int:
        """Delete the events that happened before ``before`` (at most ``limit`` of them,
        oldest first, in one short transaction); returns how many."""
        old = _TABLE.c.at < before
        if limit is not None:
            batch = select(_TABLE.c.id).where(old).order_by(_TABLE.c.at).limit(limit)
            old = _TABLE.c.id.in_(batch.scalar_subquery())
        with self._engine.begin() as conn:
            result = conn.execute(delete(_TABLE).where(old))
        return int(result.rowcount or 0)

    def count_before(self, before: datetime) -> int:
        """How many events :meth:`prune` would delete."""
        stmt = select(func.count()).select_from(_TABLE).where(_TABLE.c.at < before)
        with self._engine.connect() as conn:
            return int(conn.execute(stmt).scalar() or 0)

    def record_many(self, events: list[dict[str, Any]]) -> None:
        """Store events in one transaction: all of them or, on error, none. Each is a
        dict of ``event``, ``actor``, ``client_id``, ``target``, ``address``, ``details``
        and, optionally, ``at`` and ``id``; over-long strings are cut to their column."""
        rows = []
        now = self._clock.utcnow()
        for event in events:
            row: dict[str, Any] = {
                key: _clean(event.get(key))[:limit] if isinstance(event.get(key), str) else None
                for key, limit in _LIMITS.items()
            }
            row["at"] = event.get("at") or now
            row["details"] = _clean(event.get("details") or {})
            if event.get("id") is not None:
                row["id"] = event["id"]
            rows.append(row)
        if not rows:
            return
        try:
            with self._engine.begin() as conn:
                conn.execute(insert(_TABLE), rows)
        except IntegrityError:
            if all("id" not in row for row in rows):
                raise
            # Two processes drew the same id tag in the same microsecond (see
            # admin/audit.EventIds): the same times under another tag, once.
            tag = secrets.randbelow(1000)
            for row in rows:
                if "id" in row:
                    row["id"] = row["id"] - row["id"] % 1000 + tag
            with self._engine.begin() as conn:
                conn.execute(insert(_TABLE), rows)

    def page(
        self, *, before: int | None = None, limit: int = 50, event: str | None = None
    ) -> list[AuditRecord]:
        """Up to ``limit`` events older than id ``before`` (all, if ``None``), newest first."""
        stmt = select(_TABLE).order_by(_TABLE.c.id.desc()).limit(limit)
        if before is not None:
            stmt = stmt.where(_TABLE.c.id < before)
        if event:
            stmt = stmt.where(_TABLE.c.event == _clean(event))
        with self._engine.connect() as conn:
            return [_record(row) for row in conn.execute(stmt)]


def _clean(value: Any) -> Any:
    """``value`` without NUL characters, which PostgreSQL text and JSON cannot hold (an
    attacker's username may carry one; the event must still be stored)."""
    if isinstance(value, str):
        return value.replace("\x00", "\ufffd")
    if isinstance(value, dict):
        return {_clean(k): _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    return value


def _record(row: Row[Any]) -> AuditRecord:
    at = utc(row.at)
    return AuditRecord(
        id=row.id,
        at=at,
        event=row.event,
        actor=row.actor,
        client_id=row.client_id,
        target=row.target,
        address=row.address,
        details=dict(row.details or {}),
    )
