"""The admin dashboard at ``/dashboard``: server-rendered pages over the operations of
:mod:`authserver.admin` (through :mod:`authserver.web.admin`), so the rules and the
audit events are the admin API's and the CLI's.

Sign-in is the normal login page. Only a person whose current role is ``admin`` gets
in: ``current_signin`` re-reads the person on every request, so a demoted or disabled
admin is out at once. Every change is a POST with Flask-WTF's CSRF token; a GET never
changes anything. A secret (a generated password, a service-account token) appears
once, in the response to the POST that made it: never in the session, a redirect or a
listing. Pages allow no script, except the one-off secret page, whose copy button runs
a script allowed by a per-response nonce (CSP Level 3 §6.7.3.1).
"""

from __future__ import annotations

import io
import json
import secrets
from collections.abc import Callable
from datetime import UTC, datetime
from functools import wraps
from typing import Any, TypeVar

from flask import Blueprint, flash, g, redirect, request, url_for
from flask_wtf import FlaskForm
from flask_wtf.csrf import generate_csrf
from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.wrappers import Response

from ..admin.audit import AUDITED, audit_names
from ..admin.users import LastAdmin
from ..identity.users import AlreadyExists, NotFound, Person, UserError, generate_password
from ..key_file import DEFAULT_KEY_ALGORITHM, KeyFile
from ..paths import DASHBOARD_PATH, TOKEN_PATH
from . import admin
from .adapter import app_settings
from .audit import set_actor
from .forms import (
    SERVICE_ACCOUNT_EXPIRIES,
    CreateServiceAccountForm,
    CreateUserForm,
    DeleteUserForm,
    ImportUsersForm,
    ResetPasswordForm,
    RotateKeysForm,
    ServiceAccountActionForm,
    UserDisabledForm,
    UserEmailForm,
    UserRoleForm,
)
from .pages import message, page, when
from .services import services
from .signin import current_signin

bp = Blueprint("dashboard", __name__, url_prefix=DASHBOARD_PATH)
F = TypeVar("F", bound=FlaskForm)

#: The sections of the navigation: (endpoint, label).
NAV = (
    ("dashboard.users", "Users"),
    ("dashboard.service_accounts", "Service accounts"),
    ("dashboard.clients", "Clients"),
    ("dashboard.keys", "Signing keys"),
    ("dashboard.audit", "Audit log"),
)
AUDIT_PAGE = 50
AUDIT_PAGE_MAX = 200
FORM_EXPIRED = (
    "The form expired or did not come from this dashboard (CSRF check failed). "
    "Reload the page and try again."
)


# -- who may use it --------------------------------------------------------------------


@bp.before_request
def _admins_only() -> Response | None:
    signin = current_signin()
    if signin is None:
        # Back here after signing in; a POST cannot be replayed, so its page instead.
        target = request.full_path.rstrip("?") if request.method == "GET" else url_for(".index")
        return redirect(url_for("login.login", next=target))
    person = signin.person
    # One role per person today (``Person.roles`` is ``(role,)``), re-read this request.
    if admin.ADMIN_ROLE not in person.roles:
        return message(
            "Admins only",
            f"The dashboard is for admins. You are signed in as {person.username}, "
            f"whose role is {', '.join(person.roles) or 'none'}.",
            403,
            error=True,
        )
    set_actor(person.username, person.id)
    g.dashboard_person = person
    if any("\x00" in value for value in request.values.values()):
        # No name or filter holds a NUL, and PostgreSQL cannot even compare one.
        return message("Bad request", "The request holds a NUL character.", 400, error=True)
    return None


@bp.context_processor
def _context() -> dict[str, Any]:
    me = g.get("dashboard_person")
    return {
        "nav": NAV,
        "me": me,
        "csrf": generate_csrf() if me else "",
        "when": when,
        "when_iso": _when_iso,
    }


