"""Sign-in through the browser: the authorization code grant with PKCE ``S256``
(RFC 7636) and a loopback redirect on any port (RFC 8252 §7.3), the response's ``iss``
checked (RFC 9207)."""

from __future__ import annotations

import html
import secrets
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from socketserver import TCPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import requests
from authlib.integrations.requests_client import OAuth2Session, OAuthError

from .cache import CachedToken
from .http import (
    DEFAULT_CLIENT_ID,
    DEFAULT_SCOPES,
    HTTP_TIMEOUT,
    LoginError,
    ServerMetadata,
    discover,
    error_text,
    oauth_reason,
    public_session,
    reason,
)

CALLBACK_PATH = "/callback"


class _CallbackServer(ThreadingHTTPServer):
    """Receives the one authorization response on ``http://127.0.0.1:PORT/callback``."""

    daemon_threads = True

    def __init__(self, accept: Callable[[dict[str, str]], tuple[int, str, bool] | None]) -> None:
        super().__init__(("127.0.0.1", 0), _CallbackHandler)
        self.accept = accept
        #: Set once the page for the answer has been sent, so it reaches the browser.
        self.answered = threading.Event()

    def server_bind(self) -> None:
        TCPServer.server_bind(self)  # HTTPServer's would look up the host's FQDN: slow
        self.server_name, self.server_port = "127.0.0.1", int(self.server_address[1])


class _CallbackHandler(BaseHTTPRequestHandler):
    server: _CallbackServer
    timeout = 10  # idle browser pre-connections are dropped

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        if url.path != CALLBACK_PATH:
            self._page(404, "Not found.")
            return
        answer = self.server.accept(dict(parse_qsl(url.query)))
        if answer is None:
            self._page(400, "This is not the answer to the sign-in in progress.")
            return
        status, text, final = answer
        try:
            self._page(status, text)
            self.wfile.flush()
        finally:
            if final:
                self.server.answered.set()

    def _page(self, status: int, text: str) -> None:
        body = (
            "<!doctype html><meta charset=utf-8><title>authserver</title>"
            f"<p style='font-family:sans-serif'>{html.escape(text)}</p>"
        ).encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("Referrer-Policy", "no-referrer")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # the URL carries the code: keep it out of the terminal


def login_loopback(
    issuer: str,
    client_id: str = DEFAULT_CLIENT_ID,
    scopes: str = DEFAULT_SCOPES,
    open_browser: Callable[[str], None] = print,
    timeout: float = 300,
    audience: str | None = None,
) -> CachedToken:
    """Sign in through the browser: ``open_browser`` gets the authorization URL.

    ``audience`` asks for tokens for that resource (RFC 8707 ``resource``)."""
    metadata = discover(issuer)
    if not metadata.authorization_endpoint:
        raise LoginError(f"{issuer} has no authorization endpoint: try `--device`")
    verifier = secrets.token_urlsafe(64)  # 86 characters (RFC 7636 §4.1: 43-128)
    state = secrets.token_urlsafe(24)
    outcome: list[CachedToken | LoginError] = []
    claim = threading.Lock()

    def accept(params: dict[str, str]) -> tuple[int, str, bool] | None:
        """The page for an authorization response, and whether it ends the wait."""
        if not secrets.compare_digest(params.get("state", ""), state):
            return None  # not ours (a stray or forged request): keep waiting
        if not claim.acquire(blocking=False):
            return 409, "This sign-in has already been answered.", False
        try:
            outcome.append(_redeem(metadata, session, params, verifier))
        except LoginError as exc:
            outcome.append(exc)
        except Exception as exc:  # reported by the waiting thread, not lost in this one
            outcome.append(LoginError(f"cannot redeem the code: {reason(exc)}"))
        if isinstance(outcome[0], LoginError):
            return 400, f"Sign-in failed: {outcome[0]}.", True
        return 200, "Signed in. You can close this window and return to the terminal.", True

    with public_session(client_id, scope=scopes) as session:
        server = _CallbackServer(accept)
        # RFC 8252 §7.3: any port of the registered http://127.0.0.1/callback
        session.redirect_uri = f"http://127.0.0.1:{server.server_port}{CALLBACK_PATH}"
        extra = {"resource": audience} if audience else {}
        url, _ = session.create_authorization_url(
            metadata.authorization_endpoint, state=state, code_verifier=verifier, **extra
        )
        thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2})
        thread.start()
        try:
            open_browser(url)
            if not server.answered.wait(timeout):
                raise LoginError(f"no sign-in within {timeout:g} seconds")
        finally:
            server.shutdown()
            server.server_close()
            thread.join()
    result = outcome[0]
    if isinstance(result, LoginError):
        raise result
    return result


def _redeem(
    metadata: ServerMetadata, session: OAuth2Session, params: dict[str, str], verifier: str
) -> CachedToken:
    """Check an authorization response whose ``state`` is ours and trade its code."""
    iss = params.get("iss")
    # RFC 9207 §2.4: a server that says it sends `iss` must send ours.
    if (iss is not None or metadata.iss_parameter_supported) and iss != metadata.issuer:
        raise LoginError(f"the authorization response is from {iss!r}, not {metadata.issuer}")
    if "error" in params:
        raise LoginError(f"the sign-in was refused ({error_text(params)})")
    code = params.get("code")
    if not code:
        raise LoginError("the authorization response has no code")
    try:
        token = session.fetch_token(
            metadata.token_endpoint,
            grant_type="authorization_code",
            code=code,
            code_verifier=verifier,
            timeout=HTTP_TIMEOUT,
        )
    except OAuthError as exc:
        raise LoginError(f"the code was refused ({oauth_reason(exc)})") from None
    except (requests.RequestException, ValueError) as exc:
        raise LoginError(
            f"cannot redeem the code at {metadata.token_endpoint}: {reason(exc)}"
        ) from None
    return CachedToken.from_response(token)
