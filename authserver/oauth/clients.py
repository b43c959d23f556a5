"""Clients as Authlib sees them, and where they come from.

Static clients come from config (DESIGN.md ``clients:``); service accounts (stored
clients) plug in through the same :class:`ClientStore` protocol.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import urlsplit

from authlib.oauth2.rfc6749 import ClientMixin

from ..settings import ClientSettings
from .secrets import SecretVerifier

#: RFC 7591 §2 method names.
SECRET_AUTH_METHODS = ("client_secret_basic", "client_secret_post")


@dataclass(frozen=True)
class Client(ClientMixin):  # type: ignore[misc]
    """A registered client (RFC 6749 §2)."""

    client_id: str
    is_public: bool
    secret_hash: str | None
    grant_types: tuple[str, ...]
    redirect_uris: tuple[str, ...]
    scopes: tuple[str, ...]
    roles: tuple[str, ...]
    verifier: SecretVerifier
    #: A resource server that may introspect any client's tokens (RFC 7662 §4).
    introspect: bool = False
    #: Ask the person before issuing (static clients are first-party: no by default).
    consent: bool = False
    post_logout_redirect_uris: tuple[str, ...] = ()

    @classmethod
    def from_settings(cls, settings: ClientSettings, verifier: SecretVerifier) -> Client:
        return cls(
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
        )

    def may_introspect(self, claims: dict[str, object]) -> bool:
        """Its own tokens always; any token if it is an introspecting resource server."""
        return self.introspect or claims.get("client_id") == self.client_id

    # -- Authlib's ClientMixin ------------------------------------------------------

    def get_client_id(self) -> str:
        return self.client_id

    def get_default_redirect_uri(self) -> str | None:
        return self.redirect_uris[0] if self.redirect_uris else None

    def get_allowed_scope(self, scope: str | None) -> str:
        """RFC 6749 §3.3: the requested scopes this client holds (the server may grant
        fewer than asked, and says so in the token response); none asked: all of them."""
        if not scope:
            return " ".join(self.scopes)
        return " ".join(dict.fromkeys(s for s in scope.split() if s in self.scopes))

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        """Exact match (OAuth 2.1 §2.3.1), except that a loopback redirect matches any
        port (RFC 8252 §7.3)."""
        return any(redirect_uri_matches(r, redirect_uri) for r in self.redirect_uris)

    def check_post_logout_redirect_uri(self, uri: str) -> bool:
        registered = (*self.post_logout_redirect_uris, *self.redirect_uris)
        return any(redirect_uri_matches(r, uri) for r in registered)

    def check_client_secret(self, client_secret: str) -> bool:
        if self.is_public or not self.secret_hash:
            return False
        return self.verifier.verify(client_secret, self.secret_hash)

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        # RFC 6749 §2.1 and §3.2.1: confidential clients authenticate with their
        # secret everywhere; public clients identify themselves ("none") at the
        # token and revocation endpoints only.
        if self.is_public:
            return method == "none" and endpoint in ("token", "revocation", "device_authorization")
        return method in SECRET_AUTH_METHODS

    def check_response_type(self, response_type: str) -> bool:
        return response_type == "code" and "authorization_code" in self.grant_types

    def check_grant_type(self, grant_type: str) -> bool:
        return grant_type in self.grant_types


LOOPBACK_HOSTS = ("127.0.0.1", "[::1]", "localhost")


def redirect_uri_matches(registered: str, asked: str) -> bool:
    if registered == asked:
        return True
    try:
        reg, got = urlsplit(registered), urlsplit(asked)
    except ValueError:  # e.g. "http://[::1" - not a URI at all
        return False
    if reg.scheme != "http" or got.scheme != "http":
        return False
    reg_host = reg.netloc.rsplit(":", 1)[0] if not reg.netloc.endswith("]") else reg.netloc
    got_host = got.netloc.rsplit(":", 1)[0] if not got.netloc.endswith("]") else got.netloc
    if reg_host not in LOOPBACK_HOSTS or reg_host != got_host or "@" in got.netloc:
        return False
    try:
        got.port  # noqa: B018 - validates the port
    except ValueError:
        return False
    return (reg.path, reg.query, reg.fragment) == (got.path, got.query, got.fragment)


class ClientStore(Protocol):
    def get(self, client_id: str) -> Client | None: ...

    def all(self) -> Iterable[Client]: ...


class StaticClientStore:
    """The clients of the config file; immutable after start-up."""

    def __init__(self, clients: Iterable[ClientSettings], verifier: SecretVerifier) -> None:
        self._clients = {c.client_id: Client.from_settings(c, verifier) for c in clients}

    def get(self, client_id: str) -> Client | None:
        return self._clients.get(client_id)

    def all(self) -> Iterable[Client]:
        return self._clients.values()
