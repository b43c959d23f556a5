"""OAuth 2.1 / OIDC protocol: grants, endpoints, token building, client authentication.

Framework-free: the web layer hands in an :class:`~authserver.oauth.http.HttpRequest`
and gets an :class:`~authserver.oauth.http.HttpResponse` back. No Flask request, no
database session, no Redis here: storage comes in through small protocols.

The tree is an index of the specs:

- ``rfc6749/``: the framework: authorization endpoint and its decisions, the
  authorization code, client credentials and refresh token grants.
- ``rfc7009/`` revocation, ``rfc7662/`` introspection.
- ``rfc7523/`` JWT client authentication and the JWT bearer grant; ``rfc8693/`` token
  exchange (with :mod:`.federation`, workload identity federation's rules).
- ``rfc7636/`` PKCE, ``rfc8628/`` the device grant, ``rfc8707/`` resource indicators.
- ``oidc/``: OpenID Connect Core (ID tokens, userinfo) and RP-Initiated Logout.
- :mod:`.tokens`: RFC 9068 JWT access tokens; :mod:`.refresh`: refresh tokens and the
  one owner of their families (RFC 9700 §4.14); :mod:`.metadata`: RFC 8414 discovery.
- :mod:`.server`: Authlib's engine with all of the above registered; :mod:`.clients`,
  :mod:`.secrets`, :mod:`.subjects`, :mod:`.throttle`, :mod:`.http`, :mod:`.requests`:
  what they share.
"""
