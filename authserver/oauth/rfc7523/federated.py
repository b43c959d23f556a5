"""What the two grants of workload identity federation share (DESIGN.md, "Machine
identity without shared secrets"): RFC 8693 token exchange (:mod:`..rfc8693.token_exchange`) and
the RFC 7523 JWT bearer grant (:mod:`.jwt_bearer`) differ only in where the external
token is and what the response adds.

No client authentication is needed: the external token is the credential (RFC 7523
§3.1, RFC 8693 §2.1 "client authentication ... is not required"). A client that does
authenticate must do it right (``invalid_client`` otherwise), and a rule may require one.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

from authlib.oauth2.rfc6749 import InvalidGrantError, grants

from ..clients import CONFIDENTIAL_AUTH_METHODS, Client
from ..federation import RULE_CLAIM, Federation, FederationRefused, Match
from ..rfc6749.client_credentials import granted_scopes
from ..tokens import AccessTokens, IssuedToken


class FederatedGrant(grants.BaseGrant, grants.TokenEndpointMixin):  # type: ignore[misc]
    TOKEN_ENDPOINT_AUTH_METHODS: ClassVar[list[str]] = list(CONFIDENTIAL_AUTH_METHODS)

    def external_token(self) -> str:
        """The external JWT of this request (checked for presence and shape)."""
        raise NotImplementedError

    def authenticate_optional_client(self) -> Client | None:
        """The client, if the request carries client credentials at all."""
        form = self.request.form
        if (
            self.request.headers.get("Authorization")
            or form.get("client_secret")
            or form.get("client_assertion")
        ):
            client: Client = self.authenticate_token_endpoint_client()
            return client
        return None

    def validate_token_request(self) -> None:
        token = self.external_token()
        client = self.authenticate_optional_client()
        federation: Federation = self.server.federation
        try:
            match = federation.verify(token, client)
            issued_to = match.rule.client
            if client is not None:
                # RFC 9068 §2.2: client_id names the client that asked, when one did.
                issued_to = dataclasses.replace(issued_to, client_id=client.client_id)
            scopes = granted_scopes(match.rule.client, self.request.payload.scope)
            audience = self.server.select_audience(self.request, issued_to)
            federation.redeem(match)  # last: what is refused above leaves the token unused
        except FederationRefused as refused:
            self.server.emit(
                "federation_refused",
                client_id=client.client_id if client is not None else None,
                grant_type=self.GRANT_TYPE,
                reason=refused.reason,
                **refused.context,
            )
            raise InvalidGrantError(description=refused.description) from None
        self.request.client = issued_to
        self.request.federation_match = match
        self.request.granted_scopes = scopes
        self.request.audience = audience

    def issue(self) -> IssuedToken:
        match: Match = self.request.federation_match
        client: Client = self.request.client
        tokens: AccessTokens = self.server.access_tokens
        rule = match.rule.settings
        issued = tokens.issue(
            client,
            subject=match.subject,
            audience=self.request.audience,
            scopes=self.request.granted_scopes,
            roles=(rule.role,),
            extra={"act": match.actor(), RULE_CLAIM: rule.name},
            ttl=int(rule.token_ttl),
        )
        self.server.emit(
            "token_issued",
            grant_type=self.GRANT_TYPE,
            client=client,
            claims=issued.claims,
            rule=rule.name,
            external_iss=match.claims["iss"],
            external_sub=str(match.claims["sub"])[:200],
        )
        return issued

    def create_token_response(self) -> tuple[int, dict[str, Any], list[tuple[str, str]]]:
        return 200, self.issue().as_response(), self.TOKEN_RESPONSE_HEADER
