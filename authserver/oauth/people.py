"""The people tokens are issued to, as the protocol layer sees them.

``identity`` owns users; the grants only need to read one by ``sub`` and put its
claims into tokens, so they depend on this protocol, not on ``identity``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Protocol


class Person(Protocol):
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


class UserDirectory(Protocol):
    def get(self, user_id: str) -> Person | None: ...


def access_token_claims(person: Person) -> dict[str, Any]:
    """DESIGN.md: tokens for people carry ``email`` and ``groups`` besides ``roles``."""
    claims: dict[str, Any] = {"groups": list(person.groups)}
    if person.email:
        claims["email"] = person.email
    return claims


def userinfo_claims(person: Person, scopes: Iterable[str]) -> dict[str, Any]:
    """OIDC Core §5.4: the claims each scope asks for; ``sub`` always (§5.3.2)."""
    scopes = set(scopes)
    claims: dict[str, Any] = {"sub": person.id}
    if "profile" in scopes:
        claims["name"] = person.name or person.username
        claims["preferred_username"] = person.username
    if "email" in scopes and person.email:
        # No ``email_verified``: we pass on what the IdP or the proxy said, and cannot
        # vouch that the address was verified (an IdP may let people set their own).
        claims["email"] = person.email
    if "profile" in scopes or "groups" in scopes:
        claims["groups"] = list(person.groups)
    if "profile" in scopes or "roles" in scopes:
        claims["roles"] = list(person.roles)
    return claims
