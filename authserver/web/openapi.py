"""The OpenAPI 3.1 document of the admin API (``GET /api/v1/openapi.json``), generated.

Its schemas are the pydantic models of :mod:`.admin_models` (``models_json_schema``);
its paths are the admin API's operations, each declared by the ``@operation`` of its
view, which also enforces what is documented (the roles, the request body and query,
the response's shape). Written by hand are only what no model holds: the error
responses, the security scheme and the path parameters' words. It is built once; only
``servers`` depends on the configured issuer. ``tests/test_admin_api_schema.py`` checks
it against the API both ways.
"""

from __future__ import annotations

import copy
import functools
import re
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from ..paths import ADMIN_API_PATH
from .admin_models import Error, SchemaGenerator

REF_TEMPLATE = "#/components/schemas/{model}"


@dataclass(frozen=True)
class Reply:
    """An operation's success: its status, what it says, and the model (or the models,
    one of which) of its JSON body; no model: no body."""

    status: int
    description: str
    shape: type[BaseModel] | tuple[type[BaseModel], ...] | None = None

    @property
    def models(self) -> tuple[type[BaseModel], ...]:
        if self.shape is None:
            return ()
        return self.shape if isinstance(self.shape, tuple) else (self.shape,)


NO_CONTENT = Reply(204, "Done; no body.")


@dataclass(frozen=True)
class Operation:
    """One operation of the API as its ``@operation`` declares it. The error responses
    follow from the rest: 401 and 403 for any role check, 400, 413 and 415 for a
    request body, 400 for a query, 404 for a path with a parameter; ``errors`` adds
    the operation's own (409 for a taken name, ...)."""

    method: str
    rule: str  # Flask's, under /api/v1: ``/users/<username>``
    operation_id: str
    summary: str
    description: str
    tag: str
    roles: frozenset[str] | None  # None: no token needed
    reply: Reply
    body: type[BaseModel] | None = None
    body_required: bool = True
    query: type[BaseModel] | None = None
    errors: tuple[int, ...] = ()

    @property
    def path(self) -> str:
        """The OpenAPI path template: ``/users/{username}``."""
        return re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", self.rule)

    @property
    def error_statuses(self) -> list[int]:
        statuses = set(self.errors)
        if self.roles is not None:
            statuses |= {401, 403}
        if self.body is not None:
            statuses |= {400, 413, 415}
        if self.query is not None:
            statuses.add(400)
        if "{" in self.path:
            statuses.add(404)
        return sorted(statuses, key=lambda status: (status not in (401, 403), status))

    @property
    def models(self) -> tuple[type[BaseModel], ...]:
        return (*((self.body,) if self.body else ()), *self.reply.models)


_ERROR_RESPONSES = {
    400: "BadRequest",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    409: "Conflict",
    413: "PayloadTooLarge",
    415: "UnsupportedMediaType",
    429: "TooManyRequests",
}

_BEARER_CHALLENGE = {
    "description": 'RFC 6750 §3: `Bearer realm="authserver"`, with `error` and '
    "`error_description` when a token was given.",
    "required": True,
    "schema": {"type": "string", "pattern": "^Bearer "},
}


def _ref(model: type[BaseModel]) -> dict[str, str]:
    return {"$ref": REF_TEMPLATE.format(model=model.__name__)}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


_RESPONSES: dict[str, Any] = {
    "BadRequest": _json(_ref(Error), "The request is malformed (`invalid_request`)."),
    "Unauthorized": {
        **_json(
            _ref(Error),
            "No access token (`unauthorized`), or one that is invalid, expired, revoked or "
            "not for this API, or whose person is gone or disabled, or whose service account "
            "is gone (`invalid_token`).",
        ),
        "headers": {"WWW-Authenticate": _BEARER_CHALLENGE},
    },
    "Forbidden": {
        **_json(_ref(Error), "The token's roles do not allow this (`insufficient_scope`)."),
        "headers": {"WWW-Authenticate": _BEARER_CHALLENGE},
    },
    "NotFound": _json(_ref(Error), "No such thing (`not_found`)."),
    "Conflict": _json(
        _ref(Error),
        "The name, or the email address, is taken, or the change would leave no enabled "
        "admin (`conflict`).",
    ),
    "PayloadTooLarge": _json(
        _ref(Error),
        "The body is larger than `max_form_bytes`, 64 KiB by default (`invalid_request`).",
    ),
    "UnsupportedMediaType": _json(
        _ref(Error), "The body is not `application/json` (`invalid_request`)."
    ),
    "TooManyRequests": _json(
        _ref(Error), "Too many wrong passwords for this account (`invalid_request`)."
    ),
}

