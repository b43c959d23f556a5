"""Discovery (RFC 8414 §3, OIDC Discovery §4) and JWKS (RFC 7517 §5)."""

from __future__ import annotations

import json

from flask import Blueprint, Response, current_app

from ..keys import KeyManager
from ..oauth.metadata import JWKS_PATH

bp = Blueprint("discovery", __name__)


def _json(body: object, max_age: int) -> Response:
    response = Response(json.dumps(body), mimetype="application/json")
    response.headers["Cache-Control"] = f"public, max-age={max_age}"
    response.headers["Access-Control-Allow-Origin"] = "*"
    return response


@bp.get("/.well-known/openid-configuration")
@bp.get("/.well-known/oauth-authorization-server")
def metadata() -> Response:
    return _json(current_app.extensions["authserver.metadata"], 3600)


@bp.get(JWKS_PATH)
def jwks() -> Response:
    keys: KeyManager = current_app.extensions["authserver.keys"]
    # Cacheable for half of publish_ahead: a cache always holds a new key before it signs.
    return _json(keys.jwks(), keys.jwks_max_age)
