"""JWT bearer authorization grant, RFC 7523 §2.1, for workload identity federation.

``assertion`` is an external issuer's JWT (a CI job's OIDC token); §3's checks are
:mod:`authserver.oauth.federation`'s, and a failed one is ``invalid_grant`` (§3.1). Client
authentication is optional (§3.1: "authentication of the client is optional").
"""

from __future__ import annotations

from authlib.oauth2.rfc6749 import InvalidRequestError

from ..requests import TOKEN_PARAMETERS, reject_repeated_parameters
from ..vocabulary import GRANT_JWT_BEARER
from .federated import FederatedGrant


class JwtBearerGrant(FederatedGrant):
    GRANT_TYPE = GRANT_JWT_BEARER

    def external_token(self) -> str:
        """§2.1: ``assertion`` holds a single JWT."""
        reject_repeated_parameters(self.request, (*TOKEN_PARAMETERS, "assertion"))
        assertion: str | None = self.request.form.get("assertion")
        if not assertion:
            raise InvalidRequestError(description="The assertion parameter is missing.")
        return assertion
