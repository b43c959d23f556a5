"""``create_app(settings)``: the one place where objects are built and wired (DESIGN.md).

What it builds is kept in one frozen :class:`~authserver.web.services.Services` on the
app; one :class:`~authserver.clock.Clock` is passed to everything that reads the time.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from flask import Flask
from flask_migrate import Migrate

from .admin.audit import AuditTrail
from .bootstrap import load_secret_key
from .clock import SYSTEM_CLOCK, Clock
from .identity.federation import Upstream
from .identity.forward_auth import ForwardAuth, HostRules
from .identity.service_accounts import ServiceAccountService
from .identity.users import UserService
from .keys import KeyEncryptor, KeyManager
from .oauth.clients import ChainedClientStore, Client, StaticClientStore
from .oauth.federation import Federation
from .oauth.metadata import server_metadata
from .oauth.oidc import IdTokens
from .oauth.refresh import RefreshTokens
from .oauth.secrets import SecretVerifier
from .oauth.server import AuthServer
from .oauth.throttle import client_auth_throttle, login_throttle
from .oauth.tokens import AccessTokens
from .paths import DEVICE_VERIFICATION_PATH, TOKEN_PATH
from .settings import ClientSettings, Settings, read_logo
from .storage.audit import SqlAuditLog
from .storage.database import (
    configure_engine,
    engine_options,
    normalize_database_url,
    ping_database,
)
from .storage.ephemeral import EphemeralStore, RedisEphemeralStore, SqlEphemeralStore
from .storage.janitor import Janitor
from .storage.keys import SqlKeyRepository
from .storage.models import IdTokenSigningKey, db
from .storage.ratelimit import RateLimits
from .storage.refresh import SqlRefreshStore
from .storage.service_accounts import SqlServiceAccountRepository
from .storage.users import SqlUserRepository
from .web import (
    access_log,
    account,
    admin_api,
    authorize,
    branding,
    dashboard,
    device,
    discovery,
    forward_auth,
    health,
    login,
    oauth,
)
from .web import metrics as web_metrics
from .web.adapter import bound_streamed_body
from .web.audit import FlaskRequestScope
from .web.errors import register_error_handlers
from .web.form_endpoints import FormEndpoints
from .web.pages import security_headers
from .web.services import Services
from .web.sessions import CookieSessionInterface


def migrations_directory() -> str:
    here = Path(__file__).resolve().parent
    for candidate in (here / "_data" / "migrations", here.parent / "migrations"):
        if (candidate / "env.py").exists():
            return str(candidate)
    raise FileNotFoundError("the database migrations are missing from this install")


def client_from_settings(settings: ClientSettings, verifier: SecretVerifier) -> Client:
    """A configured client (DESIGN.md ``clients:``) as the protocol layer sees it."""
    return Client(
        client_id=settings.client_id,
        is_public=settings.public,
        secret_hash=settings.client_secret_hash,
        grant_types=settings.grant_types,
        redirect_uris=settings.redirect_uris,
        scopes=settings.scopes,
        roles=settings.roles,
        verifier=verifier,
        introspect=settings.introspect,
        consent=settings.consent,
        post_logout_redirect_uris=settings.post_logout_redirect_uris,
        introspect_audiences=settings.introspect_audiences,
        jwks=tuple(settings.jwks["keys"]) if settings.jwks else (),
    )


def static_clients(settings: Settings, verifier: SecretVerifier) -> list[Client]:
    """The clients of the config file, sharing one secret verifier (and its cache)."""
    return [client_from_settings(client, verifier) for client in settings.clients]


def create_app(
    settings: Settings, *, ephemeral: EphemeralStore | None = None, clock: Clock | None = None
) -> Flask:
    """Build the application for ``settings``.

    ``ephemeral`` replaces the store ``settings`` would choose (tests use it to
    namespace Redis keys); ``clock`` the real time, for everything that decides by the
    time (tests move a :class:`~authserver.clock.ManualClock` instead of sleeping).
    """
    clock = SYSTEM_CLOCK if clock is None else clock
    app = Flask("authserver", static_folder=None, template_folder="web/templates")
    database_url = normalize_database_url(settings.database_url)
    app.config.update(
        SECRET_KEY=load_secret_key(settings),
        SESSION_COOKIE_NAME="authserver_session",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=settings.issuer.startswith("https://"),
        PERMANENT_SESSION_LIFETIME=int(settings.session_lifetime),
        WTF_CSRF_TIME_LIMIT=3600,
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
            RedisEphemeralStore.from_url(settings.redis_url, prefix=settings.redis_prefix)
            if settings.redis_url
            else SqlEphemeralStore(engine, clock)
        )

    keys = KeyManager(
        SqlKeyRepository(engine),
        KeyEncryptor(app.config["SECRET_KEY"]),
        algorithm=settings.signing.algorithm,
        rotate_every=settings.signing.rotate_every,
        publish_ahead=settings.signing.publish_ahead,
        token_ttl=settings.tokens.access_token_ttl,
        clock=clock,
    )
    # OIDC Discovery §3: RS256 must be among the ID token algorithms. With another
    # algorithm for access tokens, ID tokens get a line of RS256 keys of their own.
    id_token_keys = keys
    if settings.signing.algorithm != "RS256":
        id_token_keys = KeyManager(
            SqlKeyRepository(engine, IdTokenSigningKey),
            KeyEncryptor(app.config["SECRET_KEY"]),
            algorithm="RS256",
            rotate_every=settings.signing.rotate_every,
            publish_ahead=settings.signing.publish_ahead,
            token_ttl=settings.tokens.access_token_ttl,
            clock=clock,
        )
    static = StaticClientStore(static_clients(settings, SecretVerifier()))
    service_accounts = ServiceAccountService(
        SqlServiceAccountRepository(engine),
        settings.rbac,
        clock=clock.now,
        issuer=settings.issuer,
        token_url=settings.base_url + TOKEN_PATH,
    )
    clients = ChainedClientStore(static, service_accounts.get_client)
    metrics = None
    if settings.metrics.access != "off":
        metrics = web_metrics.Metrics(os.environ.get(web_metrics.MULTIPROC_ENV) or None)
    events = AuditTrail(
        SqlAuditLog(engine, clock),
        observe=metrics.count_event if metrics else None,
        scope=FlaskRequestScope(),
        clock=clock,
    )
    access_tokens = AccessTokens(
        settings.issuer, keys, ephemeral, ttl=settings.tokens.access_token_ttl, clock=clock
    )
    refresh_store = SqlRefreshStore(engine, clock)
    refresh_tokens = RefreshTokens(
        refresh_store,
        ephemeral,
        access_tokens,
        ttl=settings.tokens.refresh_token_ttl,
        idle_ttl=settings.tokens.refresh_token_idle_ttl,
        retry_grace=settings.tokens.refresh_retry_grace,
        clock=clock,
    )
    users = UserService(
        SqlUserRepository(engine),
        settings.rbac,
        clock=clock.now,
        refresh_families=refresh_tokens,
    )
    # The failure limits fail open: a stalled Redis may cost their reads 250 ms, not the
    # 1 s that the rest waits before answering 503.
    ratelimits = RateLimits(
        ephemeral.with_timeout(0.25) if isinstance(ephemeral, RedisEphemeralStore) else ephemeral,
        clock=clock,
    )
    server = AuthServer(
        clients,
        access_tokens,
        issuer=settings.issuer,
        audiences=settings.tokens.audiences,
        default_audience=settings.default_audience,
        store=ephemeral,
        users=users,
        refresh_tokens=refresh_tokens,
        id_tokens=IdTokens(
            settings.issuer, id_token_keys, ttl=settings.tokens.access_token_ttl, clock=clock
        ),
        device_verification_uri=settings.base_url + DEVICE_VERIFICATION_PATH,
        device_code_ttl=settings.tokens.device_code_ttl,
        device_poll_interval=settings.tokens.device_poll_interval,
        events=events,
        clock=clock,
        client_throttle=client_auth_throttle(ratelimits, settings.rate_limits),
        federation=Federation(
            settings.federated_identities, issuer=settings.issuer, store=ephemeral, clock=clock
        ),
    )
    janitor = Janitor(
        refresh_store,
        # The table is swept with Redis configured too, for what it held before.
        ephemeral if isinstance(ephemeral, SqlEphemeralStore) else SqlEphemeralStore(engine, clock),
        events.audit_log,
        access_token_ttl=settings.tokens.access_token_ttl,
        refresh_retry_grace=settings.tokens.refresh_retry_grace,
        audit_retention=settings.audit_retention,
        clock=clock,
    )
    # Every key line: the access-token keys first (``keys`` CLI, JWKS).
    key_lines = (keys,) if id_token_keys is keys else (keys, id_token_keys)

    def check_signing_keys() -> None:
        for line in key_lines:
            line.signing_kid()

    probes: dict[str, Callable[[], None]] = {"database": lambda: ping_database(engine)}
    if isinstance(ephemeral, RedisEphemeralStore):
        probes["redis"] = ephemeral.ping
    probes["signing_key"] = check_signing_keys
    forward_auth_service = None
    if settings.forward_auth is not None:
        forward_auth_service = ForwardAuth(
            ephemeral,
            app.config["SECRET_KEY"],
            HostRules(settings.forward_auth.allowed_hosts),
            session_lifetime=settings.forward_auth.session_lifetime or settings.session_lifetime,
            clock=clock,
        )
    Services(
        settings=settings,
        clock=clock,
        ephemeral=ephemeral,
        keys=keys,
        key_lines=key_lines,
        oauth=server,
        users=users,
        service_accounts=service_accounts,
        clients=clients,
        ratelimits=ratelimits,
        login_throttle=login_throttle(ratelimits, settings.rate_limits),
        events=events,
        audit=events.audit_log,
        metadata=server_metadata(
            settings.issuer, settings.base_url, clients.all(), settings.signing.algorithm
        ),
        readiness=health.Readiness(probes),
        metrics=metrics,
        upstream=(
            Upstream(app, settings.upstream, ephemeral) if settings.upstream is not None else None
        ),
        forward_auth=forward_auth_service,
        janitor=janitor,
        logo=read_logo(settings.branding.logo) if settings.branding.logo else None,
    ).install(app)

    if metrics is not None:
        web_metrics.init_app(app, metrics)  # first, so that it times every request
    app.register_blueprint(health.bp)
    app.register_blueprint(discovery.bp)
    app.register_blueprint(oauth.bp)
    app.register_blueprint(authorize.bp)
    app.register_blueprint(login.bp)
    app.register_blueprint(account.bp)
    app.register_blueprint(branding.bp)
    app.register_blueprint(device.bp)
    app.register_blueprint(admin_api.bp)
    app.register_blueprint(dashboard.bp)
    if forward_auth_service is not None:
        app.register_blueprint(forward_auth.bp)
    if settings.access_log:
        access_log.init_app(app)  # first: it times the whole request
    register_error_handlers(app)
    app.before_request(bound_streamed_body)
    https = settings.issuer.startswith("https://")
    app.after_request(lambda response: security_headers(response, https))
    # Last: it answers the busiest requests itself, with what the hooks above would do.
    app.wsgi_app = FormEndpoints(app)  # type: ignore[method-assign]
    return app
