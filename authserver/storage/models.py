"""SQLAlchemy models. Schema changes go through Alembic migrations (``migrations/``)."""

from __future__ import annotations

from dataclasses import fields
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, overload

from flask_sqlalchemy import SQLAlchemy
from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    false,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

if TYPE_CHECKING:
    from _typeshed import DataclassInstance


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


class _KeyColumns:
    """The columns of a line of signing keys."""

    kid: Mapped[str] = mapped_column(String(64), primary_key=True)
    #: Monotonic; unique, so two workers racing to rotate make one key, not two.
    generation: Mapped[int] = mapped_column(Integer, unique=True, nullable=False)
    algorithm: Mapped[str] = mapped_column(String(16), nullable=False)
    public_jwk: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False)
    private_key_encrypted: Mapped[bytes] = mapped_column(LargeBinary, nullable=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    activates_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)


class SigningKey(_KeyColumns, Base):
    """A token signing key. The private part is encrypted under the server secret.

    A key is published (in JWKS) from ``created_at``, signs from ``activates_at``
    until a newer key activates, and stays published until every token it signed
    has expired (``authserver.keys.schedule`` works that out from the list).
    """

    __tablename__ = "signing_keys"


class IdTokenSigningKey(_KeyColumns, Base):
    """An RS256 key for ID tokens when access tokens use another algorithm.

    OIDC Discovery §3 requires RS256 among ``id_token_signing_alg_values_supported``;
    this second line of keys follows the same schedule as ``signing_keys``.
    """

    __tablename__ = "id_token_signing_keys"


class EphemeralEntry(Base):
    """One entry of the SQL ephemeral store (used when no Redis is configured)."""

    __tablename__ = "ephemeral_entries"

    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    value: Mapped[bytes | None] = mapped_column(LargeBinary)
    counter: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    #: Unix time; an entry at or past it no longer exists.
    expires_at: Mapped[float] = mapped_column(Float, nullable=False, index=True)


class User(Base):
    """A person: local (password), federated (upstream ``iss`` + ``sub``) or from the proxy.

    ``id`` is the ``sub`` of every token issued to them; it never changes.
    """

    __tablename__ = "users"
    __table_args__ = (
        UniqueConstraint("upstream_issuer", "upstream_subject"),
        # One local user per address (an admin sets them; forward auth names people by
        # their email). The service compares without case first; this catches a race.
        Index(
            "uq_users_local_email",
            "email",
            unique=True,
            sqlite_where=text("source = 'local'"),
            postgresql_where=text("source = 'local'"),
        ),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    #: Lower-cased; the email for federated and proxy users.
    username: Mapped[str] = mapped_column(String(255), unique=True, nullable=False)
    email: Mapped[str | None] = mapped_column(String(320), index=True)
    name: Mapped[str | None] = mapped_column(String(255))
    #: argon2id; ``None`` for people who never sign in with a password here.
    password_hash: Mapped[str | None] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(64), nullable=False)
    groups: Mapped[list[str]] = mapped_column(JSON, nullable=False, default=list)
    #: ``local``, ``upstream`` or ``proxy``.
    source: Mapped[str] = mapped_column(String(16), nullable=False)
    upstream_issuer: Mapped[str | None] = mapped_column(String(512))
    upstream_subject: Mapped[str | None] = mapped_column(String(255))
    disabled: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    last_login_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    #: The credentials generation: raised when the password is set or reset; a browser
    #: session signed in under an older one is over (issue 16.2).
    credentials_generation: Mapped[int] = mapped_column(
        Integer, nullable=False, default=0, server_default="0"
    )
    #: What the upstream IdP said (``email_verified``), ``True`` for an email an admin
    #: set or a trusted proxy asserted; ``None`` when unknown (OIDC Core §5.1).
    email_verified: Mapped[bool | None] = mapped_column(Boolean)
    #: The password was made for the person (the first admin's one-time password): the
    #: next sign-in must choose a new one before it completes (issue 16.11).
    password_must_change: Mapped[bool] = mapped_column(
        Boolean, nullable=False, default=False, server_default=false()
    )


