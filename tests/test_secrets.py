"""Client secret verification and its cache (never lets a wrong or changed secret in)."""

from __future__ import annotations

import base64

import pytest
from argon2 import PasswordHasher

from authserver.oauth import secrets as secrets_module
from authserver.oauth.secrets import SecretVerifier, check_secret, hash_secret

from .support.factories import bcrypt_hash


@pytest.mark.parametrize(
    "make_hash",
    [
        bcrypt_hash,
        lambda s: base64.b64encode(bcrypt_hash(s).encode()).decode(),
        lambda s: PasswordHasher(time_cost=1, memory_cost=8192).hash(s),
        lambda s: bcrypt_hash(s).replace("$2b$", "$2a$", 1),
        lambda s: bcrypt_hash(s).replace("$2b$", "$2y$", 1),
    ],
    ids=["bcrypt", "base64-bcrypt", "argon2id", "2a", "2y"],
)
def test_hash_formats(make_hash: object) -> None:
    stored = make_hash("s3cret-value")  # type: ignore[operator]
    assert check_secret("s3cret-value", stored)
    assert not check_secret("s3cret-valuE", stored)
    assert not check_secret("", stored)


def test_bcrypt_does_not_accept_a_secret_on_its_72_byte_prefix() -> None:
    secret = "a" * 72
    stored = bcrypt_hash(secret)
    assert check_secret(secret, stored)
    assert not check_secret(secret + "extra", stored)


def test_hash_secret_makes_verifiable_hashes() -> None:
    assert check_secret("x" * 20, hash_secret("x" * 20))
    assert check_secret("y" * 20, hash_secret("y" * 20, "argon2id"))


class CountingCheck:
    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, secret: str, stored: str) -> bool:
        self.calls += 1
        return check_secret(secret, stored)


def test_cache_skips_the_slow_check_only_for_a_secret_that_verified(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    counting = CountingCheck()
    monkeypatch.setattr(secrets_module, "check_secret", counting)
    verifier = SecretVerifier()
    stored = bcrypt_hash("right-secret")

    assert verifier.verify("right-secret", stored)
    assert counting.calls == 1
    assert verifier.verify("right-secret", stored)
    assert verifier.verify("right-secret", stored)
    assert counting.calls == 1  # served by the cache

    # A wrong secret always pays the full check, and never passes.
    for _ in range(3):
        assert not verifier.verify("wrong-secret", stored)
    assert counting.calls == 4

    # A changed stored hash (rotation) is a different cache entry: full check again.
    rotated = bcrypt_hash("new-secret")
    assert not verifier.verify("right-secret", rotated)
    assert verifier.verify("new-secret", rotated)
    assert counting.calls == 6


def test_cache_is_bounded() -> None:
    verifier = SecretVerifier(max_entries=2)
    hashes = [bcrypt_hash(f"secret-{i}") for i in range(3)]
    for i, stored in enumerate(hashes):
        assert verifier.verify(f"secret-{i}", stored)
    assert len(verifier._cache) == 2
