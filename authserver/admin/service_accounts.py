"""Service accounts, as admins change them: create (with a token or a key file), keys,
rotate, revoke; one copy for the admin API, the dashboard and the CLI, with the same
audit events from each."""

from __future__ import annotations

import builtins
from dataclasses import dataclass
from datetime import datetime

from ..identity.service_accounts import (
    ServiceAccountInfo,
    ServiceAccountKeyInfo,
    ServiceAccountService,
)
from ..key_file import KeyFile
from .audit import Actor, EventSink, record


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


@dataclass(eq=False)
class ServiceAccountAdmin:
    """The admin operations on service accounts, done by ``by`` (who is also their
    ``created_by``)."""

    service: ServiceAccountService
    events: EventSink
    by: Actor

    def list(self) -> builtins.list[ServiceAccountInfo]:
        return self.service.list()

    def get(self, name: str) -> ServiceAccountInfo:
        return self.service.get(name)

    def keys(self, name: str) -> builtins.list[ServiceAccountKeyInfo]:
        return self.service.keys(name)

    def create(
        self,
        name: str,
        role: str | None,
        scopes: builtins.list[str] | None,
        expires_in: float | None,
    ) -> tuple[ServiceAccountInfo, str]:
        """A service account and its token (returned once)."""
        info, token = self.service.create(
            name, role=role, scopes=scopes, expires_in=expires_in, created_by=self.by.name
        )
        self._created(info)
        return info, token

    def create_with_key(
        self,
        name: str,
        role: str | None,
        scopes: builtins.list[str] | None,
        expires_in: float | None,
        algorithm: str,
    ) -> tuple[ServiceAccountInfo, KeyFile]:
        """A service account and the key file of its first key (returned once)."""
        info, key_file = self.service.create_with_key(
            name,
            role=role,
            scopes=scopes,
            expires_in=expires_in,
            created_by=self.by.name,
            algorithm=algorithm,
        )
        self._created(info, kid=key_file.key_id)
        return info, key_file

    def add_key(self, name: str, algorithm: str) -> tuple[ServiceAccountInfo, KeyFile]:
        info, key_file = self.service.add_key(name, created_by=self.by.name, algorithm=algorithm)
        self._record(
            "service_account_key_added", info, kid=key_file.key_id, algorithm=key_file.algorithm
        )
        return info, key_file

    def remove_key(self, name: str, kid: str) -> ServiceAccountInfo:
        info = self.service.remove_key(name, kid)
        self._record("service_account_key_removed", info, kid=kid)
        return info

    def rotate(self, name: str) -> tuple[ServiceAccountInfo, str]:
        """A new token (returned once); the old one stops working."""
        info, token = self.service.rotate(name)
        self._record("service_account_rotated", info, role=info.role)
        return info, token

    def revoke(self, name: str) -> ServiceAccountInfo:
        """Delete the account: its token and keys stop working."""
        info = self.service.revoke(name)
        self._record("service_account_revoked", info, role=info.role)
        return info

    def _created(self, info: ServiceAccountInfo, **extra: str) -> None:
        self._record(
            "service_account_created",
            info,
            role=info.role,
            scopes=" ".join(info.scopes),
            expires_at=_iso(info.expires_at),
            **extra,
        )

    def _record(self, event: str, info: ServiceAccountInfo, **fields: str | None) -> None:
        """An audit event about ``info``, done by :attr:`by`."""
        record(self.events, self.by, event, target=info.name, client_id=info.client_id, **fields)
