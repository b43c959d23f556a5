"""What a person may be: the errors of the user operations, the ``Person`` record, and
the rules of usernames (RFC 8265, UTS #39), email addresses, passwords and roles.

A person's ``id`` is the ``sub`` of their tokens (OIDC Core §5.7: stable, never
reassigned).
"""

from __future__ import annotations

import re
import secrets
import string
import unicodedata

import precis_i18n
from confusable_homoglyphs import categories, confusables

from ..settings import RbacSettings
from ..storage.users import Person as Person

MIN_PASSWORD_LENGTH = 12


#: argon2 takes any length; this only keeps a request from making it hash megabytes.
MAX_PASSWORD_LENGTH = 1024


MAX_USERNAME_LENGTH = 255


#: RFC 5321 §4.5.3.1: 64 octets of local part; a path of 256 with its ``<>``.
MAX_EMAIL_LENGTH = 254


MAX_EMAIL_LOCAL_LENGTH = 64


class UserError(ValueError):
    """A request about users that cannot be done; the message is one line, for people."""


class NotFound(UserError):
    """The user (or service account) named does not exist."""


class AlreadyExists(UserError):
    """The name is taken."""


class EmailTaken(AlreadyExists):
    """Another person has that email address."""


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


def usable_name(value: str) -> str | None:
    """``value`` as a username if it passes :func:`validate_username` and does not start
    like a formula (issue 16.6: an upstream's email or ``sub`` is not ours to trust)."""
    try:
        name = validate_username(value.strip())
    except UserError:
        return None
    return None if name.startswith(FORMULA_STARTS) else name


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
