"""OpenID Connect RP-Initiated Logout 1.0: the end-session endpoint's decisions."""

from __future__ import annotations

from collections.abc import Callable, Mapping

from authlib.common.urls import add_params_to_uri

from ..clients import Client
from .id_tokens import IdTokens


class Logout:
    def __init__(self, id_tokens: IdTokens, query_client: Callable[[str], Client | None]) -> None:
        self._id_tokens = id_tokens
        self._query_client = query_client

    def redirect_target(self, args: Mapping[str, str]) -> str | None:
        """§3: where to send the browser after logout, from the request's
        ``post_logout_redirect_uri``, ``id_token_hint``, ``client_id`` and ``state``.

        Only to a URI registered for the client named by ``client_id`` or the
        ``id_token_hint``'s ``aud``; anything else ends on our own page (``None``).
        """
        target = args.get("post_logout_redirect_uri")
        if not target:
            return None
        id_token_hint, client_id = args.get("id_token_hint"), args.get("client_id")
        hinted = self._id_tokens.audience_of(id_token_hint) if id_token_hint else None
        if hinted and client_id and hinted != client_id:
            return None
        client = self._query_client(client_id or hinted or "")
        if client is None or not client.check_post_logout_redirect_uri(target):
            return None
        state = args.get("state")
        params = [("state", state)] if state else []
        return str(add_params_to_uri(target, params))

    def hint_names(self, args: Mapping[str, str], subject_id: str) -> bool:
        """§2: whether the request's ``id_token_hint`` names this signed-in person (then
        a GET signs out without asking: the RP holds that person's ID token)."""
        id_token_hint = args.get("id_token_hint")
        if not id_token_hint:
            return False
        return self._id_tokens.subject_of(id_token_hint) == subject_id
