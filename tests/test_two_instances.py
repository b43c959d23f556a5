"""Two ``authserver serve`` instances on one PostgreSQL and one Redis: the way the server
grows past one machine (README, "Running in production").

Both run the same config (issuer, database, Redis prefix, server secret) on different
ports, as two nodes behind a load balancer would, and whatever one of them issued or
decided holds at the other: signing keys, authorization codes, device codes, refresh
families (rotation, the retry cache, reuse detection), revocations, sign-outs and the
failure throttle.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import jwt
import pytest
import requests

from .support.factories import AUDIENCES, SECRETS, new_user
from .support.flows import (
    assert_oauth_error,
    authorize,
    code_for,
    decide,
    device_authorization,
    poll_once,
    redeem,
    refresh,
    signed_in_session,
)
from .support.servers import (
    LiveServer,
    free_port,
    live_config,
    start_server,
    stop_server,
    upgrade_with_cli,
)
from .test_oidc import assert_login_page, cli_params, is_signed_in, submit_form

pytestmark = pytest.mark.live

#: Wrong secrets one client may send from one address before it is refused (per minute).
THROTTLE = 3
RETRY_GRACE = 1  # seconds


@dataclass
class Pair:
    a: LiveServer
    b: LiveServer
    username: str


@pytest.fixture(scope="module", params=["postgresql+redis"])
def pair(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Pair]:
    workdir = tmp_path_factory.mktemp("two")
    port_a, port_b = free_port(), free_port()
    # One config for both: the issuer is the public URL both serve (here A's), the
    # server secret one file, the database and the Redis prefix the same.
    config = live_config(request, workdir, f"http://127.0.0.1:{port_a}")
    config["tokens"] = {
        **config["tokens"],
        "device_poll_interval": "1s",
        "refresh_retry_grace": f"{RETRY_GRACE}s",
    }
    config["rate_limits"] = {"client_auth_per_client_address": f"{THROTTLE}/minute"}
    upgrade_with_cli(workdir, config)
    # One worker each: what is shared between workers of one instance is tested elsewhere.
    a = start_server(workdir / "a", config, port_a, "--workers", "1")
    try:
        b = start_server(workdir / "b", config, port_b, "--workers", "1")
    except BaseException:
        stop_server(a)
        raise
    try:
        yield Pair(a, b, new_user(a))
    finally:
        stop_server(a)
        stop_server(b)
        shutil.rmtree(workdir, ignore_errors=True)


def client_token(url: str, client_id: str = "ci") -> str:
    response = requests.post(
        url + "/oauth2/token",
        data={"grant_type": "client_credentials", "scope": "read"},
        auth=(client_id, SECRETS[client_id]),
        timeout=30,
    )
    assert response.status_code == 200, response.text
    token: str = response.json()["access_token"]
    return token


def introspect(url: str, token: str) -> dict[str, Any]:
    response = requests.post(
        url + "/oauth2/introspect",
        data={"token": token},
        auth=("rs", SECRETS["rs"]),
        timeout=30,
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def test_a_token_from_one_verifies_at_the_other(pair: Pair) -> None:
    token = client_token(pair.a.url)
    jwks = requests.get(pair.b.url + "/.well-known/jwks.json", timeout=30).json()
    assert jwks == requests.get(pair.a.url + "/.well-known/jwks.json", timeout=30).json()
    key = jwt.PyJWKSet.from_dict(jwks)[jwt.get_unverified_header(token)["kid"]]
    claims = jwt.decode(
        token, key.key, algorithms=["RS256"], audience=AUDIENCES[0], issuer=pair.a.url
    )
    assert claims["client_id"] == "ci"
    assert introspect(pair.b.url, token)["active"] is True


def test_a_code_from_one_is_redeemed_once_at_either(pair: Pair) -> None:
    browser = signed_in_session(pair.a.url, pair.username)
    code, verifier, _ = code_for(browser, pair.a.url)
    redeemed = redeem(pair.b.url, code, verifier)
    assert redeemed.status_code == 200, redeemed.text
    assert introspect(pair.a.url, redeemed.json()["access_token"])["active"] is True
    assert_oauth_error(redeem(pair.a.url, code, verifier), "invalid_grant")


def test_a_device_approved_at_one_is_answered_at_the_other(pair: Pair) -> None:
    started = device_authorization(pair.a.url)
    assert_oauth_error(poll_once(pair.a.url, started["device_code"]), "authorization_pending")
    browser = signed_in_session(pair.b.url, pair.username)
    decided = decide(browser, pair.b.url, started["user_code"])
    assert decided.status_code == 200, decided.text
    time.sleep(started["interval"])  # the interval holds across instances too
    answered = poll_once(pair.a.url, started["device_code"])
    assert answered.status_code == 200, answered.text
    assert answered.json()["refresh_token"]
    assert_oauth_error(poll_once(pair.b.url, started["device_code"]), "invalid_grant")


def test_a_refresh_family_is_one_family_at_both(pair: Pair) -> None:
    browser = signed_in_session(pair.a.url, pair.username)
    code, verifier, _ = code_for(browser, pair.a.url)
    first = redeem(pair.a.url, code, verifier).json()["refresh_token"]
    rotated = refresh(pair.a.url, first)
    assert rotated.status_code == 200, rotated.text
    successor = rotated.json()["refresh_token"]
    # A retry at the other instance within the grace gets the same answer back (the
    # retry cache is in Redis) ...
    retried = refresh(pair.b.url, first)
    assert retried.status_code == 200, retried.text
    assert retried.json()["refresh_token"] == successor
    # ... and after it, the old token is a reuse: the whole family dies, everywhere.
    time.sleep(RETRY_GRACE + 0.2)
    assert_oauth_error(refresh(pair.b.url, first), "invalid_grant")
    assert_oauth_error(refresh(pair.a.url, successor), "invalid_grant")


def test_a_token_revoked_at_one_is_inactive_at_the_other(pair: Pair) -> None:
    token = client_token(pair.a.url)
    revoked = requests.post(
        pair.b.url + "/oauth2/revoke",
        data={"token": token},
        auth=("ci", SECRETS["ci"]),
        timeout=30,
    )
    assert revoked.status_code == 200, revoked.text
    assert introspect(pair.a.url, token) == {"active": False}


def test_a_sign_out_at_one_holds_at_the_other(pair: Pair) -> None:
    browser = signed_in_session(pair.a.url, pair.username)
    copied = requests.Session()  # a copy of the sign-in cookie, kept after the sign-out
    copied.cookies.update(browser.cookies)
    assert is_signed_in(copied, pair.a)
    page = browser.get(pair.b.url + "/logout", timeout=30)
    assert submit_form(browser, pair.b, page).status_code == 200
    params, _ = cli_params()
    assert_login_page(authorize(copied, pair.a.url, params))


def test_wrong_secrets_counted_at_one_are_refused_at_the_other(pair: Pair) -> None:
    def attempt(url: str, secret: str) -> requests.Response:
        return requests.post(
            url + "/oauth2/token",
            data={"grant_type": "client_credentials"},
            auth=("ci-argon", secret),
            timeout=30,
        )

    for _ in range(THROTTLE):
        assert attempt(pair.a.url, "wrong-secret").status_code == 401
    refused = attempt(pair.b.url, "wrong-secret")
    assert_oauth_error(refused, "invalid_client", 429)
    assert int(refused.headers["Retry-After"]) > 0
    # Refused before the secret is checked: the right one (never verified at B) too.
    assert_oauth_error(attempt(pair.b.url, SECRETS["ci-argon"]), "invalid_client", 429)
