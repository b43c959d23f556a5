"""Workload identity federation (issue 12, items 1-3 and 7): a CI job's OIDC token traded
for our access token by RFC 8693 token exchange or the RFC 7523 jwt-bearer grant.

A fake GitHub Actions issuer (``tests/ci_issuer.py``) signs the tokens. Every refusal is
``invalid_grant`` with a ``federation_refused`` audit row, and issues nothing; what is
issued is checked by PyJWT through our JWKS. Both backends; the CLI against a live server.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest
import requests
import sqlalchemy as sa
from flask import Flask
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from authserver.settings import Settings, SettingsError, load_settings
from authserver.web.services import Services

from .ci_issuer import FORGER_KEY, CiIssuer, ci_issuer
from .conftest import AppFactory
from .support.factories import AUDIENCES, SECRETS
from .support.servers import (
    LiveServer,
    serving,
)

ISSUER = "http://127.0.0.1:8080"
TOKEN_EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"
JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
ID_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:id_token"
JWT_TYPE = "urn:ietf:params:oauth:token-type:jwt"
ACCESS_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:access_token"


@pytest.fixture(scope="module")
def issuer() -> Iterator[CiIssuer]:
    with ci_issuer() as running:
        yield running


def rules(issuer: CiIssuer, down_issuer: str = "http://127.0.0.1:9") -> list[dict[str, Any]]:
    return [
        {
            "name": "release",
            "issuer": issuer.url,
            "claims": {
                "repository": "acme/deploy",
                "ref": ["refs/heads/main", "refs/heads/release-*"],
                "workflow": "release",
            },
            "subject": "github:{repository}:{ref}",
            "role": "user",
            "scopes": ["read", "write"],
            "token_ttl": "10m",
        },
        {
            # needs the `ci` client to authenticate as well
            "name": "with-client",
            "issuer": issuer.url,
            "claims": {"repository": "acme/guarded"},
            "subject": "github:{repository}:{environment}",
            "role": "viewer",
            "scopes": ["read"],
            "client_id": "ci",
        },
        {
            "name": "lying",
            "issuer": issuer.lying_issuer,
            "claims": {"repository": "*"},
            "role": "user",
        },
        {"name": "down", "issuer": down_issuer, "claims": {"repository": "*"}, "role": "user"},
    ]


@pytest.fixture
def app(make_app: AppFactory, issuer: CiIssuer) -> Flask:
    return make_app(federated_identities=rules(issuer))


def exchange(app: Flask, token: str, **form: str) -> Any:
    data = {
        "grant_type": TOKEN_EXCHANGE,
        "subject_token": token,
        "subject_token_type": ID_TOKEN_TYPE,
        **form,
    }
    return app.test_client().post("/oauth2/token", data=data)


def bearer(app: Flask, token: str, **form: str) -> Any:
    data = {"grant_type": JWT_BEARER, "assertion": token, **form}
    return app.test_client().post("/oauth2/token", data=data)


def audit(app: Flask, event: str) -> list[dict[str, Any]]:
    Services.of(app).events.flush()
    with app.app_context():
        engine = app.extensions["sqlalchemy"].engines[None]
    with engine.connect() as conn:
        result = conn.execute(
            sa.text("SELECT * FROM audit_events WHERE event = :e ORDER BY id"), {"e": event}
        )
        found = [dict(row._mapping) for row in result]
    for row in found:
        if isinstance(row["details"], str):
            row["details"] = json.loads(row["details"])
    return found


def validate(app: Flask, token: str, audience: str) -> dict[str, Any]:
    """As a resource server would: PyJWT, with a key from our JWKS."""
    jwks = jwt.PyJWKSet.from_dict(app.test_client().get("/.well-known/jwks.json").get_json())
    kid = jwt.get_unverified_header(token)["kid"]
    key = next(k for k in jwks.keys if k.key_id == kid)
    claims: dict[str, Any] = jwt.decode(
        token,
        key,
        algorithms=["RS256"],
        audience=audience,
        issuer=ISSUER,
        options={"require": ["exp", "iat", "iss", "aud", "sub", "jti"]},
    )
    return claims


# -- success ----------------------------------------------------------------------------


def test_token_exchange_issues_an_access_token_for_the_rule(app: Flask, issuer: CiIssuer) -> None:
    external = issuer.token(ref="refs/heads/release-2.1")
    response = exchange(app, external, requested_token_type=ACCESS_TOKEN_TYPE)
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert body["issued_token_type"] == ACCESS_TOKEN_TYPE
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 600
    assert body["scope"] == "read write"
    assert "refresh_token" not in body
    assert jwt.get_unverified_header(body["access_token"])["typ"] == "at+jwt"
    claims = validate(app, body["access_token"], AUDIENCES[0])
    assert claims["sub"] == "github:acme/deploy:refs/heads/release-2.1"
    assert claims["roles"] == ["user"]
    assert claims["scp"] == ["read", "write"]
    assert claims["act"] == {
        "sub": "repo:acme/deploy:ref:refs/heads/release-2.1",
        "iss": issuer.url,
    }
    assert claims["federation"] == "release"
    assert claims["client_id"] == "federated:release"
    assert claims["exp"] - claims["iat"] == 600
    (row,) = audit(app, "token_issued")
    assert row["client_id"] == "federated:release"
    assert row["details"]["rule"] == "release"
    assert row["details"]["grant_type"] == TOKEN_EXCHANGE
    assert not audit(app, "federation_refused")


def test_jwt_bearer_grant_with_a_scope_and_an_audience(app: Flask, issuer: CiIssuer) -> None:
    response = bearer(app, issuer.token(), scope="read", audience=AUDIENCES[1])
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert "issued_token_type" not in body
    assert body["scope"] == "read"
    claims = validate(app, body["access_token"], AUDIENCES[1])
    assert claims["sub"] == "github:acme/deploy:refs/heads/main"
    assert claims["scp"] == ["read"]
    assert claims["act"]["iss"] == issuer.url


def test_jwt_subject_token_type_and_introspection(app: Flask, issuer: CiIssuer) -> None:
    response = exchange(app, issuer.token(), subject_token_type=JWT_TYPE)
    assert response.status_code == 200, response.get_json()
    # The token is one of ours: a resource server may introspect it (RFC 7662).
    introspected = app.test_client().post(
        "/oauth2/introspect",
        data={"token": response.get_json()["access_token"]},
        auth=("rs", SECRETS["rs"]),
    )
    assert introspected.get_json()["active"] is True


def test_a_rule_may_require_its_client_to_authenticate(app: Flask, issuer: CiIssuer) -> None:
    external = issuer.token(repository="acme/guarded")
    alone = exchange(app, external)
    assert alone.status_code == 400
    assert alone.get_json()["error"] == "invalid_grant"
    assert audit(app, "federation_refused")[-1]["details"]["reason"] == "client not allowed"
    wrong = app.test_client().post(
        "/oauth2/token",
        data={"grant_type": JWT_BEARER, "assertion": external},
        auth=("ci", "not-the-secret"),
    )
    assert wrong.status_code == 401
    assert wrong.get_json()["error"] == "invalid_client"
    # Neither attempt used the token up.
    right = app.test_client().post(
        "/oauth2/token",
        data={"grant_type": JWT_BEARER, "assertion": external},
        auth=("ci", SECRETS["ci"]),
    )
    assert right.status_code == 200, right.get_json()
    claims = validate(app, right.get_json()["access_token"], AUDIENCES[0])
    assert claims["client_id"] == "ci"
    assert claims["sub"] == "github:acme/guarded:production"
    assert claims["roles"] == ["viewer"]
    assert claims["federation"] == "with-client"


# -- refusals: invalid_grant, an audit row, nothing issued ------------------------------


def _expired(issuer: CiIssuer) -> str:
    return issuer.token(iat=1_000_000, nbf=1_000_000, exp=1_000_300)


def _future(issuer: CiIssuer) -> str:
    import time

    later = int(time.time()) + 3600
    return issuer.token(nbf=later, iat=later, exp=later + 300)


REFUSALS = {
    "unknown issuer": lambda i: i.token(iss="https://token.actions.githubusercontent.com"),
    "bad signature": lambda i: i.token(key=FORGER_KEY),
    "algorithm not allowed": lambda i: i.token(alg="none"),
    "algorithm not allowed (HS256)": lambda i: i.token(alg="HS256"),
    "unknown signing key": lambda i: i.token(kid="not-published"),
    "wrong audience": lambda i: i.token(aud="https://someone-else.example.com"),
    "expired": _expired,
    "not yet valid": _future,
    "exp too far ahead": lambda i: i.token(exp=2**63),
    "claims do not match": lambda i: i.token(ref="refs/heads/feature"),
    "claims do not match (case)": lambda i: i.token(repository="ACME/deploy"),
    "issuer metadata mismatch": lambda i: i.token(iss=i.lying_issuer),
    "subject claim missing": lambda i: i.token(repository="acme/guarded", environment=None),
    "malformed token": lambda i: "not.a.jwt",
    "malformed token (nested too deep)": lambda i: ".".join(
        base64.urlsafe_b64encode(part).rstrip(b"=").decode()
        for part in (b'{"alg":"RS256","kid":"ci-key-1"}', b"[" * 5000 + b"]" * 5000, b"sig")
    ),
}


@pytest.mark.parametrize("case", sorted(REFUSALS))
@pytest.mark.parametrize("grant", ["token-exchange", "jwt-bearer"])
def test_refusals_are_invalid_grant_with_an_audit_row(
    app: Flask, issuer: CiIssuer, case: str, grant: str
) -> None:
    token = REFUSALS[case](issuer)
    if case == "subject claim missing":
        # the rule that names `environment` in its subject needs its client
        response = app.test_client().post(
            "/oauth2/token",
            data={"grant_type": JWT_BEARER, "assertion": token},
            auth=("ci", SECRETS["ci"]),
        )
    elif grant == "token-exchange":
        response = exchange(app, token)
    else:
        response = bearer(app, token)
    assert response.status_code == 400, response.get_json()
    assert response.get_json()["error"] == "invalid_grant"
    assert "access_token" not in response.get_json()
    (row,) = audit(app, "federation_refused")
    assert row["details"]["reason"] == case.split(" (")[0]
    assert not audit(app, "token_issued")
    # Nothing of the token is in the audit row or the answer.
    assert token not in json.dumps(row["details"], default=str)
    assert token not in response.get_data(as_text=True)


@pytest.mark.parametrize("grant", ["token-exchange", "jwt-bearer"])
def test_a_token_is_traded_once(app: Flask, issuer: CiIssuer, grant: str) -> None:
    token = issuer.token()
    send = exchange if grant == "token-exchange" else bearer
    assert send(app, token).status_code == 200
    again = send(app, token)
    assert again.status_code == 400
    assert again.get_json()["error"] == "invalid_grant"
    assert audit(app, "federation_refused")[-1]["details"]["reason"] == "replayed"
    # Through the other grant too: the same token, once.
    other = bearer if grant == "token-exchange" else exchange
    assert other(app, token).get_json()["error"] == "invalid_grant"
    assert len(audit(app, "token_issued")) == 1


def test_concurrent_exchanges_of_one_token_issue_once(app: Flask, issuer: CiIssuer) -> None:
    """Single use under concurrency: the store's atomic set-if-absent decides."""
    from concurrent.futures import ThreadPoolExecutor

    token = issuer.token()
    exchange(app, issuer.token())  # keys fetched before the race
    with ThreadPoolExecutor(8) as pool:
        statuses = list(pool.map(lambda _: exchange(app, token).status_code, range(8)))
    assert sorted(statuses) == [200] + [400] * 7
    assert len(audit(app, "token_issued")) == 2


