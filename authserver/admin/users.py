"""People, as admins change them: create, update, delete, passwords, files of users.

One copy of each operation for the admin API, the dashboard and the CLI, with its rules
and its audit event: whichever front end makes a change, the ``audit_events`` row is
the same.
"""

from __future__ import annotations

import builtins
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from enum import Enum
from typing import IO

from ..identity.users import NotFound, Person, UserError, UserService, check_role
from ..oauth.throttle import FailureThrottle
from ..settings import RbacSettings
from ..storage.users import LastOfRole
from .audit import Actor, EventSink, record
from .csv import Progress, export_csv, import_csv

#: The role that may change things (DESIGN.md "Admin API"; issue #4).
ADMIN_ROLE = "admin"


class Keep(Enum):
    """:meth:`UserAdmin.update`'s "leave the email address as it is" (``None`` removes it)."""

    KEEP = "keep"


KEEP = Keep.KEEP


class CurrentPasswordRefused(UserError):
    """One's own password change without the right current password."""


class TooManyWrongPasswords(CurrentPasswordRefused):
    """Too many wrong current passwords for this account from this address."""


def check_not_yourself(by: Actor, target: Person | None, what: str) -> None:
    """An admin may not lock themself out (disable, demote or delete themself) from a
    front end: another admin, or the CLI, must do it."""
    if target is not None and by.person_id is not None and target.id == by.person_id:
        raise UserError(
            f"You cannot {what} yourself here; another admin, or `authserver users`, can."
        )


class LastAdmin(UserError):
    """A change that would leave no enabled person with the admin role: no one could
    then administer the server from the admin API or the dashboard."""

    @classmethod
    def of(cls, username: str, what: str) -> LastAdmin:
        return cls(
            f"refusing to {what} {username!r}: they are the last enabled admin; "
            "make another admin first"
        )


def check_not_last_admin(users: UserService, target: Person, what: str) -> None:
    """Refuse (:class:`LastAdmin`) to ``what`` (demote, disable, delete) ``target`` if
    they are the last enabled admin. Service accounts with the admin role do not count:
    they are not people and cannot use the dashboard."""
    if target.role != ADMIN_ROLE or target.disabled:
        return
    if any(
        other.role == ADMIN_ROLE and not other.disabled and other.id != target.id
        for other in users.list()
    ):
        return
    raise LastAdmin.of(target.username, what)


@contextmanager
def _last_admin(target: Person | None, what: str) -> Iterator[None]:
    """The storage's refusal (``LastOfRole``) as :class:`LastAdmin`.

    A change that may take the admin role away (demote, disable, delete) asks the storage
    to keep one enabled admin (``keep_one=ADMIN_ROLE``): :func:`check_not_last_admin`
    refuses with its advice first, from what the caller read; the storage checks again
    inside the write, against the row as it is then (two admins removing each other at
    once, or a target promoted meanwhile)."""
    try:
        yield
    except LastOfRole as exc:
        raise LastAdmin.of(target.username if target is not None else "?", what) from exc


