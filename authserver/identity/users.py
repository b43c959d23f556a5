"""People: local users with passwords, federated users, auth-proxy users, and their roles.

A person's ``id`` is the ``sub`` of their tokens (OIDC Core §5.7: stable, never
reassigned). A federated person is known by the upstream ``(iss, sub)`` pair only,
never by email, so an upstream account can never take over a local one that happens
to share its address.
"""

from __future__ import annotations

import csv
import hashlib
import re
import secrets
import string
import time
import unicodedata
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import IO, Protocol

import precis_i18n
from confusable_homoglyphs import categories, confusables

from ..settings import InitialAdminSettings, RbacSettings
from ..storage.users import DuplicateEmail, DuplicateUser, SqlUserRepository, UserRecord
from . import passwords

#: The CSV columns of ``import_csv`` and ``export_csv``, in order; ``email`` may be left
#: out of an imported file (the columns before it came first).
CSV_COLUMNS = ("username", "password", "role", "email")
CSV_COLUMNS_WITHOUT_EMAIL = CSV_COLUMNS[:3]
MIN_PASSWORD_LENGTH = 12
#: argon2 takes any length; this only keeps a request from making it hash megabytes.
MAX_PASSWORD_LENGTH = 1024
MAX_USERNAME_LENGTH = 255
#: RFC 5321 §4.5.3.1: 64 octets of local part; a path of 256 with its ``<>``.
MAX_EMAIL_LENGTH = 254
MAX_EMAIL_LOCAL_LENGTH = 64


class RefreshFamilies(Protocol):
    """The owner of refresh-token families (``authserver.oauth.refresh.RefreshTokens``)."""

    def revoke_for_user(self, user_id: str, reason: str) -> int: ...


class UserError(ValueError):
    """A request about users that cannot be done; the message is one line, for people."""


class NotFound(UserError):
    """The user (or service account) named does not exist."""


class AlreadyExists(UserError):
    """The name is taken."""


class EmailTaken(AlreadyExists):
    """Another person has that email address."""


@dataclass(frozen=True)
class Person:
    id: str
    username: str
    email: str | None
    name: str | None
    role: str
    groups: tuple[str, ...]
    #: ``local``, ``upstream`` or ``proxy``.
    source: str
    disabled: bool
    created_at: datetime
    last_login_at: datetime | None
    #: Raised by every password set or reset; older sessions are over (issue 16.2).
    credentials_generation: int = 0
    #: OIDC Core §5.1 ``email_verified``; ``None`` when nobody said.
    email_verified: bool | None = None
    #: The password was made for them (the first admin's one-time password): their
    #: next sign-in chooses a new one first (issue 16.11).
    password_must_change: bool = False

    @property
    def roles(self) -> tuple[str, ...]:
        """The ``roles`` claim: one role per person today."""
        return (self.role,)


#: RFC 8265 §3.3: width-mapped (``admin`` in fullwidth letters is ``admin``), lower-cased, NFC,
#: and only the letters, digits and ASCII punctuation of the PRECIS IdentifierClass.
_PRECIS = precis_i18n.get_profile("UsernameCaseMapped")

#: UTS #39 §5.2 "Highly Restrictive": one script, or Latin with one of these sets
#: (Japanese, Chinese and Korean writing mix scripts as a rule).
_SCRIPT_SETS_ALLOWED = (
    frozenset({"LATIN", "HAN", "HIRAGANA", "KATAKANA"}),
    frozenset({"LATIN", "HAN", "BOPOMOFO"}),
    frozenset({"LATIN", "HAN", "HANGUL"}),
)
_NO_SCRIPT = frozenset({"COMMON", "INHERITED"})
_LATIN_LOOK = frozenset(string.ascii_lowercase + string.digits)


def normalize_username(username: str) -> str:
    """The stored form of a username (RFC 8265 §3.3, the UsernameCaseMapped profile),
    which is also how a typed username is compared. A name the profile refuses cannot
    be created; one made before these rules is found by its NFC lower-cased form."""
    try:
        return str(_PRECIS.enforce(username))
    except UnicodeError:
        return unicodedata.normalize("NFC", username).lower()


def _scripts(name: str) -> set[str]:
    return set(categories.unique_aliases(name)) - _NO_SCRIPT


