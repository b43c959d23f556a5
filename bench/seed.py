#!/usr/bin/env python3
"""Fill an authserver PostgreSQL database with the rows of a large deployment.

Issue 14, goal 5: the token, refresh, introspection and audit-page requests should
cost the same on a database with 100k service accounts, 1M refresh-token families,
10M audit rows and 1M denylisted jtis as on an empty one. This script makes that
database; ``bench/run.py --seeded URL`` measures it against an empty one.

    authserver --config CONFIG db upgrade          # the schema first
    python bench/seed.py postgresql+psycopg://postgres@127.0.0.1:5432/big
    python bench/seed.py URL --scale 0.01          # a hundredth of every size

The rows are made by PostgreSQL itself (``INSERT ... SELECT`` over
``generate_series``, in batches, each its own transaction), shaped as the server
writes them (``authserver/storage/models.py`` and the repositories beside it):

* ``users``: people from an upstream IdP (``source = 'upstream'``, no password; ids
  ``uuid4().hex``), the owners of the refresh families;
* ``service_accounts``: ``sa-`` + 16 hex digits, the SHA-256 hex digest of a token
  ``as_sa_<client_id>.<secret>`` (the server stores only that), role ``user``;
* ``refresh_families`` and ``refresh_tokens``: ids of 32 hex digits, 30-day families,
  each with ``--tokens-per-family`` members (all but the newest rotated), stored as
  the SHA-256 hex digest of an ``as_rt_`` token; 5 % of the families revoked;
* ``audit_events``: ids as ``web/audit.EventIds`` makes them (microseconds * 1000 +
  a tag), spread over ``--audit-days``; mostly ``token_issued`` rows with the details
  the server keeps (``jti``, ``scope``, ``aud``, ``exp``, ``grant_type``);
* ``ephemeral_entries``: the SQL store's jti denylist, keys ``revoked-jti:<jti>``,
  value ``1``, live for ``--denylist-ttl`` (expired rows are purged by the server's
  own writes, all at once: seed shortly before a run).

Nothing is deleted: running it twice adds the rows twice (names are made unique by
a run tag). It needs psycopg (authserver's PostgreSQL driver).
"""

from __future__ import annotations

import argparse
import secrets
import sys
import time
import urllib.parse
from collections.abc import Sequence
from typing import Any

#: The sizes of issue 14 (goal 5), scaled by --scale.
DEFAULTS = {
    "service_accounts": 100_000,
    "families": 1_000_000,
    "audit_rows": 10_000_000,
    "denylist": 1_000_000,
}
#: Rows per INSERT ... SELECT (one transaction each).
BATCH = 200_000
AUDIENCE = "https://api.example.com"
WEB_CLIENT_ID = "bench-web"
UPSTREAM_ISSUER = "https://idp.example.com"

# Secrets and tokens are two md5s of random() (64 hex digits); the server stores the
# SHA-256 hex digest of a token, so that is what is stored here too.
USERS_SQL = """
INSERT INTO users (id, username, email, name, password_hash, role, groups, source,
                   upstream_issuer, upstream_subject, disabled, created_at, last_login_at,
                   credentials_generation, email_verified, password_must_change)
SELECT replace(gen_random_uuid()::text, '-', ''),
       'seed-' || %(tag)s || '-' || g || '@example.com',
       'seed-' || %(tag)s || '-' || g || '@example.com',
       'Seeded Person ' || g,
       NULL, 'user', '[]'::json, 'upstream', %(issuer)s, %(tag)s || '-' || g, false,
       now() - random() * interval '365 days', now() - random() * interval '30 days',
       0, true, false
FROM generate_series(%(start)s::bigint, %(stop)s::bigint) AS g
"""

SERVICE_ACCOUNTS_SQL = """
INSERT INTO service_accounts (client_id, name, role, scopes, token_hash, created_at,
                              created_by, expires_at, rotated_at, last_used_at)
SELECT client_id, 'seed-' || %(tag)s || '-' || g, 'user', '["read", "write"]'::json,
       encode(sha256(convert_to(
         'as_sa_' || client_id || '.' || md5(random()::text) || md5(random()::text), 'UTF8'
       )), 'hex'),
       now() - random() * interval '365 days', 'cli', NULL, NULL,
       now() - random() * interval '7 days'
FROM (SELECT g, 'sa-' || substr(md5(random()::text), 1, 16) AS client_id
      FROM generate_series(%(start)s::bigint, %(stop)s::bigint) AS g) AS made
"""

