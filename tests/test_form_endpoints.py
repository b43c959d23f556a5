"""The form endpoints answered in front of Flask (authserver/web/form_endpoints.py,
issue 14): the same answers as Flask's own path, and around them the same access log
line, metrics, security headers and audit address; what is odd goes to Flask."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from flask import Flask
from werkzeug.test import TestResponse

from authserver.errors import DependencyUnavailable
from authserver.web.services import Services

from .support.factories import SECRETS
from .test_audit import of
from .test_metrics import REQUESTS, TOKENS, sample, scrape

FORM = "application/x-www-form-urlencoded"
#: A request with this header is read by Flask, not in front of it (a chunked body
#: would be too; with a Content-Length, Flask reads it as any other).
TO_FLASK = {"Transfer-Encoding": "identity"}
ADDRESS = "198.51.100.7"


def post(
    app: Flask,
    path: str,
    body: bytes,
    *,
    flask: bool = False,
    secret: str = SECRETS["ci"],
    content_type: str = FORM,
) -> TestResponse:
    return app.test_client().post(
        path,
        data=body,
        content_type=content_type,
        auth=("ci", secret),
        headers=TO_FLASK if flask else {},
        environ_overrides={"REMOTE_ADDR": ADDRESS},
    )


def headers(response: TestResponse) -> dict[str, str]:
    return {k: v for k, v in response.headers.items() if k != "Content-Length"}


@pytest.mark.parametrize(
    ("path", "body", "secret"),
    [
        ("/oauth2/token", b"grant_type=urn%3Anot%3Aa%3Agrant", SECRETS["ci"]),
        ("/oauth2/token", b"scope=all", SECRETS["ci"]),  # no grant_type
        ("/oauth2/token", b"grant_type=client_credentials", "wrong-secret"),
        ("/oauth2/token", b"grant_type=client_credentials&" * 2, SECRETS["ci"]),
        ("/oauth2/token", b"grant_type=client_credentials&scope=%FF%FE", SECRETS["ci"]),
        ("/oauth2/introspect", b"token=not-a-token", SECRETS["ci"]),
        ("/oauth2/revoke", b"token=not-a-token", SECRETS["ci"]),
        ("/oauth2/device_authorization", b"scope=all", SECRETS["ci"]),
    ],
)  # fmt: skip
def test_errors_are_answered_as_flask_answers_them(
    app: Flask, path: str, body: bytes, secret: str
) -> None:
    plain = post(app, path, body, secret=secret)
    flask = post(app, path, body, secret=secret, flask=True)
    assert plain.status_code == flask.status_code
    assert plain.get_json() == flask.get_json()
    assert headers(plain) == headers(flask)
    assert plain.headers["Content-Length"] == str(len(plain.get_data()))
    assert plain.headers["X-Content-Type-Options"] == "nosniff"


def test_a_token_is_answered_as_flask_answers_it(app: Flask) -> None:
    through_flask: list[bool] = []
    app.before_request(lambda: through_flask.append(True))
    body = b"grant_type=client_credentials"
    plain = post(app, "/oauth2/token", body)
    assert through_flask == []  # answered in front of Flask
    flask = post(app, "/oauth2/token", body, flask=True)
    assert through_flask == [True]
    assert plain.status_code == flask.status_code == 200
    assert headers(plain) == headers(flask)
    assert plain.headers["Cache-Control"] == "no-store"
    assert plain.headers["Content-Type"] == "application/json"
    token, other = plain.get_json(), flask.get_json()
    assert token.keys() == other.keys()
    assert {k: v for k, v in token.items() if k != "access_token"} == {
        k: v for k, v in other.items() if k != "access_token"
    }
    introspected = post(app, "/oauth2/introspect", f"token={token['access_token']}".encode())
    assert introspected.status_code == 200
    assert introspected.get_json()["active"] is True
    assert introspected.get_json()["client_id"] == "ci"


def test_the_access_log_the_metrics_and_the_audit_trail_see_the_request(
    app: Flask, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="authserver.access"):
        ok = post(app, "/oauth2/token", b"grant_type=client_credentials")
        refused = post(app, "/oauth2/token", b"grant_type=client_credentials", secret="no")
    assert (ok.status_code, refused.status_code) == (200, 401)
    access: list[Any] = [r for r in caplog.records if r.name == "authserver.access"]
    assert [(r.method, r.path, r.status, r.address) for r in access] == [
        ("POST", "/oauth2/token", 200, ADDRESS),
        ("POST", "/oauth2/token", 401, ADDRESS),
    ]  # fmt: skip
    assert access[0].client_id == "ci"
    assert access[0].duration_ms >= 0

    text = scrape(app.test_client())
    assert sample(text, REQUESTS, endpoint="oauth.token", method="POST", status="200") == 1
    assert sample(text, REQUESTS, endpoint="oauth.token", method="POST", status="401") == 1
    assert sample(text, TOKENS, grant_type="client_credentials", client_id="ci") == 1

    issued = of(app, "token_issued")
    assert len(issued) == 1
    row = issued[0]
    assert (row["actor"], row["client_id"], row["address"]) == ("ci", "ci", ADDRESS)
    rejected = of(app, "client_auth_failed")
    assert [row["address"] for row in rejected] == [ADDRESS]


def test_what_is_odd_goes_to_flask(app: Flask) -> None:
    client = app.test_client()
    get = client.get("/oauth2/token")
    assert get.status_code == 405
    assert "POST" in get.headers["Allow"]
    assert get.get_json()["error"] == "invalid_request"

    limit = Services.of(app).settings.max_form_bytes
    big = post(app, "/oauth2/token", b"grant_type=client_credentials&x=" + b"a" * limit)
    assert big.status_code == 413
    assert big.get_json()["error"] == "invalid_request"

    json_body = b'{"grant_type": "client_credentials"}'
    as_json = post(app, "/oauth2/token", json_body, content_type="application/json")
    assert as_json.status_code == 400
    assert as_json.get_json()["error"] == "invalid_request"

    # Not UTF-8: Werkzeug reads no form from it, so grant_type is missing.
    latin1 = post(app, "/oauth2/token", b"grant_type=client_credentials&scope=caf\xe9")
    assert latin1.status_code == 400
    assert latin1.get_json()["error"] == "invalid_request"
    assert "grant_type" in latin1.get_json()["error_description"]

    body = b"grant_type=client_credentials"
    charset = post(app, "/oauth2/token", body, content_type=FORM + "; charset=UTF-8")
    assert charset.status_code == 200, charset.get_json()


@pytest.mark.parametrize(
    ("failure", "status", "error"),
    [
        (DependencyUnavailable("redis", retry_after=3), 503, "temporarily_unavailable"),
        (RuntimeError("a bug"), 500, "server_error"),
    ],
)
def test_a_failure_is_answered_by_the_apps_error_handlers(
    app: Flask,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    failure: Exception,
    status: int,
    error: str,
) -> None:
    def fail(*args: Any, **kwargs: Any) -> Any:
        raise failure

    monkeypatch.setattr(Services.of(app).oauth, "create_token_response", fail)
    with caplog.at_level(logging.INFO, logger="authserver.access"):
        response = post(app, "/oauth2/token", b"grant_type=client_credentials")
    assert response.status_code == status
    assert response.get_json()["error"] == error
    assert "Traceback" not in response.get_data(as_text=True)
    assert "a bug" not in response.get_data(as_text=True)
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    if status == 503:
        assert response.headers["Retry-After"] == "3"
    access = [r for r in caplog.records if r.name == "authserver.access"]
    assert [(r.path, r.status, r.address) for r in access] == [("/oauth2/token", status, ADDRESS)]  # type: ignore[attr-defined]
    text = scrape(app.test_client())
    assert sample(text, REQUESTS, endpoint="oauth.token", method="POST", status=str(status)) == 1
    if status == 503:
        assert sample(text, "authserver_dependency_unavailable_total", dependency="redis") == 1
