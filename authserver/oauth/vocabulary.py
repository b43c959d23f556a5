"""Protocol vocabulary that settings, clients and grants share: grant type names, the
scope-token grammar and the client-secret hash schemes.

A leaf module (it imports nothing of the server), so that ``settings.py`` can validate
with the protocol's own words without the protocol depending on settings.
"""

from __future__ import annotations

import base64
import binascii
import re
from typing import Literal

#: RFC 6749 §4.4, §4.1 and §6; RFC 8628 §3.4.
GRANT_CLIENT_CREDENTIALS = "client_credentials"
GRANT_AUTHORIZATION_CODE = "authorization_code"
GRANT_REFRESH_TOKEN = "refresh_token"  # noqa: S105 - a grant type name, not a secret
GRANT_DEVICE_CODE = "urn:ietf:params:oauth:grant-type:device_code"
#: The grant types a configured client may register.
KNOWN_GRANT_TYPES = frozenset(
    {GRANT_CLIENT_CREDENTIALS, GRANT_AUTHORIZATION_CODE, GRANT_REFRESH_TOKEN, GRANT_DEVICE_CODE}
)

#: RFC 8693 §2.1 token exchange and RFC 7523 §2.1 JWT bearer: the grants of workload
#: identity federation (``federated_identities``; no client registers them).
GRANT_TOKEN_EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"  # noqa: S105 - a URN
GRANT_JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"

#: RFC 6749 §3.3: scope-token = 1*( %x21 / %x23-5B / %x5D-7E )
SCOPE_TOKEN = re.compile(r"[\x21\x23-\x5b\x5d-\x7e]+")

_BCRYPT = re.compile(r"\$2[aby]\$\d\d\$[./A-Za-z0-9]{53}")


def classify_secret_hash(value: str) -> Literal["bcrypt", "argon2id"]:
    """Which scheme a ``client_secret_hash`` uses; ``ValueError`` if none we accept.

    Accepted: bcrypt (``$2a$``/``$2b$``/``$2y$``), base64 of a bcrypt hash (what
    Flyte's docs generate), and argon2id.
    """
    if _BCRYPT.fullmatch(value):
        return "bcrypt"
    if value.startswith("$argon2id$"):
        return "argon2id"
    try:
        decoded = base64.b64decode(value, validate=True).decode("ascii")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        decoded = ""
    if _BCRYPT.fullmatch(decoded):
        return "bcrypt"
    raise ValueError("must be a bcrypt hash ($2b$...), base64 of one, or an argon2id hash")
