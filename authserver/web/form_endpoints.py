"""The form endpoints, answered without Flask's request machinery (issue 14).

Token (RFC 6749 §3.2), introspection (RFC 7662 §2), revocation (RFC 7009 §2) and device
authorization (RFC 8628 §3.1) take a form POST, and the protocol layer answers them
whole (:data:`authserver.web.oauth.FORM_ENDPOINTS`). They are the busiest requests, and
Flask's request context, hooks and ``Response`` cost about as much CPU as the protocol's
own work outside a token's signature. :class:`FormEndpoints` sits in front of Flask and
answers a plain form POST to one of them itself: the body is parsed as Werkzeug parses
it, and what Flask's hooks do around such a request is done here too (the access log
line, the metrics, the security headers, the audit trail's address and client id).

Anything else goes to Flask as before: another method or path, a chunked body, a body
over ``max_form_bytes``, another content type, a body that is not UTF-8 (Werkzeug reads
it as an empty form). So does an exception the protocol layer raises, to the app's own
error handlers (503 for a dependency that is down, never a traceback).
"""

from __future__ import annotations

import io
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any, cast
from urllib.parse import parse_qsl

from flask import Flask, g
from werkzeug.datastructures import EnvironHeaders
from werkzeug.http import HTTP_STATUS_CODES

from ..oauth.http import HttpRequest, HttpResponse
from ..oauth.server import AuthServer
from . import access_log
from .adapter import response_body
from .audit import PlainRequest, plain_request
from .metrics import STARTED
from .oauth import FORM_ENDPOINTS
from .pages import HSTS, NOSNIFF
from .services import Services
from .signin import environ_peer_address, rate_limit_address

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]

FORM_TYPE = "application/x-www-form-urlencoded"


class FormEndpoints:
    """WSGI middleware: the form endpoints' plain requests, then Flask for the rest.

    ``app.wsgi_app = FormEndpoints(app)``, once the app is wired.
    """

    def __init__(self, app: Flask) -> None:
        services = Services.of(app)
        settings = services.settings
        self._app = app
        self._flask: WSGIApp = app.wsgi_app
        self._routes: dict[str, tuple[str, Callable[[AuthServer, HttpRequest], HttpResponse]]] = {
            path: (f"oauth.{name}", answer) for name, (path, answer) in FORM_ENDPOINTS.items()
        }
        self._server = services.oauth
        self._metrics = services.metrics
        self._forwarders = settings.trusted_forwarders
        self._base_url = settings.base_url
        self._limit: int = app.config["MAX_CONTENT_LENGTH"]
        self._access_log = settings.access_log
        self._security_headers = [NOSNIFF]
        if settings.issuer.startswith("https://"):
            self._security_headers.append(HSTS)

    def __call__(
        self, environ: dict[str, Any], start_response: Callable[..., Any]
    ) -> Iterable[bytes]:
        path: str = environ.get("PATH_INFO", "")
        route = self._routes.get(path)
        if route is None or environ.get("REQUEST_METHOD") != "POST":
            return self._flask(environ, start_response)
        started = environ[STARTED] = time.perf_counter()
        form = self._form(environ)
        if form is None:
            return self._flask(environ, start_response)
        endpoint, answer = route
        address = environ_peer_address(environ, self._forwarders)
        with plain_request(address) as plain:
            try:
                request = HttpRequest(
                    "POST",
                    self._base_url + path,
                    cast(Mapping[str, str], EnvironHeaders(environ)),
                    form,
                    address=rate_limit_address(address),
                )
                response = answer(self._server, request)
            except Exception as exc:
                return self._failed(environ, start_response, exc, plain, started)
        status = response.status
        body, content_type = response_body(response)
        headers = [(k, v) for k, v in response.headers if k.lower() != "content-type"]
        headers += [("Content-Type", content_type), ("Content-Length", str(len(body)))]
        present = {k.lower() for k, _ in headers}
        headers.extend(h for h in self._security_headers if h[0].lower() not in present)
        start_response(_status_line(status), headers)
        elapsed = time.perf_counter() - started
        if self._access_log:
            access_log.record("POST", path, status, elapsed * 1000, address, plain.client_id)
        if self._metrics is not None:
            self._metrics.count_request(endpoint, "POST", status, elapsed)
        return [body]

    def _form(self, environ: dict[str, Any]) -> dict[str, list[str]] | None:
        """The form of a plain request, as ``request.form`` would give it; ``None`` for
        one Flask should take (whatever was read of the body is handed on)."""
        length: str = environ.get("CONTENT_LENGTH") or ""
        if not length.isdigit() or "HTTP_TRANSFER_ENCODING" in environ:
            return None
        size = int(length)
        content_type: str = environ.get("CONTENT_TYPE") or ""
        if size > self._limit or content_type.partition(";")[0].strip().lower() != FORM_TYPE:
            return None
        raw = environ["wsgi.input"].read(size) if size else b""
        environ["wsgi.input"] = io.BytesIO(raw)  # for Flask, if it is to take the request
        if len(raw) != size:
            return None  # the client went away: Flask answers that
        try:
            text = raw.decode()
        except UnicodeDecodeError:
            return None
        form: dict[str, list[str]] = {}
        # Werkzeug's own parsing of a form body (formparser._parse_urlencoded).
        for key, value in parse_qsl(text, keep_blank_values=True, errors="werkzeug.url_quote"):
            form.setdefault(key, []).append(value)
        return form

    def _failed(
        self,
        environ: dict[str, Any],
        start_response: Callable[..., Any],
        exc: Exception,
        plain: PlainRequest,
        started: float,
    ) -> Iterable[bytes]:
        """Answer ``exc`` as Flask would have: its error handlers, then its hooks."""
        app = self._app
        with app.request_context(environ):
            g.setdefault(access_log.STARTED, started)
            if plain.client_id is not None:
                g.setdefault(access_log.CLIENT_ID, plain.client_id)
            response = app.finalize_request(app.handle_user_exception(exc))
            result: Iterable[bytes] = response(environ, start_response)
            return result


def _status_line(status: int) -> str:
    """As Werkzeug writes it (``200 OK``)."""
    reason = HTTP_STATUS_CODES.get(status)
    return f"{status} {reason.upper()}" if reason else f"{status} UNKNOWN"