def _when_iso(value: str | None, empty: str = "—") -> str:
    return when(datetime.fromisoformat(value), empty) if value else empty


def _render(template: str, status: int = 200, **context: Any) -> Response:
    return page(f"dashboard/{template}", status, **context)


def _status(exc: UserError) -> int:
    if isinstance(exc, NotFound):
        return 404
    if isinstance(exc, AlreadyExists | LastAdmin):
        return 409
    return 400


def _form_error(form: FlaskForm) -> str:
    if "csrf_token" in form.errors:
        return FORM_EXPIRED
    for field, errors in form.errors.items():
        label = getattr(getattr(form, field, None), "label", None)
        return f"{label.text if label and label.text else field}: {errors[0]}"
    return "The form was not sent as the page sends it."


def _done(text: str, endpoint: str) -> Response:
    """Post/Redirect/Get: the list again, with what was done above it."""
    flash(text)
    return redirect(url_for(endpoint), 303)


def _form_post(
    rule: str, form_class: type[F], page: Callable[..., Response]
) -> Callable[[Callable[[F], Response]], Callable[[], Response]]:
    """A view for the POST of ``form_class`` to ``rule``: the decorated function is given
    the valid form and answers; a form that is not valid is ``page`` again with its error
    (400), a change the rules refuse (``UserError``) ``page`` with the refusal."""

    def decorate(change: Callable[[F], Response]) -> Callable[[], Response]:
        @bp.post(rule)
        @wraps(change)
        def view() -> Response:
            form = form_class()
            if not form.validate_on_submit():
                return page(400, error=_form_error(form))
            try:
                return change(form)
            except UserError as exc:
                return page(_status(exc), error=str(exc))

        return view

    return decorate


def _roles() -> list[str]:
    return list(app_settings().rbac.roles)


def _create_form(form_class: type[FlaskForm], sent: FlaskForm | None) -> FlaskForm:
    """A list page's form to create one (a user, a service account): the one sent, shown
    again, or a new one with the default role; either offers every role."""
    if sent is None:
        sent = form_class(formdata=None, role=app_settings().rbac.default_role)
    sent.role.choices = _roles()
    return sent


@bp.get("/")
@bp.get("")  # registered first: the one url_for builds
def index() -> Response:
    return redirect(url_for(".users"))


# -- users ----------------------------------------------------------------------------------


def _users_page(
    status: int = 200,
    *,
    error: str | None = None,
    create: CreateUserForm | None = None,
) -> Response:
    return _render(
        "users.html",
        status,
        section="dashboard.users",
        error=error,
        people=admin.users().list(),
        roles=_roles(),
        create=_create_form(CreateUserForm, create),
        upload=ImportUsersForm(formdata=None),
    )


@bp.get("/users")
def users() -> Response:
    return _users_page()


@bp.post("/users")
def create_user() -> Response:
    form = CreateUserForm()
    if not form.validate_on_submit():
        return _users_page(400, error=_form_error(form), create=form)
    try:
        person, generated = admin.user_admin().create(
            (form.username.data or "").strip(),
            form.role.data or None,
            form.password.data or None,
            (form.email.data or "").strip() or None,
        )
    except UserError as exc:
        return _users_page(_status(exc), error=str(exc), create=form)
    if generated is not None:
        return _password_shown(
            201,
            f"User {person.username} created",
            f"The local user {person.username} (role {person.role}) can sign in "
            "with this password.",
            generated,
        )
    return _done(f"User {person.username} created with role {person.role}.", ".users")


@_form_post("/users/role", UserRoleForm, _users_page)
def set_role(form: UserRoleForm) -> Response:
    username, role = form.username.data, form.role.data
    person = admin.user_admin().update(username, role=role, disabled=None)
    return _done(f"The role of {person.username} is now {person.role}.", ".users")