def test_a_token_without_jti_is_single_use_by_its_hash(app: Flask, issuer: CiIssuer) -> None:
    token = issuer.token(jti=None)
    assert exchange(app, token).status_code == 200
    assert exchange(app, token).get_json()["error"] == "invalid_grant"
    # Another token (RS256 is deterministic: the same claims would be the same token).
    assert exchange(app, issuer.token(jti=None, workflow_run="2")).status_code == 200


def test_single_use_off_for_kubernetes_style_tokens(make_app: AppFactory, issuer: CiIssuer) -> None:
    rule = {**rules(issuer)[0], "single_use": False}
    app = make_app(federated_identities=[rule])
    token = issuer.token()
    assert exchange(app, token).status_code == 200
    assert exchange(app, token).status_code == 200


def test_an_unreachable_issuer_is_503_not_a_refusal(app: Flask, issuer: CiIssuer) -> None:
    response = exchange(app, issuer.token(iss="http://127.0.0.1:9"))
    assert response.status_code == 503
    assert response.get_json()["error"] == "temporarily_unavailable"
    assert response.headers["Retry-After"]
    assert not audit(app, "federation_refused")


def test_unknown_kids_refetch_the_keys_at_most_once_a_minute(
    make_app: AppFactory, issuer: CiIssuer
) -> None:
    app = make_app(federated_identities=rules(issuer)[:1])
    before = issuer.requests.count("/jwks")
    for n in range(5):
        assert bearer(app, issuer.token(kid=f"made-up-{n}")).status_code == 400
    assert issuer.requests.count("/jwks") - before == 1
    assert bearer(app, issuer.token()).status_code == 200
    assert issuer.requests.count("/jwks") - before == 1


