"""Who an access token of ours speaks for (RFC 6750 §2.1), for the endpoints that take
one: the admin API and forward auth's ``/oauth2/auth``.

One place decides it, so both refuse the same tokens: ours, unexpired and not revoked
(:meth:`AccessTokens.check`), for one of the given audiences (RFC 9068 §4), and whose
subject is still good now: a person who exists and is not disabled, or a service
account that exists, has not expired and was not rotated since the token (issue 16.7).
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

from ..identity.users import Person
from ..oauth.clients import SECRET_GENERATION_CLAIM, SERVICE_ACCOUNT_ID_PREFIX
from . import admin
from .adapter import oauth_server


@dataclass(frozen=True)
class Caller:
    """Who is calling: a person (``person`` set) or a client (a service account)."""

    name: str
    roles: tuple[str, ...]
    person: Person | None


class BearerRefused(Exception):
    """The token is refused; ``str()`` says why (an RFC 6750 ``error_description``)."""

    def __init__(self, description: str, error: str = "invalid_token") -> None:
        super().__init__(description)
        self.error = error


def bearer_token(header: str) -> str | None:
    """The token of an ``Authorization: Bearer`` header (RFC 6750 §2.1), or ``None``."""
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def bearer_caller(token: str, audiences: Collection[str]) -> Caller:
    """The caller ``token`` speaks for, or :class:`BearerRefused`."""
    claims = oauth_server().access_tokens.check(token)
    if claims is None:
        raise BearerRefused("The access token is invalid, expired or revoked.")
    audience = claims.get("aud")
    token_audiences = audience if isinstance(audience, list) else [audience]
    if not any(a in audiences for a in token_audiences):
        raise BearerRefused("The access token is not for this API (wrong aud).")
    subject = str(claims.get("sub"))
    if subject == claims.get("client_id"):
        # Client credentials: a static client or a service account.
        if subject.startswith(SERVICE_ACCOUNT_ID_PREFIX) and not (
            admin.service_accounts().token_still_good(
                subject, float(claims.get("iat", 0)), claims.get(SECRET_GENERATION_CLAIM)
            )
        ):
            raise BearerRefused("The service account was revoked, rotated or expired.")
        roles = claims.get("roles")
        return Caller(subject, tuple(roles) if isinstance(roles, list) else (), None)
    person = admin.users().get(subject)
    if person is None or person.disabled:
        raise BearerRefused("The person is no longer known here.")
    return Caller(person.username, person.roles, person)
