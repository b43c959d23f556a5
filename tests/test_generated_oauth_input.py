"""Generated input at the OAuth endpoints never gives a server error (issue 9.5).

Hypothesis builds requests from the parameter names each endpoint reads, with values
that are arbitrary text (control characters, NUL, quotes, backslashes, non-ASCII) or
ids of the real clients, sent with or without HTTP Basic. Every answer must be below
500; a 4xx must carry a JSON RFC 6749 error (or, for the pages, HTML). Both backends.
"""

from __future__ import annotations

import base64
import json
import os
from typing import Any

import pytest
from flask import Flask
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from authserver.web.services import Services

from .support.factories import SECRETS

#: Values a client might send: anything, the real client ids, and the real secrets.
TEXT = st.text(st.characters(exclude_categories=["Cs"]), max_size=40)
#: A header value cannot hold CR or LF (the HTTP client refuses them before sending).
HEADER_TEXT = st.text(st.characters(exclude_categories=["Cs"], exclude_characters="\r\n"))
#: The grant types and token types of the token endpoint, so that generated requests
#: reach each grant's own checks (token exchange and jwt-bearer included).
GRANT_TYPES = [
    "client_credentials",
    "authorization_code",
    "refresh_token",
    "urn:ietf:params:oauth:grant-type:device_code",
    "urn:ietf:params:oauth:grant-type:token-exchange",
    "urn:ietf:params:oauth:grant-type:jwt-bearer",
    "urn:ietf:params:oauth:token-type:id_token",
    "urn:ietf:params:oauth:token-type:jwt",
    "urn:ietf:params:oauth:token-type:access_token",
]


def _jwt(header: dict[str, object], claims: dict[str, object]) -> str:
    """A JWT-shaped string (signed by nobody) with generated header and claims."""

    def part(value: dict[str, object]) -> str:
        raw = json.dumps(value).encode()
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    return f"{part(header)}.{part(claims)}.c2ln"


