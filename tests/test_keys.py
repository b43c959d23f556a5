"""Signing keys: rotation, JWKS, workers agreeing, encryption at rest, algorithms."""

from __future__ import annotations

import base64
import threading
import time
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jwt
import pytest
import requests
import sqlalchemy as sa
from cryptography.fernet import Fernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from flask import Flask

from authserver.clock import ManualClock
from authserver.keys import KeyDecryptionError, KeyEncryptor, KeyManager, RotationSchedule
from authserver.keys.encryption import derive_fernet
from authserver.keys.schedule import CreateKey, WithdrawOlder
from authserver.storage.keys import SqlKeyRepository
from authserver.storage.models import db

from .conftest import AppFactory
from .support.factories import SECRETS, standard_config
from .support.servers import free_port, start_server, stop_server

DAY = 86400.0


def engine_of(app: Flask) -> sa.Engine:
    with app.app_context():
        return db.engine


def manager(
    app: Flask, clock: ManualClock, secret: bytes = b"k" * 40, **options: Any
) -> KeyManager:
    settings: dict[str, Any] = {
        "algorithm": "RS256",
        "rotate_every": 30 * DAY,
        "publish_ahead": 600.0,
        "token_ttl": 3600.0,
        "refresh_every": 0.0,  # every call re-reads, as if a refresh interval had passed
    }
    settings.update(options)
    return KeyManager(
        SqlKeyRepository(engine_of(app)), KeyEncryptor(secret), clock=clock, **settings
    )


def kids(keys: KeyManager) -> list[str]:
    return [k["kid"] for k in keys.jwks()["keys"]]


def signing_kid(keys: KeyManager) -> str:
    token = keys.sign({"typ": "at+jwt"}, {"iss": "x", "exp": 2**31})
    return str(jwt.get_unverified_header(token)["kid"])


def test_schedule_publishes_before_signing_and_retires_after_expiry(app: Flask) -> None:
    clock = ManualClock()
    keys = manager(app, clock)
    first = signing_kid(keys)
    assert kids(keys) == [first]
    old_token = keys.sign({"typ": "at+jwt"}, {"iss": "x", "exp": int(clock.now() + 3600)})

    # Not yet due: nothing new.
    clock.advance(29 * DAY)
    assert kids(keys) == [first]

    # Due (rotate_every - publish_ahead): the next key is published but does not sign yet.
    clock.advance(DAY - 600 + 1)
    published = kids(keys)
    assert len(published) == 2
    second = next(k for k in published if k != first)
    assert signing_kid(keys) == first
    statuses = {s.kid: s.state for s in keys.statuses()}
    assert statuses == {first: "active", second: "next"}

    # Activation: the new key signs; the old one stays published for its tokens.
    clock.advance(600)
    assert signing_kid(keys) == second
    assert set(kids(keys)) == {first, second}
    assert keys.verify(old_token).header["kid"] == first

    # Once every token of the old key has expired (ttl + leeway), it leaves JWKS.
    clock.advance(3600 + 61)
    assert kids(keys) == [second]
    assert {s.kid: s.state for s in keys.statuses()}[first] == "expired"


def test_workers_agree_on_the_signing_key(app: Flask) -> None:
    clock = ManualClock()
    workers = [manager(app, clock) for _ in range(4)]
    assert len({signing_kid(w) for w in workers}) == 1
    workers[0].rotate()
    assert len({signing_kid(w) for w in workers}) == 1  # still the old one: not active yet
    clock.advance(601)
    assert len({signing_kid(w) for w in workers}) == 1  # all switch together, by time


def test_concurrent_workers_create_one_key_per_generation(app: Flask) -> None:
    clock = ManualClock()
    workers = [manager(app, clock) for _ in range(8)]
    barrier = threading.Barrier(len(workers))
    results: list[str] = []

    def boot(worker: KeyManager) -> None:
        barrier.wait()
        results.append(signing_kid(worker))

    threads = [threading.Thread(target=boot, args=(w,)) for w in workers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(results)) == 1
    with engine_of(app).connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM signing_keys")).scalar() == 1


