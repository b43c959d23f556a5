"""Local users' email addresses (issue 15.7): an admin sets them (CLI, admin API,
dashboard, CSV; the CLI and dashboard have tests of their own), they are
``email_verified: true`` in ID tokens and userinfo, and one address is one person's.

Service rules and the admin API over the Flask test client with a real bearer token,
then the claims of a real code flow, on every backend.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any
from urllib.parse import quote

import jwt
import pytest
from flask import Flask
from flask.testing import FlaskClient

from authserver.identity.users import EmailTaken, UserError, UserService, validate_email
from authserver.storage.users import DuplicateEmail, SqlUserRepository
from authserver.web.services import Services

from .support.factories import PASSWORD
from .support.flows import flask_refresh, flask_sign_in, flask_tokens, jwt_claims
from .test_admin_api_schema import bearer, token_for
from .test_users import engine_of

EMAIL_SCOPE = "openid profile email offline_access"


def service(app: Flask) -> UserService:
    users = Services.of(app).users
    return users


# -- what an address may be ------------------------------------------------------------


@pytest.mark.parametrize(
    ("typed", "stored"),
    [
        ("Bob@Example.COM", "Bob@example.com"),  # the domain lower-cased, not the local part
        ("  first.last+tag@mail.example.co.uk ", "first.last+tag@mail.example.co.uk"),
        ("o'neil_2@xn--bcher-kva.example", "o'neil_2@xn--bcher-kva.example"),
        ("x@a-b.example", "x@a-b.example"),
    ],
)
def test_good_addresses_are_kept_with_the_domain_lower_cased(typed: str, stored: str) -> None:
    assert validate_email(typed) == stored


@pytest.mark.parametrize(
    ("typed", "reason"),
    [
        ("", "may not be empty"),
        ("bob", "not an email address"),
        ("@example.com", "not an email address"),
        ("bob@", "not an email address"),
        ("bob@@example.com", "the part before @"),
        ("a..b@example.com", "the part before @"),
        (".a@example.com", "the part before @"),
        ("a.@example.com", "the part before @"),
        ("a b@example.com", "the part before @"),
        ('"a"@example.com', "the part before @"),
        ("b\u00f8b@example.com", "the part before @"),  # ASCII only: it goes into headers
        ("bob\n@example.com", "the part before @"),
        ("=cmd@example.com", "spreadsheet formula"),
        ("-x@example.com", "spreadsheet formula"),
        ("bob@localhost", "the domain must be a host name"),
        ("bob@exa_mple.com", "the domain must be a host name"),
        ("bob@-example.com", "the domain must be a host name"),
        ("bob@example..com", "the domain must be a host name"),
        ("bob@10.0.0.1", "the domain must be a host name"),
        ("bob@b\u00fccher.example", "the domain must be a host name"),
        ("x" * 65 + "@example.com", "at most 64"),
        ("a@" + "b" * 250 + ".com", "at most 254"),
    ],
)
def test_bad_addresses_are_refused_with_the_reason(typed: str, reason: str) -> None:
    with pytest.raises(UserError, match=reason) as raised:
        validate_email(typed)
    assert "\n" not in str(raised.value)


# -- the rules of the service ----------------------------------------------------------


def test_an_admin_set_address_is_verified_and_one_persons(app: Flask) -> None:
    users = service(app)
    dora, _ = users.create_local("dora", PASSWORD, email="Dora@Example.com")
    assert (dora.email, dora.email_verified) == ("Dora@example.com", True)
    assert users.by_username("dora") == dora
    with pytest.raises(EmailTaken, match="user 'dora' already has the email address"):
        users.create_local("erin", PASSWORD, email="DORA@example.COM")
    assert users.by_username("erin") is None

    erin, _ = users.create_local("erin", PASSWORD)
    assert (erin.email, erin.email_verified) == (None, None)
    with pytest.raises(EmailTaken):
        users.set_email("erin", "dora@example.com")
    assert users.set_email("dora", "dora@EXAMPLE.com").email == "dora@example.com"  # hers
    erin = users.set_email("erin", "erin@example.com")
    assert (erin.email, erin.email_verified) == ("erin@example.com", True)
    assert users.by_username("erin") == erin
    removed = users.set_email("erin", None)
    assert (removed.email, removed.email_verified) == (None, None)
    assert users.by_username("erin") == removed


def test_upstream_addresses_are_not_set_here_but_are_not_taken_either(app: Flask) -> None:
    users = service(app)
    carol = users.provisioning.federated(
        "https://idp.example.com",
        "carol-1",
        email="carol@example.com",
        name="Carol",
        groups=[],
        email_verified=False,
    )
    with pytest.raises(UserError, match="signs in through upstream"):
        users.set_email(carol.username, "other@example.com")
    with pytest.raises(EmailTaken, match=f"user {carol.username!r} already has"):
        users.create_local("frank", PASSWORD, email="Carol@example.com")
    # an upstream user's address stays the upstream's word, even if a local user has it
    users.create_local("gina", PASSWORD, email="gina@example.com")
    gina_upstream = users.provisioning.federated(
        "https://idp.example.com", "gina-1", email="gina@example.com", name=None, groups=[]
    )
    assert gina_upstream.email == "gina@example.com"
    assert gina_upstream.email_verified is None


def test_the_database_keeps_one_local_user_per_address_under_a_race(app: Flask) -> None:
    """Two admins passing the service's check at the same moment: the unique index on
    local users' addresses refuses the second write."""
    repo = SqlUserRepository(engine_of(app))
    first, _ = service(app).create_local("hank", PASSWORD, email="hank@example.com")
    record = repo.by_username("hank")
    assert record is not None
    twin = replace(record, person=replace(record.person, id="f" * 32, username="hank-twin"))
    with pytest.raises(DuplicateEmail):
        repo.insert(twin)
    other = replace(twin, person=replace(twin.person, email=None))
    repo.insert(other)
    with pytest.raises(DuplicateEmail):
        repo.update(other.person.id, email="hank@example.com")
    assert [r.person.username for r in repo.by_email("HANK@example.com")] == ["hank"]
    assert first.email == "hank@example.com"


