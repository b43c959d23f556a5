"""The subjects tokens are issued to (people: the ``sub`` of their tokens, OIDC Core
§5.7), as the protocol layer sees them.

``identity`` owns users; the grants only need to read one by ``sub`` and put its
claims into tokens, so they depend on this protocol, not on ``identity``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Protocol


class Subject(Protocol):
    """A person as the grants read them (``identity.users.Person`` is one)."""

    @property
    def id(self) -> str: ...

    @property
    def username(self) -> str: ...

    @property
    def email(self) -> str | None: ...

    @property
    def name(self) -> str | None: ...

    @property
    def groups(self) -> tuple[str, ...]: ...

    @property
    def roles(self) -> tuple[str, ...]: ...

    @property
    def disabled(self) -> bool: ...

    @property
    def email_verified(self) -> bool | None: ...


class UserDirectory(Protocol):
    def get(self, user_id: str) -> Subject | None: ...


#: The scopes a third-party (``consent: true``) client needs for a person's roles and
#: groups to reach it; the consent page names the roles and groups (issue 16.1).
ROLES_SCOPE = "roles"
GROUPS_SCOPE = "groups"


def granted_roles(person: Subject, scopes: Iterable[str], third_party: bool) -> tuple[str, ...]:
    """The roles a token carries: all of them for a first-party client; for a client
    that asks for consent only when the person approved the ``roles`` scope, which the
    consent page names with the roles themselves (RFC 9700 §2.3: least privilege)."""
    if third_party and ROLES_SCOPE not in set(scopes):
        return ()
    return tuple(person.roles)


def access_token_claims(
    person: Subject, scopes: Iterable[str] = (), third_party: bool = False
) -> dict[str, Any]:
    """DESIGN.md: tokens for people carry ``email`` and ``groups`` besides ``roles``
    (``groups`` for a third-party client only with the ``groups`` scope)."""
    claims: dict[str, Any] = {}
    if not third_party or GROUPS_SCOPE in set(scopes):
        claims["groups"] = list(person.groups)
    if person.email:
        claims["email"] = person.email
    return claims


def userinfo_claims(
    person: Subject, scopes: Iterable[str], third_party: bool = False
) -> dict[str, Any]:
    """OIDC Core §5.4: the claims each scope asks for; ``sub`` always (§5.3.2).

    For a third-party client, ``profile`` does not carry groups or roles: only the
    ``groups`` and ``roles`` scopes, which the consent page names, do (issue 16.1)."""
    scopes = set(scopes)
    claims: dict[str, Any] = {"sub": person.id}
    if "profile" in scopes:
        claims["name"] = person.name or person.username
        claims["preferred_username"] = person.username
    if "email" in scopes and person.email:
        claims["email"] = person.email
        # DESIGN.md: when we know it: the IdP's own value, true for an email an admin
        # set or a trusted proxy asserted (OIDC Core §5.1).
        verified = getattr(person, "email_verified", None)
        if verified is not None:
            claims["email_verified"] = bool(verified)
    if "groups" in scopes or ("profile" in scopes and not third_party):
        claims["groups"] = list(person.groups)
    if "roles" in scopes or ("profile" in scopes and not third_party):
        claims["roles"] = list(person.roles)
    return claims
