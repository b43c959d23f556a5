"""Bad input at the token endpoint: the right RFC 6749 §5.2 error and status, never a 500.

Also a NUL in a service-account id at every client-authenticating endpoint (it reached
PostgreSQL as a ``psycopg.DataError``), and odd characters in an unregistered
``redirect_uri`` at /oauth2/authorize (Authlib raised building the error): issue 9.5.

Against a live server, through ``requests``.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator

import pytest
import requests

from .support.factories import SECRETS
from .support.servers import InProcessServer, LiveServer


def post_token(server: InProcessServer, data: object, **kwargs: object) -> requests.Response:
    return requests.post(server.url + "/oauth2/token", data=data, timeout=10, **kwargs)  # type: ignore[arg-type]


def assert_error(response: requests.Response, status: int, error: str) -> dict[str, str]:
    assert response.status_code == status, response.text
    assert response.headers["Content-Type"].startswith("application/json")
    body = response.json()
    assert body["error"] == error
    assert body.get("error_description"), "a clear description for the person reading it"
    assert "access_token" not in body
    return dict(body)


def test_wrong_secret_is_invalid_client_401(app_server: InProcessServer) -> None:
    response = post_token(app_server, {"grant_type": "client_credentials"}, auth=("ci", "wrong"))
    assert_error(response, 401, "invalid_client")
    assert "WWW-Authenticate" in response.headers  # RFC 6749 §5.2


def test_wrong_secret_after_a_right_one_is_still_refused(app_server: InProcessServer) -> None:
    ok = post_token(app_server, {"grant_type": "client_credentials"}, auth=("ci", SECRETS["ci"]))
    assert ok.status_code == 200
    for wrong in (SECRETS["ci"] + "x", SECRETS["ci"][:-1], SECRETS["ci-b64"], ""):
        response = post_token(app_server, {"grant_type": "client_credentials"}, auth=("ci", wrong))
        assert response.status_code == 401, wrong


def test_wrong_secret_by_post_is_invalid_client(app_server: InProcessServer) -> None:
    response = post_token(
        app_server,
        {"grant_type": "client_credentials", "client_id": "ci", "client_secret": "nope"},
    )
    body = assert_error(response, 400, "invalid_client")
    assert body["error_description"] == "Client authentication failed."


def test_unknown_client_is_invalid_client(app_server: InProcessServer) -> None:
    response = post_token(app_server, {"grant_type": "client_credentials"}, auth=("nobody", "x"))
    assert_error(response, 401, "invalid_client")


def test_no_client_authentication_is_invalid_client(app_server: InProcessServer) -> None:
    response = post_token(app_server, {"grant_type": "client_credentials"})
    assert_error(response, 401, "invalid_client")


def test_public_client_cannot_use_client_credentials(app_server: InProcessServer) -> None:
    # RFC 6749 §4.4: client credentials is for confidential clients only.
    response = post_token(app_server, {"grant_type": "client_credentials", "client_id": "cli"})
    body = response.json()
    assert response.status_code in (400, 401)
    assert body["error"] in ("invalid_client", "unauthorized_client")


def test_client_without_the_grant_is_unauthorized_client(app_server: InProcessServer) -> None:
    response = post_token(
        app_server, {"grant_type": "client_credentials"}, auth=("reader", SECRETS["reader"])
    )
    assert_error(response, 400, "unauthorized_client")


@pytest.mark.parametrize("grant_type", ["password", "implicit", "urn:example:unknown"])
def test_unsupported_grant_type(app_server: InProcessServer, grant_type: str) -> None:
    response = post_token(app_server, {"grant_type": grant_type}, auth=("ci", SECRETS["ci"]))
    assert_error(response, 400, "unsupported_grant_type")


def test_missing_grant_type(app_server: InProcessServer) -> None:
    for data in ({"scope": "all"}, {"grant_type": ""}):
        response = post_token(app_server, data, auth=("ci", SECRETS["ci"]))
        body = assert_error(response, 400, "invalid_request")
        assert body["error_description"] == "The grant_type parameter is missing."


@pytest.mark.parametrize("scope", ["admin", "all admin", "openid"])
def test_scope_beyond_the_clients_is_invalid_scope(app_server: InProcessServer, scope: str) -> None:
    response = post_token(
        app_server,
        {"grant_type": "client_credentials", "scope": scope},
        auth=("ci", SECRETS["ci"]),
    )
    body = assert_error(response, 400, "invalid_scope")
    assert "not allowed" in body["error_description"]


@pytest.mark.parametrize("parameter", ["audience", "resource"])
def test_unknown_audience_is_invalid_target(app_server: InProcessServer, parameter: str) -> None:
    response = post_token(
        app_server,
        {"grant_type": "client_credentials", parameter: "https://evil.example.com"},
        auth=("ci", SECRETS["ci"]),
    )
    assert_error(response, 400, "invalid_target")


def test_two_different_audiences_is_invalid_target(app_server: InProcessServer) -> None:
    response = post_token(
        app_server,
        [
            ("grant_type", "client_credentials"),
            ("resource", "https://api.example.com"),
            ("resource", "https://flyte.example.com"),
        ],
        auth=("ci", SECRETS["ci"]),
    )
    assert_error(response, 400, "invalid_target")


def test_repeated_parameter_is_invalid_request(app_server: InProcessServer) -> None:
    # RFC 6749 §3.2: parameters MUST NOT be included more than once.
    response = post_token(
        app_server,
        [("grant_type", "client_credentials"), ("scope", "all"), ("scope", "read")],
        auth=("ci", SECRETS["ci"]),
    )
    assert_error(response, 400, "invalid_request")


@pytest.mark.parametrize(
    "header",
    [
        "Basic",
        "Basic !!!not-base64!!!",
        "Basic " + base64.b64encode(b"\xff\xfe\xfd:\x80").decode(),
        "Basic " + base64.b64encode(b"no-colon-here").decode(),
        "Basic " + base64.b64encode(b":secret-without-id").decode(),
        "Basic " + base64.b64encode(b"ci:").decode(),
    ],
)
def test_malformed_basic_header_is_invalid_client(app_server: InProcessServer, header: str) -> None:
    response = post_token(
        app_server, {"grant_type": "client_credentials"}, headers={"Authorization": header}
    )
    assert_error(response, 401, "invalid_client")


def test_form_body_over_64_kib_is_refused_with_413(app_server: InProcessServer) -> None:
    response = post_token(
        app_server,
        {"grant_type": "client_credentials", "padding": "x" * (64 * 1024 + 1)},
        auth=("ci", SECRETS["ci"]),
    )
    assert_error(response, 413, "invalid_request")


def test_chunked_form_body_over_64_kib_is_refused_with_413(live_server: LiveServer) -> None:
    """Issue 9.6: without Content-Length the body was cut at the limit and parsed.
    Chunked transfer is gunicorn's to decode: a live server."""

    def chunks(kib: int) -> Iterator[bytes]:
        yield b"grant_type=client_credentials&padding="
        for _ in range(kib):
            yield b"x" * 1024

    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    big = requests.post(
        live_server.url + "/oauth2/token",
        data=chunks(65),
        headers=headers,
        auth=("ci", SECRETS["ci"]),
        timeout=10,
    )
    assert "Content-Length" not in big.request.headers
    assert big.request.headers["Transfer-Encoding"] == "chunked"
    assert_error(big, 413, "invalid_request")
    small = requests.post(
        live_server.url + "/oauth2/token",
        data=chunks(8),
        headers=headers,
        auth=("ci", SECRETS["ci"]),
        timeout=10,
    )
    assert small.status_code == 200, small.text  # a chunked body under the limit is read
    assert small.json()["token_type"] == "Bearer"


