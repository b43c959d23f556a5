"""Failure throttles: limits on guessing that do not lock the owner out.

One policy for wrong passwords at the sign-in page and wrong client secrets at the
token, introspection, revocation and device endpoints (issue 9.9, 9.10). Failures are
counted three ways, over the ``limits`` counters of the ephemeral store:

* per address (password spraying, or guessing many client ids): past the limit the
  address is refused before any hash is computed;
* per account and address: the tight limit on one guesser at one account;
* per account from everywhere: a slower limit for a guesser with many addresses. Past
  it only addresses that have themselves failed on the account are refused, so the
  owner, signing in from an address with no failures, still gets through (Keycloak's
  and Authelia's brute-force designs work the same way); every fresh address gets one
  attempt, and a failure makes it refused too.

A refused attempt is not checked (no bcrypt or argon2 is spent on it) and answers 429
with ``Retry-After``. While the counters' store is down (``DependencyUnavailable``) the
throttle fails open: attempts are checked, at a hash's cost each, so that static
clients and people keep signing in through a Redis outage (issue 9.3), and for
``DEGRADED_SECONDS`` after a failure the store is not even asked, so that they sign in
at normal speed; the outage is logged once by the store.
:meth:`FailureThrottle.first` lets callers write one audit row per window and key
instead of one per attempt, so a guesser cannot grow the audit log without bound
(issue 9.11).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, TypeVar

from ..errors import DependencyUnavailable
from ..settings import RateLimitSettings

T = TypeVar("T")

#: After the counters' store failed, it is not waited on for this long: the throttle
#: fails open at once (a stalled Redis would cost each attempt its 1 s timeout).
DEGRADED_SECONDS = 10.0
#: At most one aggregated audit row per key in this window.
AUDIT_WINDOW = "1/minute"


class Limiter(Protocol):
    """Fixed-window counters (``storage.ratelimit.RateLimits``)."""

    def hit(self, limit: str, *identifiers: str) -> bool: ...
    def test(self, limit: str, *identifiers: str) -> bool: ...
    def used(self, limit: str, *identifiers: str) -> bool: ...
    def retry_after(self, limit: str, *identifiers: str) -> int: ...
    def degraded(self, seconds: float) -> bool: ...


@dataclass(frozen=True)
class FailureThrottle:
    """Failures of ``name`` (e.g. ``"login"``, ``"client-auth"``) per address, per
    account and address, and per account; limits in ``limits`` notation."""

    limiter: Limiter
    name: str
    per_address: str
    per_account_address: str
    per_account: str

    def refusal(self, account: str, address: str) -> int | None:
        """Seconds to wait before ``account`` may be tried from ``address`` again, or
        ``None``: the attempt may be checked."""
        return self._fail_open(None, self._refusal, account, address)

    def _refusal(self, account: str, address: str) -> int | None:
        for limit, keys in (
            (self.per_address, ("addr", address)),
            (self.per_account_address, ("acct-addr", account, address)),
        ):
            if not self.limiter.test(limit, self.name, *keys):
                return max(self.limiter.retry_after(limit, self.name, *keys), 1)
        if not self.limiter.test(self.per_account, self.name, "acct", account) and (
            self.limiter.used(self.per_account_address, self.name, "acct-addr", account, address)
        ):
            return max(self.limiter.retry_after(self.per_account, self.name, "acct", account), 1)
        return None

    def failed(self, account: str, address: str) -> None:
        """Count one failed attempt (not while the store is down)."""
        self._fail_open(None, self._count_failure, account, address)

    def _count_failure(self, account: str, address: str) -> None:
        self.limiter.hit(self.per_address, self.name, "addr", address)
        self.limiter.hit(self.per_account_address, self.name, "acct-addr", account, address)
        self.limiter.hit(self.per_account, self.name, "acct", account)

    def first(self, what: str, *keys: str) -> bool:
        """Whether this is the first ``what`` (e.g. ``"throttled"``) for ``keys`` in
        the audit window: the one to write an audit row for. While the store is down,
        every one is (a row too many rather than one lost)."""
        return self._fail_open(
            True, self.limiter.hit, AUDIT_WINDOW, self.name, "audit", what, *keys
        )

    def _fail_open(self, default: T, call: Callable[..., T], *args: str) -> T:
        """``call(*args)``, or ``default`` when the counters' store is down, or failed in
        the last ``DEGRADED_SECONDS`` (then it is not waited on)."""
        if self.limiter.degraded(DEGRADED_SECONDS):
            return default
        try:
            return call(*args)
        except DependencyUnavailable:
            return default


def client_auth_throttle(limiter: Limiter, limits: RateLimitSettings) -> FailureThrottle:
    """Wrong client secrets, at every endpoint that authenticates clients (issue 9.9)."""
    return FailureThrottle(
        limiter,
        "client-auth",
        per_address=limits.client_auth_per_address,
        per_account_address=limits.client_auth_per_client_address,
        per_account=limits.client_auth_per_client,
    )


def login_throttle(limiter: Limiter, limits: RateLimitSettings) -> FailureThrottle:
    """Wrong passwords, at the sign-in page and the admin API's own-password change
    (issue 9.10: the owner at a clean address is never locked out)."""
    return FailureThrottle(
        limiter,
        "login",
        per_address=limits.login_per_address,
        per_account_address=limits.login_per_account_address,
        per_account=limits.login_per_account,
    )
