"""Bearer tokens in requests (RFC 6750): the ``Authorization`` header, and the
``WWW-Authenticate`` challenge and error of a refusal (RFC 6750 §3).

Framework-free: :func:`check` takes the header's value and returns the claims or raises
:class:`Unauthorized` / :class:`Forbidden`, which carry what to answer with.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from .validator import Claims, InvalidToken, TokenValidator

_UNSAFE = re.compile(r"[^\x20\x21\x23-\x5b\x5d-\x7e]")  # RFC 6750 §3 error_description


def _quote(value: str) -> str:
    return '"' + _UNSAFE.sub("?", value) + '"'


class BearerError(Exception):
    """An RFC 6750 error: ``status``, ``error`` (or None) and the WWW-Authenticate value."""

    status = 401

    def __init__(
        self, www_authenticate: str, error: str | None = None, description: str | None = None
    ) -> None:
        super().__init__(www_authenticate)
        self.www_authenticate = www_authenticate
        self.error = error
        self.description = description


class Unauthorized(BearerError):
    status = 401


class Forbidden(BearerError):
    status = 403


def _challenge(realm: str, **params: str | None) -> str:
    parts = [f"realm={_quote(realm)}"]
    parts += [f"{name}={_quote(value)}" for name, value in params.items() if value is not None]
    return "Bearer " + ", ".join(parts)


def _names(value: str | Sequence[str] | None) -> tuple[str, ...]:
    if value is None:
        return ()
    return tuple(value.split()) if isinstance(value, str) else tuple(value)


def check(
    validator: TokenValidator,
    authorization_header: str | None,
    *,
    scope: str | Sequence[str] | None = None,
    role: str | Sequence[str] | None = None,
    realm: str | None = None,
) -> Claims:
    """The claims of the bearer token in ``authorization_header``.

    Every scope in ``scope`` and every role in ``role`` is required. Raises
    :class:`Unauthorized` (401) or :class:`Forbidden` (403) with the RFC 6750 §3
    ``WWW-Authenticate`` value to answer with.
    """
    realm = realm if realm is not None else validator.audiences[0]
    scheme, _, token = (authorization_header or "").strip().partition(" ")
    if scheme.lower() != "bearer":
        # no authentication information at all: no error code (RFC 6750 §3.1)
        raise Unauthorized(_challenge(realm))
    token = token.strip()
    try:
        if not token:
            raise InvalidToken("empty token")
        claims = validator.validate(token)
    except InvalidToken as error:
        raise Unauthorized(
            _challenge(realm, error="invalid_token", error_description=error.reason),
            "invalid_token",
            error.reason,
        ) from None
    required = _names(scope)
    if not all(claims.has_scope(s) for s in required):
        description = f"scope {' '.join(required)} required"
        raise Forbidden(
            _challenge(
                realm,
                error="insufficient_scope",
                error_description=description,
                scope=" ".join(required),
            ),
            "insufficient_scope",
            description,
        )
    for name in _names(role):
        if not claims.has_role(name):
            description = f"role {name} required"
            raise Forbidden(
                _challenge(realm, error="insufficient_scope", error_description=description),
                "insufficient_scope",
                description,
            )
    return claims
