"""The admin layer (:mod:`authserver.admin`) as the admin API and the dashboard use it:
its operations over this app's services, done by who acts in this request (named by
``set_actor`` in the API's token check or the dashboard's sign-in check) from the
client's address; and the JSON shapes, with this app's settings and keys.
"""

from __future__ import annotations

from typing import Any

from ..admin import shapes
from ..admin.keys import KeyAdmin
from ..admin.service_accounts import ServiceAccountAdmin
from ..admin.shapes import client_json, user_json
from ..admin.users import ADMIN_ROLE, KEEP, UserAdmin
from ..identity.service_accounts import ServiceAccountService
from ..identity.users import UserService
from ..keys import KeyManager
from ..oauth.clients import Client
from ..storage.audit import SqlAuditLog
from .adapter import app_settings
from .audit import request_actor
from .services import services

__all__ = [
    "ADMIN_ROLE",
    "KEEP",
    "READER_ROLES",
    "audit_log",
    "client_json",
    "key_admin",
    "keys_json",
    "roles_json",
    "service_account_admin",
    "service_accounts",
    "static_clients",
    "user_admin",
    "user_json",
    "users",
]

#: Roles that may read users and roles.
READER_ROLES = frozenset({"admin", "user"})


def users() -> UserService:
    return services().users


def service_accounts() -> ServiceAccountService:
    return services().service_accounts


def key_lines() -> list[KeyManager]:
    return list(services().key_lines)


def user_admin() -> UserAdmin:
    """The operations on people, done by this request's actor."""
    return UserAdmin(users(), app_settings().rbac, services().events, request_actor())


def service_account_admin() -> ServiceAccountAdmin:
    """The operations on service accounts, done by this request's actor."""
    return ServiceAccountAdmin(service_accounts(), services().events, request_actor())


def key_admin() -> KeyAdmin:
    """The operations on the signing keys, done by this request's actor."""
    return KeyAdmin(key_lines(), services().events, request_actor())


def audit_log() -> SqlAuditLog:
    """The audit log, with this worker's batched events written first."""
    services().events.flush()
    return services().audit


def roles_json() -> list[dict[str, Any]]:
    return shapes.roles_json(app_settings().rbac)


def keys_json() -> list[dict[str, Any]]:
    return shapes.keys_json(key_lines())


def static_clients() -> list[Client]:
    store = services().clients
    return sorted(store.all(), key=lambda c: c.client_id)
