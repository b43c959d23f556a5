"""Forward auth's endpoints, oauth2-proxy's protocol (DESIGN.md, "Integrations").

``/oauth2/auth``, ``/oauth2/start``, ``/oauth2/callback`` and ``/oauth2/sign_out`` are
asked on the protected host (SkyPilot forwards ``/oauth2/*`` of its own host here; nginx
and Traefik route or sub-request them), so the host and scheme they are for come from
``X-Forwarded-Host`` / ``X-Forwarded-Uri`` / ``Host`` and ``X-Forwarded-Proto``.
``/login/forward`` is on our own origin, where the person's sign-in lives. The protocol
itself is :mod:`authserver.identity.forward_auth`.
"""

from __future__ import annotations

import secrets
from urllib.parse import urlsplit

from flask import Blueprint, Response, redirect, request, session, url_for
from werkzeug.wrappers import Response as WerkzeugResponse

from ..identity.forward_auth import (
    START_TTL_SECONDS,
    ForwardAuth,
    ForwardAuthError,
    identity_headers,
    redirect_target,
)
from ..paths import (
    FORWARD_AUTH_PATH,
    FORWARD_AUTH_PREFIX,
    FORWARD_CALLBACK_PATH,
    FORWARD_SIGN_OUT_PATH,
    FORWARD_SIGNIN_PATH,
    FORWARD_START_PATH,
)
from .adapter import app_settings
from .bearer import BearerRefused, bearer_caller, bearer_token
from .pages import message
from .services import services
from .signin import LOGGED_OUT_PREFIX, current_signin

bp = Blueprint("forward_auth", __name__)

#: Where ``/oauth2/start`` sends the browser: our origin, to sign in and get a code.
#: RFC 6750 §3.1: a bearer token that is not good here.
BEARER_CHALLENGE = 'Bearer realm="authserver", error="invalid_token"'


def forward_auth() -> ForwardAuth:
    service = services().forward_auth
    if service is None:  # the blueprint is registered only with forward_auth set
        raise RuntimeError("forward_auth is not configured")
    return service


def _forwarded_uri() -> tuple[str, str] | None:
    """Scheme and host of an absolute ``X-Forwarded-Uri`` (SkyPilot sends the whole URL)."""
    uri = urlsplit(request.headers.get("X-Forwarded-Uri", ""))
    return (uri.scheme, uri.netloc) if uri.scheme in ("http", "https") and uri.netloc else None


def _netloc() -> str:
    """The protected host the request is for: ``X-Forwarded-Host`` (nginx, Traefik),
    the host of an absolute ``X-Forwarded-Uri`` (SkyPilot), else ``Host``."""
    forwarded = request.headers.get("X-Forwarded-Host", "").split(",")[0].strip()
    if forwarded:
        return forwarded
    uri = _forwarded_uri()
    return uri[1] if uri else request.host


def _scheme() -> str:
    proto = request.headers.get("X-Forwarded-Proto", "").split(",")[0].strip().lower()
    if proto in ("http", "https"):
        return proto
    uri = _forwarded_uri()
    return uri[0] if uri else request.scheme


def _nonce_cookie() -> str:
    return forward_auth_cookie() + "_csrf"


def forward_auth_cookie() -> str:
    settings = app_settings().forward_auth
    assert settings is not None  # the blueprint is registered only when configured
    return settings.cookie_name


def _refused(text: str, status: int = 400) -> WerkzeugResponse:
    return message("Sign-in", text, status, error=True)


def _header_value(value: str) -> str:
    """A header value as WSGI carries it: UTF-8 bytes, seen as Latin-1 (PEP 3333)."""
    return value.encode().decode("latin-1")


#: nginx's ``auth_request`` and Traefik's ForwardAuth may ask with the original
#: request's method; the answer never depends on it (nor on a body, never read).
AUTH_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]


@bp.route(FORWARD_AUTH_PATH, methods=AUTH_METHODS)
def auth() -> Response:
    """202 with the identity headers for a valid session cookie or bearer token of an
    allowed audience; 401 otherwise (oauth2-proxy's ``/oauth2/auth``)."""
    # A bearer token is judged alone (a bad one is not saved by a cookie); any other
    # Authorization scheme is the protected app's own business.
    token = bearer_token(request.headers.get("Authorization", ""))
    headers = _bearer_identity(token) if token is not None else _cookie_identity()
    if headers is None:
        response = Response("Unauthorized\n", 401, mimetype="text/plain")
        if token is not None:
            response.headers["WWW-Authenticate"] = BEARER_CHALLENGE
    else:
        response = Response("", 202)
        for name, value in headers.items():
            response.headers[name] = _header_value(value)
    response.headers["Cache-Control"] = "no-store"
    return response


def _bearer_identity(token: str) -> dict[str, str] | None:
    settings = app_settings()
    assert settings.forward_auth is not None
    audiences = settings.forward_auth.audiences
    if audiences is None:
        audiences = settings.tokens.audiences
    try:
        caller = bearer_caller(token, audiences)
    except BearerRefused:
        return None
    person = caller.person
    if person is None:
        return identity_headers(caller.name, None, ())
    return identity_headers(person.username, person.email, person.groups)