# The owners: the seeded people, numbered, in a temporary table.
OWNERS_SQL = """
CREATE TEMPORARY TABLE seed_owners AS
SELECT row_number() OVER () - 1 AS n, id FROM users WHERE username LIKE %(pattern)s
"""

FAMILIES_SQL = """
WITH family AS (
  INSERT INTO refresh_families (id, user_id, client_id, scope, audience, auth_time,
                                created_at, expires_at, revoked_at, revoked_reason)
  SELECT md5(random()::text), o.id, %(client_id)s, 'openid all', %(audience)s,
         extract(epoch FROM made.at)::integer, made.at, made.at + interval '30 days',
         CASE WHEN made.revoked THEN made.at + interval '1 day' END,
         CASE WHEN made.revoked THEN 'revoked' END
  FROM (SELECT g, now() - random() * interval '29 days' AS at, random() < 0.05 AS revoked
        FROM generate_series(%(start)s::bigint, %(stop)s::bigint) AS g) AS made
  JOIN seed_owners AS o ON o.n = made.g %% %(owners)s::bigint
  RETURNING id, created_at
)
INSERT INTO refresh_tokens (token_hash, family_id, created_at, idle_expires_at, rotated_at)
SELECT encode(sha256(convert_to(
         'as_rt_' || md5(random()::text) || md5(random()::text), 'UTF8'
       )), 'hex'),
       family.id,
       family.created_at + (k - 1) * interval '1 hour',
       family.created_at + (k - 1) * interval '1 hour' + interval '7 days',
       CASE WHEN k < %(per_family)s::integer THEN family.created_at + k * interval '1 hour' END
FROM family CROSS JOIN generate_series(1, %(per_family)s::integer) AS k
"""

# One row every `step` microseconds up to now: ids as web/audit.EventIds makes them.
AUDIT_SQL = """
INSERT INTO audit_events (id, at, event, actor, client_id, target, address, details)
SELECT (extract(epoch FROM made.at) * 1000000)::bigint * 1000 + made.g %% 1000,
       made.at, made.event,
       CASE WHEN made.event = 'token_issued' THEN made.client ELSE made.person END,
       CASE WHEN made.event LIKE 'token_%%' THEN made.client END,
       CASE WHEN made.event = 'token_issued' THEN made.client ELSE made.person END,
       '10.0.' || (made.g %% 250) || '.' || (made.g %% 200),
       CASE WHEN made.event IN ('token_issued', 'token_revoked') THEN json_build_object(
              'jti', substr(md5(random()::text), 1, 22),
              'scope', 'read write',
              'aud', %(audience)s::text,
              'exp', extract(epoch FROM made.at)::bigint + 3600,
              'grant_type', 'client_credentials')
            ELSE json_build_object('username', made.person) END
FROM (SELECT g,
             %(now)s::timestamptz
               - (%(rows)s::bigint - g) * %(step)s::bigint * interval '1 microsecond' AS at,
             CASE WHEN g %% 20 = 0 THEN 'login'
                  WHEN g %% 97 = 0 THEN 'login_failed'
                  WHEN g %% 101 = 0 THEN 'token_revoked'
                  ELSE 'token_issued' END AS event,
             'sa-' || lpad(to_hex(g %% 100000), 16, '0') AS client,
             'seed-person-' || (g %% 10000) || '@example.com' AS person
      FROM generate_series(%(start)s::bigint, %(stop)s::bigint) AS g) AS made
ON CONFLICT (id) DO NOTHING
"""

DENYLIST_SQL = """
INSERT INTO ephemeral_entries (key, value, counter, expires_at)
SELECT 'revoked-jti:' || substr(md5(random()::text) || md5(random()::text), 1, 22),
       '\\x31'::bytea, 0,
       extract(epoch FROM now()) + %(ttl)s * (0.5 + random() / 2)
FROM generate_series(%(start)s::bigint, %(stop)s::bigint) AS g
ON CONFLICT (key) DO NOTHING
"""


