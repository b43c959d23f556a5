"""People: local users with passwords, federated users, auth-proxy users, and their roles.

:class:`UserService` is the one object the rest of the server asks about people: what
every kind of person shares (reading, role, email address, password, disabled,
deletion) is here; local passwords are :mod:`.local_users`, federated and proxy users
:mod:`.provisioning`, the rules of names and addresses :mod:`.user_rules`, and files of
users (CSV) :mod:`authserver.admin.csv`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace
from typing import IO, Protocol

from ..oauth.refresh import FamilySummary
from ..settings import InitialAdminSettings, RbacSettings
from ..storage.users import DuplicateEmail, SqlUserRepository
from . import passwords
from .local_users import LocalUsers
from .provisioning import Provisioning
from .user_records import UserRecords
from .user_rules import (
    FORMULA_STARTS,
    MAX_EMAIL_LENGTH,
    MAX_EMAIL_LOCAL_LENGTH,
    MAX_PASSWORD_LENGTH,
    MAX_USERNAME_LENGTH,
    MIN_PASSWORD_LENGTH,
    AlreadyExists,
    EmailTaken,
    NotFound,
    Person,
    UserError,
    check_role,
    generate_password,
    normalize_username,
    validate_email,
    validate_password,
    validate_username,
)

__all__ = [
    "FORMULA_STARTS",
    "MAX_EMAIL_LENGTH",
    "MAX_EMAIL_LOCAL_LENGTH",
    "MAX_PASSWORD_LENGTH",
    "MAX_USERNAME_LENGTH",
    "MIN_PASSWORD_LENGTH",
    "AlreadyExists",
    "EmailTaken",
    "NotFound",
    "Person",
    "UserError",
    "UserService",
    "check_role",
    "generate_password",
    "normalize_username",
    "validate_email",
    "validate_password",
    "validate_username",
]


class RefreshFamilies(Protocol):
    """The owner of refresh-token families (``authserver.oauth.refresh.RefreshTokens``)."""

    def revoke_for_user(self, user_id: str, reason: str) -> int: ...

    def live_for_user(self, user_id: str) -> Sequence[FamilySummary]: ...


class UserService:
    """The rules about people, over a ``SqlUserRepository``: what every kind of person
    shares here, the rest handed to :attr:`local`; federated and proxy users are
    :attr:`provisioning`'s (``users.provisioning.federated(…)``)."""

    def __init__(
        self,
        repository: SqlUserRepository,
        rbac: RbacSettings,
        *,
        clock: Callable[[], float] = time.time,
        refresh_families: RefreshFamilies | None = None,
    ) -> None:
        self._repo = repository
        #: The owner of refresh-token families (``oauth.refresh.RefreshTokens``); none
        #: only where no tokens are issued (this service tested alone).
        self._refresh_families = refresh_families
        self.records = UserRecords(repository, rbac, clock=clock)
        self.local = LocalUsers(self.records)
        self.provisioning = Provisioning(self.records)

    # -- reading ------------------------------------------------------------------

    def get(self, user_id: str) -> Person | None:
        record = self._repo.get(user_id)
        return record.person if record else None

    def by_username(self, username: str) -> Person | None:
        record = self.records.lookup(username)
        return record.person if record else None

    def list(self) -> list[Person]:
        """Every person, ordered by username."""
        return [record.person for record in self._repo.list()]

    def usernames(self, user_ids: Iterable[str]) -> dict[str, str]:
        """``{id: username}`` for the ids that name a person, in one lookup."""
        return self._repo.usernames(user_ids)

    def signed_in_clients(self, person: Person) -> Sequence[FamilySummary]:
        """The person's refresh-token families that can still refresh (one per sign-in
        of a client that got a refresh token), most recently used first."""
        if self._refresh_families is None:
            return []
        return self._refresh_families.live_for_user(person.id)

    def set_role(self, username: str, role: str, *, keep_one: str | None = None) -> Person:
        """``keep_one``: refuse (``LastOfRole``) if no other enabled person would keep
        that role, decided in the write's own transaction (the admin layer's rule)."""
        record = self.records.existing(username)
        role = self.records.role(role)
        self._repo.update_keeping_one(record.person.id, keep_one, role=role)
        return replace(record.person, role=role)

    def set_email(self, username: str, email: str | None) -> Person:
        """Set (or, with ``None``, remove) a local user's email address; one an admin
        sets is verified (DESIGN.md). Upstream and proxy users' addresses come from there."""
        person = self.records.existing(username).person
        if person.source != "local":
            raise UserError(
                f"user {person.username!r} signs in through {person.source}; their email "
                "address comes from there"
            )
        address = validate_email(email) if email is not None else None
        if address is not None:
            self.records.check_email_free(address, person.id)
        verified = True if address is not None else None
        try:
            self._repo.update(person.id, email=address, email_verified=verified)
        except DuplicateEmail:
            raise EmailTaken(f"another user has the email address {address!r}") from None
        return replace(person, email=address, email_verified=verified)

    def set_password(self, username: str, password: str) -> Person:
        """A new password; the person's refresh tokens die with the old one (a reset
        is how an account is taken back)."""
        record = self.records.existing(username)
        validate_password(password)
        self._repo.new_credentials(
            record.person.id,
            password_hash=passwords.hash_password(password),
            password_must_change=False,
        )
        self._revoke_refresh_families(record.person.id, "password")
        return replace(
            record.person,
            credentials_generation=record.person.credentials_generation + 1,
            password_must_change=False,
        )

    def end_sessions(self, username: str) -> tuple[Person, int]:
        """Sign a person out everywhere: every browser session (the credentials
        generation goes up, as a new password raises it) and every refresh-token family
        with the access tokens those issued. Returns how many families were live."""
        record = self.records.existing(username)
        self._repo.new_credentials(record.person.id)
        revoked = 0
        if self._refresh_families is not None:
            revoked = self._refresh_families.revoke_for_user(record.person.id, "signed_out")
        person = replace(
            record.person, credentials_generation=record.person.credentials_generation + 1
        )
        return person, revoked

    def set_disabled(self, username: str, disabled: bool, *, keep_one: str | None = None) -> Person:
        """Disable (or enable) a person: they can no longer sign in, by any route.
        ``keep_one``: as for :meth:`set_role`."""
        record = self.records.existing(username)
        self._repo.update_keeping_one(record.person.id, keep_one, disabled=disabled)
        return replace(record.person, disabled=disabled)

    def delete(self, username: str, *, keep_one: str | None = None) -> Person:
        """Delete a person, their refresh tokens and the live access tokens those issued.
        ``keep_one``: as for :meth:`set_role` (in the rare race it settles, the refused
        person's tokens have ended already: they sign in again)."""
        record = self.records.existing(username)
        self._revoke_refresh_families(record.person.id, "user_deleted")
        if not self._repo.delete(record.person.id, keep_one=keep_one):
            raise NotFound(f"no user {record.person.username!r}")
        return record.person

    def _revoke_refresh_families(self, user_id: str, reason: str) -> None:
        """Through the families' owner, so that their live access tokens die too."""
        if self._refresh_families is not None:
            self._refresh_families.revoke_for_user(user_id, reason)

    # -- local users (.local_users) ---------------------------------------------------

    def create_local(
        self,
        username: str,
        password: str | None = None,
        role: str | None = None,
        email: str | None = None,
    ) -> tuple[Person, str | None]:
        """See :meth:`LocalUsers.create_local`."""
        return self.local.create_local(username, password, role, email)

    def authenticate(self, username: str, password: str) -> Person | None:
        """See :meth:`LocalUsers.authenticate`."""
        return self.local.authenticate(username, password)

    def check_password(self, username: str, password: str) -> bool:
        """See :meth:`LocalUsers.check_password`."""
        return self.local.check_password(username, password)

    def import_htpasswd(self, stream: IO[str] | Iterable[str], role: str | None = None) -> int:
        """See :meth:`LocalUsers.import_htpasswd`."""
        return self.local.import_htpasswd(stream, role)

    def ensure_initial_admin(self, initial: InitialAdminSettings | None) -> str | None:
        """See :meth:`LocalUsers.ensure_initial_admin`."""
        return self.local.ensure_initial_admin(initial)
