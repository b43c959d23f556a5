"""What the client modules share: the public client's defaults, HTTP with the server
(RFC 8414 discovery, token requests, Authlib's session), and failures as one line.

Framework-free: Authlib's requests client and ``requests`` only, nothing of the server
side, so it runs on any person's machine.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import requests
from authlib.integrations.requests_client import OAuth2Session, OAuthError

DEFAULT_CLIENT_ID = "cli"
DEFAULT_SCOPES = "openid profile offline_access"
#: Seconds to wait for any one HTTP answer from the server.
HTTP_TIMEOUT = 30


class LoginError(Exception):
    """A failure to show the person as one line."""


class UsageError(LoginError):
    """A failure of what the person gave (flags, variables, the client config file),
    not of the server: the CLI exits 2."""


# -- discovery ------------------------------------------------------------------------


@dataclass(frozen=True)
class ServerMetadata:
    """What the client needs of RFC 8414 / OIDC Discovery metadata."""

    issuer: str
    authorization_endpoint: str | None
    token_endpoint: str
    device_authorization_endpoint: str | None
    iss_parameter_supported: bool
    revocation_endpoint: str | None = None


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
        raise LoginError(f"cannot reach {issuer}: {reason(exc)}") from None
    if response.status_code != 200:
        raise LoginError(f"{url} answered HTTP {response.status_code}: is {issuer} the issuer?")
    doc = _json_object(response)
    if doc is None:
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
        authorization_endpoint=str_or_none(doc.get("authorization_endpoint")),
        token_endpoint=token_endpoint,
        device_authorization_endpoint=str_or_none(doc.get("device_authorization_endpoint")),
        iss_parameter_supported=doc.get("authorization_response_iss_parameter_supported") is True,
        revocation_endpoint=str_or_none(doc.get("revocation_endpoint")),
    )


def post_token_form(url: str, form: Mapping[str, str], what: str) -> dict[str, Any]:
    """POST a token request (RFC 6749 §3.2) and return its JSON body; ``LoginError``
    naming ``what`` for an unreachable endpoint, an answer that is not JSON, or a
    refusal."""
    try:
        response = requests.post(
            url, data=dict(form), timeout=HTTP_TIMEOUT, headers={"Accept": "application/json"}
        )
    except requests.RequestException as exc:
        raise LoginError(f"cannot reach {url}: {reason(exc)}") from None
    body = _json_object(response)
    if body is None:
        raise LoginError(f"{url} answered HTTP {response.status_code} without JSON")
    if response.status_code != 200:
        raise LoginError(f"{what} was refused ({error_text(body)})")
    return body


def _json_object(response: requests.Response) -> dict[str, Any] | None:
    """The answer's body if it is a JSON object, else None."""
    try:
        body: object = response.json()
    except ValueError:
        return None
    return body if isinstance(body, dict) else None


@contextmanager
def public_session(client_id: str, **kwargs: Any) -> Iterator[OAuth2Session]:
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


def str_or_none(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def positive_int(value: object, default: int) -> int:
    return (
        value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else default
    )


def error_text(body: Mapping[str, Any]) -> str:
    error, description = body.get("error"), body.get("error_description")
    return f"{error}: {description}" if description else str(error)


def oauth_reason(exc: OAuthError) -> str:
    description = getattr(exc, "description", None)
    return f"{exc.error}: {description}" if description else str(exc.error)


def reason(exc: BaseException) -> str:
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
