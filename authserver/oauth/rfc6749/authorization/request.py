"""The authorization request (RFC 6749 §4.1.1, as OAuth 2.1 §4.1.1 tightens it; OIDC Core
§3.1.2.1): its validation, the code response (§4.1.2) and the error response (§4.1.2.1).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from authlib.common.urls import add_params_to_uri
from authlib.oauth2.rfc6749 import (
    InvalidClientError,
    InvalidRequestError,
    OAuth2Error,
    UnsupportedResponseTypeError,
)

from ...http import HttpRequest, HttpResponse
from ...oidc.id_tokens import OPENID_SCOPE
from ...requests import for_description
from ...subjects import Subject

if TYPE_CHECKING:
    from ...clients import Client
    from ...server import AuthServer

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
    #: RFC 6749 §4.1.1 ``state``, returned with the code or the error.
    state: str | None = None
    #: RFC 7636 §4.3 ``code_challenge`` (fresh for each request a client makes).
    code_challenge: str = ""
    #: The query as it came, every value of every parameter, in order.
    query: tuple[tuple[str, str], ...] = ()

    @property
    def key(self) -> str:
        """What names this very request: its client, redirect URI, PKCE challenge and
        state (RFC 8252 §8.6: the sign-in a public client's code follows is the one
        started for it)."""
        parts = (self.client.client_id, self.redirect_uri, self.code_challenge, self.state or "")
        return hashlib.sha256("\x00".join(parts).encode()).hexdigest()

    @property
    def consent_key(self) -> str:
        """What a remembered consent covers: the client, the scopes and the audience
        (issue 16.5: consent to one resource is not consent to another)."""
        scopes = " ".join(sorted(self.scopes))
        return "\x00".join((self.client.client_id, scopes, self.audience))

    def query_after_sign_in(self) -> list[tuple[str, str]]:
        """The query to come back with after the sign-in this request asks for: without
        ``prompt=login`` (the fresh sign-in is not asked for again) nor ``max_age`` (the
        sign-in about to happen satisfies it, OIDC Core §3.1.2.1, and ``max_age=0``
        would send the person back here for ever)."""
        args = [
            (k, v)
            for k, v in self.query
            if not (k == "prompt" and "login" in v.split()) and k != "max_age"
        ]
        remaining = " ".join(p for p in self.prompts if p != "login")
        if remaining:
            args.append(("prompt", remaining))
        return args


def validate_authorization(server: AuthServer, request: HttpRequest) -> AuthorizationRequest:
    """Check client, redirect URI, response type, scope, PKCE, prompt and max_age.

    Raises ``OAuth2Error``; when its ``redirect_uri`` is set the error goes back to the
    client (:func:`authorization_error`), otherwise it is shown to the person (§4.1.2.1:
    never redirect to an unverified URI).
    """
    _precheck(server, request)
    grant = server.get_consent_grant(request)
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
        grant.request.audience = server.select_audience(request, grant.client)
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
        state=request.payload.state,
        code_challenge=data.get("code_challenge") or "",
        query=tuple((k, v) for k, values in request.payload.datalist.items() for v in values),
    )


def _precheck(server: AuthServer, request: HttpRequest) -> None:
    """What Authlib would get wrong or leave loose, checked before it runs.

    ``response_type``: only ``code`` (OAuth 2.1 §4.1.1); Authlib would quote any other
    value in its error, and a value outside RFC 6749's error character set is a 500
    there. ``redirect_uri``: required when the client has more than one or the request
    is OpenID (OAuth 2.1 §4.1.1, OIDC Core §3.1.2.1).
    """
    data = request.payload.data
    client = server.query_client(data.get("client_id") or "")
    redirect_uri = data.get("redirect_uri")
    if client is None:  # shown to the person, never redirected (§4.1.2.1)
        if not data.get("client_id"):
            raise InvalidClientError(description="The client_id parameter is missing.")
        raise InvalidClientError(description="There is no client with this client_id.")
    if redirect_uri and not client.check_redirect_uri(redirect_uri):
        # Checked here, not by Authlib: it quotes the URI in its description, and a
        # `"`, `\` or control character there is a ValueError (a 500).
        raise InvalidRequestError(description="The redirect_uri is not registered for this client.")
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
    server: AuthServer, auth: AuthorizationRequest, subject: Subject, auth_time: float
) -> HttpResponse:
    """§4.1.2: a code to the redirect URI, with ``state`` and ``iss`` (RFC 9207 §2)."""
    auth.grant.request.auth_time = int(auth_time)
    status, _, headers = auth.grant.create_authorization_response(auth.redirect_uri, subject)
    response = HttpResponse(status=status, body={}, headers=list(headers))
    response.location = add_params_to_uri(response.location or "", [("iss", server.issuer)])
    server.emit("authorization_granted", client=auth.client, user_id=subject.id)
    return response


def authorization_error(issuer: str, error: OAuth2Error) -> HttpResponse | None:
    """The error as a redirect to the client (§4.1.2.1), or ``None`` to show it."""
    if not error.redirect_uri:
        return None
    params = [("error", error.error)]
    if error.description:
        params.append(("error_description", error.description))
    if error.state:
        params.append(("state", error.state))
    params.append(("iss", issuer))
    location = add_params_to_uri(error.redirect_uri, params)
    return HttpResponse(status=302, body={}, headers=[("Location", location)])


def _max_age(value: str | None) -> int | None:
    """OIDC Core §3.1.2.1 ``max_age``: seconds since the last active authentication."""
    if value is None or value == "":
        return None
    if not re.fullmatch(r"[0-9]{1,10}", value):
        raise InvalidRequestError(description="max_age must be a number of seconds.")
    return int(value)
