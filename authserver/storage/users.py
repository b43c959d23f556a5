"""Repository of people (rows of ``users``); see ``authserver.identity.users`` for the rules."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, cast

from sqlalchemy import Engine, Row, Table, delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from .database import lookup_many
from .models import RefreshFamily, RefreshToken, User

_USERS = cast(Table, User.__table__)
_FAMILIES = cast(Table, RefreshFamily.__table__)
_TOKENS = cast(Table, RefreshToken.__table__)

#: Columns ``update`` may change (``id``, ``source`` and the upstream pair never change).
UPDATABLE = frozenset(
    {
        "username",
        "email",
        "name",
        "password_hash",
        "role",
        "groups",
        "disabled",
        "last_login_at",
        "email_verified",
        "password_must_change",
    }
)


class DuplicateUser(Exception):
    """A username, or an upstream (issuer, subject) pair, that another user already has."""


class DuplicateEmail(DuplicateUser):
    """An email address that another local user already has (``uq_users_local_email``)."""


@dataclass(frozen=True)
class UserRecord:
    id: str
    username: str
    email: str | None
    name: str | None
    password_hash: str | None
    role: str
    groups: tuple[str, ...]
    source: str
    upstream_issuer: str | None
    upstream_subject: str | None
    disabled: bool
    created_at: datetime
    last_login_at: datetime | None
    credentials_generation: int = 0
    email_verified: bool | None = None
    password_must_change: bool = False


class SqlUserRepository:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def get(self, user_id: str) -> UserRecord | None:
        return self._one(_USERS.c.id == user_id)

    def by_username(self, username: str) -> UserRecord | None:
        """Exact match: callers normalise (lower-case) first."""
        return self._one(_USERS.c.username == username)

    def by_email(self, address: str) -> list[UserRecord]:
        """Every user whose email address is ``address``, compared without case."""
        with self._engine.connect() as conn:
            rows = conn.execute(
                select(_USERS)
                .where(func.lower(_USERS.c.email) == address.lower())
                .order_by(_USERS.c.username)
            )
            return [_record(row) for row in rows]

    def by_upstream(self, issuer: str, subject: str) -> UserRecord | None:
        return self._one(
            (_USERS.c.upstream_issuer == issuer) & (_USERS.c.upstream_subject == subject)
        )

    def list(self) -> list[UserRecord]:
        """Every user, ordered by username."""
        with self._engine.connect() as conn:
            rows = conn.execute(select(_USERS).order_by(_USERS.c.username))
            return [_record(row) for row in rows]

    def count(self) -> int:
        with self._engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(_USERS)).scalar_one())

    def usernames(self, user_ids: Iterable[str]) -> dict[str, str]:
        """``{id: username}`` of those of ``user_ids`` that exist, in one query."""
        return lookup_many(self._engine, _USERS.c.id, _USERS.c.username, user_ids)

    def insert(self, record: UserRecord) -> None:
        """Add one user; ``DuplicateUser`` if its username or upstream pair is taken."""
        self.insert_many([record])

    def insert_many(self, records: Iterable[UserRecord]) -> None:
        """Add users in one transaction: all of them, or (``DuplicateUser``) none."""
        values = [_values(record) for record in records]
        if not values:
            return
        try:
            with self._engine.begin() as conn:
                conn.execute(insert(_USERS), values)
        except IntegrityError as exc:
            if _is_email(exc):
                raise DuplicateEmail("one of the email addresses is taken") from exc
            raise DuplicateUser(_duplicate_message(values)) from exc

    def update(self, user_id: str, **changes: Any) -> bool:
        """Set columns of one user (names in ``UPDATABLE``); ``False`` if there is none.

        ``DuplicateUser`` if a new username is taken.
        """
        unknown = set(changes) - UPDATABLE
        if unknown:
            raise ValueError(f"cannot update users.{', users.'.join(sorted(unknown))}")
        if not changes:
            return self.get(user_id) is not None
        if "groups" in changes:
            changes["groups"] = list(changes["groups"])
        try:
            with self._engine.begin() as conn:
                result = conn.execute(
                    update(_USERS).where(_USERS.c.id == user_id).values(**changes)
                )
        except IntegrityError as exc:
            if _is_email(exc):
                raise DuplicateEmail(f"email {changes.get('email')!r} is taken") from exc
            raise DuplicateUser(f"username {changes.get('username')!r} is taken") from exc
        return result.rowcount > 0

    def new_credentials(self, user_id: str, **changes: Any) -> bool:
        """Set columns (as ``update``) and raise the credentials generation, in one
        statement: every session signed in before it ends (issue 16.2)."""
        unknown = set(changes) - UPDATABLE
        if unknown:
            raise ValueError(f"cannot update users.{', users.'.join(sorted(unknown))}")
        with self._engine.begin() as conn:
            result = conn.execute(
                update(_USERS)
                .where(_USERS.c.id == user_id)
                .values(credentials_generation=_USERS.c.credentials_generation + 1, **changes)
            )
        return result.rowcount > 0

    def delete(self, user_id: str) -> bool:
        """Delete a user with their refresh-token families; ``False`` if there was none.

        The families (and their tokens) are deleted here explicitly, in the same
        transaction, not left to ``ON DELETE CASCADE`` alone.
        """
        families = select(_FAMILIES.c.id).where(_FAMILIES.c.user_id == user_id)
        with self._engine.begin() as conn:
            conn.execute(delete(_TOKENS).where(_TOKENS.c.family_id.in_(families)))
            conn.execute(delete(_FAMILIES).where(_FAMILIES.c.user_id == user_id))
            result = conn.execute(delete(_USERS).where(_USERS.c.id == user_id))
        return result.rowcount > 0

    def _one(self, condition: Any) -> UserRecord | None:
        with self._engine.connect() as conn:
            row = conn.execute(select(_USERS).where(condition)).first()
        return _record(row) if row is not None else None


def _values(record: UserRecord) -> dict[str, Any]:
    return {
        "id": record.id,
        "username": record.username,
        "email": record.email,
        "name": record.name,
        "password_hash": record.password_hash,
        "role": record.role,
        "groups": list(record.groups),
        "source": record.source,
        "upstream_issuer": record.upstream_issuer,
        "upstream_subject": record.upstream_subject,
        "disabled": record.disabled,
        "created_at": record.created_at,
        "last_login_at": record.last_login_at,
        "credentials_generation": record.credentials_generation,
        "email_verified": record.email_verified,
        "password_must_change": record.password_must_change,
    }


def _is_email(exc: IntegrityError) -> bool:
    """Whether the unique index on local users' addresses refused the write: psycopg
    names the index; SQLite's message names the column (and holds no values)."""
    constraint = getattr(getattr(exc.orig, "diag", None), "constraint_name", None)
    if constraint is not None:
        return bool(constraint == "uq_users_local_email")
    return str(exc.orig).startswith("UNIQUE constraint failed: users.email")


def _duplicate_message(values: list[dict[str, Any]]) -> str:
    if len(values) == 1:
        return f"user {values[0]['username']!r} already exists"
    return "one of the users already exists"


def _record(row: Row[Any]) -> UserRecord:
    return UserRecord(
        id=row.id,
        username=row.username,
        email=row.email,
        name=row.name,
        password_hash=row.password_hash,
        role=row.role,
        groups=tuple(row.groups or ()),
        source=row.source,
        upstream_issuer=row.upstream_issuer,
        upstream_subject=row.upstream_subject,
        disabled=bool(row.disabled),
        created_at=_utc(row.created_at),
        last_login_at=_utc(row.last_login_at) if row.last_login_at is not None else None,
        credentials_generation=int(row.credentials_generation or 0),
        email_verified=None if row.email_verified is None else bool(row.email_verified),
        password_must_change=bool(row.password_must_change),
    )


def _utc(value: datetime) -> datetime:
    # SQLite hands back naive datetimes; we only ever store UTC.
    return value if value.tzinfo else value.replace(tzinfo=UTC)