def test_rotate_now_signs_at_once_and_withdraws_the_old_key(app: Flask) -> None:
    """The answer to a compromised key: its tokens stop verifying, it leaves JWKS."""
    clock = ManualClock()
    keys = manager(app, clock)
    old_kid = signing_kid(keys)
    old_token = keys.sign({"typ": "at+jwt"}, {"iss": "x", "exp": int(clock.now() + 3600)})
    new = keys.rotate(immediate=True)
    assert signing_kid(keys) == new.kid
    # Until every worker signs with the new key, the old one stays published, so that
    # what a worker that has not switched yet signs still verifies (issue 9.4).
    assert sorted(kids(keys)) == sorted([new.kid, old_kid])
    assert keys.verify(old_token).claims["iss"] == "x"
    keys.withdraw_before(new)
    assert kids(keys) == [new.kid]
    with pytest.raises(ValueError, match=r"."):
        keys.verify(old_token)
    # Another worker sees the same at its next refresh.
    assert old_kid not in kids(manager(app, clock))


def test_an_immediate_rotation_finishes_by_itself(app: Flask) -> None:
    """Should ``keys rotate --now`` die before it withdraws the old keys, the workers'
    own refresh does it once every worker has had the time to switch."""
    clock = ManualClock()
    keys = manager(app, clock)
    old_kid = signing_kid(keys)
    new = keys.rotate(immediate=True)
    other = manager(app, clock)
    assert sorted(kids(other)) == sorted([new.kid, old_kid])
    clock.advance(keys.propagation_seconds + 1)
    assert kids(manager(app, clock)) == [new.kid]
    # A plain rotation is never taken for one: its old key stays until it retires.
    plain = keys.rotate()
    clock.advance(keys.propagation_seconds + 1)
    assert sorted(kids(manager(app, clock))) == sorted([new.kid, plain.kid])


def test_plain_rotate_keeps_old_tokens_valid(app: Flask) -> None:
    clock = ManualClock()
    keys = manager(app, clock)
    old_token = keys.sign({"typ": "at+jwt"}, {"iss": "x", "exp": int(clock.now() + 3600)})
    new = keys.rotate()
    clock.advance(601)
    assert signing_kid(keys) == new.kid
    assert keys.verify(old_token).claims["iss"] == "x"


