"""Checks every token-endpoint request shares."""

from __future__ import annotations

from authlib.oauth2.rfc6749 import InvalidRequestError

from .http import HttpRequest


def reject_repeated_parameters(request: HttpRequest) -> None:
    """RFC 6749 §3.2: "Request and response parameters MUST NOT be included more than once."

    ``resource`` may repeat (RFC 8707 §2); the audience check decides about it.
    """
    for name, values in request.payload.datalist.items():
        if len(values) > 1 and name not in ("resource", "audience"):
            raise InvalidRequestError(description=f"Parameter {name!r} is repeated.")
