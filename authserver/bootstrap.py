"""The files a first start writes: the server secret, the embedded default's demo
client secret, and the first admin's one-time password (each 0600, its directory
made if absent).

Settings only name these files (``secret_key_file``, the instance directory); this
module is what creates them, so that loading settings writes nothing.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from .settings import Settings, SettingsError

#: The demo client's secret, written into the instance directory by the embedded default.
DEMO_CLIENT_SECRET_FILE = "demo_client_secret"  # noqa: S105 - a file name
#: Beside the secret key: the first admin's one-time password, when no terminal shows it.
INITIAL_PASSWORD_FILE = "initial_admin_password"  # noqa: S105 - a file name


def write_private_file(path: Path, text: str, *, exclusive: bool = False) -> None:
    """Write ``text`` to ``path``, readable by this user only; ``exclusive``: fail with
    :class:`FileExistsError` rather than replace a file that is there."""
    path.parent.mkdir(parents=True, exist_ok=True)
    flags = os.O_WRONLY | os.O_CREAT | (os.O_EXCL if exclusive else os.O_TRUNC)
    fd = os.open(path, flags, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)


def load_secret_key(settings: Settings) -> bytes:
    """The server secret: inline, or from ``secret_key_file`` (created if absent)."""
    if settings.secret_key:
        if len(settings.secret_key) < 32:
            raise SettingsError(["secret_key: must be at least 32 characters"])
        return settings.secret_key.encode()
    path = Path(settings.secret_key_file)
    if not path.exists():
        write_private_file(path, secrets.token_urlsafe(48), exclusive=True)
    key = path.read_text().strip()
    if len(key) < 32:
        raise SettingsError([f"secret_key_file: {path} holds fewer than 32 characters"])
    return key.encode()


def prepare_embedded_default(instance: Path) -> Path:
    """First start of the embedded default: generate the demo client's secret.

    The secret is written (0600) to ``demo_client_secret`` in the instance directory
    (made 0700 if absent) so that a newcomer can use it from the README, and its
    bcrypt hash beside it, which is what the default config reads. Returns the path
    of the secret.
    """
    import bcrypt

    instance.mkdir(mode=0o700, parents=True, exist_ok=True)
    secret_path = instance / DEMO_CLIENT_SECRET_FILE
    hash_path = instance / f"{DEMO_CLIENT_SECRET_FILE}.hash"
    if not secret_path.exists() or not hash_path.exists():
        secret = secrets.token_urlsafe(32)
        digest = bcrypt.hashpw(secret.encode(), bcrypt.gensalt(rounds=12)).decode()
        for path, content in ((hash_path, digest), (secret_path, secret)):
            write_private_file(path, content + "\n")
    return secret_path


def initial_password_path(settings: Settings) -> Path:
    """Where the first admin's one-time password goes: beside the secret key."""
    return Path(settings.secret_key_file).parent / INITIAL_PASSWORD_FILE
