"""The operator's name and logo (``branding:``) on every page of ours.

The logo is served from our own origin, one file read at start-up, so the pages' CSP
keeps ``img-src 'self' data:``: no page may load an image from another origin. Its URL
carries a digest of the file, so a browser may keep it for a long time and still sees a
new logo after a restart with another file.
"""

from __future__ import annotations

import hashlib
from functools import lru_cache
from typing import Any

from flask import Blueprint, request, url_for
from werkzeug.wrappers import Response

from ..paths import BRANDING_LOGO_PATH
from .pages import message
from .services import services

bp = Blueprint("branding", __name__)

#: A day; the URL changes with the file (``?v=``), so a longer time would be safe too.
LOGO_MAX_AGE = 86400


@lru_cache(maxsize=4)
def _etag(data: bytes) -> str:
    """The logo's digest: worked out once (the file is read once, at start-up), not on
    every page that shows it."""
    return hashlib.sha256(data).hexdigest()[:16]


@bp.app_context_processor
def _branding() -> dict[str, Any]:
    """``branding.name`` and ``branding.logo_url`` (``None`` when not configured)."""
    logo = services().logo
    return {
        "branding": {
            "name": services().settings.branding.name,
            "logo_url": url_for("branding.logo", v=_etag(logo[0])) if logo else None,
        }
    }


@bp.get(BRANDING_LOGO_PATH)
def logo() -> Response:
    found = services().logo
    if found is None:
        return message("Not found", "No logo is configured on this server.", 404, error=True)
    data, content_type = found
    response = Response(data, mimetype=content_type)
    response.set_etag(_etag(data))
    response.headers["Cache-Control"] = f"public, max-age={LOGO_MAX_AGE}"
    # An SVG opened on its own is a document: it may run nothing and load nothing.
    response.headers["Content-Security-Policy"] = (
        "default-src 'none'; style-src 'unsafe-inline'; sandbox"
    )
    response.headers["Cross-Origin-Resource-Policy"] = "same-origin"
    return response.make_conditional(request)
