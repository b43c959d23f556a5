"""SQLAlchemy models. Schema changes go through Alembic migrations (``migrations/``)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from flask_sqlalchemy import SQLAlchemy
from sqlalchemy import (
    JSON,
    DateTime,
    Float,
    Integer,
    LargeBinary,
    MetaData,
    String,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# Stable constraint names, so migrations read the same on SQLite and PostgreSQL.
NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


#: The Flask-SQLAlchemy extension; bound to an app only by ``create_app``.
db = SQLAlchemy(model_class=Base)


class SigningKey(Base):
    """A token signing key. The private part is encrypted under the server secret.

    A key is published (in JWKS) from ``created_at``, signs from ``activates_at``
    until a newer key activates, and stays published until every token it signed
    has expired (``authserver.keys.manager`` works that out from the list).
    """

    __tablename__ = "signing_keys"

    kid: Mapped[str] = mapped_column(String(64), primary_key=True)
    #: Monotonic; unique, so two workers racing to rotate make one key, not two.
    generation: Mapped[int] = mapped_column(Integer, unique=True, nullable=False)
    algorithm: Mapped[str] = mapped_column(String(16), nullable=False)
    public_jwk: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False)
    private_key_encrypted: Mapped[bytes] = mapped_column(LargeBinary, nullable=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    activates_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)


class EphemeralEntry(Base):
    """One entry of the SQL ephemeral store (used when no Redis is configured)."""

    __tablename__ = "ephemeral_entries"

    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    value: Mapped[bytes | None] = mapped_column(LargeBinary)
    counter: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    #: Unix time; an entry at or past it no longer exists.
    expires_at: Mapped[float] = mapped_column(Float, nullable=False, index=True)
