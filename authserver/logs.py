"""One logging setup for authserver, gunicorn and Alembic (DESIGN.md, "Operations").

``log_format`` is ``text`` (one line a record) or ``json`` (one JSON object a line,
by ``python-json-logger``); ``log_level`` is the level of authserver's own loggers and
gunicorn's. The same configuration is handed to gunicorn as its ``logconfig_dict``, so
its master and workers write in the same format to the same stream (stderr). The
access log is the ``authserver.access`` logger (see :mod:`authserver.web.access_log`):
its records carry the request's fields as attributes, which the JSON format writes as
keys and the text format writes after the message.
"""

from __future__ import annotations

import logging
import logging.config
import time
from typing import Any, Literal

LogFormat = Literal["text", "json"]
LogLevel = Literal["debug", "info", "warning", "error"]

ACCESS_LOGGER = "authserver.access"
#: The attributes of an access-log record (the JSON keys; the text line's fields).
ACCESS_FIELDS = ("method", "path", "status", "duration_ms", "address", "client_id")
_TEXT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class TextFormatter(logging.Formatter):
    """The text line, with an access record's fields after its message.

    The access log writes a record per request, so the time stamp's text is made once
    a second, not per record (``strftime`` was a tenth of the access log's cost)."""

    _second: tuple[int, str] = (-1, "")

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        if datefmt is not None:
            return super().formatTime(record, datefmt)
        second = int(record.created)
        cached = self._second
        if cached[0] != second:
            cached = (second, time.strftime("%Y-%m-%d %H:%M:%S", self.converter(second)))
            self._second = cached
        return f"{cached[1]},{int(record.msecs):03d}"

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        if not hasattr(record, "path"):
            return line
        fields = [
            f"{name}={value}"
            for name in ACCESS_FIELDS
            if (value := getattr(record, name, None)) is not None
        ]
        return f"{line} {' '.join(fields)}"


def logging_config(log_format: LogFormat = "text", log_level: LogLevel = "info") -> dict[str, Any]:
    """The ``logging.config.dictConfig`` document for both formats."""
    level = log_level.upper()
    formatter: dict[str, Any]
    if log_format == "json":
        formatter = {
            "()": "pythonjsonlogger.json.JsonFormatter",
            "fmt": "%(asctime)s %(levelname)s %(name)s %(message)s",
            "rename_fields": {"asctime": "time", "levelname": "level", "name": "logger"},
        }
    else:
        formatter = {"()": TextFormatter, "fmt": _TEXT}
    handler = {"class": "logging.StreamHandler", "formatter": "main", "stream": "ext://sys.stderr"}
    ours = {"level": level, "handlers": ["main"], "propagate": False}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"main": formatter},
        "handlers": {"main": handler},
        # Libraries' chatter only from warnings on; ours and gunicorn's at log_level.
        "root": {"level": "WARNING", "handlers": ["main"]},
        "loggers": {
            "authserver": ours,
            "gunicorn.error": dict(ours),
            # Our access log replaces gunicorn's (it knows the client id, never the query).
            "gunicorn.access": {"level": "CRITICAL", "handlers": [], "propagate": False},
            "alembic": {"level": "WARNING", "handlers": ["main"], "propagate": False},
        },
    }


def configure_logging(log_format: LogFormat = "text", log_level: LogLevel = "info") -> None:
    logging.config.dictConfig(logging_config(log_format, log_level))
