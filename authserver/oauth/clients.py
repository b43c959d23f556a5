"""Clients as Authlib sees them, and where they come from.

Static clients come from config (DESIGN.md ``clients:``); service accounts (stored
clients) plug in through the same :class:`ClientStore` protocol.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import urlsplit

from authlib.oauth2.rfc6749 import ClientMixin

from .rfc7523.client_assertion import PRIVATE_KEY_JWT
from .secrets import DummyCheck, SecretVerifier

#: RFC 7591 §2 method names.
SECRET_AUTH_METHODS = ("client_secret_basic", "client_secret_post")
#: What a confidential client may use; ``private_key_jwt`` first, so that a request
#: with an assertion and a secret is refused as two methods (RFC 6749 §2.3).
CONFIDENTIAL_AUTH_METHODS = (PRIVATE_KEY_JWT, *SECRET_AUTH_METHODS)


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
    #: The audiences an introspecting client may ask about; ``None``: the configured ones.
    introspect_audiences: tuple[str, ...] | None = None
    #: Public JWKs for ``private_key_jwt`` (RFC 7523 §2.2), with ``kid`` and ``alg``.
    jwks: tuple[Mapping[str, Any], ...] = field(default=(), compare=False)

    def may_introspect(self, claims: dict[str, object], audiences: Sequence[str] = ()) -> bool:
        """Its own tokens always; as an introspecting resource server, the tokens for
        its audiences (``introspect_audiences``, else ``audiences``: the configured
        ones). RFC 7662 §4: the server decides whether the caller may use the token."""
        if claims.get("client_id") == self.client_id:
            return True
        if not self.introspect:
            return False
        allowed = self.introspect_audiences if self.introspect_audiences is not None else audiences
        aud = claims.get("aud")
        token_audiences = [aud] if isinstance(aud, str) else list(aud or ())  # type: ignore[call-overload]
        return any(a in allowed for a in token_audiences)

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

    def quick_check(self, client_secret: str) -> bool | None:
        """The answer of :meth:`check_client_secret` if it costs no slow hash: ``True``
        for a secret that verified before, ``False`` if none can; else ``None``."""
        if self.is_public or not self.secret_hash:
            return False
        return True if self.verifier.known(client_secret, self.secret_hash) else None

    def is_usable(self) -> bool:
        """Whether it may authenticate at all now (a service account expires)."""
        return True

    def note_use(self) -> None:
        """Called once it authenticated without a secret (``private_key_jwt``)."""

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        # RFC 6749 §2.1 and §3.2.1: confidential clients authenticate with their
        # secret everywhere; public clients identify themselves ("none") at the
        # token and revocation endpoints only.
        # A client with keys may sign assertions instead (RFC 7523 §2.2).
        if self.is_public:
            return method == "none" and endpoint in ("token", "revocation", "device_authorization")
        if method == PRIVATE_KEY_JWT:
            return bool(self.jwks)
        return method in SECRET_AUTH_METHODS and bool(self.secret_hash)

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


#: A service-account token is ``as_sa_<client_id>.<secret>`` (DESIGN.md).
SERVICE_ACCOUNT_TOKEN_PREFIX = "as_sa_"  # noqa: S105 - a prefix, not a secret
#: The client ids of service accounts start with this; static ones may not.
SERVICE_ACCOUNT_ID_PREFIX = "sa-"


def new_service_account_token(client_id: str) -> str:
    """A fresh token for ``client_id``: 256 random bits after the id."""
    return f"{SERVICE_ACCOUNT_TOKEN_PREFIX}{client_id}.{secrets.token_urlsafe(32)}"


def service_account_client_id(token: str) -> str | None:
    """The client id inside a service-account token, or ``None`` if it is not one."""
    if not token.startswith(SERVICE_ACCOUNT_TOKEN_PREFIX):
        return None
    client_id, dot, secret = token[len(SERVICE_ACCOUNT_TOKEN_PREFIX) :].partition(".")
    if not dot or not secret or not client_id.startswith(SERVICE_ACCOUNT_ID_PREFIX):
        return None
    return client_id


def service_account_token_hash(token: str) -> str:
    """The stored form of a token: SHA-256 (it has 256 random bits; nothing to slow)."""
    return hashlib.sha256(token.encode()).hexdigest()


#: The access-token claim naming the service-account secret a token was minted with.
SECRET_GENERATION_CLAIM = "sa_gen"  # noqa: S105 - a claim name, not a secret


def secret_generation(token_hash: str) -> str:
    """A short, non-secret name of one service-account secret (of its stored hash):
    tokens carry it, and the admin API requires the current one (issue 16.7: ``iat``
    in whole seconds could not tell a token of the old secret from one of the new)."""
    return hashlib.sha256(b"authserver-sa-generation:" + token_hash.encode()).hexdigest()[:16]


def key_generation(client_id: str, kid: str) -> str:
    """Like :func:`secret_generation`, for one key of a key file: removing the key is
    the answer to a leaked file, and ends the tokens it minted at the admin API."""
    material = f"authserver-sa-key:{client_id}:{kid}".encode()
    return hashlib.sha256(material).hexdigest()[:16]


@dataclass(frozen=True)
class ServiceAccountClient(Client):
    """A service account as a confidential client: client credentials only.

    Its secret is its whole token, checked against the stored hash; past
    ``expires_at`` it authenticates no more (``invalid_client``).
    """

    expires_at: float | None = None
    #: Called after each successful authentication (``last_used_at``).
    on_use: Callable[[str], None] | None = field(default=None, compare=False)
    clock: Callable[[], float] = field(default=time.time, compare=False)

    def check_client_secret(self, client_secret: str) -> bool:
        if self.secret_hash is None or service_account_client_id(client_secret) != self.client_id:
            return False
        presented = service_account_token_hash(client_secret)
        if not hmac.compare_digest(presented, self.secret_hash):
            return False
        if self.expires_at is not None and self.clock() >= self.expires_at:
            return False
        if self.on_use is not None:
            self.on_use(self.client_id)
        return True

    def quick_check(self, client_secret: str) -> bool | None:
        """A SHA-256 compare: always quick."""
        return self.check_client_secret(client_secret)

    def is_usable(self) -> bool:
        """Not expired (a key file authenticates no more than a token past it)."""
        return self.expires_at is None or self.clock() < self.expires_at

    def note_use(self) -> None:
        if self.on_use is not None:
            self.on_use(self.client_id)

    def generation(self, kid: str | None) -> str | None:
        """The credential its tokens name (``sa_gen``): the key ``kid`` that signed
        the assertion, else its token."""
        if kid is not None:
            return key_generation(self.client_id, kid)
        return secret_generation(self.secret_hash) if self.secret_hash else None


class ClientStore(Protocol):
    def get(self, client_id: str) -> Client | None: ...

    def all(self) -> Iterable[Client]: ...

    def check_unknown(self, client_id: str, client_secret: str) -> None:
        """Spend on an unknown ``client_id`` the work of a wrong secret for a known one."""


class StaticClientStore:
    """The clients of the config file; immutable after start-up."""

    def __init__(self, clients: Iterable[Client]) -> None:
        self._clients = {c.client_id: c for c in clients}
        self._dummy = DummyCheck([c.secret_hash for c in self._clients.values() if c.secret_hash])

    def get(self, client_id: str) -> Client | None:
        return self._clients.get(client_id)

    def all(self) -> Iterable[Client]:
        return self._clients.values()

    def check_unknown(self, client_id: str, client_secret: str) -> None:
        """A bcrypt check as costly as the configured clients' (issue 16.10: the time
        of the answer must not tell whether the client id exists)."""
        self._dummy(client_secret)


class ChainedClientStore:
    """Static clients first, then service accounts (by their id prefix, so that no
    other client id costs a database read)."""

    def __init__(
        self, static: ClientStore, service_account: Callable[[str], Client | None]
    ) -> None:
        self.static = static
        self.service_account = service_account

    def get(self, client_id: str) -> Client | None:
        client = self.static.get(client_id)
        if client is None and client_id.startswith(SERVICE_ACCOUNT_ID_PREFIX):
            client = self.service_account(client_id)
        return client

    def all(self) -> Iterable[Client]:
        """The static clients (service accounts are listed by their own service)."""
        return self.static.all()

    def check_unknown(self, client_id: str, client_secret: str) -> None:
        """A service-account id costs one database read, found or not; any other id
        the static clients' slow check."""
        if not client_id.startswith(SERVICE_ACCOUNT_ID_PREFIX):
            self.static.check_unknown(client_id, client_secret)