def _reads_as_latin(name: str) -> bool:
    """UTS #39 §4 whole-script confusable with Latin: every letter of a name in another
    script has a look-alike among a-z and 0-9 ("ace" in Cyrillic letters)."""
    found = confusables.is_confusable(name, greedy=True, preferred_aliases=["latin"]) or []
    looks_latin = {
        entry["character"]
        for entry in found
        if any(glyph["c"] in _LATIN_LOOK for glyph in entry["homoglyphs"])
    }
    letters = {ch for ch in name if categories.alias(ch) not in _NO_SCRIPT}
    return bool(letters) and letters <= looks_latin


def validate_username(username: str) -> str:
    """``username`` in its stored form, or ``UserError`` when it is empty, too long, has
    a character RFC 8265's UsernameCaseMapped profile refuses (spaces, controls,
    symbols, compatibility forms), mixes scripts beyond UTS #39 §5.2 "Highly
    Restrictive" (``admin`` with a Cyrillic ``a``), or, written in another script, reads as
    a Latin name (issue 9.8)."""
    if not username:
        raise UserError("a username may not be empty")
    if any(ch.isspace() or unicodedata.category(ch).startswith("C") for ch in username):
        raise UserError(f"username {username!r} has whitespace or control characters")
    try:
        name = str(_PRECIS.enforce(username))
    except UnicodeError as exc:
        raise UserError(f"username {username!r} has a character a username may not have") from exc
    if len(name) > MAX_USERNAME_LENGTH:
        raise UserError(f"a username has at most {MAX_USERNAME_LENGTH} characters")
    scripts = _scripts(name)
    if len(scripts) > 1 and not any(scripts <= allowed for allowed in _SCRIPT_SETS_ALLOWED):
        raise UserError(
            f"username {name!r} mixes scripts ({', '.join(sorted(s.title() for s in scripts))}),"
            " so it can look like another"
        )
    if scripts and scripts != {"LATIN"} and _reads_as_latin(name):
        raise UserError(f"username {name!r} looks like a name in Latin letters")
    return name


#: A CSV cell starting with one of these is a formula to a spreadsheet (OWASP "CSV
#: injection"); exports prefix such cells with ``'``, and upstream names are not used.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def _usable_name(value: str) -> str | None:
    """``value`` as a username if it passes :func:`validate_username` and does not start
    like a formula (issue 16.6: an upstream's email or ``sub`` is not ours to trust)."""
    try:
        name = validate_username(value.strip())
    except UserError:
        return None
    return None if name.startswith(FORMULA_STARTS) else name


def _csv_cell(value: str) -> str:
    return "'" + value if value.startswith(FORMULA_STARTS) else value