JSON_VALUES = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), TEXT, st.lists(TEXT)
)
#: JWTs of any shape: the federation checks must refuse each, never fail on one.
JWTS = st.builds(
    _jwt,
    st.fixed_dictionaries(
        {},
        optional={
            "alg": st.sampled_from(["RS256", "none", "HS256", "ES256"]) | JSON_VALUES,
            "kid": JSON_VALUES,
            "typ": JSON_VALUES,
        },
    ),
    st.fixed_dictionaries(
        {},
        optional={
            name: st.sampled_from(["http://127.0.0.1:8080"]) | JSON_VALUES
            for name in ("iss", "aud", "sub", "exp", "nbf", "iat", "jti", "repository")
        },
    ),
)
VALUES = st.one_of(
    TEXT,
    st.sampled_from([*SECRETS, "cli", "sa-", "sa-\x00", "openid", "code", "S256"]),
    st.sampled_from(list(SECRETS.values())),
    st.sampled_from(GRANT_TYPES),
    JWTS,
)
COMMON = ["client_id", "client_secret", "scope", "audience", "resource"]
ENDPOINTS: dict[str, list[str]] = {
    "/oauth2/token": [
        *COMMON,
        "grant_type",
        "code",
        "redirect_uri",
        "code_verifier",
        "refresh_token",
        "device_code",
        "subject_token",
        "subject_token_type",
        "assertion",
        "requested_token_type",
        "actor_token",
        "actor_token_type",
        "client_assertion",
        "client_assertion_type",
    ],
    "/oauth2/introspect": [*COMMON, "token", "token_type_hint"],
    "/oauth2/revoke": [*COMMON, "token", "token_type_hint"],
    "/oauth2/device_authorization": COMMON,
    "/oauth2/authorize": [
        *COMMON,
        "response_type",
        "redirect_uri",
        "state",
        "nonce",
        "prompt",
        "max_age",
        "code_challenge",
        "code_challenge_method",
    ],
    "/userinfo": ["access_token"],
    "/logout": ["id_token_hint", "post_logout_redirect_uri", "state", "client_id"],
    "/device": ["user_code"],
}
PAGES = {"/oauth2/authorize", "/logout", "/device"}
SETTINGS = settings(
    max_examples=60,
    deadline=None,
    database=None,  # no .hypothesis/ in the work tree; a failure prints its example
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


def _params(names: list[str]) -> st.SearchStrategy[dict[str, str]]:
    return st.dictionaries(st.sampled_from(names), VALUES, max_size=len(names))


def _basic(user: str, password: str) -> str:
    raw = f"{user}:{password}".encode()
    return "Basic " + base64.b64encode(raw).decode()


AUTH = st.one_of(
    st.none(),
    st.builds(_basic, VALUES, VALUES),
    st.builds(lambda token: f"Bearer {token}", HEADER_TEXT),
    HEADER_TEXT,
)


def _check(response: Any, path: str) -> None:
    assert response.status_code < 500, (path, response.status_code, response.get_data()[:500])
    json_errors = path not in PAGES and path != "/userinfo"  # userinfo: RFC 6750 §3 header
    if json_errors and 400 <= response.status_code < 500 and response.status_code != 405:
        assert response.is_json, (path, response.get_data()[:200])
        assert response.get_json()["error"]


@pytest.mark.parametrize("path", sorted(ENDPOINTS))
def test_no_generated_request_is_a_server_error(module_app: Flask, path: str) -> None:
    client = module_app.test_client()

    @SETTINGS
    @given(params=_params(ENDPOINTS[path]), auth=AUTH, post=st.booleans())
    def run(params: dict[str, str], auth: str | None, post: bool) -> None:
        headers = {} if auth is None else {"Authorization": auth}
        if post or (path.startswith("/oauth2/") and path != "/oauth2/authorize"):
            response = client.post(path, data=params, headers=headers)
        else:
            response = client.get(path, query_string=params, headers=headers)
        _check(response, path)

    run()


# -- client assertions (private_key_jwt, RFC 7523 §2.2) -----------------------------------

#: Claim values: anything JSON can hold, including what breaks arithmetic.
JSON_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=True, allow_infinity=True),
    TEXT,
    st.lists(TEXT, max_size=3),
    st.dictionaries(TEXT, TEXT, max_size=2),
)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def test_no_generated_client_assertion_is_a_server_error(module_app: Flask) -> None:
    """Assertions shaped like JWTs, signed by a real service account's key (or not),
    with generated headers and claims, at the token, introspection and revocation
    endpoints."""
    import json
    import time

    from joserfc import jws

    from authserver.key_file import ASSERTION_TYPE

    service = Services.of(module_app).service_accounts
    name = "generated-" + base64.b32encode(os.urandom(5)).decode().lower()
    _, key_file = service.create_with_key(name)
    client_id, issuer = key_file.client_id, key_file.issuer
    client = module_app.test_client()
    now = int(time.time())
    claim = st.one_of(
        JSON_VALUES, st.sampled_from([client_id, issuer, issuer + "/oauth2/token", now, now + 60])
    )
    claims = st.dictionaries(
        st.sampled_from(["iss", "sub", "aud", "exp", "iat", "nbf", "jti"]) | TEXT, claim
    )
    header = st.fixed_dictionaries(
        {"alg": st.sampled_from(["ES256", "RS256", "EdDSA", "HS256", "none", "", "ES512"]) | TEXT},
        optional={
            "kid": st.sampled_from([key_file.key_id]) | TEXT,
            "typ": TEXT,
            "crit": JSON_VALUES,
        },
    )

    def assertion(head: dict[str, Any], body: dict[str, Any], signed: bool) -> str:
        payload = json.dumps(body)
        if signed:
            try:
                return jws.serialize_compact(
                    {**head, "alg": "ES256"}, payload, key_file.private_key
                )
            except Exception:  # noqa: S110 - a header joserfc will not sign
                pass
        return ".".join(
            [_b64(json.dumps(head).encode()), _b64(payload.encode()), _b64(os.urandom(64))]
        )

    @SETTINGS
    @given(
        path=st.sampled_from(["/oauth2/token", "/oauth2/introspect", "/oauth2/revoke"]),
        head=header,
        body=claims,
        signed=st.booleans(),
        assertion_type=st.sampled_from([ASSERTION_TYPE]) | VALUES,
        extra=_params(["grant_type", "client_id", "client_secret", "scope", "token"]),
        auth=st.none() | AUTH,
    )
    def run(
        path: str,
        head: dict[str, Any],
        body: dict[str, Any],
        signed: bool,
        assertion_type: str,
        extra: dict[str, str],
        auth: str | None,
    ) -> None:
        form = {
            "grant_type": "client_credentials",
            **extra,
            "client_assertion_type": assertion_type,
            "client_assertion": assertion(head, body, signed),
        }
        headers = {} if auth is None else {"Authorization": auth}
        _check(client.post(path, data=form, headers=headers), path)

    run()
