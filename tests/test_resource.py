"""authserver.resource: the validator, RFC 6750 errors and the Flask decorator."""

from __future__ import annotations

import base64
import hashlib
import hmac
import importlib.util
import json
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
import requests
from joserfc import jwt
from joserfc.errors import SecurityWarning
from joserfc.jwk import ECKey, Key, OKPKey, RSAKey

from authserver.resource import (
    Forbidden,
    InvalidToken,
    KeysUnavailable,
    TokenValidator,
    Unauthorized,
    check,
)

from .support.factories import SECRETS
from .support.servers import InProcessServer, json_server

API = "https://api.example.com"


def get_token(server: InProcessServer, client_id: str = "ci", **extra: str) -> str:
    response = requests.post(
        server.url + "/oauth2/token",
        data={"grant_type": "client_credentials", **extra},
        auth=(client_id, SECRETS[client_id]),
        timeout=10,
    )
    assert response.status_code == 200, response.text
    return str(response.json()["access_token"])


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def segments(header: dict[str, Any], claims: dict[str, Any]) -> str:
    return b64(json.dumps(header).encode()) + "." + b64(json.dumps(claims).encode())


class Issuer:
    """A tiny second issuer: discovery and JWKS over HTTP, RFC 9068 tokens."""

    def __init__(self) -> None:
        self.key = RSAKey.generate_key(2048, parameters={"kid": "b-1"})
        self.published: list[Key] = [self.key]
        self.jwks_fetches = 0
        self._stack = ExitStack()
        self.url = self._stack.enter_context(json_server(self._respond))

    def _respond(self, path: str) -> dict[str, Any] | None:
        if path == "/.well-known/openid-configuration":
            return {"issuer": self.url, "jwks_uri": self.url + "/jwks"}
        if path == "/jwks":
            self.jwks_fetches += 1
            return {"keys": [k.as_dict(private=False) for k in self.published]}
        return None

    def claims(self, **overrides: Any) -> dict[str, Any]:
        now = int(time.time())
        claims = {
            "iss": self.url,
            "sub": "svc",
            "aud": API,
            "iat": now,
            "exp": now + 300,
            "jti": f"j-{time.monotonic_ns()}",
            "client_id": "svc",
            "scope": "read write",
            "roles": ["admin"],
        }
        claims.update(overrides)
        return claims

    def token(
        self, key: Key | None = None, typ: str = "at+jwt", alg: str = "RS256", **overrides: Any
    ) -> str:
        key = key or self.key
        header = {"alg": alg, "typ": typ, "kid": key.kid}
        return jwt.encode(header, self.claims(**overrides), key, algorithms=[alg])

    def close(self) -> None:
        self._stack.close()


@pytest.fixture
def issuer_b() -> Iterator[Issuer]:
    issuer = Issuer()
    yield issuer
    issuer.close()


def refused(validator: TokenValidator, token: str) -> str:
    with pytest.raises(InvalidToken) as caught:
        validator.validate(token)
    return caught.value.reason


# -- against the live server -----------------------------------------------------


def test_valid_token_gives_claims(app_server: InProcessServer) -> None:
    validator = TokenValidator(app_server.url, API)
    claims = validator.validate(get_token(app_server, scope="all read"))
    assert claims.sub == "ci"
    assert claims.client_id == "ci"
    assert claims.roles == ("user",)
    assert set(claims.scopes) == {"all", "read"}
    assert claims.has_scope("all")
    assert not claims.has_role("admin")
    assert claims.exp > time.time()
    assert claims.raw["iss"] == app_server.url
    admin = validator.validate(get_token(app_server, "ci-b64"))
    assert admin.has_role("admin")


def test_wrong_audience_is_refused(app_server: InProcessServer) -> None:
    validator = TokenValidator(app_server.url, "https://other.example.com")
    assert refused(validator, get_token(app_server)) == "wrong audience"


def test_metadata_of_another_issuer_is_refused(app_server: InProcessServer) -> None:
    # the same server under another name: its metadata names a different issuer
    other = app_server.url.replace("127.0.0.1", "localhost")
    validator = TokenValidator(other, API)
    with pytest.raises(KeysUnavailable) as caught:
        validator.validate(get_token(app_server))
    assert caught.value.reason == "issuer metadata mismatch"


def test_unreachable_issuer_is_invalid_token() -> None:
    validator = TokenValidator("http://127.0.0.1:9", API, http_timeout=1)
    token = segments({"alg": "RS256", "typ": "at+jwt", "kid": "x"}, {}) + ".c2ln"
    with pytest.raises(KeysUnavailable):
        validator.validate(token)


