"""RFC 7636, Proof Key for Code Exchange (PKCE): :mod:`.pkce` (S256 only, OAuth 2.1)."""
