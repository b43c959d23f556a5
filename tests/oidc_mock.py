"""A real upstream IdP for federation tests: ``oidc-provider-mock`` in its own process.

The mock (https://github.com/geigerzaehler/oidc-provider-mock) accepts any
``client_id``/``client_secret`` and any redirect URI unless started with
``--require-registration``, which we do not pass. Its authorization page is a form
with a single ``sub`` field (and a "deny" button); the claims of that ``sub`` come
from ``PUT /users/<sub>`` (a JSON object of claims), registered before the person
submits the form. Non-standard claims such as ``groups`` go into the ID token and
/userinfo whatever the scopes; ``email`` needs the ``email`` scope. It supports the
scopes ``openid profile email address phone`` only (no ``groups`` scope).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

import requests

from .support.servers import free_port, http_probe, spawn, stop_process, wait_until_serving

#: The scopes the mock advertises (and keeps; it drops the others silently).
MOCK_SCOPES = ("openid", "profile", "email")


@dataclass
class MockIdP:
    url: str
    process: subprocess.Popen[bytes]
    log_path: Path

    @property
    def issuer(self) -> str:
        """The ``iss`` of its ID tokens: the host URL it was reached at."""
        return self.url

    def set_user(self, sub: str, **claims: Any) -> None:
        """Register (or replace) the claims the mock puts in ``sub``'s tokens."""
        response = requests.put(f"{self.url}/users/{sub}", json=claims, timeout=10)
        assert response.status_code == 204, (response.status_code, response.text)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def sign_in_at_mock(
    session: requests.Session, authorize_url: str, sub: str, *, deny: bool = False
) -> requests.Response:
    """Play the person at the mock's authorization page: type ``sub`` and submit it
    (or press "Deny"). Returns the mock's redirect back to the relying party (not
    followed)."""
    page = session.get(authorize_url, allow_redirects=False, timeout=10)
    assert page.status_code == 200, (page.status_code, page.text[:1000])
    assert 'name="sub"' in page.text, page.text[:1000]
    # The form has no action: it posts to the page's own URL, query string included.
    data = {"action": "deny"} if deny else {"sub": sub}
    response = session.post(authorize_url, data=data, allow_redirects=False, timeout=10)
    assert response.status_code == 302, (response.status_code, response.text[:1000])
    response.headers["Location"] = urljoin(authorize_url, response.headers["Location"])
    return response


def start_mock_idp(workdir: Path, port: int | None = None) -> MockIdP:
    """Start the mock on 127.0.0.1 (a free port unless given); returns once its
    discovery document answers."""
    port = port or free_port()
    workdir.mkdir(parents=True, exist_ok=True)
    exe = Path(sys.executable).with_name("oidc-provider-mock")
    command = [str(exe)] if exe.exists() else [sys.executable, "-m", "oidc_provider_mock"]
    process = spawn(
        [*command, "--host", "127.0.0.1", "--port", str(port)],
        cwd=workdir,
        log_path=workdir / "oidc-provider-mock.log",
        env={**os.environ, "NO_COLOR": "1"},
    )
    idp = MockIdP(f"http://127.0.0.1:{port}", process, workdir / "oidc-provider-mock.log")
    wait_until_serving(
        process,
        http_probe(
            idp.url + "/.well-known/openid-configuration",
            lambda r: r.status_code == 200 and r.json().get("issuer") == idp.url,
        ),
        what="oidc-provider-mock",
        log=idp.log,
        timeout=30,
        interval=0.1,
    )
    return idp


def stop_mock_idp(idp: MockIdP) -> None:
    stop_process(idp.process, grace=10)


@contextmanager
def mock_idp(workdir: Path) -> Iterator[MockIdP]:
    """``with mock_idp(tmp) as idp:`` (or ``yield from`` it in a fixture)."""
    idp = start_mock_idp(workdir)
    try:
        yield idp
    finally:
        stop_mock_idp(idp)
