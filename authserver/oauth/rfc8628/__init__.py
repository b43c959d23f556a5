"""RFC 8628, OAuth 2.0 Device Authorization Grant: :mod:`.device_code` (the device
authorization endpoint §3.1-3.2, the person's approval §3.3, the token request §3.4-3.5).
"""