def plain_url(url: str) -> str:
    """SQLAlchemy's ``postgresql+psycopg://`` as libpq's ``postgresql://``."""
    parts = urllib.parse.urlsplit(url)
    scheme = parts.scheme.split("+", 1)[0]
    if scheme not in ("postgresql", "postgres"):
        raise SystemExit(f"seed: {url!r} is not a PostgreSQL URL")
    return parts._replace(scheme="postgresql").geturl()


def batches(total: int, size: int = BATCH) -> list[tuple[int, int]]:
    return [(start, min(start + size, total) - 1) for start in range(0, total, size)]


def fill(conn: Any, what: str, sql: str, total: int, **params: Any) -> None:
    started = time.monotonic()
    done = 0
    for start, stop in batches(total):
        with conn.transaction():
            conn.execute(sql, {**params, "start": start, "stop": stop})
        done += stop - start + 1
        rate = done / max(time.monotonic() - started, 1e-6)
        print(f"  {what}: {done:,} of {total:,} ({rate:,.0f} rows/s)", flush=True)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("url", help="the database, after `authserver db upgrade`")
    parser.add_argument(
        "--scale", type=float, default=1.0, help="multiply every default size (e.g. 0.01)"
    )
    for name, size in DEFAULTS.items():
        flag = "--" + name.replace("_", "-")
        parser.add_argument(flag, type=int, help=f"rows (default {size:,} x --scale)")
    parser.add_argument(
        "--people",
        type=int,
        help="people owning the families (default: one per 100 families, at least 1)",
    )
    parser.add_argument("--tokens-per-family", type=int, default=2, help="default 2")
    parser.add_argument(
        "--audit-days", type=float, default=90.0, help="audit rows span this many days"
    )
    parser.add_argument(
        "--denylist-ttl",
        type=float,
        default=86400.0,
        help="seconds the denylist entries live (from half of it to all of it; default 1 day)",
    )
    args = parser.parse_args(argv)
    if args.scale <= 0:
        parser.error("--scale must be positive")
    for name, size in DEFAULTS.items():
        if getattr(args, name) is None:
            setattr(args, name, max(1, round(size * args.scale)))
        if getattr(args, name) < 0:
            parser.error(f"--{name.replace('_', '-')} must not be negative")
    if args.people is None:
        args.people = max(1, args.families // 100)
    if args.tokens_per_family < 1:
        parser.error("--tokens-per-family must be at least 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    import psycopg  # authserver's PostgreSQL driver

    tag = secrets.token_hex(3)
    started = time.monotonic()
    with psycopg.connect(plain_url(args.url), autocommit=True) as conn:
        schema = conn.execute("SELECT to_regclass('alembic_version')").fetchone()
        if schema is None or schema[0] is None:
            print("seed: no schema here: run `authserver db upgrade` first", file=sys.stderr)
            return 1
        print(
            f"seeding (run tag {tag}): {args.people:,} people, "
            f"{args.service_accounts:,} service accounts, {args.families:,} refresh families "
            f"({args.tokens_per_family} tokens each), {args.audit_rows:,} audit rows, "
            f"{args.denylist:,} denylisted jtis",
            flush=True,
        )
        fill(conn, "people", USERS_SQL, args.people, tag=tag, issuer=UPSTREAM_ISSUER)
        fill(conn, "service accounts", SERVICE_ACCOUNTS_SQL, args.service_accounts, tag=tag)
        conn.execute(OWNERS_SQL, {"pattern": f"seed-{tag}-%"})
        fill(
            conn, "refresh families", FAMILIES_SQL, args.families,
            client_id=WEB_CLIENT_ID, audience=AUDIENCE, owners=args.people,
            per_family=args.tokens_per_family,
        )  # fmt: skip
        now = conn.execute("SELECT now()").fetchone()[0]  # type: ignore[index]
        step = max(1, int(args.audit_days * 86400e6 / max(args.audit_rows, 1)))
        fill(
            conn, "audit rows", AUDIT_SQL, args.audit_rows,
            audience=AUDIENCE, now=now, rows=args.audit_rows, step=step,
        )  # fmt: skip
        fill(conn, "denylisted jtis", DENYLIST_SQL, args.denylist, ttl=args.denylist_ttl)
        print("  analyze ...", flush=True)
        conn.execute("ANALYZE")
    print(f"seeded in {time.monotonic() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
