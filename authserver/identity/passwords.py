"""Local users' passwords: argon2id through argon2-cffi (RFC 9106), never hand-rolled.

The parameters are argon2-cffi's defaults (RFC 9106's second recommended option,
64 MiB memory); ``needs_rehash`` tells when a stored hash was made with others, so a
sign-in can upgrade it.
"""

from __future__ import annotations

import functools

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

_HASHER = PasswordHasher()


def hash_password(password: str) -> str:
    """An argon2id hash (PHC string format) of ``password``, with a random salt."""
    return _HASHER.hash(password)


def verify_password(stored_hash: str, password: str) -> bool:
    """Whether ``password`` matches ``stored_hash``; ``False`` (never an error) otherwise.

    A malformed or unsupported ``stored_hash`` is a mismatch too.
    """
    try:
        return bool(_HASHER.verify(stored_hash, password))
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def needs_rehash(stored_hash: str) -> bool:
    """Whether ``stored_hash`` was made with other parameters than ours (rehash it)."""
    try:
        return _HASHER.check_needs_rehash(stored_hash)
    except (InvalidHashError, ValueError):
        return True


@functools.cache
def dummy_hash() -> str:
    """A hash of nothing anybody knows, made with our parameters.

    Verified against when there is no user (or no password), so an unknown username
    costs as much as a wrong password and response time does not tell them apart.
    Made on first use, once per process.
    """
    import secrets

    return _HASHER.hash(secrets.token_urlsafe(32))


def burn_verify(password: str) -> None:
    """Pay one full verification against ``dummy_hash`` and throw the answer away."""
    verify_password(dummy_hash(), password)
