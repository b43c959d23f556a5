"""The device verification page (RFC 8628 §3.3): sign in, enter the code, approve."""

from __future__ import annotations

from flask import Blueprint, current_app, redirect, request, url_for
from werkzeug.wrappers import Response

from ..oauth.server import AuthServer
from .forms import DeviceCodeForm, DeviceDecisionForm
from .pages import message, page
from .signin import client_address, current_signin

bp = Blueprint("device", __name__)

DEVICE_PATH = "/device"
#: Wrong codes allowed per address (§5.1: "brute force attacks"; 20^8 codes in all).
USER_CODE_PER_ADDRESS = "10/minute;60/hour"


def _server() -> AuthServer:
    server: AuthServer = current_app.extensions["authserver.oauth"]
    return server


def _require_signin() -> Response | None:
    if current_signin() is None:
        return redirect(url_for("login.login", next=request.full_path.rstrip("?")))
    return None


def _lookup(code: str) -> tuple[Response | None, object]:
    """The pending request for ``code``, or the page to show instead."""
    limits = current_app.extensions["authserver.ratelimits"]
    address = client_address()
    if not limits.test(USER_CODE_PER_ADDRESS, "user-code", address):
        form = DeviceCodeForm(formdata=None)
        return page(
            "device.html",
            429,
            form=form,
            error="Too many wrong codes. Wait a few minutes and try again.",
        ), None
    pending = _server().pending_device(code)
    if pending is None:
        limits.hit(USER_CODE_PER_ADDRESS, "user-code", address)
        form = DeviceCodeForm(formdata=None)
        return page(
            "device.html",
            400,
            form=form,
            error="That code is not valid or has expired. Check your device.",
        ), None
    return None, pending


def _confirm(pending: object) -> Response:
    signin = current_signin()
    assert signin is not None
    return page(
        "device_confirm.html",
        form=DeviceDecisionForm(formdata=None),
        user_code=pending.user_code,  # type: ignore[attr-defined]
        client_id=pending.client.client_id,  # type: ignore[attr-defined]
        scopes=pending.scopes,  # type: ignore[attr-defined]
        username=signin.person.username,
    )


@bp.get(DEVICE_PATH)
def start() -> Response:
    if (login := _require_signin()) is not None:
        return login
    code = request.args.get("user_code", "")
    if code:  # verification_uri_complete (§3.3.1)
        shown, pending = _lookup(code)
        return shown if shown is not None else _confirm(pending)
    return page("device.html", form=DeviceCodeForm(formdata=None))


@bp.post(DEVICE_PATH)
def verify() -> Response:
    if (login := _require_signin()) is not None:
        return login
    form = DeviceCodeForm()
    if not form.validate_on_submit():
        return page("device.html", 400, form=form, error="Enter the code shown on your device.")
    shown, pending = _lookup(form.user_code.data)
    return shown if shown is not None else _confirm(pending)


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
    server = _server()
    limits = current_app.extensions["authserver.ratelimits"]
    address = client_address()
    if not limits.test(USER_CODE_PER_ADDRESS, "user-code", address):
        return message(
            "Connect a device",
            "Too many wrong codes. Wait a few minutes and try again.",
            429,
            error=True,
        )
    pending = server.pending_device(form.user_code.data)
    if pending is None:
        limits.hit(USER_CODE_PER_ADDRESS, "user-code", address)
    approve = bool(form.approve.data)
    if pending is None or not server.decide_device(
        pending, signin.person, approve=approve, auth_time=signin.auth_time
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
