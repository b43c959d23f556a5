"""Client secret verification: bcrypt (plain or base64, as Flyte generates) and argon2id.

A slow hash is the right storage for a secret, and the wrong cost for a service that
presents the same secret thousands of times an hour. So a secret that verified once is
remembered as ``HMAC-SHA256(process key, stored hash || secret)``: a later request with
the same secret against the same stored hash matches that digest in constant time and
skips the slow check. Anything else (a wrong secret, a changed stored hash, a rotated
secret) misses the cache and pays the full check. The process key is random and never
leaves memory, so the cache is worthless to anyone who reads it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import threading
from collections import OrderedDict

import bcrypt
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from .vocabulary import classify_secret_hash

_ARGON2 = PasswordHasher()


def hash_secret(secret: str, scheme: str = "bcrypt") -> str:
    """A hash for ``client_secret_hash`` (``authserver hash-secret``)."""
    if scheme == "argon2id":
        return _ARGON2.hash(secret)
    return bcrypt.hashpw(secret.encode(), bcrypt.gensalt(rounds=12)).decode()


def check_secret(secret: str, stored_hash: str) -> bool:
    """The full, slow check of ``secret`` against ``stored_hash``."""
    scheme = classify_secret_hash(stored_hash)
    if scheme == "argon2id":
        try:
            return bool(_ARGON2.verify(stored_hash, secret))
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False
    raw = stored_hash.encode()
    if not raw.startswith(b"$2"):
        raw = base64.b64decode(raw)
    # bcrypt only reads 72 bytes; a longer secret must not pass on its prefix alone.
    encoded = secret.encode()
    if len(encoded) > 72:
        return False
    try:
        return bcrypt.checkpw(encoded, raw)
    except ValueError:
        return False


class SecretVerifier:
    """``check_secret`` with a bounded in-memory cache of secrets that verified."""

    def __init__(self, max_entries: int = 10_000) -> None:
        self._key = os.urandom(32)
        self._cache: OrderedDict[str, bytes] = OrderedDict()
        self._max_entries = max_entries
        self._lock = threading.Lock()

    def _digest(self, secret: str, stored_hash: str) -> bytes:
        return hmac.new(
            self._key, stored_hash.encode() + b"\x00" + secret.encode(), hashlib.sha256
        ).digest()

    def known(self, secret: str, stored_hash: str) -> bool:
        """Whether ``secret`` verified against ``stored_hash`` before (no slow check)."""
        remembered = self._cache.get(stored_hash)
        return remembered is not None and hmac.compare_digest(
            remembered, self._digest(secret, stored_hash)
        )

    def verify(self, secret: str, stored_hash: str) -> bool:
        if self.known(secret, stored_hash):
            return True
        if not check_secret(secret, stored_hash):
            return False
        with self._lock:
            self._cache[stored_hash] = self._digest(secret, stored_hash)
            self._cache.move_to_end(stored_hash)
            while len(self._cache) > self._max_entries:
                self._cache.popitem(last=False)
        return True


class DummyCheck:
    """The work of a wrong-secret check, for a client id that does not exist (issue
    16.10: otherwise an unknown id answers in no time and a known one in a bcrypt's).

    The hash is bcrypt at the highest cost among ``stored_hashes`` (12, ``hash_secret``'s,
    when none is bcrypt), made on first use.
    """

    def __init__(self, stored_hashes: list[str]) -> None:
        costs = [_bcrypt_cost(h) for h in stored_hashes]
        self._rounds = max((c for c in costs if c is not None), default=12)
        self._hash: str | None = None

    def __call__(self, secret: str) -> None:
        if self._hash is None:
            salt = bcrypt.gensalt(rounds=self._rounds)
            self._hash = bcrypt.hashpw(os.urandom(16).hex().encode(), salt).decode()
        check_secret(secret, self._hash)


def _bcrypt_cost(stored_hash: str) -> int | None:
    raw = stored_hash
    if classify_secret_hash(stored_hash) == "argon2id":
        return None
    if not raw.startswith("$2"):
        try:
            raw = base64.b64decode(raw).decode()
        except ValueError:
            return None
    parts = raw.split("$")
    return int(parts[2]) if len(parts) > 3 and parts[2].isdigit() else None