def test_alg_none_is_refused(app_server: InProcessServer) -> None:
    validator = TokenValidator(app_server.url, API)
    real = get_token(app_server)
    payload = json.loads(base64.urlsafe_b64decode(real.split(".")[1] + "=="))
    kid = json.loads(base64.urlsafe_b64decode(real.split(".")[0] + "=="))["kid"]
    for alg in ("none", "None", "NONE"):
        forged = segments({"alg": alg, "typ": "at+jwt", "kid": kid}, payload) + "."
        assert refused(validator, forged) in {"unsupported algorithm", "malformed token"}
    assert validator.validate(real).sub == "ci"


def test_hs256_signed_with_the_public_key_is_refused(app_server: InProcessServer) -> None:
    validator = TokenValidator(app_server.url, API)
    real = get_token(app_server)
    header = json.loads(base64.urlsafe_b64decode(real.split(".")[0] + "=="))
    payload = json.loads(base64.urlsafe_b64decode(real.split(".")[1] + "=="))
    jwks = requests.get(app_server.url + "/.well-known/jwks.json", timeout=10)
    if jwks.status_code != 200:
        meta = requests.get(app_server.url + "/.well-known/openid-configuration", timeout=10)
        jwks = requests.get(meta.json()["jwks_uri"], timeout=10)
    public = next(k for k in jwks.json()["keys"] if k["kid"] == header["kid"])
    pem = RSAKey.import_key(public).as_pem(private=False)
    signing_input = segments({"alg": "HS256", "typ": "at+jwt", "kid": header["kid"]}, payload)
    for secret in (pem, pem.strip()):
        mac = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
        assert refused(validator, signing_input + "." + b64(mac)) == "unsupported algorithm"


# -- a second issuer -----------------------------------------------------------------


def test_tokens_of_another_issuer(app_server: InProcessServer, issuer_b: Issuer) -> None:
    validator_a = TokenValidator(app_server.url, API)
    validator_b = TokenValidator(issuer_b.url, API)
    token_b = issuer_b.token()
    claims = validator_b.validate(token_b)
    assert (claims.sub, claims.roles, claims.scopes) == ("svc", ("admin",), ("read", "write"))
    assert refused(validator_a, token_b) == "unknown signing key"
    assert refused(validator_b, get_token(app_server)) == "unknown signing key"
    # B's key published by B but the iss claim names A: still refused
    assert refused(validator_b, issuer_b.token(iss=app_server.url)) == "wrong issuer"


def test_expiry_and_times_with_leeway(issuer_b: Issuer) -> None:
    validator = TokenValidator(issuer_b.url, API, leeway=30)
    now = int(time.time())
    assert refused(validator, issuer_b.token(exp=now - 60, iat=now - 400)) == "token expired"
    assert validator.validate(issuer_b.token(exp=now - 10)).sub == "svc"  # within leeway
    assert refused(validator, issuer_b.token(nbf=now + 120)) == "token not yet valid"
    assert refused(validator, issuer_b.token(iat=now + 120)) == "token issued in the future"
    assert refused(validator, issuer_b.token(exp=None)) == "missing claim exp"
    assert refused(validator, issuer_b.token(exp="soon")) == "invalid claim exp"


def test_typ_must_be_at_jwt(issuer_b: Issuer) -> None:
    validator = TokenValidator(issuer_b.url, API)
    assert validator.validate(issuer_b.token(typ="application/at+jwt")).sub == "svc"
    assert refused(validator, issuer_b.token(typ="JWT")) == "not an access token"


def test_audience_list(issuer_b: Issuer) -> None:
    validator = TokenValidator(issuer_b.url, ["https://x.example.com", API])
    assert validator.validate(issuer_b.token(aud=[API, "https://y.example.com"])).sub == "svc"
    assert refused(validator, issuer_b.token(aud="https://z.example.com")) == "wrong audience"


