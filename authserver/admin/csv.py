"""Files of users: CSV import (all or none) and export (never a password).

The columns are ``username,password,role,email`` (``email`` may be left out of an
imported file). An imported user is a local one; an address in the file is an admin's
word (verified). An exported cell a spreadsheet would run as a formula gets a leading
``'`` (OWASP "CSV injection"; issue 16.6).
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Iterable, Sequence
from typing import IO

from ..identity import passwords
from ..identity.user_records import UserRecords
from ..identity.user_rules import (
    FORMULA_STARTS,
    UserError,
    validate_email,
    validate_password,
    validate_username,
)

#: The CSV columns of ``import_csv`` and ``export_csv``, in order; ``email`` may be left
#: out of an imported file (the columns before it came first).
CSV_COLUMNS = ("username", "password", "role", "email")
CSV_COLUMNS_WITHOUT_EMAIL = CSV_COLUMNS[:3]


#: ``import_csv``'s report of its slow part: (passwords hashed so far, of how many).
Progress = Callable[[int, int], None]


def import_csv(
    users: UserRecords, stream: IO[str] | Iterable[str], progress: Progress | None = None
) -> int:
    """Create local users from CSV ``username,password,role,email`` (a header row
    first; the ``email`` column may be left out). It only creates: a username that
    exists already is a bad row, so an import never changes (nor demotes) anyone.

    Every row is checked before anything is written; one bad row (``UserError``
    naming its line) and no user is created. An empty role cell means
    ``rbac.default_role``, an empty email cell no address; an empty password is an
    error. An address is one an admin set (verified). Returns the count.

    Each password is hashed with argon2id (:func:`.passwords.hash_password`, 64 MiB
    and a few tenths of a second by design), the slow part of a large file:
    ``progress`` is told after each one.
    """
    reader = csv.reader(stream, strict=True)
    try:
        header = next(reader, None)
        if header is None:
            raise UserError(f"the CSV file is empty: it needs the header {','.join(CSV_COLUMNS)}")
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
                rows.append((line, *_check_row(users, row, columns, seen, emails, line)))
            except UserError as exc:
                errors.append(f"line {line}: {exc}")
    except csv.Error as exc:
        raise UserError(f"line {reader.line_num}: not valid CSV: {exc}") from None
    if errors:
        more = f" (and {len(errors) - 1} more bad lines)" if len(errors) > 1 else ""
        raise UserError(f"{errors[0]}{more}; no user was imported")
    records = []
    for _line, name, password, role, email in rows:
        records.append(users.local_record(name, passwords.hash_password(password), role, email))
        if progress is not None:
            progress(len(records), len(rows))
    return users.insert_all(records)


def export_csv(users: UserRecords, stream: IO[str]) -> int:
    """Write every person (all sources) as ``username,,role,email``; returns the count.

    The password column is always empty: passwords are never exported. A cell that
    a spreadsheet would run as a formula gets a leading ``'`` (issue 16.6).
    """
    writer = csv.writer(stream, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    people = [record.person for record in users.repo.list()]
    for person in people:
        writer.writerow(
            (
                _csv_cell(person.username),
                "",
                _csv_cell(person.role),
                _csv_cell(person.email or ""),
            )
        )
    return len(people)


def _check_row(
    users: UserRecords,
    row: Sequence[str],
    columns: tuple[str, ...],
    seen: dict[str, int],
    emails: dict[str, int],
    line: int,
) -> tuple[str, str, str, str | None]:
    if len(row) != len(columns):
        raise UserError(f"expected {len(columns)} cells ({','.join(columns)}), found {len(row)}")
    username, password, role = row[:3]
    name = users.new_name(validate_username(username.strip()), seen, line)
    if not password:
        raise UserError(f"user {name!r} has no password (the password cell is empty)")
    validate_password(password)
    role = users.role(role.strip() or None)
    users.check_name_free(name)
    email = row[3].strip() if len(row) > 3 else ""
    address = validate_email(email) if email else None
    if address is not None:
        key = address.lower()
        if key in emails:
            raise UserError(f"the email address {address!r} is also on line {emails[key]}")
        emails[key] = line
        users.check_email_free(address)
    return name, password, role, address


def _csv_cell(value: str) -> str:
    return "'" + value if value.startswith(FORMULA_STARTS) else value
