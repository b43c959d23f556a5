"""Token introspection, RFC 7662.

Only authenticated (confidential) clients may introspect (§2.1: the endpoint MUST
require some form of authorization). A client sees its own tokens; other clients'
tokens only if it is a resource server allowed to (``introspect: true``; §4: the
server "SHOULD require protected resources to be specifically authorized"). Anything
else, and anything that is not an active token of ours (expired, revoked, garbage),
is ``{"active": false}`` and nothing more (§2.2).
"""

from __future__ import annotations

from typing import Any, ClassVar

from authlib.consts import default_json_headers
from authlib.oauth2.rfc7662 import IntrospectionEndpoint as _IntrospectionEndpoint

from ..clients import CONFIDENTIAL_AUTH_METHODS
from ..http import HttpRequest
from ..requests import token_request

#: Claims of an access token that an introspection response repeats (§2.2).
_CLAIMS = ("scope", "client_id", "sub", "aud", "iss", "exp", "iat", "nbf", "jti", "roles")


class IntrospectionEndpoint(_IntrospectionEndpoint):  # type: ignore[misc]
    CLIENT_AUTH_METHODS: ClassVar[list[str]] = list(CONFIDENTIAL_AUTH_METHODS)

    def create_endpoint_response(
        self, request: HttpRequest
    ) -> tuple[int, dict[str, Any], list[tuple[str, str]]]:
        client, token = token_request(self, request)
        refresh = self.server.refresh_tokens
        record = refresh.lookup(token)
        if record is not None:
            # A refresh token: only its own client may ask (RFC 7662 §4, no leaking).
            if record.client_id != client.client_id or not refresh.is_live(record):
                return 200, {"active": False}, default_json_headers
            return (
                200,
                {
                    "active": True,
                    "token_type": "refresh_token",
                    "client_id": record.client_id,
                    "sub": record.user_id,
                    "scope": record.scope,
                    "exp": int(min(record.family_expires_at, record.idle_expires_at)),
                },
                default_json_headers,
            )
        claims = self.server.access_tokens.check(token)
        if claims is None or not client.may_introspect(claims, self.server.audiences):
            return 200, {"active": False}, default_json_headers
        body: dict[str, Any] = {"active": True, "token_type": "Bearer"}
        body.update({name: claims[name] for name in _CLAIMS if name in claims})
        return 200, body, default_json_headers