def _cookie_identity() -> dict[str, str] | None:
    service = forward_auth()
    found = service.session_of(request.cookies.get(forward_auth_cookie()), _netloc())
    if found is None:
        return None
    store = services().ephemeral
    if store.get(LOGGED_OUT_PREFIX + found.sid) is not None:
        return None
    person = services().users.get(found.user_id)
    if person is None or person.disabled:
        return None
    if person.credentials_generation != found.credentials_generation:
        return None  # the password was set or reset since this sign-in (issue 16.2)
    return identity_headers(person.username, person.email, person.groups)


@bp.get(FORWARD_START_PATH)
def start() -> WerkzeugResponse:
    """Sign in for the protected host, then land on ``rd`` (only on an allowed host)."""
    scheme, netloc = _scheme(), _netloc()
    try:
        started = forward_auth().start(request.args.get("rd"), scheme, netloc)
    except ForwardAuthError as exc:
        return _refused(str(exc))
    response = redirect(app_settings().base_url + url_for(".signin", state=started.state))
    # The nonce ties the callback to this browser (login CSRF); Lax, as the callback is
    # a top-level navigation from our origin.
    response.set_cookie(
        _nonce_cookie(),
        started.nonce,
        max_age=START_TTL_SECONDS,
        path=FORWARD_AUTH_PREFIX,
        secure=scheme == "https",
        httponly=True,
        samesite="Lax",
    )
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.get(FORWARD_SIGNIN_PATH)
def signin() -> WerkzeugResponse:
    """On our origin: the usual sign-in (local, upstream or proxy), then the code."""
    service = forward_auth()
    state = request.args.get("state", "")
    if not service.pending_origin(state):
        return _refused("This sign-in expired or was already used. Go back and start again.")
    signed_in = current_signin()
    if signed_in is None:
        return redirect(url_for("login.login", next=url_for(".signin", state=state)))
    sid = session.get("sid") if signed_in.method != "proxy" else None
    person = signed_in.person
    try:
        callback = service.issue_code(
            state,
            user_id=person.id,
            sid=str(sid) if sid else secrets.token_urlsafe(16),
            auth_time=signed_in.auth_time,
            credentials_generation=getattr(person, "credentials_generation", 0),
        )
    except ForwardAuthError as exc:
        return _refused(str(exc))
    return redirect(callback)


@bp.get(FORWARD_CALLBACK_PATH)
def callback() -> WerkzeugResponse:
    """On the protected host: the code for the forward-auth session cookie."""
    scheme, netloc = _scheme(), _netloc()
    service = forward_auth()
    try:
        redeemed = service.redeem(
            request.args.get("code", ""), request.cookies.get(_nonce_cookie()), netloc
        )
    except ForwardAuthError as exc:
        response = _refused(str(exc))
        response.delete_cookie(_nonce_cookie(), path=FORWARD_AUTH_PREFIX)
        return response
    person = services().users.get(redeemed.session.user_id)
    if person is None or person.disabled:
        return _refused("This account is disabled.", 403)
    services().events(
        "forward_auth_login",
        user_id=person.id,
        username=person.username,
        host=redeemed.session.host,
    )
    response = redirect(redeemed.rd)
    response.set_cookie(
        forward_auth_cookie(),
        redeemed.cookie,
        max_age=int(service.session_lifetime),
        path="/",
        secure=scheme == "https",
        httponly=True,
        samesite="Lax",
    )
    response.delete_cookie(_nonce_cookie(), path=FORWARD_AUTH_PREFIX)
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.route(FORWARD_SIGN_OUT_PATH, methods=["GET", "POST"])
def sign_out() -> WerkzeugResponse:
    """End the forward-auth session and the sign-in behind it, then go to ``rd`` (an
    allowed host's URL; ``/`` of the protected host otherwise)."""
    scheme, netloc = _scheme(), _netloc()
    service = forward_auth()
    try:
        target = redirect_target(request.args.get("rd"), scheme, netloc, service.rules)
    except ForwardAuthError:
        try:
            target = redirect_target(None, scheme, netloc, service.rules)
        except ForwardAuthError as exc:
            return _refused(str(exc))
    found = service.session_of(request.cookies.get(forward_auth_cookie()), netloc)
    if found is not None:
        settings = app_settings()
        lifetime = max(service.session_lifetime, settings.session_lifetime)
        store = services().ephemeral
        store.put(LOGGED_OUT_PREFIX + found.sid, b"1", lifetime)
        services().events("forward_auth_logout", user_id=found.user_id, host=found.host)
    response = redirect(target)
    response.delete_cookie(
        forward_auth_cookie(), path="/", secure=scheme == "https", httponly=True, samesite="Lax"
    )
    response.headers["Cache-Control"] = "no-store"
    return response