# -- the admin API -------------------------------------------------------------------------


def api(app: Flask, method: str, path: str, **kw: Any) -> Any:
    token = token_for(app, "ci-b64")  # a static client of role admin
    return app.test_client().open(f"/api/v1{path}", method=method, headers=bearer(token), **kw)


def audit(app: Flask) -> list[tuple[str, str | None, dict[str, Any]]]:
    Services.of(app).events.flush()
    with app.app_context():
        rows = Services.of(app).audit.page(limit=100)
    return [(e.event, e.target, e.details) for e in reversed(rows) if e.event.startswith("user")]


def test_admin_api_creates_and_changes_addresses(app: Flask) -> None:
    created = api(
        app,
        "POST",
        "/users",
        json={"username": "ivy", "password": PASSWORD, "email": "Ivy@Example.com"},
    )
    assert created.status_code == 201, created.get_json()
    user = created.get_json()["user"]
    assert (user["email"], user["email_verified"]) == ("Ivy@example.com", True)

    taken = api(app, "POST", "/users", json={"username": "jack", "email": "ivy@example.COM"})
    assert taken.status_code == 409
    assert taken.get_json() == {
        "error": "conflict",
        "error_description": "user 'ivy' already has the email address 'ivy@example.com'",
    }
    bad = api(app, "POST", "/users", json={"username": "jack", "email": "jack@localhost"})
    assert bad.status_code == 400
    assert "the domain must be a host name" in bad.get_json()["error_description"]
    assert api(app, "GET", "/users/jack").status_code == 404

    assert api(app, "POST", "/users", json={"username": "jack"}).status_code == 201
    changed = api(app, "PATCH", "/users/jack", json={"email": "jack@example.com", "role": "viewer"})
    assert changed.status_code == 200, changed.get_json()
    body = changed.get_json()
    assert (body["email"], body["email_verified"], body["role"]) == (
        "jack@example.com",
        True,
        "viewer",
    )
    # taken: a 409, and the role asked for in the same request is not changed either
    refused = api(app, "PATCH", "/users/jack", json={"email": "IVY@example.com", "role": "admin"})
    assert refused.status_code == 409
    assert "already has the email address" in refused.get_json()["error_description"]
    # a bad role changes nothing either, the address included
    refused = api(app, "PATCH", "/users/jack", json={"email": "j2@example.com", "role": "root"})
    assert refused.status_code == 400
    jack = api(app, "GET", "/users/jack").get_json()
    assert (jack["email"], jack["role"]) == ("jack@example.com", "viewer")
    wrong_type = api(app, "PATCH", "/users/jack", json={"email": 5})
    assert wrong_type.status_code == 400
    assert wrong_type.get_json()["error_description"] == "The field 'email' has the wrong type."

    removed = api(app, "PATCH", "/users/jack", json={"email": None})
    assert removed.status_code == 200
    assert (removed.get_json()["email"], removed.get_json()["email_verified"]) == (None, None)

    upstream = service(app).provisioning.federated(
        "https://idp.example.com", "kim-1", email="kim@example.com", name=None, groups=[]
    )
    path = f"/users/{quote(upstream.username, safe='')}"
    refused = api(app, "PATCH", path, json={"email": "k@example.com"})
    assert refused.status_code == 400
    assert "signs in through upstream" in refused.get_json()["error_description"]
    listed = {u["username"]: u for u in api(app, "GET", "/users").get_json()["items"]}
    assert listed[upstream.username]["email_verified"] is None

    assert audit(app) == [
        ("user_created", "ivy", {"role": "user", "email": "Ivy@example.com"}),
        ("user_created", "jack", {"role": "user"}),
        ("user_updated", "jack", {"email": "jack@example.com"}),
        ("user_updated", "jack", {"role": "viewer"}),
        ("user_updated", "jack", {"email": None}),
    ]


