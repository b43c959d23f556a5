"""Repository of service accounts (rows of ``service_accounts``); the rules are in
``authserver.identity.service_accounts``."""

from __future__ import annotations

import builtins
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Engine, Row, Table, delete, func, insert, or_, select, update
from sqlalchemy.exc import IntegrityError

from .database import lookup_many
from .models import ServiceAccount, ServiceAccountKey, column_values, utc

_TABLE = cast(Table, ServiceAccount.__table__)
_KEYS = cast(Table, ServiceAccountKey.__table__)

#: JWK members that only a private key has (RFC 7518 §6.2.2, §6.3.2, §6.4; RFC 8037 §2).
PRIVATE_JWK_MEMBERS = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth", "k"})


class DuplicateServiceAccount(Exception):
    """A name another service account already has."""


class TooManyKeys(Exception):
    """The account already holds as many keys as allowed."""


@dataclass(frozen=True)
class ServiceAccountKeyRecord:
    """The public half of one key file."""

    client_id: str
    kid: str
    algorithm: str
    public_jwk: dict[str, Any]
    created_at: datetime
    created_by: str | None


@dataclass(frozen=True)
class ServiceAccountInfo:
    """What a listing shows: never the token, nor its hash."""

    client_id: str
    name: str
    role: str
    scopes: tuple[str, ...]
    created_at: datetime
    created_by: str | None
    expires_at: datetime | None
    rotated_at: datetime | None
    last_used_at: datetime | None

    def expired(self, now: datetime) -> bool:
        return self.expires_at is not None and self.expires_at <= now

    def as_dict(self) -> dict[str, object]:
        def iso(value: datetime | None) -> str | None:
            return value.isoformat() if value is not None else None

        return {
            "client_id": self.client_id,
            "name": self.name,
            "role": self.role,
            "scopes": list(self.scopes),
            "created_at": iso(self.created_at),
            "created_by": self.created_by,
            "expires_at": iso(self.expires_at),
            "rotated_at": iso(self.rotated_at),
            "last_used_at": iso(self.last_used_at),
        }


@dataclass(frozen=True)
class ServiceAccountRecord:
    """An account as stored: what a listing shows, and its token's hash (``None``: it
    holds key files only)."""

    info: ServiceAccountInfo
    token_hash: str | None


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

    def names(self, client_ids: Iterable[str]) -> dict[str, str]:
        """``{client_id: name}`` of those of ``client_ids`` that exist, in one query."""
        return lookup_many(self._engine, _TABLE.c.client_id, _TABLE.c.name, client_ids)

    def list(self) -> list[ServiceAccountRecord]:
        """Every service account, ordered by name."""
        with self._engine.connect() as conn:
            rows = conn.execute(select(_TABLE).order_by(_TABLE.c.name))
            return [_record(row) for row in rows]

    def insert(
        self, record: ServiceAccountRecord, key: ServiceAccountKeyRecord | None = None
    ) -> None:
        """``DuplicateServiceAccount`` if the name is taken. With ``key``, the account
        and its first key are one transaction: no account is left without it."""
        values = column_values(record.info)
        values["scopes"] = list(record.info.scopes)
        values["token_hash"] = record.token_hash
        try:
            with self._engine.begin() as conn:
                conn.execute(insert(_TABLE).values(**values))
                if key is not None:
                    conn.execute(insert(_KEYS).values(**_key_values(key)))
        except IntegrityError as exc:
            raise DuplicateServiceAccount(record.info.name) from exc

    # -- keys ---------------------------------------------------------------------------

    def keys(self, client_id: str) -> builtins.list[ServiceAccountKeyRecord]:
        """The account's public keys, oldest first."""
        if "\x00" in client_id:
            return []
        stmt = select(_KEYS).where(_KEYS.c.client_id == client_id).order_by(_KEYS.c.created_at)
        with self._engine.connect() as conn:
            return [_key_record(row) for row in conn.execute(stmt)]

    def add_key(self, key: ServiceAccountKeyRecord, limit: int) -> bool:
        """Add a key unless the account holds ``limit`` already (``TooManyKeys``);
        ``False`` if the account is gone."""
        with self._engine.begin() as conn:
            if (
                conn.execute(
                    select(_TABLE.c.client_id).where(_TABLE.c.client_id == key.client_id)
                ).first()
                is None
            ):
                return False
            count = conn.execute(
                select(func.count()).select_from(_KEYS).where(_KEYS.c.client_id == key.client_id)
            ).scalar_one()
            if count >= limit:
                raise TooManyKeys(key.client_id)
            conn.execute(insert(_KEYS).values(**_key_values(key)))
        return True

    def remove_key(self, client_id: str, kid: str) -> bool:
        """``False`` if there was no such key."""
        if "\x00" in client_id or "\x00" in kid:
            return False
        stmt = delete(_KEYS).where(_KEYS.c.client_id == client_id, _KEYS.c.kid == kid)
        with self._engine.begin() as conn:
            return conn.execute(stmt).rowcount > 0

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
    info = ServiceAccountInfo(
        client_id=row.client_id,
        name=row.name,
        role=row.role,
        scopes=tuple(row.scopes or ()),
        created_at=utc(row.created_at),
        created_by=row.created_by,
        expires_at=utc(row.expires_at),
        rotated_at=utc(row.rotated_at),
        last_used_at=utc(row.last_used_at),
    )
    return ServiceAccountRecord(info, row.token_hash)


def _key_values(key: ServiceAccountKeyRecord) -> dict[str, Any]:
    # The one door into the table: a private member never gets through it.
    if PRIVATE_JWK_MEMBERS & key.public_jwk.keys():
        raise ValueError("a service-account key must be stored as its public part only")
    return column_values(key)


def _key_record(row: Row[Any]) -> ServiceAccountKeyRecord:
    return ServiceAccountKeyRecord(
        client_id=row.client_id,
        kid=row.kid,
        algorithm=row.algorithm,
        public_jwk=dict(row.public_jwk),
        created_at=utc(row.created_at),
        created_by=row.created_by,
    )
