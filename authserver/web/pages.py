"""Helpers shared by our HTML pages."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from flask import make_response, render_template
from werkzeug.wrappers import Response


def origin_of(url: str) -> str | None:
    """``scheme://host[:port]`` of an http(s) URL, for a CSP source list."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return None
    return f"{parts.scheme}://{parts.netloc}"


def page(
    template: str, status: int = 200, *, form_targets: Iterable[str] = (), **context: Any
) -> Response:
    """An HTML page of ours. ``form_targets``: the URLs its form's POST may redirect
    to (browsers apply ``form-action`` to those redirects too): the client's
    ``redirect_uri`` on the consent page, the logout target on the logout page."""
    response = make_response(render_template(template, **context), status)
    sources = ["'self'", *dict.fromkeys(o for o in map(origin_of, form_targets) if o)]
    # Pages with forms and codes must not be cached or framed (RFC 9700 §4.16).
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["Content-Security-Policy"] = (
        "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; "
        f"form-action {' '.join(sources)}; frame-ancestors 'none'; base-uri 'none'"
    )
    response.headers["Referrer-Policy"] = "no-referrer"
    return response


def message(
    title: str, text: str, status: int = 200, *, error: bool = False, **kw: Any
) -> Response:
    return page("message.html", status, title=title, message=text, error=error, **kw)


#: The security headers of every response (:func:`security_headers`).
NOSNIFF = ("X-Content-Type-Options", "nosniff")
HSTS = ("Strict-Transport-Security", "max-age=31536000")


def security_headers(response: Response, https: bool) -> Response:
    """On every response: ``nosniff``; HSTS when we are served over https (RFC 9700
    §4.1.1 needs TLS; HSTS keeps a browser from a first plain-http request)."""
    response.headers.setdefault(*NOSNIFF)
    if https:
        response.headers.setdefault(*HSTS)
    return response


def when(value: datetime | float | None, empty: str = "—") -> str:
    """A time as the pages show it (UTC, to the minute); ``empty`` for none. A number
    is unix time."""
    if value is None:
        return empty
    if isinstance(value, int | float):
        value = datetime.fromtimestamp(value, UTC)
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
