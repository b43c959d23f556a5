"""The device verification page (RFC 8628 §3.3): sign in, enter the code, approve."""

from __future__ import annotations

from typing import Literal

from flask import Blueprint, redirect, request, url_for
from werkzeug.wrappers import Response

from ..oauth.metadata import admin_api_audience
from ..oauth.rfc8628.device_code import PendingDevice
from ..paths import DEVICE_VERIFICATION_PATH
from .adapter import oauth_server
from .forms import DeviceCodeForm, DeviceDecisionForm
from .pages import message, page
from .services import services
from .signin import client_address, current_signin

bp = Blueprint("device", __name__)

DEVICE_PATH = DEVICE_VERIFICATION_PATH
#: Wrong codes allowed per address (§5.1: "brute force attacks"; 20^8 codes in all).
USER_CODE_PER_ADDRESS = "10/minute;60/hour"
THROTTLED = "Too many wrong codes. Wait a few minutes and try again."


def _require_signin() -> Response | None:
    if current_signin() is None:
        return redirect(url_for("login.login", next=request.full_path.rstrip("?")))
    return None


def _pending(code: str) -> PendingDevice | Literal["throttled"] | None:
    """The pending request for ``code``; a wrong code counts against the address."""
    limits = services().ratelimits
    address = client_address()
    if not limits.test(USER_CODE_PER_ADDRESS, "user-code", address):
        return "throttled"
    pending = oauth_server().device_approval.pending(code)
    if pending is None:
        limits.hit(USER_CODE_PER_ADDRESS, "user-code", address)
    return pending


def _lookup(code: str) -> Response:
    """The confirmation page for ``code``, or the code page again with why not."""
    pending = _pending(code)
    if pending == "throttled":
        error, status = THROTTLED, 429
    elif pending is None:
        error, status = "That code is not valid or has expired. Check your device.", 400
    else:
        return _confirm(pending)
    return page("device.html", status, form=DeviceCodeForm(formdata=None), error=error)


def _confirm(pending: PendingDevice) -> Response:
    signin = current_signin()
    assert signin is not None
    return page(
        "device_confirm.html",
        form=DeviceDecisionForm(formdata=None),
        user_code=pending.user_code,
        client_id=pending.client.client_id,
        scopes=pending.scopes,
        username=signin.person.username,
        audience=pending.audience,
        admin_api=pending.audience == admin_api_audience(oauth_server().issuer),
    )


@bp.get(DEVICE_PATH)
def start() -> Response:
    if (login := _require_signin()) is not None:
        return login
    code = request.args.get("user_code", "")
    if code:  # verification_uri_complete (§3.3.1)
        return _lookup(code)
    return page("device.html", form=DeviceCodeForm(formdata=None))


@bp.post(DEVICE_PATH)
def verify() -> Response:
    if (login := _require_signin()) is not None:
        return login
    form = DeviceCodeForm()
    if not form.validate_on_submit():
        return page("device.html", 400, form=form, error="Enter the code shown on your device.")
    return _lookup(form.user_code.data)


@bp.post(DEVICE_PATH + "/decide")
def decide() -> Response:
    if (login := _require_signin()) is not None:
        return login
    signin = current_signin()
    assert signin is not None
    form = DeviceDecisionForm()
    if not form.validate_on_submit():
        return message(
            "Connect a device",
            "The form expired. Please try again.",
            400,
            error=True,
            link=url_for("device.start"),
        )
    pending = _pending(form.user_code.data)
    if pending == "throttled":
        return message("Connect a device", THROTTLED, 429, error=True)
    approve = bool(form.approve.data)
    if pending is None or not oauth_server().device_approval.decide(
        pending, signin.person.id, approve=approve, auth_time=signin.auth_time
    ):
        return message(
            "Connect a device",
            "That code is not valid or has expired.",
            400,
            error=True,
            link=url_for("device.start"),
        )
    if approve:
        return message(
            "Device connected", "Done. You can close this window and return to your device."
        )
    return message("Request denied", "The device was not given access.")
