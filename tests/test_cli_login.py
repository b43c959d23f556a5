"""``authserver login`` and ``authserver token``: a person's sign-in from the terminal.

The real entry point runs as a subprocess against a live server; the test plays the
person's browser with a signed-in ``requests.Session``.
"""

from __future__ import annotations

import json
import os
import queue
import re
import stat
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urljoin, urlsplit, urlunsplit

import pytest
import requests

from .support.factories import PASSWORD
from .support.flows import form_field, jwt_claims, signed_in_session
from .support.servers import LiveServer, authserver_command, free_port, run_cli

pytestmark = pytest.mark.live

USER_CODE = re.compile(r"\b([A-Z]{4}-[A-Z]{4})\b")


class CliProcess:
    """``authserver ...`` running in the background; its output (stdout and stderr
    together) read line by line as it comes."""

    def __init__(self, *args: str, cwd: Path, env: dict[str, str]) -> None:
        full_env = {k: v for k, v in os.environ.items() if not k.startswith("AUTHSERVER_")}
        full_env.update(env)
        self.process = subprocess.Popen(
            [*authserver_command(), *args],
            cwd=cwd,
            env=full_env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self._queue.put(line)
        self._queue.put(None)

    def wait_for(self, pattern: re.Pattern[str], timeout: float = 30) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                line = self._queue.get(timeout=left)
            except queue.Empty:
                break
            if line is None:
                break
            self.lines.append(line)
            if match := pattern.search(line):
                return match
        raise AssertionError(f"no {pattern.pattern!r} in the output:\n{self.output()}")

    def finish(self, timeout: float = 60) -> tuple[int, str]:
        """The exit code and the whole output."""
        code = self.process.wait(timeout=timeout)
        self._reader.join(timeout=10)
        return code, self.output()

    def output(self) -> str:
        while True:
            try:
                line = self._queue.get_nowait()
            except queue.Empty:
                break
            if line is not None:
                self.lines.append(line)
        return "".join(self.lines)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)
        if self.process.stdout is not None:
            self.process.stdout.close()


@pytest.fixture(scope="module")
def zoe(live_server: LiveServer) -> str:
    result = live_server.cli(
        "users", "create", "zoe", "--password-stdin", input_text=PASSWORD + "\n"
    )
    assert result.returncode == 0, result.stderr
    return "zoe"


@pytest.fixture
def cache_dir(tmp_path: Path) -> Path:
    return tmp_path / "cache"


@pytest.fixture
def cli_env(cache_dir: Path, tmp_path: Path) -> dict[str, str]:
    # the profiles `login` saves stay in the test's directory
    return {"AUTHSERVER_CACHE_DIR": str(cache_dir), "XDG_CONFIG_HOME": str(tmp_path / "config")}


@pytest.fixture
def start_cli(tmp_path: Path, cli_env: dict[str, str]) -> Iterator[Any]:
    started: list[CliProcess] = []

    def start(*args: str) -> CliProcess:
        process = CliProcess(*args, cwd=tmp_path, env=cli_env)
        started.append(process)
        return process

    yield start
    for process in started:
        process.stop()


