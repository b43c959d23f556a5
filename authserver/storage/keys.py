"""Repository of signing keys (rows of ``signing_keys``)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Engine, Table, delete, insert, select
from sqlalchemy.exc import IntegrityError

from .models import IdTokenSigningKey, SigningKey, column_values, utc


@dataclass(frozen=True)
class KeyRecord:
    kid: str
    generation: int
    algorithm: str
    public_jwk: dict[str, Any]
    private_key_encrypted: bytes
    created_at: datetime
    activates_at: datetime


class SqlKeyRepository:
    """``model`` is :class:`SigningKey` (access tokens) or :class:`IdTokenSigningKey`."""

    def __init__(
        self, engine: Engine, model: type[SigningKey] | type[IdTokenSigningKey] = SigningKey
    ) -> None:
        self._engine = engine
        self._table = cast(Table, model.__table__)

    def list(self) -> list[KeyRecord]:
        """Every key, oldest generation first."""
        with self._engine.connect() as conn:
            rows = conn.execute(select(self._table).order_by(self._table.c.generation))
            return [
                KeyRecord(
                    kid=row.kid,
                    generation=row.generation,
                    algorithm=row.algorithm,
                    public_jwk=dict(row.public_jwk),
                    private_key_encrypted=bytes(row.private_key_encrypted),
                    created_at=utc(row.created_at),
                    activates_at=utc(row.activates_at),
                )
                for row in rows
            ]

    def add(self, record: KeyRecord) -> bool:
        """Insert; ``False`` if another process took that generation first."""
        try:
            with self._engine.begin() as conn:
                conn.execute(insert(self._table).values(**column_values(record)))
        except IntegrityError:
            return False
        return True

    def withdraw_older_than(self, generation: int) -> None:
        """Delete every key before ``generation`` (a compromised key's rotation)."""
        table = self._table
        with self._engine.begin() as conn:
            conn.execute(delete(table).where(table.c.generation < generation))
