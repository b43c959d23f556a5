"""Database URL handling and engine options for SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from sqlalchemy import Column, Engine, event, select, text
from sqlalchemy.engine import make_url


def normalize_database_url(url: str) -> str:
    """Make a relative SQLite path absolute against the working directory.

    (Flask-SQLAlchemy would otherwise put it under the package's instance folder.)
    Its folder is created, so the embedded default runs with nothing prepared.
    """
    parsed = make_url(url)
    if (
        parsed.get_backend_name() != "sqlite"
        or not parsed.database
        or parsed.database == ":memory:"
    ):
        return url
    path = Path(parsed.database)
    if not path.is_absolute():
        path = Path.cwd() / path
    path.parent.mkdir(parents=True, exist_ok=True)
    return parsed.set(database=str(path)).render_as_string(hide_password=False)


def engine_options(url: str) -> dict[str, Any]:
    if make_url(url).get_backend_name() == "sqlite":
        # Writers wait for each other instead of failing with "database is locked".
        return {"connect_args": {"timeout": 30, "check_same_thread": False}}
    # A database that is down must cost a request seconds, not minutes: a bounded
    # connect and a bounded wait for a pooled connection (then 503, see web/errors.py).
    return {
        "pool_pre_ping": True,
        "pool_size": 5,
        "max_overflow": 10,
        "pool_timeout": 2,
        "connect_args": {"connect_timeout": 2},
    }


def configure_engine(engine: Engine) -> None:
    if engine.dialect.name != "sqlite":
        return

    @event.listens_for(engine, "connect")
    def _pragmas(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()


def ping_database(engine: Engine) -> None:
    """Raise if the database does not answer (``/readyz``); bounded by the pool's
    timeouts above, and by the caller's deadline for one that stalls mid-query."""
    with engine.connect() as conn:
        conn.execute(text("SELECT 1"))


def lookup_many(
    engine: Engine, key: Column[Any], value: Column[Any], wanted: Iterable[str]
) -> dict[str, str]:
    """``{key: value}`` of the rows whose ``key`` is one of ``wanted``, in one query
    (a page's worth of ids named at once, not one query a row). A value holding a NUL,
    which PostgreSQL text cannot, names no row."""
    keys = sorted({k for k in wanted if "\x00" not in k})
    if not keys:
        return {}
    with engine.connect() as conn:
        rows = conn.execute(select(key, value).where(key.in_(keys)))
        return {str(row[0]): str(row[1]) for row in rows}
