"""OAuth endpoints: token (RFC 6749 §3.2), introspection (RFC 7662), revocation (RFC 7009),
device authorization (RFC 8628), userinfo (OIDC Core §5.3)."""

from __future__ import annotations

from collections.abc import Callable

from flask import Blueprint, Response

from ..oauth.http import HttpRequest, HttpResponse
from ..oauth.server import AuthServer
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


#: The endpoints that take a form POST and whose answer is the protocol layer's, whole:
#: token (RFC 6749 §3.2), introspection (RFC 7662 §2), revocation (RFC 7009 §2), device
#: authorization (RFC 8628 §3.1). The names are the Flask endpoints (``oauth.token``, ...),
#: as the metrics and the access log name them.
FORM_ENDPOINTS: dict[str, tuple[str, Callable[[AuthServer, HttpRequest], HttpResponse]]] = {
    "token": (TOKEN_PATH, AuthServer.token_response),
    "introspect": (INTROSPECTION_PATH, AuthServer.introspection_response),
    "revoke": (REVOCATION_PATH, AuthServer.revocation_response),
    "device_authorization": (DEVICE_AUTHORIZATION_PATH, AuthServer.device_authorization_response),
}


def _form_endpoint(
    answer: Callable[[AuthServer, HttpRequest], HttpResponse],
) -> Callable[[], Response]:
    def view() -> Response:
        return to_flask(answer(oauth_server(), _request()))

    return view


for _name, (_path, _answer) in FORM_ENDPOINTS.items():
    bp.add_url_rule(_path, _name, _form_endpoint(_answer), methods=["POST"])


@bp.route(USERINFO_PATH, methods=["GET", "POST"])
def userinfo() -> Response:
    """OIDC Core §5.3.1: GET or POST, the access token as a Bearer header (RFC 6750 §2.1)."""
    response = to_flask(oauth_server().userinfo.response(oauth_request()))
    response.headers["Access-Control-Allow-Origin"] = "*"
    return response
