"""The OpenAPI 3.1 document of the admin API (``GET /api/v1/openapi.json``).

It is one dict literal, built once; only ``servers`` depends on the configured issuer.
``tests/test_admin_api_schema.py`` checks it against the API both ways: every route
is documented, and generated requests get the documented statuses and shapes.
"""

from __future__ import annotations

import copy
from typing import Any

from ..identity.service_accounts import MAX_EXPIRY_SECONDS
from ..identity.users import MAX_EMAIL_LENGTH, MAX_PASSWORD_LENGTH, MIN_PASSWORD_LENGTH
from ..key_file import DEFAULT_KEY_ALGORITHM, KEY_ALGORITHMS, KEY_FILE_TYPE
from ..oauth.clients import SERVICE_ACCOUNT_ID_PREFIX, SERVICE_ACCOUNT_TOKEN_PREFIX

#: The most a page of audit events may hold, and its default (``admin_api`` uses these).
MAX_PAGE = 200
DEFAULT_PAGE = 50


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _responses(success: dict[str, Any], *errors: str) -> dict[str, Any]:
    """``success`` (status → response) plus 401, 403 and the named error responses."""
    result = dict(success)
    for status in ("401", "403", *errors):
        result[status] = {"$ref": f"#/components/responses/{_ERRORS[status]}"}
    return result


_ERRORS = {
    "400": "BadRequest",
    "401": "Unauthorized",
    "403": "Forbidden",
    "404": "NotFound",
    "409": "Conflict",
    "413": "PayloadTooLarge",
    "415": "UnsupportedMediaType",
    "429": "TooManyRequests",
}

_NULLABLE_STRING = {"type": ["string", "null"]}
_NULLABLE_TIME = {"type": ["string", "null"], "format": "date-time"}
_TIME = {"type": "string", "format": "date-time"}
_STRINGS = {"type": "array", "items": {"type": "string"}}
_PASSWORD = {
    "type": "string",
    "minLength": MIN_PASSWORD_LENGTH,
    "maxLength": MAX_PASSWORD_LENGTH,
}
_NO_CONTENT = {"204": {"description": "Done; no body."}}
_EMAIL_DESCRIPTION = (
    "`local@domain`: a dot-atom of ASCII before the `@`, a host name (an internationalised "
    "one in its `xn--` form) after it, which is stored lower-cased. Set by an admin, it is "
    "`email_verified: true` in ID tokens and userinfo. No other user may have it, in any "
    "letter case (409)."
)
_EMAIL = {
    "type": "string",
    "minLength": 3,
    "maxLength": MAX_EMAIL_LENGTH,
    "examples": ["bob@example.com"],
    "description": _EMAIL_DESCRIPTION,
}

_USERNAME = {
    "name": "username",
    "in": "path",
    "required": True,
    "description": "The username (case-insensitive).",
    "schema": {"type": "string", "examples": ["alice"]},
}
_SERVICE_ACCOUNT_NAME = {
    "name": "name",
    "in": "path",
    "required": True,
    "description": "The service account's name.",
    "schema": {"type": "string", "examples": ["deploy-bot"]},
}

_BEARER_CHALLENGE = {
    "description": 'RFC 6750 §3: `Bearer realm="authserver"`, with `error` and '
    "`error_description` when a token was given.",
    "required": True,
    "schema": {"type": "string", "pattern": "^Bearer "},
}

