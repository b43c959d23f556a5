"""Forward auth: sign-in for hosts that sit behind a proxy (DESIGN.md, "Integrations").

This is oauth2-proxy's protocol as SkyPilot's API server, nginx ``auth_request`` and
Traefik ForwardAuth speak it, with authserver in oauth2-proxy's place:

1. ``GET /oauth2/start?rd=URL`` on the protected host: a sign-in under way is stored
   (:meth:`ForwardAuth.start`), bound to a nonce in a cookie on that host, and the
   browser goes to authserver's own origin, where its sign-in lives.
2. There, once the person is signed in (the usual login), a one-time code for that
   sign-in is issued (:meth:`ForwardAuth.issue_code`) and the browser is sent to
   ``/oauth2/callback`` on the protected host.
3. ``/oauth2/callback`` redeems the code once, with the nonce cookie (so nobody can
   plant their own sign-in in another's browser: login CSRF), and sets the forward-auth
   session cookie on the protected host (:meth:`ForwardAuth.redeem`).
4. ``GET /oauth2/auth`` answers 202 with the person's identity for a valid cookie.

The session cookie is signed with the server secret (``itsdangerous``, which Flask's
own sessions use) and shares its session id with the sign-in at authserver, so signing
out at either ends both (the id goes on the sign-out denylist). Nothing here reads
HTTP: the web layer passes in the host, scheme and cookies it found.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import quote, urlsplit

from itsdangerous import BadSignature, URLSafeTimedSerializer

from ..clock import SYSTEM_CLOCK, Clock

#: Ephemeral-store key prefixes: a sign-in under way, and a code for the callback.
START_PREFIX = "fwd-start:"
CODE_PREFIX = "fwd-code:"
#: How long a person has to sign in after ``/oauth2/start``; how long a code lives.
START_TTL_SECONDS = 600
CODE_TTL_SECONDS = 60


class Store(Protocol):
    def put(self, key: str, value: bytes, ttl: float) -> None: ...

    def take(self, key: str) -> bytes | None: ...

    def get(self, key: str) -> bytes | None: ...


class ForwardAuthError(Exception):
    """A forward-auth request we refuse; ``str()`` is safe to show the person."""


@dataclass(frozen=True)
class HostRules:
    """``forward_auth.allowed_hosts``: ``host``, ``host:port``, or ``.example.com`` /
    ``*.example.com`` for every subdomain. A host without a port matches any port
    (cookies do not tell ports apart either)."""

    patterns: tuple[str, ...]

    def allows(self, netloc: str) -> bool:
        host, port = split_host(netloc)
        if not host:
            return False
        for pattern in self.patterns:
            p_host, p_port = split_host(pattern)
            if p_port and p_port != "*" and p_port != port:
                continue
            if p_host.startswith("*."):
                p_host = p_host[1:]
            if p_host.startswith("."):
                if host.endswith(p_host) and len(host) > len(p_host):
                    return True
            elif host == p_host:
                return True
        return False


def split_host(netloc: str) -> tuple[str, str]:
    """``host[:port]`` (``[v6]:port`` too) as lower-case host and port (``""`` if none)."""
    netloc = netloc.strip().lower()
    if netloc.startswith("["):
        host, _, rest = netloc[1:].partition("]")
        return host, rest.removeprefix(":")
    host, _, port = netloc.partition(":")
    return host, port


def _is_plain_ascii(value: str) -> bool:
    return value.isascii() and not any(ord(c) < 0x21 or ord(c) == 0x7F for c in value)


def redirect_target(rd: str | None, scheme: str, netloc: str, rules: HostRules) -> str:
    """Where a sign-in (or sign-out) may send the browser: ``rd`` as a path on the
    protected host ``scheme://netloc``, or an absolute http(s) URL on an allowed host.

    Refused (:class:`ForwardAuthError`), never redirected to: another host, ``//evil``,
    ``/\\evil``, backslashes, userinfo (``https://ok@evil``), control characters or
    spaces, other schemes. An open redirector is RFC 9700 §4.11's attack.
    """
    if scheme not in ("http", "https") or not rules.allows(netloc):
        raise ForwardAuthError("This host is not one that sign-in here protects.")
    origin = f"{scheme}://{netloc}"
    if not rd:
        return origin + "/"
    if not _is_plain_ascii(rd) or "\\" in rd:
        raise ForwardAuthError("The return address is not a plain URL.")
    if rd.startswith("/"):
        if rd.startswith("//"):
            raise ForwardAuthError("The return address names another host.")
        return origin + rd
    parts = urlsplit(rd)
    if parts.scheme not in ("http", "https") or not parts.netloc or "@" in parts.netloc:
        raise ForwardAuthError("The return address is not an http(s) URL of an allowed host.")
    try:
        parts.port  # noqa: B018 - raises ValueError for a port that is no number
    except ValueError as exc:
        raise ForwardAuthError("The return address has a bad port.") from exc
    if not rules.allows(parts.netloc):
        raise ForwardAuthError("The return address is not on a host that sign-in here protects.")
    path = parts.path or "/"
    if path.startswith("//"):
        raise ForwardAuthError("The return address is not a plain URL.")
    query = f"?{parts.query}" if parts.query else ""
    return f"{parts.scheme}://{parts.netloc}{path}{query}"


@dataclass(frozen=True)
class Session:
    """A forward-auth session: whose, which sign-in (``sid``), on which host."""

    user_id: str
    sid: str
    host: str
    auth_time: float
    credentials_generation: int


@dataclass(frozen=True)
class Started:
    state: str
    nonce: str


@dataclass(frozen=True)
class Redeemed:
    session: Session
    cookie: str
    rd: str


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


class ForwardAuth:
    """The forward-auth sign-in and its session cookie (see the module docstring)."""

    def __init__(
        self,
        store: Store,
        secret_key: bytes,
        rules: HostRules,
        session_lifetime: float,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self._store = store
        self.rules = rules
        self.session_lifetime = session_lifetime
        self._clock = clock
        self._serializer = URLSafeTimedSerializer(secret_key, salt="authserver.forward-auth")

    def start(self, rd: str | None, scheme: str, netloc: str) -> Started:
        """``/oauth2/start``: check ``rd`` and remember the sign-in under way."""
        target = redirect_target(rd, scheme, netloc, self.rules)
        state, nonce = secrets.token_urlsafe(24), secrets.token_urlsafe(24)
        record = {"rd": target, "origin": f"{scheme}://{netloc}", "nonce": _digest(nonce)}
        self._store.put(START_PREFIX + state, json.dumps(record).encode(), START_TTL_SECONDS)
        return Started(state=state, nonce=nonce)

    def pending_origin(self, state: str) -> str | None:
        """The protected host's origin of a sign-in under way, or ``None``."""
        raw = self._store.get(START_PREFIX + state) if state else None
        if raw is None:
            return None
        origin: str = json.loads(raw)["origin"]
        return origin

    def issue_code(
        self, state: str, *, user_id: str, sid: str, auth_time: float, credentials_generation: int
    ) -> str:
        """At authserver's origin, for the person signed in there: the callback URL on
        the protected host, with a one-time code for this sign-in (the start is used up)."""
        raw = self._store.take(START_PREFIX + state) if state else None
        if raw is None:
            raise ForwardAuthError("This sign-in expired or was already used. Start again.")
        started = json.loads(raw)
        code = secrets.token_urlsafe(32)
        record = {
            **started,
            "uid": user_id,
            "sid": sid,
            "auth_time": auth_time,
            "cred": credentials_generation,
        }
        self._store.put(CODE_PREFIX + _digest(code), json.dumps(record).encode(), CODE_TTL_SECONDS)
        return f"{started['origin']}/oauth2/callback?code={quote(code)}"

    def redeem(self, code: str, nonce: str | None, netloc: str) -> Redeemed:
        """``/oauth2/callback``: the code, once, in the browser that started the sign-in
        (``nonce`` from its cookie), on the host it was for."""
        raw = self._store.take(CODE_PREFIX + _digest(code)) if code else None
        if raw is None:
            raise ForwardAuthError("This sign-in expired or was already used. Start again.")
        record: dict[str, Any] = json.loads(raw)
        if not nonce or not hmac.compare_digest(_digest(nonce), str(record["nonce"])):
            raise ForwardAuthError("This sign-in was started in another browser. Start again.")
        host, _ = split_host(urlsplit(str(record["origin"])).netloc)
        if split_host(netloc)[0] != host:
            raise ForwardAuthError("This sign-in was for another host. Start again.")
        session = Session(
            user_id=str(record["uid"]),
            sid=str(record["sid"]),
            host=host,
            auth_time=float(record["auth_time"]),
            credentials_generation=int(record["cred"]),
        )
        return Redeemed(session=session, cookie=self.cookie_value(session), rd=str(record["rd"]))

    def cookie_value(self, session: Session) -> str:
        return self._serializer.dumps(
            [
                session.user_id,
                session.sid,
                session.host,
                session.auth_time,
                session.credentials_generation,
            ]
        )

    def session_of(self, cookie: str | None, netloc: str) -> Session | None:
        """The session a cookie holds, if it is ours, unexpired and for this host.

        Whether the sign-in behind it was ended (sign-out, a password change, a
        disabled or deleted person) is for the caller to check with the user store
        and the sign-out denylist."""
        if not cookie:
            return None
        try:
            values = self._serializer.loads(cookie, max_age=int(self.session_lifetime))
            user_id, sid, host, auth_time, cred = values
        except (BadSignature, ValueError, TypeError):
            return None
        if not isinstance(auth_time, int | float) or not isinstance(cred, int):
            return None
        if self._clock.now() - auth_time > self.session_lifetime:
            return None
        if split_host(netloc)[0] != host:
            return None
        return Session(str(user_id), str(sid), str(host), float(auth_time), cred)


def identity_headers(username: str, email: str | None, groups: Iterable[str]) -> dict[str, str]:
    """oauth2-proxy's response headers for a signed-in request. ``X-Auth-Request-Email``
    is always set (SkyPilot answers 500 to every request without it): the email, or
    the username when none is known."""
    return {
        "X-Auth-Request-User": username,
        "X-Auth-Request-Email": email or username,
        "X-Auth-Request-Preferred-Username": username,
        "X-Auth-Request-Groups": ",".join(groups),
    }
