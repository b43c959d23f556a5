"""The real SkyPilot API server (``skypilot[server]`` from PyPI) for end-to-end tests.

SkyPilot's dependencies are heavy and clash with ours, so it lives in a venv of its
own: ``make skypilot-venv`` builds ``.venv-skypilot`` at the repository root (``make
test`` and ``.ci/run`` do it first). ``AUTHSERVER_TEST_SKYPILOT_PYTHON`` points at
another interpreter that has it. Without one the tests that need it are skipped,
except under CI (``CI`` set), where they fail.

:func:`start_skypilot` runs ``python -m sky.server.server`` with its oauth2-proxy
auth on (``SKYPILOT_AUTH_OAUTH2_PROXY_*``), in a temporary ``HOME`` and a minimal
environment, so it never sees the real home, cloud credentials or kubeconfig. What
SkyPilot 0.14.1 does with a forward-auth server (measured by
tests/test_skypilot_harness.py, which asserts it):

* A request from a loopback address with none of the usual proxy headers
  (``X-Forwarded-For``/``-Proto``/``-Host``, ``Forwarded``, ``X-Real-IP``,
  ``X-Client-IP``) skips auth entirely: :func:`skypilot_users` reads the user list
  that way. A browser or client must send ``X-Forwarded-Proto: http``
  (:data:`FORWARDED`) to be treated as coming through an ingress.
* Such a request is checked with ``GET <base>/oauth2/auth`` carrying only ``Host:
  <hostname, no port>``, ``X-Forwarded-Uri: <the full URL, scheme and port
  included, trailing "/" stripped>`` and the browser's cookies (no
  ``X-Forwarded-Proto``/``-Host``). A dashboard page load makes dozens of these
  (every asset and API call goes through it).
* 401 from it: ``307`` to ``<scheme>://<Host>/oauth2/start?rd=<quote(path[?query])>``
  on SkyPilot's own host (``/`` kept, the query quoted again: ``/a?b=c`` becomes
  ``rd=/a%3Fb%3Dc``). ``/api/health`` and ``/api/v1/auth/token`` pass anonymously.
* 202 with ``X-Auth-Request-Email``: the request passes, and the email becomes a
  user (``user_type`` ``"sso"``, id ``md5(email)[:8]``, role ``admin``: SkyPilot's
  default role). ``GET /api/health`` then names it under ``"user"`` (``null``
  anonymously); ``GET /users/role`` answers ``{"id", "name", "role"}``. Any other
  status: that status with ``{"detail": "oauth2-proxy error"}``. An unreachable
  auth server (seen, not asserted): 502 ``{"detail": "oauth2-proxy service
  unavailable"}`` for everything through it, ``/api/health`` and ``/oauth2/*``
  included.
* ``/oauth2/*`` is proxied to ``<base>/oauth2/*`` with every browser header (the
  original ``Host: localhost:<port>`` included), the cookies, and the query string
  (decoded and re-encoded), plus ``Content-Type: application/octet-stream`` and
  ``Content-Length: 0`` on a GET. The answer comes back with its status and
  headers, but each cookie is set again by SkyPilot: ``Path``, ``Max-Age``,
  ``HttpOnly`` and ``Secure`` are kept (``Domain`` and ``Expires`` too, by its
  code), ``SameSite`` always becomes ``lax``, and a value outside the cookie token
  characters comes back double-quoted (an ``@`` does it; the quotes are then part of
  the ``Cookie`` header the auth server gets). The upstream's last ``Set-Cookie``
  also passes through verbatim, ahead of SkyPilot's own, so that cookie arrives
  twice and the browser keeps the second.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

from .conftest import IN_CI
from .support.servers import free_port, spawn, stop_process, wait_until_serving

#: The release the tests pin; the Makefile installs the same one.
SKYPILOT_VERSION = "0.14.1"
REPO_ROOT = Path(__file__).resolve().parent.parent
PYTHON_ENV = "AUTHSERVER_TEST_SKYPILOT_PYTHON"
#: What an ingress adds, so that SkyPilot does not take the request as local.
FORWARDED = {"X-Forwarded-Proto": "http"}
START_TIMEOUT = 90.0


def skypilot_python() -> Path:
    """The interpreter of the SkyPilot venv; skips (fails under CI) without one."""
    python = Path(os.environ.get(PYTHON_ENV) or REPO_ROOT / ".venv-skypilot" / "bin" / "python")
    if python.exists():
        return python
    message = f"no SkyPilot at {python} (`make skypilot-venv` builds it; or set {PYTHON_ENV})"
    if IN_CI:
        pytest.fail(message)
    pytest.skip(message)


@dataclass
class SkyPilotServer:
    """A running ``sky.server.server``; ``url`` uses the host name ``localhost``."""

    url: str
    port: int
    home: Path
    process: subprocess.Popen[bytes]
    log_path: Path
    started_in: float

    @property
    def loopback_url(self) -> str:
        """The same server at 127.0.0.1: without proxy headers, no auth at all."""
        return f"http://127.0.0.1:{self.port}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def log_tail(self, lines: int = 150) -> str:
        """The end of its log, for a failure message (the whole is at ``log_path``)."""
        return "\n".join(self.log().splitlines()[-lines:]) + f"\n(the whole log: {self.log_path})"


def queue_manager_port(port: int) -> int:
    """The port of the request-queue manager SkyPilot starts beside a server whose
    ``SKYPILOT_API_SERVER_LOCAL_PORT`` is ``port`` (sky/server/requests/queues/mp_queue.py:
    50011 moved by the offset from 46580, kept in [50000, 60000))."""
    return 50000 + (50011 - 50000 + port - 46580) % 10000


def _port_is_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def skypilot_port() -> int:
    """A free port whose queue-manager port is free too."""
    for _ in range(50):
        port = free_port()
        if _port_is_free(queue_manager_port(port)):
            return port
    raise RuntimeError("no free port for SkyPilot and its queue manager")


def skypilot_env(workdir: Path, port: int, proxy_base_url: str) -> dict[str, str]:
    """A minimal environment: nothing of ours (no cloud credentials, KUBECONFIG,
    SKYPILOT_* or CI variables) reaches it; its home and temporary files are in
    ``workdir``."""
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "LANG": "C.UTF-8",
        "HOME": str(workdir / "home"),
        # Request temp dirs of an executor killed mid-request stay behind.
        "TMPDIR": str(workdir / "tmp"),
        "SKYPILOT_AUTH_OAUTH2_PROXY_ENABLED": "true",
        "SKYPILOT_AUTH_OAUTH2_PROXY_BASE_URL": proxy_base_url,
        # Moves its request-queue manager off 50011 (see queue_manager_port): two
        # servers on one machine would otherwise share one.
        "SKYPILOT_API_SERVER_LOCAL_PORT": str(port),
        # No usage reports or heartbeats to skypilot.co.
        "SKYPILOT_DISABLE_USAGE_COLLECTION": "1",
    }


def start_skypilot(
    workdir: Path,
    proxy_base_url: str,
    port: int | None = None,
    *,
    timeout: float = START_TIMEOUT,
) -> SkyPilotServer:
    """Start SkyPilot on 127.0.0.1:``port`` (:func:`skypilot_port` unless given) with
    oauth2-proxy auth against ``proxy_base_url``; returns once ``/api/health``
    answers 200. Its files are in ``workdir``: ``home/``, ``tmp/``, ``skypilot.log``.

    Raises ``RuntimeError`` with its log if it exits or does not answer in time.
    """
    if not proxy_base_url.startswith(("http://", "https://")):
        raise ValueError(f"not an http(s) URL: {proxy_base_url!r}")
    python = skypilot_python()
    if port is None:
        port = skypilot_port()
    elif not _port_is_free(queue_manager_port(port)):
        # Taken, SkyPilot would still answer, on another server's queue or none.
        raise RuntimeError(f"port {queue_manager_port(port)}, for port {port}'s queue, is taken")
    home = workdir / "home"
    (home / ".sky").mkdir(parents=True, exist_ok=True)
    (workdir / "tmp").mkdir(exist_ok=True)
    # A fresh answer to "is there a newer SkyPilot?", so that it does not ask PyPI.
    (home / ".sky" / "version_cache.json").write_text(
        json.dumps({"release_version": None, "cached_at": time.time()})
    )
    log_path = workdir / "skypilot.log"
    started = time.monotonic()
    process = spawn(
        [str(python), "-m", "sky.server.server", "--host", "127.0.0.1", "--port", str(port)],
        cwd=workdir,
        log_path=log_path,
        env=skypilot_env(workdir, port, proxy_base_url),
    )
    server = SkyPilotServer(f"http://localhost:{port}", port, home, process, log_path, 0.0)
    broken_since: float | None = None

    def healthy() -> bool:
        nonlocal broken_since
        try:
            status = requests.get(f"{server.loopback_url}/api/health", timeout=2).status_code
        except requests.RequestException:
            return False
        if status == 200:
            return True
        # Up but failing (a bad auth setting fails every request, and it does not
        # exit for that): give up after a few seconds instead of the timeout.
        broken_since = broken_since or time.monotonic()
        if time.monotonic() - broken_since > 5:
            raise RuntimeError(f"answers /api/health with {status}")
        return False

    wait_until_serving(
        process,
        healthy,
        what="SkyPilot",
        log=server.log_tail,
        timeout=started + timeout - time.monotonic(),
        interval=0.1,
        stop=lambda: stop_skypilot(server),
    )
    server.started_in = time.monotonic() - started
    return server


def stop_skypilot(server: SkyPilotServer, grace: float = 1.0) -> None:
    """SIGTERM to its process group, then SIGKILL to whatever is left.

    The grace is short on purpose: SkyPilot's own graceful shutdown sleeps 5 s before
    it starts, and its idle executor processes ignore SIGTERM ("SIGTERM received
    while worker idle; ignored."), so the SIGKILL is what ends them anyway. Its
    state lives in the temporary ``HOME`` and is thrown away.
    """
    stop_process(server.process, grace, kill_group=True)


@contextmanager
def skypilot(
    workdir: Path, proxy_base_url: str, port: int | None = None
) -> Iterator[SkyPilotServer]:
    """``with skypilot(workdir, base_url, port) as sky: yield sky`` in a fixture."""
    server = start_skypilot(workdir, proxy_base_url, port)
    try:
        yield server
    finally:
        stop_skypilot(server)


def skypilot_users(server: SkyPilotServer) -> list[dict[str, Any]]:
    """SkyPilot's user list (``GET /users``), read over loopback without proxy
    headers, so without going through auth: ``[{"id", "name", "created_at",
    "role", "user_type"}, ...]``; an SSO user's ``name`` is its email."""
    response = requests.get(f"{server.loopback_url}/users", timeout=10)
    assert response.status_code == 200, (response.status_code, response.text[:500])
    users: list[dict[str, Any]] = response.json()
    return users


def sso_user_names(server: SkyPilotServer) -> set[str]:
    """The names (emails) of the users SkyPilot learnt from the forward-auth server."""
    return {user["name"] for user in skypilot_users(server) if user["user_type"] == "sso"}