_SCHEMAS: dict[str, Any] = {
    "Error": {
        "type": "object",
        "description": "An error, as RFC 6749 §5.2 writes them.",
        "additionalProperties": False,
        "required": ["error", "error_description"],
        "properties": {
            "error": {
                "type": "string",
                "enum": [
                    "invalid_request",
                    "unauthorized",
                    "invalid_token",
                    "insufficient_scope",
                    "not_found",
                    "conflict",
                ],
            },
            "error_description": {"type": "string"},
        },
    },
    "User": {
        "type": "object",
        "description": "A person: a local user, or one who signs in upstream or through "
        "the auth proxy. `id` is the `sub` of their tokens.",
        "additionalProperties": False,
        "required": [
            "id",
            "username",
            "email",
            "email_verified",
            "name",
            "role",
            "groups",
            "source",
            "disabled",
            "created_at",
            "last_login_at",
        ],
        "properties": {
            "id": {"type": "string"},
            "username": {"type": "string"},
            "email": _NULLABLE_STRING,
            "email_verified": {
                "type": ["boolean", "null"],
                "description": "OIDC Core §5.1 `email_verified` as the person's tokens carry "
                "it: the upstream IdP's own word, true for an address an admin set or the "
                "auth proxy asserted; null when nobody said.",
            },
            "name": _NULLABLE_STRING,
            "role": {"type": "string"},
            "groups": _STRINGS,
            "source": {"type": "string", "enum": ["local", "upstream", "proxy"]},
            "disabled": {"type": "boolean"},
            "created_at": _TIME,
            "last_login_at": _NULLABLE_TIME,
        },
    },
    "UserList": {
        "type": "object",
        "additionalProperties": False,
        "required": ["items"],
        "properties": {"items": {"type": "array", "items": _ref("User")}},
    },
    "UserCreated": {
        "type": "object",
        "additionalProperties": False,
        "required": ["user", "password"],
        "properties": {
            "user": _ref("User"),
            "password": {
                "type": ["string", "null"],
                "description": "The generated password, shown this once; null when the "
                "request gave one.",
            },
        },
    },
    "Me": {
        "type": "object",
        "additionalProperties": False,
        "required": ["name", "roles", "user"],
        "properties": {
            "name": {"type": "string", "description": "A username or a client id."},
            "roles": _STRINGS,
            "user": {
                "oneOf": [_ref("User"), {"type": "null"}],
                "description": "The person calling; null for a client (a service account).",
            },
        },
    },
    "Role": {
        "type": "object",
        "additionalProperties": False,
        "required": ["name", "permissions", "default"],
        "properties": {
            "name": {"type": "string"},
            "permissions": {**_STRINGS, "description": "Scopes it permits; `*` is all."},
            "default": {"type": "boolean", "description": "The role of a new person."},
        },
    },
    "RoleList": {
        "type": "object",
        "additionalProperties": False,
        "required": ["items"],
        "properties": {"items": {"type": "array", "items": _ref("Role")}},
    },
    "ServiceAccount": {
        "type": "object",
        "description": "A confidential client made at runtime, for CI and services. "
        "Never its token, nor the token's hash.",
        "additionalProperties": False,
        "required": [
            "client_id",
            "name",
            "role",
            "scopes",
            "created_at",
            "created_by",
            "expires_at",
            "rotated_at",
            "last_used_at",
        ],
        "properties": {
            "client_id": {"type": "string", "pattern": f"^{SERVICE_ACCOUNT_ID_PREFIX}"},
            "name": {"type": "string"},
            "role": {"type": "string"},
            "scopes": _STRINGS,
            "created_at": _TIME,
            "created_by": _NULLABLE_STRING,
            "expires_at": {**_NULLABLE_TIME, "description": "null: it never expires."},
            "rotated_at": _NULLABLE_TIME,
            "last_used_at": _NULLABLE_TIME,
        },
    },
    "ServiceAccountList": {
        "type": "object",
        "additionalProperties": False,
        "required": ["items"],
        "properties": {"items": {"type": "array", "items": _ref("ServiceAccount")}},
    },
    "ServiceAccountToken": {
        "type": "object",
        "additionalProperties": False,
        "required": ["service_account", "token"],
        "properties": {
            "service_account": _ref("ServiceAccount"),
            "token": {
                "type": "string",
                "pattern": f"^{SERVICE_ACCOUNT_TOKEN_PREFIX}{SERVICE_ACCOUNT_ID_PREFIX}[^.]+\\.",
                "description": f"`{SERVICE_ACCOUNT_TOKEN_PREFIX}<client_id>.<secret>`, shown "
                "this once. Trade it for an access token with the client credentials grant: "
                "HTTP Basic `<client_id>:<token>`, or the token alone as `client_secret`.",
            },
        },
    },
    "KeyFile": {
        "type": "object",
        "description": "A service-account key file, shown this once: save it as a file "
        "readable by its holder only and use it with `authserver token --key-file PATH` "
        "(or `AUTHSERVER_CREDENTIALS=PATH`), or sign `private_key_jwt` client assertions "
        "(RFC 7523 §2.2) with `private_key` yourself. Only its public key is stored here.",
        "additionalProperties": False,
        "required": ["type", "name", "client_id", "key_id", "issuer", "token_url", "private_key"],
        "properties": {
            "type": {"const": KEY_FILE_TYPE},
            "name": {"type": "string"},
            "client_id": {"type": "string", "pattern": f"^{SERVICE_ACCOUNT_ID_PREFIX}"},
            "key_id": {"type": "string"},
            "issuer": {"type": "string"},
            "token_url": {"type": "string"},
            "private_key": {
                "type": "object",
                "description": "A private JWK (RFC 7517) with `kid` and `alg`.",
                "required": ["kty", "kid", "alg", "d"],
                "properties": {"alg": {"enum": list(KEY_ALGORITHMS)}},
            },
        },
    },
    "ServiceAccountKeyFile": {
        "type": "object",
        "additionalProperties": False,
        "required": ["service_account", "key_file"],
        "properties": {"service_account": _ref("ServiceAccount"), "key_file": _ref("KeyFile")},
    },
    "ServiceAccountKey": {
        "type": "object",
        "description": "The public half of a key file: its id and age (never the key).",
        "additionalProperties": False,
        "required": ["kid", "algorithm", "created_at", "created_by"],
        "properties": {
            "kid": {"type": "string"},
            "algorithm": {"enum": list(KEY_ALGORITHMS)},
            "created_at": _TIME,
            "created_by": _NULLABLE_STRING,
        },
    },
    "ServiceAccountKeyList": {
        "type": "object",
        "additionalProperties": False,
        "required": ["items"],
        "properties": {"items": {"type": "array", "items": _ref("ServiceAccountKey")}},
    },
    "Client": {
        "type": "object",
        "description": "A static client of the config file.",
        "additionalProperties": False,
        "required": [
            "client_id",
            "type",
            "grant_types",
            "redirect_uris",
            "scopes",
            "roles",
            "consent",
            "introspect",
        ],
        "properties": {
            "client_id": {"type": "string"},
            "type": {"type": "string", "enum": ["public", "confidential"]},
            "grant_types": _STRINGS,
            "redirect_uris": _STRINGS,
            "scopes": _STRINGS,
            "roles": _STRINGS,
            "consent": {"type": "boolean"},
            "introspect": {"type": "boolean"},
        },
    },
    "ClientList": {
        "type": "object",
        "additionalProperties": False,
        "required": ["items"],
        "properties": {"items": {"type": "array", "items": _ref("Client")}},
    },
    "Key": {
        "type": "object",
        "description": "A signing key; `use` tells its line (access tokens or ID tokens).",
        "additionalProperties": False,
        "required": [
            "kid",
            "algorithm",
            "use",
            "state",
            "created_at",
            "signs_from",
            "published_until",
        ],
        "properties": {
            "kid": {"type": "string"},
            "algorithm": {"type": "string"},
            "use": {"type": "string", "enum": ["access_token", "id_token"]},
            "state": {"type": "string", "enum": ["next", "active", "retired", "expired"]},
            "created_at": _TIME,
            "signs_from": _TIME,
            "published_until": {
                **_NULLABLE_TIME,
                "description": "Until when it stays in JWKS; null while next or active.",
            },
        },
    },
    "KeyList": {
        "type": "object",
        "additionalProperties": False,
        "required": ["items"],
        "properties": {"items": {"type": "array", "items": _ref("Key")}},
    },
    "KeysRotated": {
        "type": "object",
        "additionalProperties": False,
        "required": ["created", "items"],
        "properties": {
            "created": {**_STRINGS, "description": "The kids of the new keys, one per line."},
            "items": {"type": "array", "items": _ref("Key")},
        },
    },
    "AuditEvent": {
        "type": "object",
        "additionalProperties": False,
        "required": ["id", "at", "event", "actor", "client_id", "target", "address", "details"],
        "properties": {
            "id": {"type": "integer", "minimum": 1},
            "at": _TIME,
            "event": {"type": "string"},
            "actor": _NULLABLE_STRING,
            "client_id": _NULLABLE_STRING,
            "target": _NULLABLE_STRING,
            "address": _NULLABLE_STRING,
            "details": {"type": "object"},
        },
    },
    "AuditEventPage": {
        "type": "object",
        "additionalProperties": False,
        "required": ["items", "next"],
        "properties": {
            "items": {"type": "array", "items": _ref("AuditEvent")},
            "next": {
                "type": ["string", "null"],
                "format": "uri",
                "description": "The URL of the next (older) page; null on the last page.",
            },
        },
    },
}

