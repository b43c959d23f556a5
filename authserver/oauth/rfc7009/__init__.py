"""RFC 7009, OAuth 2.0 Token Revocation: :mod:`.revocation`."""
