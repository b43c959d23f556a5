"""Typed settings: loaded once, validated all at once, immutable afterwards.

Sources, later ones winning (DESIGN.md, "Config file"):

1. the embedded default (``config/authserver.default.yaml``) when no file is given,
   its state in the instance directory (:func:`instance_dir`);
2. the YAML file named by ``--config`` or ``AUTHSERVER_CONFIG``;
3. environment overrides ``AUTHSERVER_<SECTION>__<KEY>``: a string setting takes the
   value verbatim, a list or mapping setting parses it as YAML or JSON (``[a, b]``),
   and pydantic reads booleans, numbers and durations from the string;
4. ``<key>_file: PATH`` for any secret value, read at start-up.

Every problem is collected and reported together as ``path: message`` lines
(``clients[1].redirect_uris[0]: must be an absolute URI``) by :class:`SettingsError`.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Mapping
from pathlib import Path
from types import NoneType, UnionType
from typing import Annotated, Any, Literal, Union, get_args, get_origin
from urllib.parse import urlsplit

import yaml
from limits import parse_many
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

from .client.env import CLIENT_ENV_VARS
from .oauth.vocabulary import (
    GRANT_AUTHORIZATION_CODE,
    GRANT_CLIENT_CREDENTIALS,
    KNOWN_GRANT_TYPES,
    SCOPE_TOKEN,
    classify_secret_hash,
)

ENV_PREFIX = "AUTHSERVER_"
#: Environment variables with our prefix that are not setting overrides: the server's
#: own, and the person's CLI's (DESIGN.md, "Environment variables").
ENV_NOT_SETTINGS = (
    frozenset({"AUTHSERVER_CONFIG", "AUTHSERVER_DEBUG", "AUTHSERVER_HOME"}) | CLIENT_ENV_VARS
)
#: The test suite's variables (``AUTHSERVER_TEST_DATABASE_URL``, ...).
ENV_TEST_PREFIX = "AUTHSERVER_TEST_"
#: Keys whose value may be given as ``<key>_file: PATH`` instead (DESIGN.md).
SECRET_KEYS = frozenset(
    {
        "client_secret",
        "client_secret_hash",
        "database_url",
        "htpasswd",
        "password",
        "redis_url",
        "secret_key",
    }
)


def instance_dir(environ: Mapping[str, str] | None = None) -> Path:
    """Where state lives unless the config says otherwise: the embedded default's
    database, server secret and demo client secret, and the database and secret of a
    config that leaves ``database_url`` or ``secret_key_file`` unset.

    ``$AUTHSERVER_HOME`` (or ``--instance-dir``), else ``$XDG_DATA_HOME/authserver``,
    else ``~/.local/share/authserver``: one place, whatever the working directory.
    """
    environ = os.environ if environ is None else environ
    if environ.get("AUTHSERVER_HOME"):
        return Path(environ["AUTHSERVER_HOME"]).expanduser().absolute()
    data_home = environ.get("XDG_DATA_HOME", "")
    if data_home and Path(data_home).is_absolute():  # XDG: a relative one is ignored
        return Path(data_home) / "authserver"
    home = Path(environ["HOME"]) if environ.get("HOME") else Path.home()
    return home / ".local" / "share" / "authserver"


def _default_database_url(instance: Path) -> str:
    return f"sqlite:///{instance / 'authserver.db'}"


_DURATION = re.compile(r"^\s*(\d+)\s*(ms|s|m|h|d|w)?\s*$")
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, None: 1}


def parse_duration(value: object) -> float:
    """``30d``, ``1h``, ``15m``, ``45s``, ``500ms`` or a number of seconds, to seconds."""
    if isinstance(value, bool):
        raise ValueError("must be a duration such as 30d, 1h, 15m or 45s")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str) and (match := _DURATION.match(value)):
        seconds = int(match.group(1)) * _UNITS[match.group(2)]
    else:
        raise ValueError("must be a duration such as 30d, 1h, 15m or 45s")
    if seconds <= 0:
        raise ValueError("must be longer than zero")
    return seconds


Duration = Annotated[float, BeforeValidator(parse_duration)]


#: Schemes a redirect may never use: they run code or read files in the browser.
FORBIDDEN_REDIRECT_SCHEMES = frozenset({"javascript", "data", "file", "vbscript", "blob"})
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "::1", "localhost"})


def _check_redirect_uri(value: str) -> str:
    """RFC 6749 §3.1.2: an absolute URI, no fragment. RFC 9700 §2.6 / §4.1.1 and RFC
    8252 §7-8.3: https, or http on a loopback host only; ``javascript:``, ``data:`` and
    ``file:`` never."""
    if not is_absolute_uri(value) or urlsplit(value).fragment:
        raise ValueError("must be an absolute URI without a fragment")
    parts = urlsplit(value)
    scheme = parts.scheme.lower()
    if scheme in FORBIDDEN_REDIRECT_SCHEMES:
        raise ValueError(f"may not use the {scheme}: scheme")
    if scheme == "http" and (parts.hostname or "").lower() not in LOOPBACK_HOSTS:
        raise ValueError(
            "must use https (http only on a loopback host: 127.0.0.1, [::1], localhost)"
        )
    if scheme in ("http", "https") and not parts.hostname:
        raise ValueError("must name a host")
    return value


def _check_scope_token(value: str) -> str:
    if not SCOPE_TOKEN.fullmatch(value):
        raise ValueError("not a valid scope token (RFC 6749 §3.3)")
    return value


def _check_network(value: str) -> str:
    ipaddress.ip_network(value, strict=False)  # ValueError names the bad value
    return value


RedirectUri = Annotated[str, AfterValidator(_check_redirect_uri)]
#: An address or CIDR block, like ``10.0.0.0/8``.
Network = Annotated[str, AfterValidator(_check_network)]
ScopeToken = Annotated[str, AfterValidator(_check_scope_token)]


def is_loopback_host(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def is_absolute_uri(value: str) -> bool:
    parts = urlsplit(value)
    return bool(parts.scheme) and bool(parts.netloc or parts.scheme == "urn")


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SigningSettings(_Section):
    """Token signing keys (see ``authserver/keys``)."""

    algorithm: Literal["RS256", "ES256", "EdDSA"] = "RS256"
    #: A new key is made this often; it is published before it signs.
    rotate_every: Duration = 30 * 86400
    #: How long a new key sits in JWKS before it starts signing; JWKS is cacheable
    #: for half of this, so every cache has seen the key before its first token.
    publish_ahead: Duration = 600


class TokenSettings(_Section):
    access_token_ttl: Duration = 3600
    #: Absolute lifetime of a refresh-token family, from the sign-in.
    refresh_token_ttl: Duration = 30 * 86400
    #: A refresh token unused this long dies (idle expiry).
    refresh_token_idle_ttl: Duration = 7 * 86400
    #: A retry of the same refresh within this window gets the same response back
    #: instead of revoking the family (a lost response must not log the person out).
    refresh_retry_grace: Duration = 5
    #: RFC 8628 §3.2: lifetime of a device code and the minimum polling interval.
    device_code_ttl: Duration = 600
    device_poll_interval: Duration = 5
    #: Allowed ``aud`` values; the first is the default (RFC 9068 §3).
    audiences: tuple[str, ...] = ()

    @field_validator("audiences")
    @classmethod
    def _audiences_not_blank(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for audience in value:
            if not audience.strip():
                raise ValueError("audiences must not be empty strings")
        return value


class ClientSettings(_Section):
    """A static client. ``public`` clients have no secret (and must use PKCE)."""

    client_id: Annotated[str, Field(min_length=1, pattern=r"^[A-Za-z0-9._~-]+$")]
    public: bool = False
    client_secret_hash: str | None = None
    grant_types: tuple[str, ...] = (GRANT_CLIENT_CREDENTIALS,)
    redirect_uris: tuple[RedirectUri, ...] = ()
    scopes: tuple[ScopeToken, ...] = ()
    roles: tuple[str, ...] = ()
    consent: bool = False
    #: Where RP-initiated logout may send the browser afterwards (besides redirect_uris).
    post_logout_redirect_uris: tuple[RedirectUri, ...] = ()
    #: May introspect tokens issued to other clients (a resource server; RFC 7662 §4).
    introspect: bool = False
    #: The audiences whose tokens it may introspect (RFC 7662 §4); unset: every one of
    #: ``tokens.audiences``. The admin API's audience only when listed here (16.4).
    introspect_audiences: tuple[str, ...] | None = None
    #: Public keys for ``private_key_jwt`` (RFC 7523 §2.2), an inline JWKS
    #: ``{"keys": [...]}``; each key with ``kid`` and ``alg`` (ES256, RS256 or EdDSA).
    #: A client with ``jwks`` and no secret is confidential.
    jwks: dict[str, Any] | None = None

    @field_validator("jwks")
    @classmethod
    def _jwks_public(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value is not None:
            check_public_jwks(value)
        return value

    @field_validator("client_secret_hash")
    @classmethod
    def _hash_is_known(cls, value: str | None) -> str | None:
        if value is not None:
            classify_secret_hash(value.strip())
            return value.strip()
        return value

    @field_validator("grant_types")
    @classmethod
    def _grant_types_known(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for grant_type in value:
            if grant_type not in KNOWN_GRANT_TYPES:
                known = ", ".join(sorted(KNOWN_GRANT_TYPES))
                raise ValueError(f"unknown grant type {grant_type!r}; known: {known}")
        return value

    @field_validator("client_id")
    @classmethod
    def _not_a_service_account_id(cls, value: str) -> str:
        if value.startswith("sa-"):
            raise ValueError("client ids starting with 'sa-' are kept for service accounts")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> ClientSettings:
        if self.public and self.client_secret_hash:
            raise ValueError("a public client has no client_secret_hash")
        if self.public and self.jwks:
            raise ValueError("a public client has no jwks")
        if not self.public and not self.client_secret_hash and not self.jwks:
            raise ValueError(
                "a confidential client needs client_secret_hash or jwks (or public: true)"
            )
        if self.public and GRANT_CLIENT_CREDENTIALS in self.grant_types:
            # RFC 6749 §4.4: the client credentials grant is for confidential clients only.
            raise ValueError("a public client cannot use client_credentials")
        if GRANT_AUTHORIZATION_CODE in self.grant_types and not self.redirect_uris:
            raise ValueError("authorization_code needs at least one redirect_uri")
        return self


#: JWK members only a private or symmetric key has (RFC 7518 §6; RFC 8037 §2).
_PRIVATE_JWK_MEMBERS = ("d", "p", "q", "dp", "dq", "qi", "oth", "k")
_JWK_ALGORITHMS = {"ES256": ("EC", "P-256"), "RS256": ("RSA", None), "EdDSA": ("OKP", "Ed25519")}


def check_public_jwks(jwks: Mapping[str, Any]) -> None:
    """A JWKS of public signing keys for client assertions, or ``ValueError``."""
    from joserfc.errors import JoseError
    from joserfc.jwk import import_key

    keys = jwks.get("keys")
    if set(jwks) != {"keys"} or not isinstance(keys, list) or not keys:
        raise ValueError('jwks must be {"keys": [...]} with at least one key')
    kids = set()
    for n, key in enumerate(keys):
        where = f"jwks key {n + 1}"
        if not isinstance(key, dict):
            raise ValueError(f"{where} is not a JSON object")
        if any(member in key for member in _PRIVATE_JWK_MEMBERS):
            raise ValueError(f"{where} holds a private or symmetric key: give its public part")
        alg, kid = key.get("alg"), key.get("kid")
        if alg not in _JWK_ALGORITHMS:
            raise ValueError(f"{where} needs alg ES256, RS256 or EdDSA")
        if not isinstance(kid, str) or not kid or kid in kids:
            raise ValueError(f"{where} needs a kid of its own")
        kids.add(kid)
        kty, crv = _JWK_ALGORITHMS[alg]
        if key.get("kty") != kty or (crv is not None and key.get("crv") != crv):
            raise ValueError(
                f"{where}: alg {alg} needs kty {kty}" + (f", crv {crv}" if crv else "")
            )
        try:
            import_key(key)
        except (JoseError, ValueError, TypeError) as exc:
            raise ValueError(f"{where} is not a valid JWK: {exc}") from None


class UpstreamSettings(_Section):
    issuer: str
    client_id: str
    client_secret: str | None = None
    scopes: tuple[str, ...] = ("openid", "profile", "email")
    groups_claim: str = "groups"
    #: For an IdP that verifies every address but never sends ``email_verified``: take
    #: a missing claim as ``true``. An explicit ``false`` is always believed (issue 16.3).
    assume_email_verified: bool = False


class AuthProxySettings(_Section):
    email_header: str = "X-Auth-Request-Email"
    trusted_proxies: tuple[Network, ...] = ("127.0.0.1/32",)


#: A cookie name (RFC 6265 §4.1.1 token).
_COOKIE_NAME = r"^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,64}$"


def _check_host_pattern(value: str) -> str:
    host = value.strip().lower()
    bare = host.removeprefix("*.").removeprefix(".")
    if any(c in bare for c in "/@?#\\ ") or not bare.isascii():
        raise ValueError(
            f"{value!r} is not a host name such as app.example.com, "
            "app.example.com:8443, .example.com or *.example.com"
        )
    if bare.startswith("["):
        inside, _, port = bare[1:].partition("]")
        port = port.removeprefix(":")
        ipaddress.ip_address(inside)  # ValueError names the bad value
    else:
        inside, _, port = bare.partition(":")
        if not re.fullmatch(r"[a-z0-9](?:[a-z0-9.-]*[a-z0-9])?", inside) or ".." in inside:
            raise ValueError(
                f"{value!r} is not a host name such as app.example.com, "
                "app.example.com:8443, .example.com or *.example.com"
            )
    if port and port != "*" and not (port.isdigit() and 0 < int(port) < 65536):
        raise ValueError(f"{value!r} has a bad port")
    return host


HostPattern = Annotated[str, AfterValidator(_check_host_pattern)]


class ForwardAuthSettings(_Section):
    """Forward auth for hosts behind a proxy: oauth2-proxy's ``/oauth2/auth``,
    ``/start``, ``/callback`` and ``/sign_out`` (SkyPilot, nginx ``auth_request``,
    Traefik ForwardAuth; DESIGN.md "Integrations")."""

    #: The protected hosts: ``host``, ``host:port``, ``.example.com`` or ``*.example.com``.
    #: ``rd`` may only name one of these (never an open redirect).
    allowed_hosts: Annotated[tuple[HostPattern, ...], Field(min_length=1)]
    #: The session cookie set on the protected host.
    cookie_name: Annotated[str, Field(pattern=_COOKIE_NAME)] = "_authserver_forward"
    #: How long a forward-auth session lasts; unset: ``session_lifetime``.
    session_lifetime: Duration | None = None
    #: The ``aud`` values of access tokens that ``/oauth2/auth`` accepts as
    #: ``Authorization: Bearer``; unset: every one of ``tokens.audiences``.
    audiences: tuple[str, ...] | None = None


class InitialAdminSettings(_Section):
    """The first admin of an empty database, from config instead of a printed password:
    ``password``, or ``htpasswd``, a line ``user:hash`` as ``htpasswd -nbB USER PASS``
    prints (SkyPilot's ``initialBasicAuthCredentials``), whose user is the username."""

    username: Annotated[str, Field(min_length=1, max_length=255)] = "admin"
    password: str | None = Field(default=None, repr=False)
    htpasswd: str | None = Field(default=None, repr=False)

    @field_validator("htpasswd")
    @classmethod
    def _htpasswd_line(cls, value: str | None) -> str | None:
        from .identity.passwords import parse_htpasswd_line

        if value is not None:
            parse_htpasswd_line(value)  # ValueError names what is wrong
            return value.strip()
        return value

    @model_validator(mode="before")
    @classmethod
    def _username_of_htpasswd(cls, data: Any) -> Any:
        """The username is the htpasswd line's user; a ``username`` beside it must agree."""
        if not isinstance(data, dict) or not isinstance(data.get("htpasswd"), str):
            return data
        if data.get("password") is not None:
            raise ValueError("give password or htpasswd, not both")
        user = data["htpasswd"].strip().partition(":")[0]
        if data.get("username", user) != user:
            raise ValueError(
                f"username {data['username']!r} is not the user of the htpasswd line ({user!r})"
            )
        return {**data, "username": user} if user else data


#: The largest logo ``branding.logo`` may name: it is held in memory and sent often.
MAX_LOGO_BYTES = 512 * 1024
#: The image types a logo may be, by their first bytes: (prefix, content type).
_LOGO_SIGNATURES = (
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
)


def read_logo(path: str) -> tuple[bytes, str]:
    """The bytes of the logo file at ``path`` and their content type; ``ValueError``
    saying what is wrong when it is missing, unreadable, too large or of a type we do
    not serve (PNG, JPEG, GIF, WebP and SVG are served)."""
    try:
        with open(path, "rb") as handle:
            data = handle.read(MAX_LOGO_BYTES + 1)
    except FileNotFoundError:
        raise ValueError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise ValueError(f"{path}: is a directory, not an image file") from None
    except OSError as exc:
        raise ValueError(f"{path}: cannot be read ({exc.strerror})") from None
    if len(data) > MAX_LOGO_BYTES:
        raise ValueError(f"{path}: larger than {MAX_LOGO_BYTES // 1024} KiB")
    for prefix, content_type in _LOGO_SIGNATURES:
        if data.startswith(prefix):
            return data, content_type
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return data, "image/webp"
    head = data[:1024].lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if head.startswith((b"<svg", b"<?xml")) and b"<svg" in data[:4096].lower():
        return data, "image/svg+xml"
    raise ValueError(f"{path}: not a PNG, JPEG, GIF, WebP or SVG image")


def _check_logo(value: str) -> str:
    read_logo(value)  # ValueError names the problem
    return value


class BrandingSettings(_Section):
    """The operator's name and logo on the sign-in pages and the dashboard. The logo is
    served by this server (``/branding/logo``), so the pages' CSP stays ``img-src
    'self'``."""

    #: Shown beside (or instead of) the logo, e.g. ``Example Corp``.
    name: Annotated[str, Field(min_length=1, max_length=80)] | None = None
    #: A PNG, JPEG, GIF, WebP or SVG file (at most 512 KiB), read at start-up.
    logo: Annotated[str, AfterValidator(_check_logo)] | None = None


#: The roles every server has (``rbac.roles`` adds to them or changes their permissions).
BUILTIN_ROLES: dict[str, tuple[str, ...]] = {"admin": ("*",), "user": ("read", "write")}


class RbacSettings(_Section):
    """Roles and their permissions. A permission is a scope that a service account of
    the role may be given (``*``: any scope). The ``admin`` role administers this
    server (admin API, dashboard); ``user`` may read users and roles there."""

    default_role: str = "user"
    roles: dict[str, tuple[ScopeToken, ...]] = Field(default_factory=lambda: dict(BUILTIN_ROLES))
    group_roles: dict[str, str] = Field(default_factory=dict)

    @field_validator("roles")
    @classmethod
    def _builtin_roles(cls, value: dict[str, tuple[str, ...]]) -> dict[str, tuple[str, ...]]:
        """``admin`` and ``user`` always exist; config may give them other permissions."""
        return {**BUILTIN_ROLES, **value}

    @model_validator(mode="after")
    def _roles_exist(self) -> RbacSettings:
        if self.default_role not in self.roles:
            raise ValueError(f"default_role {self.default_role!r} is not one of rbac.roles")
        for group, role in self.group_roles.items():
            if role not in self.roles:
                raise ValueError(f"group_roles[{group!r}]: role {role!r} is not one of rbac.roles")
        return self


def _check_limit(value: str) -> str:
    try:
        items = parse_many(value)
    except ValueError:
        items = []
    if not items:
        raise ValueError(f"{value!r} is not a rate limit such as '10/minute;60/hour'")
    return value


#: A rate limit in ``limits`` notation: ``"10/minute"``, ``"10/15minutes;60/hour"``.
Limit = Annotated[str, AfterValidator(_check_limit)]


class RateLimitSettings(_Section):
    """Failed attempts allowed before 429 with ``Retry-After`` (``authserver/oauth/throttle.py``).

    Per address; per account (client id or username) and address; and per account from
    everywhere, past which only addresses that have themselves failed are refused, so
    the owner, at an address with no failures, still gets through.
    """

    client_auth_per_address: Limit = "30/minute;300/hour"
    client_auth_per_client_address: Limit = "10/minute;60/hour"
    client_auth_per_client: Limit = "100/hour"
    login_per_address: Limit = "60/minute;600/hour"
    login_per_account_address: Limit = "10/15minutes"
    login_per_account: Limit = "100/hour"


def parse_bind(value: str) -> str:
    """A listening address for ``serve``: ``HOST:PORT``, ``[IPv6]:PORT``, ``unix:PATH``,
    or a bare ``PORT``, which means ``127.0.0.1:PORT`` (every interface, ``0.0.0.0``, is
    only ever asked for, never a default). ``ValueError`` says what is wrong."""
    text = value.strip()
    if text.startswith("unix:"):
        if text == "unix:":
            raise ValueError("unix: needs a socket path, like unix:/run/authserver.sock")
        return text
    if text.isdigit():
        host, port = "127.0.0.1", text
    elif text.startswith("["):
        inside, closed, rest = text[1:].partition("]")
        if not closed or not rest.startswith(":"):
            raise ValueError(f"{value!r} is not [IPv6]:PORT, like [::1]:8080")
        try:
            ipaddress.IPv6Address(inside)
        except ValueError:
            raise ValueError(f"{inside!r} is not an IPv6 address") from None
        host, port = f"[{inside}]", rest[1:]
    else:
        host, colon, port = text.rpartition(":")
        if not colon:
            raise ValueError(f"{value!r} names no port: give HOST:PORT, or PORT for 127.0.0.1:PORT")
        if not host:
            raise ValueError(
                f"{value!r} names no host: give 127.0.0.1:PORT, or 0.0.0.0:PORT for every interface"
            )
        if ":" in host:
            raise ValueError(f"{value!r}: an IPv6 address goes in brackets, like [::1]:8080")
        if not re.fullmatch(r"[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?", host):
            raise ValueError(f"{host!r} is not a host name or address")
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{value!r}: the port must be a number from 1 to 65535")
    return f"{host}:{int(port)}"


def _check_forwarded_ip(value: str) -> str:
    if value != "*":
        ipaddress.ip_network(value, strict=False)  # ValueError names the bad value
    return value


#: ``HOST:PORT``, ``[IPv6]:PORT``, ``unix:PATH`` or a bare ``PORT`` (on 127.0.0.1).
Bind = Annotated[str, AfterValidator(parse_bind)]
#: An address, a CIDR block, or ``*`` (any).
ForwardedAllowIp = Annotated[str, AfterValidator(_check_forwarded_ip)]


class ServerSettings(_Section):
    """How ``serve`` runs gunicorn. ``GUNICORN_CMD_ARGS`` wins over these, and the
    ``serve`` options ``--bind`` and ``--workers`` over both."""

    #: Where to listen; a bare port means 127.0.0.1.
    bind: Bind = "127.0.0.1:8080"
    #: Worker processes; unset: the number of CPUs, at least 2.
    workers: Annotated[int, Field(ge=1)] | None = None
    #: Threads per worker (gunicorn ``gthread``): spares for slow clients, not throughput.
    threads: Annotated[int, Field(ge=1, le=1000)] = 8
    #: A worker silent this long is killed and replaced (gunicorn ``timeout``).
    timeout: Duration = 30
    #: On a restart or stop, how long workers may finish the requests in hand.
    graceful_timeout: Duration = 20
    #: How long an idle keep-alive connection is held open.
    keepalive: Duration = 30
    #: The proxies whose ``X-Forwarded-Proto`` gunicorn believes (its
    #: ``forwarded_allow_ips``); URLs are built from ``issuer`` all the same.
    forwarded_allow_ips: tuple[ForwardedAllowIp, ...] = ("127.0.0.1", "::1")


def _interval_or_off(value: object) -> float:
    """A duration, or ``0`` (also ``"0"``, ``off``): never."""
    if value in (0, "0", "off"):
        return 0.0
    return parse_duration(value)


class JanitorSettings(_Section):
    """The janitor inside ``serve`` (storage/janitor.py): deletes refresh-token families
    and SQL ephemeral entries that can never be used again. Audit events only ever go by
    ``authserver audit prune`` or ``authserver db prune``."""

    #: How often one worker of the deployment runs it (a lock in the ephemeral store);
    #: ``0``: never (run ``authserver db prune`` from cron instead).
    interval: Annotated[float, BeforeValidator(_interval_or_off)] = 3600
    #: Rows deleted per transaction.
    batch_size: Annotated[int, Field(ge=1, le=100_000)] = 1000


class MetricsSettings(_Section):
    """Who may read ``GET /metrics`` (Prometheus text format; DESIGN.md "Operations").

    ``off``: no endpoint (404) and nothing counted; ``open``: anyone who reaches the
    server; ``trusted``: only clients whose address is in ``trusted`` (403 otherwise).
    The address is the one ``trusted_forwarders`` yields, and a request that came
    through a proxy not in ``trusted_forwarders`` (it carries ``X-Forwarded-For`` or
    ``Forwarded``) is refused, so a proxy on this host does not open the endpoint to
    everyone behind it.
    """

    access: Literal["off", "open", "trusted"] = "trusted"
    trusted: tuple[Network, ...] = ("127.0.0.1/32", "::1/128")


#: ``{claim}`` in a subject template; ``{{`` and ``}}`` are literal braces.
SUBJECT_FIELD = re.compile(r"\{\{|\}\}|\{([^{}]*)\}|[{}]")


def _check_subject_template(value: str) -> str:
    names = []
    for match in SUBJECT_FIELD.finditer(value):
        text = match.group(0)
        if text in ("{{", "}}"):
            continue
        name = match.group(1)
        if name is None:
            raise ValueError("has an unmatched brace (write {{ or }} for a literal one)")
        if not name.strip() or name != name.strip():
            raise ValueError("has an empty or padded {claim} field")
        names.append(name)
    if not names:
        raise ValueError("names no claim: write e.g. github:{repository}:{ref} or {sub}")
    return value


def _check_claim_pattern(value: str) -> str:
    if not value:
        raise ValueError("a claim pattern must not be empty")
    return value


ClaimPattern = Annotated[str, AfterValidator(_check_claim_pattern)]


def _check_issuer_url(value: str) -> str:
    """An https URL (http on a loopback host only), no query or fragment (RFC 8414 §2)."""
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError("must be an absolute http(s) URL")
    if parts.query or parts.fragment:
        raise ValueError("must have no query or fragment (RFC 8414 §2)")
    if parts.scheme == "http" and not is_loopback_host(parts.hostname or ""):
        raise ValueError(
            "must be https; http only for a loopback host (127.0.0.1, [::1], localhost)"
        )
    return value


class FederatedIdentitySettings(_Section):
    """A workload identity federation rule (DESIGN.md, "Machine identity without shared
    secrets"): which external tokens (a CI job's OIDC token, a Kubernetes service-account
    token) may be traded at the token endpoint, and what they get."""

    #: Names the rule in tokens (``federation`` claim, ``client_id`` ``federated:<name>``)
    #: and in the audit log.
    name: Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._-]+$")]
    #: The external issuer, exactly as its tokens' ``iss``; its keys are found by
    #: discovery (``{issuer}/.well-known/openid-configuration``, then ``jwks_uri``).
    issuer: Annotated[str, AfterValidator(_check_issuer_url)]
    #: The ``aud`` its token must carry; unset: our issuer.
    audience: str | None = None
    #: Claims that must all match: a value (exact, or a glob such as
    #: ``refs/heads/release-*``), or a list of them (any one). At least one: an issuer
    #: such as GitHub's signs tokens for every repository in the world.
    claims: Annotated[dict[str, ClaimPattern | tuple[ClaimPattern, ...]], Field(min_length=1)]
    #: The ``sub`` of what we issue: a template over the external claims.
    subject: Annotated[str, AfterValidator(_check_subject_template)] = "{sub}"
    #: The role of what we issue (one of ``rbac.roles``).
    role: str
    #: The scopes of what we issue (within the role's permissions, as for service accounts).
    scopes: tuple[ScopeToken, ...] = ()
    #: The lifetime of what we issue; at most ``tokens.access_token_ttl``.
    token_ttl: Duration = 900
    #: A client that must authenticate as well (a confidential one); unset: none needed.
    client_id: str | None = None
    #: An external token is traded once (its ``jti``, else its hash, is remembered until
    #: it expires). Kubernetes projected tokens are reused until the kubelet renews
    #: them: turn this off for them.
    single_use: bool = True

    @field_validator("claims")
    @classmethod
    def _claim_lists_not_empty(
        cls, value: dict[str, str | tuple[str, ...]]
    ) -> dict[str, str | tuple[str, ...]]:
        for claim, pattern in value.items():
            if not claim:
                raise ValueError("a claim name must not be empty")
            if isinstance(pattern, tuple) and not pattern:
                raise ValueError(f"claims[{claim!r}]: an empty list matches nothing")
        return value