# -- parameters ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("form", "error"),
    [
        ({"subject_token": ""}, "invalid_request"),
        ({"subject_token_type": ""}, "invalid_request"),
        ({"subject_token_type": ACCESS_TOKEN_TYPE}, "invalid_request"),
        (
            {"requested_token_type": "urn:ietf:params:oauth:token-type:refresh_token"},
            "invalid_request",
        ),
        ({"actor_token": "x", "actor_token_type": JWT_TYPE}, "invalid_request"),
        ({"scope": "admin"}, "invalid_scope"),
        ({"audience": "https://unknown.example.com"}, "invalid_target"),
    ],
)
def test_bad_parameters(app: Flask, issuer: CiIssuer, form: dict[str, str], error: str) -> None:
    token, form = issuer.token(), dict(form)
    response = exchange(app, form.pop("subject_token", token), **form)
    assert response.status_code == 400
    assert response.get_json()["error"] == error
    # A request refused before the checks leaves the token unused.
    assert exchange(app, token).status_code == 200


def test_missing_assertion_is_invalid_request(app: Flask) -> None:
    response = app.test_client().post("/oauth2/token", data={"grant_type": JWT_BEARER})
    assert response.get_json()["error"] == "invalid_request"


def test_discovery_advertises_both_grants(app: Flask) -> None:
    metadata = app.test_client().get("/.well-known/oauth-authorization-server").get_json()
    assert TOKEN_EXCHANGE in metadata["grant_types_supported"]
    assert JWT_BEARER in metadata["grant_types_supported"]


