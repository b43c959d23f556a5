"""Service-account key files: the format, and the client assertion made from one.

A key file is what ``service-accounts create NAME --key-file PATH`` and ``add-key``
write (GCP-style, DESIGN.md "Machine identity without shared secrets"): a JSON object
readable by its owner only::

    {
      "type": "authserver_service_account",
      "name": "deploy-bot",
      "client_id": "sa-0123456789abcdef",
      "key_id": "<hex of the first 128 bits of its RFC 7638 thumbprint>",
      "issuer": "https://auth.example.com",
      "token_url": "https://auth.example.com/oauth2/token",
      "private_key": {"kty": "EC", "crv": "P-256", "x": "…", "y": "…", "d": "…",
                      "kid": "<key_id>", "alg": "ES256", "use": "sig"}
    }

The private key is a JWK (RFC 7517), not PEM: it carries its own ``kid`` and ``alg``,
so any JOSE library signs with it as it is, and it needs no escaping inside JSON. The
server keeps only the public half. The holder authenticates with ``private_key_jwt``
(RFC 7523 §2.2, OIDC Core §9) by :func:`client_assertion`.

Used by both sides (the server writes files, ``authserver token --key-file`` reads
them), so nothing here imports the server: joserfc only.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from joserfc import jws
from joserfc.errors import JoseError
from joserfc.jwk import ECKey, OKPKey, RSAKey, import_key
from joserfc.jws import JWSRegistry

#: The ``type`` member that tells a key file from any other JSON.
KEY_FILE_TYPE = "authserver_service_account"
#: RFC 7523 §2.2.
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
#: The algorithms a key file may hold; ES256 unless asked otherwise.
KEY_ALGORITHMS = ("ES256", "RS256", "EdDSA")
DEFAULT_KEY_ALGORITHM = "ES256"
#: How long an assertion we sign is good for: it is used at once, and only once.
ASSERTION_LIFETIME = 60

PrivateKey = ECKey | RSAKey | OKPKey


class KeyFileError(Exception):
    """A key file that cannot be used; ``str()`` is one line for the person."""


class _Registry(JWSRegistry):
    """joserfc's registry, allowing ``EdDSA`` (RFC 8037) without RFC 9864's warning."""

    def get_alg(self, name: str) -> Any:
        if name == "EdDSA" and self.allowed and name in self.allowed:
            return self.algorithms[name]
        return super().get_alg(name)


REGISTRY = _Registry(algorithms=list(KEY_ALGORITHMS))


def generate_key(algorithm: str = DEFAULT_KEY_ALGORITHM) -> PrivateKey:
    """A fresh private key for ``algorithm``, with ``kid``, ``alg`` and ``use`` set.

    The ``kid`` is the first 128 bits of its RFC 7638 thumbprint, in hex: derived from
    the key, and never starting with ``-`` (base64url may), which a command line would
    take for an option (``remove-key NAME KID``)."""
    key: PrivateKey
    if algorithm == "ES256":
        key = ECKey.generate_key("P-256", private=True)
    elif algorithm == "RS256":
        key = RSAKey.generate_key(3072, private=True)
    elif algorithm == "EdDSA":
        key = OKPKey.generate_key("Ed25519", private=True)
    else:
        raise ValueError(f"unknown key algorithm {algorithm!r}; known: {', '.join(KEY_ALGORITHMS)}")
    imported = import_key(
        {**key.as_dict(private=True), "kid": key_id(key), "alg": algorithm, "use": "sig"}
    )
    assert isinstance(imported, ECKey | RSAKey | OKPKey)
    return imported


def key_id(key: PrivateKey) -> str:
    digest = base64.urlsafe_b64decode(key.thumbprint() + "==")
    return digest[:16].hex()


def public_jwk(key: PrivateKey) -> dict[str, Any]:
    """The public half of ``key`` as a JWK, with its ``kid``, ``alg`` and ``use``."""
    return dict(key.as_dict(private=False))


@dataclass(frozen=True)
class KeyFile:
    """A loaded key file."""

    client_id: str
    key_id: str
    issuer: str
    token_url: str
    private_key: PrivateKey
    name: str = ""

    @property
    def algorithm(self) -> str:
        return str(self.private_key.alg)

    def document(self) -> dict[str, Any]:
        """The file's JSON object (holds the private key: written once, never stored)."""
        return {
            "type": KEY_FILE_TYPE,
            "name": self.name,
            "client_id": self.client_id,
            "key_id": self.key_id,
            "issuer": self.issuer,
            "token_url": self.token_url,
            "private_key": dict(self.private_key.as_dict(private=True)),
        }

    @classmethod
    def from_document(cls, data: object, where: str = "the key file") -> KeyFile:
        if not isinstance(data, Mapping) or data.get("type") != KEY_FILE_TYPE:
            raise KeyFileError(f"{where} is not an authserver service-account key file")
        fields: dict[str, str] = {}
        for name in ("client_id", "key_id", "issuer", "token_url"):
            value = data.get(name)
            if not isinstance(value, str) or not value:
                raise KeyFileError(f"{where} has no {name}")
            fields[name] = value
        jwk = data.get("private_key")
        if not isinstance(jwk, Mapping) or jwk.get("alg") not in KEY_ALGORITHMS:
            raise KeyFileError(f"{where} has no private_key of ES256, RS256 or EdDSA")
        try:
            key = import_key(dict(jwk))
        except (JoseError, ValueError, TypeError):
            raise KeyFileError(f"{where} holds a private_key that is not a valid JWK") from None
        if not isinstance(key, ECKey | RSAKey | OKPKey) or not key.is_private:
            raise KeyFileError(f"{where} holds a public key only, not the private key")
        label = data.get("name")
        return cls(
            client_id=fields["client_id"],
            key_id=fields["key_id"],
            issuer=fields["issuer"],
            token_url=fields["token_url"],
            private_key=key,
            name=label if isinstance(label, str) else "",
        )


