"""``serve``'s gunicorn settings: ``server:``, ``GUNICORN_CMD_ARGS``, ``--bind`` and
``--workers``, through the entry point and a live server (issue 11.6)."""

from __future__ import annotations

import http.client
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from authserver.serve import WORKER_CLASS, gunicorn_options
from authserver.settings import Settings

from .support.factories import standard_config
from .support.servers import (
    LiveServer,
    authserver_command,
    command_env,
    free_port,
    run_cli,
    stop_server,
)


def config_file(tmp_path: Path, **overrides: Any) -> Path:
    config = standard_config(
        "http://127.0.0.1:8080", f"sqlite:///{tmp_path / 'db.sqlite'}", tmp_path / "sk"
    )
    config.update(overrides)
    path = tmp_path / "authserver.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def serve(workdir: Path, port: int, *args: str, env: dict[str, str]) -> LiveServer:
    """``authserver serve`` with only the options given (``start_server`` adds its own)."""
    log_path = workdir / "server.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [*authserver_command(), "--config", str(workdir / "authserver.yaml"), "serve", *args],
            cwd=workdir,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=command_env(workdir, env),
            start_new_session=True,
        )
    server = LiveServer(
        f"http://127.0.0.1:{port}", workdir / "authserver.yaml", workdir, process, log_path
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert process.poll() is None, server.log()
        try:
            requests.get(server.url + "/.well-known/openid-configuration", timeout=1)
            return server
        except requests.ConnectionError:
            time.sleep(0.2)
    stop_server(server)
    raise AssertionError(f"authserver did not start:\n{server.log()}")


def booted_workers(server: LiveServer, expected: int) -> int:
    """Workers booted, once that count has had time to reach ``expected`` and pass it."""
    deadline = time.monotonic() + 15
    while server.log().count("Booting worker") < expected and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(1)
    return server.log().count("Booting worker")


def idle_connection_closed_within(port: int, seconds: float) -> bool:
    """A kept-alive connection, left idle: does the server close it in time?"""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    conn.request("GET", "/.well-known/openid-configuration")
    response = conn.getresponse()
    response.read()
    assert response.status == 200
    assert conn.sock is not None
    conn.sock.settimeout(seconds)
    try:
        return conn.sock.recv(1) == b""
    except TimeoutError:
        return False
    finally:
        conn.close()


@pytest.mark.live
def test_a_bare_port_from_the_config_is_loopback_and_gunicorn_cmd_args_win_over_it(
    tmp_path: Path,
) -> None:
    port = free_port()
    config_file(tmp_path, server={"bind": str(port), "workers": 3, "keepalive": "30s"})
    server = serve(tmp_path, port, env={"GUNICORN_CMD_ARGS": "--workers 1 --keep-alive 1"})
    try:
        assert f"Listening at: http://127.0.0.1:{port} " in server.log()
        assert f"Using worker: {WORKER_CLASS}" in server.log()
        assert booted_workers(server, 1) == 1
        assert idle_connection_closed_within(port, 4)
    finally:
        stop_server(server)


@pytest.mark.live
def test_serve_options_win_over_gunicorn_cmd_args(tmp_path: Path) -> None:
    port = free_port()
    config_file(tmp_path)
    server = serve(
        tmp_path,
        port,
        "--bind",
        str(port),
        "--workers",
        "1",
        env={"GUNICORN_CMD_ARGS": f"--workers 3 --bind 127.0.0.1:{free_port()}"},
    )
    try:
        assert f"Listening at: http://127.0.0.1:{port} " in server.log()
        assert "0.0.0.0" not in server.log()  # noqa: S104 - that it is not bound
        assert booted_workers(server, 1) == 1
        assert not idle_connection_closed_within(port, 2)  # keepalive: 30 s by default
    finally:
        stop_server(server)


@pytest.mark.live
@pytest.mark.parametrize(
    ("bind", "message"),
    [
        ("8o80", "'8o80' names no port"),
        ("localhost", "names no port: give HOST:PORT, or PORT for 127.0.0.1:PORT"),
        (":8080", "names no host: give 127.0.0.1:PORT, or 0.0.0.0:PORT"),
        ("127.0.0.1:99999", "the port must be a number from 1 to 65535"),
        ("::1:8080", "an IPv6 address goes in brackets"),
        ("[::1", "is not [IPv6]:PORT"),
    ],
)
def test_a_bad_bind_is_one_line_and_exit_2(tmp_path: Path, bind: str, message: str) -> None:
    result = run_cli("--config", str(config_file(tmp_path)), "serve", "--bind", bind, cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.startswith("authserver: error: --bind: ")
    assert message in result.stderr
    assert len(result.stderr.splitlines()) == 1


@pytest.mark.live
@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("-k sync", "the worker class is authserver.serve.BoundedThreadWorker"),
        ("--workers many", "argument -w/--workers: invalid int value: 'many'"),
        ("--threads 2 app:app", "takes gunicorn options only"),
        ("-c gunicorn.conf.py", "no gunicorn config file"),
        ("--bind 0.0.0.0", "--bind: '0.0.0.0' names no port"),
        ("--forwarded-allow-ips 10.0.0.x", "forwarded_allow_ips:"),
    ],
)
def test_bad_gunicorn_cmd_args_are_one_line_and_exit_2(
    tmp_path: Path, value: str, message: str
) -> None:
    result = run_cli(
        "--config",
        str(config_file(tmp_path)),
        "serve",
        "--bind",
        str(free_port()),
        cwd=tmp_path,
        env={"GUNICORN_CMD_ARGS": value},
    )
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("authserver: error: GUNICORN_CMD_ARGS: ")
    assert message in result.stderr
    assert len(result.stderr.splitlines()) == 1


