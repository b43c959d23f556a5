"""The client's private files (the token cache, the client config): written whole."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from .http import LoginError, reason


def write_private_file(path: Path, text: str, name: str) -> None:
    """``text`` as the whole of ``path``, readable by its owner only: written beside it
    and renamed over it, so that a reader finds the old text or the new, never part of
    one. ``name`` is the file in the error (``the token cache …``)."""
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    try:
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as stream:
            stream.write(text)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except OSError as exc:
        temporary.unlink(missing_ok=True)
        raise LoginError(f"cannot write {name}: {reason(exc)}") from None
