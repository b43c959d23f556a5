"""The authorization endpoint: RFC 6749 §3.1 and §4.1.1-4.1.2 (as OAuth 2.1 §4.1
tightens them), OIDC Core §3.1.2 (``prompt``, ``max_age``, consent), RFC 8252 §8.6
(public clients), RFC 9207 (``iss`` in the response).

- :mod:`.request`: the request, validated; the code response and the error response.
- :mod:`.checks`: the decisions, one ordered list of small checks with one outcome.
"""

from .checks import (
    AskConsent,
    Authenticated,
    AuthorizationEndpoint,
    Browser,
    Outcome,
    Redirect,
    ShowError,
    SignIn,
)
from .request import AuthorizationRequest

__all__ = [
    "AskConsent",
    "Authenticated",
    "AuthorizationEndpoint",
    "AuthorizationRequest",
    "Browser",
    "Outcome",
    "Redirect",
    "ShowError",
    "SignIn",
]
