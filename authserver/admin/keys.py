"""Signing keys, as admins change them: every key line rotates together (a compromised
secret key compromises them all), recorded once, from any front end."""

from __future__ import annotations

from collections.abc import Sequence

from ..keys import KeyManager, KeyStatus
from ..storage.keys import KeyRecord
from .audit import Actor, EventSink, record


class KeyAdmin:
    """The admin operations on the signing keys, done by ``by``. ``lines`` are every
    key line, the access-token keys first."""

    def __init__(self, lines: Sequence[KeyManager], events: EventSink, by: Actor) -> None:
        self.lines = lines
        self._events = events
        self.by = by

    def statuses(self) -> list[KeyStatus]:
        return [status for line in self.lines for status in line.statuses()]

    def rotate(self, immediate: bool) -> list[KeyRecord]:
        """A new key in every line: published now, signing after ``publish_ahead`` or,
        ``immediate``, at once (see :meth:`KeyManager.rotate`)."""
        records = [line.rotate(immediate=immediate) for line in self.lines]
        record(
            self._events,
            self.by,
            "keys_rotated",
            target=",".join(new.kid for new in records),
            immediate=immediate,
        )
        return records

    @property
    def propagation_seconds(self) -> float:
        """How long until every worker of every line has re-read its keys."""
        return max(line.propagation_seconds for line in self.lines)

    def withdraw_before(self, records: Sequence[KeyRecord]) -> None:
        """Withdraw the keys older than the new ones of :meth:`rotate` (its ``records``)."""
        for line, new in zip(self.lines, records, strict=True):
            line.withdraw_before(new)
