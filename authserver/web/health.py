"""``GET /healthz`` and ``GET /readyz`` (DESIGN.md, "Operations").

``/healthz`` is liveness: 200 while the process serves, whatever its dependencies do
(a restart would not bring the database back). ``/readyz`` is readiness: 200 when the
database and Redis (when configured) answer and a signing key is loaded, else 503 with
a JSON body naming what is down, for a load balancer or Kubernetes to send traffic
elsewhere meanwhile.

Each check runs in a thread of its own with a deadline of :data:`CHECK_TIMEOUT`
seconds, all at once, so a stalled dependency (one that accepts connections and never
answers, where only the deadline helps) costs a probe that long and no more. A check
still stuck from an earlier probe is waited on again rather than started anew: at most
one thread per check and worker is ever blocked on a dependency.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Mapping

from flask import Blueprint, Response

from ..paths import HEALTH_PATH, READY_PATH
from .services import services

log = logging.getLogger(__name__)

#: Seconds a check may take before its dependency counts as down.
CHECK_TIMEOUT = 1.0
OK = "ok"

bp = Blueprint("health", __name__)


class _Run:
    """One run of a check: its outcome once ``done`` is set."""

    def __init__(self) -> None:
        self.done = threading.Event()
        self.result = OK


class Check:
    """A named check (a callable that raises when its dependency is down)."""

    def __init__(self, name: str, probe: Callable[[], None]) -> None:
        self.name = name
        self._probe = probe
        self._lock = threading.Lock()
        self._run: _Run | None = None
        self._last = OK

    def start(self) -> _Run:
        """Start a run, or join the one still under way."""
        with self._lock:
            if self._run is None or self._run.done.is_set():
                self._run = _Run()
                threading.Thread(
                    target=self._execute, args=(self._run,), name=f"readyz-{self.name}", daemon=True
                ).start()
            return self._run

    def _execute(self, run: _Run) -> None:
        try:
            self._probe()
        except Exception as exc:
            # The body names the kind of failure only: /readyz is for anyone to read,
            # and a driver's message can hold host names and ports. The log has it all.
            run.result = f"down: {type(exc).__name__}"
            detail: object = exc
        else:
            run.result = OK
            detail = None
        run.done.set()
        self._note(run.result, detail)

    def _note(self, result: str, detail: object) -> None:
        """Log a change of state, once (a probe every few seconds must not flood the log)."""
        with self._lock:
            changed, self._last = result != self._last, result
        if changed and result == OK:
            log.warning("readiness: %s is ok again", self.name)
        elif changed:
            log.warning("readiness: %s is %s (%s)", self.name, result, detail)

    def outcome(self, run: _Run) -> str:
        if run.done.is_set():
            return run.result
        result = f"down: no answer within {CHECK_TIMEOUT:g} s"
        self._note(result, "still waiting")
        return result


class Readiness:
    """The checks of ``/readyz``, run together."""

    def __init__(self, probes: Mapping[str, Callable[[], None]]) -> None:
        self.checks = [Check(name, probe) for name, probe in probes.items()]

    def __call__(self) -> dict[str, str]:
        runs = [(check, check.start()) for check in self.checks]
        deadline = time.monotonic() + CHECK_TIMEOUT
        for _, run in runs:
            run.done.wait(max(0.0, deadline - time.monotonic()))
        return {check.name: check.outcome(run) for check, run in runs}


def _json(body: object, status: int) -> Response:
    response = Response(json.dumps(body), status, mimetype="application/json")
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.get(HEALTH_PATH)
def healthz() -> Response:
    return _json({"status": "ok"}, 200)


@bp.get(READY_PATH)
def readyz() -> Response:
    readiness = services().readiness
    checks = readiness()
    if all(result == OK for result in checks.values()):
        return _json({"status": "ok", "checks": checks}, 200)
    return _json({"status": "unavailable", "checks": checks}, 503)
