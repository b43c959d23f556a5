"""The objects ``create_app`` builds, typed, in one frozen :class:`Services` on the app.

Views read them through :func:`services`; code that holds an app (the CLI, tests) through
:meth:`Services.of`. Nothing else is kept in ``app.extensions`` by this server (Flask
extensions keep their own: ``sqlalchemy``, ``migrate``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from flask import Flask

    from ..admin.audit import AuditTrail
    from ..clock import Clock
    from ..identity.federation import Upstream
    from ..identity.forward_auth import ForwardAuth
    from ..identity.service_accounts import ServiceAccountService
    from ..identity.users import UserService
    from ..keys import KeyManager
    from ..oauth.clients import ChainedClientStore
    from ..oauth.server import AuthServer
    from ..oauth.throttle import FailureThrottle
    from ..settings import Settings
    from ..storage.audit import SqlAuditLog
    from ..storage.ephemeral import EphemeralStore
    from ..storage.janitor import Janitor
    from ..storage.ratelimit import RateLimits
    from .health import Readiness
    from .metrics import Metrics

#: The one key of ``app.extensions`` that holds them.
EXTENSION = "authserver"


@dataclass(frozen=True, kw_only=True)
class Services:
    """Everything one app is wired with (built once by ``create_app``)."""

    settings: Settings
    clock: Clock
    ephemeral: EphemeralStore
    #: The access-token key line (JWKS, rotation).
    keys: KeyManager
    #: Every key line: the access-token keys first, then the ID-token keys if apart.
    key_lines: tuple[KeyManager, ...]
    oauth: AuthServer
    users: UserService
    service_accounts: ServiceAccountService
    clients: ChainedClientStore
    ratelimits: RateLimits
    login_throttle: FailureThrottle
    events: AuditTrail
    audit: SqlAuditLog
    #: The discovery document (RFC 8414 §2, OIDC Discovery §3).
    metadata: Mapping[str, Any]
    readiness: Readiness
    #: Deletes the rows that can never be used again (``authserver db prune``).
    janitor: Janitor
    metrics: Metrics | None = None
    upstream: Upstream | None = None
    forward_auth: ForwardAuth | None = None
    #: The operator's logo (``branding.logo``): its bytes and content type.
    logo: tuple[bytes, str] | None = None

    @staticmethod
    def of(app: Flask) -> Services:
        """The services of ``app``."""
        found = app.extensions[EXTENSION]
        if not isinstance(found, Services):
            raise TypeError(f"app.extensions[{EXTENSION!r}] is not the server's Services")
        return found

    def install(self, app: Flask) -> None:
        """Keep them on ``app`` (once)."""
        if EXTENSION in app.extensions:
            raise RuntimeError("this app is wired already")
        app.extensions[EXTENSION] = self


def services() -> Services:
    """The services of the current app (in a request or an app context)."""
    from flask import current_app  # not at import time: the CLI loads this module early

    return Services.of(current_app)
