"""The authorization endpoint's pages (RFC 6749 §3.1): sign-in, consent, the redirect.

Parameter checks and the code are the protocol layer's (``AuthServer``); this module
only knows who is signed in and what the person clicked.
"""

from __future__ import annotations

import hashlib
import time
from urllib.parse import urlencode

from authlib.oauth2.rfc6749 import AccessDeniedError, OAuth2Error
from authlib.oidc.core.errors import ConsentRequiredError, LoginRequiredError
from flask import Blueprint, redirect, request, session, url_for
from werkzeug.wrappers import Response

from ..oauth.authorization import AuthorizationRequest
from ..oauth.metadata import admin_api_audience
from ..paths import AUTHORIZATION_PATH
from .adapter import authorization_request, oauth_server, to_flask
from .forms import ConsentForm
from .pages import message, page
from .signin import SIGNED_IN_FOR, SIGNIN_FOR, current_signin

bp = Blueprint("authorize", __name__)

AUTHORIZE_PATH = AUTHORIZATION_PATH
#: A public client gets a code without a confirmation click only this soon after the
#: person signed in for that very authorization request.
FRESH_SIGNIN_SECONDS = 300

SCOPE_DESCRIPTIONS = {
    "openid": "know who you are",
    "profile": "your name and username",
    "email": "your email address",
    "groups": "your groups",
    "roles": "act with your roles",
    "offline_access": "stay signed in (refresh tokens)",
    "offline": "stay signed in (refresh tokens)",
}


def _error(error: OAuth2Error) -> Response:
    redirect_response = oauth_server().authorization_error(error)
    if redirect_response is not None:
        return to_flask(redirect_response)
    # §4.1.2.1: a bad client_id or redirect_uri is shown, never redirected to.
    text = error.description or error.error
    return message("This sign-in link is not valid", text, 400, error=True)


def _login_url(prompts: frozenset[str]) -> str:
    """The login page, coming back here afterwards (without ``prompt=login``, so the
    fresh sign-in is not asked for again)."""
    # max_age is dropped too: the sign-in about to happen satisfies it (OIDC Core
    # §3.1.2.1), and keeping max_age=0 would send the person back here for ever.
    args = [
        (k, v)
        for k, v in request.args.items(multi=True)
        if not (k == "prompt" and "login" in v.split()) and k != "max_age"
    ]
    remaining = " ".join(p for p in prompts if p != "login")
    if remaining:
        args.append(("prompt", remaining))
    return url_for("login.login", next=AUTHORIZE_PATH + "?" + urlencode(args), force="1")


def _request_key(auth: AuthorizationRequest) -> str:
    """What names one authorization request: its client, redirect URI, PKCE challenge
    and state (the challenge is fresh for each request a client makes)."""
    parts = (
        auth.client.client_id,
        auth.redirect_uri,
        request.args.get("code_challenge", ""),
        request.args.get("state", ""),
    )
    return hashlib.sha256("\x00".join(parts).encode()).hexdigest()


def _consent_key(auth: AuthorizationRequest) -> str:
    """What a remembered consent covers: the client, the scopes and the audience
    (issue 16.5: consent to one resource is not consent to another)."""
    return "\x00".join((auth.client.client_id, " ".join(sorted(auth.scopes)), auth.audience))


@bp.route(AUTHORIZE_PATH, methods=["GET", "POST"])
def authorize() -> Response:
    server = oauth_server()
    try:
        auth = server.validate_authorization(authorization_request())
    except OAuth2Error as error:
        return _error(error)
    state = request.args.get("state")
    signin = current_signin()
    stale = (
        signin is not None
        and auth.max_age is not None
        and time.time() - signin.auth_time > auth.max_age
    )
    if signin is None or stale or "login" in auth.prompts:
        if "none" in auth.prompts:
            # OIDC Core §3.1.2.6.
            return _error(LoginRequiredError(redirect_uri=auth.redirect_uri, state=state))
        session[SIGNIN_FOR] = _request_key(auth)
        return redirect(_login_url(auth.prompts))
    consents: list[str] = session.get("consents", [])
    needs_consent = auth.client.consent and (
        "consent" in auth.prompts or _consent_key(auth) not in consents
    )
    # RFC 8252 §8.6: a public client's identity cannot be assured (any program can
    # listen on a loopback port), so its codes are not issued without the person
    # doing something for this very request: the sign-in it sent them to, just now
    # and once (issue 16.13), or a click on the confirmation page.
    signed_in_for = session.pop(SIGNED_IN_FOR, None) if auth.client.is_public else None
    fresh = (
        signin.method != "proxy"
        and signed_in_for == _request_key(auth)
        and time.time() - signin.auth_time <= FRESH_SIGNIN_SECONDS
    )
    confirm_public = auth.client.is_public and ("consent" in auth.prompts or not fresh)
    needs_consent = needs_consent or confirm_public
    if needs_consent:
        if "none" in auth.prompts:
            return _error(ConsentRequiredError(redirect_uri=auth.redirect_uri, state=state))
        form = ConsentForm()
        if request.method == "POST" and form.validate_on_submit():
            if not form.approve.data:
                server.emit("authorization_denied", client=auth.client, user_id=signin.person.id)
                return _error(AccessDeniedError(redirect_uri=auth.redirect_uri, state=state))
            if auth.client.consent:  # a public client's confirmation is not remembered
                session["consents"] = [*consents[-19:], _consent_key(auth)]
        else:
            return page(
                "consent.html",
                400 if request.method == "POST" else 200,
                form_targets=[auth.redirect_uri],
                form=form,
                action=request.full_path,
                client_id=auth.client.client_id,
                username=signin.person.username,
                scopes=auth.scopes,
                audience=auth.audience,
                admin_api=auth.audience == admin_api_audience(server.issuer),
                descriptions=SCOPE_DESCRIPTIONS,
                roles=signin.person.roles if auth.client.consent else (),
                groups=signin.person.groups if auth.client.consent else (),
            )
    return to_flask(server.authorization_response(auth, signin.person, signin.auth_time))
