"""OAuth endpoints: token (RFC 6749 §3.2), introspection (RFC 7662), revocation (RFC 7009)."""

from __future__ import annotations

from flask import Blueprint, Response

from ..oauth.http import HttpRequest
from ..paths import (
    DEVICE_AUTHORIZATION_PATH,
    INTROSPECTION_PATH,
    REVOCATION_PATH,
    TOKEN_PATH,
    USERINFO_PATH,
)
from .adapter import oauth_request, oauth_server, to_flask
from .signin import client_address

bp = Blueprint("oauth", __name__)


def _request() -> HttpRequest:
    """The request with its sender's address (client-secret failures count per address)."""
    return oauth_request(client_address())


@bp.post(TOKEN_PATH)
def token() -> Response:
    return to_flask(oauth_server().token_response(_request()))


@bp.post(INTROSPECTION_PATH)
def introspect() -> Response:
    return to_flask(oauth_server().introspection_response(_request()))


@bp.post(REVOCATION_PATH)
def revoke() -> Response:
    return to_flask(oauth_server().revocation_response(_request()))


@bp.post(DEVICE_AUTHORIZATION_PATH)
def device_authorization() -> Response:
    return to_flask(oauth_server().device_authorization_response(_request()))


@bp.route(USERINFO_PATH, methods=["GET", "POST"])
def userinfo() -> Response:
    """OIDC Core §5.3.1: GET or POST, the access token as a Bearer header (RFC 6750 §2.1)."""
    response = to_flask(oauth_server().userinfo.response(oauth_request()))
    response.headers["Access-Control-Allow-Origin"] = "*"
    return response
