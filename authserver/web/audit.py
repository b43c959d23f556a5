"""The audit trail: every security-relevant event, durably, with who, what and where.

The protocol layers report events through one callable (``events(name, **details)``);
this one adds what only the web layer knows (the client's address, the signed-in
admin acting) and writes a row of ``audit_events``. Token values never go in: only
their ids (``jti``), subjects, clients, scopes and grant types.

Sign-ins, refresh-token reuse, revocations and admin changes are written before the
response goes out. ``token_issued``, one row per token and the bulk of the log, is
written in batches by a thread of each worker, at most ``BATCH_SECONDS`` late: one
transaction per batch instead of one per token (on SQLite, one write lock shared by
every worker). A worker that stops writes what it holds; one killed outright loses at
most that last fraction of a second of issuance rows (the tokens themselves are in
the server's log at DEBUG).
"""

from __future__ import annotations

import atexit
import logging
import os
import queue
import threading
import time
from datetime import UTC, datetime
from typing import Any

from flask import g, has_request_context
from sqlalchemy.exc import SQLAlchemyError

from ..storage.audit import SqlAuditLog
from .signin import peer_address

log = logging.getLogger("authserver")

#: Events that go to the log at WARNING as well.
NOTABLE = frozenset({"refresh_reuse_detected", "code_replayed", "login_throttled"})
#: Events kept in the database; the rest (e.g. ``device_authorization``) only in the log.
AUDITED = frozenset(
    {
        "login",
        "login_failed",
        "login_throttled",
        "logout",
        "token_issued",
        "refresh_reuse_detected",
        "refresh_revoked",
        "token_revoked",
        "code_replayed",
        "authorization_granted",
        "authorization_denied",
        "device_approved",
        "device_denied",
        "user_created",
        "user_updated",
        "user_deleted",
        "users_imported",
        "password_changed",
        "service_account_created",
        "service_account_rotated",
        "service_account_revoked",
        "keys_rotated",
    }
)
#: High-volume events, written in batches (see the module's docstring).
BATCHED = frozenset({"token_issued"})
BATCH_SECONDS = 0.25
BATCH_MAX = 500
#: Claims worth keeping from an issued or revoked token (never the token itself).
_CLAIMS = ("jti", "scope", "aud", "exp")
_PLAIN = (str, int, float, bool, type(None))


def set_actor(actor: str) -> None:
    """Name who is acting in this request (the admin API and dashboard call this)."""
    g.audit_actor = actor


class AuditTrail:
    """The ``events`` callable of ``create_app``."""

    def __init__(self, audit_log: SqlAuditLog) -> None:
        self.audit_log = audit_log
        self._pending: queue.SimpleQueue[dict[str, Any]] = queue.SimpleQueue()
        self._wake = threading.Event()
        #: Held while rows are between the queue and the database.
        self._writing = threading.Lock()
        self._writer_pid = 0
        atexit.register(self.flush)

    def __call__(self, event: str, **details: Any) -> None:
        level = logging.WARNING if event in NOTABLE else logging.DEBUG
        logged = log.isEnabledFor(level)
        if not logged and event not in AUDITED:
            return
        row = self._row(event, details)
        if logged:
            log.log(level, "%s %s", event, row)
        if event not in AUDITED:
            return
        row["event"] = event
        if event not in BATCHED:
            self._store([row])
            return
        row["at"] = datetime.now(UTC)
        self._pending.put(row)
        if self._writer_pid != os.getpid():  # none yet in this (forked) process
            self._writer_pid = os.getpid()
            threading.Thread(target=self._write_batches, name="audit-writer", daemon=True).start()
        self._wake.set()

    def flush(self) -> None:
        """Write every batched event held so far (readers of the log call this first)."""
        with self._writing:
            rows: list[dict[str, Any]] = []
            while len(rows) < BATCH_MAX:
                try:
                    rows.append(self._pending.get_nowait())
                except queue.Empty:
                    break
            self._store(rows)
        if not self._pending.empty():
            self.flush()

    def _write_batches(self) -> None:
        while True:
            self._wake.wait()
            time.sleep(BATCH_SECONDS)  # let the batch fill
            self._wake.clear()
            self.flush()

    def _store(self, rows: list[dict[str, Any]]) -> None:
        try:
            self.audit_log.record_many(rows)
        except SQLAlchemyError:
            # The actions went through; keep the events in the log at least.
            for row in rows:
                log.exception("audit event not stored: %s", row)

    def _row(self, event: str, details: dict[str, Any]) -> dict[str, Any]:
        client = details.pop("client", None)
        claims = details.pop("claims", None) or {}
        client_id = (
            getattr(client, "client_id", None)
            or details.pop("client_id", None)
            or claims.get("client_id")
        )
        target = details.pop("target", None) or details.pop("user_id", None) or claims.get("sub")
        actor = details.pop("actor", None)
        address = details.pop("address", None)
        if has_request_context():
            actor = actor or g.get("audit_actor")
            address = address or peer_address()
        if actor is None:
            # Without a named actor the subject acts (a sign-in, a token for them), or
            # the client does (client credentials, revocation).
            actor = details.get("username") or target or client_id
        extra = {k: claims[k] for k in _CLAIMS if k in claims}
        extra.update({k: v for k, v in details.items() if isinstance(v, _PLAIN)})
        return {
            "actor": actor,
            "client_id": client_id,
            "target": target,
            "address": address,
            "details": extra,
        }