@_form_post("/users/disabled", UserDisabledForm, _users_page)
def set_disabled(form: UserDisabledForm) -> Response:
    disabled = form.disabled.data == "true"
    person = admin.user_admin().update(form.username.data, role=None, disabled=disabled)
    state = "disabled: they can no longer sign in" if person.disabled else "enabled"
    return _done(f"User {person.username} is {state}.", ".users")


def _email_page(form: UserEmailForm, status: int = 200, *, error: str | None = None) -> Response:
    return _render(
        "user_email.html",
        status,
        section="dashboard.users",
        title=f"Email address of {form.username.data}",
        error=error,
        form=form,
    )


@bp.get("/users/email")
def edit_user_email() -> Response:
    person = _local_user(request.args.get("username", ""), "their email address comes from there")
    if isinstance(person, Response):
        return person
    form = UserEmailForm(formdata=None, username=person.username, email=person.email or "")
    return _email_page(form)


@bp.post("/users/email")
def set_user_email() -> Response:
    form = UserEmailForm()
    if not form.validate_on_submit():
        return _users_page(400, error=_form_error(form))
    address = (form.email.data or "").strip() or None
    try:
        person = admin.user_admin().update(
            form.username.data, role=None, disabled=None, email=address
        )
    except NotFound as exc:
        return _users_page(404, error=str(exc))
    except UserError as exc:
        return _email_page(form, _status(exc), error=str(exc))
    if person.email:
        return _done(f"The email address of {person.username} is now {person.email}.", ".users")
    return _done(f"User {person.username} has no email address now.", ".users")


def _password_page(
    form: ResetPasswordForm, status: int = 200, *, error: str | None = None
) -> Response:
    return _render(
        "user_password.html",
        status,
        section="dashboard.users",
        title=f"Reset the password of {form.username.data}",
        error=error,
        form=form,
    )


def _local_user(username: str, elsewhere: str) -> Person | Response:
    """The local user ``username``, or the users page saying there is none or that
    they sign in elsewhere (``elsewhere``: what that means for the change)."""
    person = admin.users().by_username(username) if username else None
    if person is None:
        return _users_page(404, error=f"no user {username!r}")
    if person.source != "local":
        return _users_page(
            400, error=f"user {person.username!r} signs in through {person.source}; {elsewhere}"
        )
    return person


def _password_target(username: str) -> Person | Response:
    """The local user whose password an admin may reset here: never oneself, whose
    own change asks for the current password (the account page)."""
    person = _local_user(username, "their password is managed there")
    if not isinstance(person, Response) and person.id == g.dashboard_person.id:
        return _users_page(
            400,
            error="Change your own password on your account page (it asks for the current one).",
        )
    return person


@bp.get("/users/password")
def edit_user_password() -> Response:
    found = _password_target(request.args.get("username", ""))
    if isinstance(found, Response):
        return found
    return _password_page(ResetPasswordForm(formdata=None, username=found.username))


@bp.post("/users/password")
def reset_user_password() -> Response:
    """The operation ``authserver users set-password`` runs: the same rules, the same
    ``password_changed`` row; the person's sessions and refresh tokens end."""
    form = ResetPasswordForm()
    if not form.validate_on_submit():
        return _users_page(400, error=_form_error(form))
    found = _password_target(form.username.data)
    if isinstance(found, Response):
        return found
    if form.how.data == "set":
        new = form.password.data or ""
        if not new:
            return _password_page(form, 400, error="Type the new password twice.")
        if new != form.confirm.data:
            return _password_page(form, 400, error="The two passwords differ; nothing was changed.")
    else:
        new = generate_password()
    try:
        admin.user_admin().change_password(found, new)
    except UserError as exc:
        return _password_page(form, _status(exc), error=str(exc).capitalize() + ".")
    ended = "their sessions and refresh tokens have ended"
    if form.how.data == "set":
        return _done(f"New password set for {found.username}; {ended}.", ".users")
    return _password_shown(
        200,
        f"New password for {found.username}",
        f"{found.username} can sign in with this password; {ended}.",
        new,
    )


