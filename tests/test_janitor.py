"""The janitor (storage/janitor.py, ``authserver db prune``): what can never be used again
goes, in batches; nothing live does, and reuse detection (RFC 9700 §4.14.2) still works
for the families it keeps (issue 14.5)."""

from __future__ import annotations

import hashlib
import json
import threading
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
import yaml
from flask import Flask
from flask.testing import FlaskClient
from pydantic import ValidationError

from authserver.app import create_app
from authserver.clock import ManualClock
from authserver.serve import janitor_loop, start_janitor
from authserver.settings import Settings
from authserver.storage.ephemeral import SqlEphemeralStore
from authserver.storage.janitor import KEEP_MARGIN
from authserver.storage.models import db
from authserver.web.services import Services

from .conftest import AppFactory, Backend, close_app
from .support.factories import new_local_user, standard_config
from .support.flows import assert_oauth_error, flask_refresh, flask_sign_in, flask_tokens
from .support.servers import free_port, run_cli, start_server, stderr_lines, stop_server

HOUR = 3600.0
#: The config of these tests: a family lives 10 h, a token unused for 4 h dies.
TOKENS = {"refresh_token_ttl": "10h", "refresh_token_idle_ttl": "4h", "refresh_retry_grace": "5s"}
#: How long a dead family is kept: the access-token lifetime (1 h), the retry grace, 60 s.
KEEP = HOUR + 5 + KEEP_MARGIN


def engine(app: Flask) -> sa.Engine:
    with app.app_context():
        return db.engine


def family_of(app: Flask, token: str) -> str:
    record = Services.of(app).oauth.refresh_tokens.lookup(token)
    assert record is not None
    return record.family_id


def families(app: Flask) -> set[str]:
    with engine(app).connect() as conn:
        return set(conn.execute(sa.text("SELECT id FROM refresh_families")).scalars())


def tokens_by_family(app: Flask) -> dict[str, int]:
    with engine(app).connect() as conn:
        rows = conn.execute(
            sa.text("SELECT family_id, count(*) FROM refresh_tokens GROUP BY family_id")
        )
        return {family: count for family, count in rows}


def ephemeral_rows(app: Flask) -> dict[str, float]:
    with engine(app).connect() as conn:
        rows = conn.execute(sa.text("SELECT key, expires_at FROM ephemeral_entries"))
        return {key: expires_at for key, expires_at in rows}


def audit_events(app: Flask) -> list[dict[str, Any]]:
    Services.of(app).events.flush()
    return [record.as_dict() for record in Services.of(app).audit.page(limit=1000)]


def refreshed(client: FlaskClient, token: str) -> str:
    response = flask_refresh(client, token)
    assert response.status_code == 200, response.get_json()
    new: str = response.get_json()["refresh_token"]
    return new


def revoke_by_reuse(client: FlaskClient, clock: ManualClock, first: str) -> str:
    """Refresh once, then present the rotated token after the grace: the family dies."""
    newest = refreshed(client, first)
    clock.advance(6)
    assert_oauth_error(flask_refresh(client, first), "invalid_grant")
    assert_oauth_error(flask_refresh(client, newest), "invalid_grant")
    return newest


