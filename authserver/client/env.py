"""The environment variables of the person's CLI (``authserver login``, ``token``, ...).

One list, read by both sides: the client reads only these, and the server's settings
loader skips them, so one shell may hold both (DESIGN.md, "Environment variables").
None of them has the name of a server setting. Nothing here imports the server side.
"""

from __future__ import annotations

#: A named set of client defaults (issuer, client id, audience, scopes, flow).
PROFILE = "AUTHSERVER_PROFILE"
#: The client config file that holds the profiles (default
#: ``$XDG_CONFIG_HOME/authserver/config.yaml``).
CLIENT_CONFIG = "AUTHSERVER_CLIENT_CONFIG"
#: Where ``login`` caches tokens (default ``~/.cache/authserver``).
CACHE_DIR = "AUTHSERVER_CACHE_DIR"
#: A service-account key file, for ``private_key_jwt`` (``token --key-file``).
CREDENTIALS = "AUTHSERVER_CREDENTIALS"
#: A service-account token (``as_sa_<client_id>.<secret>``).
SERVICE_ACCOUNT_TOKEN = "AUTHSERVER_SERVICE_ACCOUNT_TOKEN"  # noqa: S105 - a variable name
#: A confidential client's secret, inline, from a file, or from another variable.
CLIENT_SECRET = "AUTHSERVER_CLIENT_SECRET"  # noqa: S105 - a variable name
CLIENT_SECRET_FROM_FILE = CLIENT_SECRET + "_FROM_FILE"
CLIENT_SECRET_FROM_ENV_VAR = CLIENT_SECRET + "_FROM_ENV_VAR"

CLIENT_ENV_VARS = frozenset(
    {
        PROFILE,
        CLIENT_CONFIG,
        CACHE_DIR,
        CREDENTIALS,
        SERVICE_ACCOUNT_TOKEN,
        CLIENT_SECRET,
        CLIENT_SECRET_FROM_FILE,
        CLIENT_SECRET_FROM_ENV_VAR,
    }
)