class Settings(_Section):
    """The whole configuration of one server (DESIGN.md, "Config file")."""

    issuer: str = "http://127.0.0.1:8080"
    #: Unset: SQLite in the instance directory.
    database_url: str = Field(default_factory=lambda: _default_database_url(instance_dir()))
    redis_url: str | None = None
    #: Prefix of every Redis key, so that deployments can share one Redis.
    redis_prefix: Annotated[str, Field(min_length=1, max_length=64)] = "authserver:"
    #: Inline secret key (prefer ``secret_key_file``); signs cookies, encrypts keys.
    secret_key: str | None = Field(default=None, repr=False)
    #: Where the secret key lives; generated (0600) if absent. Unset: in the instance
    #: directory.
    secret_key_file: str = Field(default_factory=lambda: str(instance_dir() / "secret_key"))
    signing: SigningSettings = Field(default_factory=SigningSettings)
    tokens: TokenSettings = Field(default_factory=TokenSettings)
    clients: tuple[ClientSettings, ...] = ()
    upstream: UpstreamSettings | None = None
    auth_proxy: AuthProxySettings | None = None
    local_users: bool = True
    #: Forward auth for hosts behind a proxy (SkyPilot, nginx, Traefik); off when unset.
    forward_auth: ForwardAuthSettings | None = None
    #: Workload identity federation: external tokens that may be traded for ours.
    federated_identities: tuple[FederatedIdentitySettings, ...] = ()
    #: The first admin; without it, ``serve`` prints a one-time password on an empty
    #: database (local users only).
    initial_admin: InitialAdminSettings | None = None
    #: How long a sign-in at the login page lasts (the session cookie).
    session_lifetime: Duration = 12 * 3600
    #: Reverse proxies (CIDRs) whose ``X-Forwarded-For`` names the client for rate
    #: limits; without them every client behind a proxy shares the proxy's limits.
    trusted_forwarders: tuple[Network, ...] = ()

    #: The operator's name and logo on the pages; none when unset.
    branding: BrandingSettings = Field(default_factory=BrandingSettings)
    #: Who may read ``GET /metrics``.
    metrics: MetricsSettings = Field(default_factory=MetricsSettings)
    rbac: RbacSettings = Field(default_factory=RbacSettings)
    rate_limits: RateLimitSettings = Field(default_factory=RateLimitSettings)
    #: How ``serve`` runs gunicorn: bind, workers, threads, timeouts.
    server: ServerSettings = Field(default_factory=ServerSettings)
    #: The periodic deletion of what can never be used again.
    janitor: JanitorSettings = Field(default_factory=JanitorSettings)
    #: How long audit events are kept by ``authserver audit prune``; ``None``: for ever
    #: (the server itself never deletes them).
    audit_retention: Duration | None = Field(default=None, gt=0)
    #: Logs: one line of text a record, or one JSON object a line (DESIGN.md "Operations").
    log_format: Literal["text", "json"] = "text"
    #: The level of authserver's and gunicorn's logs.
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    #: One access-log record a request (never a query, header or body).
    access_log: bool = True
    #: Largest accepted request body; RFC 6749 forms are small.
    max_form_bytes: int = Field(default=64 * 1024, gt=0)

    @field_validator("issuer")
    @classmethod
    def _issuer_url(cls, value: str) -> str:
        # OAuth 2.1 §1.5 requires TLS; plain http is for a server on this machine only.
        return _check_issuer_url(value)

    @field_validator("database_url")
    @classmethod
    def _database_url(cls, value: str) -> str:
        if not re.match(r"^(sqlite|postgresql)(\+\w+)?://", value):
            raise ValueError("must be a sqlite:/// or postgresql+psycopg:// URL")
        return value

    @field_validator("redis_url")
    @classmethod
    def _redis_url(cls, value: str | None) -> str | None:
        if value is not None and urlsplit(value).scheme not in ("redis", "rediss", "unix"):
            raise ValueError("must be a redis:// or rediss:// URL")
        return value

    @model_validator(mode="after")
    def _unique_clients(self) -> Settings:
        seen: set[str] = set()
        for client in self.clients:
            if client.client_id in seen:
                raise ValueError(f"client_id {client.client_id!r} appears twice in clients")
            seen.add(client.client_id)
        return self

    @model_validator(mode="after")
    def _federation_consistent(self) -> Settings:
        """Each rule against the rest of the settings; every problem at once."""
        problems: list[tuple[tuple[str | int, ...], str]] = []
        seen: set[str] = set()
        clients = {c.client_id: c for c in self.clients}
        for index, rule in enumerate(self.federated_identities):
            where: tuple[str | int, ...] = ("federated_identities", index)
            if rule.name in seen:
                problems.append(((*where, "name"), f"{rule.name!r} appears twice"))
            seen.add(rule.name)
            permissions = self.rbac.roles.get(rule.role)
            if permissions is None:
                problems.append(((*where, "role"), f"{rule.role!r} is not one of rbac.roles"))
            elif "*" not in permissions:
                outside = [s for s in rule.scopes if s not in permissions]
                if outside:
                    problems.append(
                        (
                            (*where, "scopes"),
                            f"{', '.join(outside)} not among the permissions of role {rule.role!r}",
                        )
                    )
            if rule.token_ttl > self.tokens.access_token_ttl:
                problems.append(
                    ((*where, "token_ttl"), "must not be longer than tokens.access_token_ttl")
                )
            if rule.client_id is not None and not rule.client_id.startswith("sa-"):
                client = clients.get(rule.client_id)
                if client is None:
                    problems.append(((*where, "client_id"), "names no client of clients"))
                elif client.public:
                    problems.append(
                        ((*where, "client_id"), "must be a confidential client (it authenticates)")
                    )
        if problems:
            raise ValidationError.from_exception_data(
                "Settings",
                [
                    InitErrorDetails(
                        type=PydanticCustomError("federation", message),
                        loc=loc,
                        input=None,
                    )
                    for loc, message in problems
                ],
            )
        return self

    @property
    def base_url(self) -> str:
        """The issuer without a trailing slash, for building endpoint URLs."""
        return self.issuer.rstrip("/")

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    @property
    def default_audience(self) -> str:
        """RFC 9068 §3: with no ``resource``/``audience`` asked for, a default ``aud``."""
        return self.tokens.audiences[0] if self.tokens.audiences else self.issuer


