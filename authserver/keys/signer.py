"""The cached signer: one per line of keys per process, reading the store.

It keeps a snapshot of the key list (the records, their decrypted private keys, the
published set) and re-reads it every ``refresh_every`` seconds, following the
:class:`~authserver.keys.schedule.RotationSchedule` as it does: it adds the next key
when due and finishes an immediate rotation. Through a short database outage it signs
from the snapshot. The time comes from the injected :class:`~authserver.clock.Clock`.
"""

from __future__ import annotations

import logging
import secrets
import threading
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any, Protocol

from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet
from joserfc.jwt import Token

from ..clock import SYSTEM_CLOCK, Clock
from ..storage.keys import KeyRecord
from .encryption import KeyDecryptionError, KeyEncryptor
from .material import (
    ALGORITHMS,
    REGISTRY,
    Algorithm,
    SigningKeyObject,
    generate_key,
    import_private_key,
    jwks_document,
    key_set,
    private_pem,
    public_jwk,
)
from .schedule import CreateKey, KeyStatus, RotationSchedule, active_key

log = logging.getLogger(__name__)


class KeyRepository(Protocol):
    def list(self) -> list[KeyRecord]: ...

    def add(self, record: KeyRecord) -> bool: ...

    def withdraw_older_than(self, generation: int) -> None: ...


class TokenSignatureError(ValueError):
    """The JWT is malformed, or not signed by one of our published keys."""


@dataclass(frozen=True)
class _Snapshot:
    """What one read of the key list yields; rebuilt every ``refresh_every`` seconds.

    Publication is worked out at load time. That is safe to reuse until the next
    load: a retired key stays published 60 s past the last expiry of its tokens, far
    longer than a refresh interval.
    """

    #: When to re-read next is reckoned from this (monotonic seconds).
    loaded_at: float
    #: When the list was last read successfully (monotonic seconds).
    read_at: float
    records: tuple[KeyRecord, ...]
    private: dict[str, SigningKeyObject]
    published: KeySet
    jwks: dict[str, list[dict[str, Any]]]


