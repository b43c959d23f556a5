"""authserver: a self-hosted OAuth 2.1 / OpenID Connect authorization server."""

__version__ = "0.1.0"
