"""The authorization endpoint (RFC 6749 §3.1, §4.1.1-4.1.2), device approval (RFC 8628
§3.3), ``/userinfo`` (OIDC Core §5.3) and RP-initiated logout, as the web layer drives
them: the web layer knows who is signed in and renders pages; the decisions are here.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from authlib.common.urls import add_params_to_uri
from authlib.oauth2.rfc6749 import (
    InvalidClientError,
    InvalidRequestError,
    OAuth2Error,
    UnsupportedResponseTypeError,
)

from .grants.device_code import USER_CODE_PREFIX, normalize_user_code
from .http import HttpRequest, HttpResponse
from .oidc import OPENID_SCOPE
from .people import Person, userinfo_claims
from .requests import for_description

if TYPE_CHECKING:
    from .clients import Client

#: OIDC Core §3.1.2.1 ``prompt`` values we act on.
PROMPTS = frozenset({"none", "login", "consent"})


@dataclass(frozen=True)
class AuthorizationRequest:
    """A validated authorization request, waiting for the person's sign-in or consent."""

    grant: Any
    client: Client
    redirect_uri: str
    scopes: tuple[str, ...]
    prompts: frozenset[str]
    max_age: int | None
    #: The ``aud`` its tokens will carry (RFC 8707), shown on the consent page.
    audience: str = ""


@dataclass(frozen=True)
class PendingDevice:
    """A device code waiting for approval (what the verification page shows)."""

    key: str
    user_code: str
    client: Client
    scopes: tuple[str, ...]
    #: The ``aud`` its tokens will carry: shown, as RFC 8628 §5.4 asks against phishing.
    audience: str = ""