class SettingsError(Exception):
    """Every problem found in the configuration, one ``path: message`` per line."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("invalid configuration:\n" + "\n".join(f"  {p}" for p in problems))


def default_config_path() -> Path:
    """The embedded default, shipped in the wheel or found in the source tree."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "_data" / "config", here.parent / "config"):
        path = candidate / "authserver.default.yaml"
        if path.exists():
            return path
    raise FileNotFoundError("the embedded default config is missing from this install")


def load_settings(
    path: str | os.PathLike[str] | None = None,
    environ: Mapping[str, str] | None = None,
    instance: Path | None = None,
) -> Settings:
    """Build :class:`Settings` from a file (or the embedded default) and the environment.

    ``instance``: the instance directory (default :func:`instance_dir`), where what the
    config leaves unset keeps its state.
    """
    environ = os.environ if environ is None else environ
    instance = instance_dir(environ) if instance is None else instance
    problems: list[str] = []
    config_path = Path(path) if path else None
    if config_path is None and environ.get("AUTHSERVER_CONFIG"):
        config_path = Path(environ["AUTHSERVER_CONFIG"])
    raw: Any
    if config_path is None:
        raw = yaml.safe_load(default_config_path().read_text())
        # Its relative file names are in the instance directory.
        for client in raw.get("clients", ()):
            hash_file = client.get("client_secret_hash_file")
            if hash_file and not Path(hash_file).is_absolute():
                client["client_secret_hash_file"] = str(instance / hash_file)
    else:
        try:
            raw = yaml.safe_load(config_path.read_text())
        except OSError as exc:
            raise SettingsError([f"config file {config_path}: {exc.strerror}"]) from exc
        except yaml.YAMLError as exc:
            raise SettingsError([_yaml_problem(config_path, exc)]) from exc
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise SettingsError(["(top level): must be a mapping of settings"])
    from_env = _apply_env_overrides(raw, environ, problems)
    if "database_url" not in raw and "database_url_file" not in raw:
        raw["database_url"] = _default_database_url(instance)
    raw.setdefault("secret_key_file", str(instance / "secret_key"))
    _resolve_secret_files(raw, "", problems)
    if problems:
        raise SettingsError(problems)
    try:
        return Settings.model_validate(raw)
    except ValidationError as exc:
        raise SettingsError([_describe(error, from_env) for error in exc.errors()]) from exc


