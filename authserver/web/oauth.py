"""OAuth endpoints: token (RFC 6749 §3.2), introspection (RFC 7662), revocation (RFC 7009)."""

from __future__ import annotations

from flask import Blueprint, Response, current_app

from ..oauth.metadata import INTROSPECTION_PATH, REVOCATION_PATH, TOKEN_PATH
from ..oauth.server import AuthServer
from .adapter import oauth_request, to_flask

bp = Blueprint("oauth", __name__)


def _server() -> AuthServer:
    server: AuthServer = current_app.extensions["authserver.oauth"]
    return server


@bp.post(TOKEN_PATH)
def token() -> Response:
    return to_flask(_server().token_response(oauth_request()))


@bp.post(INTROSPECTION_PATH)
def introspect() -> Response:
    return to_flask(_server().introspection_response(oauth_request()))


@bp.post(REVOCATION_PATH)
def revoke() -> Response:
    return to_flask(_server().revocation_response(oauth_request()))
