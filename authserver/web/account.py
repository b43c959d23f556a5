"""The person's own pages: ``/`` after a sign-in, and ``/account``: who they are, their
roles, their password (local users), and where they are signed in, with "sign out
everywhere".

The changes are the admin layer's operations (:mod:`authserver.admin.users`) done by the
person themself, so their rules, limits and audit rows are the admin API's and the
CLI's: one's own new password needs the current one, under the sign-in page's limits on
wrong passwords, and ends every session and refresh token of theirs. Every change is a
POST with Flask-WTF's CSRF token, answered by a redirect (Post/Redirect/Get) when it is
made, and by the page again with the reason (400, or 429 past the limits) when not.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar

from flask import Blueprint, flash, redirect, url_for
from flask_wtf import FlaskForm
from werkzeug.wrappers import Response

from ..admin.users import ADMIN_ROLE, CurrentPasswordRefused, TooManyWrongPasswords
from ..identity.users import Person, UserError
from ..paths import ACCOUNT_PATH, END_SESSION_PATH
from . import admin
from .audit import set_actor
from .forms import ChangePasswordForm, SignOutEverywhereForm
from .pages import page, when
from .services import services
from .signin import SignedIn, client_address, current_signin, sign_in, sign_out

bp = Blueprint("account", __name__)

FORM_EXPIRED = "The form expired or did not come from this page. Reload it and try again."
#: How a person who has no password here signs in, by ``source``.
MANAGED_BY = {
    "upstream": "your identity provider",
    "proxy": "the sign-in proxy in front of this server",
}
SOURCE_TEXT = {
    "local": "a password kept by this server",
    "upstream": "your identity provider",
    "proxy": "the sign-in proxy in front of this server",
}


@bp.get("/")
def home() -> Response:
    """Where a sign-in without a ``next`` ends: who you are, and where to go."""
    signin = current_signin()
    if signin is None:
        return redirect(url_for("login.login"))
    person = signin.person
    return page(
        "home.html",
        person=person,
        is_admin=ADMIN_ROLE in person.roles,
        logout=END_SESSION_PATH,
    )


def _signed_in() -> tuple[SignedIn, Person] | Response:
    """The sign-in and the person, named as who acts in this request; or the login
    page, which brings them back here."""
    signin = current_signin()
    person = services().users.get(signin.person.id) if signin is not None else None
    if signin is None or person is None:
        return redirect(url_for("login.login", next=ACCOUNT_PATH))
    set_actor(person.username, person.id)
    return signin, person


def _account_page(
    found: tuple[SignedIn, Person],
    status: int = 200,
    *,
    error: str | None = None,
    form: ChangePasswordForm | None = None,
) -> Response:
    signin, person = found
    users = services().users
    local = person.source == "local"
    context: dict[str, Any] = {
        "person": person,
        "is_admin": ADMIN_ROLE in person.roles,
        "logout": END_SESSION_PATH,
        "error": error,
        "auth_time": signin.auth_time,
        "source_text": SOURCE_TEXT.get(person.source, person.source),
        "managed_by": MANAGED_BY.get(person.source, person.source),
        "password_form": (form or ChangePasswordForm(formdata=None)) if local else None,
        "sign_out_form": SignOutEverywhereForm(formdata=None),
        "families": users.signed_in_clients(person),
        "proxied": signin.method == "proxy",
        "when": when,
    }
    return page("account.html", status, **context)


@bp.get(ACCOUNT_PATH)
def account() -> Response:
    found = _signed_in()
    if isinstance(found, Response):
        return found
    return _account_page(found)


F = TypeVar("F", bound=FlaskForm)
Change = Callable[[tuple[SignedIn, Person], F], Response]


def _account_post(rule: str, form_class: type[F]) -> Callable[[Change[F]], Callable[[], Response]]:
    """A POST of ``form_class`` to ``rule`` by the person signed in (else the login page,
    which brings them back): the decorated function is given them and the valid form;
    a form that is not valid (its CSRF token expired, a field missing) is the account
    page again, 400, and changes nothing."""

    def decorate(change: Change[F]) -> Callable[[], Response]:
        @bp.post(rule)
        @wraps(change)
        def view() -> Response:
            found = _signed_in()
            if isinstance(found, Response):
                return found
            form = form_class()
            if not form.validate_on_submit():
                error = (
                    FORM_EXPIRED if "csrf_token" in form.errors else "The form was not sent whole."
                )
                shown = form if isinstance(form, ChangePasswordForm) else None
                return _account_page(found, 400, error=error, form=shown)
            return change(found, form)

        return view

    return decorate


@_account_post(ACCOUNT_PATH + "/password", ChangePasswordForm)
def change_password(found: tuple[SignedIn, Person], form: ChangePasswordForm) -> Response:
    signin, person = found
    if person.source != "local":
        error = f"Your password is managed by {MANAGED_BY.get(person.source, person.source)}."
        return _account_page(found, 400, error=error)
    current, new = form.current.data or "", form.password.data or ""
    if not current or not new or not form.confirm.data:
        error = "Enter your current password, and the new one twice."
        return _account_page(found, 400, error=error, form=form)
    if new != form.confirm.data:
        error = "The two new passwords differ; your password is unchanged."
        return _account_page(found, 400, error=error, form=form)
    users = admin.user_admin()
    try:
        users.check_current_password(person, current, services().login_throttle, client_address())
    except TooManyWrongPasswords:
        response = _account_page(
            found,
            429,
            error="Too many wrong passwords. Wait a few minutes and try again.",
            form=form,
        )
        response.headers["Retry-After"] = "60"
        return response
    except CurrentPasswordRefused:
        error = "The current password is wrong; your password is unchanged."
        return _account_page(found, 400, error=error, form=form)
    try:
        users.change_password(person, new)
    except UserError as exc:
        error = f"{str(exc).capitalize()}; your password is unchanged."
        return _account_page(found, 400, error=error, form=form)
    # The new password ended every session, this one too: this browser signs in again.
    renewed = services().users.get(person.id)
    if renewed is not None:
        sign_in(renewed, signin.method)
    flash(
        "Your password is changed. You are signed out everywhere else, and the clients "
        "that held a refresh token of yours must sign in again."
    )
    return redirect(url_for(".account"), 303)


@_account_post(ACCOUNT_PATH + "/sign-out-everywhere", SignOutEverywhereForm)
def sign_out_everywhere(found: tuple[SignedIn, Person], form: SignOutEverywhereForm) -> Response:
    signin, person = found
    try:
        revoked = admin.user_admin().sign_out_everywhere(person)
    except UserError as exc:  # deleted meanwhile
        return _account_page(found, 400, error=str(exc))
    clients = f"{revoked} signed-in client{'s' if revoked != 1 else ''}"
    if signin.method == "proxy":
        flash(
            f"Signed out everywhere: {clients} must sign in again. The sign-in proxy "
            "keeps this browser signed in."
        )
        return redirect(url_for(".account"), 303)
    sign_out()
    flash(f"You are signed out everywhere: every browser session, and {clients}.")
    return redirect(url_for("login.login", next=ACCOUNT_PATH), 303)