#: RFC 5322 §3.2.3 dot-atom of ASCII ``atext``; quoted local parts are not taken.
_EMAIL_LOCAL = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*")
#: RFC 1035 §2.3.1 / RFC 1123 §2.1 host-name labels, in their ASCII (``xn--``) form.
_EMAIL_LABEL = re.compile(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?")


def validate_email(address: str) -> str:
    """``address`` as stored (the domain lower-cased), or ``UserError`` saying why not.

    A careful simple check, not RFC 5322 in full: ``local@domain`` with a dot-atom
    local part of ASCII (it goes into HTTP headers such as ``X-Auth-Request-Email``), a
    domain of at least two host-name labels (an internationalised one in its ``xn--``
    form) with a top-level label that is not a number, within RFC 5321's lengths. An
    address starting like a spreadsheet formula is refused too (issue 16.6).
    """
    value = address.strip()
    if not value:
        raise UserError("an email address may not be empty")
    shown = repr(value[:80])
    if len(value) > MAX_EMAIL_LENGTH:
        raise UserError(f"an email address has at most {MAX_EMAIL_LENGTH} characters")
    local, at, domain = value.rpartition("@")
    if not at or not local or not domain:
        raise UserError(f"{shown} is not an email address (local@domain)")
    if len(local) > MAX_EMAIL_LOCAL_LENGTH:
        raise UserError(f"{shown}: the part before @ has at most 64 characters")
    if not _EMAIL_LOCAL.fullmatch(local):
        raise UserError(
            f"{shown}: the part before @ may hold only ASCII letters, digits, dots (not "
            "two in a row, nor first or last) and !#$%&'*+/=?^_`{|}~-"
        )
    if local.startswith(FORMULA_STARTS):
        raise UserError(f"{shown} starts like a spreadsheet formula (=, +, -)")
    domain = domain.lower()
    labels = domain.split(".")
    if (
        len(labels) < 2
        or not all(_EMAIL_LABEL.fullmatch(label) for label in labels)
        or labels[-1].isdigit()
    ):
        raise UserError(
            f"{shown}: the domain must be a host name such as example.com (ASCII; "
            "an internationalised one in its xn-- form)"
        )
    return f"{local}@{domain}"


def validate_password(password: str) -> str:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise UserError(f"a password needs at least {MIN_PASSWORD_LENGTH} characters")
    if len(password) > MAX_PASSWORD_LENGTH:
        raise UserError(f"a password has at most {MAX_PASSWORD_LENGTH} characters")
    return password


def check_role(rbac: RbacSettings, role: str | None) -> str:
    """``role``, or ``rbac.default_role`` for none; ``UserError`` if it is not a role."""
    if role is None:
        return rbac.default_role
    if role not in rbac.roles:
        raise UserError(f"unknown role {role!r}; the roles are: {', '.join(rbac.roles)}")
    return role


def generate_password() -> str:
    """A random password (144 bits), for a user created without one."""
    return secrets.token_urlsafe(18)


class UserService:
    """The rules about people, over a ``SqlUserRepository``."""

    def __init__(
        self,
        repository: SqlUserRepository,
        rbac: RbacSettings,
        *,
        clock: Callable[[], float] = time.time,
        refresh_families: RefreshFamilies | None = None,
    ) -> None:
        self._repo = repository
        self._rbac = rbac
        self._clock = clock
        #: The owner of refresh-token families (``oauth.refresh.RefreshTokens``); none
        #: only where no tokens are issued (this service tested alone).
        self._refresh_families = refresh_families

    # -- reading ------------------------------------------------------------------

    def get(self, user_id: str) -> Person | None:
        record = self._repo.get(user_id)
        return _person(record) if record else None

    def by_username(self, username: str) -> Person | None:
        record = self._lookup(username)
        return _person(record) if record else None

    def list(self) -> list[Person]:
        """Every person, ordered by username."""
        return [_person(record) for record in self._repo.list()]

    # -- local users ----------------------------------------------------------------

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
        role = self._role(role)
        address = validate_email(email) if email is not None else None
        generated = None
        if password is None:
            password = generated = generate_password()
        validate_password(password)
        if address is not None:
            self._check_email_free(address)
        record = self._local_record(name, passwords.hash_password(password), role, address)
        try:
            self._repo.insert(record)
        except DuplicateEmail:
            raise EmailTaken(f"another user has the email address {address!r}") from None
        except DuplicateUser:
            raise AlreadyExists(f"user {name!r} already exists") from None
        return _person(record), generated

    def authenticate(self, username: str, password: str) -> Person | None:
        """The person if ``password`` is theirs; ``None`` otherwise, whatever the reason.

        Unknown, disabled and password-less users cost one argon2 verification, as a
        wrong password does, so timing does not reveal which usernames exist.
        """
        record = self._repo.by_username(normalize_username(username))
        if record is None or record.password_hash is None or record.disabled:
            passwords.burn_verify(password)
            return None
        if not passwords.verify_password(record.password_hash, password):
            return None
        now = self._now()
        changes: dict[str, object] = {"last_login_at": now}
        if passwords.needs_rehash(record.password_hash):
            changes["password_hash"] = passwords.hash_password(password)
        self._repo.update(record.id, **changes)
        return replace(_person(record), last_login_at=now)

    def set_role(self, username: str, role: str) -> Person:
        record = self._existing(username)
        role = self._role(role)
        self._repo.update(record.id, role=role)
        return replace(_person(record), role=role)

    def set_email(self, username: str, email: str | None) -> Person:
        """Set (or, with ``None``, remove) a local user's email address; one an admin
        sets is verified (DESIGN.md). Upstream and proxy users' addresses come from there."""
        record = self._existing(username)
        if record.source != "local":
            raise UserError(
                f"user {record.username!r} signs in through {record.source}; their email "
                "address comes from there"
            )
        address = validate_email(email) if email is not None else None
        if address is not None:
            self._check_email_free(address, record.id)
        verified = True if address is not None else None
        try:
            self._repo.update(record.id, email=address, email_verified=verified)
        except DuplicateEmail:
            raise EmailTaken(f"another user has the email address {address!r}") from None
        return replace(_person(record), email=address, email_verified=verified)

    def set_password(self, username: str, password: str) -> Person:
        """A new password; the person's refresh tokens die with the old one (a reset
        is how an account is taken back)."""
        record = self._existing(username)
        validate_password(password)
        self._repo.new_credentials(
            record.id, password_hash=passwords.hash_password(password), password_must_change=False
        )
        self._revoke_refresh_families(record.id, "password")
        return replace(
            _person(record),
            credentials_generation=record.credentials_generation + 1,
            password_must_change=False,
        )

    def check_password(self, username: str, password: str) -> bool:
        """Whether ``password`` is the person's, with no side effect (no sign-in)."""
        record = self._lookup(username)
        if record is None or record.password_hash is None:
            passwords.burn_verify(password)
            return False
        return passwords.verify_password(record.password_hash, password)

    def set_disabled(self, username: str, disabled: bool) -> Person:
        """Disable (or enable) a person: they can no longer sign in, by any route."""
        record = self._existing(username)
        self._repo.update(record.id, disabled=disabled)
        return replace(_person(record), disabled=disabled)

    def delete(self, username: str) -> Person:
        """Delete a person, their refresh tokens and the live access tokens those issued."""
        record = self._existing(username)
        self._revoke_refresh_families(record.id, "user_deleted")
        if not self._repo.delete(record.id):
            raise NotFound(f"no user {record.username!r}")
        return _person(record)

    def _revoke_refresh_families(self, user_id: str, reason: str) -> None:
        """Through the families' owner, so that their live access tokens die too."""
        if self._refresh_families is not None:
            self._refresh_families.revoke_for_user(user_id, reason)

    # -- CSV ------------------------------------------------------------------------

    def import_csv(self, stream: IO[str] | Iterable[str]) -> int:
        """Create local users from CSV ``username,password,role,email`` (a header row
        first; the ``email`` column may be left out).

        Every row is checked before anything is written; one bad row (``UserError``
        naming its line) and no user is created. An empty role cell means
        ``rbac.default_role``, an empty email cell no address; an empty password is an
        error. An address is one an admin set (verified). Returns the count.
        """
        reader = csv.reader(stream, strict=True)
        try:
            header = next(reader, None)
            if header is None:
                raise UserError(
                    f"the CSV file is empty: it needs the header {','.join(CSV_COLUMNS)}"
                )
            if header and header[0].startswith("\ufeff"):
                header[0] = header[0][1:]
            columns = tuple(cell.strip().lower() for cell in header)
            if columns not in (CSV_COLUMNS, CSV_COLUMNS_WITHOUT_EMAIL):
                raise UserError(
                    f"line {reader.line_num}: the header must be exactly "
                    f"{','.join(CSV_COLUMNS)} (or without email), not {','.join(header)}"
                )
            rows: list[tuple[int, str, str, str, str | None]] = []
            errors: list[str] = []
            seen: dict[str, int] = {}
            emails: dict[str, int] = {}
            for row in reader:
                line = reader.line_num
                if not row or (len(row) == 1 and not row[0].strip()):
                    continue  # blank line
                try:
                    rows.append((line, *self._check_row(row, columns, seen, emails, line)))
                except UserError as exc:
                    errors.append(f"line {line}: {exc}")
        except csv.Error as exc:
            raise UserError(f"line {reader.line_num}: not valid CSV: {exc}") from None
        if errors:
            more = f" (and {len(errors) - 1} more bad lines)" if len(errors) > 1 else ""
            raise UserError(f"{errors[0]}{more}; no user was imported")
        records = [
            self._local_record(name, passwords.hash_password(password), role, email)
            for _line, name, password, role, email in rows
        ]
        return self._insert_all(records)

    def export_csv(self, stream: IO[str]) -> int:
        """Write every person (all sources) as ``username,,role,email``; returns the count.

        The password column is always empty: passwords are never exported. A cell that
        a spreadsheet would run as a formula gets a leading ``'`` (issue 16.6).
        """
        writer = csv.writer(stream, lineterminator="\n")
        writer.writerow(CSV_COLUMNS)
        people = self._repo.list()
        for record in people:
            writer.writerow(
                (
                    _csv_cell(record.username),
                    "",
                    _csv_cell(record.role),
                    _csv_cell(record.email or ""),
                )
            )
        return len(people)

    # -- htpasswd ---------------------------------------------------------------------

    def import_htpasswd(self, stream: IO[str] | Iterable[str], role: str | None = None) -> int:
        """Create local users from htpasswd lines ``user:hash`` (what ``htpasswd -nbB``
        prints), all of ``role`` (default: ``rbac.default_role``).

        The hashes are kept until each user's first sign-in, which replaces them with
        argon2id (see ``passwords``). Blank lines and ``#`` comments are skipped, as
        Apache does. Every line is checked before anything is written; one bad line
        (``UserError`` naming it) and no user is created. Returns the count.
        """
        role = self._role(role)
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
                name = self._new_name(validate_username(user), seen, number)
                self._check_name_free(name)
                records.append(self._local_record(name, stored_hash, role))
            except UserError as exc:
                errors.append(f"line {number}: {exc}")
        if errors:
            more = f" (and {len(errors) - 1} more bad lines)" if len(errors) > 1 else ""
            raise UserError(f"{errors[0]}{more}; no user was imported")
        if not records:
            raise UserError("the file has no htpasswd line (user:hash); no user was imported")
        return self._insert_all(records)

    # -- federated and proxy users ---------------------------------------------------

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
        existing = self._repo.by_upstream(issuer, subject)
        if existing is None:
            existing, created = self._create_federated(
                issuer, subject, email, name, group_list, email_verified
            )
            if created:
                return _person(existing)
        now = None if existing.disabled else self._now()
        changes: dict[str, object] = {
            "email": email,
            "name": name,
            "groups": group_list,
            "email_verified": email_verified if email else None,
        }
        if now is not None:
            changes["last_login_at"] = now
        self._repo.update(existing.id, **changes)
        return replace(
            _person(existing),
            email=email,
            name=name,
            groups=group_list,
            last_login_at=now or existing.last_login_at,
            email_verified=email_verified if email else None,
        )

    def proxy_user(self, email: str) -> Person:
        """The person a trusted auth proxy's email header names; created on first sight.

        Only a ``proxy`` user matches: a local or federated user with that username is
        not taken over (``UserError``).
        """
        address = _usable_name(email)
        if address is None or "@" not in address:
            raise UserError("the proxy's email header does not hold an email address")
        now = self._now()
        for _attempt in range(2):
            record = self._repo.by_username(address)
            if record is not None:
                if record.source != "proxy":
                    raise UserError(
                        f"user {address!r} exists and is not a proxy user; it is not taken over"
                    )
                if record.disabled:
                    return _person(record)
                self._repo.update(record.id, last_login_at=now)
                return replace(_person(record), last_login_at=now)
            record = self._new_record(
                address,
                self._rbac.default_role,
                "proxy",
                email=address,
                last_login_at=now,
                email_verified=True,  # DESIGN.md: a trusted proxy asserted it
            )
            try:
                self._repo.insert(record)
            except DuplicateUser:
                continue  # another request created them first: read theirs
            return _person(record)
        raise UserError(f"user {address!r} could not be created")

    # -- first start ------------------------------------------------------------------

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
        if self._repo.count() > 0:
            return None
        username = validate_username(initial.username if initial else "admin")
        if initial is not None and initial.htpasswd is not None:
            try:
                _user, stored_hash = passwords.parse_htpasswd_line(initial.htpasswd)
            except ValueError as exc:
                raise UserError(f"htpasswd: {exc}") from None
            self._insert_initial_admin(self._local_record(username, stored_hash, "admin"))
            return None
        password = initial.password if initial and initial.password else None
        generated = None
        if password is None:
            password = generated = generate_password()
        validate_password(password)
        record = self._local_record(username, passwords.hash_password(password), "admin")
        if generated:
            # Printed to the server's log: good for one sign-in, which must replace it.
            record = replace(record, password_must_change=True)
        return generated if self._insert_initial_admin(record) else None

    def _insert_initial_admin(self, record: UserRecord) -> bool:
        """Whether ``record`` was inserted (not: another process made the first admin)."""
        try:
            self._repo.insert(record)
        except DuplicateUser:
            return False
        return True

    # -- helpers ------------------------------------------------------------------------

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
        address = _usable_name(email) if email and email_verified else None
        if address is not None:
            base = address[: MAX_USERNAME_LENGTH - 11]
            candidates: tuple[str, ...] = (base, f"{base}#{pair}")
        else:  # never a bare sub either: it could be a local user's name
            base = (_usable_name(subject) or "upstream")[: MAX_USERNAME_LENGTH - 11]
            candidates = (f"{base}#{pair}",)
        now = self._now()
        for username in candidates:
            record = self._new_record(
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
                self._repo.insert(record)
            except DuplicateUser:
                winner = self._repo.by_upstream(issuer, subject)
                if winner is not None:
                    return winner, False  # a concurrent first sign-in made them
                continue  # the username is another person's
            return record, True
        raise UserError(f"no free username for upstream user {subject!r} of {issuer}")

    def _role_for_groups(self, groups: Iterable[str]) -> str:
        """The first role of ``rbac.roles`` (in config order) that one of ``groups`` maps to."""
        mapped = {self._rbac.group_roles[g] for g in groups if g in self._rbac.group_roles}
        for role in self._rbac.roles:
            if role in mapped:
                return role
        return self._rbac.default_role

    def _role(self, role: str | None) -> str:
        return check_role(self._rbac, role)

    def _existing(self, username: str) -> UserRecord:
        record = self._lookup(username)
        if record is None:
            raise NotFound(f"no user {normalize_username(username)!r}")
        return record

    def _lookup(self, username: str) -> UserRecord | None:
        """The record of a username; a name with a NUL is nobody's (none is ever stored,
        and PostgreSQL refuses even to compare one)."""
        if "\x00" in username:
            return None
        return self._repo.by_username(normalize_username(username))

    def _check_row(
        self,
        row: Sequence[str],
        columns: tuple[str, ...],
        seen: dict[str, int],
        emails: dict[str, int],
        line: int,
    ) -> tuple[str, str, str, str | None]:
        if len(row) != len(columns):
            raise UserError(
                f"expected {len(columns)} cells ({','.join(columns)}), found {len(row)}"
            )
        username, password, role = row[:3]
        name = self._new_name(validate_username(username.strip()), seen, line)
        if not password:
            raise UserError(f"user {name!r} has no password (the password cell is empty)")
        validate_password(password)
        role = self._role(role.strip() or None)
        self._check_name_free(name)
        email = row[3].strip() if len(row) > 3 else ""
        address = validate_email(email) if email else None
        if address is not None:
            key = address.lower()
            if key in emails:
                raise UserError(f"the email address {address!r} is also on line {emails[key]}")
            emails[key] = line
            self._check_email_free(address)
        return name, password, role, address

    @staticmethod
    def _new_name(name: str, seen: dict[str, int], line: int) -> str:
        """``name``, if no earlier line of the file has it."""
        if name in seen:
            raise UserError(f"user {name!r} is also on line {seen[name]}")
        seen[name] = line
        return name

    def _check_name_free(self, name: str) -> None:
        if self._repo.by_username(name) is not None:
            raise UserError(f"user {name!r} already exists")

    def _check_email_free(self, address: str, user_id: str | None = None) -> None:
        """``EmailTaken`` if a person other than ``user_id`` has ``address`` (compared
        without case: one mailbox, one person here; forward auth names people by it)."""
        for record in self._repo.by_email(address):
            if record.id != user_id:
                raise EmailTaken(
                    f"user {record.username!r} already has the email address {address!r}"
                )

    def _insert_all(self, records: Sequence[UserRecord]) -> int:
        """Insert the checked users of a file, all or (``UserError``) none."""
        try:
            self._repo.insert_many(records)
        except DuplicateUser:
            raise UserError(
                "a user or email address of the file was just taken; no user was imported"
            ) from None
        return len(records)

    def _local_record(
        self, username: str, password_hash: str, role: str, email: str | None = None
    ) -> UserRecord:
        """A local user; an email address is one an admin gave (verified, DESIGN.md)."""
        return self._new_record(
            username,
            role,
            "local",
            password_hash=password_hash,
            email=email,
            email_verified=True if email is not None else None,
        )

    def _new_record(
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
        return UserRecord(
            id=_new_id(),
            username=username,
            email=email,
            name=name,
            password_hash=password_hash,
            role=role,
            groups=groups,
            source=source,
            upstream_issuer=upstream_issuer,
            upstream_subject=upstream_subject,
            disabled=False,
            created_at=self._now(),
            last_login_at=last_login_at,
            email_verified=email_verified,
        )

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self._clock(), UTC)


def _new_id() -> str:
    """A new ``sub``: 32 hex digits, random (OIDC Core §8: never reassigned)."""
    return uuid.uuid4().hex


def _person(record: UserRecord) -> Person:
    return Person(
        id=record.id,
        username=record.username,
        email=record.email,
        name=record.name,
        role=record.role,
        groups=record.groups,
        source=record.source,
        disabled=record.disabled,
        created_at=record.created_at,
        last_login_at=record.last_login_at,
        credentials_generation=record.credentials_generation,
        email_verified=record.email_verified,
        password_must_change=record.password_must_change,
    )
