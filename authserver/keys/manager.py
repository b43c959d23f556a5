"""Signing keys: generation, encryption at rest, the rotation schedule, JWKS, signing.

Every key row carries ``activates_at``. The signing key is, at any moment, the newest
generation whose ``activates_at`` has passed: a pure function of the key list and the
clock, so every gunicorn worker (on every node) that has read the list signs with the
same key, without talking to the others.

A new key is published in JWKS ``publish_ahead`` before it activates, and JWKS may be
cached for at most half that (and workers re-read the list far more often), so any
resource server that honours Cache-Control has the key before the first token it signs.
A key that stopped signing stays published until every token it signed has expired
(``access_token_ttl`` after its successor activated, plus leeway).
"""

from __future__ import annotations

import base64
import logging
import secrets
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, Protocol, cast

from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import ECKey, KeySet, OKPKey, RSAKey
from joserfc.jws import JWSRegistry
from joserfc.jwt import Token

from ..storage.keys import KeyRecord

log = logging.getLogger(__name__)

Algorithm = Literal["RS256", "ES256", "EdDSA"]
ALGORITHMS: tuple[Algorithm, ...] = ("RS256", "ES256", "EdDSA")
#: Published a while longer than strictly needed, for clock skew at resource servers.
RETIRE_LEEWAY = timedelta(seconds=60)

SigningKeyObject = RSAKey | ECKey | OKPKey


class KeyRepository(Protocol):
    def list(self) -> list[KeyRecord]: ...

    def add(self, record: KeyRecord) -> bool: ...

    def withdraw_older_than(self, generation: int) -> None: ...


class _Registry(JWSRegistry):
    """joserfc's registry, without the RFC 9864 warning for ``EdDSA``.

    DESIGN.md names ``EdDSA``: it is what resource servers verify today (RFC 8037);
    RFC 9864's fully specified ``Ed25519`` is not yet widely understood.
    """

    def get_alg(self, name: str) -> Any:
        if name == "EdDSA" and self.allowed and name in self.allowed:
            return self.algorithms[name]
        return super().get_alg(name)


REGISTRY = _Registry(algorithms=list(ALGORITHMS))


class KeyEncryptor:
    """Encrypts private keys at rest under a key derived from the server secret."""

    def __init__(self, server_secret: bytes) -> None:
        derived = HKDF(
            algorithm=hashes.SHA256(),
            length=32,
            salt=None,
            info=b"authserver signing-key encryption",
        ).derive(server_secret)
        self._fernet = Fernet(base64.urlsafe_b64encode(derived))

    def encrypt(self, data: bytes) -> bytes:
        return self._fernet.encrypt(data)

    def decrypt(self, data: bytes) -> bytes:
        try:
            return self._fernet.decrypt(data)
        except InvalidToken as exc:
            raise KeyDecryptionError(
                "a signing key cannot be decrypted: the server secret_key changed"
            ) from exc


class KeyDecryptionError(Exception):
    pass


class TokenSignatureError(ValueError):
    """The JWT is malformed, or not signed by one of our published keys."""


@dataclass(frozen=True)
class KeyStatus:
    kid: str
    algorithm: str
    generation: int
    created_at: datetime
    activates_at: datetime
    state: Literal["next", "active", "retired", "expired"]
    #: Until when it stays in JWKS (``None`` while it is next or active).
    published_until: datetime | None


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


def generate_key(algorithm: Algorithm, kid: str) -> SigningKeyObject:
    parameters: Any = {"kid": kid, "alg": algorithm, "use": "sig"}
    if algorithm == "RS256":
        return RSAKey.generate_key(2048, parameters=parameters, private=True)
    if algorithm == "ES256":
        return ECKey.generate_key("P-256", parameters=parameters, private=True)
    return OKPKey.generate_key("Ed25519", parameters=parameters, private=True)


