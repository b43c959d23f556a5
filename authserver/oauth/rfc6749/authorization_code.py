"""Authorization code grant with PKCE, RFC 6749 §4.1 as OAuth 2.1 §4.1 tightens it.

Codes are 256-bit random strings, kept only as a SHA-256 in the ephemeral store for
60 seconds, bound to the client, the redirect URI and the PKCE challenge. Redemption
is an atomic take, so of concurrent redemptions exactly one wins. A second redemption
fails and revokes what the first one issued (§4.1.2: the server "SHOULD revoke (when
possible) all tokens previously issued based on that authorization code").
"""

from __future__ import annotations

import hashlib
import json
import secrets
from dataclasses import asdict, dataclass
from typing import Any, ClassVar

from authlib.oauth2.rfc6749 import InvalidGrantError, UnauthorizedClientError, grants

from ..clients import CONFIDENTIAL_AUTH_METHODS, Client
from ..http import HttpRequest
from ..requests import TOKEN_PARAMETERS, reject_repeated_parameters
from ..tokens import IssuedToken
from ..vocabulary import GRANT_AUTHORIZATION_CODE

CODE_TTL_SECONDS = 60
CODE_PREFIX = "code:"
#: What a redeemed code issued, so that a replay can revoke it.
CODE_USED_PREFIX = "code-used:"
CODE_USED_TTL_SECONDS = 600
#: Set by a replay that came while the first redemption was still issuing.
CODE_REPLAYED_PREFIX = "code-replayed:"


@dataclass(frozen=True)
class AuthorizationCode:
    """What a code stands for (the fields Authlib's PKCE extension reads)."""

    client_id: str
    redirect_uri: str | None
    scope: str
    user_id: str
    auth_time: int
    audience: str
    code_challenge: str | None = None
    code_challenge_method: str | None = None
    nonce: str | None = None

    def get_redirect_uri(self) -> str | None:
        return self.redirect_uri

    def get_scope(self) -> str:
        return self.scope


def code_key(code: str) -> str:
    return CODE_PREFIX + hashlib.sha256(code.encode()).hexdigest()


class AuthorizationCodeGrant(grants.AuthorizationCodeGrant):  # type: ignore[misc]
    TOKEN_ENDPOINT_AUTH_METHODS: ClassVar[list[str]] = [*CONFIDENTIAL_AUTH_METHODS, "none"]

    def generate_authorization_code(self) -> str:
        return secrets.token_urlsafe(32)

    def save_authorization_code(self, code: str, request: HttpRequest) -> None:
        payload = request.payload.data
        item = AuthorizationCode(
            client_id=request.client.client_id,
            redirect_uri=request.payload.redirect_uri,
            scope=request.scope,
            user_id=request.user.id,
            auth_time=int(request.auth_time),
            audience=request.audience,
            code_challenge=payload.get("code_challenge"),
            code_challenge_method=payload.get("code_challenge_method"),
            nonce=payload.get("nonce"),
        )
        self.server.store.put(code_key(code), json.dumps(asdict(item)).encode(), CODE_TTL_SECONDS)

    def validate_token_request(self) -> None:
        reject_repeated_parameters(self.request, (*TOKEN_PARAMETERS, "code", "code_verifier"))
        client: Client = self.authenticate_token_endpoint_client()
        if not client.check_grant_type(GRANT_AUTHORIZATION_CODE):
            raise UnauthorizedClientError(
                description="This client may not use the authorization_code grant."
            )
        super().validate_token_request()

    def authenticate_token_endpoint_client(self) -> Client:
        # Authlib calls this again from the parent's validate_token_request; once is enough.
        if getattr(self.request, "client", None) is not None:
            client: Client = self.request.client
            return client
        client = super().authenticate_token_endpoint_client()
        self.request.client = client
        return client

    def query_authorization_code(self, code: str, client: Client) -> AuthorizationCode | None:
        key = code_key(code)
        data = self.server.store.take(key)
        if data is None:
            self._code_replayed(key)
            return None
        # Mark it redeemed before anything can fail, so a replay racing this
        # redemption still finds out what to revoke.
        self.server.store.put(CODE_USED_PREFIX + key, b"{}", CODE_USED_TTL_SECONDS)
        self.request.code_key = key
        item = AuthorizationCode(**json.loads(data))
        if item.client_id != client.client_id:
            raise InvalidGrantError(description="This code was not issued to this client.")
        return item

    def authenticate_user(self, authorization_code: AuthorizationCode) -> Any:
        person = self.server.users.get(authorization_code.user_id)
        if person is None or person.disabled:
            return None
        return person

    def create_token_response(self) -> tuple[int, dict[str, Any], list[tuple[str, str]]]:
        client: Client = self.request.client
        code: AuthorizationCode = self.request.authorization_code
        person = self.authenticate_user(code)
        if person is None:
            raise InvalidGrantError(description="The person this code was issued for is gone.")
        body, issued = self.server.issue_for_person(
            client,
            person,
            scopes=code.scope.split(),
            audience=code.audience,
            auth_time=code.auth_time,
            nonce=code.nonce,
            grant_type=self.GRANT_TYPE,
        )
        self._code_redeemed(self.request.code_key, issued)
        return 200, body, self.TOKEN_RESPONSE_HEADER

    # -- §4.1.2: a code used twice revokes the tokens issued from it -----------------

    def _code_redeemed(self, key: str, issued: IssuedToken) -> None:
        """Remember what a code issued; revoke it at once if a replay came meanwhile.

        The record is written before the replay flag is read, and a replay sets its
        flag before it reads the record again, so one of the two always revokes.
        """
        store = self.server.store
        record = {
            "jti": issued.claims["jti"],
            "exp": issued.claims["exp"],
            "family_id": issued.claims.get("refresh_family"),
        }
        store.put(CODE_USED_PREFIX + key, json.dumps(record).encode(), CODE_USED_TTL_SECONDS)
        if store.get(CODE_REPLAYED_PREFIX + key) is not None:
            self._revoke_code_tokens(record)

    def _code_replayed(self, key: str) -> None:
        """RFC 6749 §4.1.2: "If an authorization code is used more than once, the
        authorization server MUST deny the request and SHOULD revoke (when possible)
        all tokens previously issued based on that authorization code." """
        store = self.server.store
        raw = store.get(CODE_USED_PREFIX + key)
        if raw is None:
            return  # never issued, or long expired: nothing to revoke
        self.server.emit("code_replayed", client=None)
        record = json.loads(raw)
        if "jti" not in record:
            # The first redemption is still running: flag it, then look again.
            store.put(CODE_REPLAYED_PREFIX + key, b"1", CODE_USED_TTL_SECONDS)
            raw = store.get(CODE_USED_PREFIX + key)
            record = json.loads(raw) if raw is not None else {}
        if "jti" in record:
            self._revoke_code_tokens(record)

    def _revoke_code_tokens(self, record: dict[str, Any]) -> None:
        self.server.access_tokens.revoke({"jti": record["jti"], "exp": record["exp"]})
        if record.get("family_id"):
            self.server.refresh_tokens.revoke_family(record["family_id"], "code_replay")
