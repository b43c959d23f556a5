"""The authorization server: Authlib's protocol engine, with our grants and endpoints.

Framework-free on purpose (DESIGN.md layers): it takes an :class:`HttpRequest` and
returns an :class:`HttpResponse`; the web layer adapts Flask to both.
"""

from __future__ import annotations

import base64
import binascii
import logging
from collections.abc import Callable, Sequence
from typing import Any, NoReturn, Protocol
from urllib.parse import unquote

from authlib.oauth2 import AuthorizationServer as _AuthorizationServer
from authlib.oauth2.rfc6749 import InvalidClientError, InvalidRequestError, OAuth2Error

from ..clock import SYSTEM_CLOCK, Clock
from ..paths import TOKEN_PATH
from .clients import Client, ClientStore, service_account_client_id
from .federation import Federation
from .http import HttpRequest, HttpResponse
from .metadata import admin_api_audience
from .oidc import OPENID_SCOPE, IdTokens, Logout, UserInfoEndpoint
from .refresh import RefreshRecord, RefreshTokens, wants_refresh_token
from .requests import for_description
from .rfc6749.authorization import AuthorizationEndpoint
from .rfc6749.authorization_code import AuthorizationCodeGrant
from .rfc6749.client_credentials import ClientCredentialsGrant
from .rfc6749.refresh_token import RefreshTokenGrant
from .rfc7009.revocation import RevocationEndpoint
from .rfc7523.client_assertion import (
    PRIVATE_KEY_JWT,
    AssertionRefused,
    ClientAssertions,
    assertion_subject,
)
from .rfc7523.jwt_bearer import JwtBearerGrant
from .rfc7636.pkce import S256CodeChallenge
from .rfc7662.introspection import IntrospectionEndpoint
from .rfc8628.device_code import DeviceApproval, DeviceAuthorizationEndpoint, DeviceCodeGrant
from .rfc8693.token_exchange import TokenExchangeGrant
from .rfc8707.audience import InvalidTargetError, select_audience
from .subjects import Subject, UserDirectory, access_token_claims, granted_roles
from .throttle import FailureThrottle
from .tokens import AccessTokens, IssuedToken

log = logging.getLogger(__name__)

EventSink = Callable[..., None]


