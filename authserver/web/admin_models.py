"""The shapes of the admin API: every request and response body, and the query of the
audit log's pages, as pydantic models. The OpenAPI document's schemas are generated from
them (:mod:`.openapi`), and :func:`describe` words a refusal the way the API always has.

A request model refuses what the API refuses before any operation runs: a field it does
not know, a value of the wrong JSON type (``null`` only where a field allows it), a
missing required field, a list item that is not a string. The rules of the operations
(a username's characters, a password's length, a service account's name, the expiry's
range, a known key algorithm, the role) stay with the services that own them, which the
CLI and the dashboard call too and which word their own refusals (a ``404`` or ``403``
still comes before them); a model documents those rules (``WithJsonSchema``) from the
services' own constants. A field that may be left out but not be ``null`` is
``X | MISSING``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import (
    MISSING,
    BaseModel,
    ConfigDict,
    Field,
    PlainValidator,
    RootModel,
    StrictBool,
    StrictInt,
    StrictStr,
    ValidationError,
    WithJsonSchema,
)
from pydantic.json_schema import GenerateJsonSchema
from pydantic_core import PydanticCustomError, core_schema

from ..identity.service_accounts import DEFAULT_EXPIRY_SECONDS, MAX_EXPIRY_SECONDS, NAME_PATTERN
from ..identity.users import MAX_EMAIL_LENGTH, MAX_PASSWORD_LENGTH, MIN_PASSWORD_LENGTH
from ..key_file import DEFAULT_KEY_ALGORITHM, KEY_ALGORITHMS, KEY_FILE_TYPE
from ..oauth.clients import SERVICE_ACCOUNT_ID_PREFIX, SERVICE_ACCOUNT_TOKEN_PREFIX

#: The most a page of audit events may hold, and its default.
MAX_PAGE = 200
DEFAULT_PAGE = 50
#: The longest event name the audit log's filter takes.
MAX_EVENT_FILTER = 64
#: The error type of a refusal a model words itself (the message is the description).
WORDED = "worded"


class SchemaGenerator(GenerateJsonSchema):
    """pydantic's JSON Schema without a title on every property (a model keeps its own)."""

    def field_title_should_be_set(self, schema: Any) -> bool:
        return False


class Shape(BaseModel):
    """A body of the API: strict JSON types, no field it does not name."""

    model_config = ConfigDict(extra="forbid", strict=True)


# -- pieces ---------------------------------------------------------------------------------

_TIME = {"type": "string", "format": "date-time"}
#: An ISO 8601 time as the API writes it (``datetime.isoformat()``).
Timestamp = Annotated[StrictStr, WithJsonSchema(_TIME)]
ClientId = Annotated[StrictStr, Field(pattern=f"^{SERVICE_ACCOUNT_ID_PREFIX}")]

_EMAIL_DESCRIPTION = (
    "`local@domain`: a dot-atom of ASCII before the `@`, a host name (an internationalised "
    "one in its `xn--` form) after it, which is stored lower-cased. Set by an admin, it is "
    "`email_verified: true` in ID tokens and userinfo. No other user may have it, in any "
    "letter case (409)."
)
#: Checked by the user service (its words: a malformed address is a 400).
Email = Annotated[
    StrictStr, WithJsonSchema({"type": "string", "minLength": 3, "maxLength": MAX_EMAIL_LENGTH})
]
#: Checked by the user service, which words its refusals.
Password = Annotated[
    StrictStr,
    WithJsonSchema(
        {"type": "string", "minLength": MIN_PASSWORD_LENGTH, "maxLength": MAX_PASSWORD_LENGTH}
    ),
]
#: Checked by the service-account service (``check_key_algorithm``).
KeyAlgorithm = Annotated[
    StrictStr, WithJsonSchema({"type": "string", "enum": list(KEY_ALGORITHMS)})
]


