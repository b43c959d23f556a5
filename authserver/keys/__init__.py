"""Signing keys: generation, rotation schedule, JWKS and signing. No HTTP here.

- :mod:`.encryption`: HKDF + Fernet, private keys encrypted under the server secret;
- :mod:`.material`: key generation and the JWK/JWKS forms;
- :mod:`.schedule`: the pure rotation schedule (which key signs, is published, retires);
- :mod:`.signer`: :class:`KeyManager`, the cached signer that reads the store.
"""

from .encryption import KeyDecryptionError, KeyEncryptor, derive_fernet
from .material import ALGORITHMS, REGISTRY, Algorithm, SigningKeyObject, generate_key
from .schedule import RETIRE_LEEWAY, KeyStatus, RotationSchedule
from .signer import KeyManager, KeyRepository, TokenSignatureError

__all__ = [
    "ALGORITHMS",
    "REGISTRY",
    "RETIRE_LEEWAY",
    "Algorithm",
    "KeyDecryptionError",
    "KeyEncryptor",
    "KeyManager",
    "KeyRepository",
    "KeyStatus",
    "RotationSchedule",
    "SigningKeyObject",
    "TokenSignatureError",
    "derive_fernet",
    "generate_key",
]
