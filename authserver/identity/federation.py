"""Upstream OIDC federation: people sign in at the configured IdP (Okta, Google,
Keycloak, Entra ID...) through Authlib's Flask client.

Authlib does discovery, the authorization code flow with PKCE (S256), ``state`` and
``nonce``, and validates the ID token (signature from the IdP's JWKS, ``iss``,
``aud``, ``exp``, ``nonce``; OIDC Core §3.1.3.7). The state it keeps between the
redirect and the callback lives in our ephemeral store, not in the cookie.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from authlib.integrations.flask_client import OAuth
from flask import Flask
from werkzeug.wrappers import Response

from ..settings import UpstreamSettings
from ..storage.ephemeral import EphemeralStore

log = logging.getLogger(__name__)

#: OAuth 2.0 / OIDC error codes an IdP may send back (RFC 6749 §4.1.2.1, OIDC Core
#: §3.1.2.6); anything else is shown as plain "error".
KNOWN_UPSTREAM_ERRORS = frozenset(
    {
        "invalid_request",
        "unauthorized_client",
        "unsupported_response_type",
        "invalid_scope",
        "server_error",
        "temporarily_unavailable",
        "interaction_required",
        "login_required",
        "account_selection_required",
        "consent_required",
        "invalid_request_uri",
        "invalid_request_object",
        "invalid_grant",
        "invalid_client",
    }
)

#: How long a sign-in at the IdP may take, from our redirect to its callback.
STATE_TTL_SECONDS = 600


class StateCache:
    """Authlib's cache interface (get/set/delete of strings) over the ephemeral store."""

    def __init__(self, store: EphemeralStore, prefix: str = "federation:") -> None:
        self._store = store
        self._prefix = prefix

    def get(self, key: str) -> str | None:
        value = self._store.get(self._prefix + key)
        return value.decode() if value is not None else None

    def set(self, key: str, value: str, timeout: float | None = None) -> None:
        self._store.put(self._prefix + key, value.encode(), timeout or STATE_TTL_SECONDS)

    def delete(self, key: str) -> None:
        self._store.delete(self._prefix + key)


@dataclass(frozen=True)
class UpstreamIdentity:
    issuer: str
    subject: str
    email: str | None
    name: str | None
    groups: tuple[str, ...]
    #: The IdP's ``email_verified`` (OIDC Core §5.1); ``None`` when it did not say.
    email_verified: bool | None = None


class UpstreamError(Exception):
    """The sign-in at the IdP did not work out; ``str()`` is safe to show the person.

    ``status``: 502 when the IdP failed us, 400 when the request was not good.
    """

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


class Upstream:
    """The configured IdP, registered with Authlib's Flask client for one app."""

    def __init__(self, app: Flask, settings: UpstreamSettings, store: EphemeralStore) -> None:
        self.settings = settings
        self._oauth = OAuth(app, cache=StateCache(store))
        issuer = settings.issuer.rstrip("/")
        self._client = self._oauth.register(
            "upstream",
            client_id=settings.client_id,
            client_secret=settings.client_secret,
            server_metadata_url=f"{issuer}/.well-known/openid-configuration",
            client_kwargs={
                "scope": " ".join(settings.scopes),
                "code_challenge_method": "S256",
                "timeout": 10,
            },
        )

    @property
    def name(self) -> str:
        """Shown on the login button: the IdP's host."""
        from urllib.parse import urlsplit

        return urlsplit(self.settings.issuer).hostname or self.settings.issuer

    def redirect(self, callback_url: str) -> Response:
        """Send the browser to the IdP (Authlib adds state, nonce and the PKCE challenge)."""
        try:
            self._check_issuer()
            response: Response = self._client.authorize_redirect(callback_url)
        except Exception as exc:  # unreachable IdP, bad discovery document
            log.warning("upstream IdP unavailable: %s", exc)
            raise UpstreamError(
                "The identity provider cannot be reached right now. Try again later.", 502
            ) from exc
        return response

    def _check_issuer(self) -> None:
        """OIDC Discovery §4.3: the document's ``issuer`` is exactly the configured one
        (a proxy or a mix-up must not substitute another IdP's metadata)."""
        metadata = self._client.load_server_metadata()
        if metadata.get("issuer") != self.settings.issuer:
            self._client.server_metadata.pop("_loaded_at", None)  # fetch again next time
            raise ValueError(
                f"the discovery document names issuer {metadata.get('issuer')!r}, "
                f"not the configured {self.settings.issuer!r}"
            )

    def finish(self) -> UpstreamIdentity:
        """Handle the callback: check state, redeem the code, validate the ID token."""
        from authlib.integrations.base_client.errors import MismatchingStateError, OAuthError

        try:
            token: dict[str, Any] = self._client.authorize_access_token()
        except MismatchingStateError as exc:
            raise UpstreamError(
                "This sign-in link is stale or was not started here. Please sign in again."
            ) from exc
        except OAuthError as exc:
            if exc.error == "access_denied":
                raise UpstreamError("Sign-in was cancelled at the identity provider.") from exc
            log.warning("upstream sign-in failed: %r %r", exc.error, exc.description)
            # Only codes we know are shown: the callback's query is anyone's to forge.
            code = exc.error if exc.error in KNOWN_UPSTREAM_ERRORS else "error"
            raise UpstreamError(f"The identity provider refused the sign-in ({code}).") from exc
        except Exception as exc:  # IdP unreachable at the token endpoint, bad ID token...
            log.warning("upstream sign-in failed: %s: %s", type(exc).__name__, exc)
            raise UpstreamError(
                "The sign-in at the identity provider could not be completed. Try again.", 502
            ) from exc
        claims: dict[str, Any] = dict(token.get("userinfo") or {})
        if not claims.get("sub"):
            raise UpstreamError("The identity provider sent no ID token.")
        if claims.get("iss") != self.settings.issuer:
            # OIDC Core §3.1.3.7 step 2: exactly the configured issuer.
            log.warning("upstream ID token from issuer %r refused", claims.get("iss"))
            raise UpstreamError("The identity provider's ID token names another issuer.", 502)
        groups_claim = self.settings.groups_claim
        if groups_claim not in claims or not claims.get("email"):
            # Many IdPs put groups (and sometimes email) only in /userinfo.
            try:
                extra = dict(self._client.userinfo(token=token))
            except Exception:
                log.warning("upstream userinfo failed", exc_info=True)
                extra = {}
            if extra.get("sub") == claims["sub"]:
                claims = {**extra, **claims}
        return UpstreamIdentity(
            issuer=self.settings.issuer,
            subject=str(claims["sub"]),
            email=_str(claims.get("email")),
            name=_str(claims.get("name")),
            groups=_groups(claims.get(groups_claim)),
            email_verified=_verified(claims.get("email_verified"), self.settings),
        )


def _verified(value: object, settings: UpstreamSettings) -> bool | None:
    """``email_verified`` as a bool (some IdPs send the string ``"true"``); a missing
    one is ``True`` only under ``upstream.assume_email_verified``."""
    if isinstance(value, str):
        value = {"true": True, "false": False}.get(value.strip().lower())
    if isinstance(value, bool):
        return value
    return True if settings.assume_email_verified else None


def _str(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def _groups(value: object) -> tuple[str, ...]:
    if isinstance(value, str):
        return (value,)
    if isinstance(value, Sequence):
        return tuple(str(v) for v in value if isinstance(v, str | int))
    return ()
