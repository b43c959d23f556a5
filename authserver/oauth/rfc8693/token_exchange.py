"""OAuth 2.0 Token Exchange, RFC 8693 §2, for workload identity federation.

A CI job's OIDC token (``subject_token_type`` ``urn:ietf:params:oauth:token-type:id_token``
or ``...:jwt``, §3) is traded for one of our access tokens (``requested_token_type``
absent or ``...:access_token``; ``issued_token_type`` in the response, §2.2.1). No
delegation: an ``actor_token`` is refused. ``audience`` and ``resource`` (§2.1) choose
the ``aud`` as for client credentials.

An unacceptable subject token is ``invalid_grant`` (DESIGN.md, as RFC 7523 §3.1 has it
for the JWT bearer grant), not §2.2.2's ``invalid_request``: one answer for both grants.
"""

from __future__ import annotations

from typing import Any

from authlib.oauth2.rfc6749 import InvalidRequestError

from ..requests import TOKEN_PARAMETERS, for_description, reject_repeated_parameters
from ..rfc7523.federated import FederatedGrant
from ..vocabulary import GRANT_TOKEN_EXCHANGE

TOKEN_TYPE_ID_TOKEN = "urn:ietf:params:oauth:token-type:id_token"  # noqa: S105 - a URN
TOKEN_TYPE_JWT = "urn:ietf:params:oauth:token-type:jwt"  # noqa: S105 - a URN
TOKEN_TYPE_ACCESS_TOKEN = "urn:ietf:params:oauth:token-type:access_token"  # noqa: S105 - a URN
#: §3: the subject token types we take: JWTs an external issuer signed.
SUBJECT_TOKEN_TYPES = (TOKEN_TYPE_ID_TOKEN, TOKEN_TYPE_JWT)
PARAMETERS = (
    *TOKEN_PARAMETERS,
    "subject_token",
    "subject_token_type",
    "requested_token_type",
    "actor_token",
    "actor_token_type",
)


class TokenExchangeGrant(FederatedGrant):
    GRANT_TYPE = GRANT_TOKEN_EXCHANGE

    def external_token(self) -> str:
        """§2.1: ``subject_token`` and ``subject_token_type`` are REQUIRED."""
        reject_repeated_parameters(self.request, PARAMETERS)
        form = self.request.form
        subject_token: str | None = form.get("subject_token")
        subject_token_type = form.get("subject_token_type")
        if not subject_token:
            raise InvalidRequestError(description="The subject_token parameter is missing.")
        if not subject_token_type:
            raise InvalidRequestError(description="The subject_token_type parameter is missing.")
        if subject_token_type not in SUBJECT_TOKEN_TYPES:
            raise InvalidRequestError(
                description=(
                    f"Unsupported subject_token_type '{for_description(subject_token_type)}'; "
                    "use an id_token or jwt token type."
                )
            )
        requested = form.get("requested_token_type")
        if requested and requested != TOKEN_TYPE_ACCESS_TOKEN:
            raise InvalidRequestError(
                description="Only access tokens are issued (requested_token_type)."
            )
        if form.get("actor_token") or form.get("actor_token_type"):
            raise InvalidRequestError(description="Delegation (actor_token) is not supported.")
        return subject_token

    def create_token_response(self) -> tuple[int, dict[str, Any], list[tuple[str, str]]]:
        body = self.issue().as_response()
        body["issued_token_type"] = TOKEN_TYPE_ACCESS_TOKEN  # §2.2.1: REQUIRED
        return 200, body, self.TOKEN_RESPONSE_HEADER
