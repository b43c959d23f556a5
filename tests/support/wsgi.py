"""An in-process transport: ``requests`` (and Authlib's ``OAuth2Session``, a
``requests.Session``) reach a Flask app through WSGI, with no socket and no process.

:func:`route_to_app` sends every request for its origins (``http://127.0.0.1:PORT``)
to the app for the length of a ``with`` block; other origins go out as usual. Tests
written against a live server's URL run unchanged over it: cookies, redirects and
``Location`` headers are those of the real endpoints.
"""

from __future__ import annotations

import io
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from http.client import HTTPMessage
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests
from flask import Flask
from requests.adapters import BaseAdapter, HTTPAdapter
from urllib3 import HTTPResponse
from urllib3._collections import HTTPHeaderDict
from werkzeug.test import EnvironBuilder, run_wsgi_app

#: Headers the WSGI environ computes itself from the body and the URL.
_COMPUTED = {"content-length", "host"}


class _OriginalResponse:
    """What ``requests`` reads Set-Cookie from (``http.client.HTTPResponse.msg``)."""

    def __init__(self, headers: list[tuple[str, str]]) -> None:
        self.msg = HTTPMessage()
        for name, value in headers:
            self.msg[name] = value

    def isclosed(self) -> bool:
        return True


class WSGIAdapter(BaseAdapter):
    """A ``requests`` transport adapter that calls a WSGI app in this process."""

    def __init__(self, app: Flask, remote_addr: str = "127.0.0.1") -> None:
        super().__init__()
        self.app = app
        self.remote_addr = remote_addr

    def send(
        self,
        request: requests.PreparedRequest,
        stream: bool = False,
        timeout: Any = None,
        verify: Any = True,
        cert: Any = None,
        proxies: Mapping[str, str] | None = None,
    ) -> requests.Response:
        url = urlsplit(request.url or "")
        body = request.body or b""
        if isinstance(body, str):
            body = body.encode()
        elif not isinstance(body, bytes):  # a file or an iterable of chunks
            body = body.read() if hasattr(body, "read") else b"".join(body)
        headers = [(k, v) for k, v in request.headers.items() if k.lower() not in _COMPUTED]
        builder = EnvironBuilder(
            path=url.path or "/",
            base_url=f"{url.scheme}://{url.netloc}",
            query_string=url.query,
            method=request.method,
            headers=headers,
            data=body,
            environ_base={"REMOTE_ADDR": self.remote_addr},
        )
        try:
            environ = builder.get_environ()
        finally:
            builder.close()
        app_iter, status, response_headers = run_wsgi_app(self.app, environ, buffered=True)
        try:
            content = b"".join(app_iter)
        finally:
            close = getattr(app_iter, "close", None)
            if close is not None:
                close()
        code, _, reason = status.partition(" ")
        pairs = list(response_headers.items())
        raw = HTTPResponse(
            body=io.BytesIO(content),
            headers=HTTPHeaderDict(pairs),
            status=int(code),
            reason=reason,
            preload_content=False,
            decode_content=False,
            original_response=_OriginalResponse(pairs),  # type: ignore[arg-type]
        )
        return HTTPAdapter().build_response(request, raw)

    def close(self) -> None:
        pass


@contextmanager
def route_to_app(app: Flask, *origins: str) -> Iterator[WSGIAdapter]:
    """Within the block, every ``requests`` session sends the requests for ``origins``
    (say ``http://127.0.0.1:PORT`` and ``http://localhost:PORT``: one server under
    both loopback names) to ``app`` in-process."""
    adapter = WSGIAdapter(app)
    prefixes = tuple(origin.rstrip("/").lower() + "/" for origin in origins)
    get_adapter = requests.Session.get_adapter

    def routed(self: requests.Session, url: str) -> BaseAdapter:
        if url.lower().startswith(prefixes):
            return adapter
        return get_adapter(self, url)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(requests.Session, "get_adapter", routed)
        yield adapter