@pytest.mark.live
def test_the_server_section_is_validated_with_the_rest(tmp_path: Path) -> None:
    config = config_file(
        tmp_path,
        server={"bind": "0.0.0.0", "threads": 0, "forwarded_allow_ips": ["10.0.0.x"]},  # noqa: S104
    )
    result = run_cli(
        "--config",
        str(config),
        "clients",
        "list",
        cwd=tmp_path,
        env={"AUTHSERVER_SERVER__KEEPALIVE": "soon"},
    )
    assert result.returncode == 2
    for problem in (
        "server.bind: '0.0.0.0' names no port",
        "server.threads: Input should be greater than or equal to 1",
        "server.forwarded_allow_ips[0]:",
        "server.keepalive (from AUTHSERVER_SERVER__KEEPALIVE): must be a duration",
    ):
        assert problem in result.stderr, result.stderr
    assert "Traceback" not in result.stderr


def test_gunicorn_options_defaults_and_the_order_they_win_in() -> None:
    defaults = gunicorn_options(Settings(), environ={})
    assert defaults["bind"] == ["127.0.0.1:8080"]  # never 0.0.0.0 unless asked for
    assert defaults["worker_class"] == WORKER_CLASS
    assert defaults["workers"] >= 2
    assert (defaults["threads"], defaults["keepalive"]) == (8, 30)
    assert (defaults["timeout"], defaults["graceful_timeout"]) == (30, 20)
    assert defaults["forwarded_allow_ips"] == "127.0.0.1,::1"

    settings = Settings.model_validate(
        {
            "server": {
                "bind": "[::1]:9000",
                "workers": 4,
                "threads": 2,
                "timeout": "2m",
                "graceful_timeout": "5s",
                "keepalive": "1500ms",
                "forwarded_allow_ips": ["10.0.0.0/8", "192.0.2.7"],
            }
        }
    )
    configured = gunicorn_options(settings, environ={})
    assert configured["bind"] == ["[::1]:9000"]
    assert (configured["workers"], configured["threads"]) == (4, 2)
    assert (configured["timeout"], configured["graceful_timeout"]) == (120, 5)
    assert configured["keepalive"] == 2  # whole seconds, rounded up
    assert configured["forwarded_allow_ips"] == "10.0.0.0/8,192.0.2.7"

    environ = {"GUNICORN_CMD_ARGS": "--threads 16 --bind 9001 --max-requests 1000"}
    from_env = gunicorn_options(settings, environ=environ)
    assert (from_env["threads"], from_env["bind"]) == (16, ["127.0.0.1:9001"])
    assert from_env["max_requests"] == 1000
    assert from_env["workers"] == 4

    flags = gunicorn_options(settings, "127.0.0.1:9002", 1, environ=environ)
    assert (flags["bind"], flags["workers"], flags["threads"]) == (["127.0.0.1:9002"], 1, 16)
