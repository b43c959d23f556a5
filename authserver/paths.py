"""Every endpoint's path, relative to the issuer (``base_url``): defined here once.

The blueprints route on these, the discovery document (RFC 8414 §2, OIDC Discovery
§3) advertises them, and redirects build on them. A leaf module: it imports nothing,
and every layer may import it.
"""

from __future__ import annotations

# -- OAuth 2.1 / OIDC endpoints, as discovery advertises them ----------------------
#: RFC 6749 §3.1.
AUTHORIZATION_PATH = "/oauth2/authorize"
#: RFC 6749 §3.2.
TOKEN_PATH = "/oauth2/token"  # noqa: S105 - a path, not a secret
#: RFC 7662 §2.
INTROSPECTION_PATH = "/oauth2/introspect"
#: RFC 7009 §2.
REVOCATION_PATH = "/oauth2/revoke"
#: RFC 8628 §3.1.
DEVICE_AUTHORIZATION_PATH = "/oauth2/device_authorization"
#: RFC 8628 §3.3: where the person enters the user code.
DEVICE_VERIFICATION_PATH = "/device"
#: OIDC Core §5.3.
USERINFO_PATH = "/oauth2/userinfo"
#: OIDC RP-Initiated Logout §2.
END_SESSION_PATH = "/logout"
#: RFC 7517 §5, RFC 8414 §2 ``jwks_uri``.
JWKS_PATH = "/.well-known/jwks.json"
#: OIDC Discovery §4.
OPENID_CONFIGURATION_PATH = "/.well-known/openid-configuration"
#: RFC 8414 §3.
AUTHORIZATION_SERVER_METADATA_PATH = "/.well-known/oauth-authorization-server"

# -- Sign-in pages --------------------------------------------------------------------
LOGIN_PATH = "/login"
NEW_PASSWORD_PATH = "/login/new-password"  # noqa: S105 - a path, not a secret
UPSTREAM_LOGIN_PATH = "/login/upstream"
#: Where the upstream IdP sends the person back (the redirect URI registered there).
UPSTREAM_CALLBACK_PATH = "/callback"

# -- The person's own pages ------------------------------------------------------------
#: Who one is, one's roles, password and signed-in clients (for everyone signed in).
ACCOUNT_PATH = "/account"
#: The operator's logo (``branding.logo``), served from here so the CSP stays ``'self'``.
BRANDING_LOGO_PATH = "/branding/logo"

# -- Forward auth (oauth2-proxy's protocol; DESIGN.md "Integrations") -----------------
FORWARD_AUTH_PREFIX = "/oauth2/"
FORWARD_AUTH_PATH = "/oauth2/auth"
FORWARD_START_PATH = "/oauth2/start"
FORWARD_CALLBACK_PATH = "/oauth2/callback"
FORWARD_SIGN_OUT_PATH = "/oauth2/sign_out"
#: At our own origin: the sign-in a forward-auth start leads to.
FORWARD_SIGNIN_PATH = "/login/forward"

# -- Admin and operations -------------------------------------------------------------
#: The admin API; its URL is the ``aud`` (RFC 8707 resource) its tokens must carry.
ADMIN_API_PATH = "/api/v1"
DASHBOARD_PATH = "/dashboard"
HEALTH_PATH = "/healthz"
READY_PATH = "/readyz"
METRICS_PATH = "/metrics"
