"""Helpers shared by our HTML pages."""

from __future__ import annotations

from typing import Any

from flask import make_response, render_template
from werkzeug.wrappers import Response


def page(template: str, status: int = 200, **context: Any) -> Response:
    response = make_response(render_template(template, **context), status)
    # Pages with forms and codes must not be cached or framed (RFC 9700 §4.16).
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["Content-Security-Policy"] = (
        "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; "
        "form-action 'self' http: https:; frame-ancestors 'none'; base-uri 'none'"
    )
    response.headers["Referrer-Policy"] = "no-referrer"
    return response


def message(
    title: str, text: str, status: int = 200, *, error: bool = False, **kw: Any
) -> Response:
    return page("message.html", status, title=title, message=text, error=error, **kw)
