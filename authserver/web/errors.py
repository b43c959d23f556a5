"""Errors as RFC 6749 JSON under /oauth2/ and the API, never a traceback."""

from __future__ import annotations

import logging
import threading
import time

from flask import Flask, Response, request
from sqlalchemy.exc import DBAPIError, OperationalError
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge
from werkzeug.wrappers import Response as WerkzeugResponse

from ..errors import DependencyUnavailable
from .adapter import oauth_error
from .pages import message
from .services import Services

#: Paths whose callers are programs: they get RFC 6749 JSON, never an HTML page.
JSON_PATHS = ("/oauth2/", "/api/", "/.well-known/", "/userinfo", "/jwks", "/readyz")

log = logging.getLogger(__name__)

#: Seconds between two log lines about the same database outage, per worker.
WARN_EVERY = 10.0


def register_error_handlers(app: Flask) -> None:
    warned = [float("-inf"), 0]  # when the outage was last logged, requests refused since
    warned_lock = threading.Lock()

    @app.errorhandler(RequestEntityTooLarge)
    def too_large(exc: RequestEntityTooLarge) -> Response:
        limit = app.config["MAX_CONTENT_LENGTH"]
        return oauth_error(
            413, "invalid_request", f"The request body is larger than {limit} bytes."
        )

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> Response:
        code = exc.code or 500
        error = {405: "invalid_request", 404: "not_found"}.get(code, "invalid_request")
        response = oauth_error(code, error, exc.description or exc.name)
        if code == 405 and exc.response is None:
            allowed = getattr(exc, "valid_methods", None)
            if allowed:
                response.headers["Allow"] = ", ".join(allowed)
        return response

    @app.errorhandler(DependencyUnavailable)
    def dependency_down(exc: DependencyUnavailable) -> WerkzeugResponse:
        return unavailable(exc.dependency, exc.retry_after)

    @app.errorhandler(DBAPIError)
    def database_error(exc: DBAPIError) -> WerkzeugResponse:
        # A database that is down or restarting (connection refused, reset, or cut
        # mid-query) is an outage, not a bug: 503, and the request changed nothing.
        if isinstance(exc, OperationalError) or exc.connection_invalidated:
            # One line per worker every WARN_EVERY seconds of an outage, not one per
            # request refused (a busy server would write thousands a second).
            now = time.monotonic()
            with warned_lock:
                quiet = now - warned[0] < WARN_EVERY
                if quiet:
                    warned[1] += 1
                else:
                    more = f" ({warned[1]} more since)" if warned[1] else ""
                    warned[:] = [now, 0]
            if not quiet:
                log.warning("database is unavailable%s: %s", more, exc.orig or exc)
            return unavailable("database", 2)
        return unexpected(exc)

    def unavailable(dependency: str, retry_after: int) -> WerkzeugResponse:
        """503 + Retry-After (RFC 9110 §15.6.4, §10.2.3), JSON or an HTML page."""
        metrics = Services.of(app).metrics
        if metrics is not None:
            metrics.count_unavailable(dependency)
        description = "The service is temporarily unavailable; try again shortly."
        if request.path.startswith(JSON_PATHS) or not request.accept_mimetypes.accept_html:
            response: WerkzeugResponse = oauth_error(503, "temporarily_unavailable", description)
        else:
            response = message("Temporarily unavailable", description, 503, error=True)
        response.headers["Retry-After"] = str(retry_after)
        return response

    @app.errorhandler(Exception)
    def unexpected(exc: Exception) -> Response:
        log.exception("unhandled error on %s %s", request.method, request.path)
        return oauth_error(500, "server_error", "The server could not handle this request.")
