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

Each view is declared by one ``@operation``: its route, the roles it needs, its request
body and query and its reply as models of :mod:`.admin_models`, and its words. The
decorator enforces them and the OpenAPI document (:mod:`.openapi`) is built from them,
so the two cannot differ. Bad input is refused before the view runs, in the words
:func:`.admin_models.describe` gives it, and changes nothing.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar
from urllib.parse import urlencode

from flask import Blueprint, Response, g, request
from pydantic import MISSING, BaseModel, ValidationError

from ..admin.users import CurrentPasswordRefused, LastAdmin, TooManyWrongPasswords, UserAdmin
from ..identity.service_accounts import ServiceAccountInfo
from ..identity.users import AlreadyExists, NotFound, Person, UserError
from ..key_file import KeyFile
from ..oauth.metadata import admin_api_audience
from ..paths import ADMIN_API_PATH
from . import admin
from .adapter import app_settings
from .admin_models import (
    AuditEventPage,
    AuditEventQuery,
    ClientList,
    KeyList,
    KeyRotation,
    KeysRotated,
    Me,
    NewPassword,
    NewServiceAccount,
    NewServiceAccountKey,
    NewUser,
    OpenApiDocument,
    RoleList,
    ServiceAccount,
    ServiceAccountKeyFile,
    ServiceAccountKeyList,
    ServiceAccountList,
    ServiceAccountToken,
    User,
    UserChanges,
    UserCreated,
    UserList,
    describe,
)
from .admin_models import Client as ClientShape
from .audit import set_actor
from .bearer import BearerRefused, Caller, bearer_caller, bearer_token
from .openapi import NO_CONTENT, Operation, Reply, build_document
from .services import services
from .signin import client_address

bp = Blueprint("admin_api", __name__, url_prefix=ADMIN_API_PATH)

#: What a view returns: the JSON body of its reply, or None for a reply with no body.
ReplyBody = dict[str, Any] | None
View = Callable[..., ReplyBody]
T = TypeVar("T")

ADMIN = ("admin",)
READERS = ("admin", "user")
#: Every operation, in the order of the views below (``@operation`` adds each): what the
#: OpenAPI document describes.
OPERATIONS: list[Operation] = []


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


@bp.errorhandler(LastAdmin)
def _last_admin(exc: LastAdmin) -> Response:
    """The change conflicts with the state of the server (RFC 9110 §15.5.10): it would
    leave no enabled admin."""
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


def _json_object() -> dict[str, Any]:
    """The request's JSON object, whatever its fields."""
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
    return data


def _valid(model: type[BaseModel], data: dict[str, Any]) -> Any:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ApiError(400, "invalid_request", describe(exc, data)) from None


def _body(model: type[BaseModel], required: bool) -> Any:
    """The request body as ``model``; an optional body may be left out altogether."""
    if not required and not request.content_length:
        return model()
    return _valid(model, _json_object())


def _query(model: type[BaseModel]) -> Any:
    """The query as ``model``: the first value of each parameter it names, an empty one
    as if left out."""
    data = {name: value for name in model.model_fields if (value := request.args.get(name))}
    return _valid(model, data)


def _reply(reply: Reply, body: ReplyBody) -> Response:
    """``body`` as the reply says; a shape it does not declare is our bug (a 500)."""
    if not reply.models:
        return Response(status=reply.status)
    errors: list[ValidationError] = []
    for model in reply.models:
        try:
            model.model_validate(body)
        except ValidationError as exc:
            errors.append(exc)
        else:
            return _json(body, reply.status)
    raise errors[0]


def operation(
    method: str,
    rule: str,
    *,
    roles: tuple[str, ...] | None,
    summary: str,
    tag: str,
    reply: Reply,
    description: str = "",
    body: type[BaseModel] | None = None,
    body_required: bool = True,
    query: type[BaseModel] | None = None,
    errors: tuple[int, ...] = (),
    operation_id: str | None = None,
) -> Callable[[View], Callable[..., Response]]:
    """Route ``method rule`` to the view and document it (:mod:`.openapi`), enforcing
    what the document says: a token of one of ``roles`` (``None``: no token; the caller
    is ``g.api_caller``), the ``body`` (passed as ``body=``) and ``query`` (``query=``)
    as their models, the reply as ``reply``'s model."""

    def decorate(view: View) -> Callable[..., Response]:
        name = view.__name__
        spec = Operation(
            method=method,
            rule=rule,
            operation_id=operation_id or _camel_case(name),
            summary=summary,
            description=description,
            tag=tag,
            roles=None if roles is None else frozenset(roles),
            reply=reply,
            body=body,
            body_required=body_required,
            query=query,
            errors=errors,
        )

        @wraps(view)
        def wrapper(**kwargs: Any) -> Response:
            if spec.roles is not None:
                caller = _caller()
                if not _allowed(caller, spec.roles):
                    names = " or ".join(sorted(spec.roles))
                    raise ApiError(403, "insufficient_scope", f"This needs the {names} role.")
                g.api_caller = caller
            if spec.body is not None:
                kwargs["body"] = _body(spec.body, spec.body_required)
            if spec.query is not None:
                kwargs["query"] = _query(spec.query)
            return _reply(spec.reply, view(**kwargs))

        OPERATIONS.append(spec)
        bp.add_url_rule(rule, endpoint=name, view_func=wrapper, methods=[method])
        return wrapper

    return decorate