def test_janitor_deletes_only_what_can_never_be_used_again(make_app: AppFactory) -> None:
    clock = ManualClock()
    app = make_app(clock=clock, tokens=TOKENS, audit_retention="1d", session_lifetime="2d")
    client = flask_sign_in(app, new_local_user(app))
    janitor = Services.of(app).janitor
    assert janitor.family_keep == KEEP

    # t = 0: one family kept alive by use until its absolute expiry (10 h), one never used
    # again (idle-dead at 4 h).
    expired = flask_tokens(client)["refresh_token"]
    idle = flask_tokens(client)["refresh_token"]
    expired_family, idle_family = family_of(app, expired), family_of(app, idle)
    for _ in range(3):  # at 3 h, 6 h, 9 h: four members in all
        clock.advance(3 * HOUR)
        expired = refreshed(client, expired)
    # t = 9 h: a family revoked for reuse, long before the janitor runs.
    old_revoked = flask_tokens(client)["refresh_token"]
    old_revoked_family = family_of(app, old_revoked)
    revoke_by_reuse(client, clock, old_revoked)
    # t = 9.5 h: a family that is idle-dead from 13.5 h, i.e. only recently when it runs.
    clock.advance(HOUR / 2)
    recently_idle = flask_tokens(client)["refresh_token"]
    recently_idle_family = family_of(app, recently_idle)
    # t = 13.5 h: a live family with a rotated member (what reuse detection needs).
    clock.advance(4 * HOUR)
    live_first = flask_tokens(client)["refresh_token"]
    live = refreshed(client, live_first)
    live_family = family_of(app, live)
    # t = 14 h: a family revoked for reuse just now.
    clock.advance(HOUR / 2)
    recent_first = flask_tokens(client)["refresh_token"]
    recent_family = family_of(app, recent_first)
    recent_newest = revoke_by_reuse(client, clock, recent_first)
    # Audit events past the retention (1 d), and recent ones.
    audit = Services.of(app).audit
    audit.record_many(
        [
            {"event": "login_failed", "target": "old", "at": clock.utcnow() - timedelta(days=2)},
            {"event": "login_failed", "target": "recent", "at": clock.utcnow()},
        ]
    )
    # The SQL ephemeral table, whatever the store: expired and live entries.
    sql_store = SqlEphemeralStore(engine(app), clock)
    sql_store.put("janitor-test:spent", b"x", 10)
    sql_store.put("janitor-test:live", b"x", 2 * HOUR)
    clock.advance(60)

    before_families = families(app)
    before_tokens = tokens_by_family(app)
    assert before_tokens[expired_family] == 4
    before_entries = ephemeral_rows(app)
    now = clock.now()
    expired_keys = {key for key, at in before_entries.items() if at <= now}
    assert "janitor-test:spent" in expired_keys
    assert "janitor-test:live" not in expired_keys

    dry = janitor.count()
    assert families(app) == before_families  # a count changes nothing
    assert ephemeral_rows(app) == before_entries

    counts = janitor.run(batch_size=2)
    gone = {expired_family, idle_family, old_revoked_family}
    kept = {recently_idle_family, live_family, recent_family}
    assert families(app) == before_families - gone
    assert kept <= families(app)
    after_tokens = tokens_by_family(app)
    assert not gone & after_tokens.keys()
    assert {f: after_tokens[f] for f in kept} == {f: before_tokens[f] for f in kept}
    assert counts.refresh_families == 3
    assert counts.refresh_tokens == sum(before_tokens[f] for f in gone) == 4 + 1 + 2
    assert set(ephemeral_rows(app)) == set(before_entries) - expired_keys
    assert counts.ephemeral_entries == len(expired_keys)
    targets = [e["target"] for e in audit_events(app) if e["event"] == "login_failed"]
    assert targets == ["recent"]
    assert counts.audit_events >= 1
    assert dry == counts

    # Nothing left to do: a second run deletes nothing.
    assert janitor.run().total == 0
    # What is kept still works: the live family refreshes, and its rotated member is
    # still reuse (RFC 9700 §4.14.2); the recently revoked family is still refused.
    assert refreshed(client, live)
    assert_oauth_error(flask_refresh(client, recent_newest), "invalid_grant")
    assert_oauth_error(flask_refresh(client, recently_idle), "invalid_grant")  # idle
    assert "reuse" not in revocations(app, live_family)
    clock.advance(6)
    assert_oauth_error(flask_refresh(client, live_first), "invalid_grant")
    assert revocations(app, live_family) == ["reuse"]
    reuse = [e for e in audit_events(app) if e["event"] == "refresh_reuse_detected"]
    assert live_family in {e["details"].get("family_id") for e in reuse}


def revocations(app: Flask, family: str) -> list[str]:
    with engine(app).connect() as conn:
        reason = conn.execute(
            sa.text("SELECT revoked_reason FROM refresh_families WHERE id = :id"), {"id": family}
        ).scalar()
    return [] if reason is None else [reason]


def test_a_family_is_kept_for_the_access_token_lifetime_after_it_dies(
    make_app: AppFactory,
) -> None:
    """Revoking (RFC 7009 §2.1) or detecting reuse denies the access tokens a family
    issued: its row stays while they can be alive."""
    clock = ManualClock()
    app = make_app(clock=clock, tokens=TOKENS)
    client = flask_sign_in(app, new_local_user(app))
    first = flask_tokens(client)["refresh_token"]
    family = family_of(app, first)
    revoke_by_reuse(client, clock, first)
    janitor = Services.of(app).janitor
    clock.advance(KEEP - 1)
    assert janitor.run().refresh_families == 0
    assert family in families(app)
    clock.advance(2)
    assert janitor.run().refresh_families == 1
    assert family not in families(app)


