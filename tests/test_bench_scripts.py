"""The benchmark's own scripts (``bench/run.py``, ``bench/seed.py``): what they parse,
the wrk scripts they write, and that seeded rows are rows the server reads."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import sqlalchemy as sa

from bench import run, seed

WRK_OUTPUT = """\
Running 2s test @ http://127.0.0.1:1234/oauth2/token
  2 threads and 8 connections
  Latency Distribution
     50%    4.53ms
     75%    6.00ms
     90%    9.00ms
     99%   52.07ms
  2425 requests in 2.00s, 1.00MB read
  Non-2xx or 3xx responses: 2400
Requests/sec:   1212.50
Bad bodies: 1
Expected non-2xx: 2398
Slow down: 3
"""


def test_expected_4xx_are_not_errors() -> None:
    result = run.parse_wrk_output(WRK_OUTPUT)
    assert result.requests_per_sec == 1212.5
    assert result.latency_p50_ms == pytest.approx(4.53)
    assert result.latency_p99_ms == pytest.approx(52.07)
    assert (result.non_2xx, result.expected_non_2xx, result.slow_down) == (2400, 2398, 3)
    # 2 unexpected 4xx and one answer under 400 that was not right.
    assert result.errors == 3


def test_older_scripts_output_still_parses() -> None:
    text = WRK_OUTPUT.replace("Expected non-2xx: 2398\nSlow down: 3\n", "")
    result = run.parse_wrk_output(text)
    assert result.expected_non_2xx == 0
    assert result.errors == 2401


@pytest.mark.parametrize(
    ("template", "values"),
    [
        (run._LUA_GET_SCRIPT, {"headers": 'wrk.headers["Accept"] = "x"', "expected": '"k"'}),
        (
            run._LUA_CODE_SCRIPT,
            {
                "authorize_prefix": '"/a?x=1&code_challenge="',
                "token_path": '"/t"',
                "redirect_uri": '"r"',
                "pkce_file": '"/p"',
                "expected": '"e"',
                "cookie": '"c=1"',
                "authorization": '"Basic x"',
            },
        ),
        (
            run._LUA_REFRESH_SCRIPT,
            {"authorization": '"Basic x"', "tokens_file": '"/f"', "threads": 2},
        ),
        (
            run._LUA_DEVICE_SCRIPT,
            {"authorization": '"Basic x"', "codes_file": '"/f"', "threads": 2, "grant_type": '"g"'},
        ),
    ],
)
def test_wrk_scripts_are_filled_in_whole(template: tuple[str, str], values: dict[str, str]) -> None:
    script = run.lua_script(template, **values)
    assert not re.search(r"\{[a-z_]+\}", script)  # every placeholder filled in
    for name in ("function setup", "function done", "function response", "Expected non-2xx"):
        assert name in script
    # Balanced Lua blocks: as many `end`s as openers (a rough check without a Lua).
    openers = len(re.findall(r"\b(function|if|for|while)\b", script))
    assert len(re.findall(r"\bend\b", script)) == openers


def test_seeded_mode_runs_its_four_scenarios() -> None:
    options = run.parse_args(["--seeded", "postgresql+psycopg://u@h/db"])
    assert options.scenarios == ("token", "introspection", "refresh", "audit_page")
    assert options.servers == ("authserver",)
    with pytest.raises(SystemExit):
        run.parse_args(["--seeded", "postgresql+psycopg://u@h/db", "--scenarios", "jwks"])


def test_seed_sizes_scale() -> None:
    args = seed.parse_args(["postgresql+psycopg://u@h/db", "--scale", "0.01", "--denylist", "7"])
    assert (args.service_accounts, args.families, args.audit_rows) == (1000, 10_000, 100_000)
    assert args.denylist == 7
    assert args.people == 100
    assert seed.batches(5, 2) == [(0, 1), (2, 3), (4, 4)]


def test_seeded_rows_are_read_by_the_server(pg_database_url: str, tmp_path: Path) -> None:
    from authserver.storage.audit import SqlAuditLog
    from authserver.storage.ephemeral import SqlEphemeralStore
    from authserver.storage.refresh import SqlRefreshStore
    from authserver.storage.service_accounts import SqlServiceAccountRepository

    with run.throwaway_database(pg_database_url) as url:
        (tmp_path / "authserver.yaml").write_text(
            f'database_url: "{url}"\nsecret_key_file: "{tmp_path / "secret_key"}"\n'
        )
        run.authserver_cli(tmp_path, "db", "upgrade")
        assert seed.main([url, "--scale", "0.0001", "--audit-rows", "300"]) == 0
        engine = sa.create_engine(url)
        try:
            accounts = SqlServiceAccountRepository(engine).list()
            assert len(accounts) == 10
            assert all(re.fullmatch(r"sa-[0-9a-f]{16}", a.info.client_id) for a in accounts)
            assert all(re.fullmatch(r"[0-9a-f]{64}", a.token_hash or "") for a in accounts)

            page = SqlAuditLog(engine).page(limit=300)
            assert len(page) == 300
            assert [e.id for e in page] == sorted((e.id for e in page), reverse=True)
            issued = next(e for e in page if e.event == "token_issued")
            assert set(issued.details) == {"jti", "scope", "aud", "exp", "grant_type"}
            assert issued.actor == issued.client_id == issued.target

            with engine.connect() as conn:
                key = conn.execute(sa.text("SELECT key FROM ephemeral_entries LIMIT 1")).scalar()
                token_hash, rotated = conn.execute(
                    sa.text("SELECT token_hash, rotated_at FROM refresh_tokens LIMIT 1")
                ).one()
                families = conn.execute(sa.text("SELECT count(*) FROM refresh_families")).scalar()
            assert families == 100
            assert key.startswith("revoked-jti:")
            assert SqlEphemeralStore(engine).get(key) == b"1"
            record = SqlRefreshStore(engine).lookup(token_hash)
            assert record is not None
            assert record.client_id == seed.WEB_CLIENT_ID
            assert (record.rotated_at is None) == (rotated is None)
            assert re.fullmatch(r"[0-9a-f]{64}", token_hash)
        finally:
            engine.dispose()


def test_cpu_of_a_process_group_counts_its_children() -> None:
    """The CPU column sums every process of the server's group (gunicorn's master and
    workers), not only the one started."""
    import subprocess
    import sys
    import time

    burn = "import time\nend = time.process_time() + 0.6\nwhile time.process_time() < end: pass\n"
    # The leader burns, then starts a child that burns as much and lingers a second.
    leader_code = (
        f"{burn}import subprocess, sys\n"
        f"subprocess.run([sys.executable, '-c', {burn + 'time.sleep(1)'!r}])\n"
    )
    leader = subprocess.Popen([sys.executable, "-c", leader_code], start_new_session=True)
    try:
        deadline = time.monotonic() + 30
        seen = 0.0
        while time.monotonic() < deadline and leader.poll() is None:
            seen = max(seen, run.process_group_cpu_seconds(leader.pid) or 0.0)
            time.sleep(0.05)
    finally:
        leader.wait(timeout=30)
    # Both burned 0.6 s: the group's figure is more than one process's worth.
    assert seen > 0.9


def test_report_shows_cpu_per_request_beside_the_signature(
    capsys: pytest.CaptureFixture[str],
) -> None:
    result = run.parse_wrk_output(WRK_OUTPUT)
    rows = [
        run.ScenarioResult("token", "authserver", "u", result, cpu_us_per_request=612.4),
        run.ScenarioResult("token", "peer", "u", result, cpu_us_per_request=401.0),
        run.ScenarioResult("jwks", "authserver", "u", result),
    ]
    meta = {
        "duration_s": 2, "connections": 8, "threads": 2, "algorithm": "RS256",
        "authserver_workers": 2, "cpu_count": 2, "rsa_sign_us": 241.0,
    }  # fmt: skip
    run.print_report(rows, meta)
    out = capsys.readouterr().out
    assert "one RSA-2048 signature costs 241 µs here" in out
    assert re.search(r"^token\s+\|\s+612 \|\s+401$", out, re.M)
    assert re.search(r"^jwks\s+\|\s+\u2014 \|\s+\u2014$", out, re.M)


@pytest.mark.live  # it runs `authserver db upgrade` first
def test_the_in_process_profile_answers_both_paths(capsys: pytest.CaptureFixture[str]) -> None:
    """``bench/inprocess.py``: the app answers the token and introspection requests it
    times (a wrong answer is exit 1), and it prints a figure for each."""
    from bench import inprocess

    assert inprocess.main([]) == 0
    out = capsys.readouterr().out
    assert re.search(r"^RSA-2048 signature: \d+ µs$", out, re.M)
    assert re.search(r"^token: \d+ µs a request", out, re.M)
    assert re.search(r"^introspection: \d+ µs a request", out, re.M)
