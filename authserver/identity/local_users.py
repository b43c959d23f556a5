"""Local users: people whose password is kept here (argon2id; htpasswd hashes until the
first sign-in), for the small deployment with no IdP and for break-glass admin
(DESIGN.md); and the first admin of an empty database."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import IO

from ..settings import InitialAdminSettings
from ..storage.users import DuplicateEmail, DuplicateUser, UserRecord
from . import passwords
from .user_records import UserRecords
from .user_rules import (
    AlreadyExists,
    EmailTaken,
    Person,
    UserError,
    generate_password,
    normalize_username,
    validate_email,
    validate_password,
    validate_username,
)


@dataclass(eq=False)
class LocalUsers:
    """Local users' passwords: create, sign in, check; files of htpasswd lines."""

    records: UserRecords

    def create_local(
        self,
        username: str,
        password: str | None = None,
        role: str | None = None,
        email: str | None = None,
    ) -> tuple[Person, str | None]:
        """Create a local user; the password is generated (and returned, once) if not given.

        An ``email`` is one an admin set: ``email_verified`` is true (DESIGN.md).
        """
        name = validate_username(username)
        role = self.records.role(role)
        address = validate_email(email) if email is not None else None
        generated = None
        if password is None:
            password = generated = generate_password()
        validate_password(password)
        if address is not None:
            self.records.check_email_free(address)
        record = self.records.local_record(name, passwords.hash_password(password), role, address)
        try:
            self.records.repo.insert(record)
        except DuplicateEmail:
            raise EmailTaken(f"another user has the email address {address!r}") from None
        except DuplicateUser:
            raise AlreadyExists(f"user {name!r} already exists") from None
        return record.person, generated

    def authenticate(self, username: str, password: str) -> Person | None:
        """The person if ``password`` is theirs; ``None`` otherwise, whatever the reason.

        Unknown, disabled and password-less users cost one argon2 verification, as a
        wrong password does, so timing does not reveal which usernames exist.
        """
        record = self.records.repo.by_username(normalize_username(username))
        if record is None or record.password_hash is None or record.person.disabled:
            passwords.burn_verify(password)
            return None
        if not passwords.verify_password(record.password_hash, password):
            return None
        now = self.records.now()
        changes: dict[str, object] = {"last_login_at": now}
        if passwords.needs_rehash(record.password_hash):
            changes["password_hash"] = passwords.hash_password(password)
        self.records.repo.update(record.person.id, **changes)
        return replace(record.person, last_login_at=now)

    def check_password(self, username: str, password: str) -> bool:
        """Whether ``password`` is the person's, with no side effect (no sign-in)."""
        record = self.records.lookup(username)
        if record is None or record.password_hash is None:
            passwords.burn_verify(password)
            return False
        return passwords.verify_password(record.password_hash, password)

    def import_htpasswd(self, stream: IO[str] | Iterable[str], role: str | None = None) -> int:
        """Create local users from htpasswd lines ``user:hash`` (what ``htpasswd -nbB``
        prints), all of ``role`` (default: ``rbac.default_role``).

        The hashes are kept until each user's first sign-in, which replaces them with
        argon2id (see ``passwords``). Blank lines and ``#`` comments are skipped, as
        Apache does. Every line is checked before anything is written; one bad line
        (``UserError`` naming it) and no user is created. Returns the count.
        """
        role = self.records.role(role)
        records: list[UserRecord] = []
        errors: list[str] = []
        seen: dict[str, int] = {}
        for number, raw in enumerate(stream, start=1):
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            try:
                try:
                    user, stored_hash = passwords.parse_htpasswd_line(line)
                except ValueError as exc:
                    raise UserError(str(exc)) from None
                name = self.records.new_name(validate_username(user), seen, number)
                self.records.check_name_free(name)
                records.append(self.records.local_record(name, stored_hash, role))
            except UserError as exc:
                errors.append(f"line {number}: {exc}")
        if errors:
            more = f" (and {len(errors) - 1} more bad lines)" if len(errors) > 1 else ""
            raise UserError(f"{errors[0]}{more}; no user was imported")
        if not records:
            raise UserError("the file has no htpasswd line (user:hash); no user was imported")
        return self.records.insert_all(records)

    def ensure_initial_admin(self, initial: InitialAdminSettings | None) -> str | None:
        """On an empty users table, create the first admin.

        With ``initial.password`` set, that is the password and ``None`` is returned;
        with ``initial.htpasswd``, its hash is kept until the first sign-in replaces it
        with argon2id (the operator chose that password: no change is forced);
        otherwise a random one is generated and returned, for ``serve`` to print once,
        and the first sign-in with it must choose a new one (issue 16.11).
        There is no fixed default password. Two processes racing here create one admin
        (the loser gets ``None``). A database with users is left alone, whatever the
        config says now.
        """
        if self.records.repo.count() > 0:
            return None
        username = validate_username(initial.username if initial else "admin")
        if initial is not None and initial.htpasswd is not None:
            try:
                _user, stored_hash = passwords.parse_htpasswd_line(initial.htpasswd)
            except ValueError as exc:
                raise UserError(f"htpasswd: {exc}") from None
            self._insert_initial_admin(self.records.local_record(username, stored_hash, "admin"))
            return None
        password = initial.password if initial and initial.password else None
        generated = None
        if password is None:
            password = generated = generate_password()
        validate_password(password)
        record = self.records.local_record(username, passwords.hash_password(password), "admin")
        if generated:
            # Printed to the server's log: good for one sign-in, which must replace it.
            record = replace(record, person=replace(record.person, password_must_change=True))
        return generated if self._insert_initial_admin(record) else None

    def _insert_initial_admin(self, record: UserRecord) -> bool:
        """Whether ``record`` was inserted (not: another process made the first admin)."""
        try:
            self.records.repo.insert(record)
        except DuplicateUser:
            return False
        return True