def test_batches_go_through_every_dead_row(make_app: AppFactory) -> None:
    """Batches of 1 and 2, with live families between the dead ones (the run walks the
    primary key once: a batch starts after the last id of the one before)."""
    clock = ManualClock()
    app = make_app(clock=clock, tokens=TOKENS)
    store = Services.of(app).oauth.refresh_tokens.store
    user_id = user_id_of(app, new_local_user(app))

    def family(lifetime: float) -> str:
        made = store.create_family(
            user_id=user_id,
            client_id="cli",
            scope="openid",
            audience="x",
            auth_time=int(clock.now()),
            expires_at=clock.now() + lifetime,
        )
        store.add_token(made, hashlib.sha256(made.encode()).hexdigest(), clock.now() + lifetime)
        return made

    janitor = Services.of(app).janitor
    for batch_size in (1, 2):
        dead = {family(10) for _ in range(5)}
        live = {family(100 * HOUR) for _ in range(5)}
        clock.advance(10 + KEEP + 1)
        assert janitor.count().refresh_families == 5
        counts = janitor.run(batch_size=batch_size)
        assert (counts.refresh_families, counts.refresh_tokens) == (5, 5)
        assert live <= families(app)
        assert not dead & families(app)
    with pytest.raises(ValueError, match="at least 1"):
        janitor.run(batch_size=0)


def user_id_of(app: Flask, username: str) -> str:
    with engine(app).connect() as conn:
        found: str = conn.execute(
            sa.text("SELECT id FROM users WHERE username = :name"), {"name": username}
        ).scalar_one()
    return found


# -- the command ----------------------------------------------------------------------


