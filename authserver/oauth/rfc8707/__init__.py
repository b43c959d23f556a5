"""RFC 8707, Resource Indicators for OAuth 2.0: :mod:`.audience` (the ``aud`` a token
carries)."""
