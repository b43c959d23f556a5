"""The person's side of sign-in: ``authserver login`` and ``authserver token``.

A public client (``cli`` by default) signs a person in with the authorization code
grant, PKCE ``S256`` and a loopback redirect (RFC 8252 §7.3, :mod:`.loopback`), or with
the device flow (RFC 8628, :mod:`.device`), and keeps the tokens in a small per-user
cache (:mod:`.cache`); :func:`fresh_access_token` (:mod:`.refresh`) hands a script a
valid access token, refreshing (and storing the rotated refresh token) when the cached
one is about to expire. A service account's key file gets tokens by the client
credentials grant with ``private_key_jwt`` (:mod:`.credentials`); a CI job trades its
OIDC token by RFC 8693 token exchange (:mod:`.federation`); a confidential client's
secret or a service-account token, by the client credentials grant (:mod:`.ci`).
:mod:`.profiles` reads and writes the named profiles of the client config file;
:mod:`.account` revokes a sign-in (RFC 7009) and reads who its tokens say you are.
:mod:`.env` lists the environment variables the client reads; :mod:`.http` holds what
the modules share.

Framework-free: Authlib's requests client and ``requests`` only, nothing of the server
side (but the shared key-file format, ``authserver.key_file``), so it runs on any
person's machine.

The names below are loaded on first use (PEP 562): the server's settings loader
imports :mod:`.env` to skip the client's variables, and with it the protocol core
(``oauth/`` reads the settings) would otherwise load ``authlib.integrations``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .cache import REFRESH_MARGIN, CachedToken, TokenCache, cache_key, default_cache_path
    from .credentials import key_file_access_token, key_file_path
    from .device import DEVICE_GRANT, login_device
    from .federation import exchange_federated_token, read_federated_token
    from .http import (
        DEFAULT_CLIENT_ID,
        DEFAULT_SCOPES,
        HTTP_TIMEOUT,
        LoginError,
        ServerMetadata,
        discover,
        post_token_form,
    )
    from .loopback import CALLBACK_PATH, login_loopback
    from .refresh import fresh_access_token

#: public name -> the module of this package that defines it
_MODULES = {
    "REFRESH_MARGIN": "cache",
    "CachedToken": "cache",
    "TokenCache": "cache",
    "cache_key": "cache",
    "default_cache_path": "cache",
    "key_file_access_token": "credentials",
    "key_file_path": "credentials",
    "DEVICE_GRANT": "device",
    "login_device": "device",
    "exchange_federated_token": "federation",
    "read_federated_token": "federation",
    "DEFAULT_CLIENT_ID": "http",
    "DEFAULT_SCOPES": "http",
    "HTTP_TIMEOUT": "http",
    "LoginError": "http",
    "ServerMetadata": "http",
    "discover": "http",
    "post_token_form": "http",
    "CALLBACK_PATH": "loopback",
    "login_loopback": "loopback",
    "fresh_access_token": "refresh",
}


def __getattr__(name: str) -> Any:
    module = _MODULES.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)


__all__ = [
    "CALLBACK_PATH",
    "DEFAULT_CLIENT_ID",
    "DEFAULT_SCOPES",
    "DEVICE_GRANT",
    "HTTP_TIMEOUT",
    "REFRESH_MARGIN",
    "CachedToken",
    "LoginError",
    "ServerMetadata",
    "TokenCache",
    "cache_key",
    "default_cache_path",
    "discover",
    "exchange_federated_token",
    "fresh_access_token",
    "key_file_access_token",
    "key_file_path",
    "login_device",
    "login_loopback",
    "post_token_form",
    "read_federated_token",
]
