"""The admin API's answers to bad input, word for word: each refusal's status and
``error_description``, which of several faults is named first (the first in the body,
then a missing field, then an item of a list), and that a refused request changes nothing.
"""

from __future__ import annotations

from typing import Any

from flask import Flask

from tests.test_admin_api_schema import API, bearer, token_for

#: ``JSON`` marks a body sent as it is written (so the order of its fields is kept);
#: a dict is sent as JSON (its keys sorted); ``NOT_JSON`` is a body of another type.
NOT_JSON = "not-json"

#: (method, path, body, status, error_description; None for a success)
CASES: list[tuple[str, str, Any, int, str | None]] = [
    ("POST", "/users", NOT_JSON, 415, "The body must be JSON (application/json)."),
    ("POST", "/users", "[1]", 400, "The body must be a JSON object."),
    ("POST", "/users", "[" * 50_000, 400, "The body is nested too deeply."),
    ("POST", "/users", '{"a":' * 10_000, 400, "The body is nested too deeply."),
    ("POST", "/users", "{not json", 400, "The body must be a JSON object."),
    (
        "POST",
        "/users",
        '{"username": "bob", "password": "\\ud800-long-password"}',
        400,
        "The body has text that is not Unicode.",
    ),
    ("POST", "/users", {"zz": 1}, 400, "Unknown field 'zz'."),
    (
        "POST",
        "/users",
        {"z" * 100: 1},
        400,
        f"Unknown field '{'z' * 64}'.",
    ),
    ("POST", "/users", {}, 400, "The field 'username' is required."),
    ("POST", "/users", {"username": 5}, 400, "The field 'username' has the wrong type."),
    ("POST", "/users", {"username": None}, 400, "The field 'username' has the wrong type."),
    ("POST", "/users", {"role": 5}, 400, "The field 'role' has the wrong type."),
    ("POST", "/users", {"zz": 1, "username": 5}, 400, "The field 'username' has the wrong type."),
    ("POST", "/users", {"username": 5, "zz": 1}, 400, "The field 'username' has the wrong type."),
    (
        "POST",
        "/users",
        {"password": 5, "username": 7},
        400,
        "The field 'password' has the wrong type.",
    ),
    (
        "POST",
        "/users",
        {"username": "bob2", "role": None},
        400,
        "The field 'role' has the wrong type.",
    ),
    (
        "POST",
        "/users",
        {"username": "bob2", "email": None},
        400,
        "The field 'email' has the wrong type.",
    ),
    (
        "POST",
        "/users",
        {"username": "bob2", "password": "short"},
        400,
        "a password needs at least 12 characters",
    ),
    (
        "POST",
        "/users",
        {"username": "bob 2"},
        400,
        "username 'bob 2' has whitespace or control characters",
    ),
    ("POST", "/users", {"username": "alice"}, 409, "user 'alice' already exists"),
    ("PATCH", "/users/alice", {"disabled": 1}, 400, "The field 'disabled' has the wrong type."),
    ("PATCH", "/users/alice", {"disabled": None}, 400, "The field 'disabled' has the wrong type."),
    ("PATCH", "/users/alice", {"role": None}, 400, "The field 'role' has the wrong type."),
    ("PATCH", "/users/alice", {"email": 5}, 400, "The field 'email' has the wrong type."),
    ("PATCH", "/users/alice", {"email": []}, 400, "The field 'email' has the wrong type."),
    ("PATCH", "/users/nobody", {"email": 5}, 400, "The field 'email' has the wrong type."),
    ("PATCH", "/users/nobody", {}, 404, "no user 'nobody'"),
    ("PUT", "/users/alice/password", {}, 400, "The field 'password' is required."),
    (
        "PUT",
        "/users/alice/password",
        {"password": None},
        400,
        "The field 'password' has the wrong type.",
    ),
    (
        "PUT",
        "/users/alice/password",
        {"current_password": 5, "password": "x"},
        400,
        "The field 'current_password' has the wrong type.",
    ),
    (
        "PUT",
        "/users/alice/password",
        {"password": "short"},
        400,
        "a password needs at least 12 characters",
    ),
    ("PUT", "/users/nobody/password", {"password": "short"}, 404, "no user 'nobody'"),
    ("POST", "/service-accounts", {"scopes": [1]}, 400, "The field 'name' is required."),
    (
        "POST",
        "/service-accounts",
        {"name": "n", "scopes": [1]},
        400,
        "The field 'scopes' must be a list of strings.",
    ),
    (
        "POST",
        "/service-accounts",
        {"name": "n", "scopes": 5},
        400,
        "The field 'scopes' has the wrong type.",
    ),
    (
        "POST",
        "/service-accounts",
        {"name": "n", "scopes": [1], "role": 5},
        400,
        "The field 'role' has the wrong type.",
    ),
    (
        "POST",
        "/service-accounts",
        {"name": "n", "scopes": ["x", None]},
        400,
        "The field 'scopes' must be a list of strings.",
    ),
    (
        "POST",
        "/service-accounts",
        {"name": "n", "expires_in": True},
        400,
        "The field 'expires_in' has the wrong type.",
    ),
    (
        "POST",
        "/service-accounts",
        {"name": "n", "expires_in": 1.5},
        400,
        "The field 'expires_in' has the wrong type.",
    ),
    (
        "POST",
        "/service-accounts",
        {"name": "n", "expires_in": 2.0},
        400,
        "The field 'expires_in' has the wrong type.",
    ),
    (
        "POST",
        "/service-accounts",
        {"name": "n", "expires_in": 0},
        400,
        "the expiry must be more than 0 s and at most 3650 days (or never)",
    ),
    (
        "POST",
        "/service-accounts",
        {"name": "n", "expires_in": 1000000000000000000000000000000},
        400,
        "the expiry must be more than 0 s and at most 3650 days (or never)",
    ),
    (
        "POST",
        "/service-accounts",
        {"name": "n", "expires_in": "5"},
        400,
        "The field 'expires_in' has the wrong type.",
    ),
    (
        "POST",
        "/service-accounts",
        {"name": "n", "key_algorithm": 5},
        400,
        "The field 'key_algorithm' has the wrong type.",
    ),
    (
        "POST",
        "/service-accounts",
        {"name": "n", "key_algorithm": None},
        400,
        "The field 'key_algorithm' has the wrong type.",
    ),
    (
        "POST",
        "/service-accounts",
        {"name": "n", "key_algorithm": "HS256"},
        400,
        "the key algorithm is one of ES256, RS256, EdDSA, not 'HS256'",
    ),
    (
        "POST",
        "/service-accounts",
        {"name": "bad name"},
        400,
        "a service account name is 1 to 64 letters, digits, '.', '_' or '-', "
        "starting with a letter or digit",
    ),
    (
        "POST",
        "/service-accounts",
        {"name": "deploy-bot"},
        409,
        "service account 'deploy-bot' already exists",
    ),
    (
        "POST",
        "/service-accounts/deploy-bot/keys",
        {"algorithm": 5},
        400,
        "The field 'algorithm' has the wrong type.",
    ),
    (
        "POST",
        "/service-accounts/deploy-bot/keys",
        {"algorithm": None},
        400,
        "The field 'algorithm' has the wrong type.",
    ),
    (
        "POST",
        "/service-accounts/deploy-bot/keys",
        {"algorithm": "HS256"},
        400,
        "the key algorithm is one of ES256, RS256, EdDSA, not 'HS256'",
    ),
    ("POST", "/service-accounts/deploy-bot/keys", {"zz": 1}, 400, "Unknown field 'zz'."),
    ("POST", "/service-accounts/nobody/keys", {"zz": 1}, 400, "Unknown field 'zz'."),
    (
        "POST",
        "/keys/rotate",
        {"immediate": "yes"},
        400,
        "The field 'immediate' has the wrong type.",
    ),
    ("POST", "/keys/rotate", {"immediate": None}, 400, "The field 'immediate' has the wrong type."),
    ("POST", "/keys/rotate", {"zz": None}, 400, "Unknown field 'zz'."),
    ("POST", "/keys/rotate", "[]", 400, "The body must be a JSON object."),
    ("GET", "/audit-events?limit=x", None, 400, "'limit' must be an integer."),
    ("GET", "/audit-events?limit=0", None, 400, "'limit' must be from 1 to 200."),
    ("GET", "/audit-events?limit=201", None, 400, "'limit' must be from 1 to 200."),
    ("GET", "/audit-events?limit=1.5", None, 400, "'limit' must be an integer."),
    ("GET", "/audit-events?before=0", None, 400, "'before' must be from 1 to 9223372036854775807."),
    (
        "GET",
        "/audit-events?before=9223372036854775808",
        None,
        400,
        "'before' must be from 1 to 9223372036854775807.",
    ),
    ("GET", "/audit-events?limit=x&before=y", None, 400, "'limit' must be an integer."),
    ("GET", "/audit-events?before=y&limit=x", None, 400, "'limit' must be an integer."),
    ("GET", "/audit-events?before=y&event=" + "e" * 65, None, 400, "'before' must be an integer."),
    (
        "GET",
        "/audit-events?event=" + "e" * 65,
        None,
        400,
        "The event filter is at most 64 characters.",
    ),
    ("GET", "/audit-events?event=a%00b", None, 400, "The event filter has control characters."),
    (
        "GET",
        "/audit-events?event=" + "%01" * 65,
        None,
        400,
        "The event filter is at most 64 characters.",
    ),
    ("GET", "/audit-events?limit=", None, 200, None),
    ("GET", "/audit-events?limit=%205%20", None, 200, None),
    ("GET", "/audit-events?limit=%D9%A3", None, 200, None),
    ("GET", "/audit-events?limit=1_0", None, 200, None),
    ("GET", "/audit-events?limit=%2B5", None, 200, None),
    ("GET", "/audit-events?limit=5&limit=x", None, 200, None),
    ("GET", "/audit-events?event=", None, 200, None),
    ("POST", "/users", '{"zz": 1, "username": 5}', 400, "Unknown field 'zz'."),
    ("POST", "/users", '{"username": 5, "zz": 1}', 400, "The field 'username' has the wrong type."),
    (
        "POST",
        "/users",
        '{"username": 7, "password": 5}',
        400,
        "The field 'username' has the wrong type.",
    ),
    ("POST", "/users", '{"role": 5, "zz": 1}', 400, "The field 'role' has the wrong type."),
    ("POST", "/users", '{"role": "x", "zz": 1, "username": null}', 400, "Unknown field 'zz'."),
    (
        "POST",
        "/users",
        '{"username": 5, "username": "bob3", "role": "nope"}',
        400,
        "unknown role 'nope'; the roles are: admin, user, viewer",
    ),
    (
        "POST",
        "/service-accounts",
        '{"scopes": [1], "name": 5}',
        400,
        "The field 'name' has the wrong type.",
    ),
    ("POST", "/service-accounts", '{"scopes": [1], "zz": 5}', 400, "Unknown field 'zz'."),
    (
        "POST",
        "/service-accounts",
        '{"scopes": [1], "name": "n", "role": 5}',
        400,
        "The field 'role' has the wrong type.",
    ),
    (
        "POST",
        "/service-accounts",
        '{"scopes": [1], "expires_in": 5}',
        400,
        "The field 'name' is required.",
    ),
    (
        "PATCH",
        "/users/alice",
        '{"email": 5, "disabled": "x", "zz": 1}',
        400,
        "The field 'email' has the wrong type.",
    ),
    ("PATCH", "/users/alice", '{"zz": 1, "email": 5}', 400, "Unknown field 'zz'."),
    (
        "PUT",
        "/users/alice/password",
        '{"current_password": 5}',
        400,
        "The field 'current_password' has the wrong type.",
    ),
    ("PUT", "/users/alice/password", '{"zz": 5}', 400, "Unknown field 'zz'."),
    ("POST", "/users", '{"username": 1e400}', 400, "The field 'username' has the wrong type."),
    (
        "POST",
        "/service-accounts",
        '{"name": "n", "expires_in": 1e400}',
        400,
        "The field 'expires_in' has the wrong type.",
    ),
    (
        "POST",
        "/service-accounts",
        '{"name": "n", "expires_in": NaN}',
        400,
        "The field 'expires_in' has the wrong type.",
    ),
]


