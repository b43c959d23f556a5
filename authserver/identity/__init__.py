"""People's identity: local users, upstream OIDC federation, the auth-proxy header."""
