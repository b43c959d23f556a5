"""Refresh-token families and their members (hashes only), in SQL."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import cast

from sqlalchemy import (
    ColumnElement,
    Connection,
    Engine,
    Table,
    and_,
    delete,
    exists,
    func,
    insert,
    or_,
    select,
    update,
)

from ..clock import SYSTEM_CLOCK, Clock
from .models import RefreshFamily, RefreshToken, utc


@dataclass(frozen=True)
class StoredFamily:
    """A live family, as its person sees it: which client, since when, last used."""

    family_id: str
    client_id: str
    scope: str
    created_at: float
    #: When its newest token was issued (the last refresh, or the sign-in).
    last_used_at: float
    expires_at: float


@dataclass(frozen=True)
class StoredRefreshToken:
    token_hash: str
    family_id: str
    user_id: str
    client_id: str
    scope: str
    audience: str
    auth_time: int
    family_expires_at: float
    family_revoked: bool
    idle_expires_at: float
    rotated_at: float | None


class SqlRefreshStore:
    """Implements ``authserver.oauth.refresh.RefreshStore``."""

    def __init__(self, engine: Engine, clock: Clock = SYSTEM_CLOCK) -> None:
        self._engine = engine
        #: ``created_at`` and ``revoked_at`` are on this clock, as the expiries are.
        self._clock = clock
        self._families = cast(Table, RefreshFamily.__table__)
        self._tokens = cast(Table, RefreshToken.__table__)

    def create_family(
        self,
        *,
        user_id: str,
        client_id: str,
        scope: str,
        audience: str,
        auth_time: int,
        expires_at: float,
    ) -> str:
        family_id = secrets.token_hex(16)
        with self._engine.begin() as conn:
            conn.execute(
                insert(self._families).values(
                    id=family_id,
                    user_id=user_id,
                    client_id=client_id,
                    scope=scope,
                    audience=audience,
                    auth_time=auth_time,
                    created_at=self._clock.utcnow(),
                    expires_at=_dt(expires_at),
                )
            )
        return family_id

    def add_token(self, family_id: str, token_hash: str, idle_expires_at: float) -> None:
        with self._engine.begin() as conn:
            self._insert_token(conn, family_id, token_hash, idle_expires_at)

    def _insert_token(
        self, conn: Connection, family_id: str, token_hash: str, idle_expires_at: float
    ) -> None:
        conn.execute(
            insert(self._tokens).values(
                token_hash=token_hash,
                family_id=family_id,
                created_at=self._clock.utcnow(),
                idle_expires_at=_dt(idle_expires_at),
            )
        )

    def lookup(self, token_hash: str) -> StoredRefreshToken | None:
        t, f = self._tokens.c, self._families.c
        stmt = (
            select(
                t.token_hash,
                t.family_id,
                t.idle_expires_at,
                t.rotated_at,
                f.user_id,
                f.client_id,
                f.scope,
                f.audience,
                f.auth_time,
                f.expires_at,
                f.revoked_at,
            )
            .join(self._families, f.id == t.family_id)
            .where(t.token_hash == token_hash)
        )
        with self._engine.connect() as conn:
            row = conn.execute(stmt).first()
        if row is None:
            return None
        return StoredRefreshToken(
            token_hash=row.token_hash,
            family_id=row.family_id,
            user_id=row.user_id,
            client_id=row.client_id,
            scope=row.scope,
            audience=row.audience,
            auth_time=row.auth_time,
            family_expires_at=_ts(row.expires_at) or 0.0,
            family_revoked=row.revoked_at is not None,
            idle_expires_at=_ts(row.idle_expires_at) or 0.0,
            rotated_at=_ts(row.rotated_at),
        )

    def rotate(
        self, token_hash: str, at: float, successor_hash: str, idle_expires_at: float
    ) -> bool:
        t = self._tokens.c
        claim = (
            update(self._tokens)
            .where(t.token_hash == token_hash, t.rotated_at.is_(None))
            .values(rotated_at=_dt(at))
            .returning(t.family_id)
        )
        with self._engine.begin() as conn:
            family_id = conn.execute(claim).scalar()
            if family_id is None:
                return False  # rotated by another request: nothing written
            self._insert_token(conn, family_id, successor_hash, idle_expires_at)
        return True

    def revoke_family(self, family_id: str, reason: str) -> bool:
        f = self._families.c
        stmt = (
            update(self._families)
            .where(f.id == family_id, f.revoked_at.is_(None))
            .values(revoked_at=self._clock.utcnow(), revoked_reason=reason)
        )
        with self._engine.begin() as conn:
            return conn.execute(stmt).rowcount == 1

    def revoke_user_families(
        self, user_id: str, reason: str, since: float
    ) -> tuple[int, list[str]]:
        f = self._families.c
        stmt = (
            update(self._families)
            .where(f.user_id == user_id, f.revoked_at.is_(None))
            .values(revoked_at=self._clock.utcnow(), revoked_reason=reason)
        )
        recent = select(f.id).where(f.user_id == user_id, f.revoked_at >= _dt(since))
        with self._engine.begin() as conn:
            revoked = int(conn.execute(stmt).rowcount)
            families = [str(family_id) for family_id in conn.execute(recent).scalars()]
        return revoked, families

    def live_families(self, user_id: str, now: float) -> list[StoredFamily]:
        """The user's families that are neither revoked nor past their absolute expiry
        nor idle past every member's expiry, newest use first, in one query."""
        f, t = self._families.c, self._tokens.c
        cutoff = _dt(now)
        last_used = func.max(t.created_at).label("last_used_at")
        stmt = (
            select(f.id, f.client_id, f.scope, f.created_at, f.expires_at, last_used)
            .join(self._tokens, t.family_id == f.id)
            .where(f.user_id == user_id, f.revoked_at.is_(None), f.expires_at > cutoff)
            .group_by(f.id, f.client_id, f.scope, f.created_at, f.expires_at)
            .having(func.max(t.idle_expires_at) > cutoff)
            .order_by(last_used.desc(), f.id)
        )
        with self._engine.connect() as conn:
            rows = list(conn.execute(stmt))
        return [
            StoredFamily(
                family_id=row.id,
                client_id=row.client_id,
                scope=row.scope,
                created_at=_ts(row.created_at) or 0.0,
                last_used_at=_ts(row.last_used_at) or 0.0,
                expires_at=_ts(row.expires_at) or 0.0,
            )
            for row in rows
        ]

    # -- pruning (``storage/janitor.py``) ---------------------------------------------

    def _dead(self, before: float) -> ColumnElement[bool]:
        """Families that no request could use since before ``before`` (unix time): past
        their absolute expiry, revoked, or with every member past its idle expiry (the
        grant answers "expired" before it looks at rotation, so such a family can
        neither refresh nor trip reuse detection any more)."""
        f, t = self._families.c, self._tokens.c
        cutoff = _dt(before)
        live_member = exists().where(t.family_id == f.id, t.idle_expires_at >= cutoff)
        # created_at: a family is made, then its first token in a second transaction;
        # between the two it has no member, and is not dead.
        idle = and_(f.created_at < cutoff, ~live_member)
        return or_(f.expires_at < cutoff, f.revoked_at < cutoff, idle)

    def count_dead_families(self, before: float) -> tuple[int, int]:
        """How many families :meth:`delete_dead_families` would delete, and their tokens."""
        dead = select(self._families.c.id).where(self._dead(before))
        with self._engine.connect() as conn:
            families = conn.execute(select(func.count()).select_from(dead.subquery())).scalar()
            tokens = conn.execute(
                select(func.count())
                .select_from(self._tokens)
                .where(self._tokens.c.family_id.in_(dead))
            ).scalar()
        return int(families or 0), int(tokens or 0)

    def delete_dead_families(
        self, before: float, limit: int, after: str = ""
    ) -> tuple[int, int, str | None]:
        """Delete up to ``limit`` dead families (see :meth:`_dead`) with ids above
        ``after``, and their tokens, in one short transaction: how many families and
        tokens went, and the last id deleted (``None``: there were none).

        In the order of the primary key, so that a run that passes each batch's last id
        to the next scans the table once, however many live rows lie between dead ones.
        """
        f, t = self._families.c, self._tokens.c
        batch = select(f.id).where(f.id > after, self._dead(before)).order_by(f.id).limit(limit)
        with self._engine.begin() as conn:
            ids = list(conn.execute(batch).scalars())
            if not ids:
                return 0, 0, None
            # Explicitly, not by the foreign key's cascade: counted, and the same on
            # every database whatever its foreign-key setting.
            tokens = conn.execute(delete(self._tokens).where(t.family_id.in_(ids))).rowcount
            families = conn.execute(delete(self._families).where(f.id.in_(ids))).rowcount
        return int(families or 0), int(tokens or 0), ids[-1]


def _dt(timestamp: float) -> datetime:
    return datetime.fromtimestamp(timestamp, UTC)


def _ts(value: datetime | None) -> float | None:
    if value is None:
        return None
    return utc(value).timestamp()