# -- settings ----------------------------------------------------------------------------


def test_rule_settings_report_every_problem_at_once(tmp_path: Path) -> None:
    config = {
        "federated_identities": [
            {
                "name": "a",
                "issuer": "https://token.actions.githubusercontent.com",
                "claims": {"repository": "acme/x"},
                "role": "nobody",
                "token_ttl": "2h",
                "client_id": "ghost",
            },
            {
                "name": "a",
                "issuer": "https://token.actions.githubusercontent.com",
                "claims": {"repository": "acme/x"},
                "role": "user",
                "scopes": ["admin"],
            },
        ]
    }
    path = tmp_path / "c.yaml"
    path.write_text(json.dumps(config))
    with pytest.raises(SettingsError) as caught:
        load_settings(path, environ={}, instance=tmp_path)
    assert caught.value.problems == [
        "federated_identities[0].role: 'nobody' is not one of rbac.roles",
        "federated_identities[0].token_ttl: must not be longer than tokens.access_token_ttl",
        "federated_identities[0].client_id: names no client of clients",
        "federated_identities[1].name: 'a' appears twice",
        "federated_identities[1].scopes: admin not among the permissions of role 'user'",
    ]
    config["federated_identities"] = [
        {
            "name": "b c",
            "issuer": "http://ci.example.com",
            "claims": {},
            "subject": "{a",
            "role": "user",
        }
    ]
    path.write_text(json.dumps(config))
    with pytest.raises(SettingsError) as caught:
        load_settings(path, environ={}, instance=tmp_path)
    assert [p.split(":")[0] for p in caught.value.problems] == [
        "federated_identities[0].name",
        "federated_identities[0].issuer",
        "federated_identities[0].claims",
        "federated_identities[0].subject",
    ]
    assert Settings.model_validate({}).federated_identities == ()


# -- the CLI against a live server ----------------------------------------------------------