def _apply_env_overrides(
    raw: dict[str, Any], environ: Mapping[str, str], problems: list[str]
) -> dict[str, str]:
    """Merge ``AUTHSERVER_<SECTION>__<KEY>`` into ``raw``; returns setting path -> variable."""
    from_env: dict[str, str] = {}
    for name in sorted(environ):
        if (
            not name.startswith(ENV_PREFIX)
            or name in ENV_NOT_SETTINGS
            or name.startswith(ENV_TEST_PREFIX)
        ):
            continue
        parts = [p.lower() for p in name[len(ENV_PREFIX) :].split("__")]
        if not all(parts):
            problems.append(f"{name}: expected AUTHSERVER_<SECTION>__<KEY>")
            continue
        try:
            value = _env_value(parts, environ[name])
        except ValueError as exc:
            problems.append(f"{name}: {exc}")
            continue
        target = raw
        for part in parts[:-1]:
            child = target.get(part)
            if child is None:
                child = target[part] = {}
            if not isinstance(child, dict):
                problems.append(f"{name}: {part} is not a section")
                break
            target = child
        else:
            target[parts[-1]] = value
            from_env[".".join(parts)] = name
    return from_env


def _env_value(parts: list[str], text: str) -> Any:
    """An environment value for the setting at ``parts``, read as its type needs.

    DESIGN.md: a string setting takes it verbatim (a ``#``, a colon or ``0x...`` in a
    secret is part of the secret); only list and mapping settings parse it, as YAML or
    JSON. Booleans, numbers and durations stay strings for pydantic to read (``true``,
    ``8``, ``30d``). An empty value unsets a setting that may be ``null``.
    """
    kind, optional = _env_kind(_annotation_at(parts))
    if optional and not text.strip():
        return None
    if kind == "text":
        return text
    if kind == "scalar":
        return text.strip()
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        first = str(exc).splitlines()[0] if str(exc) else "syntax error"
        raise ValueError(f"not valid YAML or JSON ({first})") from None
    if kind == "list" and not isinstance(value, list) and not (optional and value is None):
        raise ValueError('must be a list in YAML or JSON, like [a, b] or ["a", "b"]')
    if kind == "mapping" and not isinstance(value, dict) and not (optional and value is None):
        raise ValueError('must be a mapping in YAML or JSON, like {a: b} or {"a": "b"}')
    return value