@pytest.mark.live
def test_db_prune_command(make_app: AppFactory, backend: Backend, tmp_path: Path) -> None:
    """``authserver db prune``: ``--dry-run`` counts and changes nothing; a run deletes
    the dead families only, reports the counts per table and audits ``janitor_pruned``."""
    # Families made 30 days ago (an app on a clock in the past): dead now.
    past = ManualClock(time.time() - 30 * 86400)
    old_app = make_app(clock=past, tokens=TOKENS)
    old_client = flask_sign_in(old_app, new_local_user(old_app))
    dead = [family_of(old_app, flask_tokens(old_client)["refresh_token"]) for _ in range(3)]
    # And one made now, live.
    app = make_app(tokens=TOKENS)
    client = flask_sign_in(app, new_local_user(app))
    live = flask_tokens(client)["refresh_token"]
    live_family = family_of(app, live)

    config = standard_config("http://127.0.0.1:8080", backend.database_url, tmp_path / "secret_key")
    config["tokens"] = {**config["tokens"], **TOKENS}
    if backend.redis_url:
        config["redis_url"] = backend.redis_url
    path = tmp_path / "authserver.yaml"
    path.write_text(yaml.safe_dump(config))

    bad = run_cli("--config", str(path), "db", "prune", "--batch-size", "0", cwd=tmp_path)
    assert bad.returncode == 2
    assert stderr_lines(bad.stderr) == [
        "authserver: error: --batch-size: must be at least 1, not 0"
    ]

    before = families(app)
    assert set(dead) | {live_family} == before
    dry = run_cli(
        "--config", str(path), "db", "prune", "--dry-run", "--output", "json", cwd=tmp_path
    )
    assert dry.returncode == 0, dry.stderr
    counts = {item["table"]: item["rows"] for item in json.loads(dry.stdout)}
    assert all(item["dry_run"] for item in json.loads(dry.stdout))
    assert counts["refresh_families"] == 3
    assert counts["refresh_tokens"] == 3
    assert counts["audit_events"] == 0  # no audit_retention
    assert families(app) == before
    assert not [e for e in audit_events(app) if e["event"] == "janitor_pruned"]

    run = run_cli("--config", str(path), "db", "prune", "--batch-size", "2", cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    assert lines[0].split() == ["TABLE", "DELETED"]
    table = dict(line.split() for line in lines[1:5])
    assert table == {
        "refresh_families": "3",
        "refresh_tokens": "3",
        "ephemeral_entries": table["ephemeral_entries"],
        "audit_events": "0",
    }
    assert "audit_events: kept (no audit_retention set)" in run.stdout
    assert families(app) == {live_family}
    assert refreshed(client, live)
    (event,) = [e for e in audit_events(app) if e["event"] == "janitor_pruned"]
    assert event["actor"].startswith("cli")
    assert event["address"] == "local"
    assert event["details"]["refresh_families"] == 3
    assert event["details"]["refresh_tokens"] == 3


# -- inside serve: one worker of the deployment per janitor.interval ------------------


def dead_family(app: Flask, clock: ManualClock) -> str:
    """A family whose absolute expiry has just passed, made by the repository."""
    store = Services.of(app).oauth.refresh_tokens.store
    family = store.create_family(
        user_id=user_id_of(app, new_local_user(app)),
        client_id="cli",
        scope="openid",
        audience="x",
        auth_time=int(clock.now()),
        expires_at=clock.now() - KEEP - 1,
    )
    store.add_token(family, hashlib.sha256(family.encode()).hexdigest(), clock.now() + 10)
    return family


def test_run_if_due_runs_once_per_interval_and_keeps_audit_events(
    make_app: AppFactory, backend: Backend
) -> None:
    clock = ManualClock()
    app = make_app(clock=clock, tokens=TOKENS, audit_retention="1d")
    services = Services.of(app)
    services.audit.record_many(
        [{"event": "login_failed", "target": "old", "at": clock.utcnow() - timedelta(days=2)}]
    )
    first = dead_family(app, clock)
    counts = services.janitor.run_if_due(services.ephemeral, 1.0)
    assert counts is not None
    assert counts.refresh_families == 1
    assert counts.audit_events == 0
    assert first not in families(app)
    # Another worker within the interval: not due.
    second = dead_family(app, clock)
    assert services.janitor.run_if_due(services.ephemeral, 1.0) is None
    assert second in families(app)
    backend.wait(clock, 1.2)
    counts = services.janitor.run_if_due(services.ephemeral, 1.0)
    assert counts is not None
    assert counts.refresh_families == 1
    assert second not in families(app)
    # The server's own runs never delete audit events (only the commands do).
    targets = [e["target"] for e in audit_events(app) if e["event"] == "login_failed"]
    assert targets == ["old"]


def test_a_serve_worker_runs_the_janitor_in_a_thread(make_app: AppFactory) -> None:
    clock = ManualClock()
    app = make_app(clock=clock, tokens=TOKENS, janitor={"interval": "1h"})
    family = dead_family(app, clock)
    stop = threading.Event()
    thread = threading.Thread(target=janitor_loop, args=(Services.of(app), stop, 0.05))
    thread.start()
    try:
        deadline = time.monotonic() + 15
        while family in families(app) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert family not in families(app)
    finally:
        stop.set()
        thread.join(timeout=10)
    assert not thread.is_alive()


def test_janitor_settings(make_app: AppFactory) -> None:
    assert Settings().janitor.interval == 3600
    assert Settings().janitor.batch_size == 1000
    for off in (0, "0", "off"):
        assert Settings.model_validate({"janitor": {"interval": off}}).janitor.interval == 0
    assert Settings.model_validate({"janitor": {"interval": "15m"}}).janitor.interval == 900
    with pytest.raises(ValidationError, match=r"janitor\.interval"):
        Settings.model_validate({"janitor": {"interval": "soon"}})
    with pytest.raises(ValidationError, match=r"janitor\.batch_size"):
        Settings.model_validate({"janitor": {"batch_size": 0}})
    assert start_janitor(make_app(janitor={"interval": 0})) is None


def test_a_family_between_its_creation_and_its_first_token_is_kept(
    make_app: AppFactory,
) -> None:
    """``start_family`` makes the family, then its first token in another transaction:
    a janitor run in between must not take the memberless family for idle-dead."""
    clock = ManualClock()
    app = make_app(clock=clock, tokens=TOKENS)
    store = Services.of(app).oauth.refresh_tokens.store
    family = store.create_family(
        user_id=user_id_of(app, new_local_user(app)),
        client_id="cli",
        scope="openid",
        audience="x",
        auth_time=int(clock.now()),
        expires_at=clock.now() + 10 * HOUR,
    )
    assert Services.of(app).janitor.run().refresh_families == 0
    assert family in families(app)


@pytest.mark.live
def test_serve_runs_the_janitor(tmp_path: Path) -> None:
    """A real ``serve`` (2 gunicorn workers): a dead family goes within the interval, and
    the run is in the server's log."""
    port = free_port()
    config = standard_config(
        f"http://127.0.0.1:{port}", f"sqlite:///{tmp_path / 'authserver.db'}", tmp_path / "key"
    )
    config["janitor"] = {"interval": "1s"}
    server = start_server(tmp_path, config, port)
    try:
        past = ManualClock(time.time() - 30 * 86400)
        app = create_app(Settings.model_validate(config), clock=past)
        try:
            family = dead_family(app, past)
            deadline = time.monotonic() + 20
            while family in families(app) and time.monotonic() < deadline:
                time.sleep(0.1)
            assert family not in families(app), server.log()
        finally:
            close_app(app)
    finally:
        stop_server(server)
    assert "janitor: deleted refresh_families 1, refresh_tokens 1" in server.log()
