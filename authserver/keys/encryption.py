"""Encryption at rest under a derived key: HKDF (RFC 5869) into Fernet.

One helper for the two things encrypted this way: private signing keys, under the
server secret (DESIGN.md, "Durable vs ephemeral state"), and the refresh retry cache,
under the presented refresh token (:mod:`authserver.oauth.refresh`). HKDF-SHA256 with
no salt and a purpose string as ``info`` (RFC 5869 §3.1-3.2: a high-entropy input needs
no salt; ``info`` keeps the two keys apart) gives the 32 bytes of a Fernet key.

A leaf module (``cryptography`` only): the same input and purpose always give the same
key, so what is stored stays readable.
"""

from __future__ import annotations

import base64

from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

#: The HKDF ``info`` of the key that encrypts private signing keys.
SIGNING_KEY_PURPOSE = b"authserver signing-key encryption"


def derive_fernet(secret: bytes, purpose: bytes) -> Fernet:
    """A Fernet keyed by HKDF-SHA256 of ``secret`` with ``info=purpose`` (RFC 5869)."""
    derived = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=purpose).derive(secret)
    return Fernet(base64.urlsafe_b64encode(derived))


class KeyDecryptionError(Exception):
    """A stored private key cannot be read (or no key can sign): not a passing fault."""


class KeyEncryptor:
    """Encrypts private keys at rest under a key derived from the server secret."""

    def __init__(self, server_secret: bytes) -> None:
        self._fernet = derive_fernet(server_secret, SIGNING_KEY_PURPOSE)

    def encrypt(self, data: bytes) -> bytes:
        return self._fernet.encrypt(data)

    def decrypt(self, data: bytes) -> bytes:
        try:
            return self._fernet.decrypt(data)
        except InvalidToken as exc:
            raise KeyDecryptionError(
                "a signing key cannot be decrypted: the server secret_key changed"
            ) from exc
