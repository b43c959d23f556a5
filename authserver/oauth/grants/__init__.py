"""One module per grant (RFC 6749 §4 and its extensions)."""
