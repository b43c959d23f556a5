"""PKCE (RFC 7636) as OAuth 2.1 §4.1.1 and RFC 9700 §2.1.1 want it: ``S256`` only.

Required of every public client; accepted from confidential ones (and then enforced
at the token endpoint for that code). ``plain`` is refused: it protects nothing
against an attacker who can read the authorization request.
"""

from __future__ import annotations

from typing import Any, ClassVar

from authlib.oauth2.rfc6749 import InvalidRequestError
from authlib.oauth2.rfc7636 import CodeChallenge


class S256CodeChallenge(CodeChallenge):  # type: ignore[misc]
    SUPPORTED_CODE_CHALLENGE_METHOD: ClassVar[list[str]] = ["S256"]

    def __init__(self) -> None:
        super().__init__(required=True)

    def validate_code_challenge(self, grant: Any, redirect_uri: str) -> None:
        payload = grant.request.payload.data
        challenge = payload.get("code_challenge")
        method = payload.get("code_challenge_method")
        if not challenge and not method:
            if grant.request.client.is_public:
                raise InvalidRequestError(
                    description="PKCE is required: send code_challenge and "
                    "code_challenge_method=S256."
                )
            return
        if method != "S256":
            # RFC 7636 §4.3 makes a missing method mean "plain"; we accept S256 only.
            raise InvalidRequestError(
                description="code_challenge_method must be S256; plain is not accepted."
            )
        super().validate_code_challenge(grant, redirect_uri)