def test_unknown_kid_refetches_at_most_once_per_interval(issuer_b: Issuer) -> None:
    validator = TokenValidator(issuer_b.url, API, jwks_refresh_min_interval=0.5)
    assert validator.validate(issuer_b.token()).sub == "svc"
    assert issuer_b.jwks_fetches == 1
    stranger = RSAKey.generate_key(2048, parameters={"kid": "stranger"})
    token = issuer_b.token(key=stranger)
    # many threads at once: none refetches within the interval (the first fetch was just now)
    errors: list[str] = []
    threads = [
        threading.Thread(target=lambda: errors.append(refused(validator, token))) for _ in range(8)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == ["unknown signing key"] * 8
    assert issuer_b.jwks_fetches == 1
    time.sleep(0.6)
    # after the interval: one fetch for all the concurrent callers
    threads = [
        threading.Thread(target=lambda: errors.append(refused(validator, token))) for _ in range(8)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert issuer_b.jwks_fetches == 2
    # a rotated-in key is found by the refetch after the interval
    rotated = RSAKey.generate_key(2048, parameters={"kid": "b-2"})
    issuer_b.published = [issuer_b.key, rotated]
    assert refused(validator, issuer_b.token(key=rotated)) == "unknown signing key"
    time.sleep(0.6)
    assert validator.validate(issuer_b.token(key=rotated)).sub == "svc"
    assert issuer_b.jwks_fetches == 3


def test_es256_and_eddsa_keys(issuer_b: Issuer) -> None:
    ec = ECKey.generate_key("P-256", parameters={"kid": "ec-1"})
    ed = OKPKey.generate_key("Ed25519", parameters={"kid": "ed-1"})
    issuer_b.published = [issuer_b.key, ec, ed]
    validator = TokenValidator(issuer_b.url, API)
    assert validator.validate(issuer_b.token(key=ec, alg="ES256")).sub == "svc"
    with pytest.warns(SecurityWarning):  # joserfc's own note when *signing* with EdDSA
        eddsa = issuer_b.token(key=ed, alg="EdDSA")
    assert validator.validate(eddsa).sub == "svc"
    # the header alg must fit the key's type
    forged = segments({"alg": "RS256", "typ": "at+jwt", "kid": "ec-1"}, issuer_b.claims())
    assert refused(validator, forged + ".c2ln") == "algorithm does not match the key"


def test_a_kid_swapped_onto_another_key_fails_the_signature(issuer_b: Issuer) -> None:
    validator = TokenValidator(issuer_b.url, API)
    impostor = RSAKey.generate_key(2048, parameters={"kid": "b-1"})
    assert refused(validator, issuer_b.token(key=impostor)) == "bad signature"


def test_garbage_is_invalid_token_only(issuer_b: Issuer) -> None:
    validator = TokenValidator(issuer_b.url, API)
    for garbage in ("", "abc", "a.b.c", "....", "é.é.é", issuer_b.token()[:-5] + "AAAAA"):
        refused(validator, garbage)


# -- check() and the Flask example ---------------------------------------------------


def test_check_answers_rfc6750(issuer_b: Issuer) -> None:
    validator = TokenValidator(issuer_b.url, API)
    with pytest.raises(Unauthorized) as missing:
        check(validator, None)
    assert missing.value.www_authenticate == f'Bearer realm="{API}"'
    with pytest.raises(Unauthorized) as bad:
        check(validator, "Bearer nonsense")
    assert 'error="invalid_token"' in bad.value.www_authenticate
    assert 'error_description="malformed token"' in bad.value.www_authenticate
    token = issuer_b.token()
    assert check(validator, f"Bearer {token}", scope="read", role="admin").sub == "svc"
    with pytest.raises(Forbidden) as scope:
        check(validator, f"bearer {token}", scope="all")
    assert scope.value.status == 403
    assert 'error="insufficient_scope"' in scope.value.www_authenticate
    assert 'scope="all"' in scope.value.www_authenticate
    with pytest.raises(Forbidden) as role:
        check(validator, f"Bearer {token}", role="owner")
    assert 'error="insufficient_scope"' in role.value.www_authenticate
    assert "role owner" in role.value.www_authenticate


def load_example() -> Any:
    path = Path(__file__).resolve().parent.parent / "examples" / "resource_server.py"
    spec = importlib.util.spec_from_file_location("resource_server_example", path)
    assert spec
    assert spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_example_app(app_server: InProcessServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RESOURCE_ISSUER", app_server.url)
    monkeypatch.setenv("RESOURCE_AUDIENCE", API)
    client = load_example().create_app().test_client()

    response = client.get("/api/hello")
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == f'Bearer realm="{API}"'
    assert "error=" not in response.headers["WWW-Authenticate"]

    response = client.get("/api/hello", headers={"Authorization": "Bearer garbage"})
    assert response.status_code == 401
    assert response.json is not None
    assert response.json["error"] == "invalid_token"
    assert 'error="invalid_token"' in response.headers["WWW-Authenticate"]

    user = {"Authorization": f"Bearer {get_token(app_server, scope='all')}"}
    assert client.get("/api/hello", headers=user).json == {"hello": "ci", "client_id": "ci"}
    assert client.get("/api/data", headers=user).status_code == 200
    response = client.get("/api/admin", headers=user)
    assert response.status_code == 403
    assert response.json is not None
    assert response.json["error"] == "insufficient_scope"
    assert 'error="insufficient_scope"' in response.headers["WWW-Authenticate"]

    narrow = {"Authorization": f"Bearer {get_token(app_server, scope='read')}"}
    response = client.get("/api/data", headers=narrow)
    assert response.status_code == 403
    assert 'scope="all"' in response.headers["WWW-Authenticate"]

    admin = {"Authorization": f"Bearer {get_token(app_server, 'ci-b64')}"}
    response = client.get("/api/admin", headers=admin)
    assert response.status_code == 200
    assert response.json == {"admin": True, "roles": ["admin"]}
