"""Provisioning of people who sign in elsewhere: federated users (an upstream OIDC
provider's ``iss``/``sub``) and users a trusted auth proxy names by email, created on
first sight.

A federated person is known by the upstream ``(iss, sub)`` pair only, never by email,
so an upstream account can never take over a local one that happens to share its
address.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, replace

from ..storage.users import DuplicateUser, UserRecord
from .user_records import UserRecords
from .user_rules import MAX_USERNAME_LENGTH, Person, UserError, usable_name


@dataclass(eq=False)
class Provisioning:
    """Federated and proxy users, created or refreshed at each sign-in."""

    records: UserRecords

    def federated(
        self,
        issuer: str,
        subject: str,
        *,
        email: str | None,
        name: str | None,
        groups: Iterable[str],
        email_verified: bool | None = None,
    ) -> Person:
        """The person an upstream ID token (``iss``, ``sub``) names; created on first sight.

        First sign-in: username is the lower-cased email when the IdP says it verified
        it (``email_verified: true``; issue 16.3: an unverified address is anyone's to
        type), else the ``sub`` with ``#`` and a short hash of the pair (as is a
        verified email another user already has); role from
        ``rbac.group_roles``. Later sign-ins refresh email, name and groups but keep
        the role, which an admin may have changed. A disabled person is returned too:
        callers check ``disabled``.
        """
        if isinstance(groups, str):  # a lone group, not its characters
            groups = [groups]
        group_list = tuple(dict.fromkeys(str(group) for group in groups))
        existing = self.records.repo.by_upstream(issuer, subject)
        if existing is None:
            existing, created = self._create_federated(
                issuer, subject, email, name, group_list, email_verified
            )
            if created:
                return existing.person
        now = None if existing.person.disabled else self.records.now()
        changes: dict[str, object] = {
            "email": email,
            "name": name,
            "groups": group_list,
            "email_verified": email_verified if email else None,
        }
        if now is not None:
            changes["last_login_at"] = now
        self.records.repo.update(existing.person.id, **changes)
        return replace(
            existing.person,
            email=email,
            name=name,
            groups=group_list,
            last_login_at=now or existing.person.last_login_at,
            email_verified=email_verified if email else None,
        )

    def proxy_user(self, email: str) -> Person:
        """The person a trusted auth proxy's email header names; created on first sight.

        Only a ``proxy`` user matches: a local or federated user with that username is
        not taken over (``UserError``).
        """
        address = usable_name(email)
        if address is None or "@" not in address:
            raise UserError("the proxy's email header does not hold an email address")
        now = self.records.now()
        for _attempt in range(2):
            record = self.records.repo.by_username(address)
            if record is not None:
                if record.person.source != "proxy":
                    raise UserError(
                        f"user {address!r} exists and is not a proxy user; it is not taken over"
                    )
                if record.person.disabled:
                    return record.person
                self.records.repo.update(record.person.id, last_login_at=now)
                return replace(record.person, last_login_at=now)
            record = self.records.new_record(
                address,
                self.records.rbac.default_role,
                "proxy",
                email=address,
                last_login_at=now,
                email_verified=True,  # DESIGN.md: a trusted proxy asserted it
            )
            try:
                self.records.repo.insert(record)
            except DuplicateUser:
                continue  # another request created them first: read theirs
            return record.person
        raise UserError(f"user {address!r} could not be created")

    def _create_federated(
        self,
        issuer: str,
        subject: str,
        email: str | None,
        name: str | None,
        groups: tuple[str, ...],
        email_verified: bool | None = None,
    ) -> tuple[UserRecord, bool]:
        """Insert the person: ``(record, True)``; or a concurrent sign-in's ``(record, False)``."""
        pair = hashlib.sha256(f"{issuer}\x00{subject}".encode()).hexdigest()[:10]
        address = usable_name(email) if email and email_verified else None
        if address is not None:
            base = address[: MAX_USERNAME_LENGTH - 11]
            candidates: tuple[str, ...] = (base, f"{base}#{pair}")
        else:  # never a bare sub either: it could be a local user's name
            base = (usable_name(subject) or "upstream")[: MAX_USERNAME_LENGTH - 11]
            candidates = (f"{base}#{pair}",)
        now = self.records.now()
        for username in candidates:
            record = self.records.new_record(
                username,
                self._role_for_groups(groups),
                "upstream",
                email=email,
                name=name,
                groups=groups,
                upstream_issuer=issuer,
                upstream_subject=subject,
                last_login_at=now,
                email_verified=email_verified if email else None,
            )
            try:
                self.records.repo.insert(record)
            except DuplicateUser:
                winner = self.records.repo.by_upstream(issuer, subject)
                if winner is not None:
                    return winner, False  # a concurrent first sign-in made them
                continue  # the username is another person's
            return record, True
        raise UserError(f"no free username for upstream user {subject!r} of {issuer}")

    def _role_for_groups(self, groups: Iterable[str]) -> str:
        """The first role of ``rbac.roles`` (in config order) that one of ``groups`` maps to."""
        mapped = {
            self.records.rbac.group_roles[g] for g in groups if g in self.records.rbac.group_roles
        }
        for role in self.records.rbac.roles:
            if role in mapped:
                return role
        return self.records.rbac.default_role
