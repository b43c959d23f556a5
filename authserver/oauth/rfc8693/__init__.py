"""RFC 8693, OAuth 2.0 Token Exchange: :mod:`.token_exchange` (workload identity
federation: an external OIDC token for one of ours)."""
