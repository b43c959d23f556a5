"""Sign-in pages: local username/password, the upstream IdP, and sign-out
(OIDC RP-Initiated Logout 1.0)."""

from __future__ import annotations

import logging
import unicodedata
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

from flask import Blueprint, current_app, redirect, request, session, url_for
from werkzeug.wrappers import Response

from ..identity.federation import Upstream, UpstreamError
from ..identity.users import UserError, normalize_username
from ..paths import (
    AUTHORIZATION_PATH,
    END_SESSION_PATH,
    FORWARD_SIGNIN_PATH,
    LOGIN_PATH,
    NEW_PASSWORD_PATH,
    UPSTREAM_CALLBACK_PATH,
    UPSTREAM_LOGIN_PATH,
)
from .adapter import app_settings, oauth_server
from .forms import LoginForm, LogoutForm, NewPasswordForm
from .forward_auth import forward_auth
from .pages import message, page
from .services import services
from .signin import (
    clear_keeping_signin_for,
    client_address,
    current_signin,
    safe_next,
    sign_in,
    sign_out,
)

log = logging.getLogger(__name__)

bp = Blueprint("login", __name__)

LOGOUT_PATH = END_SESSION_PATH
#: The session key of a sign-in that waits for a new password, and how long it waits.
PENDING_SIGNIN = "pending_signin"
PASSWORD_CHANGE_SECONDS = 600


def _upstream() -> Upstream | None:
    upstream = services().upstream
    return upstream


def _login_page(form: LoginForm | None, next_url: str, error: str | None, status: int) -> Response:
    upstream = _upstream()
    return page(
        "login.html",
        status,
        form=form,
        next=next_url,
        error=error,
        upstream=upstream.name if upstream else None,
        form_targets=_redirect_after(next_url),
    )


def _redirect_after(next_url: str) -> list[str]:
    """Where the sign-in's POST may end up: ``next`` on our origin and, for an
    authorization request, its ``redirect_uri`` (browsers check ``form-action`` along
    the redirects; the authorization endpoint still checks the URI itself)."""
    parts = urlsplit(next_url)
    if parts.path == FORWARD_SIGNIN_PATH:
        # Forward auth: on to the protected host's /oauth2/callback.
        state = dict(parse_qsl(parts.query)).get("state", "")
        origin = forward_auth().pending_origin(state)
        return [origin] if origin else []
    if parts.path != AUTHORIZATION_PATH:
        return []
    return [v for k, v in parse_qsl(parts.query) if k == "redirect_uri"][:1]


@bp.route(LOGIN_PATH, methods=["GET", "POST"])
def login() -> Response:
    settings = app_settings()
    form = LoginForm() if settings.local_users else None
    next_url = safe_next(request.values.get("next"))
    if request.method == "GET":
        if current_signin() is not None and request.args.get("force") != "1":
            return redirect(next_url)
        if form is None and _upstream() is not None:
            # The IdP is the only way in: go there straight away.
            return redirect(url_for("login.upstream_start", next=next_url))
        return _login_page(form, next_url, None, 200)
    if form is None:
        return message("Sign-in", "Password sign-in is not enabled here.", 404, error=True)
    if not form.validate_on_submit():
        if form.csrf_token.errors:
            error = "The form expired. Please try again."
        else:
            error = "Enter your username and password."
        return _login_page(form, next_url, error, 400)
    throttle = services().login_throttle
    username = normalize_username(form.username.data.strip())
    address = client_address()
    # Failed attempts count; a burst of concurrent guesses can pass the check before
    # the failures are counted, by at most the server's concurrency.
    wait = throttle.refusal(username, address)
    if wait is not None:
        if throttle.first("throttled", username, address):  # one row a minute (issue 9.11)
            services().events("login_throttled", username=username)
        response = _login_page(
            form, next_url, "Too many failed sign-ins. Wait a few minutes and try again.", 429
        )
        response.headers["Retry-After"] = str(wait)
        return response
    users = services().users
    person = None
    if not any(unicodedata.category(c).startswith("C") for c in username):
        person = users.authenticate(username, form.password.data)
    if person is None:
        throttle.failed(username, address)
        services().events("login_failed", username=username)
        return _login_page(form, next_url, "Wrong username or password.", 401)
    if person.password_must_change:
        # Issue 16.11: a one-time password (the first admin's, printed to the server's
        # log) signs nobody in; it only lets its holder choose a password of their own.
        clear_keeping_signin_for()
        session[PENDING_SIGNIN] = {
            "uid": person.id,
            "cred": person.credentials_generation,
            "next": next_url,
            "until": int(services().clock.now()) + PASSWORD_CHANGE_SECONDS,
        }
        return redirect(url_for("login.new_password"))
    sign_in(person, "password")
    services().events("login", user_id=person.id, username=person.username, method="password")
    return redirect(next_url)


