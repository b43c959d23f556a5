"""The web side of the audit trail (:mod:`authserver.admin.audit`): who acts in this
request and from where, read from Flask's request and ``g``."""

from __future__ import annotations

from flask import g, has_request_context

from ..admin.audit import Actor
from .signin import peer_address


def set_actor(actor: str, person_id: str | None = None) -> None:
    """Name who is acting in this request (the admin API and dashboard call this once
    they know the caller); ``person_id`` when a person acts."""
    g.audit_actor = actor
    g.audit_person_id = person_id


def request_actor() -> Actor:
    """Who acts in this request, and from where: what an admin operation records."""
    return Actor(
        name=g.get("audit_actor"), address=peer_address(), person_id=g.get("audit_person_id")
    )


class FlaskRequestScope:
    """The audit trail's :class:`~authserver.admin.audit.RequestScope`: Flask's request."""

    def context(self) -> Actor | None:
        if not has_request_context():
            return None
        return request_actor()

    def note_client_id(self, client_id: str) -> None:
        g.access_client_id = client_id  # for the access log (web/access_log.py)