@pytest.fixture(scope="module", params=["sqlite", "postgresql+redis"])
def live(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, issuer: CiIssuer
) -> Iterator[LiveServer]:
    def one_rule(config: dict[str, Any]) -> None:
        config["federated_identities"] = rules(issuer)[:1]

    with serving(request, tmp_path_factory.mktemp("live-wif"), one_rule) as server:
        yield server


@pytest.mark.live
def test_cli_token_federated_prints_only_the_access_token(
    live: LiveServer, issuer: CiIssuer, tmp_path: Path
) -> None:
    from .support.servers import run_cli

    external = issuer.token(aud=live.url)
    done = run_cli(
        "token", "--federated", "env:CI_OIDC_TOKEN", "--issuer", live.url,
        cwd=tmp_path, env={"CI_OIDC_TOKEN": external},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    access_token = done.stdout.strip()
    assert done.stdout == access_token + "\n"
    jwks = jwt.PyJWKClient(live.url + "/.well-known/jwks.json")
    claims = jwt.decode(
        access_token,
        jwks.get_signing_key_from_jwt(access_token),
        algorithms=["RS256"],
        audience=AUDIENCES[0],
        issuer=live.url,
    )
    assert claims["sub"] == "github:acme/deploy:refs/heads/main"
    assert claims["act"] == {"sub": "repo:acme/deploy:ref:refs/heads/main", "iss": issuer.url}

    # From a file, for another audience; the same token again is refused, in one line.
    path = tmp_path / "token"
    path.write_text(issuer.token(aud=live.url) + "\n")
    done = run_cli(
        "token", "--federated", f"@{path}", "--issuer", live.url, "--audience", AUDIENCES[1],
        cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert (
        jwt.decode(done.stdout.strip(), options={"verify_signature": False})["aud"]
        == (AUDIENCES[1])
    )
    again = run_cli(
        "token", "--federated", external, "--issuer", live.url, cwd=tmp_path
    )  # fmt: skip
    assert again.returncode == 1
    assert again.stdout == ""
    assert again.stderr.strip().splitlines() == [
        "authserver: error: the token exchange was refused "
        "(invalid_grant: The token was already used.)"
    ]


@pytest.mark.live
def test_curl_style_exchange_against_the_live_server(live: LiveServer, issuer: CiIssuer) -> None:
    """What the README's GitHub Actions recipe sends."""
    response = requests.post(
        live.url + "/oauth2/token",
        data={
            "grant_type": TOKEN_EXCHANGE,
            "subject_token": issuer.token(aud=live.url),
            "subject_token_type": JWT_TYPE,
        },
        timeout=10,
    )
    assert response.status_code == 200, response.text
    assert response.json()["issued_token_type"] == ACCESS_TOKEN_TYPE


# -- generated input: refused or issued, never a server error --------------------------------

CLAIM_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=20),
    st.lists(st.text(max_size=10), max_size=3),
    st.sampled_from(["acme/deploy", "refs/heads/main", "release", ISSUER, ""]),
)


