"""Client credentials grant, RFC 6749 §4.4 (OAuth 2.1 §4.2).

Only confidential clients (§4.4: "MUST only be used by confidential clients"); no
refresh token (§4.4.3: "A refresh token SHOULD NOT be included").
"""

from __future__ import annotations

from typing import Any, ClassVar

from authlib.oauth2.rfc6749 import InvalidScopeError, UnauthorizedClientError, grants

from ..clients import (
    CONFIDENTIAL_AUTH_METHODS,
    SECRET_GENERATION_CLAIM,
    Client,
    ServiceAccountClient,
)
from ..requests import TOKEN_PARAMETERS, for_description, reject_repeated_parameters
from ..rfc7523.client_assertion import PRIVATE_KEY_JWT
from ..tokens import AccessTokens


class ClientCredentialsGrant(grants.ClientCredentialsGrant):  # type: ignore[misc]
    TOKEN_ENDPOINT_AUTH_METHODS: ClassVar[list[str]] = list(CONFIDENTIAL_AUTH_METHODS)

    def validate_token_request(self) -> None:
        reject_repeated_parameters(self.request, TOKEN_PARAMETERS)
        client: Client = self.authenticate_token_endpoint_client()
        if not client.check_grant_type(self.GRANT_TYPE):
            raise UnauthorizedClientError(
                description="This client may not use the client_credentials grant."
            )
        self.request.client = client
        self.request.granted_scopes = granted_scopes(client, self.request.payload.scope)
        self.request.audience = self.server.select_audience(self.request, client)

    def create_token_response(self) -> tuple[int, dict[str, Any], list[tuple[str, str]]]:
        client: Client = self.request.client
        tokens: AccessTokens = self.server.access_tokens
        issued = tokens.issue(
            client,
            subject=client.client_id,
            audience=self.request.audience,
            scopes=self.request.granted_scopes,
            roles=client.roles,
            extra=self._generation_claim(client),
        )
        self.server.emit(
            "token_issued", grant_type=self.GRANT_TYPE, client=client, claims=issued.claims
        )
        return 200, issued.as_response(), self.TOKEN_RESPONSE_HEADER

    def _generation_claim(self, client: Client) -> dict[str, Any] | None:
        """Which credential of a service account minted the token (issue 16.7)."""
        if not isinstance(client, ServiceAccountClient):
            return None
        kid = getattr(self.request, "client_assertion_kid", None)
        generation = client.generation(kid if self.request.auth_method == PRIVATE_KEY_JWT else None)
        return {SECRET_GENERATION_CLAIM: generation} if generation else None


def granted_scopes(client: Client, requested: str | None) -> list[str]:
    """RFC 6749 §3.3: the requested scopes, all of which the client must hold.

    With no ``scope`` parameter, the client's registered scopes are the default; an
    empty one counts as none (§3.2: "Parameters sent without a value MUST be treated
    as if they were omitted").
    """
    asked = (requested or "").split()
    if not asked:
        return list(client.scopes)
    unknown = [s for s in asked if s not in client.scopes]
    if unknown:
        names = for_description(" ".join(unknown))
        raise InvalidScopeError(description=f"Scope not allowed for this client: {names}.")
    return list(dict.fromkeys(asked))
