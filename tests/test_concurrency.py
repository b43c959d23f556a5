"""Single use under concurrency, against a real server (gunicorn, 2 workers x 2 threads).

Twenty clients released at once by a barrier: one authorization code is redeemed
exactly once (Redis GETDEL / SQL DELETE ... RETURNING), and one refresh token has
exactly one successor: every success carries the same new refresh token, so a race
never forks a family. Run on SQLite and on PostgreSQL + Redis.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
import sqlalchemy as sa

from .support.factories import database_url, new_user, token_row
from .support.flows import (
    OFFLINE_SCOPE,
    REDIRECT_URI,
    assert_oauth_error,
    code_for,
    live_tokens,
    redeem,
    refresh,
    signed_in_session,
)
from .support.servers import LiveServer

CLIENTS = 20
ROUNDS = 3


@pytest.fixture(scope="module")
def live_user(live_server: LiveServer) -> str:
    return new_user(live_server)


def all_at_once(request: Callable[[], requests.Response]) -> list[requests.Response]:
    """``request`` from CLIENTS threads, released together."""
    barrier = threading.Barrier(CLIENTS)

    def one(_: int) -> requests.Response:
        barrier.wait(timeout=60)
        return request()

    with ThreadPoolExecutor(CLIENTS) as pool:
        return list(pool.map(one, range(CLIENTS)))


def family_size(url: str, family_id: str) -> int:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            count = conn.execute(
                sa.text("SELECT count(*) FROM refresh_tokens WHERE family_id = :f"),
                {"f": family_id},
            ).scalar_one()
    finally:
        engine.dispose()
    return int(count)


def test_one_code_is_redeemed_once(live_server: LiveServer, live_user: str) -> None:
    session = signed_in_session(live_server.url, live_user)
    for _ in range(ROUNDS):
        code, verifier, _ = code_for(
            session, live_server.url, redirect_uri=REDIRECT_URI, scope=OFFLINE_SCOPE
        )
        responses = all_at_once(lambda c=code, v=verifier: redeem(live_server.url, c, v))
        statuses = sorted(r.status_code for r in responses)
        assert statuses == [200] + [400] * (CLIENTS - 1), [r.text for r in responses]
        for response in responses:
            if response.status_code != 200:
                assert_oauth_error(response, "invalid_grant")


def test_replayed_code_revokes_what_it_issued(live_server: LiveServer, live_user: str) -> None:
    """RFC 6749 §4.1.2: a code used twice; the tokens issued from it are revoked."""
    session = signed_in_session(live_server.url, live_user)
    code, verifier, _ = code_for(
        session, live_server.url, redirect_uri=REDIRECT_URI, scope=OFFLINE_SCOPE
    )
    first = redeem(live_server.url, code, verifier)
    assert first.status_code == 200, first.text
    assert_oauth_error(redeem(live_server.url, code, verifier), "invalid_grant")
    assert_oauth_error(refresh(live_server.url, first.json()["refresh_token"]), "invalid_grant")


def test_one_refresh_token_has_one_successor(live_server: LiveServer, live_user: str) -> None:
    token = live_tokens(live_server, live_user)["refresh_token"]
    url = database_url(live_server)
    row = token_row(url, token)
    assert row is not None
    family_id = row["family_id"]
    for round_ in range(ROUNDS):
        responses = all_at_once(lambda t=token: refresh(live_server.url, t))
        ok = [r.json() for r in responses if r.status_code == 200]
        assert ok, [r.text for r in responses]
        for response in responses:
            if response.status_code != 200:
                assert_oauth_error(response, "invalid_grant")
        successors = {body["refresh_token"] for body in ok}
        assert len(successors) == 1, f"{len(successors)} different successors: the family forked"
        assert len({body["access_token"] for body in ok}) == 1
        # Exactly one new member was stored, in the same family.
        assert family_size(url, family_id) == round_ + 2
        token = successors.pop()
        successor = token_row(url, token)
        assert successor is not None
        assert successor["family_id"] == family_id
        assert successor["revoked_at"] is None
    # The last successor still works (the storm was not taken for theft).
    final = refresh(live_server.url, token)
    assert final.status_code == 200, final.text
