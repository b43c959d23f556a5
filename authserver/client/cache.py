"""The token cache: a person's tokens per issuer and client, on their own machine.

JSON readable by the owner only (``$AUTHSERVER_CACHE_DIR/tokens.json``, else
``~/.cache/authserver/tokens.json``), replaced atomically under a lock.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .env import CACHE_DIR
from .files import write_private_file
from .http import LoginError, reason, str_or_none

if sys.platform != "win32":
    import fcntl

#: A cached access token with less than this left is refreshed first.
REFRESH_MARGIN = 60


@dataclass(frozen=True)
class CachedToken:
    """The tokens of one sign-in; ``expires_at`` is the access token's, in Unix seconds."""

    access_token: str
    expires_at: int
    refresh_token: str | None
    id_token: str | None
    scope: str

    def seconds_left(self, now: float | None = None) -> float:
        return self.expires_at - (time.time() if now is None else now)

    def to_json(self) -> dict[str, object]:
        return {
            "access_token": self.access_token,
            "expires_at": self.expires_at,
            "refresh_token": self.refresh_token,
            "id_token": self.id_token,
            "scope": self.scope,
        }

    @classmethod
    def from_json(cls, data: object) -> CachedToken | None:
        if not isinstance(data, dict):
            return None
        access_token, expires_at = data.get("access_token"), data.get("expires_at")
        if not isinstance(access_token, str) or not isinstance(expires_at, int | float):
            return None
        return cls(
            access_token=access_token,
            expires_at=int(expires_at),
            refresh_token=str_or_none(data.get("refresh_token")),
            id_token=str_or_none(data.get("id_token")),
            scope=str(data.get("scope") or ""),
        )

    @classmethod
    def from_response(
        cls, token: Mapping[str, Any], previous: CachedToken | None = None
    ) -> CachedToken:
        """From a token response; what a refresh response leaves out is kept."""
        access_token = token.get("access_token")
        if not isinstance(access_token, str) or not access_token:
            raise LoginError("the token response has no access_token")
        try:
            expires_in = int(token.get("expires_in", 0))
        except (TypeError, ValueError):
            expires_in = 0  # unknown: treat as expired, so the next use refreshes
        return cls(
            access_token=access_token,
            expires_at=int(time.time()) + expires_in,
            refresh_token=str_or_none(token.get("refresh_token"))
            or (previous.refresh_token if previous else None),
            id_token=str_or_none(token.get("id_token"))
            or (previous.id_token if previous else None),
            scope=str_or_none(token.get("scope")) or (previous.scope if previous else ""),
        )


def default_cache_path() -> Path:
    """``$AUTHSERVER_CACHE_DIR/tokens.json``, else ``~/.cache/authserver/tokens.json``."""
    directory = os.environ.get(CACHE_DIR)
    if directory:
        return Path(directory) / "tokens.json"
    return Path.home() / ".cache" / "authserver" / "tokens.json"


class TokenCache:
    """Tokens per (issuer, client_id), as JSON readable by the owner only.

    Writes go to a new 0600 file that replaces the old one atomically, under an
    exclusive lock, so concurrent ``authserver token`` runs never lose a rotated
    refresh token.
    """

    def __init__(self, path: Path | None = None) -> None:
        self.path = path or default_cache_path()
        self._lock_depth = 0

    def load(self, issuer: str, client_id: str) -> CachedToken | None:
        entries = self._read().get(_issuer_key(issuer))
        return CachedToken.from_json(entries.get(client_id)) if isinstance(entries, dict) else None

    def store(self, issuer: str, client_id: str, token: CachedToken) -> None:
        with self.locked():
            data = self._read()
            entries = data.get(_issuer_key(issuer))
            if not isinstance(entries, dict):
                entries = data[_issuer_key(issuer)] = {}
            entries[client_id] = token.to_json()
            self._write(data)

    def remove(self, issuer: str, client_id: str) -> CachedToken | None:
        """Forget one sign-in; the tokens it held, if any."""
        with self.locked():
            data = self._read()
            entries = data.get(_issuer_key(issuer))
            if not isinstance(entries, dict) or client_id not in entries:
                return None
            token = CachedToken.from_json(entries.pop(client_id))
            if not entries:
                del data[_issuer_key(issuer)]
            self._write(data)
            return token

    @contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the cache's lock (reentrant within this object)."""
        if self._lock_depth or sys.platform == "win32":
            self._lock_depth += 1
            try:
                yield
            finally:
                self._lock_depth -= 1
            return
        self._make_directory()
        lock_path = self.path.with_name(self.path.name + ".lock")
        try:
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise LoginError(f"cannot lock the token cache {lock_path}: {reason(exc)}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            self._lock_depth += 1
            try:
                yield
            finally:
                self._lock_depth -= 1
        finally:
            os.close(fd)  # releases the lock

    def _read(self) -> dict[str, Any]:
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return {}
        except OSError as exc:
            raise LoginError(f"cannot read the token cache {self.path}: {reason(exc)}") from None
        try:
            data = json.loads(text)
        except ValueError:
            data = None
        if not isinstance(data, dict):
            raise LoginError(f"the token cache {self.path} is damaged: delete it and sign in again")
        return data

    def _write(self, data: Mapping[str, Any]) -> None:
        self._make_directory()
        text = json.dumps(data, indent=2, sort_keys=True) + "\n"
        write_private_file(self.path, text, f"the token cache {self.path}")

    def _make_directory(self) -> None:
        try:
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as exc:
            raise LoginError(
                f"cannot create the token cache directory {self.path.parent}: {reason(exc)}"
            ) from None


def cache_key(client_id: str, audience: str | None = None) -> str:
    """Where a sign-in's tokens are cached: per client and, if one was asked for, per
    audience (RFC 8707 resource): a token for one API is no token for another."""
    return f"{client_id} {audience}" if audience else client_id


def _issuer_key(issuer: str) -> str:
    return issuer.rstrip("/")
