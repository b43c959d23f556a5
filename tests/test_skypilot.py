"""End to end: the real SkyPilot API server (``skypilot[server]`` from PyPI) in its
oauth2-proxy mode, pointed at a live authserver (issue 15.5, DESIGN.md "Integrations").

SkyPilot runs on ``localhost:P1`` and authserver on ``127.0.0.1:P2``, so their cookies
never mix. SkyPilot skips auth for loopback requests without proxy headers, so the
browser sends ``X-Forwarded-Proto`` as an ingress would (tests/skypilot.py says what
SkyPilot does at each step). Slow: it runs once, on PostgreSQL + Redis.
"""

from __future__ import annotations

import base64
import json
import re
import shutil
from collections.abc import Iterator

import pytest
import requests
import sqlalchemy as sa
import yaml
from playwright.sync_api import Browser

from .skypilot import FORWARDED, SkyPilotServer, skypilot_port, start_skypilot, stop_skypilot
from .support.factories import AUDIENCES, PASSWORD
from .support.servers import (
    LiveServer,
    free_port,
    live_config,
    start_server,
    stop_server,
    upgrade_with_cli,
)

pytestmark = [pytest.mark.slow, pytest.mark.live]

USERNAME = "alice"
EMAIL = "alice@example.com"


@pytest.fixture(scope="module", params=["postgresql+redis"])
def servers(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[LiveServer, SkyPilotServer]]:
    sky_port = skypilot_port()
    sky_url = f"http://localhost:{sky_port}"
    workdir = tmp_path_factory.mktemp("skypilot-authserver")
    port = free_port()
    config = live_config(request, workdir, f"http://127.0.0.1:{port}")
    # Bearer tokens for SkyPilot's audience only (not the default, AUDIENCES[0]).
    config["forward_auth"] = {"allowed_hosts": ["localhost"], "audiences": [sky_url]}
    config["tokens"]["audiences"] = [*AUDIENCES, sky_url]
    upgrade_with_cli(workdir, config)
    auth = start_server(workdir, config, port)
    created = auth.cli(
        "users", "create", USERNAME, "--email", EMAIL, "--password-stdin", input_text=PASSWORD
    )
    assert created.returncode == 0, created.stderr
    sky_dir = tmp_path_factory.mktemp("skypilot")
    try:
        sky = start_skypilot(sky_dir, auth.url, port=sky_port)
    except BaseException:
        stop_server(auth)
        raise
    yield auth, sky
    stop_skypilot(sky)
    stop_server(auth)
    shutil.rmtree(sky_dir, ignore_errors=True)


def _sso_users(sky: SkyPilotServer) -> dict[str, str]:
    """SkyPilot's SSO users, name -> role, read over loopback (no auth there)."""
    users = requests.get(sky.loopback_url + "/users", timeout=10).json()
    return {u["name"]: u["role"] for u in users if u["user_type"] == "sso"}


def _audit_events(auth: LiveServer, event: str) -> list[dict[str, object]]:
    config = yaml.safe_load(auth.config_path.read_text())
    engine = sa.create_engine(config["database_url"])
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text("SELECT actor, details FROM audit_events WHERE event = :e"), {"e": event}
        ).all()
    engine.dispose()
    return [{"actor": actor, "details": details} for actor, details in rows]


def test_a_browser_signs_in_to_skypilot_through_authserver_and_out_again(
    servers: tuple[LiveServer, SkyPilotServer], browser: Browser
) -> None:
    auth, sky = servers
    context = browser.new_context(extra_http_headers=FORWARDED)
    page = context.new_page()
    try:
        # 1. SkyPilot's dashboard: /oauth2/auth says 401, SkyPilot sends the browser to
        # /oauth2/start on its own host, which authserver answers with its login page.
        page.goto(sky.url + "/dashboard/")
        assert page.url.startswith(auth.url + "/login?next=/login/forward"), page.url
        assert EMAIL not in _sso_users(sky)

        # 2. The usual sign-in; the browser lands back on the dashboard.
        page.fill("input[name=username]", USERNAME)
        page.fill("input[name=password]", PASSWORD)
        with page.expect_navigation(url=f"{sky.url}/dashboard/**") as landed:
            page.click("#sign-in")
        assert landed.value is not None
        assert landed.value.url.startswith(sky.url + "/dashboard/")
        assert landed.value.status == 200
        cookies = {c["name"]: c for c in context.cookies(sky.url)}
        assert cookies["_authserver_forward"]["httpOnly"] is True
        assert "authserver_session" not in cookies  # authserver's stays on its own host

        # 3. SkyPilot knows the person now, by the X-Auth-Request-Email authserver sent
        # (the email an admin set for alice).
        assert EMAIL in _sso_users(sky)
        me = context.request.get(sky.url + "/users/role")
        assert me.status == 200
        assert me.json()["name"] == EMAIL
        logins = _audit_events(auth, "forward_auth_login")
        assert [row["actor"] for row in logins] == [USERNAME]

        # 4. `sky api login`'s token page: the token is the cookies, which the CLI then
        # sends with each request; authserver's session cookie is among them and works
        # from another client.
        token_page = context.request.get(sky.url + "/token")
        assert token_page.status == 200
        found = re.search(r"eyJ2Ijog[A-Za-z0-9+/=]+", token_page.text())
        assert found, token_page.text()[:500]
        cli_cookies = json.loads(base64.b64decode(found.group(0)))["cookies"]
        assert "_authserver_forward" in cli_cookies
        cli = requests.get(
            sky.url + "/users/role",
            headers=FORWARDED,
            cookies={"_authserver_forward": cli_cookies["_authserver_forward"]},
            allow_redirects=False,
            timeout=10,
        )
        assert cli.status_code == 200
        assert cli.json()["name"] == EMAIL

        # 5. Sign-out (forwarded to authserver) ends the session and the sign-in behind
        # it: the dashboard asks for the password again.
        page.goto(sky.url + "/oauth2/sign_out")
        assert page.url.startswith(auth.url + "/login?next=/login/forward"), page.url
        assert context.request.get(sky.url + "/users/role", max_redirects=0).status == 307
        assert len(_audit_events(auth, "forward_auth_logout")) == 1
    finally:
        context.close()
