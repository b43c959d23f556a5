"""``authserver token``: a valid access token from the cache, refreshed when it is
about to expire (RFC 6749 §6), the rotated refresh token stored at once."""

from __future__ import annotations

import requests
from authlib.integrations.requests_client import OAuthError

from .cache import REFRESH_MARGIN, CachedToken, TokenCache, cache_key
from .http import (
    DEFAULT_CLIENT_ID,
    HTTP_TIMEOUT,
    LoginError,
    discover,
    oauth_reason,
    public_session,
    reason,
)


def fresh_access_token(
    issuer: str,
    client_id: str = DEFAULT_CLIENT_ID,
    cache: TokenCache | None = None,
    audience: str | None = None,
) -> str:
    """A cached access token with more than a minute left, refreshed when needed."""
    cache = cache or TokenCache()
    key = cache_key(client_id, audience)
    login_hint = f"authserver login --issuer {issuer}" + (
        f" --audience {audience}" if audience else ""
    )
    token = cache.load(issuer, key)
    if token is not None and token.seconds_left() > REFRESH_MARGIN:
        return token.access_token
    with cache.locked():
        token = cache.load(issuer, key)  # another process may have refreshed it
        if token is None:
            raise LoginError(
                f"not signed in to {issuer} as client {client_id}"
                + (f" for {audience}" if audience else "")
                + f": run `{login_hint}`"
            )
        if token.seconds_left() > REFRESH_MARGIN:
            return token.access_token
        if not token.refresh_token:
            raise LoginError(
                f"the access token has expired and there is no refresh token: run `{login_hint}`"
            )
        metadata = discover(issuer)
        with public_session(client_id) as session:
            try:
                response = session.refresh_token(
                    metadata.token_endpoint,
                    refresh_token=token.refresh_token,
                    timeout=HTTP_TIMEOUT,
                )
            except OAuthError as exc:
                raise LoginError(
                    f"the refresh token was refused ({oauth_reason(exc)}): run `{login_hint}`"
                ) from None
            except (requests.RequestException, ValueError) as exc:
                raise LoginError(
                    f"cannot refresh at {metadata.token_endpoint}: {reason(exc)}"
                ) from None
        # The old refresh token is used up: store the rotated one at once.
        refreshed = CachedToken.from_response(response, previous=token)
        cache.store(issuer, key, refreshed)
        return refreshed.access_token