def _password_shown(status: int, title: str, intro: str, password: str) -> Response:
    """A generated password, shown this once (:func:`_secret_page`)."""
    return _secret_page(
        status,
        section="dashboard.users",
        title=title,
        intro=intro,
        label="Password",
        field_id="generated-password",
        value=password,
        what="password",
        back=url_for(".users"),
        back_text="Back to users",
    )


@bp.get("/users/delete")
def confirm_delete_user() -> Response:
    username = request.args.get("username", "")
    person = admin.users().by_username(username) if username else None
    if person is None:
        return _users_page(404, error=f"no user {username!r}")
    return _render(
        "confirm.html",
        section="dashboard.users",
        title=f"Delete user {person.username}?",
        text=f"{person.username} ({person.source}, role {person.role}) is deleted with their "
        "refresh tokens and the access tokens those issued. This cannot be undone.",
        action=url_for(".delete_user"),
        fields={"username": person.username},
        button=f"Delete user {person.username}",
        back=url_for(".users"),
    )


@_form_post("/users/delete", DeleteUserForm, _users_page)
def delete_user(form: DeleteUserForm) -> Response:
    person = admin.user_admin().delete(form.username.data)
    return _done(f"User {person.username} deleted.", ".users")


@bp.post("/users/import")
def import_users() -> Response:
    """All or nothing (``UserService.import_csv``): one bad line and no user is created."""
    form = ImportUsersForm()
    if not form.validate_on_submit():
        return _users_page(400, error=_form_error(form))
    try:
        text = form.file.data.read().decode("utf-8")
    except UnicodeDecodeError:
        return _users_page(400, error="The file is not UTF-8 text; no user was imported.")
    try:
        count = admin.user_admin().import_csv(io.StringIO(text, newline=""))
    except UserError as exc:
        return _users_page(400, error=str(exc))
    return _done(f"Imported {count} user{'s' if count != 1 else ''}.", ".users")


@bp.get("/users/export.csv")
def export_users() -> Response:
    """``username,password,role`` with the password column empty: none is ever exported."""
    out = io.StringIO()
    admin.user_admin().export_csv(out)
    response = Response(out.getvalue(), mimetype="text/csv")
    response.headers["Content-Disposition"] = 'attachment; filename="users.csv"'
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


@bp.errorhandler(RequestEntityTooLarge)
def _too_large(exc: RequestEntityTooLarge) -> Response:
    limit = app_settings().max_form_bytes
    error = f"The upload is larger than {limit} bytes (max_form_bytes); nothing was changed."
    if request.endpoint == "dashboard.import_users":
        return _users_page(413, error=error)
    return message("Too large", error, 413, error=True)


# -- service accounts -----------------------------------------------------------------------


def _service_accounts_page(
    status: int = 200,
    *,
    error: str | None = None,
    create: CreateServiceAccountForm | None = None,
) -> Response:
    return _render(
        "service_accounts.html",
        status,
        section="dashboard.service_accounts",
        error=error,
        accounts=admin.service_accounts().list(),
        now=datetime.now(UTC),
        create=_create_form(CreateServiceAccountForm, create),
    )


@bp.get("/service-accounts")
def service_accounts() -> Response:
    return _service_accounts_page()


@bp.post("/service-accounts")
def create_service_account() -> Response:
    form = CreateServiceAccountForm()
    if not form.validate_on_submit():
        return _service_accounts_page(400, error=_form_error(form), create=form)
    scopes = (form.scopes.data or "").split() or None
    try:
        if form.credential.data == "key file":
            _, key_file = admin.service_account_admin().create_with_key(
                (form.name.data or "").strip(),
                form.role.data or None,
                scopes,
                SERVICE_ACCOUNT_EXPIRIES[form.expires_in.data],
                DEFAULT_KEY_ALGORITHM,
            )
            return _key_file_download(201, key_file)
        info, token = admin.service_account_admin().create(
            (form.name.data or "").strip(),
            form.role.data or None,
            scopes,
            SERVICE_ACCOUNT_EXPIRIES[form.expires_in.data],
        )
    except UserError as exc:
        return _service_accounts_page(_status(exc), error=str(exc), create=form)
    return _token_page(201, f"Service account {info.name} created", info.client_id, token)


