"""The admin API: JSON under ``/api/v1/`` (DESIGN.md "Admin API"), OpenAPI 3.1 at
``/api/v1/openapi.json``.

Authorised by our own access tokens (RFC 6750 §2.1 Bearer header) whose ``aud`` is the
API's own URL, ``<issuer>/api/v1`` (RFC 9068 §4: a token for another resource, the
default audience included, is refused here; ask for this one with ``resource`` or
``audience``). The ``admin`` role may do everything; ``user`` may read users and roles
and change their own password (local users, with the current one). A person's role is
read from the database on each call, so a demoted or disabled admin loses access at
once; a service account's token must come from its current secret (not one rotated
away) and the account must exist and not have expired. Errors are ``{"error",
"error_description"}``; 401 and 403 carry ``WWW-Authenticate: Bearer`` (RFC 6750 §3).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar, cast
from urllib.parse import urlencode

from flask import Blueprint, Response, current_app, g, request

from ..admin.users import CurrentPasswordRefused, TooManyWrongPasswords, UserAdmin
from ..identity.service_accounts import DEFAULT_EXPIRY_SECONDS
from ..identity.users import AlreadyExists, NotFound, Person, UserError
from ..key_file import DEFAULT_KEY_ALGORITHM
from ..oauth.metadata import admin_api_audience
from ..oauth.throttle import FailureThrottle
from . import admin
from .adapter import app_settings
from .audit import set_actor
from .bearer import BearerRefused, Caller, bearer_caller, bearer_token
from .openapi import DEFAULT_PAGE, MAX_PAGE, openapi_document
from .signin import client_address

bp = Blueprint("admin_api", __name__, url_prefix="/api/v1")

F = TypeVar("F", bound=Callable[..., Response])


class ApiError(Exception):
    def __init__(self, status: int, error: str, description: str) -> None:
        super().__init__(description)
        self.status, self.error, self.description = status, error, description


def _json(body: Any, status: int = 200) -> Response:
    response = Response(json.dumps(body), status=status, mimetype="application/json")
    response.headers["Cache-Control"] = "no-store"
    return response


def _error(status: int, error: str, description: str) -> Response:
    response = _json({"error": error, "error_description": description}, status)
    if status in (401, 403):
        # RFC 6750 §3; a request with no token at all gets no error code (§3.1).
        challenge = 'Bearer realm="authserver"'
        if error in ("invalid_token", "insufficient_scope"):
            challenge += f', error="{error}", error_description="{description}"'
        response.headers["WWW-Authenticate"] = challenge
    return response


@bp.errorhandler(ApiError)
def _api_error(exc: ApiError) -> Response:
    return _error(exc.status, exc.error, exc.description)


@bp.errorhandler(NotFound)
def _not_found(exc: NotFound) -> Response:
    return _error(404, "not_found", str(exc))


@bp.errorhandler(AlreadyExists)
def _conflict(exc: AlreadyExists) -> Response:
    return _error(409, "conflict", str(exc))


@bp.errorhandler(UserError)
def _bad_request(exc: UserError) -> Response:
    return _error(400, "invalid_request", str(exc))


def _caller() -> Caller:
    token = bearer_token(request.headers.get("Authorization", ""))
    if token is None:
        raise ApiError(401, "unauthorized", "An access token is required (Authorization: Bearer).")
    try:
        caller = bearer_caller(token, [admin_api_audience(app_settings().issuer)])
    except BearerRefused as exc:
        raise ApiError(401, exc.error, str(exc)) from exc
    set_actor(caller.name, caller.person.id if caller.person is not None else None)
    return caller


def _allowed(caller: Caller, roles: frozenset[str]) -> bool:
    return any(role in roles for role in caller.roles)


def requires(*roles: str) -> Callable[[F], F]:
    """The endpoint needs a token of one of ``roles``; the caller is ``g.api_caller``."""
    needed = frozenset(roles)

    def decorate(view: F) -> F:
        @wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Response:
            caller = _caller()
            if not _allowed(caller, needed):
                names = " or ".join(sorted(needed))
                raise ApiError(403, "insufficient_scope", f"This needs the {names} role.")
            g.api_caller = caller
            return view(*args, **kwargs)

        return cast(F, wrapper)

    return decorate


def _body(allowed: dict[str, tuple[type, ...]], required: tuple[str, ...] = ()) -> dict[str, Any]:
    """The JSON object of the request, its fields checked against ``allowed`` types."""
    if not request.is_json:
        raise ApiError(415, "invalid_request", "The body must be JSON (application/json).")
    try:
        data = request.get_json(silent=True)
    except RecursionError:
        raise ApiError(400, "invalid_request", "The body is nested too deeply.") from None
    if not isinstance(data, dict):
        raise ApiError(400, "invalid_request", "The body must be a JSON object.")
    try:
        # JSON may escape lone surrogates ("\ud800"); no text of ours can hold one.
        json.dumps(data, ensure_ascii=False).encode()
    except UnicodeEncodeError:
        raise ApiError(400, "invalid_request", "The body has text that is not Unicode.") from None
    for key, value in data.items():
        if key not in allowed:
            raise ApiError(400, "invalid_request", f"Unknown field '{key[:64]}'.")
        types = allowed[key]
        # bool is an int to Python; JSON keeps them apart.
        if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
            raise ApiError(400, "invalid_request", f"The field '{key}' has the wrong type.")
    for key in required:
        if data.get(key) is None:
            raise ApiError(400, "invalid_request", f"The field '{key}' is required.")
    return data


def _string_list(value: Any, field: str) -> list[str] | None:
    if value is None:
        return None
    if not all(isinstance(item, str) for item in value):
        raise ApiError(400, "invalid_request", f"The field '{field}' must be a list of strings.")
    return list(value)


# -- the document ---------------------------------------------------------------------------


@bp.get("/openapi.json")
def openapi() -> Response:
    return _json(openapi_document(app_settings().base_url))


# -- me, users, roles -------------------------------------------------------------------


@bp.get("/me")
@requires("admin", "user")
def me() -> Response:
    caller: Caller = g.api_caller
    body: dict[str, Any] = {"name": caller.name, "roles": list(caller.roles), "user": None}
    if caller.person is not None:
        body["user"] = admin.user_json(caller.person)
    return _json(body)


@bp.get("/users")
@requires("admin", "user")
def list_users() -> Response:
    return _json({"items": [admin.user_json(p) for p in admin.users().list()]})


@bp.post("/users")
@requires("admin")
def create_user() -> Response:
    data = _body(
        {"username": (str,), "role": (str,), "password": (str,), "email": (str,)},
        required=("username",),
    )
    person, generated = admin.user_admin().create(
        data["username"], data.get("role"), data.get("password"), data.get("email")
    )
    return _json({"user": admin.user_json(person), "password": generated}, 201)


@bp.get("/users/<username>")
@requires("admin", "user")
def get_user(username: str) -> Response:
    return _json(admin.user_json(admin.user_admin().get(username)))


@bp.patch("/users/<username>")
@requires("admin")
def update_user(username: str) -> Response:
    data = _body({"role": (str,), "disabled": (bool,), "email": (str, type(None))})
    person = admin.user_admin().update(
        username,
        role=data.get("role"),
        disabled=data.get("disabled"),
        email=data.get("email", admin.KEEP),
    )
    return _json(admin.user_json(person))


@bp.delete("/users/<username>")
@requires("admin")
def delete_user(username: str) -> Response:
    admin.user_admin().delete(username)
    return Response(status=204)


@bp.put("/users/<username>/password")
@requires("admin", "user")
def set_password(username: str) -> Response:
    """Admins set anyone's (local) password; everyone may set their own, giving the
    current one (a stolen access token must not become the account)."""
    caller: Caller = g.api_caller
    data = _body({"password": (str,), "current_password": (str,)}, required=("password",))
    users = admin.user_admin()
    person = users.users.by_username(username)
    is_self = caller.person is not None and person is not None and person.id == caller.person.id
    if not is_self and not _allowed(caller, frozenset({admin.ADMIN_ROLE})):
        raise ApiError(403, "insufficient_scope", "Only an admin may set another's password.")
    if person is None:
        raise NotFound(f"no user {username!r}")
    if is_self:
        _check_current_password(users, person, data.get("current_password"))
    users.change_password(person, data["password"])
    return Response(status=204)


def _check_current_password(users: UserAdmin, person: Person, current: str | None) -> None:
    """The admin layer's rule for one's own password, as API errors."""
    throttle: FailureThrottle = current_app.extensions["authserver.login_throttle"]
    try:
        users.check_current_password(person, current, throttle, client_address())
    except TooManyWrongPasswords as exc:
        raise ApiError(429, "invalid_request", str(exc)) from None
    except CurrentPasswordRefused as exc:
        raise ApiError(400, "invalid_request", str(exc)) from None


@bp.get("/roles")
@requires("admin", "user")
def list_roles() -> Response:
    return _json({"items": admin.roles_json()})


# -- service accounts ------------------------------------------------------------------------


@bp.get("/service-accounts")
@requires("admin")
def list_service_accounts() -> Response:
    return _json({"items": [sa.as_dict() for sa in admin.service_accounts().list()]})


@bp.post("/service-accounts")
@requires("admin")
def create_service_account() -> Response:
    data = _body(
        {
            "name": (str,),
            "role": (str,),
            "scopes": (list,),
            "expires_in": (int, type(None)),
            "key_algorithm": (str,),
        },
        required=("name",),
    )
    expires_in = data.get("expires_in", DEFAULT_EXPIRY_SECONDS)
    scopes = _string_list(data.get("scopes"), "scopes")
    accounts = admin.service_account_admin()
    if "key_algorithm" in data:
        info, key_file = accounts.create_with_key(
            data["name"], data.get("role"), scopes, expires_in, data["key_algorithm"]
        )
        return _json({"service_account": info.as_dict(), "key_file": key_file.document()}, 201)
    info, token = accounts.create(data["name"], data.get("role"), scopes, expires_in)
    return _json({"service_account": info.as_dict(), "token": token}, 201)


@bp.get("/service-accounts/<name>")
@requires("admin")
def get_service_account(name: str) -> Response:
    return _json(admin.service_accounts().get(name).as_dict())


@bp.post("/service-accounts/<name>/rotate")
@requires("admin")
def rotate_service_account(name: str) -> Response:
    info, token = admin.service_account_admin().rotate(name)
    return _json({"service_account": info.as_dict(), "token": token})


@bp.get("/service-accounts/<name>/keys")
@requires("admin")
def list_service_account_keys(name: str) -> Response:
    return _json({"items": [key.as_dict() for key in admin.service_accounts().keys(name)]})


@bp.post("/service-accounts/<name>/keys")
@requires("admin")
def add_service_account_key(name: str) -> Response:
    data = _body({"algorithm": (str,)}) if request.content_length else {}
    info, key_file = admin.service_account_admin().add_key(
        name, data.get("algorithm", DEFAULT_KEY_ALGORITHM)
    )
    return _json({"service_account": info.as_dict(), "key_file": key_file.document()}, 201)


@bp.delete("/service-accounts/<name>/keys/<kid>")
@requires("admin")
def remove_service_account_key(name: str, kid: str) -> Response:
    admin.service_account_admin().remove_key(name, kid)
    return Response(status=204)


@bp.delete("/service-accounts/<name>")
@requires("admin")
def revoke_service_account(name: str) -> Response:
    admin.service_account_admin().revoke(name)
    return Response(status=204)


# -- clients, keys, audit events ------------------------------------------------------------


@bp.get("/clients")
@requires("admin")
def list_clients() -> Response:
    return _json({"items": [admin.client_json(c) for c in admin.static_clients()]})


@bp.get("/clients/<client_id>")
@requires("admin")
def get_client(client_id: str) -> Response:
    for client in admin.static_clients():
        if client.client_id == client_id:
            return _json(admin.client_json(client))
    raise NotFound(f"no client {client_id!r} in the config (service accounts are listed apart)")


@bp.get("/keys")
@requires("admin")
def list_keys() -> Response:
    return _json({"items": admin.keys_json()})


@bp.post("/keys/rotate")
@requires("admin")
def rotate_keys() -> Response:
    data = _body({"immediate": (bool,)}) if request.content_length else {}
    records = admin.key_admin().rotate(bool(data.get("immediate", False)))
    kids = [record.kid for record in records]
    return _json({"created": kids, "items": admin.keys_json()}, 201)


@bp.get("/audit-events")
@requires("admin")
def list_audit_events() -> Response:
    """Newest first; ``next`` is the URL of the following (older) page, or null."""
    limit = _int_arg("limit", DEFAULT_PAGE, 1, MAX_PAGE) or DEFAULT_PAGE
    before = _int_arg("before", None, 1, 2**63 - 1)
    event = request.args.get("event") or None
    if event is not None and len(event) > 64:
        raise ApiError(400, "invalid_request", "The event filter is at most 64 characters.")
    if event is not None and not event.isprintable():
        raise ApiError(400, "invalid_request", "The event filter has control characters.")
    items = admin.audit_log().page(before=before, limit=limit, event=event)
    next_url = None
    if len(items) == limit:
        query = {"before": items[-1].id, "limit": limit} | ({"event": event} if event else {})
        next_url = f"{app_settings().base_url}{request.path}?{urlencode(query)}"
    return _json({"items": [e.as_dict() for e in items], "next": next_url})


def _int_arg(name: str, default: int | None, low: int, high: int) -> int | None:
    raw = request.args.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ApiError(400, "invalid_request", f"'{name}' must be an integer.") from None
    if not low <= value <= high:
        raise ApiError(400, "invalid_request", f"'{name}' must be from {low} to {high}.")
    return value
