"""The Flask side of the library: ``init_app`` and the ``require`` decorator.

Flask is imported only when a decorated view runs, so the rest of the library works
without it.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

from .bearer import BearerError, check
from .validator import TokenValidator

if TYPE_CHECKING:
    from flask import Flask

EXTENSION = "authserver.resource"
P = ParamSpec("P")
R = TypeVar("R")


def init_app(app: Flask, validator: TokenValidator) -> None:
    """Make ``validator`` the one ``require`` uses in ``app`` when given none."""
    app.extensions[EXTENSION] = validator


def require(
    validator: TokenValidator | None = None,
    *,
    scope: str | Sequence[str] | None = None,
    role: str | Sequence[str] | None = None,
) -> Callable[[Callable[P, R]], Callable[P, Any]]:
    """Answer 401/403 (RFC 6750) unless the request bears a valid token with ``scope``
    and ``role``; the view finds the claims on ``flask.g.claims``."""

    def decorator(view: Callable[P, R]) -> Callable[P, Any]:
        @functools.wraps(view)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> Any:
            import flask

            chosen = validator or flask.current_app.extensions.get(EXTENSION)
            if not isinstance(chosen, TokenValidator):
                raise RuntimeError("no TokenValidator: pass one or call init_app(app, validator)")
            # the resource server's own request, not the authorization server's
            header = flask.request.headers.get("Authorization")  # noqa: TID251
            try:
                flask.g.claims = check(chosen, header, scope=scope, role=role)
            except BearerError as error:
                body = {"error": error.error or "invalid_request"}
                body["error_description"] = error.description or "a bearer token is required"
                response = flask.jsonify(body)
                response.status_code = error.status
                response.headers["WWW-Authenticate"] = error.www_authenticate
                return response
            return view(*args, **kwargs)

        return wrapper

    return decorator
