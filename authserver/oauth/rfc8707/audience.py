"""Choosing ``aud``: RFC 8707 ``resource`` (or the common ``audience`` parameter)."""

from __future__ import annotations

from collections.abc import Sequence

from authlib.oauth2.rfc6749 import OAuth2Error

from ..http import HttpRequest
from ..requests import for_description


class InvalidTargetError(OAuth2Error):  # type: ignore[misc]
    """RFC 8707 §2: the requested resource is invalid, unknown or malformed."""

    error = "invalid_target"
    status_code = 400


def select_audience(
    request: HttpRequest, allowed: Sequence[str], default: str, own: str | None = None
) -> str:
    """The ``aud`` for a token: the one asked for if we serve it, else the default.

    RFC 9068 §3: with no resource indicator, a default audience MUST be used. ``own``
    (our admin API) is always an audience one may ask for, and only by asking.
    """
    asked = [
        value
        for name in ("resource", "audience")
        for value in request.payload.datalist.get(name, [])
        if value  # RFC 6749 §3.2: a parameter without a value is as if omitted
    ]
    if not asked:
        return default
    if len(set(asked)) > 1:
        raise InvalidTargetError(description="Ask for one audience per token.")
    audience = asked[0]
    if audience not in allowed and audience not in (default, own):
        raise InvalidTargetError(description=f"Unknown audience '{for_description(audience)}'.")
    return audience
