"""Clients as Authlib sees them, and where they come from.

Static clients come from config (DESIGN.md ``clients:``); service accounts (stored
clients) plug in through the same :class:`ClientStore` protocol.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

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
        if not scope:
            return ""
        return " ".join(s for s in scope.split() if s in self.scopes)

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        return redirect_uri in self.redirect_uris

    def check_client_secret(self, client_secret: str) -> bool:
        if self.is_public or not self.secret_hash:
            return False
        return self.verifier.verify(client_secret, self.secret_hash)

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        # RFC 6749 §2.1 and §3.2.1: confidential clients authenticate with their
        # secret everywhere; public clients identify themselves ("none") at the
        # token and revocation endpoints only.
        if self.is_public:
            return method == "none" and endpoint in ("token", "revocation")
        return method in SECRET_AUTH_METHODS

    def check_response_type(self, response_type: str) -> bool:
        return response_type == "code" and "authorization_code" in self.grant_types

    def check_grant_type(self, grant_type: str) -> bool:
        return grant_type in self.grant_types


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
