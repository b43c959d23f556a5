"""Device authorization grant, RFC 8628: the device authorization endpoint (§3.1-3.2),
the person's approval on the verification page (§3.3) and the token request (§3.4-3.5).

The device code's state lives in the ephemeral store under its SHA-256; the user
code (8 letters of a consonant alphabet, XXXX-XXXX, §6.1) points to it. Polling a
pending request faster than the interval gets ``slow_down`` and the interval grows
by 5 seconds (§3.5); a decided one is answered at once. The code is redeemed by an
atomic take, so it yields tokens once.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

from authlib.common.urls import add_params_to_uri
from authlib.oauth2.rfc6749 import (
    AccessDeniedError,
    InvalidGrantError,
    InvalidRequestError,
    UnauthorizedClientError,
    grants,
)
from authlib.oauth2.rfc8628 import (
    AuthorizationPendingError,
    ExpiredTokenError,
    SlowDownError,
)
from authlib.oauth2.rfc8628 import DeviceAuthorizationEndpoint as _DeviceAuthorizationEndpoint

from ...clock import SYSTEM_CLOCK, Clock
from ..clients import CONFIDENTIAL_AUTH_METHODS, Client
from ..http import HttpRequest
from ..requests import TOKEN_PARAMETERS, reject_repeated_parameters
from ..rfc6749.client_credentials import granted_scopes
from ..vocabulary import GRANT_DEVICE_CODE

#: §6.1: no vowels (no words), no look-alikes; 20^8 ≈ 2^34.6 codes.
USER_CODE_ALPHABET = "BCDFGHJKLMNPQRSTVWXZ"
DEVICE_PREFIX = "device:"
USER_CODE_PREFIX = "user-code:"
POLL_PREFIX = "device-poll:"
SLOW_PREFIX = "device-slow:"
#: A device code's state is kept this much longer than the code lives, so that a
#: late poll is told ``expired_token`` rather than ``invalid_grant``.
EXPIRED_GRACE_SECONDS = 600
SLOW_DOWN_STEP = 5


def device_key(device_code: str) -> str:
    return DEVICE_PREFIX + hashlib.sha256(device_code.encode()).hexdigest()


def normalize_user_code(value: str) -> str:
    """What a person typed, as stored: upper case, separators and spaces dropped."""
    return "".join(c for c in value.upper() if c.isalnum())


def format_user_code(code: str) -> str:
    return f"{code[:4]}-{code[4:]}"


class DeviceAuthorizationEndpoint(_DeviceAuthorizationEndpoint):  # type: ignore[misc]
    """§3.1-3.2: hands out a device code, a user code and where to enter it."""

    CLIENT_AUTH_METHODS: ClassVar[list[str]] = [*CONFIDENTIAL_AUTH_METHODS, "none"]

    def create_endpoint_response(
        self, request: HttpRequest
    ) -> tuple[int, dict[str, Any], list[tuple[str, str]]]:
        reject_repeated_parameters(request, ("client_id", "scope"))
        client: Client = self.server.authenticate_client(
            request, self.CLIENT_AUTH_METHODS, self.ENDPOINT_NAME
        )
        if not client.check_grant_type(GRANT_DEVICE_CODE):
            raise UnauthorizedClientError(description="This client may not use the device flow.")
        scopes = granted_scopes(client, request.payload.scope)
        audience = self.server.select_audience(request, client)
        device_code = secrets.token_urlsafe(32)
        user_code = "".join(secrets.choice(USER_CODE_ALPHABET) for _ in range(8))
        ttl = int(self.server.device_code_ttl)
        interval = int(self.server.device_poll_interval)
        verification_uri = self.server.device_verification_uri
        state = {
            "client_id": client.client_id,
            "scope": " ".join(scopes),
            "audience": audience,
            "user_code": user_code,
            "expires_at": self.server.clock.now() + ttl,
            "interval": interval,
            "status": "pending",
        }
        key = device_key(device_code)
        store = self.server.store
        store.put(key, json.dumps(state).encode(), ttl + EXPIRED_GRACE_SECONDS)
        if not store.add(USER_CODE_PREFIX + user_code, key.encode(), ttl):
            # A collision among live codes (about 1 in 2^34 per live code): try again.
            return self.create_endpoint_response(request)
        shown = format_user_code(user_code)
        body = {
            "device_code": device_code,
            "user_code": shown,
            "verification_uri": verification_uri,
            "verification_uri_complete": add_params_to_uri(
                verification_uri, [("user_code", shown)]
            ),
            "expires_in": ttl,
            "interval": interval,
        }
        self.server.emit("device_authorization", client=client)
        return 200, body, [("Content-Type", "application/json"), ("Cache-Control", "no-store")]


class DeviceCodeGrant(grants.BaseGrant, grants.TokenEndpointMixin):  # type: ignore[misc]
    """§3.4-3.5: the device polls the token endpoint with its device code."""

    GRANT_TYPE = GRANT_DEVICE_CODE
    TOKEN_ENDPOINT_AUTH_METHODS: ClassVar[list[str]] = [*CONFIDENTIAL_AUTH_METHODS, "none"]

    def validate_token_request(self) -> None:
        reject_repeated_parameters(self.request, (*TOKEN_PARAMETERS, "device_code"))
        client: Client = self.authenticate_token_endpoint_client()
        if not client.check_grant_type(GRANT_DEVICE_CODE):
            raise UnauthorizedClientError(description="This client may not use the device flow.")
        device_code = self.request.form.get("device_code")
        if not device_code:
            raise InvalidRequestError(description="The device_code parameter is missing.")
        self.request.client = client
        self.request.device_key = device_key(device_code)

    def create_token_response(self) -> tuple[int, dict[str, Any], list[tuple[str, str]]]:
        client: Client = self.request.client
        key: str = self.request.device_key
        store = self.server.store
        raw = store.get(key)
        if raw is None:
            raise InvalidGrantError(description="The device code is invalid.")
        state = json.loads(raw)
        if state["client_id"] != client.client_id:
            raise InvalidGrantError(description="This device code was not issued to this client.")
        if self.server.clock.now() >= state["expires_at"]:
            raise ExpiredTokenError(description="The device code has expired; start again.")
        if state["status"] == "denied":
            store.delete(key)
            raise AccessDeniedError(description="The person denied the request.")
        if state["status"] != "approved":
            self._pace(key, state)
            raise AuthorizationPendingError(description="Waiting for the person to approve.")
        taken = store.take(key)
        if taken is None:
            raise InvalidGrantError(description="The device code was already used.")
        state = json.loads(taken)
        person = self.server.users.get(state["user_id"])
        if person is None or person.disabled:
            raise InvalidGrantError(description="The person who approved is gone.")
        body, _ = self.server.issue_for_person(
            client,
            person,
            scopes=state["scope"].split(),
            audience=state["audience"],
            auth_time=int(state["auth_time"]),
            grant_type=self.GRANT_TYPE,
        )
        return 200, body, self.TOKEN_RESPONSE_HEADER

    def _pace(self, key: str, state: dict[str, Any]) -> None:
        """§3.5: a pending request polled faster than the interval is ``slow_down``, and
        the interval grows by 5 seconds for this and every later request.

        Only a pending request is paced: ``slow_down`` is "a variant of
        authorization_pending" (§3.5), and a decided one is answered at once. Clients
        that take ``slow_down`` for pending and keep their first interval (flytekit's
        ``DeviceCodeAuthenticator``, issue 15.3) would otherwise never be served again.
        """
        store = self.server.store
        slowed, _ = store.counter(SLOW_PREFIX + key)
        interval = state["interval"] + SLOW_DOWN_STEP * slowed
        if not store.add(POLL_PREFIX + key, b"1", max(interval - 0.5, 0.5)):
            store.incr(SLOW_PREFIX + key, state["expires_at"] - self.server.clock.now() + 60)
            # "for this and all subsequent requests": the wait starts again now.
            store.put(POLL_PREFIX + key, b"1", max(interval + SLOW_DOWN_STEP - 0.5, 0.5))
            raise SlowDownError(
                description=f"Polling too fast; wait {interval + SLOW_DOWN_STEP} seconds."
            )


# -- §3.3: the person's approval on the verification page ------------------------------


@dataclass(frozen=True)
class PendingDevice:
    """A device code waiting for approval (what the verification page shows)."""

    key: str
    user_code: str
    client: Client
    scopes: tuple[str, ...]
    #: The ``aud`` its tokens will carry: shown, as RFC 8628 §5.4 asks against phishing.
    audience: str = ""


class DeviceStore(Protocol):
    def put(self, key: str, value: bytes, ttl: float) -> None: ...
    def get(self, key: str) -> bytes | None: ...
    def take(self, key: str) -> bytes | None: ...


@dataclass(eq=False)
class DeviceApproval:
    """§3.3: the person types the user code, sees the request, approves or denies."""

    store: DeviceStore
    query_client: Callable[[str], Client | None]
    emit: Callable[..., None]
    clock: Clock = SYSTEM_CLOCK

    def pending(self, user_code: str) -> PendingDevice | None:
        """The pending device request a person typed the code of, if any."""
        code = normalize_user_code(user_code)
        if len(code) != 8:
            return None
        raw_key = self.store.get(USER_CODE_PREFIX + code)
        if raw_key is None:
            return None
        key = raw_key.decode()
        raw = self.store.get(key)
        if raw is None:
            return None
        state = json.loads(raw)
        client = self.query_client(state["client_id"])
        if (
            state["status"] != "pending"
            or self.clock.now() >= state["expires_at"]
            or client is None
        ):
            return None
        return PendingDevice(
            key=key,
            user_code=f"{code[:4]}-{code[4:]}",
            client=client,
            scopes=tuple(state["scope"].split()),
            audience=str(state.get("audience") or ""),
        )

    def decide(
        self, pending: PendingDevice, subject_id: str, *, approve: bool, auth_time: float
    ) -> bool:
        """Record the person's answer; ``False`` if the code is no longer pending."""
        code = normalize_user_code(pending.user_code)
        # One answer per code: whoever takes the user code decides.
        if self.store.take(USER_CODE_PREFIX + code) is None:
            return False
        raw = self.store.get(pending.key)
        if raw is None:
            return False
        state = json.loads(raw)
        state.update(
            status="approved" if approve else "denied",
            user_id=subject_id,
            auth_time=int(auth_time),
        )
        remaining = state["expires_at"] - self.clock.now() + EXPIRED_GRACE_SECONDS
        if remaining <= EXPIRED_GRACE_SECONDS:
            return False
        self.store.put(pending.key, json.dumps(state).encode(), remaining)
        self.emit(
            "device_approved" if approve else "device_denied",
            client=pending.client,
            user_id=subject_id,
        )
        return True
