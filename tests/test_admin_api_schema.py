"""The admin API and its OpenAPI 3.1 document, checked against each other.

Schemathesis generates requests (valid and invalid) for every documented operation and
sends them to the app with a real admin token; every response must be documented (its
status, content type, headers and body schema) and none may be a server error. Plain
tests check that the document and the URL map name the same operations, that the
document is valid OpenAPI 3.1, and how the API treats missing, foreign and weak tokens.
"""

from __future__ import annotations

import base64
import re
from typing import Any

import jwt
import pytest
import schemathesis
from flask import Flask
from hypothesis import HealthCheck, settings
from openapi_spec_validator import validate
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from authserver.clock import ManualClock
from authserver.web import admin_models
from authserver.web.admin_api import openapi_document
from authserver.web.services import Services

from .support.factories import AUDIENCES, SECRETS

ISSUER = "http://127.0.0.1:8080"
API = "/api/v1"
#: HTTP methods an OpenAPI path item may hold (HEAD and OPTIONS are Flask's own).
METHODS = {"get", "post", "put", "patch", "delete"}
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]


def token_for(app: Flask, client_id: str, audience: str | None = ISSUER + API) -> str:
    """An access token of a static client by the client credentials grant."""
    basic = base64.b64encode(f"{client_id}:{SECRETS[client_id]}".encode()).decode()
    data = {"grant_type": "client_credentials"}
    if audience is not None:
        data["audience"] = audience
    response = app.test_client().post(
        "/oauth2/token", data=data, headers={"Authorization": f"Basic {basic}"}
    )
    assert response.status_code == 200, response.get_data(as_text=True)
    token: str = response.get_json()["access_token"]
    return token


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def document(app: Flask) -> dict[str, Any]:
    response = app.test_client().get(f"{API}/openapi.json")
    assert response.status_code == 200
    body: dict[str, Any] = response.get_json()
    return body


# -- generated requests -------------------------------------------------------------------


@pytest.fixture(scope="module")
def admin_token(module_app: Flask) -> str:
    """The static ``ci-b64`` client (role admin): generated deletes cannot take it away."""
    return token_for(module_app, "ci-b64")


#: The document the app serves (``test_document_is_served_without_a_token_...`` checks).
schema = schemathesis.openapi.from_dict(openapi_document(ISSUER))