@dataclass(frozen=True)
class QueryInteger:
    """An integer query parameter from ``low`` to ``high``, read as Python's ``int()``
    reads it (`` 5`` and ``+5`` are 5), documented with the same bounds."""

    low: int
    high: int

    def __get_pydantic_core_schema__(self, source: Any, handler: Any) -> core_schema.CoreSchema:
        return core_schema.with_info_plain_validator_function(self.parse)

    def __get_pydantic_json_schema__(self, schema: Any, handler: Any) -> dict[str, Any]:
        return {"type": "integer", "minimum": self.low, "maximum": self.high}

    def parse(self, value: Any, info: core_schema.ValidationInfo) -> int:
        name = info.field_name
        try:
            number = int(value)
        except (TypeError, ValueError):
            raise PydanticCustomError(
                WORDED, "'{name}' must be an integer.", {"name": name}
            ) from None
        if not self.low <= number <= self.high:
            raise PydanticCustomError(
                WORDED,
                "'{name}' must be from {low} to {high}.",
                {"name": name, "low": self.low, "high": self.high},
            )
        return number


def _event_filter(value: str) -> str:
    if len(value) > MAX_EVENT_FILTER:
        raise PydanticCustomError(
            WORDED, "The event filter is at most {most} characters.", {"most": MAX_EVENT_FILTER}
        )
    if not value.isprintable():
        raise PydanticCustomError(WORDED, "The event filter has control characters.")
    return value


# -- requests ---------------------------------------------------------------------------------


class NewUser(Shape):
    """A local user to create."""

    username: StrictStr = Field(
        examples=["bob"],
        description="Stored NFC and lower-cased; at most 255 characters, no whitespace or "
        "control characters.",
    )
    role: StrictStr | MISSING = Field(
        default=MISSING,
        examples=["user"],
        description="A role of `rbac.roles` (default: `rbac.default_role`).",
    )
    password: Password | MISSING = Field(
        default=MISSING, description="Without it, one is generated and returned once."
    )
    email: Email | MISSING = Field(
        default=MISSING, examples=["bob@example.com"], description=_EMAIL_DESCRIPTION
    )


class UserChanges(Shape):
    """What to change of a person; a field left out is left as it is."""

    role: StrictStr | MISSING = Field(
        default=MISSING, examples=["admin"], description="A role of `rbac.roles`."
    )
    disabled: StrictBool | MISSING = MISSING
    email: Email | MISSING | None = Field(
        default=MISSING,
        examples=["bob@example.com"],
        description=_EMAIL_DESCRIPTION + " null removes it.",
    )


class NewPassword(Shape):
    """A local user's new password; one's own is changed only with the current one."""

    password: Password
    current_password: (
        Annotated[StrictStr, WithJsonSchema({"type": "string", "maxLength": MAX_PASSWORD_LENGTH})]
        | MISSING
    ) = MISSING


class NewServiceAccount(Shape):
    """A service account to create: with a token, or with `key_algorithm` a key file."""

    name: Annotated[
        StrictStr, WithJsonSchema({"type": "string", "pattern": f"^{NAME_PATTERN.pattern}$"})
    ] = Field(examples=["deploy-bot"])
    role: StrictStr | MISSING = Field(
        default=MISSING,
        examples=["user"],
        description="A role of `rbac.roles` (default: `rbac.default_role`).",
    )
    scopes: list[StrictStr] | MISSING = Field(
        default=MISSING,
        examples=[["read"]],
        description="Scopes it may ask for, within its role's permissions (default: all of them).",
    )
    expires_in: (
        Annotated[
            StrictInt,
            WithJsonSchema({"type": "integer", "minimum": 1, "maximum": MAX_EXPIRY_SECONDS}),
        ]
        | None
    ) = Field(
        default=DEFAULT_EXPIRY_SECONDS,
        description="Seconds from now; null: never (default: 30 days).",
    )
    key_algorithm: KeyAlgorithm | MISSING = Field(
        default=MISSING,
        description="Give it a key file of this algorithm instead of a token (the answer "
        "holds `key_file`).",
    )


