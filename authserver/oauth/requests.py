"""Checks every token-endpoint request shares."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import TYPE_CHECKING, Protocol

from authlib.oauth2.rfc6749 import InvalidRequestError

from .http import HttpRequest

if TYPE_CHECKING:
    from .clients import Client

#: RFC 6749 §5.2: error_description is limited to %x20-21 / %x23-5B / %x5D-7E.
_NOT_IN_DESCRIPTION = re.compile(r"[^\x20\x21\x23-\x5b\x5d-\x7e]")

#: Parameters of ours that must not repeat (RFC 6749 §3.2); unknown ones are ignored,
#: repeated or not. ``resource`` may repeat (RFC 8707 §2): the audience check decides.
TOKEN_PARAMETERS = ("grant_type", "scope", "client_id", "client_secret", "audience")
TOKEN_ENDPOINT_PARAMETERS = ("token", "token_type_hint", "client_id", "client_secret")


class ClientAuthenticating(Protocol):
    """An endpoint of Authlib's that authenticates its client (``TokenEndpoint``)."""

    def authenticate_endpoint_client(self, request: HttpRequest) -> Client: ...


def for_description(value: str, limit: int = 60) -> str:
    """A value the client sent, made safe to quote in an ``error_description``.

    Authlib refuses (with a ``ValueError``, i.e. a 500) a description with characters
    outside the RFC's set; a client must not be able to cause that.
    """
    cleaned = _NOT_IN_DESCRIPTION.sub("?", value)
    return cleaned if len(cleaned) <= limit else cleaned[: limit - 3] + "..."


def reject_repeated_parameters(request: HttpRequest, names: Iterable[str]) -> None:
    """RFC 6749 §3.2: "Request and response parameters MUST NOT be included more than once."

    Only for parameters we read: §3.2 also says unrecognized ones MUST be ignored.
    """
    for name in names:
        if len(request.payload.datalist.get(name, ())) > 1:
            raise InvalidRequestError(description=f"Parameter '{name}' is repeated.")


def token_request(endpoint: ClientAuthenticating, request: HttpRequest) -> tuple[Client, str]:
    """What revocation (RFC 7009 §2.1) and introspection (RFC 7662 §2.1) requests
    share: no parameter of theirs repeated, the client authenticated, and ``token``,
    which is REQUIRED. Returns the client and the token.

    ``token_type_hint`` is only a hint: the server "MAY ignore this parameter" and
    "MUST extend its search across all of its supported token types", so an unknown
    hint is not an error.
    """
    reject_repeated_parameters(request, TOKEN_ENDPOINT_PARAMETERS)
    client: Client = endpoint.authenticate_endpoint_client(request)
    token = request.form.get("token")
    if not token:
        raise InvalidRequestError(description="The token parameter is missing.")
    return client, token
