"""Flask <-> protocol layer: the one place that turns ``flask.request`` into an HttpRequest."""

from __future__ import annotations

import io
import json
from collections.abc import Mapping
from typing import cast

from flask import Response, current_app, request
from werkzeug.exceptions import RequestEntityTooLarge

from ..oauth.http import HttpRequest, HttpResponse
from ..oauth.server import AuthServer
from ..settings import Settings
from .services import services


def oauth_server() -> AuthServer:
    """This app's protocol engine (built by ``create_app``)."""
    server = services().oauth
    return server


def app_settings() -> Settings:
    settings = services().settings
    return settings


def bound_streamed_body() -> None:
    """A body without ``Content-Length`` (chunked) over ``MAX_CONTENT_LENGTH`` is a 413,
    as one with the header is (issue 9.6).

    Werkzeug stops reading such a stream at the limit and parses what it read, so a
    larger body was silently cut. Run before anything reads the body: it is read here
    (at most the limit and one byte) and handed on with its length.
    """
    if request.content_length is not None or "wsgi.input_terminated" not in request.environ:
        return
    if "chunked" not in request.headers.get("Transfer-Encoding", "").lower():
        return
    limit: int = current_app.config["MAX_CONTENT_LENGTH"]
    body = request.environ["wsgi.input"].read(limit + 1)
    if len(body) > limit:
        raise RequestEntityTooLarge()
    request.environ["wsgi.input"] = io.BytesIO(body)
    request.environ["CONTENT_LENGTH"] = str(len(body))


def oauth_request(address: str = "") -> HttpRequest:
    """The current request, as the protocol layer takes it (form body only, RFC 6749 §3.2);
    ``address``: who sent it, as rate limits count it."""
    base_url: str = current_app.config["AUTHSERVER_BASE_URL"]
    content_type = (request.mimetype or "").lower()
    form: dict[str, list[str]] = {}
    if content_type == "application/x-www-form-urlencoded":
        # Reading the form enforces MAX_CONTENT_LENGTH (413 before any parsing).
        form = {key: request.form.getlist(key) for key in request.form}
    elif (
        request.content_length and request.content_length > current_app.config["MAX_CONTENT_LENGTH"]
    ):
        raise RequestEntityTooLarge()
    return HttpRequest(
        method=request.method,
        uri=base_url + request.path,
        headers=cast(Mapping[str, str], request.headers),
        form=form,
        address=address,
    )


def authorization_request() -> HttpRequest:
    """The authorization endpoint's request: parameters from the query (RFC 6749 §4.1.1)."""
    base_url: str = current_app.config["AUTHSERVER_BASE_URL"]
    return HttpRequest(
        method="GET",
        uri=base_url + request.full_path,
        headers=cast(Mapping[str, str], request.headers),
        form={},
        query={key: request.args.getlist(key) for key in request.args},
    )


def response_body(response: HttpResponse) -> tuple[bytes, str]:
    """A protocol answer's body and content type: JSON, or nothing for a redirect."""
    if 300 <= response.status < 400:
        return b"", "text/html; charset=utf-8"
    return json.dumps(response.body).encode(), "application/json"


def to_flask(response: HttpResponse) -> Response:
    body, content_type = response_body(response)
    return Response(
        body, status=response.status, headers=response.headers, content_type=content_type
    )


def oauth_error(status: int, error: str, description: str) -> Response:
    """An RFC 6749 §5.2 error body, for failures before the protocol layer runs."""
    return to_flask(
        HttpResponse(
            status=status,
            body={"error": error, "error_description": description},
            headers=[("Cache-Control", "no-store"), ("Pragma", "no-cache")],
        )
    )
