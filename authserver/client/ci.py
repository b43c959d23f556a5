"""CI without a browser: ``authserver token`` with a confidential client's secret or a
service-account token, by the client credentials grant (RFC 6749 §4.4), cached until a
minute before the access token expires.

Where the credential comes from (one of them; two at the same level is an error):

1. a flag: ``--federated``, ``--key-file`` or ``--client-secret-file PATH``;
2. else one environment variable: ``AUTHSERVER_CREDENTIALS`` (a key file),
   ``AUTHSERVER_CLIENT_SECRET`` (the secret), ``AUTHSERVER_CLIENT_SECRET_FROM_FILE`` (a
   path), ``AUTHSERVER_CLIENT_SECRET_FROM_ENV_VAR`` (the name of another variable, as
   Flyte's ``*_FROM_ENV_VAR``), or ``AUTHSERVER_SERVICE_ACCOUNT_TOKEN``
   (``as_sa_<client_id>.<secret>``, as SkyPilot's ``SKYPILOT_SERVICE_ACCOUNT_TOKEN``);
3. else the person's own sign-in (``authserver login``).

Client side: ``requests`` only.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import requests

from .cache import REFRESH_MARGIN, CachedToken, TokenCache
from .env import (
    CLIENT_SECRET,
    CLIENT_SECRET_FROM_ENV_VAR,
    CLIENT_SECRET_FROM_FILE,
    CREDENTIALS,
    SERVICE_ACCOUNT_TOKEN,
)
from .http import HTTP_TIMEOUT, LoginError, UsageError, discover, error_text, reason

SERVICE_ACCOUNT_PREFIX = "as_sa_"

#: The kinds of :class:`Credential`.
FEDERATED, KEY_FILE, CLIENT_SECRET_KIND, SERVICE_ACCOUNT = (
    "federated",
    "key-file",
    "client-secret",
    "service-account",
)


@dataclass(frozen=True)
class Credential:
    """A machine's credential: its kind, where it was found (a flag or a variable, for
    messages), and its value (a path for a key file, a spec for ``--federated``, the
    secret itself otherwise)."""

    kind: str
    source: str
    value: str


def choose_credential(
    *,
    federated: str | None = None,
    key_file: str | None = None,
    client_secret_file: str | None = None,
    environ: Mapping[str, str] | None = None,
) -> Credential | None:
    """The one credential the flags, else the environment, give; ``None`` for none (the
    person's sign-in is used). Two flags, or two variables, are a ``UsageError``."""
    environ = os.environ if environ is None else environ
    flags = [
        (kind, flag, value)
        for kind, flag, value in (
            (FEDERATED, "--federated", federated),
            (KEY_FILE, "--key-file", key_file),
            (CLIENT_SECRET_KIND, "--client-secret-file", client_secret_file),
        )
        if value
    ]
    if len(flags) > 1:
        raise UsageError(f"{flags[0][1]} and {flags[1][1]} both give a credential: use one")
    if flags:
        kind, flag, value = flags[0]
        if kind == CLIENT_SECRET_KIND:
            return Credential(kind, flag, _read_secret_file(Path(value), flag))
        return Credential(kind, flag, value)
    variables = [
        (kind, name, environ[name])
        for kind, name in (
            (KEY_FILE, CREDENTIALS),
            (CLIENT_SECRET_KIND, CLIENT_SECRET),
            (CLIENT_SECRET_KIND, CLIENT_SECRET_FROM_FILE),
            (CLIENT_SECRET_KIND, CLIENT_SECRET_FROM_ENV_VAR),
            (SERVICE_ACCOUNT, SERVICE_ACCOUNT_TOKEN),
        )
        if environ.get(name)
    ]
    if len(variables) > 1:
        raise UsageError(
            f"both {variables[0][1]} and {variables[1][1]} are set: they give two "
            "credentials; unset one"
        )
    if not variables:
        return None
    kind, name, value = variables[0]
    if name == CLIENT_SECRET_FROM_FILE:
        value = _read_secret_file(Path(value), name)
    elif name == CLIENT_SECRET_FROM_ENV_VAR:
        value = environ.get(value, "").strip()
        if not value:
            raise UsageError(
                f"{name} names the variable {variables[0][2]}, which is not set or empty"
            )
    else:
        value = value.strip()
    return Credential(kind, name, value)


def _read_secret_file(path: Path, source: str) -> str:
    try:
        value = path.expanduser().read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise UsageError(
            f"cannot read the client secret file {path} ({source}): {reason(exc)}"
        ) from None
    if not value:
        raise UsageError(f"the client secret file {path} ({source}) is empty")
    return value


def service_account_client_id(token: str, source: str = SERVICE_ACCOUNT_TOKEN) -> str:
    """The client id inside a service-account token, ``as_sa_<client_id>.<secret>``."""
    client_id, dot, secret = token.removeprefix(SERVICE_ACCOUNT_PREFIX).partition(".")
    if not token.startswith(SERVICE_ACCOUNT_PREFIX) or not dot or not client_id or not secret:
        raise UsageError(
            f"{source} is not a service-account token (as_sa_<client_id>.<secret>, "
            "as `authserver service-accounts create` prints it)"
        )
    return client_id


def client_credentials_token(
    issuer: str,
    client_id: str,
    secret: str,
    *,
    audience: str | None = None,
    scope: str | None = None,
    cache: TokenCache | None = None,
) -> str:
    """An access token for a confidential client (a service account's token is its
    secret): the cached one while it has more than a minute left, else a new one by the
    client credentials grant, authenticated by HTTP Basic (RFC 6749 §2.3.1, the id and
    secret form-encoded first)."""
    cache = cache or TokenCache()
    entry = secret_cache_key(client_id, secret, audience, scope)
    token = cache.load(issuer, entry)
    if token is not None and token.seconds_left() > REFRESH_MARGIN:
        return token.access_token
    metadata = discover(issuer)
    form = {"grant_type": "client_credentials"}
    if audience:
        form["resource"] = audience
    if scope:
        form["scope"] = scope
    url = metadata.token_endpoint
    try:
        response = requests.post(
            url,
            data=form,
            auth=(quote(client_id, safe=""), quote(secret, safe="")),
            headers={"Accept": "application/json"},
            timeout=HTTP_TIMEOUT,
        )
    except requests.RequestException as exc:
        raise LoginError(f"cannot reach {url}: {reason(exc)}") from None
    try:
        body: object = response.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        raise LoginError(f"{url} answered HTTP {response.status_code} without JSON")
    if response.status_code != 200:
        if body.get("error") == "invalid_client":
            raise LoginError(
                f"the server refused the client {client_id} and its secret "
                f"({error_text(body)}): check the secret, or that it is not revoked or expired"
            )
        raise LoginError(f"the client credentials of {client_id} were refused ({error_text(body)})")
    fresh = CachedToken.from_response(body)
    cache.store(issuer, entry, fresh)
    return fresh.access_token


def secret_cache_key(
    client_id: str, secret: str, audience: str | None = None, scope: str | None = None
) -> str:
    """The cache entry of a client-credentials token: per client, audience and scope,
    and per secret (a short digest of it), so that a changed or wrong secret never gets
    the token of the old one."""
    digest = hashlib.sha256(secret.encode()).hexdigest()[:12]
    parts = [f"secret:{client_id}#{digest}", audience or "", f"scope={scope}" if scope else ""]
    return " ".join(part for part in parts if part)