@settings(
    max_examples=60,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(
    claims=st.dictionaries(
        st.sampled_from(
            ["aud", "sub", "exp", "nbf", "iat", "jti", "repository", "ref", "workflow", "iss"]
        ),
        CLAIM_VALUES,
        max_size=6,
    ),
    kid=st.sampled_from(["ci-key-1", "other", ""]),
    grant=st.sampled_from(["token-exchange", "jwt-bearer"]),
    extra=st.dictionaries(
        st.sampled_from(["scope", "audience", "resource", "requested_token_type"]),
        st.text(max_size=20) | st.sampled_from(["read", AUDIENCES[0], ACCESS_TOKEN_TYPE]),
        max_size=2,
    ),
)
def test_generated_external_tokens_never_give_a_server_error(
    app: Flask,
    issuer: CiIssuer,
    claims: dict[str, Any],
    kid: str,
    grant: str,
    extra: dict[str, str],
) -> None:
    """Signed by the trusted key, with claims of every type where each check looks."""
    if claims.get("iss") is not None and claims["iss"] != issuer.url:
        claims["iss"] = issuer.url if claims["iss"] == ISSUER else claims["iss"]
    token = issuer.token(kid=kid, **claims)
    response = (
        exchange(app, token, **extra) if grant == "token-exchange" else bearer(app, token, **extra)
    )
    assert response.status_code in (200, 400), (response.status_code, response.get_data()[:300])
    body = response.get_json()
    if response.status_code == 400:
        assert body["error"] in (
            "invalid_grant",
            "invalid_request",
            "invalid_scope",
            "invalid_target",
        ), body


def test_issuer_keys_expire_and_outlive_an_issuer_outage() -> None:
    """A key the issuer withdrew stops working once the keys are older than ``max_age``;
    while the issuer is down the keys held keep working, and it is not asked again
    during the cool-down."""
    from authserver.resource import InvalidToken, IssuerKeys, KeysUnavailable

    published = [FORGER_KEY.as_dict(private=False)]
    state: dict[str, Any] = {"keys": published, "down": False, "calls": 0}

    def fetch(url: str, timeout: float) -> dict[str, Any]:
        state["calls"] += 1
        if state["down"]:
            raise KeysUnavailable("cannot fetch keys")
        if url.endswith("/.well-known/openid-configuration"):
            return {"issuer": "https://ci.example.com", "jwks_uri": "https://ci.example.com/k"}
        return {"keys": state["keys"]}

    keys = IssuerKeys("https://ci.example.com", max_age=0, failure_cool_down=60, fetch=fetch)
    assert keys.key("ci-key-1").as_dict()["n"] == published[0]["n"]
    state["keys"] = []
    with pytest.raises(InvalidToken):
        keys.key("ci-key-1")
    state["keys"] = published
    assert keys.key("ci-key-1")
    state["down"], calls = True, state["calls"]
    assert keys.key("ci-key-1")  # stale, the fetch fails: the key held still works
    assert keys.key("ci-key-1")
    with pytest.raises(KeysUnavailable):
        keys.key("another")
    assert state["calls"] == calls + 1


def test_es256_and_eddsa_issuers_and_a_key_of_the_wrong_curve() -> None:
    """The checks without HTTP: keys injected, the store a dict. An EC key verifies
    ES256 only on P-256; Ed25519 verifies EdDSA."""
    from joserfc import jwt as jose_jwt
    from joserfc.jwk import ECKey, OKPKey

    from authserver.oauth.federation import Federation, FederationRefused, _OneAlgorithm
    from authserver.settings import FederatedIdentitySettings

    class Store(dict[str, bytes]):
        def add(self, key: str, value: bytes, ttl: float) -> bool:
            if key in self:
                return False
            self[key] = value
            return True

    rule = FederatedIdentitySettings(
        name="k8s", issuer="https://k8s.example.com", claims={"sub": "system:serviceaccount:*"},
        role="user",
    )  # fmt: skip
    keys = {
        "p256": ECKey.generate_key("P-256", parameters={"kid": "p256"}),
        "p384": ECKey.generate_key("P-384", parameters={"kid": "p384"}),
        "ed": OKPKey.generate_key("Ed25519", parameters={"kid": "ed"}),
    }

    class Keys:
        def key(self, kid: str) -> Any:
            return keys[kid]

    federation = Federation([rule], issuer=ISSUER, store=Store(), keys=lambda _: Keys())
    claims = {"iss": rule.issuer, "aud": ISSUER, "sub": "system:serviceaccount:ci:deployer"}

    def token(alg: str, kid: str, **more: Any) -> str:
        payload = {**claims, "exp": int(time.time()) + 3600, **more}
        return jose_jwt.encode(
            {"alg": alg, "kid": kid}, payload, keys[kid], registry=_OneAlgorithm(algorithms=[alg])
        )

    match = federation.verify(token("ES256", "p256"), None)
    assert match.subject == "system:serviceaccount:ci:deployer"
    federation.redeem(match)
    with pytest.raises(FederationRefused) as refused:
        federation.redeem(match)
    assert refused.value.reason == "replayed"
    assert federation.verify(token("EdDSA", "ed"), None).rule.name == "k8s"
    assert federation.verify(token("Ed25519", "ed"), None).rule.name == "k8s"
    forged = token("ES384", "p384").split(".")
    header = base64.urlsafe_b64encode(b'{"alg":"ES256","kid":"p384"}').rstrip(b"=").decode()
    with pytest.raises(FederationRefused) as refused:
        federation.verify(".".join([header, *forged[1:]]), None)
    assert refused.value.reason == "algorithm does not match the key"
