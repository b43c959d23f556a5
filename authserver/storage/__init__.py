"""Durable state (SQLAlchemy models, repositories) and the ephemeral store.

This package makes no protocol decisions: it stores and fetches what the
``oauth``, ``keys`` and ``identity`` packages hand it.
"""
