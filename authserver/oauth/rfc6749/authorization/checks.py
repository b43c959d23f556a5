"""What the authorization endpoint does with a valid request: one ordered list of small
checks (after node-oidc-provider's ``lib/actions/authorization/``), each citing the
section that asks for it. The first check with something to say decides; a request that
passes them all gets its code (RFC 6749 §4.1.2).

The outcome is one of :class:`SignIn`, :class:`AskConsent` or :class:`Redirect` (with a
code or an error); the web layer renders it and keeps the browser's session.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from authlib.oauth2.rfc6749 import AccessDeniedError, OAuth2Error
from authlib.oidc.core.errors import ConsentRequiredError, LoginRequiredError

from ....clock import SYSTEM_CLOCK, Clock
from ...http import HttpRequest, HttpResponse
from ...subjects import Subject
from .request import (
    AuthorizationRequest,
    authorization_error,
    authorization_response,
    validate_authorization,
)

if TYPE_CHECKING:
    from ...server import AuthServer

#: A public client gets a code without a confirmation click only this soon after the
#: person signed in for that very authorization request (RFC 8252 §8.6).
FRESH_SIGNIN_SECONDS = 300


@dataclass(frozen=True)
class Authenticated:
    """Who the browser is signed in as, when and how (from the web layer's session)."""

    subject: Subject
    auth_time: float
    #: How: ``password``, ``upstream`` or ``proxy``.
    method: str


@dataclass(frozen=True)
class Browser:
    """What the web layer knows of the browser that made the request."""

    signin: Authenticated | None
    #: Consents it remembers (:attr:`AuthorizationRequest.consent_key`).
    consents: tuple[str, ...] = ()
    #: The person's answer on the consent page (Allow: ``True``), asked only when a
    #: check needs it: ``None`` when not (validly) posted.
    answer: Callable[[], bool | None] = lambda: None
    #: Take (once) the key of the request the last sign-in was started for.
    take_signed_in_for: Callable[[], str | None] = lambda: None


# -- outcomes -------------------------------------------------------------------------


@dataclass(frozen=True)
class SignIn:
    """Send the person to sign in, then back with :attr:`query`."""

    #: Remember this as what the sign-in is for (:attr:`AuthorizationRequest.key`).
    request_key: str
    query: list[tuple[str, str]]


@dataclass(frozen=True)
class AskConsent:
    """Show the consent (or, for a public client, confirmation) page."""

    auth: AuthorizationRequest
    subject: Subject


@dataclass(frozen=True)
class Redirect:
    """Back to the client: a code or an error (``response`` a 302)."""

    response: HttpResponse
    #: A consent the browser remembers from now on.
    remember_consent: str | None = None


@dataclass(frozen=True)
class ShowError:
    """An error shown to the person, never redirected (RFC 6749 §4.1.2.1)."""

    description: str


Outcome = SignIn | AskConsent | Redirect | ShowError


@dataclass
class Context:
    """One request on its way through the checks."""

    server: AuthServer
    auth: AuthorizationRequest
    browser: Browser
    now: float
    #: Set when the person clicked Allow on a page a check asked for.
    approved: bool = field(default=False)

    @property
    def signin(self) -> Authenticated:
        assert self.browser.signin is not None  # the sign-in checks come first
        return self.browser.signin

    def error(self, error: OAuth2Error) -> Redirect | ShowError:
        return error_outcome(self.server.issuer, error)


def error_outcome(issuer: str, error: OAuth2Error) -> Redirect | ShowError:
    """§4.1.2.1: the error back to the client, or shown to the person when its redirect
    URI is not verified (a bad client_id or redirect_uri is never redirected to)."""
    response = authorization_error(issuer, error)
    if response is None:
        return ShowError(error.description or error.error)
    return Redirect(response)


Check = Callable[[Context], "Outcome | None"]


# -- the checks, in order --------------------------------------------------------------


def require_signin(ctx: Context) -> Outcome | None:
    """OIDC Core §3.1.2.3: the person must be signed in."""
    return _sign_in(ctx) if ctx.browser.signin is None else None


def check_max_age(ctx: Context) -> Outcome | None:
    """OIDC Core §3.1.2.1 ``max_age``: a sign-in older than it is asked for again."""
    max_age = ctx.auth.max_age
    if max_age is not None and ctx.now - ctx.signin.auth_time > max_age:
        return _sign_in(ctx)
    return None


def check_prompt_login(ctx: Context) -> Outcome | None:
    """OIDC Core §3.1.2.1 ``prompt=login``: sign in again, whoever is signed in."""
    return _sign_in(ctx) if "login" in ctx.auth.prompts else None


def confirm_public_client(ctx: Context) -> Outcome | None:
    """RFC 8252 §8.6: a public client's identity cannot be assured (any program can
    listen on a loopback port), so its codes are not issued without the person doing
    something for this very request: the sign-in it sent them to, just now and once
    (issue 16.13), or a click on the confirmation page (``prompt=consent`` asks for the
    click whatever the sign-in)."""
    if not ctx.auth.client.is_public:
        return None
    signin = ctx.signin
    signed_in_for = ctx.browser.take_signed_in_for()  # once: taken whatever comes next
    fresh = (
        signin.method != "proxy"
        and signed_in_for == ctx.auth.key
        and ctx.now - signin.auth_time <= FRESH_SIGNIN_SECONDS
    )
    if "consent" in ctx.auth.prompts or not fresh:
        return _ask(ctx)
    return None


def check_consent(ctx: Context) -> Outcome | None:
    """OIDC Core §3.1.2.4 / RFC 6749 §4.1.1: a client registered to ask for consent
    gets it for these scopes and this audience, asked again for ``prompt=consent``."""
    auth = ctx.auth
    if not auth.client.consent:
        return None
    if "consent" in auth.prompts or auth.consent_key not in ctx.browser.consents:
        return _ask(ctx)
    return None


CHECKS: tuple[Check, ...] = (
    require_signin,
    check_max_age,
    check_prompt_login,
    confirm_public_client,
    check_consent,
)


def issue_code(ctx: Context) -> Redirect:
    """RFC 6749 §4.1.2: every check passed; a remembered consent if one was just given
    (a public client's confirmation is not remembered)."""
    signin = ctx.signin
    response = authorization_response(ctx.server, ctx.auth, signin.subject, signin.auth_time)
    remember = ctx.auth.consent_key if ctx.approved and ctx.auth.client.consent else None
    return Redirect(response, remember_consent=remember)


def _sign_in(ctx: Context) -> Outcome:
    if "none" in ctx.auth.prompts:
        # OIDC Core §3.1.2.6: prompt=none and no usable sign-in.
        return ctx.error(
            LoginRequiredError(redirect_uri=ctx.auth.redirect_uri, state=ctx.auth.state)
        )
    return SignIn(request_key=ctx.auth.key, query=ctx.auth.query_after_sign_in())


def _ask(ctx: Context) -> Outcome | None:
    """The person's click is needed: ask, or take the answer they gave."""
    if ctx.approved:
        return None
    auth = ctx.auth
    if "none" in auth.prompts:
        # OIDC Core §3.1.2.6.
        return ctx.error(ConsentRequiredError(redirect_uri=auth.redirect_uri, state=auth.state))
    answer = ctx.browser.answer()
    if answer is None:
        return AskConsent(auth, ctx.signin.subject)
    if not answer:
        ctx.server.emit("authorization_denied", client=auth.client, user_id=ctx.signin.subject.id)
        return ctx.error(AccessDeniedError(redirect_uri=auth.redirect_uri, state=auth.state))
    ctx.approved = True
    return None


class AuthorizationEndpoint:
    """RFC 6749 §3.1: one authorization request in, one :data:`Outcome` out."""

    def __init__(self, server: AuthServer, clock: Clock = SYSTEM_CLOCK) -> None:
        self._server = server
        self._clock = clock

    def authorize(self, request: HttpRequest, browser: Browser) -> Outcome:
        try:
            auth = validate_authorization(self._server, request)
        except OAuth2Error as error:
            return error_outcome(self._server.issuer, error)
        ctx = Context(self._server, auth, browser, self._clock.now())
        for check in CHECKS:
            outcome = check(ctx)
            if outcome is not None:
                return outcome
        return issue_code(ctx)
