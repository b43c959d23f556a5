"""Discovery (RFC 8414 §3, OIDC Discovery §4) and JWKS (RFC 7517 §5)."""

from __future__ import annotations

import json

from flask import Blueprint, Response

from ..paths import AUTHORIZATION_SERVER_METADATA_PATH, JWKS_PATH, OPENID_CONFIGURATION_PATH
from .services import services

bp = Blueprint("discovery", __name__)


def _json(body: object, max_age: int) -> Response:
    response = Response(json.dumps(body), mimetype="application/json")
    response.headers["Cache-Control"] = f"public, max-age={max_age}"
    response.headers["Access-Control-Allow-Origin"] = "*"
    return response


@bp.get(OPENID_CONFIGURATION_PATH)
@bp.get(AUTHORIZATION_SERVER_METADATA_PATH)
def metadata() -> Response:
    return _json(services().metadata, 3600)


@bp.get(JWKS_PATH)
def jwks() -> Response:
    lines = services().key_lines
    # Cacheable for half of publish_ahead: a cache always holds a new key before it signs.
    if len(lines) == 1:
        return _json(lines[0].jwks(), lines[0].jwks_max_age)
    keys = [key for line in lines for key in line.jwks()["keys"]]
    return _json({"keys": keys}, min(line.jwks_max_age for line in lines))