def test_non_form_body_is_not_accepted(app_server: InProcessServer) -> None:
    response = requests.post(
        app_server.url + "/oauth2/token",
        json={"grant_type": "client_credentials"},
        auth=("ci", SECRETS["ci"]),
        timeout=10,
    )
    assert_error(response, 400, "invalid_request")


def test_get_on_the_token_endpoint_is_405_json(app_server: InProcessServer) -> None:
    response = requests.get(app_server.url + "/oauth2/token", timeout=10)
    assert response.status_code == 405
    assert response.json()["error"] == "invalid_request"
    assert "POST" in response.headers["Allow"]


def test_bad_input_changes_nothing(app_server: InProcessServer) -> None:
    """After a burst of bad requests, the good client still gets the same signing key."""
    before = requests.get(app_server.url + "/.well-known/jwks.json", timeout=5).json()
    post_token(app_server, {"grant_type": "client_credentials"}, auth=("ci", "wrong"))
    post_token(
        app_server,
        {"grant_type": "client_credentials", "scope": "admin"},
        auth=("ci", SECRETS["ci"]),
    )
    after = requests.get(app_server.url + "/.well-known/jwks.json", timeout=5).json()
    assert before == after
    ok = post_token(app_server, {"grant_type": "client_credentials"}, auth=("ci", SECRETS["ci"]))
    assert ok.status_code == 200