class NewServiceAccountKey(Shape):
    """One more key for a service account."""

    algorithm: KeyAlgorithm = DEFAULT_KEY_ALGORITHM


class KeyRotation(Shape):
    """How to rotate the signing keys."""

    immediate: StrictBool = Field(default=False, description="Sign with the new keys at once.")


class AuditEventQuery(BaseModel):
    """The query of a page of audit events (other parameters are ignored)."""

    limit: Annotated[int, QueryInteger(1, MAX_PAGE)] = Field(
        default=DEFAULT_PAGE, description="Events per page."
    )
    before: Annotated[int, QueryInteger(1, 2**63 - 1)] | MISSING = Field(
        default=MISSING, description="Only events with a smaller `id` (the last of a page)."
    )
    event: (
        Annotated[
            str,
            PlainValidator(_event_filter),
            WithJsonSchema({"type": "string", "maxLength": MAX_EVENT_FILTER}),
        ]
        | MISSING
    ) = Field(
        default=MISSING,
        description="Only events of this name, such as `user_created`; printable characters only.",
    )


# -- responses --------------------------------------------------------------------------------


class Error(Shape):
    """An error, as RFC 6749 §5.2 writes them."""

    error: Literal[
        "invalid_request",
        "unauthorized",
        "invalid_token",
        "insufficient_scope",
        "not_found",
        "conflict",
    ]
    error_description: StrictStr


class User(Shape):
    """A person: a local user, or one who signs in upstream or through the auth proxy.
    `id` is the `sub` of their tokens."""

    id: StrictStr
    username: StrictStr
    email: StrictStr | None
    email_verified: StrictBool | None = Field(
        description="OIDC Core §5.1 `email_verified` as the person's tokens carry it: the "
        "upstream IdP's own word, true for an address an admin set or the auth proxy "
        "asserted; null when nobody said."
    )
    name: StrictStr | None
    role: StrictStr
    groups: list[StrictStr]
    source: Literal["local", "upstream", "proxy"]
    disabled: StrictBool
    created_at: Timestamp
    last_login_at: Timestamp | None


class UserList(Shape):
    items: list[User]


class UserCreated(Shape):
    user: User
    password: StrictStr | None = Field(
        description="The generated password, shown this once; null when the request gave one."
    )


class Me(Shape):
    name: StrictStr = Field(description="A username or a client id.")
    roles: list[StrictStr]
    user: User | None = Field(
        description="The person calling; null for a client (a service account)."
    )


class Role(Shape):
    name: StrictStr
    permissions: list[StrictStr] = Field(description="Scopes it permits; `*` is all.")
    default: StrictBool = Field(description="The role of a new person.")


class RoleList(Shape):
    items: list[Role]


class ServiceAccount(Shape):
    """A confidential client made at runtime, for CI and services. Never its token, nor
    the token's hash."""

    client_id: ClientId
    name: StrictStr
    role: StrictStr
    scopes: list[StrictStr]
    created_at: Timestamp
    created_by: StrictStr | None
    expires_at: Timestamp | None = Field(description="null: it never expires.")
    rotated_at: Timestamp | None
    last_used_at: Timestamp | None


class ServiceAccountList(Shape):
    items: list[ServiceAccount]


class ServiceAccountToken(Shape):
    service_account: ServiceAccount
    token: StrictStr = Field(
        pattern=f"^{SERVICE_ACCOUNT_TOKEN_PREFIX}{SERVICE_ACCOUNT_ID_PREFIX}[^.]+\\.",
        description=f"`{SERVICE_ACCOUNT_TOKEN_PREFIX}<client_id>.<secret>`, shown this once. "
        "Trade it for an access token with the client credentials grant: HTTP Basic "
        "`<client_id>:<token>`, or the token alone as `client_secret`.",
    )


class PrivateKey(BaseModel):
    """A private JWK (RFC 7517) with `kid` and `alg`."""

    model_config = ConfigDict(extra="allow", strict=True)

    kty: StrictStr
    kid: StrictStr
    alg: Literal[KEY_ALGORITHMS]  # type: ignore[valid-type]
    d: StrictStr