_RESPONSES: dict[str, Any] = {
    "BadRequest": _json(_ref("Error"), "The request is malformed (`invalid_request`)."),
    "Unauthorized": {
        **_json(
            _ref("Error"),
            "No access token (`unauthorized`), or one that is invalid, expired, revoked or "
            "not for this API, or whose person is gone or disabled, or whose service account "
            "is gone (`invalid_token`).",
        ),
        "headers": {"WWW-Authenticate": _BEARER_CHALLENGE},
    },
    "Forbidden": {
        **_json(_ref("Error"), "The token's roles do not allow this (`insufficient_scope`)."),
        "headers": {"WWW-Authenticate": _BEARER_CHALLENGE},
    },
    "NotFound": _json(_ref("Error"), "No such thing (`not_found`)."),
    "Conflict": _json(_ref("Error"), "The name, or the email address, is taken (`conflict`)."),
    "PayloadTooLarge": _json(
        _ref("Error"),
        "The body is larger than `max_form_bytes`, 64 KiB by default (`invalid_request`).",
    ),
    "UnsupportedMediaType": _json(
        _ref("Error"), "The body is not `application/json` (`invalid_request`)."
    ),
    "TooManyRequests": _json(
        _ref("Error"), "Too many wrong passwords for this account (`invalid_request`)."
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

_PATHS: dict[str, Any] = {
    "/openapi.json": {
        "get": {
            "operationId": "getOpenApiDocument",
            "summary": "This document",
            "tags": ["meta"],
            "security": [],
            "responses": {"200": _json({"type": "object"}, "The OpenAPI 3.1 document.")},
        }
    },
    "/me": {
        "get": {
            "operationId": "getMe",
            "summary": "Who the token is for",
            "description": "Roles: admin, user.",
            "tags": ["users"],
            "responses": _responses({"200": _json(_ref("Me"), "The caller.")}),
        }
    },
    "/users": {
        "get": {
            "operationId": "listUsers",
            "summary": "List every person, by username",
            "description": "Roles: admin, user.",
            "tags": ["users"],
            "responses": _responses({"200": _json(_ref("UserList"), "Every person.")}),
        },
        "post": {
            "operationId": "createUser",
            "summary": "Create a local user",
            "description": "Roles: admin. Without `password`, one is generated and returned once.",
            "tags": ["users"],
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {
                        "schema": {
                            "type": "object",
                            "additionalProperties": False,
                            "required": ["username"],
                            "properties": {
                                "username": {
                                    "type": "string",
                                    "examples": ["bob"],
                                    "description": "Stored NFC and lower-cased; at most "
                                    "255 characters, no whitespace or control characters.",
                                },
                                "role": {
                                    "type": "string",
                                    "examples": ["user"],
                                    "description": "A role of `rbac.roles` (default: "
                                    "`rbac.default_role`).",
                                },
                                "password": _PASSWORD,
                                "email": _EMAIL,
                            },
                        }
                    }
                },
            },
            "responses": _responses(
                {"201": _json(_ref("UserCreated"), "Created.")}, "400", "409", "413", "415"
            ),
        },
    },
    "/users/{username}": {
        "parameters": [_USERNAME],
        "get": {
            "operationId": "getUser",
            "summary": "One person",
            "description": "Roles: admin, user.",
            "tags": ["users"],
            "responses": _responses({"200": _json(_ref("User"), "The person.")}, "404"),
        },
        "patch": {
            "operationId": "updateUser",
            "summary": "Change a person's role or email address, or disable or enable them",
            "description": "Roles: admin. A field left out is left as it is. A disabled "
            "person cannot sign in, and their tokens no longer work here. Only a local "
            "user's email address is set here (others' come from where they sign in: 400); "
            "one that another user has is 409, and nothing changes.",
            "tags": ["users"],
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {
                        "schema": {
                            "type": "object",
                            "additionalProperties": False,
                            "properties": {
                                "role": {
                                    "type": "string",
                                    "examples": ["admin"],
                                    "description": "A role of `rbac.roles`.",
                                },
                                "disabled": {"type": "boolean"},
                                "email": {
                                    **_EMAIL,
                                    "type": ["string", "null"],
                                    "description": _EMAIL_DESCRIPTION + " null removes it.",
                                },
                            },
                        }
                    }
                },
            },
            "responses": _responses(
                {"200": _json(_ref("User"), "The person, changed.")},
                "400",
                "404",
                "409",
                "413",
                "415",
            ),
        },
        "delete": {
            "operationId": "deleteUser",
            "summary": "Delete a person and their refresh tokens",
            "description": "Roles: admin. Access tokens already issued run out.",
            "tags": ["users"],
            "responses": _responses(_NO_CONTENT, "400", "404"),
        },
    },
    "/users/{username}/password": {
        "parameters": [_USERNAME],
        "put": {
            "operationId": "setUserPassword",
            "summary": "Set a local user's password",
            "description": "Roles: admin for anyone; everyone for their own, with "
            "`current_password` (a wrong one counts against the account's sign-in limit). "
            "A person who signs in upstream or through the auth proxy has no password here "
            "(400). Their refresh tokens are revoked.",
            "tags": ["users"],
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {
                        "schema": {
                            "type": "object",
                            "additionalProperties": False,
                            "required": ["password"],
                            "properties": {
                                "password": _PASSWORD,
                                "current_password": {"type": "string", "maxLength": 1024},
                            },
                        }
                    }
                },
            },
            "responses": _responses(_NO_CONTENT, "400", "404", "413", "415", "429"),
        },
    },
    "/roles": {
        "get": {
            "operationId": "listRoles",
            "summary": "The roles of `rbac.roles`",
            "description": "Roles: admin, user.",
            "tags": ["users"],
            "responses": _responses({"200": _json(_ref("RoleList"), "Every role.")}),
        }
    },
    "/service-accounts": {
        "get": {
            "operationId": "listServiceAccounts",
            "summary": "List the service accounts",
            "description": "Roles: admin.",
            "tags": ["service-accounts"],
            "responses": _responses(
                {"200": _json(_ref("ServiceAccountList"), "Every service account.")}
            ),
        },
        "post": {
            "operationId": "createServiceAccount",
            "summary": "Create a service account; its token is shown once",
            "description": "Roles: admin.",
            "tags": ["service-accounts"],
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {
                        "schema": {
                            "type": "object",
                            "additionalProperties": False,
                            "required": ["name"],
                            "properties": {
                                "name": {
                                    "type": "string",
                                    "pattern": "^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$",
                                    "examples": ["deploy-bot"],
                                },
                                "role": {
                                    "type": "string",
                                    "examples": ["user"],
                                    "description": "A role of `rbac.roles` (default: "
                                    "`rbac.default_role`).",
                                },
                                "scopes": {
                                    **_STRINGS,
                                    "examples": [["read"]],
                                    "description": "Scopes it may ask for, within its role's "
                                    "permissions (default: all of them).",
                                },
                                "expires_in": {
                                    "type": ["integer", "null"],
                                    "minimum": 1,
                                    "maximum": MAX_EXPIRY_SECONDS,
                                    "description": "Seconds from now; null: never (default: "
                                    "30 days).",
                                },
                                "key_algorithm": {
                                    "enum": list(KEY_ALGORITHMS),
                                    "description": "Give it a key file of this algorithm "
                                    "instead of a token (the answer holds `key_file`).",
                                },
                            },
                        }
                    }
                },
            },
            "responses": _responses(
                {
                    "201": _json(
                        {"oneOf": [_ref("ServiceAccountToken"), _ref("ServiceAccountKeyFile")]},
                        "Created: its token, or with `key_algorithm` its key file.",
                    )
                },
                "400",
                "409",
                "413",
                "415",
            ),
        },
    },
    "/service-accounts/{name}": {
        "parameters": [_SERVICE_ACCOUNT_NAME],
        "get": {
            "operationId": "getServiceAccount",
            "summary": "One service account",
            "description": "Roles: admin.",
            "tags": ["service-accounts"],
            "responses": _responses(
                {"200": _json(_ref("ServiceAccount"), "The service account.")}, "404"
            ),
        },
        "delete": {
            "operationId": "revokeServiceAccount",
            "summary": "Delete (revoke) a service account: its token is refused from now on",
            "description": "Roles: admin. Access tokens already issued run out, but no longer "
            "work on this API.",
            "tags": ["service-accounts"],
            "responses": _responses(_NO_CONTENT, "404"),
        },
    },
    "/service-accounts/{name}/rotate": {
        "parameters": [_SERVICE_ACCOUNT_NAME],
        "post": {
            "operationId": "rotateServiceAccount",
            "summary": "A new token for a service account; the old one stops working",
            "description": "Roles: admin. The expiry is kept. No request body.",
            "tags": ["service-accounts"],
            "responses": _responses(
                {"200": _json(_ref("ServiceAccountToken"), "The new token.")}, "400", "404"
            ),
        },
    },
    "/service-accounts/{name}/keys": {
        "parameters": [_SERVICE_ACCOUNT_NAME],
        "get": {
            "operationId": "listServiceAccountKeys",
            "summary": "The keys of a service account (public halves only)",
            "description": "Roles: admin.",
            "tags": ["service-accounts"],
            "responses": _responses(
                {"200": _json(_ref("ServiceAccountKeyList"), "Its keys, oldest first.")}, "404"
            ),
        },
        "post": {
            "operationId": "addServiceAccountKey",
            "summary": "One more key for a service account; its key file is shown once",
            "description": "Roles: admin. Its other keys keep working until removed, so a "
            "key can be rolled over without downtime.",
            "tags": ["service-accounts"],
            "requestBody": {
                "required": False,
                "content": {
                    "application/json": {
                        "schema": {
                            "type": "object",
                            "additionalProperties": False,
                            "properties": {
                                "algorithm": {
                                    "enum": list(KEY_ALGORITHMS),
                                    "description": f"Default: {DEFAULT_KEY_ALGORITHM}.",
                                }
                            },
                        }
                    }
                },
            },
            "responses": _responses(
                {"201": _json(_ref("ServiceAccountKeyFile"), "The new key file.")},
                "400",
                "404",
                "413",
                "415",
            ),
        },
    },
    "/service-accounts/{name}/keys/{kid}": {
        "parameters": [
            _SERVICE_ACCOUNT_NAME,
            {
                "name": "kid",
                "in": "path",
                "required": True,
                "description": "The key's id.",
                "schema": {"type": "string"},
            },
        ],
        "delete": {
            "operationId": "removeServiceAccountKey",
            "summary": "Remove a key of a service account: its key file stops working",
            "description": "Roles: admin. Access tokens it minted run out, but no longer work "
            "on this API.",
            "tags": ["service-accounts"],
            "responses": _responses(_NO_CONTENT, "404"),
        },
    },
    "/clients": {
        "get": {
            "operationId": "listClients",
            "summary": "The static clients of the config file",
            "description": "Roles: admin. Service accounts are listed apart.",
            "tags": ["clients"],
            "responses": _responses({"200": _json(_ref("ClientList"), "Every static client.")}),
        }
    },
    "/clients/{client_id}": {
        "parameters": [
            {
                "name": "client_id",
                "in": "path",
                "required": True,
                "schema": {"type": "string", "examples": ["cli"]},
            }
        ],
        "get": {
            "operationId": "getClient",
            "summary": "One static client",
            "description": "Roles: admin.",
            "tags": ["clients"],
            "responses": _responses({"200": _json(_ref("Client"), "The client.")}, "404"),
        },
    },
    "/keys": {
        "get": {
            "operationId": "listKeys",
            "summary": "The signing keys of both lines, newest first",
            "description": "Roles: admin.",
            "tags": ["keys"],
            "responses": _responses({"200": _json(_ref("KeyList"), "Every key.")}),
        }
    },
    "/keys/rotate": {
        "post": {
            "operationId": "rotateKeys",
            "summary": "Rotate both key lines",
            "description": "Roles: admin. A new key is published before it signs, unless "
            "`immediate`. The body is optional.",
            "tags": ["keys"],
            "requestBody": {
                "required": False,
                "content": {
                    "application/json": {
                        "schema": {
                            "type": "object",
                            "additionalProperties": False,
                            "properties": {
                                "immediate": {
                                    "type": "boolean",
                                    "default": False,
                                    "description": "Sign with the new keys at once.",
                                }
                            },
                        }
                    }
                },
            },
            "responses": _responses(
                {"201": _json(_ref("KeysRotated"), "Rotated.")}, "400", "413", "415"
            ),
        }
    },
    "/audit-events": {
        "get": {
            "operationId": "listAuditEvents",
            "summary": "Audit events, newest first, a page at a time",
            "description": "Roles: admin. Follow `next` for older events.",
            "tags": ["audit"],
            "parameters": [
                {
                    "name": "limit",
                    "in": "query",
                    "description": "Events per page.",
                    "schema": {
                        "type": "integer",
                        "minimum": 1,
                        "maximum": MAX_PAGE,
                        "default": DEFAULT_PAGE,
                    },
                },
                {
                    "name": "before",
                    "in": "query",
                    "description": "Only events with a smaller `id` (the last of a page).",
                    "schema": {"type": "integer", "minimum": 1, "maximum": 2**63 - 1},
                },
                {
                    "name": "event",
                    "in": "query",
                    "description": "Only events of this name, such as `user_created`; "
                    "printable characters only.",
                    "schema": {"type": "string", "maxLength": 64},
                },
            ],
            "responses": _responses({"200": _json(_ref("AuditEventPage"), "A page.")}, "400"),
        }
    },
}

DOCUMENT: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {
        "title": "authserver admin API",
        "version": "1",
        "description": "Users, roles, service accounts, clients, signing keys and the audit "
        "log of an authserver. Errors are `{error, error_description}`; 401 and 403 carry "
        "`WWW-Authenticate: Bearer` (RFC 6750 §3).",
    },
    "security": [{"bearerAuth": []}],
    "paths": _PATHS,
    "components": {
        "securitySchemes": {
            "bearerAuth": {
                "type": "http",
                "scheme": "bearer",
                "bearerFormat": "JWT",
                "description": _SECURITY_DESCRIPTION,
            }
        },
        "schemas": _SCHEMAS,
        "responses": _RESPONSES,
    },
}


def openapi_document(base_url: str) -> dict[str, Any]:
    """The document, with this server's API URL in ``servers``."""
    document = copy.deepcopy(DOCUMENT)
    return {**document, "servers": [{"url": base_url + "/api/v1"}]}
