"""A library for resource servers: validate our RFC 9068 access tokens.

Depends on nothing of the server side, so a resource server can install it alone: its
modules import one another and nothing else of ``authserver``.

- :mod:`.validator`: ``TokenValidator(issuer, audience).validate(token)`` returns
  :class:`Claims` or raises :class:`InvalidToken`; :class:`IssuerKeys` caches the
  issuer's JWKS (RFC 9068 §4);
- :mod:`.bearer`: :func:`check` turns an ``Authorization`` header into claims or an
  RFC 6750 error with its ``WWW-Authenticate`` challenge;
- :mod:`.flask`: :func:`require`, the Flask decorator built on it, and :func:`init_app`.
"""

from __future__ import annotations

from .bearer import BearerError, Forbidden, Unauthorized, check
from .flask import EXTENSION, init_app, require
from .validator import (
    ACCESS_TOKEN_TYPES,
    ALGORITHMS,
    Claims,
    FetchJson,
    InvalidToken,
    IssuerKeys,
    IssuerMismatch,
    KeysUnavailable,
    TokenValidator,
    fetch_json,
)

__all__ = [
    "ACCESS_TOKEN_TYPES",
    "ALGORITHMS",
    "EXTENSION",
    "BearerError",
    "Claims",
    "FetchJson",
    "Forbidden",
    "InvalidToken",
    "IssuerKeys",
    "IssuerMismatch",
    "KeysUnavailable",
    "TokenValidator",
    "Unauthorized",
    "check",
    "fetch_json",
    "init_app",
    "require",
]