def _camel_case(name: str) -> str:
    first, *rest = name.split("_")
    return first + "".join(word.title() for word in rest)


def _given(value: T | MISSING) -> T | None:
    """A field's value, or None when the request left it out."""
    return None if value is MISSING else value


def openapi_document(base_url: str) -> dict[str, Any]:
    """The OpenAPI document of the operations below, served at ``/api/v1/openapi.json``."""
    return build_document(tuple(OPERATIONS), base_url)


# -- the document ---------------------------------------------------------------------------


@operation(
    "GET",
    "/openapi.json",
    roles=None,
    summary="This document",
    tag="meta",
    reply=Reply(200, "The OpenAPI 3.1 document.", OpenApiDocument),
    operation_id="getOpenApiDocument",
)
def openapi() -> ReplyBody:
    return openapi_document(app_settings().base_url)


# -- me, users, roles -------------------------------------------------------------------


@operation(
    "GET",
    "/me",
    roles=READERS,
    summary="Who the token is for",
    tag="users",
    reply=Reply(200, "The caller.", Me),
    operation_id="getMe",
)
def me() -> ReplyBody:
    caller: Caller = g.api_caller
    body: dict[str, Any] = {"name": caller.name, "roles": list(caller.roles), "user": None}
    if caller.person is not None:
        body["user"] = admin.user_json(caller.person)
    return body


@operation(
    "GET",
    "/users",
    roles=READERS,
    summary="List every person, by username",
    tag="users",
    reply=Reply(200, "Every person.", UserList),
)
def list_users() -> ReplyBody:
    return {"items": [admin.user_json(p) for p in admin.users().list()]}


@operation(
    "POST",
    "/users",
    roles=ADMIN,
    summary="Create a local user",
    description="Without `password`, one is generated and returned once.",
    tag="users",
    body=NewUser,
    reply=Reply(201, "Created.", UserCreated),
    errors=(409,),
)
def create_user(body: NewUser) -> ReplyBody:
    person, generated = admin.user_admin().create(
        body.username, _given(body.role), _given(body.password), _given(body.email)
    )
    return {"user": admin.user_json(person), "password": generated}


@operation(
    "GET",
    "/users/<username>",
    roles=READERS,
    summary="One person",
    tag="users",
    reply=Reply(200, "The person.", User),
)
def get_user(username: str) -> ReplyBody:
    return admin.user_json(admin.user_admin().get(username))


@operation(
    "PATCH",
    "/users/<username>",
    roles=ADMIN,
    summary="Change a person's role or email address, or disable or enable them",
    description="A field left out is left as it is. A disabled person cannot sign in, and "
    "their tokens no longer work here. Only a local user's email address is set here "
    "(others' come from where they sign in: 400); one that another user has is 409, and "
    "nothing changes. An admin cannot take the admin role from, or disable, themself here "
    "(400); nobody can from the last enabled admin (409 `conflict`): make another admin "
    "first.",
    tag="users",
    body=UserChanges,
    reply=Reply(200, "The person, changed.", User),
    errors=(409,),
)
def update_user(username: str, body: UserChanges) -> ReplyBody:
    person = admin.user_admin().update(
        username,
        role=_given(body.role),
        disabled=_given(body.disabled),
        email=admin.KEEP if body.email is MISSING else body.email,
    )
    return admin.user_json(person)


@operation(
    "DELETE",
    "/users/<username>",
    roles=ADMIN,
    summary="Delete a person, their refresh tokens and the access tokens those issued",
    description="An admin cannot delete themself here (400): another admin or "
    "`authserver users delete` can. Nobody can delete the last enabled admin (409 "
    "`conflict`): make another admin first.",
    tag="users",
    reply=NO_CONTENT,
    errors=(400, 409),
)
def delete_user(username: str) -> ReplyBody:
    admin.user_admin().delete(username)
    return None


