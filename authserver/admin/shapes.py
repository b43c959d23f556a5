"""The JSON shapes of users, roles, clients and keys: what the admin API returns, the
dashboard shows and ``--output json`` prints."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from ..identity.users import Person
from ..keys import KeyManager
from ..oauth.clients import Client
from ..settings import RbacSettings


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


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


def roles_json(rbac: RbacSettings) -> list[dict[str, Any]]:
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


def keys_json(lines: Sequence[KeyManager]) -> list[dict[str, Any]]:
    """Every key of every line; the first line signs access tokens, the other ID tokens."""
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