def test_workers_racing_to_schedule_the_next_key_make_one(app: Flask) -> None:
    clock = ManualClock()
    signing_kid(manager(app, clock))
    clock.advance(30 * DAY - 300)  # the next key is due
    workers = [manager(app, clock) for _ in range(8)]
    barrier = threading.Barrier(len(workers))

    def refresh(worker: KeyManager) -> None:
        barrier.wait()
        worker.jwks()

    threads = [threading.Thread(target=refresh, args=(w,)) for w in workers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    with engine_of(app).connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM signing_keys")).scalar() == 2


class FlakyRepository:
    """A repository whose database goes away on demand."""

    def __init__(self, inner: SqlKeyRepository) -> None:
        self.inner = inner
        self.down = False

    def list(self) -> list[Any]:
        if self.down:
            raise ConnectionError("database unreachable")
        return self.inner.list()

    def add(self, record: Any) -> bool:
        return self.inner.add(record)

    def withdraw_older_than(self, generation: int) -> None:
        self.inner.withdraw_older_than(generation)


def test_signing_goes_on_through_a_short_database_outage(app: Flask) -> None:
    repository = FlakyRepository(SqlKeyRepository(engine_of(app)))
    clock = ManualClock()
    keys = KeyManager(
        repository,
        KeyEncryptor(b"k" * 40),
        algorithm="RS256",
        rotate_every=30 * DAY,
        publish_ahead=600.0,
        token_ttl=3600.0,
        clock=clock,
        refresh_every=0.0,
    )
    kid = signing_kid(keys)
    repository.down = True
    assert signing_kid(keys) == kid
    assert [k["kid"] for k in keys.jwks()["keys"]] == [kid]
    keys.MAX_STALE_SECONDS = 0.5  # past the grace period, the outage shows
    clock.advance(1.1)  # past the one-second pause between retries, too
    with pytest.raises(ConnectionError):
        keys.jwks()


def test_private_keys_are_encrypted_at_rest(app: Flask) -> None:
    keys = manager(app, ManualClock())
    signing_kid(keys)
    with engine_of(app).connect() as conn:
        stored = conn.execute(sa.text("SELECT private_key_encrypted FROM signing_keys")).scalar()
    assert b"PRIVATE KEY" not in bytes(stored)
    other = manager(app, ManualClock(), secret=b"another secret, 40 characters long......")
    with pytest.raises(KeyDecryptionError, match="secret_key changed"):
        other.jwks()


def test_algorithm_change_rolls_over_to_a_key_of_the_new_algorithm(app: Flask) -> None:
    clock = ManualClock()
    signing_kid(manager(app, clock))
    keys = manager(app, clock, algorithm="ES256")
    token = keys.sign({"typ": "at+jwt"}, {"iss": "x", "exp": 2**31})
    assert jwt.get_unverified_header(token)["alg"] == "RS256"  # published first, then signs
    clock.advance(601)
    token = keys.sign({"typ": "at+jwt"}, {"iss": "x", "exp": 2**31})
    assert jwt.get_unverified_header(token)["alg"] == "ES256"


@pytest.mark.parametrize(
    ("algorithm", "kty"), [("RS256", "RSA"), ("ES256", "EC"), ("EdDSA", "OKP")]
)
def test_each_algorithm_signs_tokens_pyjwt_verifies(
    make_app: AppFactory, algorithm: str, kty: str
) -> None:
    app = make_app(signing={"algorithm": algorithm})
    client = app.test_client()
    response = client.post(
        "/oauth2/token", data={"grant_type": "client_credentials"}, auth=("ci", SECRETS["ci"])
    )
    assert response.status_code == 200, response.text
    token = response.json["access_token"]
    jwks = client.get("/.well-known/jwks.json").json
    # the access-token key, then (for ES256/EdDSA) the RS256 key of ID tokens
    expected = [kty] if algorithm == "RS256" else [kty, "RSA"]
    assert [k["kty"] for k in jwks["keys"]] == expected
    key = jwt.PyJWK(jwks["keys"][0])
    claims = jwt.decode(token, key, algorithms=[algorithm], audience="https://api.example.com")
    assert claims["client_id"] == "ci"
    assert jwt.get_unverified_header(token)["alg"] == algorithm


def test_jwks_cache_control_fits_the_schedule(make_app: AppFactory) -> None:
    app = make_app(signing={"publish_ahead": "20m"})
    response = app.test_client().get("/.well-known/jwks.json")
    assert response.headers["Cache-Control"] == "public, max-age=600"


@pytest.mark.live
def test_live_rotation_publishes_first_and_keeps_old_tokens_valid(tmp_path: Path) -> None:
    """`authserver keys rotate` on a running server (gunicorn, two workers)."""
    port = free_port()
    issuer = f"http://127.0.0.1:{port}"
    config = standard_config(issuer, f"sqlite:///{tmp_path / 'db.sqlite'}", tmp_path / "secret_key")
    config["signing"] = {"algorithm": "RS256", "publish_ahead": "4s"}
    server = start_server(tmp_path, config, port)
    try:

        def token() -> str:
            response = requests.post(
                issuer + "/oauth2/token",
                data={"grant_type": "client_credentials"},
                auth=("ci", SECRETS["ci"]),
                timeout=10,
            )
            assert response.status_code == 200
            return str(response.json()["access_token"])

        def jwks_kids() -> set[str]:
            return {
                k["kid"]
                for k in requests.get(issuer + "/.well-known/jwks.json", timeout=5).json()["keys"]
            }

        old_token = token()
        old_kid = jwt.get_unverified_header(old_token)["kid"]
        rotated = server.cli("keys", "rotate")
        assert rotated.returncode == 0, rotated.stderr
        new_kid = rotated.stdout.split()[2]

        first_published: float | None = None
        first_signed: float | None = None
        deadline = time.monotonic() + 30
        while first_signed is None and time.monotonic() < deadline:
            if first_published is None and new_kid in jwks_kids():
                first_published = time.monotonic()
            if jwt.get_unverified_header(token())["kid"] == new_kid:
                first_signed = time.monotonic()
                assert first_published is not None, "a token was signed by a key not yet in JWKS"
            time.sleep(0.1)
        assert first_signed is not None
        assert first_published is not None
        assert first_signed - first_published > 1.0

        # The token signed before the rotation still validates, from a fresh JWKS fetch.
        key = jwt.PyJWKClient(issuer + "/.well-known/jwks.json").get_signing_key_from_jwt(old_token)
        claims = jwt.decode(
            old_token, key, algorithms=["RS256"], audience="https://api.example.com"
        )
        assert claims["sub"] == "ci"
        assert {old_kid, new_kid} <= jwks_kids()

        listed = server.cli("keys", "list")
        assert listed.returncode == 0, listed.stderr
        states = {line.split()[0]: line.split()[2] for line in listed.stdout.splitlines()[1:]}
        assert states == {new_kid: "active", old_kid: "retired"}
    finally:
        stop_server(server)


def test_retired_until_is_ttl_after_successor_activates(app: Flask) -> None:
    clock = ManualClock()
    keys = manager(app, clock)
    first = signing_kid(keys)
    new = keys.rotate()
    clock.advance(601)
    status = {s.kid: s for s in keys.statuses()}
    assert status[first].state == "retired"
    until = status[first].published_until
    assert until is not None
    expected = new.activates_at + timedelta(seconds=3600 + 60)
    assert abs((until - expected).total_seconds()) < 1
    assert until > datetime.fromtimestamp(clock.now(), UTC)


# -- the pure parts: the schedule and the encryption helper ---------------------------


@dataclass(frozen=True)
class Key:
    kid: str
    generation: int
    algorithm: str
    created_at: datetime
    activates_at: datetime


T0 = datetime(2026, 1, 1, tzinfo=UTC)
SCHEDULE = RotationSchedule(
    algorithm="RS256",
    rotate_every=timedelta(days=30),
    publish_ahead=timedelta(minutes=10),
    token_ttl=timedelta(hours=1),
    propagation=timedelta(seconds=11),
)


def test_schedule_is_a_function_of_the_keys_and_the_time() -> None:
    assert SCHEDULE.next_step([], T0) == CreateKey(T0)  # the first key signs at once
    first = Key("a", 1, "RS256", T0, T0)
    assert SCHEDULE.next_step([first], T0 + timedelta(days=29)) is None
    due = T0 + timedelta(days=30) - timedelta(minutes=10)
    assert SCHEDULE.next_step([first], due) == CreateKey(T0 + timedelta(days=30))
    second = Key("b", 2, "RS256", due, T0 + timedelta(days=30))
    keys = [first, second]
    assert SCHEDULE.next_step(keys, due) is None
    assert [k.kid for k in SCHEDULE.published(keys, due)] == ["b", "a"]
    assert {s.kid: s.state for s in SCHEDULE.statuses(keys, due)} == {"a": "active", "b": "next"}
    retired = second.activates_at + timedelta(hours=1, seconds=59)
    assert {s.kid: s.state for s in SCHEDULE.statuses(keys, retired)}["a"] == "retired"
    assert [k.kid for k in SCHEDULE.published(keys, retired + timedelta(seconds=2))] == ["b"]
    # another configured algorithm: a key of it is published first, then signs
    other = replace(SCHEDULE, algorithm="ES256")
    assert other.next_step([first], T0) == CreateKey(T0 + timedelta(minutes=10))


def test_schedule_finishes_an_immediate_rotation_after_propagation() -> None:
    first = Key("a", 1, "RS256", T0, T0)
    at = T0 + timedelta(days=1)
    urgent = Key("b", 2, "RS256", at, SCHEDULE.activation_of_rotation(at, immediate=True))
    assert SCHEDULE.next_step([first, urgent], at + timedelta(seconds=10)) is None
    assert SCHEDULE.next_step([first, urgent], at + timedelta(seconds=11)) == WithdrawOlder(2)


def test_encryption_helper_reads_what_was_stored_before() -> None:
    """Private keys and retry-cache entries written before the shared helper stay
    readable: the same HKDF (RFC 5869) and Fernet, byte for byte."""
    secret = b"k" * 40
    for purpose in (b"authserver signing-key encryption", b"authserver refresh retry"):
        derived = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=purpose).derive(secret)
        stored = Fernet(base64.urlsafe_b64encode(derived)).encrypt(b"private")
        assert derive_fernet(secret, purpose).decrypt(stored) == b"private"
    assert (
        KeyEncryptor(secret).decrypt(
            derive_fernet(secret, b"authserver signing-key encryption").encrypt(b"pem")
        )
        == b"pem"
    )