class AuthorizationMixin:
    """Mixed into :class:`~authserver.oauth.server.AuthServer`."""

    issuer: str
    store: Any
    users: Any
    access_tokens: Any

    # -- authorization endpoint ------------------------------------------------------

    def validate_authorization(self, request: HttpRequest) -> AuthorizationRequest:
        """Check client, redirect URI, response type, scope, PKCE.

        Raises ``OAuth2Error``; when its ``redirect_uri`` is set the error goes back to
        the client (:meth:`authorization_error`), otherwise it is shown to the person
        (§4.1.2.1: never redirect to an unverified URI).
        """
        self._precheck(request)
        grant = self.get_consent_grant(request)  # type: ignore[attr-defined]
        redirect_uri = grant.redirect_uri
        data = request.payload.data
        prompts = frozenset((data.get("prompt") or "").split())
        try:
            if not prompts <= PROMPTS:
                unknown = for_description(" ".join(sorted(prompts - PROMPTS)))
                raise InvalidRequestError(description=f"Unsupported prompt value: {unknown}.")
            if "none" in prompts and len(prompts) > 1:
                raise InvalidRequestError(description="prompt=none cannot be combined.")
            max_age = _max_age(data.get("max_age"))
            grant.request.audience = self.select_audience(request, grant.client)  # type: ignore[attr-defined]
        except OAuth2Error as error:
            error.redirect_uri = redirect_uri
            error.state = request.payload.state
            raise
        return AuthorizationRequest(
            grant=grant,
            client=grant.request.client,
            redirect_uri=redirect_uri,
            scopes=tuple(grant.request.scope.split()),
            prompts=prompts,
            max_age=max_age,
            audience=str(grant.request.audience),
        )

    def _precheck(self, request: HttpRequest) -> None:
        """What Authlib would get wrong or leave loose, checked before it runs.

        ``response_type``: only ``code`` (OAuth 2.1 §4.1.1); Authlib would quote any
        other value in its error, and a value outside RFC 6749's error character set
        is a 500 there. ``redirect_uri``: required when the client has more than one or
        the request is OpenID (OAuth 2.1 §4.1.1, OIDC Core §3.1.2.1).
        """
        data = request.payload.data
        client = self.query_client(data.get("client_id") or "")  # type: ignore[attr-defined]
        redirect_uri = data.get("redirect_uri")
        if client is None:  # shown to the person, never redirected (§4.1.2.1)
            if not data.get("client_id"):
                raise InvalidClientError(description="The client_id parameter is missing.")
            raise InvalidClientError(description="There is no client with this client_id.")
        if redirect_uri and not client.check_redirect_uri(redirect_uri):
            # Checked here, not by Authlib: it quotes the URI in its description, and a
            # `"`, `\` or control character there is a ValueError (a 500).
            raise InvalidRequestError(
                description="The redirect_uri is not registered for this client."
            )
        if not redirect_uri and (
            len(client.redirect_uris) > 1 or OPENID_SCOPE in (data.get("scope") or "").split()
        ):
            raise InvalidRequestError(description="The redirect_uri parameter is required.")
        response_type = data.get("response_type")
        if response_type != "code":
            verified = (
                redirect_uri if redirect_uri and client.check_redirect_uri(redirect_uri) else None
            )
            if not response_type:
                raise InvalidRequestError(
                    description="The response_type parameter is missing.",
                    redirect_uri=verified,
                    state=data.get("state"),
                )
            raise UnsupportedResponseTypeError(
                for_description(response_type),
                description="Only response_type=code is supported.",
                redirect_uri=verified,
                state=data.get("state"),
            )

    def authorization_response(
        self, auth: AuthorizationRequest, person: Person, auth_time: float
    ) -> HttpResponse:
        """§4.1.2: a code to the redirect URI, with ``state`` and ``iss`` (RFC 9207 §2)."""
        auth.grant.request.auth_time = int(auth_time)
        status, _, headers = auth.grant.create_authorization_response(auth.redirect_uri, person)
        response = HttpResponse(status=status, body={}, headers=list(headers))
        response.location = add_params_to_uri(response.location or "", [("iss", self.issuer)])
        self.emit("authorization_granted", client=auth.client, user_id=person.id)  # type: ignore[attr-defined]
        return response

    def authorization_error(self, error: OAuth2Error) -> HttpResponse | None:
        """The error as a redirect to the client (§4.1.2.1), or ``None`` to show it."""
        if not error.redirect_uri:
            return None
        params = [("error", error.error)]
        if error.description:
            params.append(("error_description", error.description))
        if error.state:
            params.append(("state", error.state))
        params.append(("iss", self.issuer))
        location = add_params_to_uri(error.redirect_uri, params)
        return HttpResponse(status=302, body={}, headers=[("Location", location)])

    # -- device verification ---------------------------------------------------------

    def pending_device(self, user_code: str) -> PendingDevice | None:
        """The pending device request a person typed the code of, if any (§3.3)."""
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
        client = self.query_client(state["client_id"])  # type: ignore[attr-defined]
        if state["status"] != "pending" or time.time() >= state["expires_at"] or client is None:
            return None
        return PendingDevice(
            key=key,
            user_code=f"{code[:4]}-{code[4:]}",
            client=client,
            scopes=tuple(state["scope"].split()),
            audience=str(state.get("audience") or ""),
        )

    def decide_device(
        self, pending: PendingDevice, person: Person, *, approve: bool, auth_time: float
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
            user_id=person.id,
            auth_time=int(auth_time),
        )
        remaining = state["expires_at"] - time.time() + 600
        if remaining <= 600:
            return False
        self.store.put(pending.key, json.dumps(state).encode(), remaining)
        self.emit(  # type: ignore[attr-defined]
            "device_approved" if approve else "device_denied",
            client=pending.client,
            user_id=person.id,
        )
        return True

    # -- userinfo --------------------------------------------------------------------

    def userinfo_response(self, request: HttpRequest) -> HttpResponse:
        """OIDC Core §5.3: the person's claims for a bearer token with ``openid``.

        Errors as RFC 6750 §3: 401 with ``WWW-Authenticate: Bearer error=...``.
        """
        header = request.headers.get("Authorization") or ""
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return _bearer_error(401, None, "")
        claims = self.access_tokens.check(token.strip())
        if claims is None:
            return _bearer_error(401, "invalid_token", "The access token is invalid or expired.")
        scopes = str(claims.get("scope", "")).split()
        if OPENID_SCOPE not in scopes:
            return _bearer_error(403, "insufficient_scope", "The openid scope is required.")
        person = self.users.get(str(claims.get("sub")))
        if person is None or person.disabled:
            return _bearer_error(401, "invalid_token", "The person is no longer known here.")
        client = self.query_client(str(claims.get("client_id") or ""))  # type: ignore[attr-defined]
        third_party = client is None or client.consent
        return HttpResponse(
            status=200,
            body=userinfo_claims(person, scopes, third_party),
            headers=[("Cache-Control", "no-store")],
        )

    # -- logout ----------------------------------------------------------------------

    def logout_redirect(
        self,
        *,
        id_token_hint: str | None,
        client_id: str | None,
        post_logout_redirect_uri: str | None,
        state: str | None,
    ) -> str | None:
        """OIDC RP-Initiated Logout 1.0 §3: where to send the browser after logout.

        Only to a URI registered for the client named by ``client_id`` or the
        ``id_token_hint``'s ``aud``; anything else ends on our own page (``None``).
        """
        if not post_logout_redirect_uri:
            return None
        hinted = self.id_tokens.audience_of(id_token_hint) if id_token_hint else None  # type: ignore[attr-defined]
        if hinted and client_id and hinted != client_id:
            return None
        client = self.query_client(client_id or hinted or "")  # type: ignore[attr-defined]
        if client is None or not client.check_post_logout_redirect_uri(post_logout_redirect_uri):
            return None
        params = [("state", state)] if state else []
        return str(add_params_to_uri(post_logout_redirect_uri, params))


def _max_age(value: str | None) -> int | None:
    if value is None or value == "":
        return None
    if not re.fullmatch(r"[0-9]{1,10}", value):
        raise InvalidRequestError(description="max_age must be a number of seconds.")
    return int(value)


def _bearer_error(status: int, error: str | None, description: str) -> HttpResponse:
    challenge = 'Bearer realm="authserver"'
    body: dict[str, Any] = {}
    if error:
        challenge += f', error="{error}", error_description="{description}"'
        body = {"error": error, "error_description": description}
    return HttpResponse(status=status, body=body, headers=[("WWW-Authenticate", challenge)])