class KeyFile(Shape):
    """A service-account key file, shown this once: save it as a file readable by its
    holder only and use it with `authserver token --key-file PATH` (or
    `AUTHSERVER_CREDENTIALS=PATH`), or sign `private_key_jwt` client assertions
    (RFC 7523 §2.2) with `private_key` yourself. Only its public key is stored here."""

    type: Literal[KEY_FILE_TYPE]  # type: ignore[valid-type]
    name: StrictStr
    client_id: ClientId
    key_id: StrictStr
    issuer: StrictStr
    token_url: StrictStr
    private_key: PrivateKey


class ServiceAccountKeyFile(Shape):
    service_account: ServiceAccount
    key_file: KeyFile


class ServiceAccountKey(Shape):
    """The public half of a key file: its id and age (never the key)."""

    kid: StrictStr
    algorithm: Literal[KEY_ALGORITHMS]  # type: ignore[valid-type]
    created_at: Timestamp
    created_by: StrictStr | None


class ServiceAccountKeyList(Shape):
    items: list[ServiceAccountKey]


class Client(Shape):
    """A static client of the config file."""

    client_id: StrictStr
    type: Literal["public", "confidential"]
    grant_types: list[StrictStr]
    redirect_uris: list[StrictStr]
    scopes: list[StrictStr]
    roles: list[StrictStr]
    consent: StrictBool
    introspect: StrictBool


class ClientList(Shape):
    items: list[Client]


class Key(Shape):
    """A signing key; `use` tells its line (access tokens or ID tokens)."""

    kid: StrictStr
    algorithm: StrictStr
    use: Literal["access_token", "id_token"]
    state: Literal["next", "active", "retired", "expired"]
    created_at: Timestamp
    signs_from: Timestamp
    published_until: Timestamp | None = Field(
        description="Until when it stays in JWKS; null while next or active."
    )


class KeyList(Shape):
    items: list[Key]


class KeysRotated(Shape):
    created: list[StrictStr] = Field(description="The kids of the new keys, one per line.")
    items: list[Key]


class AuditEvent(Shape):
    id: StrictInt = Field(ge=1)
    at: Timestamp
    event: StrictStr
    actor: StrictStr | None
    client_id: StrictStr | None
    target: StrictStr | None
    address: StrictStr | None
    details: dict[str, Any]


class AuditEventPage(Shape):
    items: list[AuditEvent]
    next: Annotated[StrictStr, WithJsonSchema({"type": "string", "format": "uri"})] | None = Field(
        description="The URL of the next (older) page; null on the last page."
    )


class OpenApiDocument(RootModel[dict[str, Any]]):
    """The OpenAPI 3.1 document."""


# -- refusals ---------------------------------------------------------------------------------


def describe(error: ValidationError, data: dict[str, Any]) -> str:
    """The one-line ``error_description`` of a refused ``data``: its first fault in the
    order the API has always looked: each field in the order ``data`` gives them (one it
    does not know, or a value of the wrong type), then a required field left out, then
    an item of a list; a model's own validators word theirs."""
    order = {key: index for index, key in enumerate(data)}

    def rank(fault: Any) -> tuple[int, int]:
        if fault["type"] == "missing":
            return (1, 0)
        if len(fault["loc"]) > 1:
            return (2, 0)
        return (0, order.get(fault["loc"][0], len(order)))

    fault = sorted(error.errors(), key=rank)[0]  # a stable sort keeps the fields' order
    field = str(fault["loc"][0])
    if fault["type"] == WORDED:
        return str(fault["msg"])
    if fault["type"] == "extra_forbidden":
        return f"Unknown field '{field[:64]}'."
    if fault["type"] == "missing":
        return f"The field '{field}' is required."
    if len(fault["loc"]) > 1:  # every list of a request holds strings
        return f"The field '{field}' must be a list of strings."
    return f"The field '{field}' has the wrong type."
