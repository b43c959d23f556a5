"""The person records and what creating or changing one shares, whatever the kind of
person (local, federated, proxy): the repository, the roles, the clock, and the checks
that a name or an email address is free."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

from ..settings import RbacSettings
from ..storage.users import DuplicateUser, SqlUserRepository, UserRecord
from .user_rules import EmailTaken, NotFound, Person, UserError, check_role, normalize_username


class UserRecords:
    """The records of people, over a ``SqlUserRepository``, and the rules every kind of
    person shares."""

    def __init__(
        self,
        repository: SqlUserRepository,
        rbac: RbacSettings,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.repo = repository
        self.rbac = rbac
        self._clock = clock

    def role(self, role: str | None) -> str:
        return check_role(self.rbac, role)

    def existing(self, username: str) -> UserRecord:
        record = self.lookup(username)
        if record is None:
            raise NotFound(f"no user {normalize_username(username)!r}")
        return record

    def lookup(self, username: str) -> UserRecord | None:
        """The record of a username; a name with a NUL is nobody's (none is ever stored,
        and PostgreSQL refuses even to compare one)."""
        if "\x00" in username:
            return None
        return self.repo.by_username(normalize_username(username))

    @staticmethod
    def new_name(name: str, seen: dict[str, int], line: int) -> str:
        """``name``, if no earlier line of the file has it."""
        if name in seen:
            raise UserError(f"user {name!r} is also on line {seen[name]}")
        seen[name] = line
        return name

    def check_name_free(self, name: str) -> None:
        if self.repo.by_username(name) is not None:
            raise UserError(f"user {name!r} already exists")

    def check_email_free(self, address: str, user_id: str | None = None) -> None:
        """``EmailTaken`` if a person other than ``user_id`` has ``address`` (compared
        without case: one mailbox, one person here; forward auth names people by it)."""
        for record in self.repo.by_email(address):
            if record.person.id != user_id:
                raise EmailTaken(
                    f"user {record.person.username!r} already has the email address {address!r}"
                )

    def insert_all(self, records: Sequence[UserRecord]) -> int:
        """Insert the checked users of a file, all or (``UserError``) none."""
        try:
            self.repo.insert_many(records)
        except DuplicateUser:
            raise UserError(
                "a user or email address of the file was just taken; no user was imported"
            ) from None
        return len(records)

    def local_record(
        self, username: str, password_hash: str, role: str, email: str | None = None
    ) -> UserRecord:
        """A local user; an email address is one an admin gave (verified, DESIGN.md)."""
        return self.new_record(
            username,
            role,
            "local",
            password_hash=password_hash,
            email=email,
            email_verified=True if email is not None else None,
        )

    def new_record(
        self,
        username: str,
        role: str,
        source: str,
        *,
        email: str | None = None,
        name: str | None = None,
        password_hash: str | None = None,
        groups: tuple[str, ...] = (),
        upstream_issuer: str | None = None,
        upstream_subject: str | None = None,
        last_login_at: datetime | None = None,
        email_verified: bool | None = None,
    ) -> UserRecord:
        """A new person, with a fresh ``sub``."""
        person = Person(
            id=new_id(),
            username=username,
            email=email,
            name=name,
            role=role,
            groups=groups,
            source=source,
            disabled=False,
            created_at=self.now(),
            last_login_at=last_login_at,
            email_verified=email_verified,
        )
        return UserRecord(person, password_hash, upstream_issuer, upstream_subject)

    def now(self) -> datetime:
        return datetime.fromtimestamp(self._clock(), UTC)


def new_id() -> str:
    """A new ``sub``: 32 hex digits, random (OIDC Core §8: never reassigned)."""
    return uuid.uuid4().hex
