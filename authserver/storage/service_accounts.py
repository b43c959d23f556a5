"""Repository of service accounts (rows of ``service_accounts``); the rules are in
``authserver.identity.service_accounts``."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, cast

from sqlalchemy import Engine, Row, Table, delete, insert, or_, select, update
from sqlalchemy.exc import IntegrityError

from .models import ServiceAccount

_TABLE = cast(Table, ServiceAccount.__table__)


class DuplicateServiceAccount(Exception):
    """A name another service account already has."""


@dataclass(frozen=True)
class ServiceAccountRecord:
    client_id: str
    name: str
    role: str
    scopes: tuple[str, ...]
    token_hash: str
    created_at: datetime
    created_by: str | None
    expires_at: datetime | None
    rotated_at: datetime | None
    last_used_at: datetime | None


class SqlServiceAccountRepository:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def get(self, client_id: str) -> ServiceAccountRecord | None:
        if "\x00" in client_id:  # PostgreSQL text cannot hold NUL: no such account
            return None
        return self._one(_TABLE.c.client_id == client_id)

    def by_name(self, name: str) -> ServiceAccountRecord | None:
        if "\x00" in name:
            return None
        return self._one(_TABLE.c.name == name)

    def list(self) -> list[ServiceAccountRecord]:
        """Every service account, ordered by name."""
        with self._engine.connect() as conn:
            rows = conn.execute(select(_TABLE).order_by(_TABLE.c.name))
            return [_record(row) for row in rows]

    def insert(self, record: ServiceAccountRecord) -> None:
        """``DuplicateServiceAccount`` if the name is taken."""
        values = {f: getattr(record, f) for f in ServiceAccountRecord.__dataclass_fields__}
        values["scopes"] = list(record.scopes)
        try:
            with self._engine.begin() as conn:
                conn.execute(insert(_TABLE).values(**values))
        except IntegrityError as exc:
            raise DuplicateServiceAccount(record.name) from exc

    def replace_token(self, client_id: str, old_hash: str, token_hash: str, at: datetime) -> bool:
        """Rotate: the old hash is gone in the same statement that stores the new one;
        ``False`` if it was no longer ``old_hash`` (a concurrent rotation won)."""
        c = _TABLE.c
        stmt = (
            update(_TABLE)
            .where(c.client_id == client_id, c.token_hash == old_hash)
            .values(token_hash=token_hash, rotated_at=at)
        )
        with self._engine.begin() as conn:
            return conn.execute(stmt).rowcount == 1

    def touch(self, client_id: str, at: datetime, stale_before: datetime) -> None:
        """Set ``last_used_at`` unless it is already newer than ``stale_before``."""
        c = _TABLE.c
        stmt = (
            update(_TABLE)
            .where(
                c.client_id == client_id,
                or_(c.last_used_at.is_(None), c.last_used_at < stale_before),
            )
            .values(last_used_at=at)
        )
        with self._engine.begin() as conn:
            conn.execute(stmt)

    def delete(self, client_id: str) -> bool:
        with self._engine.begin() as conn:
            return conn.execute(delete(_TABLE).where(_TABLE.c.client_id == client_id)).rowcount > 0

    def _one(self, condition: Any) -> ServiceAccountRecord | None:
        with self._engine.connect() as conn:
            row = conn.execute(select(_TABLE).where(condition)).first()
        return _record(row) if row is not None else None


def _record(row: Row[Any]) -> ServiceAccountRecord:
    return ServiceAccountRecord(
        client_id=row.client_id,
        name=row.name,
        role=row.role,
        scopes=tuple(row.scopes or ()),
        token_hash=row.token_hash,
        created_at=_utc(row.created_at),
        created_by=row.created_by,
        expires_at=_utc(row.expires_at),
        rotated_at=_utc(row.rotated_at),
        last_used_at=_utc(row.last_used_at),
    )


def _utc(value: datetime | None) -> Any:
    # SQLite hands back naive datetimes; we only ever store UTC.
    if value is None:
        return None
    return value if value.tzinfo else value.replace(tzinfo=UTC)