@operation(
    "PUT",
    "/users/<username>/password",
    roles=READERS,
    summary="Set a local user's password",
    description="An admin sets anyone's; everyone else only their own, with "
    "`current_password` (a wrong one counts against the account's sign-in limit). "
    "A person who signs in upstream or through the auth proxy has no password here "
    "(400). Their refresh tokens, and the access tokens those issued, are revoked.",
    tag="users",
    body=NewPassword,
    reply=NO_CONTENT,
    errors=(429,),
    operation_id="setUserPassword",
)
def set_password(username: str, body: NewPassword) -> ReplyBody:
    """Admins set anyone's (local) password; everyone may set their own, giving the
    current one (a stolen access token must not become the account)."""
    caller: Caller = g.api_caller
    users = admin.user_admin()
    person = users.users.by_username(username)
    is_self = caller.person is not None and person is not None and person.id == caller.person.id
    if not is_self and not _allowed(caller, frozenset({admin.ADMIN_ROLE})):
        raise ApiError(403, "insufficient_scope", "Only an admin may set another's password.")
    if person is None:
        raise NotFound(f"no user {username!r}")
    if is_self:
        _check_current_password(users, person, _given(body.current_password))
    users.change_password(person, body.password)
    return None


def _check_current_password(users: UserAdmin, person: Person, current: str | None) -> None:
    """The admin layer's rule for one's own password, as API errors."""
    try:
        users.check_current_password(person, current, services().login_throttle, client_address())
    except TooManyWrongPasswords as exc:
        raise ApiError(429, "invalid_request", str(exc)) from None
    except CurrentPasswordRefused as exc:
        raise ApiError(400, "invalid_request", str(exc)) from None


@operation(
    "GET",
    "/roles",
    roles=READERS,
    summary="The roles of `rbac.roles`",
    tag="users",
    reply=Reply(200, "Every role.", RoleList),
)
def list_roles() -> ReplyBody:
    return {"items": admin.roles_json()}


# -- service accounts ------------------------------------------------------------------------


@operation(
    "GET",
    "/service-accounts",
    roles=ADMIN,
    summary="List the service accounts",
    tag="service-accounts",
    reply=Reply(200, "Every service account.", ServiceAccountList),
)
def list_service_accounts() -> ReplyBody:
    return {"items": [sa.as_dict() for sa in admin.service_accounts().list()]}


@operation(
    "POST",
    "/service-accounts",
    roles=ADMIN,
    summary="Create a service account; its token is shown once",
    tag="service-accounts",
    body=NewServiceAccount,
    reply=Reply(
        201,
        "Created: its token, or with `key_algorithm` its key file.",
        (ServiceAccountToken, ServiceAccountKeyFile),
    ),
    errors=(409,),
)
def create_service_account(body: NewServiceAccount) -> ReplyBody:
    expires_in = body.expires_in
    scopes = _given(body.scopes)
    accounts = admin.service_account_admin()
    if body.key_algorithm is not MISSING:
        info, key_file = accounts.create_with_key(
            body.name, _given(body.role), scopes, expires_in, body.key_algorithm
        )
        return _with_key_file(info, key_file)
    info, token = accounts.create(body.name, _given(body.role), scopes, expires_in)
    return _with_token(info, token)


def _with_token(info: ServiceAccountInfo, token: str) -> ReplyBody:
    """A ``ServiceAccountToken``: the account and its token, shown this once."""
    return {"service_account": info.as_dict(), "token": token}


def _with_key_file(info: ServiceAccountInfo, key_file: KeyFile) -> ReplyBody:
    """A ``ServiceAccountKeyFile``: the account and a new key file, shown this once."""
    return {"service_account": info.as_dict(), "key_file": key_file.document()}


@operation(
    "GET",
    "/service-accounts/<name>",
    roles=ADMIN,
    summary="One service account",
    tag="service-accounts",
    reply=Reply(200, "The service account.", ServiceAccount),
)
def get_service_account(name: str) -> ReplyBody:
    return admin.service_accounts().get(name).as_dict()


@operation(
    "POST",
    "/service-accounts/<name>/rotate",
    roles=ADMIN,
    summary="A new token for a service account; the old one stops working",
    description="The expiry is kept. No request body.",
    tag="service-accounts",
    reply=Reply(200, "The new token.", ServiceAccountToken),
    errors=(400,),
)
def rotate_service_account(name: str) -> ReplyBody:
    info, token = admin.service_account_admin().rotate(name)
    return _with_token(info, token)