@schema.parametrize()
@settings(
    max_examples=15,
    deadline=None,
    database=None,  # no .hypothesis/ in the work tree; a failure prints its example
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
def test_api_conforms_to_its_document(
    case: schemathesis.Case, module_app: Flask, admin_token: str
) -> None:
    case.call_and_validate(app=module_app, headers=bearer(admin_token), checks=CHECKS)


# -- the document and the URL map --------------------------------------------------------


def test_document_is_served_without_a_token_and_is_valid_openapi_3_1(module_app: Flask) -> None:
    response = module_app.test_client().get(f"{API}/openapi.json")
    assert response.status_code == 200
    assert response.mimetype == "application/json"
    body = response.get_json()
    assert body["openapi"] == "3.1.0"
    assert body["servers"] == [{"url": ISSUER + API}]
    validate(body)  # raises on an invalid document
    assert body == openapi_document(ISSUER)  # what the generated requests were made from


def test_the_schemas_are_generated_from_the_models_and_nothing_else() -> None:
    """Every shape of the API is a model of ``admin_models``: the document's schemas are
    exactly what ``models_json_schema`` makes of them, and the audit log's query
    parameters are exactly the properties of its query model."""
    query = admin_models.AuditEventQuery
    models = [
        value
        for name, value in vars(admin_models).items()
        if isinstance(value, type)
        and name.isidentifier()  # not the RootModel[...] that pydantic keeps there
        and issubclass(value, BaseModel)
        and value.__module__ == admin_models.__name__
        and value not in (admin_models.Shape, query)
    ]
    _, generated = models_json_schema(
        [(model, "validation") for model in models],
        ref_template="#/components/schemas/{model}",
        schema_generator=admin_models.SchemaGenerator,
    )
    document = openapi_document(ISSUER)
    assert document["components"]["schemas"] == generated["$defs"]
    assert set(generated["$defs"]) == {model.__name__ for model in models}

    properties = query.model_json_schema(schema_generator=admin_models.SchemaGenerator)
    parameters = document["paths"]["/audit-events"]["get"]["parameters"]
    assert {p["name"]: {**p["schema"], "description": p["description"]} for p in parameters} == (
        properties["properties"]
    )
    assert all(p["in"] == "query" and "required" not in p for p in parameters)


def test_every_route_is_documented_and_every_documented_operation_exists(module_app: Flask) -> None:
    documented = {
        (path, method)
        for path, item in document(module_app)["paths"].items()
        for method in item
        if method in METHODS
    }
    routed = set()
    for rule in module_app.url_map.iter_rules():
        if not rule.rule.startswith(API + "/") or rule.endpoint == "admin_api.unknown":
            continue
        path = rule.rule.removeprefix(API).replace("<", "{").replace(">", "}")
        for method in (rule.methods or set()) - {"HEAD", "OPTIONS"}:
            routed.add((path, method.lower()))
    assert routed == documented


def test_every_operation_has_an_id_a_summary_and_its_error_responses(module_app: Flask) -> None:
    ids = []
    for path, item in document(module_app)["paths"].items():
        for method, operation in item.items():
            if method not in METHODS:
                continue
            ids.append(operation["operationId"])
            assert operation["summary"]
            if path == "/openapi.json":
                assert operation["security"] == []
                continue
            assert {"401", "403"} <= operation["responses"].keys(), (path, method)
            if "requestBody" in operation:
                assert {"400", "415"} <= operation["responses"].keys(), (path, method)
            if "{" in path:
                assert "404" in operation["responses"], (path, method)
    assert len(ids) == len(set(ids))


# -- tokens and roles --------------------------------------------------------------------


def test_no_token_is_401_with_a_bearer_challenge(module_app: Flask) -> None:
    response = module_app.test_client().get(f"{API}/users")
    assert response.status_code == 401
    assert response.get_json()["error"] == "unauthorized"
    assert response.headers["WWW-Authenticate"] == 'Bearer realm="authserver"'


def test_a_token_for_another_audience_is_401_invalid_token(module_app: Flask) -> None:
    token = token_for(module_app, "ci-b64", audience=AUDIENCES[0])
    response = module_app.test_client().get(f"{API}/users", headers=bearer(token))
    assert response.status_code == 401
    assert response.get_json()["error"] == "invalid_token"
    assert response.headers["WWW-Authenticate"].startswith('Bearer realm="authserver", ')
    assert 'error="invalid_token"' in response.headers["WWW-Authenticate"]


def test_a_garbage_token_is_401_invalid_token(module_app: Flask) -> None:
    response = module_app.test_client().get(f"{API}/me", headers=bearer("not.a.jwt"))
    assert response.status_code == 401
    assert response.get_json()["error"] == "invalid_token"


def test_a_user_token_reads_users_and_roles_only(module_app: Flask) -> None:
    client = module_app.test_client()
    headers = bearer(token_for(module_app, "ci"))  # role user
    for path in ("/users", "/roles", "/me"):
        assert client.get(API + path, headers=headers).status_code == 200, path
    forbidden = [
        ("post", "/users", {"username": "mallory"}),
        ("patch", "/users/alice", {"role": "admin"}),
        ("delete", "/users/alice", None),
        ("get", "/service-accounts", None),
        ("post", "/service-accounts", {"name": "x"}),
        ("get", "/service-accounts/x", None),
        ("post", "/service-accounts/x/rotate", None),
        ("delete", "/service-accounts/x", None),
        ("get", "/clients", None),
        ("get", "/clients/ci", None),
        ("get", "/keys", None),
        ("post", "/keys/rotate", None),
        ("get", "/audit-events", None),
        # not their own password: a client has none
        ("put", "/users/alice/password", {"password": "another-password-1"}),
    ]
    for method, path, body in forbidden:
        response = client.open(API + path, method=method.upper(), headers=headers, json=body)
        assert response.status_code == 403, (method, path, response.get_json())
        assert response.get_json()["error"] == "insufficient_scope"
        challenge = response.headers["WWW-Authenticate"]
        assert challenge.startswith("Bearer ")
        assert 'error="insufficient_scope"' in challenge


def test_a_token_with_no_role_is_403_everywhere(module_app: Flask) -> None:
    headers = bearer(token_for(module_app, "ci-argon"))  # no roles
    for path in ("/me", "/users", "/roles"):
        response = module_app.test_client().get(API + path, headers=headers)
        assert response.status_code == 403, path


def test_audit_pages_follow_next(app: Flask) -> None:
    client = app.test_client()
    headers = bearer(token_for(app, "ci-b64"))
    for index in range(5):
        created = client.post(f"{API}/users", headers=headers, json={"username": f"user{index}"})
        assert created.status_code == 201
    seen: list[int] = []
    url: str | None = f"{API}/audit-events?limit=2&event=user_created"
    while url:
        page = client.get(url, headers=headers).get_json()
        seen += [event["id"] for event in page["items"]]
        url = page["next"] and page["next"].removeprefix(ISSUER)
    assert len(seen) == 5
    assert seen == sorted(seen, reverse=True)


# -- inputs the generator rarely makes ------------------------------------------------------


ODD_INPUTS: list[tuple[str, str, str | dict[str, Any] | None, int]] = [
    # PostgreSQL cannot hold (nor look up) NUL: no such user, never a 500
    ("GET", "/users/a%00b", None, 404),
    ("PATCH", "/users/a%00b", {}, 404),
    ("DELETE", "/users/a%00b", None, 404),
    ("PUT", "/users/a%00b/password", {"password": "a-long-password"}, 404),
    ("GET", "/service-accounts/a%00b", None, 404),
    ("POST", "/service-accounts/a%00b/rotate", None, 404),
    ("GET", "/clients/a%00b", None, 404),
    ("GET", "/audit-events?event=a%00b", None, 400),
    ("GET", "/audit-events?event=" + "e" * 65, None, 400),
    ("GET", "/audit-events?limit=0", None, 400),
    ("GET", "/audit-events?limit=201", None, 400),
    ("GET", "/audit-events?before=x", None, 400),
    # a lone surrogate is valid JSON text but no string of ours
    ("POST", "/users", '{"username": "bob", "password": "\\ud800-long-password"}', 400),
    ("PUT", "/users/alice/password", '{"password": "\\udfff-long-password"}', 400),
    # nested deeper than Python's parser goes
    ("POST", "/users", "[" * 50_000, 400),
    ("POST", "/service-accounts", '{"a":' * 10_000, 400),
    ("POST", "/users", "x" * 70_000, 413),
    ("POST", "/users", '{"username": 5}', 400),
    ("PATCH", "/users/alice", '{"disabled": 1}', 400),
    ("POST", "/service-accounts", '{"name": "n", "expires_in": true}', 400),
    ("POST", "/service-accounts", '{"name": "n", "expires_in": 1.5}', 400),
    ("POST", "/service-accounts", '{"name": "n", "expires_in": 0}', 400),
    ("POST", "/service-accounts", '{"name": "n", "scopes": [1]}', 400),
    ("POST", "/keys/rotate", '{"immediate": "yes"}', 400),
]


def test_odd_input_is_a_documented_client_error(module_app: Flask) -> None:
    client = module_app.test_client()  # alice exists
    headers = bearer(token_for(module_app, "ci-b64"))
    for method, path, body, status in ODD_INPUTS:
        kwargs: dict[str, Any] = {"json": body} if isinstance(body, dict) else {}
        if isinstance(body, str):
            kwargs = {"data": body, "content_type": "application/json"}
        response = client.open(API + path, method=method, headers=headers, **kwargs)
        where = f"{method} {path[:60]} {str(body)[:60]}"
        assert response.status_code == status, (where, response.get_data(as_text=True))
        assert response.get_json()["error"] in ("invalid_request", "not_found"), where
        assert str(status) in documented_operation(module_app, method, path)["responses"], where


def documented_operation(app: Flask, method: str, path: str) -> dict[str, Any]:
    """The document's operation for a concrete ``path`` (query string and all)."""
    path = path.partition("?")[0]
    for template, item in document(app)["paths"].items():
        if re.fullmatch(re.sub(r"\{[^}]+\}", "[^/]+", template), path):
            operation: dict[str, Any] = item[method.lower()]
            return operation
    raise AssertionError(f"{path} is not documented")


def test_a_known_path_with_another_method_is_405_with_allow(module_app: Flask) -> None:
    headers = bearer(token_for(module_app, "ci-b64"))
    response = module_app.test_client().get(f"{API}/keys/rotate", headers=headers)
    assert response.status_code == 405
    # Flask answers OPTIONS on every route itself, so Allow lists it too (RFC 9110 §10.2.1).
    assert set(response.headers["Allow"].split(", ")) == {"POST", "OPTIONS"}
    response = module_app.test_client().put(f"{API}/users/alice", headers=headers)
    assert response.status_code == 405
    allowed = set(response.headers["Allow"].split(", "))
    assert allowed == {"GET", "HEAD", "PATCH", "DELETE", "OPTIONS"}
    assert module_app.test_client().get(f"{API}/nothing", headers=headers).status_code == 404


def test_the_default_audience_never_reaches_the_api(make_app: Any) -> None:
    """With no ``tokens.audiences`` every token's ``aud`` is the issuer; none of them may
    act here: only a token asked for the API's URL (RFC 8707) does."""
    app = make_app(tokens={"access_token_ttl": "1h", "audiences": []})
    default = token_for(app, "ci-b64", audience=None)
    assert jwt.decode(default, options={"verify_signature": False})["aud"] == ISSUER
    response = app.test_client().get(f"{API}/users", headers=bearer(default))
    assert response.status_code == 401
    assert response.get_json()["error"] == "invalid_token"
    asked = token_for(app, "ci-b64")
    assert app.test_client().get(f"{API}/users", headers=bearer(asked)).status_code == 200


def test_a_rotated_or_expired_service_account_stops_at_once(make_app: Any) -> None:
    clock = ManualClock()
    app = make_app(clock=clock)
    with app.app_context():
        service = Services.of(app).service_accounts
        _, token = service.create("deployer", role="admin", expires_in=2)
    issued = app.test_client().post(
        "/oauth2/token",
        data={"grant_type": "client_credentials", "client_secret": token, "audience": ISSUER + API},
    )
    access = issued.get_json()["access_token"]
    client = app.test_client()
    assert client.get(f"{API}/service-accounts", headers=bearer(access)).status_code == 200
    clock.advance(2.2)  # expired: its access token still has an hour, but not here
    expired = client.get(f"{API}/service-accounts", headers=bearer(access))
    assert expired.status_code == 401
    assert expired.get_json()["error"] == "invalid_token"

    with app.app_context():
        _, token = service.create("builder", role="admin")
    access = client.post(
        "/oauth2/token",
        data={"grant_type": "client_credentials", "client_secret": token, "audience": ISSUER + API},
    ).get_json()["access_token"]
    clock.advance(1.1)  # ``iat`` has whole seconds
    with app.app_context():
        service.rotate("builder")
    rotated = client.post(
        f"{API}/service-accounts",
        json={"name": "backdoor", "role": "admin", "expires_in": None},
        headers=bearer(access),
    )
    assert rotated.status_code == 401
    with app.app_context():
        assert [i.name for i in service.list()] == ["builder", "deployer"]


def test_a_third_party_client_may_not_ask_for_the_admin_api(make_app: Any) -> None:
    """A client with ``consent: true`` (the person approves scopes, not this audience)
    gets ``invalid_target`` (RFC 8707 §2) for the admin API; a first-party one may."""
    from urllib.parse import parse_qs, urlsplit

    from .support.factories import new_local_user
    from .support.flows import flask_authorize, flask_sign_in, pkce_pair

    app = make_app()
    client = flask_sign_in(app, new_local_user(app, "admin"))
    _, challenge = pkce_pair()
    common = {
        "response_type": "code",
        "scope": "openid",
        "state": "s",
        "code_challenge": challenge,
        "code_challenge_method": "S256",
        "resource": ISSUER + API,
    }
    third = client.get(
        "/oauth2/authorize",
        query_string={
            **common,
            "client_id": "webapp",
            "redirect_uri": "https://app.example.com/cb",
        },
    )
    assert third.status_code == 302
    query = parse_qs(urlsplit(third.headers["Location"]).query)
    assert query["error"] == ["invalid_target"]
    first = flask_authorize(
        client,
        {**common, "client_id": "cli", "redirect_uri": "http://127.0.0.1:43210/callback"},
    )
    assert first.status_code == 302
    assert "code" in parse_qs(urlsplit(first.headers["Location"]).query)
