"""OpenID Connect: Core 1.0 (ID tokens §2 / §3.1.3.6, ``/userinfo`` §5.3) and
RP-Initiated Logout 1.0.

- :mod:`.id_tokens`: building ID tokens and reading our own back (logout hints).
- :mod:`.userinfo`: the UserInfo endpoint.
- :mod:`.logout`: where the end-session endpoint may send the browser.
"""

from .id_tokens import OPENID_SCOPE, IdTokens
from .logout import Logout
from .userinfo import UserInfoEndpoint

__all__ = ["OPENID_SCOPE", "IdTokens", "Logout", "UserInfoEndpoint"]