@operation(
    "GET",
    "/service-accounts/<name>/keys",
    roles=ADMIN,
    summary="The keys of a service account (public halves only)",
    tag="service-accounts",
    reply=Reply(200, "Its keys, oldest first.", ServiceAccountKeyList),
)
def list_service_account_keys(name: str) -> ReplyBody:
    return {"items": [key.as_dict() for key in admin.service_accounts().keys(name)]}


@operation(
    "POST",
    "/service-accounts/<name>/keys",
    roles=ADMIN,
    summary="One more key for a service account; its key file is shown once",
    description="Its other keys keep working until removed, so a key can be rolled over "
    "without downtime. The body is optional.",
    tag="service-accounts",
    body=NewServiceAccountKey,
    body_required=False,
    reply=Reply(201, "The new key file.", ServiceAccountKeyFile),
)
def add_service_account_key(name: str, body: NewServiceAccountKey) -> ReplyBody:
    info, key_file = admin.service_account_admin().add_key(name, body.algorithm)
    return _with_key_file(info, key_file)


@operation(
    "DELETE",
    "/service-accounts/<name>/keys/<kid>",
    roles=ADMIN,
    summary="Remove a key of a service account: its key file stops working",
    description="Access tokens it minted run out, but no longer work on this API.",
    tag="service-accounts",
    reply=NO_CONTENT,
)
def remove_service_account_key(name: str, kid: str) -> ReplyBody:
    admin.service_account_admin().remove_key(name, kid)
    return None


@operation(
    "DELETE",
    "/service-accounts/<name>",
    roles=ADMIN,
    summary="Delete (revoke) a service account: its token is refused from now on",
    description="Access tokens already issued run out, but no longer work on this API.",
    tag="service-accounts",
    reply=NO_CONTENT,
)
def revoke_service_account(name: str) -> ReplyBody:
    admin.service_account_admin().revoke(name)
    return None


# -- clients, keys, audit events ------------------------------------------------------------


@operation(
    "GET",
    "/clients",
    roles=ADMIN,
    summary="The static clients of the config file",
    description="Service accounts are listed apart.",
    tag="clients",
    reply=Reply(200, "Every static client.", ClientList),
)
def list_clients() -> ReplyBody:
    return {"items": [admin.client_json(c) for c in admin.static_clients()]}


@operation(
    "GET",
    "/clients/<client_id>",
    roles=ADMIN,
    summary="One static client",
    tag="clients",
    reply=Reply(200, "The client.", ClientShape),
)
def get_client(client_id: str) -> ReplyBody:
    for client in admin.static_clients():
        if client.client_id == client_id:
            return admin.client_json(client)
    raise NotFound(f"no client {client_id!r} in the config (service accounts are listed apart)")


@operation(
    "GET",
    "/keys",
    roles=ADMIN,
    summary="The signing keys of both lines, newest first",
    tag="keys",
    reply=Reply(200, "Every key.", KeyList),
)
def list_keys() -> ReplyBody:
    return {"items": admin.keys_json()}


@operation(
    "POST",
    "/keys/rotate",
    roles=ADMIN,
    summary="Rotate both key lines",
    description="A new key is published before it signs, unless `immediate`. The body is optional.",
    tag="keys",
    body=KeyRotation,
    body_required=False,
    reply=Reply(201, "Rotated.", KeysRotated),
)
def rotate_keys(body: KeyRotation) -> ReplyBody:
    records = admin.key_admin().rotate(body.immediate)
    kids = [record.kid for record in records]
    return {"created": kids, "items": admin.keys_json()}


@operation(
    "GET",
    "/audit-events",
    roles=ADMIN,
    summary="Audit events, newest first, a page at a time",
    description="Follow `next` for older events.",
    tag="audit",
    query=AuditEventQuery,
    reply=Reply(200, "A page.", AuditEventPage),
)
def list_audit_events(query: AuditEventQuery) -> ReplyBody:
    """Newest first; ``next`` is the URL of the following (older) page, or null."""
    limit, before, event = query.limit, _given(query.before), _given(query.event)
    items = admin.audit_log().page(before=before, limit=limit, event=event)
    next_url = None
    if len(items) == limit:
        query_string = {"before": items[-1].id, "limit": limit} | (
            {"event": event} if event else {}
        )
        next_url = f"{app_settings().base_url}{request.path}?{urlencode(query_string)}"
    return {"items": [e.as_dict() for e in items], "next": next_url}
