"""``create_app(settings)``: the one place where objects are built and wired (DESIGN.md)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from flask import Flask
from flask_migrate import Migrate

from .keys import KeyEncryptor, KeyManager
from .oauth.clients import StaticClientStore
from .oauth.metadata import server_metadata
from .oauth.secrets import SecretVerifier
from .oauth.server import AuthServer
from .oauth.tokens import AccessTokens
from .settings import Settings
from .storage.database import configure_engine, engine_options, normalize_database_url
from .storage.ephemeral import EphemeralStore, RedisEphemeralStore, SqlEphemeralStore
from .storage.keys import SqlKeyRepository
from .storage.models import db
from .web import discovery, oauth
from .web.errors import register_error_handlers
from .web.sessions import CookieSessionInterface

log = logging.getLogger("authserver")


def migrations_directory() -> str:
    here = Path(__file__).resolve().parent
    for candidate in (here / "_data" / "migrations", here.parent / "migrations"):
        if (candidate / "env.py").exists():
            return str(candidate)
    raise FileNotFoundError("the database migrations are missing from this install")


def create_app(settings: Settings, *, ephemeral: EphemeralStore | None = None) -> Flask:
    """Build the application for ``settings``.

    ``ephemeral`` replaces the store ``settings`` would choose (tests use it to
    namespace Redis keys).
    """
    app = Flask("authserver", static_folder=None)
    database_url = normalize_database_url(settings.database_url)
    app.config.update(
        SECRET_KEY=settings.load_secret_key(),
        SQLALCHEMY_DATABASE_URI=database_url,
        SQLALCHEMY_ENGINE_OPTIONS=engine_options(database_url),
        MAX_CONTENT_LENGTH=settings.max_form_bytes,
        AUTHSERVER_BASE_URL=settings.base_url,
        JSON_SORT_KEYS=False,
    )
    app.session_interface = CookieSessionInterface()
    db.init_app(app)
    Migrate(app, db, directory=migrations_directory())

    with app.app_context():
        engine = db.engine
    configure_engine(engine)

    if ephemeral is None:
        ephemeral = (
            RedisEphemeralStore.from_url(settings.redis_url)
            if settings.redis_url
            else SqlEphemeralStore(engine)
        )

    keys = KeyManager(
        SqlKeyRepository(engine),
        KeyEncryptor(app.config["SECRET_KEY"]),
        algorithm=settings.signing.algorithm,
        rotate_every=settings.signing.rotate_every,
        publish_ahead=settings.signing.publish_ahead,
        token_ttl=settings.tokens.access_token_ttl,
    )
    clients = StaticClientStore(settings.clients, SecretVerifier())
    access_tokens = AccessTokens(
        settings.issuer, keys, ephemeral, ttl=settings.tokens.access_token_ttl
    )
    server = AuthServer(
        clients,
        access_tokens,
        audiences=settings.tokens.audiences,
        default_audience=settings.default_audience,
        events=_log_event,
    )

    app.extensions.update(
        {
            "authserver.settings": settings,
            "authserver.ephemeral": ephemeral,
            "authserver.keys": keys,
            "authserver.oauth": server,
            "authserver.metadata": server_metadata(
                settings.issuer, settings.base_url, clients.all(), settings.signing.algorithm
            ),
        }
    )
    app.register_blueprint(discovery.bp)
    app.register_blueprint(oauth.bp)
    register_error_handlers(app)
    return app


def _log_event(event: str, **details: Any) -> None:
    # Per-request events: the audit log records them durably; here only for debugging.
    if log.isEnabledFor(logging.DEBUG):
        client = details.get("client")
        log.debug("%s client_id=%s", event, getattr(client, "client_id", None))
