"""Issue 16.8 (OIDC Discovery §4.3): the upstream's discovery ``issuer`` must equal the
configured issuer exactly; a document naming another issuer is refused with a clear
502 page, and the browser is never sent to its endpoints."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from .conftest import AppFactory


@pytest.fixture
def lying_discovery() -> Iterator[str]:
    """An HTTP server whose discovery document names another issuer."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = json.dumps(
                {
                    "issuer": "https://other-idp.example.com",
                    "authorization_endpoint": "https://other-idp.example.com/authorize",
                    "token_endpoint": "https://other-idp.example.com/token",
                    "jwks_uri": "https://other-idp.example.com/jwks",
                }
            ).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_discovery_naming_another_issuer_is_refused(
    make_app: AppFactory, lying_discovery: str
) -> None:
    app = make_app(
        upstream={"issuer": lying_discovery, "client_id": "authserver", "client_secret": "s"},
        local_users=False,
    )
    client = app.test_client()
    response = client.get("/login/upstream", query_string={"next": "/"})
    assert response.status_code == 502, (response.status_code, response.headers)
    assert "other-idp.example.com" not in response.headers.get("Location", "")
    assert "cannot be reached" in response.get_data(as_text=True)
