"""RFC 7523, JWT Profile for OAuth 2.0 Client Authentication and Authorization Grants.

- :mod:`.client_assertion`: ``private_key_jwt`` client authentication (§2.2, OIDC Core §9).
- :mod:`.jwt_bearer`: the JWT bearer grant (§2.1), for workload identity federation.
- :mod:`.federated`: what that grant shares with RFC 8693 token exchange.
"""