@bp.route(NEW_PASSWORD_PATH, methods=["GET", "POST"])
def new_password() -> Response:
    """The sign-in of a one-time password, completed by choosing a new password."""
    stored = session.get(PENDING_SIGNIN)
    pending: dict[str, Any] = stored if isinstance(stored, dict) else {}
    users = services().users
    person = None
    if pending and int(pending.get("until", 0)) >= services().clock.now():
        person = users.get(str(pending.get("uid")))
    if (
        person is None
        or person.disabled
        or not person.password_must_change
        or person.credentials_generation != pending.get("cred")
    ):
        session.pop(PENDING_SIGNIN, None)
        return message(
            "Choose a new password",
            "Sign in with your one-time password first (it is good for 10 minutes here).",
            400,
            error=True,
            link=url_for("login.login", force="1"),
            link_text="Sign in",
        )
    form = NewPasswordForm()
    next_url = safe_next(pending.get("next"))
    username = person.username

    def show(error: str | None, status: int = 400) -> Response:
        return page(
            "new_password.html",
            status,
            form=form,
            username=username,
            error=error,
            form_targets=_redirect_after(next_url),
        )

    if request.method == "GET":
        return show(None, 200)
    if not form.validate_on_submit():
        if form.csrf_token.errors:
            return show("The form expired. Please try again.")
        return show("Enter the new password twice.")
    new = form.password.data
    if new != form.confirm.data:
        return show("The two passwords differ.")
    if users.check_password(person.username, new):
        return show("Choose a password other than the one-time password.")
    try:
        person = users.set_password(person.username, new)
    except UserError as exc:
        return show(str(exc).capitalize() + ".")
    sign_in(person, "password")
    events = services().events
    events("password_changed", user_id=person.id, username=person.username, method="one-time")
    events("login", user_id=person.id, username=person.username, method="password")
    return redirect(next_url)


@bp.get(UPSTREAM_LOGIN_PATH)
def upstream_start() -> Response:
    upstream = _upstream()
    if upstream is None:
        return message("Sign-in", "No identity provider is configured here.", 404, error=True)
    session["upstream_next"] = safe_next(request.args.get("next"))
    base_url: str = current_app.config["AUTHSERVER_BASE_URL"]
    try:
        return upstream.redirect(base_url + url_for("login.callback"))
    except UpstreamError as exc:
        return message(
            "Sign-in failed", str(exc), exc.status, error=True, link=url_for("login.login")
        )


@bp.get(UPSTREAM_CALLBACK_PATH)
def callback() -> Response:
    upstream = _upstream()
    if upstream is None:
        return message("Sign-in", "No identity provider is configured here.", 404, error=True)
    retry = url_for("login.login", force="1")
    try:
        identity = upstream.finish()
    except UpstreamError as exc:
        services().events("login_failed", method="upstream")
        return message(
            "Sign-in failed",
            str(exc),
            exc.status,
            error=True,
            link=retry,
            link_text="Sign in again",
        )
    users = services().users
    person = users.provisioning.federated(
        identity.issuer,
        identity.subject,
        email=identity.email,
        name=identity.name,
        groups=identity.groups,
        email_verified=identity.email_verified,
    )
    if person.disabled:
        return message("Sign-in refused", "This account is disabled.", 403, error=True)
    next_url = safe_next(session.get("upstream_next"))
    sign_in(person, "upstream")
    services().events("login", user_id=person.id, username=person.username, method="upstream")
    return redirect(next_url)


@bp.route(LOGOUT_PATH, methods=["GET", "POST"])
def logout() -> Response:
    """OIDC RP-Initiated Logout 1.0 §2-3: the end_session_endpoint.

    Signing out on a bare GET would let any page sign a person out, so a GET shows a
    confirmation unless its ``id_token_hint`` names the person signed in.
    """
    server = oauth_server()
    args = request.args
    target = server.logout.redirect_target(args)
    signin = current_signin()
    form = LogoutForm()
    hint_matches = signin is not None and server.logout.hint_names(args, signin.person.id)
    if signin is not None and request.method == "GET" and not hint_matches:
        action = LOGOUT_PATH + ("?" + urlencode(list(args.items(multi=True))) if args else "")
        return page(
            "logout.html",
            form=form,
            action=action,
            username=signin.person.username,
            form_targets=[target] if target else [],
        )
    if request.method == "POST" and not form.validate_on_submit():
        return message("Sign out", "The form expired. Please try again.", 400, error=True)
    if signin is not None:
        sign_out()
        services().events("logout", user_id=signin.person.id, username=signin.person.username)
    if target:
        return redirect(target)
    return message("Signed out", "You are signed out.")