def cli(tmp_path: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return run_cli(*args, cwd=tmp_path, env=env)


def read_cache(cache_dir: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((cache_dir / "tokens.json").read_text())
    return data


def cached_entry(cache_dir: Path, issuer: str, client_id: str = "cli") -> dict[str, Any]:
    entry: dict[str, Any] = read_cache(cache_dir)[issuer][client_id]
    return entry


def assert_one_line_error(result: subprocess.CompletedProcess[str], *words: str) -> None:
    assert result.returncode != 0
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("authserver: error: "), lines[0]
    assert "Traceback" not in result.stderr
    for word in words:
        assert word in lines[0], lines[0]


def follow_to_client(server: str, url: str, username: str) -> str:
    """Open the authorization URL in a new browser, as the person does: the login page
    it leads to, the sign-in, and the way back; the redirect off our server. (The
    sign-in this request started is the interaction RFC 8252 §8.6 asks for: no click.)"""
    browser = requests.Session()
    response = browser.get(url, allow_redirects=False, timeout=30)
    signed_in = False
    for _ in range(6):
        if response.status_code == 200 and 'name="password"' in response.text and not signed_in:
            response = browser.post(
                server + "/login",
                data={
                    "csrf_token": form_field(response.text, "csrf_token"),
                    "username": username,
                    "password": PASSWORD,
                    "next": form_field(response.text, "next"),
                },
                allow_redirects=False,
                timeout=30,
            )
            signed_in = True
            continue
        location = response.headers.get("Location")
        assert response.status_code in (302, 303), (response.status_code, response.text[:1000])
        assert location
        target = urljoin(server + "/", location)
        if not target.startswith(server + "/"):
            return target
        response = browser.get(target, allow_redirects=False, timeout=30)
    raise AssertionError("too many redirects")


def with_query(url: str, **changes: str) -> str:
    parts = urlsplit(url)
    query = {k: v[0] for k, v in parse_qs(parts.query).items()}
    query.update(changes)
    return urlunsplit(parts._replace(query=urlencode(query)))


AUTHORIZE_URL = re.compile(r"(http://127\.0\.0\.1:\d+/oauth2/authorize\?\S+)")


# -- the loopback flow ------------------------------------------------------------------


def test_login_loopback_then_token_and_refresh(
    live_server: LiveServer,
    zoe: str,
    start_cli: Any,
    cache_dir: Path,
    cli_env: dict[str, str],
    tmp_path: Path,
) -> None:
    login = start_cli("login", "--issuer", live_server.url, "--no-browser")
    url = login.wait_for(AUTHORIZE_URL).group(1)
    params = {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}
    assert params["client_id"] == "cli"
    assert params["code_challenge_method"] == "S256"
    assert params["scope"] == "openid profile offline_access"
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+/callback", params["redirect_uri"])

    callback = follow_to_client(live_server.url, url, zoe)
    assert callback.startswith(params["redirect_uri"] + "?"), callback
    query = parse_qs(urlsplit(callback).query)
    assert query["state"] == [params["state"]]
    assert query["iss"] == [live_server.url]

    # A request that is not the answer (wrong state) is turned away; the CLI waits on.
    stray = requests.get(with_query(callback, state="forged"), timeout=30)
    assert stray.status_code == 400
    assert login.process.poll() is None

    page = requests.get(callback, timeout=30)
    assert page.status_code == 200, page.text
    assert "close this window" in page.text
    code, output = login.finish()
    assert code == 0, output
    assert "signed in" in output

    cache_file = cache_dir / "tokens.json"
    assert stat.S_IMODE(cache_file.stat().st_mode) == 0o600
    entry = cached_entry(cache_dir, live_server.url)
    assert entry["refresh_token"].startswith("as_rt_")
    assert entry["id_token"]
    assert entry["expires_at"] > time.time() + 3000  # access_token_ttl 1h
    assert set(entry["scope"].split()) == {"openid", "profile", "offline_access"}

    # `token` prints the cached access token: a JWT of zoe's.
    result = cli(tmp_path, cli_env, "token", "--issuer", live_server.url)
    assert result.returncode == 0, result.stderr
    access_token = result.stdout.strip()
    assert result.stdout == access_token + "\n"
    assert access_token == entry["access_token"]
    claims = jwt_claims(access_token)
    assert claims["iss"] == live_server.url
    assert claims["client_id"] == "cli"
    userinfo = requests.get(
        live_server.url + "/oauth2/userinfo",
        headers={"Authorization": f"Bearer {access_token}"},
        timeout=30,
    )
    assert userinfo.status_code == 200, userinfo.text
    assert userinfo.json()["preferred_username"] == zoe
    assert claims["sub"] == userinfo.json()["sub"]
    assert re.fullmatch(r"[0-9a-f]{32}", claims["sub"])

    # An access token about to expire is refreshed, and the rotated refresh token kept.
    data = read_cache(cache_dir)
    data[live_server.url]["cli"]["expires_at"] = int(time.time()) + 30
    (cache_dir / "tokens.json").write_text(json.dumps(data))
    result = cli(tmp_path, cli_env, "token", "--issuer", live_server.url)
    assert result.returncode == 0, result.stderr
    refreshed = result.stdout.strip()
    assert refreshed != access_token
    assert jwt_claims(refreshed)["sub"] == claims["sub"]
    after = cached_entry(cache_dir, live_server.url)
    assert after["access_token"] == refreshed
    assert after["refresh_token"].startswith("as_rt_")
    assert after["refresh_token"] != entry["refresh_token"]
    assert after["expires_at"] > time.time() + 3000
    assert stat.S_IMODE((cache_dir / "tokens.json").stat().st_mode) == 0o600

    # The stored refresh token is the live one: refreshing again works.
    data = read_cache(cache_dir)
    data[live_server.url]["cli"]["expires_at"] = 0
    (cache_dir / "tokens.json").write_text(json.dumps(data))
    again = cli(tmp_path, cli_env, "token", "--issuer", live_server.url)
    assert again.returncode == 0, again.stderr
    assert cached_entry(cache_dir, live_server.url)["refresh_token"] != after["refresh_token"]


def test_login_rejects_a_response_from_another_issuer(
    live_server: LiveServer, zoe: str, start_cli: Any, cache_dir: Path
) -> None:
    """RFC 9207: the `iss` of the authorization response must be our issuer."""
    login = start_cli("login", "--issuer", live_server.url, "--no-browser")
    url = login.wait_for(AUTHORIZE_URL).group(1)
    callback = follow_to_client(live_server.url, url, zoe)
    page = requests.get(with_query(callback, iss="https://evil.example.com"), timeout=30)
    assert page.status_code == 400
    code, output = login.finish()
    assert code == 1, output
    assert "https://evil.example.com" in output
    assert "Traceback" not in output
    assert not (cache_dir / "tokens.json").exists()


def test_login_reports_an_error_response(
    live_server: LiveServer, start_cli: Any, cache_dir: Path
) -> None:
    login = start_cli("login", "--issuer", live_server.url, "--no-browser")
    url = login.wait_for(AUTHORIZE_URL).group(1)
    params = {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}
    denied = with_query(
        params["redirect_uri"], error="access_denied", state=params["state"], iss=live_server.url
    )
    assert requests.get(denied, timeout=30).status_code == 400
    code, output = login.finish()
    assert code == 1, output
    assert "access_denied" in output
    assert not (cache_dir / "tokens.json").exists()


# -- the device flow ----------------------------------------------------------------


def approve_device(server: str, user: str, user_code: str, answer: str = "approve") -> None:
    browser = signed_in_session(server, user)
    page = browser.get(server + "/device", timeout=30)
    assert page.status_code == 200, page.text
    confirm = browser.post(
        server + "/device",
        data={"csrf_token": form_field(page.text, "csrf_token"), "user_code": user_code},
        timeout=30,
    )
    assert confirm.status_code == 200, confirm.text
    decided = browser.post(
        server + "/device/decide",
        data={
            "csrf_token": form_field(confirm.text, "csrf_token"),
            "user_code": user_code,
            answer: "1",
        },
        timeout=30,
    )
    assert decided.status_code == 200, decided.text


def test_login_device(
    live_server: LiveServer,
    zoe: str,
    start_cli: Any,
    cache_dir: Path,
    cli_env: dict[str, str],
    tmp_path: Path,
) -> None:
    login = start_cli("login", "--issuer", live_server.url, "--device")
    user_code = login.wait_for(USER_CODE).group(1)
    assert live_server.url + "/device?user_code=" in login.output()
    approve_device(live_server.url, zoe, user_code)
    code, output = login.finish()
    assert code == 0, output

    assert stat.S_IMODE((cache_dir / "tokens.json").stat().st_mode) == 0o600
    entry = cached_entry(cache_dir, live_server.url)
    assert entry["refresh_token"].startswith("as_rt_")
    result = cli(tmp_path, cli_env, "token", "--issuer", live_server.url)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == entry["access_token"]
    assert jwt_claims(entry["access_token"])["client_id"] == "cli"


def test_login_device_denied(
    live_server: LiveServer, zoe: str, start_cli: Any, cache_dir: Path
) -> None:
    login = start_cli("login", "--issuer", live_server.url, "--device")
    user_code = login.wait_for(USER_CODE).group(1)
    approve_device(live_server.url, zoe, user_code, answer="deny")
    code, output = login.finish()
    assert code == 1, output
    assert "denied" in output.splitlines()[-1]
    assert not (cache_dir / "tokens.json").exists()


# -- errors, without a server -------------------------------------------------------


def test_token_without_a_sign_in(tmp_path: Path, cli_env: dict[str, str]) -> None:
    result = cli(tmp_path, cli_env, "token", "--issuer", "http://127.0.0.1:8080")
    assert_one_line_error(result, "authserver login")


def test_token_uses_a_fresh_cached_token_offline(
    tmp_path: Path, cache_dir: Path, cli_env: dict[str, str]
) -> None:
    """No server is reachable: a token with time left needs none."""
    issuer = f"http://127.0.0.1:{free_port()}"
    cache_dir.mkdir()
    entry = {
        "access_token": "cached-token",
        "expires_at": int(time.time()) + 600,
        "refresh_token": "as_rt_x",
        "id_token": None,
        "scope": "openid",
    }
    (cache_dir / "tokens.json").write_text(json.dumps({issuer: {"cli": entry}}))
    result = cli(tmp_path, cli_env, "token", "--issuer", issuer)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "cached-token\n"

    # Expiring, it must be refreshed: the unreachable server is one clear line.
    entry["expires_at"] = int(time.time()) + 30
    (cache_dir / "tokens.json").write_text(json.dumps({issuer: {"cli": entry}}))
    assert_one_line_error(cli(tmp_path, cli_env, "token", "--issuer", issuer), "cannot reach")


def test_token_with_a_damaged_cache(
    tmp_path: Path, cache_dir: Path, cli_env: dict[str, str]
) -> None:
    cache_dir.mkdir()
    (cache_dir / "tokens.json").write_text("{not json")
    result = cli(tmp_path, cli_env, "token", "--issuer", "http://127.0.0.1:8080")
    assert_one_line_error(result, str(cache_dir / "tokens.json"))


@pytest.mark.parametrize("device", [False, True])
def test_login_unreachable_issuer(tmp_path: Path, cli_env: dict[str, str], device: bool) -> None:
    issuer = f"http://127.0.0.1:{free_port()}"
    args = ["login", "--issuer", issuer, "--no-browser", *(["--device"] if device else [])]
    result = cli(tmp_path, cli_env, *args)
    assert_one_line_error(result, "cannot reach", issuer)


def test_login_for_the_admin_api_audience(
    live_server: LiveServer,
    zoe: str,
    start_cli: Any,
    cli_env: dict[str, str],
    tmp_path: Path,
) -> None:
    """``--audience`` asks for tokens for one API (RFC 8707); they are cached apart, so
    ``token`` without it is still signed out, and the admin API takes them. (The login
    saves its audience in a profile of its own: the default profile's ``token`` would
    otherwise take the audience from it.)"""
    admin_api = live_server.url + "/api/v1"
    login = start_cli(
        "login",
        "--issuer",
        live_server.url,
        "--device",
        "--audience",
        admin_api,
        "--profile",
        "admin-api",
    )
    approve_device(live_server.url, zoe, login.wait_for(USER_CODE).group(1))
    code, output = login.finish()
    assert code == 0, output

    result = cli(tmp_path, cli_env, "token", "--issuer", live_server.url, "--audience", admin_api)
    assert result.returncode == 0, result.stderr
    token = result.stdout.strip()
    assert jwt_claims(token)["aud"] == admin_api
    me = requests.get(admin_api + "/me", headers={"Authorization": f"Bearer {token}"}, timeout=10)
    assert me.status_code == 200, me.text
    assert me.json()["user"]["username"] == zoe

    other = cli(tmp_path, cli_env, "token", "--issuer", live_server.url)
    assert_one_line_error(other, "authserver login")
