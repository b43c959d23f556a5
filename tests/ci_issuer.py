"""A fake CI OIDC issuer for workload identity federation tests: GitHub Actions-shaped
tokens signed with a key the test holds, served discovery and JWKS on a free
127.0.0.1 port (a thread of the test process).

``/lying/.well-known/openid-configuration`` names another issuer (RFC 8414 §3.3), for
the refusal of a token whose ``iss`` differs from its metadata.
"""

from __future__ import annotations

import base64
import json
import secrets
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from joserfc import jwt
from joserfc.jwk import OctKey, RSAKey

from .support.servers import json_server

KID = "ci-key-1"
#: A key of the same shape the issuer never published (a forger's).
FORGER_KEY = RSAKey.generate_key(2048, parameters={"kid": KID})


@dataclass
class CiIssuer:
    url: str
    key: RSAKey
    requests: list[str] = field(default_factory=list)

    @property
    def lying_issuer(self) -> str:
        """An issuer whose discovery document names another issuer."""
        return self.url + "/lying"

    def claims(self, **overrides: Any) -> dict[str, Any]:
        """GitHub Actions-shaped claims, valid for five minutes from now."""
        now = int(time.time())
        repository = overrides.pop("repository", "acme/deploy")
        ref = overrides.pop("ref", "refs/heads/main")
        claims: dict[str, Any] = {
            "iss": self.url,
            "aud": "http://127.0.0.1:8080",
            "sub": f"repo:{repository}:ref:{ref}",
            "repository": repository,
            "repository_owner": str(repository).split("/")[0],
            "ref": ref,
            "environment": "production",
            "workflow": "release",
            "jti": secrets.token_hex(16),
            "iat": now,
            "nbf": now,
            "exp": now + 300,
        }
        claims.update(overrides)
        return {k: v for k, v in claims.items() if v is not None}

    def token(self, *, alg: str = "RS256", key: Any = None, kid: str = KID, **claims: Any) -> str:
        """A signed token; ``alg`` ``none`` or ``HS256`` for the forgeries."""
        payload = self.claims(**claims)
        header = {"alg": alg, "typ": "JWT", "kid": kid}
        if alg == "none":
            encode = base64.urlsafe_b64encode
            parts = [encode(json.dumps(p).encode()).rstrip(b"=") for p in (header, payload)]
            return b".".join(parts).decode() + "."
        if alg.startswith("HS"):
            # The classic confusion: the public key as the HMAC secret.
            public = json.dumps(self.key.as_dict(private=False), sort_keys=True).encode()
            return jwt.encode(header, payload, OctKey.import_key(public), algorithms=[alg])
        return jwt.encode(header, payload, key or self.key, algorithms=[alg])


@contextmanager
def ci_issuer() -> Iterator[CiIssuer]:
    key = RSAKey.generate_key(2048, parameters={"kid": KID, "use": "sig", "alg": "RS256"})
    holder: dict[str, CiIssuer] = {}

    def respond(path: str) -> dict[str, Any] | None:
        issuer = holder["issuer"]
        issuer.requests.append(path)
        if path == "/.well-known/openid-configuration":
            return {"issuer": issuer.url, "jwks_uri": issuer.url + "/jwks"}
        if path == "/lying/.well-known/openid-configuration":
            return {"issuer": "https://token.actions.example.com", "jwks_uri": "/jwks"}
        if path == "/jwks":
            return {"keys": [key.as_dict(private=False)]}
        return None

    with json_server(respond) as url:
        holder["issuer"] = CiIssuer(url, key)
        yield holder["issuer"]
