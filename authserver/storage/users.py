"""Repository of people (rows of ``users``); see ``authserver.identity.users`` for the rules."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Connection, Engine, Row, Table, delete, exists, func, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.sql.elements import ColumnElement

from .database import lookup_many
from .models import RefreshFamily, RefreshToken, User, column_values, utc

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


class LastOfRole(Exception):
    """The change would leave no enabled user with the role it was asked to keep one of
    (the last enabled admin: ``authserver.admin.users``)."""


class DuplicateEmail(DuplicateUser):
    """An email address that another local user already has (``uq_users_local_email``)."""


@dataclass(frozen=True)
class Person:
    """A person, as everything but storage sees them: no password hash."""

    id: str
    username: str
    email: str | None
    name: str | None
    role: str
    groups: tuple[str, ...]
    #: ``local``, ``upstream`` or ``proxy``.
    source: str
    disabled: bool
    created_at: datetime
    last_login_at: datetime | None
    #: Raised by every password set or reset; older sessions are over (issue 16.2).
    credentials_generation: int = 0
    #: OIDC Core §5.1 ``email_verified``; ``None`` when nobody said.
    email_verified: bool | None = None
    #: The password was made for them (the first admin's one-time password): their
    #: next sign-in chooses a new one first (issue 16.11).
    password_must_change: bool = False

    @property
    def roles(self) -> tuple[str, ...]:
        """The ``roles`` claim: one role per person today."""
        return (self.role,)


@dataclass(frozen=True)
class UserRecord:
    """A person as stored: with their password's hash (local users) and the upstream
    (issuer, subject) pair they sign in as (federated users)."""

    person: Person
    password_hash: str | None = None
    upstream_issuer: str | None = None
    upstream_subject: str | None = None


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
        return self._update(user_id, None, changes)

    def update_keeping_one(self, user_id: str, keep: str | None, **changes: Any) -> bool:
        """:meth:`update`, and with ``keep`` (a role), only if another enabled user keeps that
        role, decided in the same transaction as the write (:meth:`_another_keeps`);
        else ``LastOfRole`` and nothing changes."""
        return self._update(user_id, keep, changes)

    def _update(self, user_id: str, keep_one: str | None, changes: dict[str, Any]) -> bool:
        unknown = set(changes) - UPDATABLE
        if unknown:
            raise ValueError(f"cannot update users.{', users.'.join(sorted(unknown))}")
        if not changes:
            return self.get(user_id) is not None
        if "groups" in changes:
            changes["groups"] = list(changes["groups"])
        where = _USERS.c.id == user_id
        try:
            with self._engine.begin() as conn:
                if keep_one is not None:
                    where = where & self._another_keeps(conn, user_id, keep_one)
                result = conn.execute(update(_USERS).where(where).values(**changes))
        except IntegrityError as exc:
            if _is_email(exc):
                raise DuplicateEmail(f"email {changes.get('email')!r} is taken") from exc
            raise DuplicateUser(f"username {changes.get('username')!r} is taken") from exc
        return self._changed(result.rowcount, user_id, keep_one)

    def _another_keeps(self, conn: Connection, user_id: str, role: str) -> ColumnElement[bool]:
        """The condition for a write in ``conn``'s transaction that must not take the
        last enabled ``role`` away: the user is not an enabled holder of ``role`` (as the
        row is now, not as the caller read it), or another enabled user holds it.

        Two admins demoting each other at once must not both succeed. PostgreSQL: the
        enabled users of the role are locked first, in id order (``FOR NO KEY UPDATE``,
        which a refresh family's foreign key does not wait for), so the second
        transaction waits for the first and its write then sees the change. SQLite has
        one writer at a time, and the condition is part of the write itself: each write
        reads the rows as the one before left them.
        """
        users = _USERS.c
        holds = (users.role == role) & users.disabled.is_(False)
        lock = select(users.id).where(holds).order_by(users.id).with_for_update(key_share=True)
        conn.execute(lock).all()
        other = _USERS.alias("other")
        another = exists().where(
            other.c.role == role, other.c.disabled.is_(False), other.c.id != user_id
        )
        return ~holds | another

    def _changed(self, rowcount: int, user_id: str, keep_one: str | None) -> bool:
        if rowcount > 0:
            return True
        if keep_one is not None and self.get(user_id) is not None:
            raise LastOfRole(f"no other enabled user has the role {keep_one!r}")
        return False

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

    def delete(self, user_id: str, *, keep_one: str | None = None) -> bool:
        """Delete a user with their refresh-token families; ``False`` if there was none.

        The user's row goes first, so that a refusal (``keep_one``: as for
        :meth:`update_keeping_one`) deletes nothing; the foreign keys' ``ON DELETE
        CASCADE`` then takes their families and tokens, and the explicit deletes after it
        make sure of them on a database that does not cascade.
        """
        families = select(_FAMILIES.c.id).where(_FAMILIES.c.user_id == user_id)
        where = _USERS.c.id == user_id
        with self._engine.begin() as conn:
            if keep_one is not None:
                where = where & self._another_keeps(conn, user_id, keep_one)
            result = conn.execute(delete(_USERS).where(where))
            if result.rowcount > 0:
                conn.execute(delete(_TOKENS).where(_TOKENS.c.family_id.in_(families)))
                conn.execute(delete(_FAMILIES).where(_FAMILIES.c.user_id == user_id))
        return self._changed(result.rowcount, user_id, keep_one)

    def _one(self, condition: Any) -> UserRecord | None:
        with self._engine.connect() as conn:
            row = conn.execute(select(_USERS).where(condition)).first()
        return _record(row) if row is not None else None


def _values(record: UserRecord) -> dict[str, Any]:
    # The columns are the fields of the person, and the record's own.
    person = record.person
    values = column_values(person)
    values["groups"] = list(person.groups)
    values["password_hash"] = record.password_hash
    values["upstream_issuer"] = record.upstream_issuer
    values["upstream_subject"] = record.upstream_subject
    return values


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
    person = Person(
        id=row.id,
        username=row.username,
        email=row.email,
        name=row.name,
        role=row.role,
        groups=tuple(row.groups or ()),
        source=row.source,
        disabled=bool(row.disabled),
        created_at=utc(row.created_at),
        last_login_at=utc(row.last_login_at),
        credentials_generation=int(row.credentials_generation or 0),
        email_verified=None if row.email_verified is None else bool(row.email_verified),
        password_must_change=bool(row.password_must_change),
    )
    return UserRecord(person, row.password_hash, row.upstream_issuer, row.upstream_subject)