def _annotation_at(parts: list[str]) -> Any:
    """The type of the setting at ``parts``, walking :class:`Settings` by field name
    (and into ``rbac.roles``-like mappings by key); ``str`` for an unknown one, whose
    value then reaches validation verbatim, to be named as ``unknown setting``."""
    annotation: Any = Settings
    for part in parts:
        inner = [_strip_annotated(a) for a in _union_members(annotation)]
        models = [a for a in inner if isinstance(a, type) and issubclass(a, BaseModel)]
        mappings = [a for a in inner if get_origin(a) is dict]
        if models and part in models[0].model_fields:
            annotation = models[0].model_fields[part].annotation
        elif mappings:
            annotation = get_args(mappings[0])[1]
        else:
            return str
    return annotation


def _env_kind(annotation: Any) -> tuple[Literal["text", "scalar", "list", "mapping"], bool]:
    """How an environment value for ``annotation`` is read, and whether it may be null."""
    members = _union_members(annotation)
    optional = NoneType in members
    kinds = {_member_kind(_strip_annotated(m)) for m in members if m is not NoneType}
    for kind in ("mapping", "list", "scalar"):
        if kind in kinds:
            return kind, optional
    return "text", optional


def _member_kind(annotation: Any) -> str:
    origin = get_origin(annotation) or annotation
    if annotation is str:
        return "text"
    if origin is Literal:
        return "text" if all(isinstance(a, str) for a in get_args(annotation)) else "scalar"
    if origin in (dict, Mapping) or (isinstance(origin, type) and issubclass(origin, BaseModel)):
        return "mapping"
    if origin in (tuple, list, set, frozenset):
        return "list"
    return "scalar"


