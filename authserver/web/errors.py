"""Errors as RFC 6749 JSON under /oauth2/ and the API, never a traceback."""

from __future__ import annotations

import logging

from flask import Flask, Response, request
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from .adapter import oauth_error

log = logging.getLogger(__name__)


def register_error_handlers(app: Flask) -> None:
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

    @app.errorhandler(Exception)
    def unexpected(exc: Exception) -> Response:
        log.exception("unhandled error on %s %s", request.method, request.path)
        return oauth_error(500, "server_error", "The server could not handle this request.")
