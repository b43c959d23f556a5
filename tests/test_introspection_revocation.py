"""Introspection (RFC 7662) and revocation (RFC 7009) against a live server."""

from __future__ import annotations

import base64
import json

import requests

from .support.factories import AUDIENCES, SECRETS
from .support.servers import InProcessServer


def get_token(server: InProcessServer, client_id: str = "ci", **extra: str) -> str:
    response = requests.post(
        server.url + "/oauth2/token",
        data={"grant_type": "client_credentials", **extra},
        auth=(client_id, SECRETS[client_id]),
        timeout=10,
    )
    assert response.status_code == 200, response.text
    return str(response.json()["access_token"])


def introspect(server: InProcessServer, token: str, **extra: str) -> requests.Response:
    return requests.post(
        server.url + "/oauth2/introspect",
        data={"token": token, **extra},
        auth=("rs", SECRETS["rs"]),
        timeout=10,
    )


def revoke(server: InProcessServer, token: str, client_id: str = "ci") -> requests.Response:
    return requests.post(
        server.url + "/oauth2/revoke",
        data={"token": token},
        auth=(client_id, SECRETS[client_id]),
        timeout=10,
    )


def test_active_token_is_described(app_server: InProcessServer) -> None:
    token = get_token(app_server, scope="read write", audience=AUDIENCES[1])
    response = introspect(app_server, token)
    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "no-store"
    body = response.json()
    assert body["active"] is True
    assert body["client_id"] == "ci"
    assert body["sub"] == "ci"
    assert body["scope"] == "read write"
    assert body["aud"] == AUDIENCES[1]
    assert body["iss"] == app_server.url
    assert body["token_type"] == "Bearer"
    assert body["roles"] == ["user"]
    assert body["exp"] > body["iat"]


def test_introspection_with_a_hint_still_finds_the_token(app_server: InProcessServer) -> None:
    token = get_token(app_server)
    assert introspect(app_server, token, token_type_hint="access_token").json()["active"] is True
    # RFC 7662 §2.1: a wrong hint must not hide the token.
    assert introspect(app_server, token, token_type_hint="refresh_token").json()["active"] is True


def test_garbage_is_inactive(app_server: InProcessServer) -> None:
    for garbage in ("x", "a.b.c", "eyJhbGciOiJub25lIn0.e30.", "€" * 10):
        response = introspect(app_server, garbage)
        assert response.status_code == 200
        assert response.json() == {"active": False}
    # An empty token is no token (RFC 6749 §3.2), and token is REQUIRED (RFC 7662 §2.1).
    empty = introspect(app_server, "")
    assert empty.status_code == 400
    assert empty.json()["error"] == "invalid_request"


def test_forged_token_is_inactive(app_server: InProcessServer) -> None:
    token = get_token(app_server)
    header, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["scope"] = "admin"
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    assert introspect(app_server, f"{header}.{forged}.{signature}").json() == {"active": False}


def test_unsigned_alg_none_token_is_inactive(app_server: InProcessServer) -> None:
    token = get_token(app_server)
    _, payload, _ = token.split(".")
    header = base64.urlsafe_b64encode(b'{"alg":"none","typ":"at+jwt"}').rstrip(b"=").decode()
    assert introspect(app_server, f"{header}.{payload}.").json() == {"active": False}


def test_introspection_requires_client_authentication(app_server: InProcessServer) -> None:
    token = get_token(app_server)
    anonymous = requests.post(
        app_server.url + "/oauth2/introspect", data={"token": token}, timeout=10
    )
    assert anonymous.status_code == 401
    assert anonymous.json()["error"] == "invalid_client"
    wrong = requests.post(
        app_server.url + "/oauth2/introspect", data={"token": token}, auth=("rs", "no"), timeout=10
    )
    assert wrong.status_code == 401
    public = requests.post(
        app_server.url + "/oauth2/introspect",
        data={"token": token, "client_id": "cli"},
        timeout=10,
    )
    assert public.status_code == 401


def test_introspection_without_token_is_invalid_request(app_server: InProcessServer) -> None:
    response = requests.post(
        app_server.url + "/oauth2/introspect", data={}, auth=("rs", SECRETS["rs"]), timeout=10
    )
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_request"


def test_revoked_token_is_inactive_on_every_worker(app_server: InProcessServer) -> None:
    token = get_token(app_server)
    assert introspect(app_server, token).json()["active"] is True
    response = revoke(app_server, token)
    assert response.status_code == 200
    # Two gunicorn workers: the denylist is shared state, so every request sees it.
    for _ in range(8):
        assert introspect(app_server, token).json() == {"active": False}
    # Other tokens are untouched.
    assert introspect(app_server, get_token(app_server)).json()["active"] is True


def test_revoking_twice_or_garbage_is_still_200(app_server: InProcessServer) -> None:
    # RFC 7009 §2.2: invalid tokens do not cause an error response.
    token = get_token(app_server)
    assert revoke(app_server, token).status_code == 200
    assert revoke(app_server, token).status_code == 200
    assert revoke(app_server, "not-a-token").status_code == 200


def test_a_client_cannot_revoke_another_clients_token(app_server: InProcessServer) -> None:
    token = get_token(app_server, "ci")
    response = revoke(app_server, token, client_id="ci-b64")
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_request"
    assert introspect(app_server, token).json()["active"] is True


def test_revocation_requires_client_authentication(app_server: InProcessServer) -> None:
    token = get_token(app_server)
    response = requests.post(app_server.url + "/oauth2/revoke", data={"token": token}, timeout=10)
    assert response.status_code == 401
    assert introspect(app_server, token).json()["active"] is True


def test_unknown_token_type_hint_is_ignored(app_server: InProcessServer) -> None:
    # RFC 7662 §2.1 and RFC 7009 §2.1: the server MAY ignore the hint.
    token = get_token(app_server)
    assert introspect(app_server, token, token_type_hint="banana").json()["active"] is True
    response = requests.post(
        app_server.url + "/oauth2/revoke",
        data={"token": token, "token_type_hint": "banana"},
        auth=("ci", SECRETS["ci"]),
        timeout=10,
    )
    assert response.status_code == 200
    assert introspect(app_server, token).json() == {"active": False}


def test_only_resource_servers_see_other_clients_tokens(app_server: InProcessServer) -> None:
    # RFC 7662 §4: resource servers are specifically authorized to introspect.
    token = get_token(app_server, "ci")

    def by(client_id: str) -> dict[str, object]:
        response = requests.post(
            app_server.url + "/oauth2/introspect",
            data={"token": token},
            auth=(client_id, SECRETS[client_id]),
            timeout=10,
        )
        assert response.status_code == 200
        return dict(response.json())

    assert by("ci")["active"] is True  # its own token
    assert by("rs")["active"] is True  # introspect: true
    assert by("ci-b64") == {"active": False}  # another client's token: nothing