class KeyManager:
    """The one owner of signing keys for a process. Thread-safe."""

    #: How long signing goes on from memory while the key list cannot be re-read.
    MAX_STALE_SECONDS = 300.0

    def __init__(
        self,
        repository: KeyRepository,
        encryptor: KeyEncryptor,
        *,
        algorithm: Algorithm,
        rotate_every: float,
        publish_ahead: float,
        token_ttl: float,
        clock: Clock = SYSTEM_CLOCK,
        refresh_every: float = 10.0,
    ) -> None:
        self._repository = repository
        self._encryptor = encryptor
        self.algorithm = algorithm
        self._clock = clock
        # Workers must re-read the list well within publish_ahead, so that none signs
        # with a key the others have not published yet, nor misses a new one.
        self._refresh_every = min(refresh_every, publish_ahead / 4)
        self.schedule = RotationSchedule(
            algorithm=algorithm,
            rotate_every=timedelta(seconds=rotate_every),
            publish_ahead=timedelta(seconds=publish_ahead),
            token_ttl=timedelta(seconds=token_ttl),
            propagation=timedelta(seconds=self.propagation_seconds),
        )
        self._lock = threading.Lock()
        self._snapshot: _Snapshot | None = None
        self._stale = False

    # -- time -----------------------------------------------------------------------

    def _now(self) -> datetime:
        return self._clock.utcnow()

    @property
    def jwks_max_age(self) -> int:
        """Seconds JWKS may be cached: half of ``publish_ahead``, at most an hour."""
        return self.schedule.jwks_max_age

    @property
    def propagation_seconds(self) -> float:
        """How long until every worker on every node has re-read the key list: one
        refresh interval, plus the second a failed read waits before its retry."""
        return self._refresh_every + 1.0

    # -- the schedule, carried out --------------------------------------------------

    def preload(self) -> None:
        """Read the key list now (each gunicorn worker as it boots), so that a database
        outage later finds the keys in memory even in a worker that has served nothing
        yet. If the database cannot be read now, the first request tries again."""
        try:
            self._current()
        except KeyDecryptionError:
            raise
        except Exception as exc:
            log.warning("cannot read the signing keys yet (%s); will try again", type(exc).__name__)

    def ensure_keys(self) -> None:
        """Bootstrap and follow the schedule now (``serve`` calls it before forking)."""
        self._reload()  # follows the schedule

    def rotate(self, *, immediate: bool = False) -> KeyRecord:
        """Make a new key now (``keys rotate``).

        It is published at once and signs after ``publish_ahead``. With ``immediate``
        (a compromised key) it signs at once, here and in every worker at its next
        refresh; the older keys stay published until every worker signs with the new
        one, so that no worker issues a token that does not verify (issue 9.4). Then
        :meth:`withdraw_before` removes them, which ``keys rotate --now`` calls after
        :attr:`propagation_seconds`, and which any worker's refresh does by itself
        past that time, should the command not get so far.
        """
        records = self._repository.list()
        if self._follow_schedule(records):  # a first key must sign meanwhile
            records = self._repository.list()
        activates_at = self.schedule.activation_of_rotation(self._now(), immediate=immediate)
        record = self._create(records, activates_at, scheduled=False)
        self._reload()
        return record

    def withdraw_before(self, record: KeyRecord) -> None:
        """Withdraw every key older than ``record``: gone from JWKS, and the tokens
        they signed no longer verify here (the second step of an immediate rotation).
        Other workers follow within :attr:`propagation_seconds`."""
        self._repository.withdraw_older_than(record.generation)
        self._reload()

    def _follow_schedule(self, records: Sequence[KeyRecord]) -> bool:
        """Carry out the schedule's next step, if any; ``True`` if the list changed."""
        step = self.schedule.next_step(records, self._now())
        if step is None:
            return False
        if isinstance(step, CreateKey):
            self._create(records, step.activates_at, scheduled=True)
        else:
            self._repository.withdraw_older_than(step.generation)
        return True

    def _create(
        self, records: Sequence[KeyRecord], activates_at: datetime, *, scheduled: bool
    ) -> KeyRecord:
        """Add a key of the next generation.

        Generations are unique, so when workers race, one insert wins. For scheduled
        work (the first key, the next key) the winner's key does the job: take it. A
        manual rotation asked for a key of its own: try the generation after.
        """
        generation = (records[-1].generation + 1) if records else 1
        while True:
            kid = f"{self._now():%Y%m%d}-{secrets.token_hex(4)}"
            key = generate_key(self.algorithm, kid)
            record = KeyRecord(
                kid=kid,
                generation=generation,
                algorithm=self.algorithm,
                public_jwk=public_jwk(key),
                private_key_encrypted=self._encryptor.encrypt(private_pem(key)),
                created_at=self._now(),
                activates_at=activates_at,
            )
            if self._repository.add(record):
                return record
            latest = self._repository.list()
            if scheduled and latest:
                return latest[-1]
            generation = latest[-1].generation + 1 if latest else generation + 1

    # -- snapshot -------------------------------------------------------------------

    def _reload(self) -> _Snapshot:
        records = self._repository.list()
        if self._follow_schedule(records):
            records = self._repository.list()
        previous = self._snapshot
        now = self._now()
        private: dict[str, SigningKeyObject] = {}
        for record in records:
            if previous and record.kid in previous.private:
                private[record.kid] = previous.private[record.kid]
            elif self.schedule.is_published(records, record, now):
                pem = self._encryptor.decrypt(record.private_key_encrypted)
                private[record.kid] = import_private_key(
                    pem, kid=record.kid, algorithm=record.algorithm
                )
        published = self.schedule.published(records, now)
        read_at = self._clock.monotonic()
        snapshot = _Snapshot(
            loaded_at=read_at,
            read_at=read_at,
            records=tuple(records),
            private=private,
            published=key_set(private[r.kid] for r in published),
            jwks=jwks_document(r.public_jwk for r in published),
        )
        self._snapshot = snapshot
        return snapshot

    def _is_due(self, snapshot: _Snapshot) -> bool:
        """Whether ``snapshot`` has served its ``refresh_every`` seconds."""
        return self._clock.monotonic() - snapshot.loaded_at >= self._refresh_every

    def _current(self) -> _Snapshot:
        snapshot = self._snapshot
        if snapshot is None or self._is_due(snapshot):
            with self._lock:
                snapshot = self._snapshot
                if snapshot is None or self._is_due(snapshot):
                    snapshot = self._refresh(snapshot)
        return snapshot

    def _refresh(self, previous: _Snapshot | None) -> _Snapshot:
        """Re-read the key list; through a short database outage, keep the last one.

        The keys in memory stay good for a while (a new key is published
        ``publish_ahead`` before it signs), so signing need not stop with the database.
        """
        try:
            snapshot = self._reload()
        except KeyDecryptionError:
            raise
        except Exception as exc:
            now = self._clock.monotonic()
            if previous is None or now - previous.read_at > self.MAX_STALE_SECONDS:
                raise
            if not self._stale:  # once per outage, not once a second (issue 9.2)
                log.warning(
                    "cannot re-read the signing keys (%s); using the ones in memory",
                    type(exc).__name__,
                )
            self._stale = True
            # Try again in a second, not on every request.
            retry_at = now - self._refresh_every + 1.0
            self._snapshot = replace(previous, loaded_at=max(previous.loaded_at, retry_at))
            return self._snapshot
        if self._stale:
            log.warning("signing keys read again")
            self._stale = False
        return snapshot

    # -- use ------------------------------------------------------------------------

    def _signing_key(self) -> tuple[KeyRecord, SigningKeyObject]:
        snapshot = self._current()
        record = active_key(snapshot.records, self._now())
        if record is None:  # only possible if the clock went back before the first key
            raise KeyDecryptionError("no signing key is active yet")
        return record, snapshot.private[record.kid]

    def signing_kid(self) -> str:
        """The ``kid`` that signs now; raises, as :meth:`sign` would, when none can
        (``/readyz``). Reads the key list only when :meth:`sign` would."""
        return self._signing_key()[0].kid

    def sign(self, header: dict[str, Any], claims: dict[str, Any]) -> str:
        """Sign ``claims`` as a compact JWS with the current key (adds ``alg`` and ``kid``)."""
        record, key = self._signing_key()
        full_header = {**header, "alg": record.algorithm, "kid": record.kid}
        return jwt.encode(
            full_header, claims, key, algorithms=[record.algorithm], registry=REGISTRY
        )

    def verify(self, token: str) -> Token:
        """Check the signature against our published keys; claims are the caller's to check."""
        published = self._current().published
        try:
            return jwt.decode(token, published, algorithms=list(ALGORITHMS), registry=REGISTRY)
        except (JoseError, ValueError, TypeError, KeyError) as exc:
            raise TokenSignatureError(str(exc) or type(exc).__name__) from exc

    def jwks(self) -> dict[str, list[dict[str, Any]]]:
        """The public keys to publish: next, active, and retired ones still in use."""
        return self._current().jwks

    def statuses(self) -> list[KeyStatus]:
        """Every key with its state, newest first (``authserver keys list``)."""
        return self.schedule.statuses(self._repository.list(), self._now())