# -- the claims ------------------------------------------------------------------------


def verified_id_token(client: FlaskClient, token: str) -> dict[str, Any]:
    """The ID token's claims, its signature checked against our JWKS."""
    jwks = jwt.PyJWKSet.from_dict(client.get("/.well-known/jwks.json").get_json())
    kid = jwt.get_unverified_header(token)["kid"]
    key = next(k for k in jwks.keys if k.key_id == kid)
    claims: dict[str, Any] = jwt.decode(
        token, key, algorithms=["RS256"], audience="cli", issuer="http://127.0.0.1:8080"
    )
    return claims


def userinfo(client: FlaskClient, access_token: str) -> dict[str, Any]:
    response = client.get("/oauth2/userinfo", headers=bearer(access_token))
    assert response.status_code == 200, response.get_data(as_text=True)
    body: dict[str, Any] = response.get_json()
    return body


def test_tokens_and_userinfo_carry_the_admin_set_address_as_verified(app: Flask) -> None:
    """DESIGN.md: ``email_verified`` is true for an address an admin set (what
    oauth2-proxy as a relying party needs to let the person in)."""
    created = api(
        app,
        "POST",
        "/users",
        json={"username": "lena", "password": PASSWORD, "email": "Lena@Example.com"},
    )
    assert created.status_code == 201
    lena_id = created.get_json()["user"]["id"]
    client = flask_sign_in(app, "lena")
    tokens = flask_tokens(client, EMAIL_SCOPE)

    id_token = verified_id_token(client, tokens["id_token"])
    assert id_token["sub"] == lena_id
    assert (id_token["email"], id_token["email_verified"]) == ("Lena@example.com", True)
    info = userinfo(client, tokens["access_token"])
    assert (info["email"], info["email_verified"]) == ("Lena@example.com", True)
    assert jwt_claims(tokens["access_token"])["email"] == "Lena@example.com"
    # without the email scope, neither ID token nor userinfo names the address
    plain = flask_tokens(client, "openid profile offline_access")
    assert "email" not in verified_id_token(client, plain["id_token"])
    assert "email_verified" not in userinfo(client, plain["access_token"])

    # a new address shows in the next refreshed token and in userinfo at once
    assert api(app, "PATCH", "/users/lena", json={"email": "lena@new.example"}).status_code == 200
    refreshed = flask_refresh(client, tokens["refresh_token"])
    assert refreshed.status_code == 200, refreshed.get_data(as_text=True)
    assert jwt_claims(refreshed.get_json()["access_token"])["email"] == "lena@new.example"
    info = userinfo(client, tokens["access_token"])
    assert (info["email"], info["email_verified"]) == ("lena@new.example", True)

    # removed: no email claim anywhere, and no email_verified without an address
    assert api(app, "PATCH", "/users/lena", json={"email": None}).status_code == 200
    after = flask_tokens(client, EMAIL_SCOPE)
    assert "email" not in jwt_claims(after["access_token"])
    id_token = verified_id_token(client, after["id_token"])
    assert "email" not in id_token
    assert "email_verified" not in id_token
    info = userinfo(client, after["access_token"])
    assert info["sub"] == lena_id
    assert "email" not in info
    assert "email_verified" not in info