_SECURITY_DESCRIPTION = (
    "An access token of this server (a JWT, RFC 9068) whose `aud` is this API's URL, "
    "`<issuer>/api/v1`: ask for it with `audience=<issuer>/api/v1` (or `resource=`, "
    "RFC 8707) at the token endpoint (not by a client with `consent: true`). "
    "The `admin` role may do everything; the `user` role may list and read users and "
    "roles, read `/me`, and change its own password (with `current_password`). "
    "A person's role is read from the database on each call; a service account's "
    "token stops working here when the account is revoked, rotated or expired."
)

#: The words of each path parameter: (description, example).
_PATH_PARAMETERS: dict[str, tuple[str | None, str | None]] = {
    "username": ("The username (case-insensitive).", "alice"),
    "name": ("The service account's name.", "deploy-bot"),
    "kid": ("The key's id.", None),
    "client_id": (None, "cli"),
}


def _path_parameters(path: str) -> list[dict[str, Any]]:
    parameters = []
    for name in re.findall(r"\{([^}]+)\}", path):
        description, example = _PATH_PARAMETERS[name]
        parameter: dict[str, Any] = {"name": name, "in": "path", "required": True}
        if description is not None:
            parameter["description"] = description
        parameter["schema"] = {"type": "string"}
        if example is not None:
            parameter["schema"]["examples"] = [example]
        parameters.append(parameter)
    return parameters


def _query_parameters(model: type[BaseModel]) -> list[dict[str, Any]]:
    schema = model.model_json_schema(ref_template=REF_TEMPLATE, schema_generator=SchemaGenerator)
    parameters = []
    for name, field in schema["properties"].items():
        description = field.pop("description", None)
        parameter: dict[str, Any] = {"name": name, "in": "query"}
        if description is not None:
            parameter["description"] = description
        if name in schema.get("required", ()):
            parameter["required"] = True
        parameters.append({**parameter, "schema": field})
    return parameters


def _operation(operation: Operation) -> dict[str, Any]:
    roles = operation.roles
    description = operation.description
    if roles is not None:
        description = " ".join(filter(None, [f"Roles: {', '.join(sorted(roles))}.", description]))
    result: dict[str, Any] = {
        "operationId": operation.operation_id,
        "summary": operation.summary,
    }
    if description:
        result["description"] = description
    result["tags"] = [operation.tag]
    if roles is None:
        result["security"] = []
    if operation.query is not None:
        result["parameters"] = _query_parameters(operation.query)
    if operation.body is not None:
        result["requestBody"] = {
            "required": operation.body_required,
            "content": {"application/json": {"schema": _ref(operation.body)}},
        }
    reply = operation.reply
    success: dict[str, Any] = {"description": reply.description}
    if len(reply.models) == 1:
        success = _json(_ref(reply.models[0]), reply.description)
    elif reply.models:
        success = _json({"oneOf": [_ref(model) for model in reply.models]}, reply.description)
    result["responses"] = {str(reply.status): success} | {
        str(status): {"$ref": f"#/components/responses/{_ERROR_RESPONSES[status]}"}
        for status in operation.error_statuses
    }
    return result


def component_schemas(operations: tuple[Operation, ...]) -> dict[str, Any]:
    """The models of ``operations`` (and ``Error``), as ``models_json_schema`` writes them."""
    models: dict[type[BaseModel], None] = dict.fromkeys(
        [Error, *(model for op in operations for model in op.models)]
    )
    _, schemas = models_json_schema(
        [(model, "validation") for model in models],
        ref_template=REF_TEMPLATE,
        schema_generator=SchemaGenerator,
    )
    defs: dict[str, Any] = schemas["$defs"]
    return defs


@functools.cache
def _document(operations: tuple[Operation, ...]) -> dict[str, Any]:
    paths: dict[str, Any] = {}
    for operation in operations:
        item = paths.setdefault(operation.path, {})
        if parameters := _path_parameters(operation.path):
            item["parameters"] = parameters
        item[operation.method.lower()] = _operation(operation)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "authserver admin API",
            "version": "1",
            "description": "Users, roles, service accounts, clients, signing keys and the "
            "audit log of an authserver. Errors are `{error, error_description}`; 401 and "
            "403 carry `WWW-Authenticate: Bearer` (RFC 6750 §3).",
        },
        "security": [{"bearerAuth": []}],
        "paths": paths,
        "components": {
            "securitySchemes": {
                "bearerAuth": {
                    "type": "http",
                    "scheme": "bearer",
                    "bearerFormat": "JWT",
                    "description": _SECURITY_DESCRIPTION,
                }
            },
            "schemas": component_schemas(operations),
            "responses": _RESPONSES,
        },
    }


def build_document(operations: tuple[Operation, ...], base_url: str) -> dict[str, Any]:
    """The document of ``operations``, with this server's API URL in ``servers``."""
    document = copy.deepcopy(_document(operations))
    return {**document, "servers": [{"url": base_url + ADMIN_API_PATH}]}
