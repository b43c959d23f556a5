"""The access log: one record a request (DESIGN.md, "Operations").

Method, path, status, duration, the client's address (the forwarded one behind
``trusted_forwarders``) and the client id where one authenticated. Never the query
string, a header or a body: that is where codes, tokens, secrets and passwords travel
(a query holds ``code``, ``state``, ``user_code``; a form ``client_secret``,
``password``, ``refresh_token``), so none of them can reach the log.
"""

from __future__ import annotations

import logging
import time

from flask import Flask, Response, g, request

from ..logs import ACCESS_LOGGER
from .signin import peer_address

log = logging.getLogger(ACCESS_LOGGER)

#: Where a request's client id is noted once it is known (the audit trail notes it).
CLIENT_ID = "access_client_id"
#: Where a request keeps when it started (``perf_counter``).
STARTED = "access_started"


def _started() -> None:
    setattr(g, STARTED, time.perf_counter())


def _logged(response: Response) -> Response:
    started = g.get(STARTED)
    duration = (time.perf_counter() - started) * 1000 if started is not None else None
    record(
        request.method, request.path, response.status_code, duration, peer_address(),
        g.get(CLIENT_ID),
    )  # fmt: skip
    return response


def record(
    method: str,
    path: str,
    status: int,
    duration_ms: float | None,
    address: str,
    client_id: str | None,
) -> None:
    """Write one request's record."""
    log.info(
        "%s %s %s",
        method,
        path,
        status,
        extra={
            "method": method,
            "path": path,
            "status": status,
            "duration_ms": round(duration_ms, 2) if duration_ms is not None else None,
            "address": address,
            "client_id": client_id,
        },
    )


def init_app(app: Flask) -> None:
    app.before_request(_started)
    app.after_request(_logged)
