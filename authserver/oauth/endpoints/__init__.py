"""One module per endpoint beyond the token endpoint."""