@_form_post("/service-accounts/add-key", ServiceAccountActionForm, _service_accounts_page)
def add_service_account_key(form: ServiceAccountActionForm) -> Response:
    """One more key; its file is the answer, a download offered this once."""
    _, key_file = admin.service_account_admin().add_key(form.name.data, DEFAULT_KEY_ALGORITHM)
    return _key_file_download(201, key_file)


def _key_file_download(status: int, key_file: KeyFile) -> Response:
    """The key file as an attachment: the private key is in this answer only."""
    body = json.dumps(key_file.document(), indent=2) + "\n"
    response = Response(body, status=status, mimetype="application/json")
    filename = f"{key_file.name}-{key_file.key_id[:8]}.json"
    response.headers["Content-Disposition"] = f'attachment; filename="{filename}"'
    response.headers["Cache-Control"] = "no-store"
    return response


def _token_page(status: int, title: str, client_id: str, token: str) -> Response:
    return _secret_page(
        status,
        section="dashboard.service_accounts",
        title=title,
        intro=f"Its client id is {client_id}. A CI job trades the token for an access "
        "token with grant_type=client_credentials, sending it as HTTP Basic "
        "<client id>:<token> or alone as client_secret.",
        label="Token",
        field_id="service-account-token",
        value=token,
        what="token",
        token_url=app_settings().base_url + TOKEN_PATH,
        client_id=client_id,
        back=url_for(".service_accounts"),
        back_text="Back to service accounts",
    )


def _confirm_service_account(action: str) -> Response:
    name = request.args.get("name", "")
    try:
        info = admin.service_accounts().get(name)
    except UserError as exc:
        return _service_accounts_page(_status(exc), error=str(exc))
    if action == "rotate":
        title = f"Rotate the token of {info.name}?"
        text = "A new token is made and shown once; the current one stops working at once."
        endpoint, button = ".rotate_service_account", f"Rotate token of {info.name}"
    else:
        title = f"Revoke service account {info.name}?"
        text = (
            "The service account is deleted and its token refused from now on; access "
            "tokens already issued run out. This cannot be undone."
        )
        endpoint, button = ".revoke_service_account", f"Revoke {info.name}"
    return _render(
        "confirm.html",
        section="dashboard.service_accounts",
        title=title,
        text=text,
        action=url_for(endpoint),
        fields={"name": info.name},
        button=button,
        back=url_for(".service_accounts"),
    )


@bp.get("/service-accounts/rotate")
def confirm_rotate_service_account() -> Response:
    return _confirm_service_account("rotate")


@_form_post("/service-accounts/rotate", ServiceAccountActionForm, _service_accounts_page)
def rotate_service_account(form: ServiceAccountActionForm) -> Response:
    info, token = admin.service_account_admin().rotate(form.name.data)
    return _token_page(200, f"New token for {info.name}", info.client_id, token)


@bp.get("/service-accounts/revoke")
def confirm_revoke_service_account() -> Response:
    return _confirm_service_account("revoke")


@_form_post("/service-accounts/revoke", ServiceAccountActionForm, _service_accounts_page)
def revoke_service_account(form: ServiceAccountActionForm) -> Response:
    info = admin.service_account_admin().revoke(form.name.data)
    return _done(
        f"Service account {info.name} revoked: its token no longer works.", ".service_accounts"
    )


