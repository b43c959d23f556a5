"""Logs (DESIGN.md "Operations", issue 11.3): one format for authserver's and gunicorn's
records, a ``log_level``, and an access log that never holds a token, secret, code or
password. Against live ``authserver serve`` processes (2 gunicorn workers)."""

from __future__ import annotations

import json
import secrets
from pathlib import Path
from typing import Any

import pytest
import requests

from .support.factories import PASSWORD, SECRETS, standard_config
from .support.flows import pkce_pair
from .support.servers import LiveServer, free_port, start_server, stop_server

pytestmark = pytest.mark.live


def _server(tmp_path: Path, **settings: Any) -> LiveServer:
    port = free_port()
    config = standard_config(
        f"http://127.0.0.1:{port}", f"sqlite:///{tmp_path / 'a.db'}", tmp_path / "secret_key"
    )
    config.update(settings)
    config["initial_admin"] = {"username": "admin", "password": PASSWORD}
    return start_server(tmp_path, config, port)


def _traffic(server: LiveServer) -> list[str]:
    """Requests that carry every kind of secret, in bodies, queries and headers; the
    values the log must never hold."""
    url = server.url
    token = requests.post(
        url + "/oauth2/token",
        data={
            "grant_type": "client_credentials",
            "client_id": "ci",
            "client_secret": SECRETS["ci"],
        },
        timeout=10,
    ).json()["access_token"]
    wrong = "wrong-secret-" + secrets.token_hex(8)
    assert (
        requests.post(
            url + "/oauth2/token",
            data={"grant_type": "client_credentials"},
            auth=("ci", wrong),
            timeout=10,
        ).status_code
        == 401
    )
    requests.post(
        url + "/oauth2/introspect", data={"token": token}, auth=("rs", SECRETS["rs"]), timeout=10
    )
    requests.get(url + "/oauth2/userinfo", headers={"Authorization": f"Bearer {token}"}, timeout=10)
    verifier, challenge = pkce_pair()
    state = "state-" + secrets.token_hex(8)
    requests.get(
        url + "/oauth2/authorize",
        params={
            "response_type": "code",
            "client_id": "cli",
            "state": state,
            "redirect_uri": "http://127.0.0.1:5555/callback",
            "code_challenge": challenge,
            "code_challenge_method": "S256",
        },
        allow_redirects=False,
        timeout=10,
    )
    fake_code = "code-" + secrets.token_hex(8)
    requests.post(
        url + "/oauth2/token",
        data={
            "grant_type": "authorization_code",
            "code": fake_code,
            "client_id": "cli",
            "code_verifier": verifier,
            "redirect_uri": "http://127.0.0.1:5555/callback",
        },
        timeout=10,
    )
    user_code = "WXYZ-" + secrets.token_hex(2).upper()
    requests.get(url + "/device", params={"user_code": user_code}, timeout=10)
    requests.post(url + "/login", data={"username": "admin", "password": PASSWORD}, timeout=10)
    return [
        token,
        SECRETS["ci"],
        SECRETS["rs"],
        wrong,
        verifier,
        challenge,
        state,
        fake_code,
        user_code,
        PASSWORD,
    ]


def test_json_logs_with_an_access_record_per_request_and_no_secret(tmp_path: Path) -> None:
    server = _server(tmp_path, log_format="json", log_level="info")
    try:
        never = _traffic(server)
        requests.get(server.url + "/.well-known/jwks.json", timeout=10)
    finally:
        stop_server(server)
    text = server.log()
    records = [json.loads(line) for line in text.splitlines() if line.strip()]
    assert {"time", "level", "logger", "message"} <= set(records[0])
    loggers = {r["logger"] for r in records}
    assert "gunicorn.error" in loggers  # gunicorn's own lines in the same format
    access = [r for r in records if r["logger"] == "authserver.access"]
    token_ok = [r for r in access if r["path"] == "/oauth2/token" and r["status"] == 200]
    assert len(token_ok) == 1
    record = token_ok[0]
    assert record["method"] == "POST"
    assert record["client_id"] == "ci"
    assert record["address"] == "127.0.0.1"
    assert isinstance(record["duration_ms"], float | int)
    assert any(r["path"] == "/oauth2/token" and r["status"] == 401 for r in access)
    assert any(r["path"] == "/.well-known/jwks.json" for r in access)
    authorize = [r for r in access if r["path"] == "/oauth2/authorize"]
    assert authorize
    assert "?" not in authorize[0]["path"]
    for value in never:
        assert value not in text, f"the log holds {value!r}"


def test_text_logs_their_level_and_no_access_log_when_off(tmp_path: Path) -> None:
    server = _server(tmp_path / "text", log_format="text")
    try:
        never = _traffic(server)
    finally:
        stop_server(server)
    text = server.log()
    line = next(
        x
        for x in text.splitlines()
        if "authserver.access" in x and "200" in x and "/oauth2/token" in x
    )
    assert "POST /oauth2/token 200" in line
    assert "client_id=ci" in line
    assert "address=127.0.0.1" in line
    for value in never:
        assert value not in text

    quiet = _server(tmp_path / "quiet", log_level="warning", access_log=False)
    try:
        _traffic(quiet)
    finally:
        stop_server(quiet)
    assert "authserver.access" not in quiet.log()
    assert " INFO " not in quiet.log()
