"""Factories: the standard settings (clients, roles), people and an emptied database.

One place makes what many tests need: the config every app and live server starts
from, a local user of an in-process app or of a live server, the hash of a secret.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
from typing import TYPE_CHECKING, Any

import bcrypt
import sqlalchemy as sa
import yaml
from argon2 import PasswordHasher
from flask import Flask

from authserver.web.services import Services

if TYPE_CHECKING:
    from pathlib import Path

    from .servers import InProcessServer, LiveServer

#: The password of every person the factories make.
PASSWORD = "correct horse battery staple"

#: Secrets of the standard test clients (their hashes go into the config).
SECRETS = {
    "ci": "ci-secret-0123456789",
    "ci-b64": "b64-secret-0123456789",
    "ci-argon": "argon-secret-0123456789",
    "reader": "reader-secret-0123456789",
    "rs": "resource-server-secret-0123",
    "webapp": "webapp-secret-0123456789",
}
AUDIENCES = ["https://api.example.com", "https://flyte.example.com"]


def bcrypt_hash(secret: str, rounds: int = 4) -> str:
    """Low cost keeps the suite fast; the scheme and code paths are the real ones."""
    return bcrypt.hashpw(secret.encode(), bcrypt.gensalt(rounds=rounds)).decode()


def standard_config(issuer: str, database_url: str, secret_key_file: Path) -> dict[str, Any]:
    return {
        "issuer": issuer,
        "database_url": database_url,
        "secret_key_file": str(secret_key_file),
        "signing": {"algorithm": "RS256", "rotate_every": "30d", "publish_ahead": "10m"},
        "tokens": {"access_token_ttl": "1h", "audiences": AUDIENCES},
        "clients": [
            {
                "client_id": "ci",
                "client_secret_hash": bcrypt_hash(SECRETS["ci"]),
                "grant_types": ["client_credentials"],
                "scopes": ["all", "read", "write"],
                "roles": ["user"],
            },
            {
                "client_id": "ci-b64",
                "client_secret_hash": base64.b64encode(
                    bcrypt_hash(SECRETS["ci-b64"]).encode()
                ).decode(),
                "grant_types": ["client_credentials"],
                "scopes": ["all"],
                "roles": ["admin"],
            },
            {
                "client_id": "ci-argon",
                "client_secret_hash": PasswordHasher(time_cost=1, memory_cost=8192).hash(
                    SECRETS["ci-argon"]
                ),
                "grant_types": ["client_credentials"],
                "scopes": ["all"],
            },
            {
                # confidential, but not allowed client credentials
                "client_id": "reader",
                "client_secret_hash": bcrypt_hash(SECRETS["reader"]),
                "grant_types": ["authorization_code"],
                "redirect_uris": ["https://reader.example.com/cb"],
                "scopes": ["read"],
            },
            {
                # a resource server: may introspect every client's tokens
                "client_id": "rs",
                "client_secret_hash": bcrypt_hash(SECRETS["rs"]),
                "grant_types": ["client_credentials"],
                "scopes": ["read"],
                "introspect": True,
            },
            {
                "client_id": "cli",
                "public": True,
                "grant_types": [
                    "authorization_code",
                    "refresh_token",
                    "urn:ietf:params:oauth:grant-type:device_code",
                ],
                "redirect_uris": [
                    "http://127.0.0.1/callback",
                    "http://localhost:53593/callback",
                ],
                "scopes": ["openid", "profile", "email", "offline_access", "all"],
            },
            {
                # a confidential web app that asks for consent
                "client_id": "webapp",
                "client_secret_hash": bcrypt_hash(SECRETS["webapp"]),
                "grant_types": ["authorization_code", "refresh_token"],
                "redirect_uris": ["https://app.example.com/cb"],
                "post_logout_redirect_uris": ["https://app.example.com/bye"],
                "scopes": ["openid", "profile", "email", "groups", "offline_access", "read"],
                "consent": True,
            },
        ],
        "rbac": {
            "default_role": "user",
            "roles": {"admin": ["*"], "user": ["read", "write"], "viewer": ["read"]},
            "group_roles": {"platform-admins": "admin", "viewers": "viewer"},
        },
    }


def empty_pg(url: str) -> None:
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        tables = [
            row[0]
            for row in conn.execute(
                sa.text("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
            )
            if row[0] != "alembic_version"
        ]
        if tables:
            conn.execute(sa.text(f"TRUNCATE {', '.join(tables)}"))
    engine.dispose()


def new_local_user(app: Flask, role: str | None = None) -> str:
    """A local user of an in-process app, made through the person service."""
    name = f"user-{secrets.token_hex(4)}"
    with app.app_context():
        Services.of(app).users.create_local(name, PASSWORD, role)
    return name


def new_user(server: LiveServer | InProcessServer, role: str | None = None) -> str:
    """A local user of a server (through the CLI of a live one, the person service of
    an in-process one); returns the username."""
    from .servers import InProcessServer

    if isinstance(server, InProcessServer):
        return new_local_user(server.app, role)
    name = f"user-{secrets.token_hex(4)}"
    args = ["users", "create", name, "--password-stdin"]
    if role:
        args += ["--role", role]
    result = server.cli(*args, input_text=PASSWORD + "\n")
    assert result.returncode == 0, result.stderr
    return name


def create_user(server: LiveServer | InProcessServer, username: str, role: str = "user") -> str:
    """The local user ``username`` with :data:`PASSWORD` (through the CLI of a live
    server, the person service of an in-process one); returns their id, the ``sub``
    of their tokens."""
    from .servers import InProcessServer

    if isinstance(server, InProcessServer):
        with server.app.app_context():
            person, _ = Services.of(server.app).users.create_local(username, PASSWORD, role)
            return str(person.id)
    created = server.cli(
        "users", "create", username, "--role", role, "--password-stdin", input_text=PASSWORD + "\n"
    )
    assert created.returncode == 0, created.stderr
    config = yaml.safe_load(server.config_path.read_text())
    engine = sa.create_engine(config["database_url"])
    try:
        with engine.connect() as conn:
            user_id = conn.execute(
                sa.text("SELECT id FROM users WHERE username = :name"), {"name": username}
            ).scalar_one()
    finally:
        engine.dispose()
    return str(user_id)


def database_url(server: LiveServer | InProcessServer) -> str:
    """The ``database_url`` of a server's config."""
    config = yaml.safe_load(server.config_path.read_text())
    return str(config["database_url"])


def token_row(url: str, token: str) -> dict[str, Any] | None:
    """The refresh_tokens row of ``token`` (found by its SHA-256), with its family."""
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            row = (
                conn.execute(
                    sa.text(
                        "SELECT t.token_hash, t.family_id, t.rotated_at, f.revoked_at "
                        "FROM refresh_tokens t JOIN refresh_families f ON f.id = t.family_id "
                        "WHERE t.token_hash = :h"
                    ),
                    {"h": hashlib.sha256(token.encode()).hexdigest()},
                )
                .mappings()
                .first()
            )
    finally:
        engine.dispose()
    return dict(row) if row else None
