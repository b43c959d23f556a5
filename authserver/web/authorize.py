"""The authorization endpoint's pages (RFC 6749 §3.1): sign-in, consent, the redirect.

The decisions are the protocol layer's (``oauth.rfc6749.authorization``): this module reads the
request once, tells it who is signed in and what the person clicked, and renders the
outcome.
"""

from __future__ import annotations

from urllib.parse import urlencode

from flask import Blueprint, redirect, request, session, url_for
from werkzeug.wrappers import Response

from ..oauth.metadata import admin_api_audience
from ..oauth.rfc6749.authorization import (
    AskConsent,
    Authenticated,
    Browser,
    Outcome,
    Redirect,
    ShowError,
    SignIn,
)
from ..paths import AUTHORIZATION_PATH
from .adapter import authorization_request, oauth_server, to_flask
from .forms import ConsentForm
from .pages import message, page
from .signin import SIGNED_IN_FOR, SIGNIN_FOR, current_signin

bp = Blueprint("authorize", __name__)

AUTHORIZE_PATH = AUTHORIZATION_PATH

SCOPE_DESCRIPTIONS = {
    "openid": "know who you are",
    "profile": "your name and username",
    "email": "your email address",
    "groups": "your groups",
    "roles": "act with your roles",
    "offline_access": "stay signed in (refresh tokens)",
    "offline": "stay signed in (refresh tokens)",
}


class _Consent:
    """The consent form, made only when a check asks for the person's answer."""

    def __init__(self) -> None:
        self._form: ConsentForm | None = None

    @property
    def form(self) -> ConsentForm:
        if self._form is None:
            self._form = ConsentForm()
        return self._form

    def answer(self) -> bool | None:
        """Allow (``True``) or Deny (``False``) if validly posted, else ``None``."""
        if request.method == "POST" and self.form.validate_on_submit():
            return bool(self.form.approve.data)
        return None


def _browser(consent: _Consent) -> Browser:
    """The session's sign-in, its remembered consents and the person's answer."""
    signin = current_signin()
    return Browser(
        signin=(
            Authenticated(subject=signin.person, auth_time=signin.auth_time, method=signin.method)
            if signin is not None
            else None
        ),
        consents=tuple(session.get("consents", [])),
        answer=consent.answer,
        take_signed_in_for=lambda: session.pop(SIGNED_IN_FOR, None),
    )


@bp.route(AUTHORIZE_PATH, methods=["GET", "POST"])
def authorize() -> Response:
    consent = _Consent()
    outcome: Outcome = oauth_server().authorization.authorize(
        authorization_request(), _browser(consent)
    )
    if isinstance(outcome, ShowError):
        # §4.1.2.1: a bad client_id or redirect_uri is shown, never redirected to.
        return message("This sign-in link is not valid", outcome.description, 400, error=True)
    if isinstance(outcome, SignIn):
        session[SIGNIN_FOR] = outcome.request_key
        back = AUTHORIZE_PATH + "?" + urlencode(outcome.query)
        return redirect(url_for("login.login", next=back, force="1"))
    if isinstance(outcome, AskConsent):
        return _consent_page(outcome, consent.form)
    assert isinstance(outcome, Redirect)
    if outcome.remember_consent is not None:
        consents: list[str] = session.get("consents", [])
        session["consents"] = [*consents[-19:], outcome.remember_consent]
    return to_flask(outcome.response)


def _consent_page(ask: AskConsent, form: ConsentForm) -> Response:
    auth, subject = ask.auth, ask.subject
    return page(
        "consent.html",
        400 if request.method == "POST" else 200,
        form_targets=[auth.redirect_uri],
        form=form,
        action=request.full_path,
        client_id=auth.client.client_id,
        username=subject.username,
        scopes=auth.scopes,
        audience=auth.audience,
        admin_api=auth.audience == admin_api_audience(oauth_server().issuer),
        descriptions=SCOPE_DESCRIPTIONS,
        roles=subject.roles if auth.client.consent else (),
        groups=subject.groups if auth.client.consent else (),
    )
