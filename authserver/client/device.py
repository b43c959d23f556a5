"""Sign-in on another device: the device authorization grant (RFC 8628), polling
the token endpoint at the pace the server sets (§3.4-3.5)."""

from __future__ import annotations

import time
from collections.abc import Callable

import requests
from authlib.integrations.requests_client import OAuthError

from .cache import CachedToken
from .http import (
    DEFAULT_CLIENT_ID,
    DEFAULT_SCOPES,
    HTTP_TIMEOUT,
    LoginError,
    discover,
    error_text,
    oauth_reason,
    positive_int,
    public_session,
    reason,
)

DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
#: RFC 8628 §3.5: the default polling interval, and what ``slow_down`` adds to it.
DEVICE_INTERVAL = 5
SLOW_DOWN_STEP = 5


def login_device(
    issuer: str,
    client_id: str = DEFAULT_CLIENT_ID,
    scopes: str = DEFAULT_SCOPES,
    show: Callable[[str], None] = print,
    sleep: Callable[[float], None] = time.sleep,
    audience: str | None = None,
    wait: Callable[[float, float], None] | None = None,
) -> CachedToken:
    """Sign in on another device: ``show`` gets the instructions; then poll (§3.4-3.5).

    ``wait(seconds, left)``, if given, replaces ``sleep`` between polls and is told the
    seconds the code has ``left`` (to show that the sign-in is waiting)."""
    metadata = discover(issuer)
    endpoint = metadata.device_authorization_endpoint
    if not endpoint:
        raise LoginError(f"{issuer} does not offer the device flow")
    try:
        response = requests.post(
            endpoint,
            data={"client_id": client_id, "scope": scopes}
            | ({"resource": audience} if audience else {}),
            headers={"Accept": "application/json"},
            timeout=HTTP_TIMEOUT,
        )
        body: object = response.json()
    except requests.RequestException as exc:
        raise LoginError(f"cannot reach {endpoint}: {reason(exc)}") from None
    except ValueError:
        raise LoginError(f"{endpoint} answered HTTP {response.status_code}, not JSON") from None
    if isinstance(body, dict) and body.get("error") in ("invalid_client", "unauthorized_client"):
        # The server does not say which (an unknown client, a confidential one, or one
        # without this grant answer alike): say what is needed, and the way out.
        raise LoginError(
            f"the server has no public client {client_id!r} with the device grant "
            f"({body.get('error')}); ask its admin for one, or pass --client-id"
        )
    if not isinstance(body, dict) or response.status_code != 200 or "error" in body:
        details = error_text(body) if isinstance(body, dict) else f"HTTP {response.status_code}"
        raise LoginError(f"the device authorization was refused ({details})")
    device_code, user_code = body.get("device_code"), body.get("user_code")
    uri = body.get("verification_uri_complete") or body.get("verification_uri")
    if not isinstance(device_code, str) or not isinstance(user_code, str) or not uri:
        raise LoginError(f"{endpoint} answered without device_code, user_code or verification_uri")
    interval = float(positive_int(body.get("interval"), DEVICE_INTERVAL))
    deadline = time.monotonic() + positive_int(body.get("expires_in"), 600)
    show(f"To sign in, open {uri}\nand check that it shows the code {user_code}")

    with public_session(client_id) as session:
        while True:
            if wait is not None:
                wait(interval, deadline - time.monotonic())
            else:
                sleep(interval)
            if time.monotonic() >= deadline:
                raise LoginError("the code expired before the sign-in was approved")
            try:
                token = session.fetch_token(
                    metadata.token_endpoint,
                    grant_type=DEVICE_GRANT,
                    device_code=device_code,
                    timeout=HTTP_TIMEOUT,
                )
            except OAuthError as exc:
                if exc.error == "authorization_pending":
                    continue
                if exc.error == "slow_down":
                    interval += SLOW_DOWN_STEP
                    continue
                if exc.error == "access_denied":
                    raise LoginError("the sign-in was denied") from None
                if exc.error == "expired_token":
                    raise LoginError("the code expired before the sign-in was approved") from None
                raise LoginError(f"the token endpoint refused ({oauth_reason(exc)})") from None
            except (requests.ConnectionError, requests.Timeout, requests.HTTPError):
                interval = min(interval * 2, 60)  # §3.5: back off on a failing connection
                continue
            except ValueError as exc:
                raise LoginError(f"{metadata.token_endpoint}: {reason(exc)}") from None
            return CachedToken.from_response(token)
