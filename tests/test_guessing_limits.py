"""Guessing costs the guesser (issue 9.9-9.11, 16.10), against a live server with the
default limits, on both backends.

Addresses are told apart as behind a reverse proxy: the server trusts 127.0.0.1 as a
forwarder and each simulated client sends its own ``X-Forwarded-For``.

* Client secrets: past 10 failures per client and address, ``invalid_client`` with 429
  and ``Retry-After``, without checking the secret; a right secret already verified
  still passes; past 100 failures of a client from everywhere only addresses that
  failed themselves are refused, so the owner at a clean address gets through.
* Sign-in: 10 addresses x 10 wrong passwords do not lock the owner out of a fresh
  address (issue 9.10); throttled attempts write one audit row a minute (9.11).
* Audit rows for failures and refusals are aggregated: bounded by the addresses, not
  by the attempts.
* An unknown client id costs the bcrypt check a wrong secret costs (16.10).
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from typing import Any

import pytest
import requests
import sqlalchemy as sa
from flask import Flask

from authserver.oauth import secrets as secret_checks

from .conftest import BACKENDS
from .support.factories import PASSWORD, SECRETS, database_url
from .support.flows import login
from .support.servers import (
    LiveServer,
    serving,
)

pytestmark = pytest.mark.live


@pytest.fixture(scope="module", params=BACKENDS)
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[LiveServer, str]]:
    """A live server with the default rate limits, trusting 127.0.0.1 as a proxy;
    and its database URL."""

    def trust_loopback(config: dict[str, Any]) -> None:
        config["trusted_forwarders"] = ["127.0.0.1/32"]

    workdir = tmp_path_factory.mktemp("limits")
    with serving(request, workdir, trust_loopback) as live:
        yield live, database_url(live)
    shutil.rmtree(workdir, ignore_errors=True)


def token(live: LiveServer, client_id: str, secret: str, address: str) -> requests.Response:
    return requests.post(
        live.url + "/oauth2/token",
        data={"grant_type": "client_credentials"},
        auth=(client_id, secret),
        headers={"X-Forwarded-For": address},
        timeout=30,
    )


def audit_counts(database_url: str, *events: str) -> dict[str, int]:
    engine = sa.create_engine(database_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                sa.text(
                    "SELECT event, count(*) FROM audit_events WHERE event IN :events GROUP BY event"
                ).bindparams(sa.bindparam("events", expanding=True)),
                {"events": list(events)},
            ).all()
    finally:
        engine.dispose()
    return {event: 0 for event in events} | {str(e): int(n) for e, n in rows}


def test_client_secret_guessing_is_refused_past_the_limit(
    server: tuple[LiveServer, str],
) -> None:
    live, database_url = server
    before = audit_counts(database_url, "client_auth_failed", "client_auth_throttled")
    guesser = "198.51.100.7"
    for i in range(10):
        wrong = token(live, "ci", f"guess-{i}", guesser)
        assert wrong.status_code == 401, wrong.text
        assert wrong.json()["error"] == "invalid_client"
    for i in range(20):
        refused = token(live, "ci", f"guess-more-{i}", guesser)
        assert refused.status_code == 429, refused.text
        assert refused.json()["error"] == "invalid_client"
        assert 1 <= int(refused.headers["Retry-After"]) <= 60
    # the real secret from the guesser's address is refused too (a worker that
    # verified it before would let it pass: that needs no slow check)
    assert token(live, "ci", SECRETS["ci"], guesser).status_code == 429
    # the owner at another address: through
    assert token(live, "ci", SECRETS["ci"], "198.51.100.8").status_code == 200
    # another client from the guesser's address is not affected
    assert token(live, "ci-argon", SECRETS["ci-argon"], guesser).status_code == 200
    after = audit_counts(database_url, "client_auth_failed", "client_auth_throttled")
    # one row a minute per client and address, not one per attempt
    assert after["client_auth_failed"] - before["client_auth_failed"] == 1
    assert after["client_auth_throttled"] - before["client_auth_throttled"] == 1


def test_many_addresses_do_not_lock_the_client_out(server: tuple[LiveServer, str]) -> None:
    """101 failures for one client from 11 addresses: past the per-client limit only
    the addresses that failed are refused."""
    live, _ = server
    for n in range(11):
        for i in range(10 if n < 10 else 1):
            assert token(live, "reader", f"g{i}", f"203.0.113.{n}").status_code in (401, 429)
    # an address that failed: refused; a clean one: checked (right secret: 200)
    assert token(live, "reader", "another guess", "203.0.113.3").status_code == 429
    fresh = requests.post(
        live.url + "/oauth2/introspect",
        data={"token": "x"},
        auth=("reader", SECRETS["reader"]),
        headers={"X-Forwarded-For": "192.0.2.200"},
        timeout=30,
    )
    assert fresh.status_code == 200, fresh.text
    # a fresh address gets one check; once it failed it is refused too
    assert token(live, "reader", "one more", "192.0.2.201").status_code == 401
    assert token(live, "reader", "and again", "192.0.2.201").status_code == 429


def test_guessing_many_client_ids_is_limited_per_address(
    server: tuple[LiveServer, str],
) -> None:
    live, _ = server
    address = "198.51.100.99"
    statuses = [token(live, f"nobody-{i}", "s", address).status_code for i in range(31)]
    assert statuses[:30] == [401] * 30
    assert statuses[30] == 429


def test_the_owner_signs_in_after_a_distributed_password_guess(
    server: tuple[LiveServer, str],
) -> None:
    live, database_url = server
    created = live.cli(
        "users", "create", "olive", "--role", "user", "--password-stdin", input_text=PASSWORD + "\n"
    )
    assert created.returncode == 0, created.stderr
    for n in range(10):
        guesser = requests.Session()
        guesser.headers["X-Forwarded-For"] = f"10.20.30.{n}"
        for i in range(10):
            assert login(guesser, live.url, "olive", f"wrong guess {i}").status_code == 401
    blocked = requests.Session()
    blocked.headers["X-Forwarded-For"] = "10.20.30.4"
    before = audit_counts(database_url, "login_throttled")["login_throttled"]
    for _ in range(5):
        refused = login(blocked, live.url, "olive", PASSWORD)
        assert refused.status_code == 429
        assert int(refused.headers["Retry-After"]) >= 1
    assert audit_counts(database_url, "login_throttled")["login_throttled"] - before == 1
    owner = requests.Session()
    owner.headers["X-Forwarded-For"] = "10.99.0.1"
    assert login(owner, live.url, "olive", PASSWORD).status_code == 302
    # past the per-account limit a fresh address gets one try, then it is refused
    stranger = requests.Session()
    stranger.headers["X-Forwarded-For"] = "10.99.0.2"
    assert login(stranger, live.url, "olive", "a fresh guess").status_code == 401
    assert login(stranger, live.url, "olive", PASSWORD).status_code == 429


def test_an_unknown_client_id_costs_a_secret_check(
    module_app: Flask, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 16.10: the answer's time must not tell whether a client id exists."""
    checked: list[str] = []
    real = secret_checks.check_secret

    def counting(secret: str, stored_hash: str) -> bool:
        checked.append(secret)
        return real(secret, stored_hash)

    monkeypatch.setattr(secret_checks, "check_secret", counting)
    client = module_app.test_client()
    client.environ_base["REMOTE_ADDR"] = "192.0.2.77"
    for client_id in ("no-such-client", "ci"):
        response = client.post(
            "/oauth2/token",
            data={"grant_type": "client_credentials"},
            auth=(client_id, "wrong-secret"),
        )
        assert response.status_code == 401
    assert checked == ["wrong-secret", "wrong-secret"]
