"""Errors every layer may raise: a dependency that is down (DESIGN.md, "Operations")."""

from __future__ import annotations


class DependencyUnavailable(Exception):
    """Redis or the database did not answer in time; the request changed nothing.

    The web layer answers 503 with ``temporarily_unavailable`` (RFC 6749 §4.1.2.1 names
    the error; §5.2's JSON shape) and ``Retry-After``, never a 500 or a hang.
    """

    def __init__(self, dependency: str, retry_after: int = 2) -> None:
        super().__init__(f"{dependency} is unavailable")
        self.dependency = dependency
        self.retry_after = retry_after