@dataclass(eq=False)
class UserAdmin:
    """The admin operations on people, done by ``by``."""

    users: UserService
    rbac: RbacSettings
    events: EventSink
    by: Actor

    def list(self) -> builtins.list[Person]:
        return self.users.list()

    def get(self, username: str) -> Person:
        person = self.users.by_username(username)
        if person is None:
            raise NotFound(f"no user {username!r}")
        return person

    def create(
        self,
        username: str,
        role: str | None,
        password: str | None,
        email: str | None = None,
    ) -> tuple[Person, str | None]:
        """A local user; the password is generated (and returned, once) if not given."""
        person, generated = self.users.create_local(username, password, role, email)
        details = {"email": person.email} if person.email else {}
        record(
            self.events,
            self.by,
            "user_created",
            target=person.username,
            role=person.role,
            **details,
        )
        return person, generated

    def update(
        self,
        username: str,
        *,
        role: str | None,
        disabled: bool | None,
        email: str | Keep | None = KEEP,
    ) -> Person:
        """Change what is given, and only what differs. The role is checked and the
        email address set first, so that a bad role or a taken or malformed address
        (``UserError``) changes nothing; nor does taking the admin role from oneself or
        disabling oneself (:func:`check_not_yourself`), or from the last enabled admin
        (:func:`check_not_last_admin`, checked first: its advice is the one that helps).
        Only if the last admin's role is taken in a race between the check and the write
        (:func:`_last_admin`) does an email address set first stay."""
        person = self.get(username)
        if role is not None and role != ADMIN_ROLE:
            check_not_last_admin(self.users, person, "take the admin role from")
            check_not_yourself(self.by, person, "take the admin role from")
        if disabled:
            check_not_last_admin(self.users, person, "disable")
            check_not_yourself(self.by, person, "disable")
        if role is not None:
            check_role(self.rbac, role)
        if email is not KEEP:
            address = email if isinstance(email, str) else None
            if address != person.email or (address is not None and not person.email_verified):
                person = self.users.set_email(person.username, address)
                self._updated(person, email=person.email)
        if role is not None and role != person.role:
            with _last_admin(person, "take the admin role from"):
                keep = ADMIN_ROLE if role != ADMIN_ROLE else None
                person = self.users.set_role(person.username, role, keep_one=keep)
            self._updated(person, role=role)
        if disabled is not None and disabled != person.disabled:
            with _last_admin(person, "disable"):
                person = self.users.set_disabled(
                    person.username, disabled, keep_one=ADMIN_ROLE if disabled else None
                )
            self._updated(person, disabled=disabled)
        return person

    def set_role(self, username: str, role: str) -> Person:
        """``authserver users set-role``: the role, set (and recorded) even if unchanged;
        never the admin role taken from the last enabled admin (:func:`check_not_last_admin`)."""
        target = self.users.by_username(username)
        if target is not None and role != ADMIN_ROLE:
            check_not_last_admin(self.users, target, "take the admin role from")
        with _last_admin(target, "take the admin role from"):
            keep = ADMIN_ROLE if role != ADMIN_ROLE else None
            person = self.users.set_role(username, role, keep_one=keep)
        self._updated(person, role=person.role)
        return person

    def set_email(self, username: str, email: str | None) -> Person:
        """``authserver users set-email``: set or (``None``) remove the address."""
        person = self.users.set_email(username, email)
        self._updated(person, email=person.email)
        return person

    def delete(self, username: str) -> Person:
        """Delete a person and their refresh tokens (never oneself, nor the last enabled
        admin)."""
        target = self.users.by_username(username)
        if target is not None:
            check_not_last_admin(self.users, target, "delete")
        check_not_yourself(self.by, target, "delete")
        with _last_admin(target, "delete"):
            person = self.users.delete(username, keep_one=ADMIN_ROLE)
        record(self.events, self.by, "user_deleted", target=person.username)
        return person

    def change_password(self, person: Person, password: str) -> None:
        """A local user's new password (``UserError`` for one who signs in elsewhere)."""
        if person.source != "local":
            raise UserError(
                f"user {person.username!r} signs in through {person.source}; "
                "it has no password here"
            )
        self.users.set_password(person.username, password)
        record(self.events, self.by, "password_changed", target=person.username)

    def sign_out_everywhere(self, person: Person) -> int:
        """End every session of ``person`` (browsers, and refresh tokens with the access
        tokens those issued; :meth:`UserService.end_sessions`); how many refresh-token
        families were live."""
        person, revoked = self.users.end_sessions(person.username)
        record(
            self.events,
            self.by,
            "signed_out_everywhere",
            target=person.username,
            refresh_families=revoked,
        )
        return revoked

    def check_current_password(
        self, person: Person, current: str | None, throttle: FailureThrottle, address: str
    ) -> None:
        """One's own password changes only with the current one (a stolen access token
        must not become the account), under the sign-in page's limits on wrong
        passwords: :class:`TooManyWrongPasswords`, or :class:`CurrentPasswordRefused`
        for a missing or wrong one."""
        if throttle.refusal(person.username, address) is not None:
            raise TooManyWrongPasswords("Too many wrong passwords; try again later.")
        if current is None or not self.users.check_password(person.username, current):
            throttle.failed(person.username, address)
            raise CurrentPasswordRefused(
                "The current password (current_password) is missing or wrong."
            )

    def import_csv(self, stream: IO[str] | Iterable[str], progress: Progress | None = None) -> int:
        """Local users from CSV, all or none, created only (:func:`.csv.import_csv`)."""
        count = import_csv(self.users.records, stream, progress)
        record(self.events, self.by, "users_imported", count=count)
        return count

    def import_htpasswd(self, lines: Iterable[str], role: str | None) -> int:
        """Local users from htpasswd lines, all or none (``UserService.import_htpasswd``)."""
        count = self.users.import_htpasswd(lines, role)
        record(self.events, self.by, "users_imported", count=count, format="htpasswd")
        return count

    def export_csv(self, stream: IO[str]) -> int:
        """Every person as CSV, never a password; returns the count."""
        return export_csv(self.users.records, stream)

    def _updated(self, person: Person, **change: object) -> None:
        record(self.events, self.by, "user_updated", target=person.username, **change)