def load_key_file(path: str | os.PathLike[str]) -> KeyFile:
    """Read ``path``; :class:`KeyFileError` for a file that is missing or not one."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise KeyFileError(f"cannot read the key file {path}: {exc.strerror or exc}") from None
    try:
        data = json.loads(text)
    except ValueError:
        raise KeyFileError(f"the key file {path} is not JSON") from None
    return KeyFile.from_document(data, f"the key file {path}")


def open_new_key_file(path: str | os.PathLike[str]) -> TextIO:
    """A new, empty file readable by its owner only (0600), opened before the key is
    made so that a path that cannot be written costs no key. An existing file is never
    replaced (it may hold the only copy of another key)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise KeyFileError(f"{path} exists already: give a new path for the key file") from None
    except OSError as exc:
        raise KeyFileError(f"cannot create the key file {path}: {exc.strerror or exc}") from None
    return os.fdopen(fd, "w", encoding="utf-8")


def dump_key_file(stream: TextIO, key_file: KeyFile) -> None:
    stream.write(json.dumps(key_file.document(), indent=2) + "\n")
    stream.flush()
    os.fsync(stream.fileno())


def client_assertion(
    key_file: KeyFile, *, now: float | None = None, lifetime: int = ASSERTION_LIFETIME
) -> str:
    """A ``private_key_jwt`` client assertion (RFC 7523 §3, OIDC Core §9): ``iss`` and
    ``sub`` the client id, ``aud`` the issuer (the AS's identifier, as RFC 7523 §3
    and its update for audience injection prefer over an endpoint URL), a fresh
    ``jti``, valid for ``lifetime`` seconds."""
    issued_at = int(time.time() if now is None else now)
    claims = {
        "iss": key_file.client_id,
        "sub": key_file.client_id,
        "aud": key_file.issuer,
        "iat": issued_at,
        "exp": issued_at + lifetime,
        "jti": secrets.token_urlsafe(24),
    }
    header = {"alg": key_file.algorithm, "kid": key_file.key_id, "typ": "JWT"}
    payload = json.dumps(claims, separators=(",", ":"))
    return jws.serialize_compact(header, payload, key_file.private_key, registry=REGISTRY)
