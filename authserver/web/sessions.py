"""Flask's signed-cookie sessions, without the cost on requests that carry no cookie."""

from __future__ import annotations

from flask import Flask, Request
from flask.sessions import SecureCookieSession, SecureCookieSessionInterface


class CookieSessionInterface(SecureCookieSessionInterface):
    """Flask's own session interface; a request without the cookie skips the signer.

    Token, introspection and JWKS requests never carry a session cookie, and building
    the signing serializer for each of them showed in the profile of the token path.
    """

    def open_session(self, app: Flask, request: Request) -> SecureCookieSession | None:
        if app.config["SESSION_COOKIE_NAME"] not in request.cookies:
            return self.session_class() if app.secret_key else None
        return super().open_session(app, request)
