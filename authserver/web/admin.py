"""What the admin API and the dashboard both do: the operations, their audit events,
and the JSON shapes of users, roles, clients, service accounts and keys.

Each operation records an audit event naming the actor (``set_actor`` was called by
the API's token check or the dashboard's sign-in check) and the client's address.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from enum import Enum
from typing import IO, Any

from ..identity.service_accounts import ServiceAccountInfo, ServiceAccountService
from ..identity.users import NotFound, Person, UserError, UserService, check_role
from ..key_file import KeyFile
from ..oauth.clients import Client
from ..storage.audit import SqlAuditLog
from .adapter import app_settings
from .services import services

#: The role that may change things (DESIGN.md "Admin API"; issue #4).
ADMIN_ROLE = "admin"
#: Roles that may read users and roles.
READER_ROLES = frozenset({"admin", "user"})


def users() -> UserService:
    service = services().users
    return service


def service_accounts() -> ServiceAccountService:
    service = services().service_accounts
    return service


def audit_log() -> SqlAuditLog:
    """The audit log, with this worker's batched events written first."""
    services().events.flush()
    log = services().audit
    return log


def audit(event: str, **details: Any) -> None:
    services().events(event, **details)


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


# -- shapes ---------------------------------------------------------------------------


def user_json(person: Person) -> dict[str, Any]:
    return {
        "id": person.id,
        "username": person.username,
        "email": person.email,
        "email_verified": person.email_verified,
        "name": person.name,
        "role": person.role,
        "groups": list(person.groups),
        "source": person.source,
        "disabled": person.disabled,
        "created_at": _iso(person.created_at),
        "last_login_at": _iso(person.last_login_at),
    }


def roles_json() -> list[dict[str, Any]]:
    rbac = app_settings().rbac
    return [
        {"name": name, "permissions": list(perms), "default": name == rbac.default_role}
        for name, perms in rbac.roles.items()
    ]


def client_json(client: Client) -> dict[str, Any]:
    return {
        "client_id": client.client_id,
        "type": "public" if client.is_public else "confidential",
        "grant_types": list(client.grant_types),
        "redirect_uris": list(client.redirect_uris),
        "scopes": list(client.scopes),
        "roles": list(client.roles),
        "consent": client.consent,
        "introspect": client.introspect,
    }


def static_clients() -> list[Client]:
    store = services().clients
    return sorted(store.all(), key=lambda c: c.client_id)


def keys_json() -> list[dict[str, Any]]:
    lines = services().key_lines
    result = []
    for index, line in enumerate(lines):
        for status in line.statuses():
            result.append(
                {
                    "kid": status.kid,
                    "algorithm": status.algorithm,
                    "use": "access_token" if index == 0 else "id_token",
                    "state": status.state,
                    "created_at": _iso(status.created_at),
                    "signs_from": _iso(status.activates_at),
                    "published_until": _iso(status.published_until),
                }
            )
    return result


# -- operations -------------------------------------------------------------------------


class Keep(Enum):
    """``update_user``'s "leave the email address as it is" (``None`` removes it)."""

    KEEP = "keep"


KEEP = Keep.KEEP


def create_user(
    username: str, role: str | None, password: str | None, email: str | None = None
) -> tuple[Person, str | None]:
    person, generated = users().create_local(username, password, role, email)
    details = {"email": person.email} if person.email else {}
    audit("user_created", target=person.username, role=person.role, **details)
    return person, generated


def update_user(
    username: str, *, role: str | None, disabled: bool | None, email: str | Keep | None = KEEP
) -> Person:
    """Change what is given. The role is checked and the email address set first, so
    that a bad role or a taken or malformed address (``UserError``) changes nothing."""
    service = users()
    person = service.by_username(username)
    if person is None:
        raise NotFound(f"no user {username!r}")
    if role is not None:
        check_role(app_settings().rbac, role)
    if email is not KEEP:
        address = email if isinstance(email, str) else None
        if address != person.email or (address is not None and not person.email_verified):
            person = service.set_email(person.username, address)
            audit("user_updated", target=person.username, email=person.email)
    if role is not None and role != person.role:
        person = service.set_role(person.username, role)
        audit("user_updated", target=person.username, role=role)
    if disabled is not None and disabled != person.disabled:
        person = service.set_disabled(person.username, disabled)
        audit("user_updated", target=person.username, disabled=disabled)
    return person


def delete_user(username: str) -> Person:
    person = users().delete(username)
    audit("user_deleted", target=person.username)
    return person


def change_password(person: Person, password: str) -> None:
    """A local user's new password (``UserError`` for one that signs in elsewhere)."""
    if person.source != "local":
        raise UserError(
            f"user {person.username!r} signs in through {person.source}; it has no password here"
        )
    users().set_password(person.username, password)
    audit("password_changed", target=person.username)


def import_users(stream: IO[str] | Iterable[str]) -> int:
    count = users().import_csv(stream)
    audit("users_imported", count=count)
    return count


def create_service_account(
    name: str, role: str | None, scopes: list[str] | None, expires_in: float | None, actor: str
) -> tuple[ServiceAccountInfo, str]:
    info, token = service_accounts().create(
        name, role=role, scopes=scopes, expires_in=expires_in, created_by=actor
    )
    audit(
        "service_account_created",
        target=info.name,
        client_id=info.client_id,
        role=info.role,
        expires_at=_iso(info.expires_at),
    )
    return info, token


def create_service_account_with_key(
    name: str,
    role: str | None,
    scopes: list[str] | None,
    expires_in: float | None,
    actor: str,
    algorithm: str,
) -> tuple[ServiceAccountInfo, KeyFile]:
    info, key_file = service_accounts().create_with_key(
        name,
        role=role,
        scopes=scopes,
        expires_in=expires_in,
        created_by=actor,
        algorithm=algorithm,
    )
    audit(
        "service_account_created",
        target=info.name,
        client_id=info.client_id,
        role=info.role,
        expires_at=_iso(info.expires_at),
        kid=key_file.key_id,
    )
    return info, key_file


def add_service_account_key(
    name: str, actor: str, algorithm: str
) -> tuple[ServiceAccountInfo, KeyFile]:
    info, key_file = service_accounts().add_key(name, created_by=actor, algorithm=algorithm)
    audit(
        "service_account_key_added",
        target=info.name,
        client_id=info.client_id,
        kid=key_file.key_id,
        algorithm=key_file.algorithm,
    )
    return info, key_file


def remove_service_account_key(name: str, kid: str) -> ServiceAccountInfo:
    info = service_accounts().remove_key(name, kid)
    audit("service_account_key_removed", target=info.name, client_id=info.client_id, kid=kid)
    return info


def rotate_service_account(name: str) -> tuple[ServiceAccountInfo, str]:
    info, token = service_accounts().rotate(name)
    audit("service_account_rotated", target=info.name, client_id=info.client_id)
    return info, token


def revoke_service_account(name: str) -> ServiceAccountInfo:
    info = service_accounts().revoke(name)
    audit("service_account_revoked", target=info.name, client_id=info.client_id)
    return info


def rotate_keys(immediate: bool) -> list[str]:
    """Every key line rotates together (as ``authserver keys rotate``); the new kids."""
    lines = services().key_lines
    kids = [line.rotate(immediate=immediate).kid for line in lines]
    audit("keys_rotated", target=",".join(kids), immediate=immediate)
    return kids
