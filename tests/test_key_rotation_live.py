"""Issue 9.4: ``authserver keys rotate --now`` against a live server (gunicorn, two
workers) under load. Once the command returns, no worker signs with or publishes a
withdrawn key; while it runs, a token signed with the old key is one still published
(the old key is withdrawn only once every worker has switched)."""

from __future__ import annotations

import base64
import json
import re
import shutil
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from .support.factories import SECRETS
from .support.flows import client_credentials
from .support.servers import (
    LiveServer,
    serving,
)

pytestmark = pytest.mark.live


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveServer]:
    def publish_soon(config: dict[str, Any]) -> None:
        # A short publish_ahead makes workers re-read the key list every 5 s (not 10 s),
        # so the command waits 2 x 6 s.
        config["signing"]["publish_ahead"] = "20s"

    workdir = tmp_path_factory.mktemp("rotate")
    with serving(request, workdir, publish_soon) as live:
        yield live
    shutil.rmtree(workdir, ignore_errors=True)


def kid_of(token: str) -> str:
    header = token.split(".")[0]
    return str(json.loads(base64.urlsafe_b64decode(header + "=" * (-len(header) % 4)))["kid"])


def issue(url: str) -> str:
    response = client_credentials(url)
    assert response.status_code == 200, response.text
    return str(response.json()["access_token"])


def published(url: str) -> set[str]:
    jwks = requests.get(url + "/.well-known/jwks.json", timeout=10)
    assert jwks.status_code == 200
    return {key["kid"] for key in jwks.json()["keys"]}


def test_after_rotate_now_returns_no_worker_signs_with_or_publishes_the_old_key(
    server: LiveServer,
) -> None:
    url = server.url
    before = issue(url)
    old_kid = kid_of(before)
    seen: list[tuple[float, str, set[str]]] = []  # (when, token kid, kids published)
    stop = threading.Event()

    def load() -> None:
        while not stop.is_set():
            token = issue(url)
            seen.append((time.monotonic(), kid_of(token), published(url)))

    loaders = [threading.Thread(target=load, daemon=True) for _ in range(2)]
    for loader in loaders:
        loader.start()
    try:
        time.sleep(1)
        rotated = server.cli("keys", "rotate", "--now")
        returned = time.monotonic()
        assert rotated.returncode == 0, rotated.stderr
        time.sleep(3)
    finally:
        stop.set()
        for loader in loaders:
            loader.join(timeout=30)
    match = re.search(r"new key (\S+) \(RS256\) published", rotated.stdout)
    assert match, rotated.stdout
    new_kid = match.group(1)

    during = [entry for entry in seen if entry[0] < returned]
    after = [entry for entry in seen if entry[0] >= returned]
    assert during
    assert after
    # While the command ran, a token signed with the old key was one still published.
    for _, kid, kids in during:
        assert kid == new_kid or old_kid in kids, (kid, kids)
    # Once it returned: the new key only, from every worker.
    assert {kid for _, kid, _ in after} == {new_kid}
    assert all(kids == {new_kid} for _, _, kids in after), {frozenset(k) for *_, k in after}
    # The old key's tokens no longer verify here.
    introspected = requests.post(
        url + "/oauth2/introspect",
        data={"token": before},
        auth=("rs", SECRETS["rs"]),
        timeout=10,
    )
    assert introspected.status_code == 200, introspected.text
    assert introspected.json() == {"active": False}
    assert "older keys withdrawn on every worker" in rotated.stdout
    assert "Traceback" not in server.log(), server.log()[-3000:]
