"""A library for resource servers: validate our RFC 9068 access tokens.

Depends on nothing of the server side, so a resource server can install it alone.
"""