class RefreshFamily(Base):
    """The refresh tokens descending from one grant (RFC 9700 §4.14.2 rotation).

    Reuse of a rotated member revokes the whole family.
    """

    __tablename__ = "refresh_families"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    user_id: Mapped[str] = mapped_column(
        String(32), ForeignKey("users.id", ondelete="CASCADE"), nullable=False, index=True
    )
    client_id: Mapped[str] = mapped_column(String(255), nullable=False, index=True)
    scope: Mapped[str] = mapped_column(Text, nullable=False)
    audience: Mapped[str] = mapped_column(String(512), nullable=False)
    auth_time: Mapped[int] = mapped_column(Integer, nullable=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    #: Absolute expiry: no member is good after this, however often it was used.
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    #: Why it was revoked: ``reuse``, ``revoked``, ``code_replay``, ``user``.
    revoked_reason: Mapped[str | None] = mapped_column(String(32))


class RefreshToken(Base):
    """One refresh token of a family, stored as a SHA-256 hash only."""

    __tablename__ = "refresh_tokens"

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    family_id: Mapped[str] = mapped_column(
        String(32),
        ForeignKey("refresh_families.id", ondelete="CASCADE"),
        nullable=False,
        index=True,
    )
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    #: Idle expiry: unused this long, it dies.
    idle_expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    #: Set (once, atomically) when it is exchanged for its successor.
    rotated_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class ServiceAccount(Base):
    """A confidential client made at runtime for a CI job or a service (DESIGN.md).

    Its token ``as_sa_<client_id>.<secret>`` is shown once and stored only as a
    SHA-256 hash (it carries 256 random bits, so a fast hash is enough). Revoking one
    deletes its row; the audit log keeps the record.
    """

    __tablename__ = "service_accounts"

    client_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(255), unique=True, nullable=False)
    role: Mapped[str] = mapped_column(String(64), nullable=False)
    #: The scopes it may ask for (within its role's permissions).
    scopes: Mapped[list[str]] = mapped_column(JSON, nullable=False, default=list)
    #: ``None``: no token, only key files (``service_account_keys``).
    token_hash: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    #: Who made it (a username, or ``cli``).
    created_by: Mapped[str | None] = mapped_column(String(255))
    #: ``None``: never expires.
    expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    rotated_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    #: Updated at most once a minute, so that a busy CI job costs no write per token.
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class ServiceAccountKey(Base):
    """The public half of a service-account key file (``private_key_jwt``, RFC 7523
    §2.2). The private half is written to the file once and never stored here."""

    __tablename__ = "service_account_keys"

    client_id: Mapped[str] = mapped_column(
        String(64),
        ForeignKey("service_accounts.client_id", ondelete="CASCADE"),
        primary_key=True,
    )
    kid: Mapped[str] = mapped_column(String(64), primary_key=True)
    algorithm: Mapped[str] = mapped_column(String(16), nullable=False)
    #: A public JWK (RFC 7517): no ``d``, ``p``, ``q``... (the repository checks).
    public_jwk: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    created_by: Mapped[str | None] = mapped_column(String(255))


class AuditEvent(Base):
    """One security-relevant action: who did what to what, when, and from where."""

    __tablename__ = "audit_events"

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False, index=True)
    #: ``login``, ``login_failed``, ``token_issued``, ``user_created``, ...
    event: Mapped[str] = mapped_column(String(64), nullable=False, index=True)
    #: Who: a username, a client id, or ``cli`` for the command line.
    actor: Mapped[str | None] = mapped_column(String(255))
    client_id: Mapped[str | None] = mapped_column(String(255))
    #: What it was done to: a user, a service account, a key, a token's subject.
    target: Mapped[str | None] = mapped_column(String(255))
    #: The client's address (``client_address`` of the web layer), or ``local``.
    address: Mapped[str | None] = mapped_column(String(64))
    #: The rest: grant type, scope, jti, ...; never a token or a secret.
    details: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False, default=dict)


def column_values(record: DataclassInstance) -> dict[str, Any]:
    """A record's fields by name: the values of its row's columns (the repositories
    declare their records with their tables' column names)."""
    return {f.name: getattr(record, f.name) for f in fields(record)}


@overload
def utc(value: datetime) -> datetime: ...
@overload
def utc(value: None) -> None: ...
def utc(value: datetime | None) -> datetime | None:
    """A time read from the database, in UTC: SQLite hands back naive datetimes, and we
    only ever store UTC."""
    if value is None:
        return None
    return value if value.tzinfo else value.replace(tzinfo=UTC)