class ClientAuthThrottled(InvalidClientError):  # type: ignore[misc]
    """``invalid_client`` past the failure limits: 429 with ``Retry-After`` (RFC 6585
    §4), answered without checking the secret."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(
            status_code=429,
            description=(
                f"Too many failed client authentications; retry in {retry_after} seconds."
            ),
        )
        self.retry_after = retry_after

    def get_headers(self) -> list[tuple[str, str]]:
        headers: list[tuple[str, str]] = super().get_headers()
        return [*headers, ("Retry-After", str(self.retry_after))]


#: RFC 6749 §5.2 descriptions for errors Authlib raises without one.
DEFAULT_DESCRIPTIONS = {
    "invalid_request": "The request is missing a parameter or is malformed.",
    "invalid_client": "Client authentication failed.",
    "invalid_grant": "The grant is invalid, expired or revoked.",
    "unauthorized_client": "This client may not use this grant type.",
    "unsupported_grant_type": "This grant type is not supported by this server.",
    "invalid_scope": "The requested scope is invalid or not allowed.",
    "unsupported_token_type": "This token type is not supported here.",
}


class KeyValueStore(Protocol):
    """The ephemeral store, as the grants use it (``authserver.storage.ephemeral``)."""

    def put(self, key: str, value: bytes, ttl: float) -> None: ...
    def add(self, key: str, value: bytes, ttl: float) -> bool: ...
    def get(self, key: str) -> bytes | None: ...
    def take(self, key: str) -> bytes | None: ...
    def delete(self, key: str) -> None: ...
    def incr(self, key: str, ttl: float) -> int: ...
    def counter(self, key: str) -> tuple[int, float]: ...


class AuthServer(_AuthorizationServer):  # type: ignore[misc]
    """One per app, built by ``create_app``; holds no request state."""

    def __init__(
        self,
        clients: ClientStore,
        access_tokens: AccessTokens,
        *,
        issuer: str,
        audiences: Sequence[str],
        default_audience: str,
        store: KeyValueStore,
        users: UserDirectory,
        refresh_tokens: RefreshTokens,
        id_tokens: IdTokens,
        device_verification_uri: str,
        device_code_ttl: float,
        device_poll_interval: float,
        events: EventSink | None = None,
        clock: Clock = SYSTEM_CLOCK,
        client_throttle: FailureThrottle | None = None,
        federation: Federation | None = None,
    ) -> None:
        super().__init__()
        self.clients = clients
        self.access_tokens = access_tokens
        self.issuer = issuer
        self.audiences = tuple(audiences)
        self.default_audience = default_audience
        self.store = store
        self.users = users
        self.refresh_tokens = refresh_tokens
        self.id_tokens = id_tokens
        self.device_verification_uri = device_verification_uri
        self.device_code_ttl = device_code_ttl
        self.device_poll_interval = device_poll_interval
        self._events = events
        self.clock = clock
        self.now = clock.now
        self.client_throttle = client_throttle
        #: Workload identity federation (``federated_identities``); none: no rule trusts.
        self.federation = federation or Federation((), issuer=issuer, store=store)
        self.register_client_auth_method("client_secret_basic", self.authenticate_secret_basic)
        self.register_client_auth_method("client_secret_post", self.authenticate_secret_post)
        self.register_client_auth_method("none", authenticate_none)
        self.client_assertions = ClientAssertions(
            (issuer, issuer.rstrip("/") + TOKEN_PATH), store, clock
        )
        self.register_client_auth_method(PRIVATE_KEY_JWT, self.authenticate_private_key_jwt)
        self.register_grant(ClientCredentialsGrant)
        self.register_grant(AuthorizationCodeGrant, [S256CodeChallenge()])
        self.register_grant(RefreshTokenGrant)
        self.register_grant(DeviceCodeGrant)
        self.register_grant(TokenExchangeGrant)
        self.register_grant(JwtBearerGrant)
        self.register_endpoint(IntrospectionEndpoint)
        self.register_endpoint(RevocationEndpoint)
        self.register_endpoint(DeviceAuthorizationEndpoint)
        #: RFC 6749 §3.1 (the decisions: ``authorization.checks``).
        self.authorization = AuthorizationEndpoint(self, clock)
        #: RFC 8628 §3.3.
        self.device_approval = DeviceApproval(store, self.query_client, self.emit, clock)
        #: OIDC Core §5.3 and RP-Initiated Logout.
        self.userinfo = UserInfoEndpoint(access_tokens, users, self.query_client)
        self.logout = Logout(id_tokens, self.query_client)

    # -- hooks Authlib asks for -----------------------------------------------------

    def query_client(self, client_id: str) -> Client | None:
        return self.clients.get(client_id)

    def save_token(self, token: dict[str, Any], request: HttpRequest) -> None:
        """JWT access tokens are self-contained: nothing to store (RFC 9068)."""

    def create_oauth2_request(self, request: HttpRequest) -> HttpRequest:
        return request

    def create_json_request(self, request: HttpRequest) -> HttpRequest:
        return request

    def handle_response(
        self, status: int, body: Any, headers: Sequence[tuple[str, str]]
    ) -> HttpResponse:
        return HttpResponse(status=status, body=dict(body or {}), headers=list(headers))

    def send_signal(self, name: str, *args: Any, **kwargs: Any) -> None:
        """Authlib's signals; we report what matters through :meth:`emit`."""

    def handle_error_response(self, request: HttpRequest, error: OAuth2Error) -> HttpResponse:
        if not error.description:
            error.description = DEFAULT_DESCRIPTIONS.get(error.error, "")
            if error.error == "unsupported_grant_type" and request.payload.grant_type:
                grant_type = for_description(request.payload.grant_type)
                error.description = f"The grant type '{grant_type}' is not supported here."
        response: HttpResponse = super().handle_error_response(request, error)
        if response.status == 401 and not any(
            k.lower() == "www-authenticate" for k, _ in response.headers
        ):
            # RFC 6749 §5.2: a 401 for invalid_client carries WWW-Authenticate.
            response.headers.append(("WWW-Authenticate", 'Basic realm="authserver"'))
        return response

    # -- client authentication (RFC 6749 §2.3.1) -------------------------------------

    def authenticate_secret_basic(
        self, query_client: Callable[[str], Client | None], request: HttpRequest
    ) -> Client | None:
        """``client_secret_basic`` (RFC 6749 §2.3.1), strict about the header's shape.

        Authlib's own parser lets a header that is not UTF-8 escape as an exception; a
        malformed header is the client's error, ``invalid_client`` with 401.
        """
        header = request.headers.get("Authorization")
        if not header:
            return None
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "basic":
            return None
        try:
            decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError, ValueError):
            raise InvalidClientError(
                status_code=401,
                description="The Authorization header is not valid Basic credentials.",
            ) from None
        client_id, sep, client_secret = decoded.partition(":")
        if not sep or not client_id or not client_secret:
            raise InvalidClientError(
                status_code=401,
                description="The Authorization header is not valid Basic credentials.",
            )
        # RFC 6749 §2.3: "The client MUST NOT use more than one authentication method in
        # each request."
        if request.form.get("client_secret"):
            raise InvalidRequestError(description="Use one client authentication method, not two.")
        body_client_id = request.form.get("client_id")
        if body_client_id and body_client_id != unquote(client_id):
            raise InvalidRequestError(
                description="The client_id in the body is not the one in the Authorization header."
            )
        # §2.3.1: both are form-urlencoded before they are joined.
        return self._check_secret(unquote(client_id), unquote(client_secret), request, 401)

    def authenticate_secret_post(
        self, query_client: Callable[[str], Client | None], request: HttpRequest
    ) -> Client | None:
        """``client_secret_post`` (RFC 6749 §2.3.1): credentials in the form body.

        A wrong secret or unknown client is ``invalid_client`` with the same words as for
        Basic, so neither method tells which of the two was wrong. A service-account token
        may come alone: the client id is read from it (DESIGN.md).
        """
        client_secret = request.form.get("client_secret")
        if not client_secret:
            return None
        client_id = request.form.get("client_id") or service_account_client_id(client_secret)
        if not client_id:
            # A secret with no client to check it against (RFC 6749 §2.3.1).
            raise InvalidClientError(description="Client authentication failed.")
        return self._check_secret(client_id, client_secret, request, 400)

    def authenticate_private_key_jwt(
        self, query_client: Callable[[str], Client | None], request: HttpRequest
    ) -> Client | None:
        """``private_key_jwt`` (RFC 7523 §2.2, OIDC Core §9; the checks are in
        :mod:`.client_assertion`). A refused assertion is ``invalid_client`` with 401,
        counted by the failure throttle like a wrong secret. A signature costs no slow
        hash, so it is checked before the counters are read: a good assertion passes
        without them (the hot path), and a bad one is then held against the limits."""
        try:
            client_id = assertion_subject(request.form)
        except AssertionRefused as exc:
            self._client_auth_failed(request.form.get("client_id") or "", request, str(exc))
        if client_id is None:
            return None
        if request.headers.get("Authorization") or request.form.get("client_secret"):
            # RFC 6749 §2.3: one client authentication method per request.
            raise InvalidRequestError(description="Use one client authentication method, not two.")
        client = query_client(client_id)
        try:
            if client is None or not client.jwks or not client.is_usable():
                raise AssertionRefused(
                    "The client assertion is not signed by a key of this client."
                )
            verified = self.client_assertions.verify(
                request.form["client_assertion"], client_id, client.jwks, request.uri
            )
        except AssertionRefused as exc:
            self._client_auth_failed(client_id, request, str(exc))
        request.client_assertion_kid = verified.kid
        client.note_use()
        return client

    def _client_auth_failed(
        self, client_id: str, request: HttpRequest, description: str
    ) -> NoReturn:
        """Past the failure limits: 429; else count the failure and refuse with 401."""
        self._refuse_if_throttled(client_id, request)
        self._count_failure(client_id, request)
        raise InvalidClientError(status_code=401, description=description)

    def _refuse_if_throttled(self, client_id: str, request: HttpRequest) -> None:
        """Past the failure limits (issue 9.9): 429 with ``Retry-After``; the refusal is
        audited as ``client_auth_throttled`` once a minute per client and address."""
        throttle = self.client_throttle
        if throttle is None:
            return
        wait = throttle.refusal(client_id, request.address)
        if wait is not None:
            if throttle.first("throttled", client_id, request.address):
                self.emit("client_auth_throttled", client_id=client_id, retry_after=wait)
            raise ClientAuthThrottled(wait)

    def _count_failure(self, client_id: str, request: HttpRequest) -> None:
        # Every failure (the metrics count them); the audit row is one a minute.
        self.emit("client_auth_rejected", client_id=client_id)
        throttle = self.client_throttle
        if throttle is not None:
            throttle.failed(client_id, request.address)
            if throttle.first("failed", client_id, request.address):
                self.emit("client_auth_failed", client_id=client_id)

    def _check_secret(
        self, client_id: str, client_secret: str, request: HttpRequest, status: int
    ) -> Client:
        """The client, or ``invalid_client`` (``status``: 401 for Basic, §5.2).

        A secret that verified before passes at once (the hot path: no counter is read).
        Anything that needs the slow check is first held against the failure limits
        (issue 9.9): past them, 429 with ``Retry-After`` and no hash computed. An
        unknown client id costs what a wrong secret does (issue 16.10). Failures are
        reported as ``client_auth_rejected`` each, audited as ``client_auth_failed``
        once a minute per client and address, and refusals as ``client_auth_throttled``
        once a minute per client and address.
        """
        client = self.query_client(client_id)
        quick = client.quick_check(client_secret) if client is not None else None
        if quick is True and client is not None:
            return client
        self._refuse_if_throttled(client_id, request)
        if client is None:
            self.clients.check_unknown(client_id, client_secret)
            ok = False
        else:
            ok = quick if quick is not None else client.check_client_secret(client_secret)
        if ok and client is not None:
            return client
        self._count_failure(client_id, request)
        raise InvalidClientError(status_code=status, description="Client authentication failed.")

    # -- ours -----------------------------------------------------------------------

    def select_audience(self, request: HttpRequest, client: Client) -> str:
        """The token's ``aud``. Our admin API's audience acts with the whole of a
        person's role, so a third-party client (one that asks for consent, which names
        scopes and not this) may not ask for it."""
        own = admin_api_audience(self.issuer)
        audience = select_audience(request, self.audiences, self.default_audience, own)
        if audience == own and client.consent:
            raise InvalidTargetError(description="This client may not ask for the admin API.")
        return audience

    def emit(self, event: str, **details: Any) -> None:
        if self._events is not None:
            self._events(event, **details)

    def token_response(self, request: HttpRequest) -> HttpResponse:
        if not request.payload.grant_type:
            # RFC 6749 §5.2: a missing required parameter is invalid_request.
            error = InvalidRequestError(description="The grant_type parameter is missing.")
            return self.handle_error_response(request, error)
        response: HttpResponse = self.create_token_response(request)
        return response

    def device_authorization_response(self, request: HttpRequest) -> HttpResponse:
        response: HttpResponse = self.create_endpoint_response("device_authorization", request)
        return response

    # -- tokens for people ----------------------------------------------------------

    def issue_for_person(
        self,
        client: Client,
        person: Subject,
        *,
        scopes: Sequence[str],
        audience: str,
        auth_time: int,
        grant_type: str,
        nonce: str | None = None,
        rotate: RefreshRecord | None = None,
    ) -> tuple[dict[str, Any], IssuedToken]:
        """An access token, a refresh token when allowed, an ID token for ``openid``.

        A refresh token is issued to a client with the refresh_token grant that asked
        for ``offline_access`` or ``offline``, or that is registered with neither
        (:func:`~authserver.oauth.refresh.wants_refresh_token`). ``rotate`` continues its
        family: the successor replaces it (raises :class:`RotationLost` if another
        request did).
        """
        issued = self.access_tokens.issue(
            client,
            subject=person.id,
            audience=audience,
            scopes=scopes,
            roles=granted_roles(person, scopes, client.consent),
            extra=access_token_claims(person, scopes, client.consent),
        )
        body = issued.as_response()
        claims = dict(issued.claims)
        refresh = self.refresh_tokens
        family_id: str | None = None
        if rotate is not None:
            family_id = claims["refresh_family"] = rotate.family_id
            # The ephemeral write comes first: if it fails, nothing durable changed and
            # the client's retry is a plain refresh, never a reuse (RFC 9700 §4.14.2).
            refresh.remember_access_token(family_id, claims)
            body["refresh_token"] = refresh.rotate(rotate)
        elif client.check_grant_type("refresh_token") and wants_refresh_token(
            client.scopes, scopes
        ):
            family_id, body["refresh_token"] = refresh.start_family(
                user_id=person.id,
                client_id=client.client_id,
                scope=issued.scope,
                audience=audience,
                auth_time=auth_time,
            )
            claims["refresh_family"] = family_id
            refresh.remember_access_token(family_id, claims)
        if OPENID_SCOPE in scopes:
            body["id_token"] = self.id_tokens.issue(
                client,
                person,
                scopes=scopes,
                auth_time=auth_time,
                access_token=issued.access_token,
                nonce=nonce,
            )
        issued = IssuedToken(issued.access_token, issued.expires_in, issued.scope, claims)
        self.emit("token_issued", grant_type=grant_type, client=client, claims=issued.claims)
        return body, issued

    def introspection_response(self, request: HttpRequest) -> HttpResponse:
        response: HttpResponse = self.create_endpoint_response("introspection", request)
        return response

    def revocation_response(self, request: HttpRequest) -> HttpResponse:
        response: HttpResponse = self.create_endpoint_response("revocation", request)
        return response


def authenticate_none(
    query_client: Callable[[str], Client | None], request: HttpRequest
) -> Client | None:
    """``none`` (RFC 7591 §2): a public client names itself with ``client_id``."""
    if request.headers.get("Authorization"):
        return None
    client_id = request.form.get("client_id")
    if not client_id or request.form.get("client_secret"):
        return None
    client = query_client(client_id)
    if client is None or not client.is_public:
        return None
    return client
