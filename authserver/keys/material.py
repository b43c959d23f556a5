"""Key material: generation, PEM import, and the JWK/JWKS forms (RFC 7517).

Asymmetric signing keys only, one per algorithm DESIGN.md names: ``RS256`` (RSA 2048),
``ES256`` (P-256) and ``EdDSA`` (Ed25519, RFC 8037). Every key carries its ``kid``,
``alg`` and ``use: sig`` (RFC 7517 §4), so a resource server picks it from JWKS as is.
No I/O and no time here.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Literal, cast

from joserfc.jwk import ECKey, KeySet, OKPKey, RSAKey
from joserfc.jws import JWSRegistry

Algorithm = Literal["RS256", "ES256", "EdDSA"]
ALGORITHMS: tuple[Algorithm, ...] = ("RS256", "ES256", "EdDSA")

SigningKeyObject = RSAKey | ECKey | OKPKey


class _Registry(JWSRegistry):
    """joserfc's registry, without the RFC 9864 warning for ``EdDSA``.

    DESIGN.md names ``EdDSA``: it is what resource servers verify today (RFC 8037);
    RFC 9864's fully specified ``Ed25519`` is not yet widely understood.
    """

    def get_alg(self, name: str) -> Any:
        if name == "EdDSA" and self.allowed and name in self.allowed:
            return self.algorithms[name]
        return super().get_alg(name)


REGISTRY = _Registry(algorithms=list(ALGORITHMS))


def _parameters(kid: str, algorithm: str) -> Any:
    return {"kid": kid, "alg": algorithm, "use": "sig"}


def generate_key(algorithm: Algorithm, kid: str) -> SigningKeyObject:
    """A new private key for ``algorithm``, named ``kid``."""
    parameters = _parameters(kid, algorithm)
    if algorithm == "RS256":
        return RSAKey.generate_key(2048, parameters=parameters, private=True)
    if algorithm == "ES256":
        return ECKey.generate_key("P-256", parameters=parameters, private=True)
    return OKPKey.generate_key("Ed25519", parameters=parameters, private=True)


def import_private_key(pem: bytes, *, kid: str, algorithm: str) -> SigningKeyObject:
    """The private key ``pem`` holds (as :func:`private_pem` wrote it)."""
    parameters = _parameters(kid, algorithm)
    if algorithm == "RS256":
        return RSAKey.import_key(pem, parameters=parameters)
    if algorithm == "ES256":
        return ECKey.import_key(pem, parameters=parameters)
    return OKPKey.import_key(pem, parameters=parameters)


def private_pem(key: SigningKeyObject) -> bytes:
    """The private key as PEM (PKCS#8), to be encrypted before it is stored."""
    return key.as_pem(private=True)


def public_jwk(key: SigningKeyObject) -> dict[str, Any]:
    """The public half as a JWK (RFC 7517 §4), with ``kid``, ``alg`` and ``use``."""
    return dict(key.as_dict(private=False))


def key_set(keys: Iterable[SigningKeyObject]) -> KeySet:
    """The keys a token may be verified with, for joserfc."""
    return KeySet([cast(Any, key) for key in keys])


def jwks_document(jwks: Iterable[Mapping[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """A JWK Set (RFC 7517 §5) of public JWKs."""
    return {"keys": [dict(jwk) for jwk in jwks]}