def _union_members(annotation: Any) -> tuple[Any, ...]:
    if get_origin(annotation) in (Union, UnionType):
        return get_args(annotation)
    return (annotation,)


def _strip_annotated(annotation: Any) -> Any:
    while get_origin(annotation) is Annotated:
        annotation = get_args(annotation)[0]
    return annotation


def _resolve_secret_files(node: Any, where: str, problems: list[str]) -> None:
    """Replace ``<secret>_file: PATH`` by the file's contents (DESIGN.md)."""
    if isinstance(node, list):
        for index, item in enumerate(node):
            _resolve_secret_files(item, f"{where}[{index}]", problems)
        return
    if not isinstance(node, dict):
        return
    for key in list(node):
        if not isinstance(key, str):
            continue
        stem = key.removesuffix("_file")
        # `secret_key_file` is a setting of its own: the key is generated there if absent.
        if (
            key.endswith("_file")
            and stem in SECRET_KEYS
            and not (where == "" and stem == "secret_key")
        ):
            label = f"{where}.{key}" if where else key
            if stem in node:
                problems.append(f"{label}: give {stem} or {key}, not both")
                continue
            try:
                node[stem] = Path(str(node.pop(key))).read_text().strip()
            except OSError as exc:
                problems.append(f"{label}: cannot read {exc.filename}: {exc.strerror}")
        else:
            _resolve_secret_files(node[key], f"{where}.{key}" if where else key, problems)