@pytest.mark.parametrize(
    "data",
    [
        {"grant_type": "client_credentials", "scope": "é"},
        {"grant_type": "client_credentials", "scope": 'a"b'},
        {"grant_type": "client_credentials", "scope": "a\\b"},
        {"grant_type": "client_credentials", "audience": "é"},
        {"grant_type": "x'y\"é"},
        [("grant_type", "client_credentials"), ("scope", "é"), ("scope", "\\")],
    ],
)
def test_odd_characters_are_quoted_safely_never_a_500(
    app_server: InProcessServer, data: object
) -> None:
    response = post_token(app_server, data, auth=("ci", SECRETS["ci"]))
    assert response.status_code == 400, response.text
    description = response.json()["error_description"]
    # RFC 6749 §5.2: error_description characters are %x20-21 / %x23-5B / %x5D-7E.
    assert all(
        ch == " " or ch == "!" or (0x23 <= ord(ch) <= 0x7E and ch != "\\") for ch in description
    )


def test_repeated_unknown_parameter_is_ignored(app_server: InProcessServer) -> None:
    response = post_token(
        app_server,
        [("grant_type", "client_credentials"), ("trace", "1"), ("trace", "2")],
        auth=("ci", SECRETS["ci"]),
    )
    assert response.status_code == 200, response.text


def test_empty_parameters_count_as_omitted(app_server: InProcessServer) -> None:
    # RFC 6749 §3.2: "Parameters sent without a value MUST be treated as if they were omitted."
    response = post_token(
        app_server,
        {"grant_type": "client_credentials", "scope": "", "resource": "", "audience": ""},
        auth=("ci", SECRETS["ci"]),
    )
    assert response.status_code == 200, response.text
    assert response.json()["scope"] == "all read write"


def test_two_authentication_methods_are_invalid_request(app_server: InProcessServer) -> None:
    # RFC 6749 §2.3: "The client MUST NOT use more than one authentication method."
    both = post_token(
        app_server,
        {"grant_type": "client_credentials", "client_secret": SECRETS["ci"]},
        auth=("ci", SECRETS["ci"]),
    )
    assert_error(both, 400, "invalid_request")
    mismatched = post_token(
        app_server,
        {"grant_type": "client_credentials", "client_id": "ci-b64"},
        auth=("ci", SECRETS["ci"]),
    )
    assert_error(mismatched, 400, "invalid_request")


# -- issue 9.5: inputs that were a 500 -------------------------------------------------

NUL_IDS = ["sa-\x00", "sa-abc\x00def", "sa-\x00.x"]
ENDPOINTS = [
    ("/oauth2/token", {"grant_type": "client_credentials"}),
    ("/oauth2/introspect", {"token": "x"}),
    ("/oauth2/revoke", {"token": "x"}),
    ("/oauth2/device_authorization", {"scope": "openid"}),
]


@pytest.mark.parametrize("client_id", NUL_IDS)
@pytest.mark.parametrize(("path", "data"), ENDPOINTS)
def test_nul_in_a_service_account_id_is_invalid_client(
    app_server: InProcessServer, client_id: str, path: str, data: dict[str, str]
) -> None:
    by_post = requests.post(
        app_server.url + path,
        data={**data, "client_id": client_id, "client_secret": "s"},
        timeout=30,
    )
    # RFC 6749 §5.2: 401 only when the client authenticated through the Authorization
    # header; credentials in the body get 400.
    assert by_post.status_code == 400, by_post.text
    assert by_post.json()["error"] == "invalid_client"
    by_basic = requests.post(app_server.url + path, data=data, auth=(client_id, "s"), timeout=30)
    assert by_basic.status_code == 401, by_basic.text
    assert by_basic.json()["error"] == "invalid_client"


@pytest.mark.parametrize("client_id", NUL_IDS)
def test_nul_client_id_at_authorize_is_shown_not_a_500(
    app_server: InProcessServer, client_id: str
) -> None:
    response = requests.get(
        app_server.url + "/oauth2/authorize",
        params={"client_id": client_id, "response_type": "code"},
        allow_redirects=False,
        timeout=30,
    )
    # RFC 6749 §4.1.2.1: a bad client_id is shown to the person, never redirected to.
    assert response.status_code == 400, response.text
    assert "Location" not in response.headers


@pytest.mark.parametrize("odd", ['"', "\\", "\r\n", "\x00", "<script>", "%0d%0a"])
def test_odd_unregistered_redirect_uri_is_shown_not_a_500(
    app_server: InProcessServer, odd: str
) -> None:
    response = requests.get(
        app_server.url + "/oauth2/authorize",
        params={
            "client_id": "cli",
            "response_type": "code",
            "redirect_uri": f"https://evil.example/cb{odd}x",
            "code_challenge": "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
            "code_challenge_method": "S256",
        },
        allow_redirects=False,
        timeout=30,
    )
    assert response.status_code == 400, response.text
    assert "Location" not in response.headers
    assert "<script>" not in response.text
