"""The person's side of sign-in: ``authserver login`` and ``authserver token``.

A public client (``cli`` by default) signs a person in with the authorization code
grant, PKCE ``S256`` and a loopback redirect (RFC 8252 §7.3), or with the device flow
(RFC 8628), and keeps the tokens in a small per-user cache; ``fresh_access_token``
hands a script a valid access token, refreshing (and storing the rotated refresh
token) when the cached one is about to expire.

Framework-free: Authlib's requests client and ``requests`` only, nothing of the server
side, so it runs on any person's machine.
"""

from __future__ import annotations

import html
import json
import os
import secrets
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from socketserver import TCPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import requests
from authlib.integrations.requests_client import OAuth2Session, OAuthError

from .client_env import CACHE_DIR

if sys.platform != "win32":
    import fcntl

DEFAULT_CLIENT_ID = "cli"
DEFAULT_SCOPES = "openid profile offline_access"
DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
#: A cached access token with less than this left is refreshed first.
REFRESH_MARGIN = 60
#: Seconds to wait for any one HTTP answer from the server.
HTTP_TIMEOUT = 30
#: RFC 8628 §3.5: the default polling interval, and what ``slow_down`` adds to it.
DEVICE_INTERVAL = 5
SLOW_DOWN_STEP = 5
CALLBACK_PATH = "/callback"


class LoginError(Exception):
    """A failure to show the person as one line."""


# -- discovery ------------------------------------------------------------------------


@dataclass(frozen=True)
class ServerMetadata:
    """What the client needs of RFC 8414 / OIDC Discovery metadata."""

    issuer: str
    authorization_endpoint: str | None
    token_endpoint: str
    device_authorization_endpoint: str | None
    iss_parameter_supported: bool


def discover(issuer: str) -> ServerMetadata:
    """The server's metadata, from ``<issuer>/.well-known/openid-configuration``."""
    parts = urlsplit(issuer)
    if parts.scheme != "https" and not (
        parts.scheme == "http" and parts.hostname in ("127.0.0.1", "::1", "localhost")
    ):
        # OAuth 2.1 §1.5: tokens only over TLS; plain http only on this machine.
        raise LoginError(f"the issuer must be an https:// URL (http only on loopback): {issuer}")
    url = issuer.rstrip("/") + "/.well-known/openid-configuration"
    try:
        response = requests.get(url, timeout=HTTP_TIMEOUT, headers={"Accept": "application/json"})
    except requests.RequestException as exc:
        raise LoginError(f"cannot reach {issuer}: {_reason(exc)}") from None
    if response.status_code != 200:
        raise LoginError(f"{url} answered HTTP {response.status_code}: is {issuer} the issuer?")
    try:
        doc: object = response.json()
    except ValueError:
        doc = None
    if not isinstance(doc, dict):
        raise LoginError(f"{url} did not return a JSON object: is {issuer} the issuer?")
    found = doc.get("issuer")
    # RFC 8414 §3.3: the metadata must name the issuer it was fetched for.
    if not isinstance(found, str) or found.rstrip("/") != issuer.rstrip("/"):
        raise LoginError(f"{url} names the issuer {found!r}, not {issuer}")
    token_endpoint = doc.get("token_endpoint")
    if not isinstance(token_endpoint, str):
        raise LoginError(f"{url} has no token_endpoint")
    return ServerMetadata(
        issuer=found,
        authorization_endpoint=_str_or_none(doc.get("authorization_endpoint")),
        token_endpoint=token_endpoint,
        device_authorization_endpoint=_str_or_none(doc.get("device_authorization_endpoint")),
        iss_parameter_supported=doc.get("authorization_response_iss_parameter_supported") is True,
    )


# -- the token cache ------------------------------------------------------------------


@dataclass(frozen=True)
class CachedToken:
    """The tokens of one sign-in; ``expires_at`` is the access token's, in Unix seconds."""

    access_token: str
    expires_at: int
    refresh_token: str | None
    id_token: str | None
    scope: str

    def seconds_left(self, now: float | None = None) -> float:
        return self.expires_at - (time.time() if now is None else now)

    def to_json(self) -> dict[str, object]:
        return {
            "access_token": self.access_token,
            "expires_at": self.expires_at,
            "refresh_token": self.refresh_token,
            "id_token": self.id_token,
            "scope": self.scope,
        }

    @classmethod
    def from_json(cls, data: object) -> CachedToken | None:
        if not isinstance(data, dict):
            return None
        access_token, expires_at = data.get("access_token"), data.get("expires_at")
        if not isinstance(access_token, str) or not isinstance(expires_at, int | float):
            return None
        return cls(
            access_token=access_token,
            expires_at=int(expires_at),
            refresh_token=_str_or_none(data.get("refresh_token")),
            id_token=_str_or_none(data.get("id_token")),
            scope=str(data.get("scope") or ""),
        )

    @classmethod
    def from_response(
        cls, token: Mapping[str, Any], previous: CachedToken | None = None
    ) -> CachedToken:
        """From a token response; what a refresh response leaves out is kept."""
        access_token = token.get("access_token")
        if not isinstance(access_token, str) or not access_token:
            raise LoginError("the token response has no access_token")
        try:
            expires_in = int(token.get("expires_in", 0))
        except (TypeError, ValueError):
            expires_in = 0  # unknown: treat as expired, so the next use refreshes
        return cls(
            access_token=access_token,
            expires_at=int(time.time()) + expires_in,
            refresh_token=_str_or_none(token.get("refresh_token"))
            or (previous.refresh_token if previous else None),
            id_token=_str_or_none(token.get("id_token"))
            or (previous.id_token if previous else None),
            scope=_str_or_none(token.get("scope")) or (previous.scope if previous else ""),
        )


