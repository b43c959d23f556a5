"""The UserInfo endpoint, OIDC Core 1.0 §5.3."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from ..clients import Client
from ..http import HttpRequest, HttpResponse
from ..subjects import UserDirectory, userinfo_claims
from .id_tokens import OPENID_SCOPE


class TokenChecker(Protocol):
    def check(self, token: str) -> dict[str, Any] | None: ...


class UserInfoEndpoint:
    def __init__(
        self,
        access_tokens: TokenChecker,
        users: UserDirectory,
        query_client: Callable[[str], Client | None],
    ) -> None:
        self._access_tokens = access_tokens
        self._users = users
        self._query_client = query_client

    def response(self, request: HttpRequest) -> HttpResponse:
        """§5.3: the person's claims for a bearer token with ``openid`` (§5.3.1: GET or
        POST, the token as a Bearer header, RFC 6750 §2.1).

        Errors as RFC 6750 §3: 401 with ``WWW-Authenticate: Bearer error=...``.
        """
        header = request.headers.get("Authorization") or ""
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return _bearer_error(401, None, "")
        claims = self._access_tokens.check(token.strip())
        if claims is None:
            return _bearer_error(401, "invalid_token", "The access token is invalid or expired.")
        scopes = str(claims.get("scope", "")).split()
        if OPENID_SCOPE not in scopes:
            return _bearer_error(403, "insufficient_scope", "The openid scope is required.")
        subject = self._users.get(str(claims.get("sub")))
        if subject is None or subject.disabled:
            return _bearer_error(401, "invalid_token", "The person is no longer known here.")
        client = self._query_client(str(claims.get("client_id") or ""))
        third_party = client is None or client.consent
        return HttpResponse(
            status=200,
            body=userinfo_claims(subject, scopes, third_party),
            headers=[("Cache-Control", "no-store")],
        )


def _bearer_error(status: int, error: str | None, description: str) -> HttpResponse:
    challenge = 'Bearer realm="authserver"'
    body: dict[str, Any] = {}
    if error:
        challenge += f', error="{error}", error_description="{description}"'
        body = {"error": error, "error_description": description}
    return HttpResponse(status=status, body=body, headers=[("WWW-Authenticate", challenge)])
