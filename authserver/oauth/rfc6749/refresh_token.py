"""Refresh token grant, RFC 6749 §6, with rotation and reuse detection (RFC 9700 §4.14.2).

Every use rotates the token. A rotated token presented again revokes its family,
unless it comes within the retry grace window: then the response the first use got
is returned again (a client that lost the response must not be logged out). The
person is re-read on every refresh, so a role change shows in the next token and a
disabled or deleted person's refresh tokens stop working at once.
"""

from __future__ import annotations

import logging
from typing import Any, ClassVar

from authlib.oauth2.rfc6749 import (
    InvalidGrantError,
    InvalidRequestError,
    InvalidScopeError,
    UnauthorizedClientError,
    grants,
)

from ...errors import DependencyUnavailable
from ..clients import CONFIDENTIAL_AUTH_METHODS, Client
from ..refresh import RefreshTokens, RotationLost
from ..requests import TOKEN_PARAMETERS, for_description, reject_repeated_parameters
from ..vocabulary import GRANT_REFRESH_TOKEN

log = logging.getLogger(__name__)


class RefreshTokenGrant(grants.RefreshTokenGrant):  # type: ignore[misc]
    TOKEN_ENDPOINT_AUTH_METHODS: ClassVar[list[str]] = [*CONFIDENTIAL_AUTH_METHODS, "none"]

    def validate_token_request(self) -> None:
        reject_repeated_parameters(self.request, (*TOKEN_PARAMETERS, "refresh_token"))
        client: Client = self.authenticate_token_endpoint_client()
        if not client.check_grant_type(GRANT_REFRESH_TOKEN):
            raise UnauthorizedClientError(
                description="This client may not use the refresh_token grant."
            )
        token = self.request.form.get("refresh_token")
        if not token:
            raise InvalidRequestError(description="The refresh_token parameter is missing.")
        refresh: RefreshTokens = self.server.refresh_tokens
        record = refresh.lookup(token)
        # §6 / §10.4: bound to the client it was issued to.
        if record is None or record.client_id != client.client_id:
            raise InvalidGrantError(description="The refresh token is invalid.")
        if record.family_revoked:
            raise InvalidGrantError(description="The refresh token has been revoked.")
        now = self.server.now()
        if now >= record.family_expires_at or now >= record.idle_expires_at:
            raise InvalidGrantError(description="The refresh token has expired.")
        granted = record.scope.split()
        asked = (self.request.payload.scope or "").split()
        if asked and not set(asked) <= set(granted):
            # §6: the scope "MUST NOT include any scope not originally granted".
            extra = for_description(" ".join(s for s in asked if s not in granted))
            raise InvalidScopeError(description=f"Scope not granted originally: {extra}.")
        self.request.client = client
        self.request.refresh_record = record
        self.request.refresh_token_value = token
        self.request.granted_scopes = asked or granted

    def create_token_response(self) -> tuple[int, dict[str, Any], list[tuple[str, str]]]:
        refresh: RefreshTokens = self.server.refresh_tokens
        client: Client = self.request.client
        record = self.request.refresh_record
        token: str = self.request.refresh_token_value
        if record.rotated_at is not None:
            return 200, self._reused(refresh, record, token), self.TOKEN_RESPONSE_HEADER
        person = self.server.users.get(record.user_id)
        if person is None or person.disabled:
            refresh.revoke_family(record.family_id, "user")
            raise InvalidGrantError(description="The person this token was issued to is gone.")
        try:
            body, _ = self.server.issue_for_person(
                client,
                person,
                scopes=self.request.granted_scopes,
                audience=record.audience,
                auth_time=record.auth_time,
                grant_type=self.GRANT_TYPE,
                rotate=record,
            )
        except RotationLost:  # a concurrent use won: it is this token's reuse now
            return 200, self._reused(refresh, record, token), self.TOKEN_RESPONSE_HEADER
        try:
            refresh.remember_response(token, body)
        except DependencyUnavailable:
            # The rotation is done and the client gets its successor; only a retry of
            # a response lost on the way cannot be answered from the cache (then 503).
            log.warning("refresh retry cache not written: the ephemeral store is down")
        return 200, body, self.TOKEN_RESPONSE_HEADER

    def _reused(self, refresh: RefreshTokens, record: Any, token: str) -> dict[str, Any]:
        """A rotated token again: the same answer inside the grace window, else revoke."""
        fresh = refresh.lookup(token) or record
        if refresh.within_grace(fresh):
            body = refresh.replay_response(token)
            if body is not None:
                return body
            raise InvalidGrantError(description="The refresh token was already used.")
        # Durable first (the family dies and the audit row is written even with Redis
        # down), then the family's access tokens are denied (repeated on a retry).
        refresh.revoke_family(
            record.family_id,
            "reuse",
            on_revoked=lambda: self.server.emit(
                "refresh_reuse_detected",
                client=self.request.client,
                family_id=record.family_id,
                user_id=record.user_id,
            ),
        )
        raise InvalidGrantError(description="The refresh token was already used.")
