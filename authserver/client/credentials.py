"""``authserver token --key-file PATH`` (or ``AUTHSERVER_CREDENTIALS=PATH``): an access
token for a service account that holds a key file, with no bearer secret on the host.

The client credentials grant (RFC 6749 §4.4) authenticated by ``private_key_jwt``
(RFC 7523 §2.2): each request carries a fresh assertion signed by the file's private
key. The token is cached like a person's (:class:`~authserver.client.cache.TokenCache`)
until a minute before it expires.

Client side: nothing of the server is imported (``requests`` and joserfc only).
"""

from __future__ import annotations

import os

from ..key_file import ASSERTION_TYPE, KeyFileError, client_assertion, load_key_file
from .cache import REFRESH_MARGIN, CachedToken, TokenCache
from .env import CREDENTIALS
from .http import LoginError, post_token_form


def key_file_path(explicit: str | None) -> str | None:
    """``--key-file``, else ``$AUTHSERVER_CREDENTIALS`` (like Google's
    ``GOOGLE_APPLICATION_CREDENTIALS``), else ``None``."""
    return explicit or os.environ.get(CREDENTIALS) or None


def key_file_access_token(
    path: str,
    *,
    audience: str | None = None,
    scope: str | None = None,
    cache: TokenCache | None = None,
) -> str:
    """A cached access token with more than a minute left, else a new one."""
    try:
        key_file = load_key_file(path)
    except KeyFileError as exc:
        raise LoginError(str(exc)) from None
    cache = cache or TokenCache()
    entry = " ".join(
        part
        for part in (f"key:{key_file.client_id}", audience or "", f"scope={scope}" if scope else "")
        if part
    )
    token = cache.load(key_file.issuer, entry)
    if token is not None and token.seconds_left() > REFRESH_MARGIN:
        return token.access_token
    form = {
        "grant_type": "client_credentials",
        "client_assertion_type": ASSERTION_TYPE,
        "client_assertion": client_assertion(key_file),
    }
    if audience:
        form["resource"] = audience
    if scope:
        form["scope"] = scope
    body = post_token_form(key_file.token_url, form, f"the key file of {key_file.client_id}")
    fresh = CachedToken.from_response(body)
    cache.store(key_file.issuer, entry, fresh)
    return fresh.access_token