def default_cache_path() -> Path:
    """``$AUTHSERVER_CACHE_DIR/tokens.json``, else ``~/.cache/authserver/tokens.json``."""
    directory = os.environ.get(CACHE_DIR)
    if directory:
        return Path(directory) / "tokens.json"
    return Path.home() / ".cache" / "authserver" / "tokens.json"


class TokenCache:
    """Tokens per (issuer, client_id), as JSON readable by the owner only.

    Writes go to a new 0600 file that replaces the old one atomically, under an
    exclusive lock, so concurrent ``authserver token`` runs never lose a rotated
    refresh token.
    """

    def __init__(self, path: Path | None = None) -> None:
        self.path = path or default_cache_path()
        self._lock_depth = 0

    def load(self, issuer: str, client_id: str) -> CachedToken | None:
        entries = self._read().get(_issuer_key(issuer))
        return CachedToken.from_json(entries.get(client_id)) if isinstance(entries, dict) else None

    def store(self, issuer: str, client_id: str, token: CachedToken) -> None:
        with self.locked():
            data = self._read()
            entries = data.get(_issuer_key(issuer))
            if not isinstance(entries, dict):
                entries = data[_issuer_key(issuer)] = {}
            entries[client_id] = token.to_json()
            self._write(data)

    @contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the cache's lock (reentrant within this object)."""
        if self._lock_depth or sys.platform == "win32":
            self._lock_depth += 1
            try:
                yield
            finally:
                self._lock_depth -= 1
            return
        self._make_directory()
        lock_path = self.path.with_name(self.path.name + ".lock")
        try:
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise LoginError(f"cannot lock the token cache {lock_path}: {_reason(exc)}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            self._lock_depth += 1
            try:
                yield
            finally:
                self._lock_depth -= 1
        finally:
            os.close(fd)  # releases the lock

    def _read(self) -> dict[str, Any]:
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return {}
        except OSError as exc:
            raise LoginError(f"cannot read the token cache {self.path}: {_reason(exc)}") from None
        try:
            data = json.loads(text)
        except ValueError:
            data = None
        if not isinstance(data, dict):
            raise LoginError(f"the token cache {self.path} is damaged: delete it and sign in again")
        return data

    def _write(self, data: Mapping[str, Any]) -> None:
        self._make_directory()
        temporary = self.path.with_name(f".{self.path.name}.{secrets.token_hex(6)}.tmp")
        try:
            fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as stream:
                json.dump(data, stream, indent=2, sort_keys=True)
                stream.write("\n")
                stream.flush()
                os.fsync(stream.fileno())
            os.replace(temporary, self.path)
        except OSError as exc:
            temporary.unlink(missing_ok=True)
            raise LoginError(f"cannot write the token cache {self.path}: {_reason(exc)}") from None

    def _make_directory(self) -> None:
        try:
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as exc:
            raise LoginError(
                f"cannot create the token cache directory {self.path.parent}: {_reason(exc)}"
            ) from None


def cache_key(client_id: str, audience: str | None = None) -> str:
    """Where a sign-in's tokens are cached: per client and, if one was asked for, per
    audience (RFC 8707 resource): a token for one API is no token for another."""
    return f"{client_id} {audience}" if audience else client_id


def fresh_access_token(
    issuer: str,
    client_id: str = DEFAULT_CLIENT_ID,
    cache: TokenCache | None = None,
    audience: str | None = None,
) -> str:
    """A cached access token with more than a minute left, refreshed when needed."""
    cache = cache or TokenCache()
    key = cache_key(client_id, audience)
    login_hint = f"authserver login --issuer {issuer}" + (
        f" --audience {audience}" if audience else ""
    )
    token = cache.load(issuer, key)
    if token is not None and token.seconds_left() > REFRESH_MARGIN:
        return token.access_token
    with cache.locked():
        token = cache.load(issuer, key)  # another process may have refreshed it
        if token is None:
            raise LoginError(
                f"not signed in to {issuer} as client {client_id}"
                + (f" for {audience}" if audience else "")
                + f": run `{login_hint}`"
            )
        if token.seconds_left() > REFRESH_MARGIN:
            return token.access_token
        if not token.refresh_token:
            raise LoginError(
                f"the access token has expired and there is no refresh token: run `{login_hint}`"
            )
        metadata = discover(issuer)
        with _session(client_id) as session:
            try:
                response = session.refresh_token(
                    metadata.token_endpoint,
                    refresh_token=token.refresh_token,
                    timeout=HTTP_TIMEOUT,
                )
            except OAuthError as exc:
                raise LoginError(
                    f"the refresh token was refused ({_oauth_reason(exc)}): run `{login_hint}`"
                ) from None
            except (requests.RequestException, ValueError) as exc:
                raise LoginError(
                    f"cannot refresh at {metadata.token_endpoint}: {_reason(exc)}"
                ) from None
        # The old refresh token is used up: store the rotated one at once.
        refreshed = CachedToken.from_response(response, previous=token)
        cache.store(issuer, key, refreshed)
        return refreshed.access_token


# -- sign-in: authorization code + PKCE with a loopback redirect ----------------------


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
            outcome.append(LoginError(f"cannot redeem the code: {_reason(exc)}"))
        if isinstance(outcome[0], LoginError):
            return 400, f"Sign-in failed: {outcome[0]}.", True
        return 200, "Signed in. You can close this window and return to the terminal.", True

    with _session(client_id, scope=scopes) as session:
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
        raise LoginError(f"the sign-in was refused ({_error_text(params)})")
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
        raise LoginError(f"the code was refused ({_oauth_reason(exc)})") from None
    except (requests.RequestException, ValueError) as exc:
        raise LoginError(
            f"cannot redeem the code at {metadata.token_endpoint}: {_reason(exc)}"
        ) from None
    return CachedToken.from_response(token)


# -- sign-in: the device flow (RFC 8628) ----------------------------------------------


def login_device(
    issuer: str,
    client_id: str = DEFAULT_CLIENT_ID,
    scopes: str = DEFAULT_SCOPES,
    show: Callable[[str], None] = print,
    sleep: Callable[[float], None] = time.sleep,
    audience: str | None = None,
) -> CachedToken:
    """Sign in on another device: ``show`` gets the instructions; then poll (§3.4-3.5)."""
    metadata = discover(issuer)
    endpoint = metadata.device_authorization_endpoint
    if not endpoint:
        raise LoginError(f"{issuer} does not offer the device flow")
    try:
        response = requests.post(
            endpoint,
            data={"client_id": client_id, "scope": scopes}
            | ({"resource": audience} if audience else {}),
            headers={"Accept": "application/json"},
            timeout=HTTP_TIMEOUT,
        )
        body: object = response.json()
    except requests.RequestException as exc:
        raise LoginError(f"cannot reach {endpoint}: {_reason(exc)}") from None
    except ValueError:
        raise LoginError(f"{endpoint} answered HTTP {response.status_code}, not JSON") from None
    if not isinstance(body, dict) or response.status_code != 200 or "error" in body:
        details = _error_text(body) if isinstance(body, dict) else f"HTTP {response.status_code}"
        raise LoginError(f"the device authorization was refused ({details})")
    device_code, user_code = body.get("device_code"), body.get("user_code")
    uri = body.get("verification_uri_complete") or body.get("verification_uri")
    if not isinstance(device_code, str) or not isinstance(user_code, str) or not uri:
        raise LoginError(f"{endpoint} answered without device_code, user_code or verification_uri")
    interval = float(_positive(body.get("interval"), DEVICE_INTERVAL))
    deadline = time.monotonic() + _positive(body.get("expires_in"), 600)
    show(f"To sign in, open {uri}\nand check that it shows the code {user_code}")

    with _session(client_id) as session:
        while True:
            sleep(interval)
            if time.monotonic() >= deadline:
                raise LoginError("the code expired before the sign-in was approved")
            try:
                token = session.fetch_token(
                    metadata.token_endpoint,
                    grant_type=DEVICE_GRANT,
                    device_code=device_code,
                    timeout=HTTP_TIMEOUT,
                )
            except OAuthError as exc:
                if exc.error == "authorization_pending":
                    continue
                if exc.error == "slow_down":
                    interval += SLOW_DOWN_STEP
                    continue
                if exc.error == "access_denied":
                    raise LoginError("the sign-in was denied") from None
                if exc.error == "expired_token":
                    raise LoginError("the code expired before the sign-in was approved") from None
                raise LoginError(f"the token endpoint refused ({_oauth_reason(exc)})") from None
            except (requests.ConnectionError, requests.Timeout, requests.HTTPError):
                interval = min(interval * 2, 60)  # §3.5: back off on a failing connection
                continue
            except ValueError as exc:
                raise LoginError(f"{metadata.token_endpoint}: {_reason(exc)}") from None
            return CachedToken.from_response(token)


# -- workload identity federation: a CI job's OIDC token for an access token ---------

TOKEN_EXCHANGE_GRANT = "urn:ietf:params:oauth:grant-type:token-exchange"  # noqa: S105 - a URN
JWT_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:jwt"  # noqa: S105 - a URN
ACCESS_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:access_token"  # noqa: S105 - a URN


def read_federated_token(spec: str, environ: Mapping[str, str] | None = None) -> str:
    """The external token ``spec`` names: ``env:VAR``, ``@FILE`` (a Kubernetes projected
    token, a file a CI step wrote), or the token itself."""
    environ = os.environ if environ is None else environ
    if spec.startswith("env:"):
        name = spec[len("env:") :]
        value = environ.get(name, "").strip()
        if not value:
            raise LoginError(f"the environment variable {name} is not set or empty")
        return value
    if spec.startswith("@"):
        path = Path(spec[1:]).expanduser()
        try:
            value = path.read_text().strip()
        except OSError as exc:
            raise LoginError(f"cannot read {path}: {_reason(exc)}") from None
        if not value:
            raise LoginError(f"{path} is empty")
        return value
    if not spec.strip():
        raise LoginError("--federated needs a token, @FILE or env:VAR")
    return spec.strip()


def exchange_federated_token(
    issuer: str,
    spec: str,
    *,
    audience: str | None = None,
    scope: str | None = None,
) -> str:
    """Trade an external JWT for an access token by RFC 8693 token exchange (no client
    authentication: the external token is the credential) and return the access token."""
    subject_token = read_federated_token(spec)
    metadata = discover(issuer)
    form = {
        "grant_type": TOKEN_EXCHANGE_GRANT,
        "subject_token": subject_token,
        "subject_token_type": JWT_TOKEN_TYPE,
        "requested_token_type": ACCESS_TOKEN_TYPE,
    }
    if audience:
        form["audience"] = audience
    if scope:
        form["scope"] = scope
    body = post_token_form(metadata.token_endpoint, form, "the token exchange")
    if not isinstance(body.get("access_token"), str):
        raise LoginError(f"the token exchange was refused ({_error_text(body)})")
    access_token: str = body["access_token"]
    return access_token


# -- helpers ----------------------------------------------------------------------------


def post_token_form(url: str, form: Mapping[str, str], what: str) -> dict[str, Any]:
    """POST a token request (RFC 6749 §3.2) and return its JSON body; ``LoginError``
    naming ``what`` for an unreachable endpoint, an answer that is not JSON, or a
    refusal."""
    try:
        response = requests.post(
            url, data=dict(form), timeout=HTTP_TIMEOUT, headers={"Accept": "application/json"}
        )
    except requests.RequestException as exc:
        raise LoginError(f"cannot reach {url}: {_reason(exc)}") from None
    try:
        body: object = response.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        raise LoginError(f"{url} answered HTTP {response.status_code} without JSON")
    if response.status_code != 200:
        raise LoginError(f"{what} was refused ({_error_text(body)})")
    return body


@contextmanager
def _session(client_id: str, **kwargs: Any) -> Iterator[OAuth2Session]:
    """Authlib's requests client for a public client (``client_id`` in the body)."""
    session = OAuth2Session(
        client_id,
        token_endpoint_auth_method="none",  # noqa: S106 - an auth method, not a password
        code_challenge_method="S256",
        **kwargs,
    )
    try:
        yield session
    finally:
        session.close()


def _issuer_key(issuer: str) -> str:
    return issuer.rstrip("/")


def _str_or_none(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def _positive(value: object, default: int) -> int:
    return (
        value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else default
    )


def _error_text(body: Mapping[str, Any]) -> str:
    error, description = body.get("error"), body.get("error_description")
    return f"{error}: {description}" if description else str(error)


def _oauth_reason(exc: OAuthError) -> str:
    description = getattr(exc, "description", None)
    return f"{exc.error}: {description}" if description else str(exc.error)


def _reason(exc: BaseException) -> str:
    """The root cause of a network or OS error, in a few words ("Connection refused")."""
    seen: set[int] = set()
    pending: list[object] = [exc]
    while pending:
        current = pending.pop(0)
        if not isinstance(current, BaseException) or id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, OSError) and current.strerror:
            return str(current.strerror)
        pending.extend([getattr(current, "reason", None), current.__cause__, current.__context__])
        pending.extend(current.args)
    if isinstance(exc, requests.Timeout):
        return f"no answer within {HTTP_TIMEOUT} seconds"
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
