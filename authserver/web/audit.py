"""The web side of the audit trail (:mod:`authserver.admin.audit`): who acts in this
request and from where, read from Flask's request and ``g``, or for a request the
form endpoints answer without Flask (:mod:`authserver.web.form_endpoints`), from its
:class:`PlainRequest`."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass

from flask import g, has_request_context

from ..admin.audit import Actor
from . import access_log
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


@dataclass
class PlainRequest:
    """A request answered without Flask's request context: its sender's address, and
    the client id once the trail learns it (for the access log)."""

    address: str
    client_id: str | None = None


_plain: ContextVar[PlainRequest | None] = ContextVar("authserver_plain_request", default=None)


@contextmanager
def plain_request(address: str) -> Iterator[PlainRequest]:
    """The scope of one request served without Flask's request context."""
    current = PlainRequest(address)
    token = _plain.set(current)
    try:
        yield current
    finally:
        _plain.reset(token)


class FlaskRequestScope:
    """The audit trail's :class:`~authserver.admin.audit.RequestScope`: Flask's request,
    or the :func:`plain_request` being served."""

    def context(self) -> Actor | None:
        if has_request_context():
            return request_actor()
        plain = _plain.get()
        return Actor(address=plain.address) if plain is not None else None

    def note_client_id(self, client_id: str) -> None:
        if has_request_context():
            setattr(g, access_log.CLIENT_ID, client_id)
            return
        plain = _plain.get()
        if plain is not None:
            plain.client_id = client_id
