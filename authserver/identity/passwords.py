"""Local users' passwords: argon2id through argon2-cffi (RFC 9106), never hand-rolled.

The parameters are argon2-cffi's defaults (RFC 9106's second recommended option,
64 MiB memory); ``needs_rehash`` tells when a stored hash was made with others, so a
sign-in can upgrade it.

A password may also arrive already hashed, as an htpasswd line (``user:hash``, what
``htpasswd -nb`` prints; SkyPilot's ``initialBasicAuthCredentials`` is one). The forms
htpasswd writes with a salt are kept as they are until the first sign-in, which
verifies them through libpass (the maintained passlib) and stores argon2id instead:
bcrypt (``$2y$``/``$2b$``/``$2a$``), Apache MD5 (``$apr1$``, htpasswd's default) and
SHA-crypt (``$5$``/``$6$``). htpasswd's unsalted forms are refused: ``{SHA}`` (one
SHA-1, cracked at billions of guesses a second), DES ``crypt`` (8 characters) and
plain text.
"""

from __future__ import annotations

import functools
import warnings

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from passlib.context import CryptContext
from passlib.exc import PasslibHashWarning

_HASHER = PasswordHasher()

#: The htpasswd forms a stored hash may have until its first sign-in, by libpass name.
_HTPASSWD = CryptContext(schemes=["bcrypt", "apr_md5_crypt", "sha256_crypt", "sha512_crypt"])
#: bcrypt reads only the first 72 bytes of a password.
_BCRYPT_MAX_BYTES = 72
#: The most work a sign-in may cost, by scheme: htpasswd's own bcrypt limit (``-C 17``);
#: a million SHA-crypt rounds (200 times htpasswd's default ``-r 5000``, half a second).
_MAX_ROUNDS = {"bcrypt": 17, "sha256_crypt": 1_000_000, "sha512_crypt": 1_000_000}


def hash_password(password: str) -> str:
    """An argon2id hash (PHC string format) of ``password``, with a random salt."""
    return _HASHER.hash(password)


def verify_password(stored_hash: str, password: str) -> bool:
    """Whether ``password`` matches ``stored_hash``; ``False`` (never an error) otherwise.

    ``stored_hash`` is argon2id, or one of the htpasswd forms of
    :func:`check_htpasswd_hash`. A malformed or unsupported one is a mismatch too.
    """
    if not stored_hash.startswith("$argon2"):
        return _verify_htpasswd(stored_hash, password)
    try:
        return bool(_HASHER.verify(stored_hash, password))
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def needs_rehash(stored_hash: str) -> bool:
    """Whether ``stored_hash`` is not argon2id with our parameters (rehash it): an
    htpasswd hash always is."""
    if not stored_hash.startswith("$argon2id$"):
        return True
    try:
        return _HASHER.check_needs_rehash(stored_hash)
    except (InvalidHashError, ValueError):
        return True


def check_htpasswd_hash(value: str) -> str:
    """``value`` if it is a hash of a form we verify (see the module's docstring);
    ``ValueError`` naming the problem otherwise."""
    if value.startswith("{SHA}"):
        raise ValueError(
            "{SHA} is an unsalted SHA-1 hash, too weak to keep; make the line again with "
            "htpasswd -nbB (bcrypt)"
        )
    scheme = _HTPASSWD.identify(value, required=False)
    if scheme is None:
        raise ValueError(
            "not a hash htpasswd makes with a salt: bcrypt ($2y$), Apache MD5 ($apr1$) or "
            "SHA-crypt ($5$, $6$); make the line with htpasswd -nbB"
        )
    try:
        with warnings.catch_warnings():
            # e.g. a bcrypt salt with stray padding bits: no htpasswd writes one
            warnings.simplefilter("error", PasslibHashWarning)
            parsed = _HTPASSWD.handler(scheme).from_string(value)
    except (ValueError, PasslibHashWarning) as exc:
        raise ValueError(f"a malformed {scheme} hash: {exc}") from None
    if not getattr(parsed, "checksum", None):
        raise ValueError(f"a malformed {scheme} hash: it has no checksum (only a salt)")
    rounds = getattr(parsed, "rounds", None)
    if scheme in _MAX_ROUNDS and rounds is not None and rounds > _MAX_ROUNDS[scheme]:
        raise ValueError(
            f"a {scheme} hash of cost {rounds} (at most {_MAX_ROUNDS[scheme]}): every "
            "sign-in would take too long"
        )
    return value


def parse_htpasswd_line(line: str) -> tuple[str, str]:
    """``(user, hash)`` of an htpasswd line ``user:hash``; ``ValueError`` if it is not
    one with a hash :func:`check_htpasswd_hash` takes."""
    user, colon, stored_hash = line.strip().partition(":")
    if not colon or not user:
        raise ValueError("an htpasswd line is user:hash, as htpasswd -nbB USER PASSWORD prints")
    return user, check_htpasswd_hash(stored_hash.strip())


def _verify_htpasswd(stored_hash: str, password: str) -> bool:
    try:
        handler = _HTPASSWD.identify(stored_hash, resolve=True, required=False)
        if handler is None:
            return False
        if handler.name == "bcrypt" and len(password.encode()) > _BCRYPT_MAX_BYTES:
            # As for client secrets: a longer password must not pass on its prefix alone.
            return False
        return bool(handler.verify(password, stored_hash))
    except (ValueError, TypeError):  # a malformed hash, a NUL in the password
        return False


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
