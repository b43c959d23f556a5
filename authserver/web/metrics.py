"""``GET /metrics``: Prometheus text format (DESIGN.md, "Operations").

What is counted comes from two places: every request (its Flask endpoint, method,
status and duration: a counter and a histogram, the whole per-request cost), and the
``events(name, **details)`` callable the protocol and web layers already report through
(:class:`~authserver.admin.audit.AuditTrail` hands each event to :meth:`Metrics.count_event`
first). Labels are bounded: the endpoint is the Flask endpoint name, never the path; a
client id is a label only once the client has authenticated; usernames and addresses
never are.

Under gunicorn every worker counts in memory-mapped files of its own in the directory
``serve`` names in ``PROMETHEUS_MULTIPROC_DIR`` before the workers fork
(prometheus_client's multiprocess mode); a scrape, answered by any worker, adds up every
worker's files, those of workers that have exited included, so counters never go back.
In one process (``serve --dev``, tests, the CLI) each app has a registry of its own.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from flask import Blueprint, Flask, Response, request
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram
from prometheus_client import values as prometheus_values
from prometheus_client.exposition import generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

from ..identity.proxy import trusted_address
from ..paths import METRICS_PATH
from .adapter import app_settings
from .services import services
from .signin import peer_address

#: Where prometheus_client's multiprocess mode keeps the workers' files.
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
#: Seconds; our requests take milliseconds, a stalled dependency up to a few seconds.
LATENCY_BUCKETS = (0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
#: Any other method (clients may send anything) is counted as ``other``.
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
#: The endpoint label of a request that matched no route (404, or 405 at a path).
UNMATCHED = "unmatched"
#: Where a request keeps when it started (perf_counter), for the duration metric.
STARTED = "authserver.metrics.started"

bp = Blueprint("metrics", __name__)


class Metrics:
    """The counters and histograms of one app.

    With ``multiprocess_dir`` the values live in that directory's files (the caller
    set :data:`MULTIPROC_ENV` to it before prometheus_client was imported: the library
    picks its storage at import); without it, in a registry of this object's own.
    """

    def __init__(self, multiprocess_dir: str | None = None) -> None:
        self._multiprocess_dir = multiprocess_dir
        registry: CollectorRegistry | None = None
        if multiprocess_dir is None:
            registry = CollectorRegistry()
        elif not getattr(prometheus_values.ValueClass, "_multiprocess", False):
            raise RuntimeError(
                f"{MULTIPROC_ENV} must be set before prometheus_client is first imported"
            )
        self._registry = registry
        self.tokens_issued = Counter(
            "authserver_tokens_issued",
            "Access tokens issued, by grant type and client.",
            ["grant_type", "client_id"],
            registry=registry,
        )
        self.http_requests = Counter(
            "authserver_http_requests",
            "HTTP requests answered, by Flask endpoint, method and status.",
            ["endpoint", "method", "status"],
            registry=registry,
        )
        self.http_duration = Histogram(
            "authserver_http_request_duration_seconds",
            "Time from the start of a request to its response, by Flask endpoint.",
            ["endpoint"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.login_failures = Counter(
            "authserver_login_failures",
            "Failed sign-ins (wrong password, or an upstream IdP sign-in that failed).",
            ["method"],
            registry=registry,
        )
        self.client_auth_failures = Counter(
            "authserver_client_auth_failures",
            "Failed client authentications (unknown client or wrong secret).",
            registry=registry,
        )
        self.refresh_reuse = Counter(
            "authserver_refresh_reuse_detected",
            "Refresh tokens presented again after use: their family was revoked.",
            ["client_id"],
            registry=registry,
        )
        self.unavailable = Counter(
            "authserver_dependency_unavailable",
            "Requests answered 503 because Redis or the database was down.",
            ["dependency"],
            registry=registry,
        )
        # Series that exist from the start, at 0, so that rate() and alerts see them
        # before the first failure.
        for method in ("password", "upstream"):
            self.login_failures.labels(method)
        for dependency in ("database", "redis"):
            self.unavailable.labels(dependency)

    # -- counting ---------------------------------------------------------------------

    def count_event(self, event: str, details: Mapping[str, Any]) -> None:
        """Count one event of the ``events`` callable (``details`` is only read)."""
        if event == "token_issued":
            self.tokens_issued.labels(str(details.get("grant_type")), _client_id(details)).inc()
        elif event == "login_failed":
            self.login_failures.labels(str(details.get("method") or "password")).inc()
        elif event == "client_auth_rejected":
            self.client_auth_failures.inc()
        elif event == "refresh_reuse_detected":
            self.refresh_reuse.labels(_client_id(details)).inc()

    def count_unavailable(self, dependency: str) -> None:
        self.unavailable.labels(dependency).inc()

    def count_request(self, endpoint: str, method: str, status: int, seconds: float) -> None:
        self.http_requests.labels(endpoint, method, str(status)).inc()
        self.http_duration.labels(endpoint).observe(seconds)

    # -- exposition -------------------------------------------------------------------

    def render(self) -> bytes:
        """Every metric in the text format: every worker's sum in multiprocess mode."""
        if self._registry is not None:
            return generate_latest(self._registry)
        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=self._multiprocess_dir)  # type: ignore[no-untyped-call]
        return generate_latest(registry)


def _client_id(details: Mapping[str, Any]) -> str:
    client = details.get("client")
    client_id = getattr(client, "client_id", None) or details.get("client_id")
    if client_id is None:
        claims = details.get("claims") or {}
        client_id = claims.get("client_id")
    return str(client_id or "")


def init_app(app: Flask, metrics: Metrics) -> None:
    """Count every request, and serve ``GET /metrics``.

    Call it before other ``before_request`` hooks are registered, so that a request
    one of them refuses is timed too.
    """

    def started() -> None:
        request.environ[STARTED] = time.perf_counter()

    def finished(response: Response) -> Response:
        began = request.environ.get(STARTED)
        elapsed = time.perf_counter() - began if began is not None else 0.0
        method = request.method if request.method in METHODS else "other"
        metrics.count_request(request.endpoint or UNMATCHED, method, response.status_code, elapsed)
        return response

    app.before_request(started)
    app.after_request(finished)
    app.register_blueprint(bp)


@bp.get(METRICS_PATH)
def scrape() -> Response:
    if not _may_read():
        return Response("Metrics are not available to this address.\n", 403, mimetype="text/plain")
    metrics = services().metrics
    if metrics is None:  # the blueprint is registered only with metrics on
        raise RuntimeError("metrics are off")
    response = Response(metrics.render(), content_type=CONTENT_TYPE_LATEST)
    response.headers["Cache-Control"] = "no-store"
    return response


def _may_read() -> bool:
    settings = app_settings()
    if settings.metrics.access == "open":
        return True
    forwarded = "X-Forwarded-For" in request.headers or "Forwarded" in request.headers
    if forwarded and not trusted_address(request.remote_addr, settings.trusted_forwarders):
        # Through a proxy we were not told about: the peer is the proxy, not the client.
        return False
    return trusted_address(peer_address(), settings.metrics.trusted)
