"""RFC 6749, The OAuth 2.0 Authorization Framework, as OAuth 2.1 tightens it.

- :mod:`.authorization`: the authorization endpoint (§3.1, §4.1.1-4.1.2) and its
  decisions (OIDC Core §3.1.2.1 ``prompt``/``max_age``, consent, RFC 8252 §8.6).
- :mod:`.authorization_code`: the authorization code grant (§4.1, with RFC 7636 PKCE),
  and what a replayed code revokes (§4.1.2).
- :mod:`.client_credentials`: the client credentials grant (§4.4).
- :mod:`.refresh_token`: refreshing an access token (§6), with rotation and reuse
  detection (RFC 9700 §4.14.2); the families themselves are :mod:`..refresh`'s.
"""