def _secret_page(status: int, **context: Any) -> Response:
    """A secret, shown once; the copy button's script runs by nonce, nothing else may."""
    nonce = secrets.token_urlsafe(18)
    response = _render("secret.html", status, nonce=nonce, **context)
    response.headers["Content-Security-Policy"] += f"; script-src 'nonce-{nonce}'"
    return response


# -- clients, keys, audit log ---------------------------------------------------------------


@bp.get("/clients")
def clients() -> Response:
    return _render(
        "clients.html",
        section="dashboard.clients",
        clients=[admin.client_json(client) for client in admin.static_clients()],
    )


def _keys_page(status: int = 200, *, error: str | None = None) -> Response:
    return _render(
        "keys.html",
        status,
        section="dashboard.keys",
        error=error,
        keys=admin.keys_json(),
        algorithm=app_settings().signing.algorithm,
        # create_app gives ID tokens an RS256 key line of their own for other algorithms.
        id_token_keys=len(services().key_lines) > 1,
    )


@bp.get("/keys")
def keys() -> Response:
    return _keys_page()


@bp.post("/keys/rotate")
def rotate_keys() -> Response:
    form = RotateKeysForm()
    if not form.validate_on_submit():
        return _keys_page(400, error=_form_error(form))
    if form.rotate_now.data:
        immediate = True
    elif form.rotate_publish.data:
        immediate = False
    else:
        return _keys_page(400, error="Choose “Rotate now” or “Rotate (publish first)”.")
    kids = [record.kid for record in admin.key_admin().rotate(immediate)]
    how = "signing from now" if immediate else "published now, signing after the publish delay"
    return _done(f"New key{'s' if len(kids) > 1 else ''} {', '.join(kids)}: {how}.", ".keys")


@bp.get("/audit")
def audit() -> Response:
    """Newest first, ``limit`` a page; "Older" is the page ``before`` the last id shown."""
    event = request.args.get("event", "").strip()
    try:
        before = _int_arg("before", None, 1, 2**63 - 1)
        limit = _int_arg("limit", AUDIT_PAGE, 1, AUDIT_PAGE_MAX) or AUDIT_PAGE
        if len(event) > 64:
            raise ValueError("the event filter is at most 64 characters")
    except ValueError as exc:
        return _render("audit.html", 400, section="dashboard.audit", error=str(exc), **_no_events())
    items = admin.audit_log().page(before=before, limit=limit, event=event or None)
    older = None
    if len(items) == limit:
        query: dict[str, Any] = {"before": items[-1].id}
        if limit != AUDIT_PAGE:
            query["limit"] = limit
        if event:
            query["event"] = event
        older = url_for(".audit", **query)
    return _render(
        "audit.html",
        section="dashboard.audit",
        items=items,
        names=audit_names(items, admin.users().usernames, admin.service_accounts().names),
        event=event,
        events=sorted(AUDITED | ({event} if event else set())),
        detail=_detail,
        older=older,
        newest=url_for(".audit", event=event) if event else url_for(".audit"),
        paged=before is not None,
    )


def _no_events() -> dict[str, Any]:
    return {
        "items": [],
        "names": {},
        "event": "",
        "events": sorted(AUDITED),
        "detail": _detail,
        "older": None,
        "newest": url_for(".audit"),
        "paged": False,
    }


def _detail(value: Any) -> str:
    """One value of an event's details, as a person reads it."""
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, str | int | float):
        return str(value)
    if isinstance(value, list) and all(isinstance(v, str | int | float) for v in value):
        return ", ".join(map(str, value))
    return json.dumps(value)


def _int_arg(name: str, default: int | None, low: int, high: int) -> int | None:
    raw = request.args.get(name, "")
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"{name!r} must be a whole number") from None
    if not low <= value <= high:
        raise ValueError(f"{name!r} must be from {low} to {high}")
    return value


@bp.get("/<path:rest>")
def unknown(rest: str) -> Response:
    del rest
    return message("Not found", "There is no such dashboard page.", 404, error=True)
