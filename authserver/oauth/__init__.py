"""OAuth 2.1 / OIDC protocol: grants, endpoints, token building, client authentication.

Framework-free: the web layer hands in an :class:`~authserver.oauth.http.HttpRequest`
and gets an :class:`~authserver.oauth.http.HttpResponse` back. No Flask request, no
database session, no Redis here: storage comes in through small protocols.
"""