def send(client: Any, headers: dict[str, str], method: str, path: str, body: Any) -> Any:
    kwargs: dict[str, Any] = {}
    if body == NOT_JSON:
        kwargs = {"data": "{}"}
    elif isinstance(body, str):
        kwargs = {"data": body, "content_type": "application/json"}
    elif body is not None:
        kwargs = {"json": body}
    return client.open(API + path, method=method, headers=headers, **kwargs)


def everything(client: Any, headers: dict[str, str]) -> list[Any]:
    """What a refused request must leave as it was."""
    paths = ["/users", "/service-accounts", "/service-accounts/deploy-bot/keys", "/keys"]
    return [client.get(API + path, headers=headers).get_json() for path in paths]


def test_bad_input_gets_todays_descriptions_and_changes_nothing(module_app: Flask) -> None:
    client = module_app.test_client()  # alice and deploy-bot exist
    headers = bearer(token_for(module_app, "ci-b64"))
    before = everything(client, headers)
    for method, path, body, status, description in CASES:
        response = send(client, headers, method, path, body)
        where = f"{method} {path[:60]} {str(body)[:60]}"
        assert response.status_code == status, (where, response.get_data(as_text=True))
        if description is None:
            assert "error" not in response.get_json(), where
        else:
            assert response.get_json()["error_description"] == description, where
    assert everything(client, headers) == before


def test_role_and_token_refusals_keep_their_descriptions(module_app: Flask) -> None:
    client = module_app.test_client()
    no_role = bearer(token_for(module_app, "ci-argon"))
    response = client.get(API + "/users", headers=no_role)
    assert (response.status_code, response.get_json()) == (
        403,
        {"error": "insufficient_scope", "error_description": "This needs the admin or user role."},
    )
    response = client.post(API + "/users", headers=bearer(token_for(module_app, "ci")), json={})
    assert (response.status_code, response.get_json()) == (
        403,
        {"error": "insufficient_scope", "error_description": "This needs the admin role."},
    )
    response = client.get(API + "/users")
    assert (response.status_code, response.get_json()) == (
        401,
        {
            "error": "unauthorized",
            "error_description": "An access token is required (Authorization: Bearer).",
        },
    )
