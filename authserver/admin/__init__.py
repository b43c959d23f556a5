"""The admin layer: what the admin API, the dashboard and the CLI do to users, roles,
service accounts and signing keys, with the rules of each operation and its audit event
(:mod:`.audit`), so that every front end does the same and records the same.

Front ends parse their input, build the operations with who acts (an
:class:`~.audit.Actor`) and render the result. Nothing here knows of Flask: this layer
sits between ``web``/``cli`` and ``identity``/``oauth``/``keys``/``storage``.
"""

from .audit import Actor

__all__ = ["Actor"]