def _yaml_problem(path: Path, exc: yaml.YAMLError) -> str:
    """One line naming the file and the line of a YAML error: PyYAML's own text names
    ``<unicode string>`` (it parsed a string) over several lines."""
    if not isinstance(exc, yaml.MarkedYAMLError) or exc.problem_mark is None:
        return f"config file {path}: not valid YAML: {' '.join(str(exc).split())}"
    mark = exc.problem_mark
    where = f"config file {path}, line {mark.line + 1}, column {mark.column + 1}"
    problem = exc.problem or "cannot parse this"
    if exc.context and exc.context_mark is not None:
        start = exc.context_mark
        context = f" ({exc.context}, from line {start.line + 1}, column {start.column + 1})"
    elif exc.context:
        context = f" ({exc.context})"
    else:
        context = ""
    return f"{where}: not valid YAML: {problem}{context}"


def _describe(error: Any, from_env: Mapping[str, str]) -> str:
    path = ""
    for part in error["loc"]:
        if isinstance(part, int):
            path += f"[{part}]"
        elif part:
            path += f".{part}" if path else str(part)
    message = str(error["msg"]).removeprefix("Value error, ")
    if error["type"] == "extra_forbidden":
        message = "unknown setting"
    elif error["type"] == "missing":
        message = "required"
    if path in from_env:
        path = f"{path} (from {from_env[path]})"
    return f"{path or '(top level)'}: {message}"


def uses_embedded_default(path: str | None, environ: Mapping[str, str] | None = None) -> bool:
    environ = os.environ if environ is None else environ
    return not path and not environ.get("AUTHSERVER_CONFIG")
