"""Token revocation, RFC 7009.

A revoked access token's ``jti`` goes to the denylist until the token expires; a
revoked refresh token takes its whole family with it, and the family's live access
tokens are denied (§2.1: the server "SHOULD" also invalidate the access tokens of the
same grant; :mod:`..refresh` owns families). A token
we do not know (or that already expired) is answered 200 all the same (§2.2: "invalid
tokens do not cause an error response"). A client may only revoke its own tokens (§2.1).
"""

from __future__ import annotations

from typing import Any, ClassVar

from authlib.consts import default_json_headers
from authlib.oauth2.rfc6749 import InvalidRequestError
from authlib.oauth2.rfc7009 import RevocationEndpoint as _RevocationEndpoint

from ..clients import CONFIDENTIAL_AUTH_METHODS
from ..http import HttpRequest
from ..requests import token_request


class RevocationEndpoint(_RevocationEndpoint):  # type: ignore[misc]
    # Public clients may revoke their own tokens too (§2.1 asks confidential ones to
    # authenticate; a public client identifies itself by client_id).
    CLIENT_AUTH_METHODS: ClassVar[list[str]] = [*CONFIDENTIAL_AUTH_METHODS, "none"]

    def create_endpoint_response(
        self, request: HttpRequest
    ) -> tuple[int, dict[str, Any], list[tuple[str, str]]]:
        client, token = token_request(self, request)
        record = self.server.refresh_tokens.lookup(token)
        if record is not None:
            # A refresh token: revoke its whole family (every token from that sign-in).
            if record.client_id != client.client_id:
                raise InvalidRequestError(description="This token was not issued to this client.")
            if self.server.refresh_tokens.revoke_family(record.family_id, "revoked"):
                self.server.emit(
                    "refresh_revoked",
                    client=client,
                    family_id=record.family_id,
                    user_id=record.user_id,
                )
            return 200, {}, default_json_headers
        claims = self.server.access_tokens.check(token)
        if claims is not None:
            if claims.get("client_id") != client.client_id:
                raise InvalidRequestError(description="This token was not issued to this client.")
            self.server.access_tokens.revoke(claims)
            self.server.emit("token_revoked", client=client, claims=claims)
        return 200, {}, default_json_headers
