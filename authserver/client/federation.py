"""Workload identity federation: a CI job's OIDC token for an access token, by
RFC 8693 token exchange."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from .http import LoginError, discover, error_text, post_token_form, reason

TOKEN_EXCHANGE_GRANT = "urn:ietf:params:oauth:grant-type:token-exchange"  # noqa: S105 - a URN
JWT_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:jwt"  # noqa: S105 - a URN
ACCESS_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:access_token"  # noqa: S105 - a URN


def read_federated_token(spec: str, environ: Mapping[str, str] | None = None) -> str:
    """The external token ``spec`` names: ``env:VAR``, ``@FILE`` (a Kubernetes projected
    token, a file a CI step wrote), or the token itself."""
    environ = os.environ if environ is None else environ
    if spec.startswith("env:"):
        name = spec[len("env:") :]
        value = environ.get(name, "").strip()
        if not value:
            raise LoginError(f"the environment variable {name} is not set or empty")
        return value
    if spec.startswith("@"):
        path = Path(spec[1:]).expanduser()
        try:
            value = path.read_text().strip()
        except OSError as exc:
            raise LoginError(f"cannot read {path}: {reason(exc)}") from None
        if not value:
            raise LoginError(f"{path} is empty")
        return value
    if not spec.strip():
        raise LoginError("--federated needs a token, @FILE or env:VAR")
    return spec.strip()


def exchange_federated_token(
    issuer: str,
    spec: str,
    *,
    audience: str | None = None,
    scope: str | None = None,
) -> str:
    """Trade an external JWT for an access token by RFC 8693 token exchange (no client
    authentication: the external token is the credential) and return the access token."""
    subject_token = read_federated_token(spec)
    metadata = discover(issuer)
    form = {
        "grant_type": TOKEN_EXCHANGE_GRANT,
        "subject_token": subject_token,
        "subject_token_type": JWT_TOKEN_TYPE,
        "requested_token_type": ACCESS_TOKEN_TYPE,
    }
    if audience:
        form["audience"] = audience
    if scope:
        form["scope"] = scope
    body = post_token_form(metadata.token_endpoint, form, "the token exchange")
    if not isinstance(body.get("access_token"), str):
        raise LoginError(f"the token exchange was refused ({error_text(body)})")
    access_token: str = body["access_token"]
    return access_token
