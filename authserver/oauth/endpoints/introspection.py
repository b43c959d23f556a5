"""Token introspection, RFC 7662.

Only authenticated (confidential) clients may introspect (§2.1: the endpoint MUST
require some form of authorization). Anything that is not an active token of ours,
expired, revoked or garbage, is ``{"active": false}`` and nothing more (§2.2).
"""

from __future__ import annotations

from typing import Any, ClassVar

from authlib.oauth2.rfc7662 import IntrospectionEndpoint as _IntrospectionEndpoint

from ..clients import SECRET_AUTH_METHODS, Client
from ..http import HttpRequest
from ..requests import reject_repeated_parameters

_NO_STORE = [
    ("Content-Type", "application/json"),
    ("Cache-Control", "no-store"),
    ("Pragma", "no-cache"),
]
#: Claims of an access token that an introspection response repeats (§2.2).
_CLAIMS = ("scope", "client_id", "sub", "aud", "iss", "exp", "iat", "nbf", "jti", "roles")


class IntrospectionEndpoint(_IntrospectionEndpoint):  # type: ignore[misc]
    CLIENT_AUTH_METHODS: ClassVar[list[str]] = list(SECRET_AUTH_METHODS)

    def create_endpoint_response(
        self, request: HttpRequest
    ) -> tuple[int, dict[str, Any], list[tuple[str, str]]]:
        reject_repeated_parameters(request)
        client: Client = self.authenticate_endpoint_client(request)
        self.check_params(request, client)
        claims = self.server.access_tokens.check(request.form["token"])
        if claims is None:
            return 200, {"active": False}, _NO_STORE
        body: dict[str, Any] = {"active": True, "token_type": "Bearer"}
        body.update({name: claims[name] for name in _CLAIMS if name in claims})
        return 200, body, _NO_STORE
