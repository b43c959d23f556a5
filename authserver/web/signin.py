"""Who is signed in: the session cookie, or the trusted auth-proxy header.

The session holds the user id, the sign-in time, the person's credentials generation
(a password set or reset raises it, ending every older session) and a session id; signing out puts
the session id on a denylist in the ephemeral store, so a copied cookie dies with
the sign-out even though the cookie itself is stateless.
"""

from __future__ import annotations

import functools
import ipaddress
import logging
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from flask import g, request, session

from ..identity.proxy import trusted_address
from ..identity.users import UserError
from ..oauth.subjects import Subject
from .adapter import app_settings
from .services import services

LOGGED_OUT_PREFIX = "logged-out:"

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SignedIn:
    person: Subject
    auth_time: float
    method: str


def current_signin() -> SignedIn | None:
    """The person making this request, if any (proxy header first, then session).

    Worked out once per request: it reads the user and the sign-out denylist.
    """
    if "authserver_signin" not in g:
        g.authserver_signin = _find_signin()
    signin: SignedIn | None = g.authserver_signin
    return signin


def _find_signin() -> SignedIn | None:
    settings = app_settings()
    users = services().users
    proxy = settings.auth_proxy
    if proxy is not None:
        email = request.headers.get(proxy.email_header, "").strip()
        # The header is only believed from the proxy itself: from anywhere else a
        # client could set it to anyone's address.
        if email and "@" in email and trusted_address(request.remote_addr, proxy.trusted_proxies):
            try:
                person = users.provisioning.proxy_user(email)
            except UserError as exc:  # not an address we accept, or a local user's name
                log.warning("auth-proxy header ignored: %s", exc)
            else:
                if not person.disabled:
                    return SignedIn(person=person, auth_time=services().clock.now(), method="proxy")
    uid, auth_time, sid = session.get("uid"), session.get("auth_time"), session.get("sid")
    if not isinstance(uid, str) or not isinstance(auth_time, int | float) or not sid:
        return None
    if services().clock.now() - auth_time > settings.session_lifetime:
        return None
    store = services().ephemeral
    if store.get(LOGGED_OUT_PREFIX + str(sid)) is not None:
        return None
    found = users.get(uid)
    if found is None or found.disabled:
        return None
    if session.get("cred", 0) != getattr(found, "credentials_generation", 0):
        # The password was set or reset since this session signed in (issue 16.2).
        return None
    return SignedIn(person=found, auth_time=float(auth_time), method=str(session.get("method")))


#: Session keys: the authorization request that sent the person to sign in, and,
#: once they have, the request that sign-in was for (RFC 8252 §8.6, issue 16.13).
SIGNIN_FOR = "signin_for"
SIGNED_IN_FOR = "signed_in_for"


def sign_in(person: Subject, method: str) -> None:
    """A fresh session (never reuse one across a sign-in: session fixation). What the
    sign-in was started for (:data:`SIGNIN_FOR`) is carried over as
    :data:`SIGNED_IN_FOR`, for the authorization endpoint to use once."""
    started_for = session.get(SIGNIN_FOR)
    session.clear()
    session.permanent = True
    session.update(
        uid=person.id,
        auth_time=int(services().clock.now()),
        sid=secrets.token_urlsafe(16),
        method=method,
        cred=getattr(person, "credentials_generation", 0),
    )
    if isinstance(started_for, str):
        session[SIGNED_IN_FOR] = started_for
    g.pop("authserver_signin", None)


def clear_keeping_signin_for() -> None:
    """Empty the session but for what a sign-in under way was started for."""
    started_for = session.get(SIGNIN_FOR)
    session.clear()
    if isinstance(started_for, str):
        session[SIGNIN_FOR] = started_for


def sign_out() -> None:
    sid = session.get("sid")
    if sid:
        store = services().ephemeral
        store.put(LOGGED_OUT_PREFIX + str(sid), b"1", app_settings().session_lifetime)
    session.clear()
    g.pop("authserver_signin", None)


def safe_next(value: str | None, default: str = "/") -> str:
    """A ``next`` target on our own origin only: a path, never ``//host`` or a URL."""
    if not value or not value.startswith("/") or value.startswith(("//", "/\\")):
        return default
    if "\\" in value or any(ord(c) < 0x20 for c in value):
        return default
    parts = urlsplit(value)
    if parts.scheme or parts.netloc:
        return default
    return value


def client_address() -> str:
    """The address rate limits are keyed on: the peer, an IPv6 one as its /64 (one
    host usually holds a whole /64, so per-/128 limits would be no limit)."""
    return rate_limit_address(peer_address())


@functools.lru_cache(maxsize=4096)
def rate_limit_address(address: str) -> str:
    """:func:`client_address` of a peer ``address`` (kept for the next request from it)."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip)


#: Where a request keeps its :func:`peer_address` once worked out (the rate limits, the
#: audit trail and the access log each ask for it).
_PEER_ADDRESS = "authserver.peer_address"


def peer_address() -> str:
    """The client's address: the TCP peer, or behind ``trusted_forwarders`` the
    address they forwarded for (the audit log records this one)."""
    known: str | None = request.environ.get(_PEER_ADDRESS)
    if known is None:
        known = environ_peer_address(request.environ, app_settings().trusted_forwarders)
    return known


def environ_peer_address(environ: dict[str, Any], forwarders: Sequence[str]) -> str:
    """:func:`peer_address` of a WSGI ``environ`` (kept in it for the next caller)."""
    known: str | None = environ.get(_PEER_ADDRESS)
    if known is None:
        # WSGI servers join repeated headers with commas: one value holds every hop.
        forwarded = environ.get("HTTP_X_FORWARDED_FOR")
        known = environ[_PEER_ADDRESS] = forwarded_address(
            environ.get("REMOTE_ADDR"), [forwarded] if forwarded else [], forwarders
        )
    return known


def forwarded_address(
    remote_addr: str | None, forwarded_for: list[str], forwarders: Sequence[str]
) -> str:
    """The client's address: ``remote_addr`` (the TCP peer), or when it is one of
    ``forwarders`` the address they forwarded for in ``X-Forwarded-For`` (the headers'
    values, in order)."""
    address = remote_addr or "unknown"
    if forwarders and trusted_address(address, forwarders):
        # The right-most address that is not one of our proxies is the client's;
        # anything left of it the client may have written itself.
        hops = [hop.strip() for header in forwarded_for for hop in header.split(",")]
        for hop in reversed(hops):
            if not _is_ip(hop):
                break
            address = hop
            if not trusted_address(hop, forwarders):
                break
    return address


def _is_ip(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True