def _import_private(record: KeyRecord, pem: bytes) -> SigningKeyObject:
    parameters: Any = {"kid": record.kid, "alg": record.algorithm, "use": "sig"}
    if record.algorithm == "RS256":
        return RSAKey.import_key(pem, parameters=parameters)
    if record.algorithm == "ES256":
        return ECKey.import_key(pem, parameters=parameters)
    return OKPKey.import_key(pem, parameters=parameters)


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
        clock: Callable[[], float] = time.time,
        refresh_every: float = 10.0,
    ) -> None:
        self._repository = repository
        self._encryptor = encryptor
        self.algorithm = algorithm
        self._rotate_every = timedelta(seconds=rotate_every)
        self._publish_ahead = timedelta(seconds=publish_ahead)
        self._token_ttl = timedelta(seconds=token_ttl)
        self._clock = clock
        # Workers must re-read the list well within publish_ahead, so that none signs
        # with a key the others have not published yet, nor misses a new one.
        self._refresh_every = min(refresh_every, publish_ahead / 4)
        self._lock = threading.Lock()
        self._snapshot: _Snapshot | None = None
        self._stale = False

    # -- time -----------------------------------------------------------------------

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self._clock(), UTC)

    @property
    def jwks_max_age(self) -> int:
        """Seconds JWKS may be cached: half of ``publish_ahead``, at most an hour."""
        return int(min(self._publish_ahead.total_seconds() / 2, 3600))

    # -- schedule -------------------------------------------------------------------

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
        self._reload()  # applies the schedule

    @property
    def propagation_seconds(self) -> float:
        """How long until every worker on every node has re-read the key list: one
        refresh interval, plus the second a failed read waits before its retry."""
        return self._refresh_every + 1.0

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
        if self._apply_schedule(records):  # a first key must sign meanwhile
            records = self._repository.list()
        now = self._now()
        activates_at = now if immediate else now + self._publish_ahead
        record = self._create(records, activates_at, scheduled=False)
        self._reload()
        return record

    def withdraw_before(self, record: KeyRecord) -> None:
        """Withdraw every key older than ``record``: gone from JWKS, and the tokens
        they signed no longer verify here (the second step of an immediate rotation).
        Other workers follow within :attr:`propagation_seconds`."""
        self._repository.withdraw_older_than(record.generation)
        self._reload()

    def _immediate_rotation_due(
        self, records: Sequence[KeyRecord], active: KeyRecord, now: datetime
    ) -> bool:
        """Whether the signing key ``active`` came from ``rotate(immediate=True)`` (it
        signed as soon as it was made, with older keys before it) and every worker has
        had the time to switch to it, while older keys are still there to withdraw."""
        return (
            active.activates_at - active.created_at < self._publish_ahead / 2
            and any(r.generation < active.generation for r in records)
            and now >= active.activates_at + timedelta(seconds=self.propagation_seconds)
        )

    def _apply_schedule(self, records: Sequence[KeyRecord]) -> bool:
        """Create the next key when due, finish an immediate rotation; ``True`` if the
        list changed."""
        now = self._now()
        active = _active(records, now)
        if active is not None and self._immediate_rotation_due(records, active, now):
            self._repository.withdraw_older_than(active.generation)
            return True
        if active is None:
            # First start (or only future keys): no token was ever signed by any
            # key here, so a key may sign at once without waiting to be published.
            self._create(records, now, scheduled=True)
            return True
        pending = [r for r in records if r.activates_at > now]
        if pending and pending[-1].algorithm == self.algorithm:
            return False
        if active.algorithm != self.algorithm:
            # The configured algorithm changed: roll over to a key of the new one.
            self._create(records, now + self._publish_ahead, scheduled=True)
            return True
        if now >= active.activates_at + self._rotate_every - self._publish_ahead:
            activates_at = max(now + self._publish_ahead, active.activates_at + self._rotate_every)
            self._create(records, activates_at, scheduled=True)
            return True
        return False

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
                public_jwk=dict(key.as_dict(private=False)),
                private_key_encrypted=self._encryptor.encrypt(key.as_pem(private=True)),
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
        if self._apply_schedule(records):
            records = self._repository.list()
        previous = self._snapshot
        private: dict[str, SigningKeyObject] = {}
        for record in records:
            if previous and record.kid in previous.private:
                private[record.kid] = previous.private[record.kid]
            elif self._is_published(records, record, self._now()):
                pem = self._encryptor.decrypt(record.private_key_encrypted)
                private[record.kid] = _import_private(record, pem)
        now = self._now()
        published = [r for r in reversed(records) if self._is_published(records, r, now)]
        read_at = time.monotonic()
        snapshot = _Snapshot(
            loaded_at=read_at,
            read_at=read_at,
            records=tuple(records),
            private=private,
            published=KeySet([cast(Any, private[r.kid]) for r in published]),
            jwks={"keys": [dict(r.public_jwk) for r in published]},
        )
        self._snapshot = snapshot
        return snapshot

    def _current(self) -> _Snapshot:
        snapshot = self._snapshot
        if snapshot is None or time.monotonic() - snapshot.loaded_at > self._refresh_every:
            with self._lock:
                snapshot = self._snapshot
                if snapshot is None or time.monotonic() - snapshot.loaded_at > self._refresh_every:
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
            if previous is None or time.monotonic() - previous.read_at > self.MAX_STALE_SECONDS:
                raise
            if not self._stale:  # once per outage, not once a second (issue 9.2)
                log.warning(
                    "cannot re-read the signing keys (%s); using the ones in memory",
                    type(exc).__name__,
                )
            self._stale = True
            # Try again in a second, not on every request.
            retry_at = time.monotonic() - self._refresh_every + 1.0
            self._snapshot = replace(previous, loaded_at=max(previous.loaded_at, retry_at))
            return self._snapshot
        if self._stale:
            log.warning("signing keys read again")
            self._stale = False
        return snapshot

    def _published_until(self, records: Sequence[KeyRecord], record: KeyRecord) -> datetime | None:
        successors = [r for r in records if r.generation > record.generation]
        if not successors:
            return None
        return min(s.activates_at for s in successors) + self._token_ttl + RETIRE_LEEWAY

    def _is_published(self, records: Sequence[KeyRecord], record: KeyRecord, now: datetime) -> bool:
        until = self._published_until(records, record)
        return until is None or now < until

    # -- use ------------------------------------------------------------------------

    def _signing_key(self) -> tuple[KeyRecord, SigningKeyObject]:
        snapshot = self._current()
        record = _active(snapshot.records, self._now())
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
        records = self._repository.list()
        now = self._now()
        active = _active(records, now)
        result = []
        for record in reversed(records):
            until = self._published_until(records, record)
            state: Literal["next", "active", "retired", "expired"]
            if record.activates_at > now:
                state = "next"
            elif active is not None and record.kid == active.kid:
                state = "active"
            elif until is not None and now < until:
                state = "retired"
            else:
                state = "expired"
            result.append(
                KeyStatus(
                    kid=record.kid,
                    algorithm=record.algorithm,
                    generation=record.generation,
                    created_at=record.created_at,
                    activates_at=record.activates_at,
                    state=state,
                    published_until=until,
                )
            )
        return result


def _active(records: Sequence[KeyRecord], now: datetime) -> KeyRecord | None:
    active = [r for r in records if r.activates_at <= now]
    return active[-1] if active else None
