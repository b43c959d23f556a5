"""Upstream OIDC federation, end to end, against a real IdP in its own process.

The IdP is ``oidc-provider-mock`` (see ``tests/oidc_mock.py``); the authorization
server is a live ``authserver serve`` with ``local_users: false``, so the IdP is the
only way in. A ``requests.Session`` plays the person's browser: our
``/oauth2/authorize`` (client ``cli``, PKCE) → ``/login`` → ``/login/upstream`` → the
IdP's page → our ``/callback`` → ``/oauth2/authorize`` → the CLI's loopback redirect.
"""

from __future__ import annotations

import secrets
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urljoin, urlsplit

import jwt
import pytest
import requests
import yaml

from .conftest import BACKENDS
from .oidc_mock import MOCK_SCOPES, MockIdP, sign_in_at_mock, start_mock_idp, stop_mock_idp
from .support.factories import AUDIENCES, empty_pg, standard_config
from .support.flows import pkce_pair
from .support.servers import LiveServer, free_port, run_cli, start_server, stop_server

pytestmark = pytest.mark.live

REDIRECT_URI = "http://127.0.0.1:43210/callback"
UPSTREAM_SECRET = "upstream-secret-0123456789"


@dataclass
class Deployment:
    idp: MockIdP
    #: ``upstream`` is the mock IdP; no local users.
    server: LiveServer
    #: ``upstream`` points at a port nobody listens on.
    dead_server: LiveServer
    backend: str


def _config(base: dict[str, Any], upstream_issuer: str) -> dict[str, Any]:
    return {
        **base,
        "upstream": {
            "issuer": upstream_issuer,
            "client_id": "authserver",
            "client_secret": UPSTREAM_SECRET,
            "scopes": list(MOCK_SCOPES),
            "groups_claim": "groups",
        },
        "local_users": False,
    }


@pytest.fixture(scope="module")
def idp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MockIdP]:
    mock = start_mock_idp(tmp_path_factory.mktemp("idp"))
    yield mock
    stop_mock_idp(mock)


@pytest.fixture(scope="module", params=BACKENDS)
def deployment(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, idp: MockIdP
) -> Iterator[Deployment]:
    workdir = tmp_path_factory.mktemp("federation")
    dead_workdir = workdir / "dead"
    port, dead_port, closed_port = free_port(), free_port(), free_port()
    issuer, dead_issuer = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{dead_port}"
    if request.param == "sqlite":
        base = standard_config(
            issuer, f"sqlite:///{workdir / 'authserver.db'}", workdir / "secret_key"
        )
        dead_base = standard_config(
            dead_issuer, f"sqlite:///{workdir / 'dead.db'}", workdir / "secret_key"
        )
    else:
        pg_url = request.getfixturevalue("pg_database_url")
        empty_pg(pg_url)
        base = standard_config(issuer, pg_url, workdir / "secret_key")
        base["redis_url"] = request.getfixturevalue("redis_url")
        base["redis_prefix"] = f"authserver-live:{secrets.token_hex(4)}:"
        dead_base = {**base, "issuer": dead_issuer}
    config = _config(base, idp.url)
    dead_config = _config(dead_base, f"http://127.0.0.1:{closed_port}")
    if request.param != "sqlite":
        (workdir / "authserver.yaml").write_text(yaml.safe_dump(config))
        upgraded = run_cli(
            "--config", str(workdir / "authserver.yaml"), "db", "upgrade", cwd=workdir
        )
        assert upgraded.returncode == 0, upgraded.stderr
    server = start_server(workdir, config, port)
    try:
        dead_server = start_server(dead_workdir, dead_config, dead_port)
    except BaseException:
        stop_server(server)
        raise
    yield Deployment(idp, server, dead_server, request.param)
    stop_server(dead_server)
    stop_server(server)
    if request.param == "sqlite":
        shutil.rmtree(workdir, ignore_errors=True)


# -- helpers ----------------------------------------------------------------------


def _follow(
    session: requests.Session, base_url: str, response: requests.Response
) -> tuple[requests.Response, list[str]]:
    """Follow redirects that stay on ``base_url``; returns the last response and the
    paths visited on the way (not counting the first request)."""
    visited: list[str] = []
    for _ in range(10):
        location = response.headers.get("Location")
        if response.status_code not in (301, 302, 303) or not location:
            return response, visited
        target = urljoin(base_url + "/", location)
        if not target.startswith(base_url + "/"):
            return response, visited
        visited.append(urlsplit(target).path)
        response = session.get(target, allow_redirects=False, timeout=15)
    raise AssertionError(f"too many redirects, last {visited}")


def _authorize_params() -> tuple[dict[str, str], str]:
    verifier, challenge = pkce_pair()
    params = {
        "response_type": "code",
        "client_id": "cli",
        "redirect_uri": REDIRECT_URI,
        "scope": "openid profile email offline_access",
        "state": secrets.token_urlsafe(8),
        "nonce": secrets.token_urlsafe(8),
        "code_challenge": challenge,
        "code_challenge_method": "S256",
    }
    return params, verifier


def _to_idp(
    session: requests.Session, server: LiveServer, params: dict[str, str]
) -> tuple[requests.Response, list[str]]:
    """Start at our authorization endpoint; returns the redirect to the IdP."""
    first = session.get(
        server.url + "/oauth2/authorize", params=params, allow_redirects=False, timeout=15
    )
    return _follow(session, server.url, first)


def _query(location: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}


def _validate(server: LiveServer, token: str) -> dict[str, Any]:
    claims: dict[str, Any] = jwt.decode(
        token,
        _jwk_for(server, token),
        algorithms=["RS256"],
        audience=AUDIENCES,
        issuer=server.url,
        options={"require": ["exp", "iat", "iss", "aud", "sub", "jti"]},
    )
    return claims


@dataclass
class Login:
    tokens: dict[str, Any]
    access: dict[str, Any]
    id_token: dict[str, Any]
    visited: list[str]
    idp_query: dict[str, str]


def federated_login(dep: Deployment, sub: str, **claims: Any) -> Login:
    """A whole sign-in of ``sub`` (with ``claims`` at the IdP) for the CLI client."""
    server, idp = dep.server, dep.idp
    idp.set_user(sub, **claims)
    session = requests.Session()
    params, verifier = _authorize_params()

    to_idp, visited = _to_idp(session, server, params)
    assert to_idp.status_code == 302, (to_idp.status_code, to_idp.text[:1000])
    idp_url = to_idp.headers["Location"]
    assert idp_url.startswith(idp.url + "/oauth2/authorize?"), idp_url
    idp_query = _query(idp_url)

    back = sign_in_at_mock(session, idp_url, sub)
    assert back.headers["Location"].startswith(server.url + "/callback?"), back.headers
    callback = session.get(back.headers["Location"], allow_redirects=False, timeout=15)
    final, after = _follow(session, server.url, callback)
    visited += ["/callback", *after]
    assert final.status_code == 302, (final.status_code, final.text[:1000], server.log()[-3000:])
    location = final.headers["Location"]
    assert location.startswith(REDIRECT_URI + "?"), location
    result = _query(location)
    assert result["state"] == params["state"]
    assert "code" in result, result

    response = requests.post(
        server.url + "/oauth2/token",
        data={
            "grant_type": "authorization_code",
            "code": result["code"],
            "redirect_uri": REDIRECT_URI,
            "client_id": "cli",
            "code_verifier": verifier,
        },
        timeout=15,
    )
    assert response.status_code == 200, response.text
    tokens = response.json()
    access = _validate(server, tokens["access_token"])
    id_token = jwt.decode(
        tokens["id_token"],
        _jwk_for(server, tokens["id_token"]),
        algorithms=["RS256"],
        audience="cli",
        issuer=server.url,
    )
    assert id_token["nonce"] == params["nonce"]
    return Login(tokens, access, id_token, visited, idp_query)


def _jwk_for(server: LiveServer, token: str) -> Any:
    metadata = requests.get(server.url + "/.well-known/openid-configuration", timeout=10).json()
    return jwt.PyJWKClient(metadata["jwks_uri"]).get_signing_key_from_jwt(token)


def _userinfo(server: LiveServer, access_token: str) -> dict[str, Any]:
    response = requests.get(
        server.url + "/oauth2/userinfo",
        headers={"Authorization": f"Bearer {access_token}"},
        timeout=15,
    )
    assert response.status_code == 200, response.text
    info: dict[str, Any] = response.json()
    return info


def _signed_in(session: requests.Session, server: LiveServer) -> bool:
    """Whether ``session`` holds a sign-in: /login sends a signed-in person to ``next``."""
    response = session.get(
        server.url + "/login", params={"next": "/probe"}, allow_redirects=False, timeout=15
    )
    assert response.status_code == 302, response.text[:1000]
    return urlsplit(urljoin(server.url + "/", response.headers["Location"])).path == "/probe"


def _users(server: LiveServer) -> str:
    listed = server.cli("users", "list")
    assert listed.returncode == 0, listed.stderr
    return listed.stdout


def _assert_clear_page(response: requests.Response, status: int, *phrases: str) -> None:
    assert response.status_code == status, (response.status_code, response.text[:1000])
    assert response.headers["Content-Type"].startswith("text/html"), response.headers
    body = response.text
    assert "Traceback" not in body
    assert "Internal Server Error" not in body
    for phrase in phrases:
        assert phrase.lower() in body.lower(), body[:2000]


def _new_person() -> tuple[str, str]:
    tag = secrets.token_hex(4)
    return f"upstream-{tag}", f"person-{tag}@example.com"


# -- the happy paths ------------------------------------------------------------------


def test_login_page_goes_straight_to_the_idp(deployment: Deployment) -> None:
    session = requests.Session()
    response = session.get(
        deployment.server.url + "/login",
        params={"next": "/dashboard"},
        allow_redirects=False,
        timeout=15,
    )
    assert response.status_code == 302
    target = urljoin(deployment.server.url + "/", response.headers["Location"])
    assert urlsplit(target).path == "/login/upstream"
    assert _query(target)["next"] == "/dashboard"


def test_admin_group_member_signs_in_end_to_end(deployment: Deployment) -> None:
    server = deployment.server
    sub, email = _new_person()
    login = federated_login(
        deployment, sub, email=email, name="Ada Admin", groups=["platform-admins"]
    )

    # The browser went through our login pages, to the IdP and back.
    assert login.visited[:2] == ["/login", "/login/upstream"], login.visited
    assert login.visited[2:] == ["/callback", "/oauth2/authorize"], login.visited
    # Our request to the IdP: code flow, PKCE S256, state and nonce, our client id.
    q = login.idp_query
    assert q["response_type"] == "code"
    assert q["client_id"] == "authserver"
    assert q["redirect_uri"] == server.url + "/callback"
    assert q["code_challenge_method"] == "S256"
    assert q["code_challenge"]
    assert q["state"]
    assert q["nonce"]
    assert set(q["scope"].split()) == set(MOCK_SCOPES)

    tokens = login.tokens
    assert tokens["token_type"] == "Bearer"
    assert tokens["refresh_token"]
    access = login.access
    assert access["roles"] == ["admin"]  # platform-admins → admin (rbac.group_roles)
    assert access["email"] == email
    assert access["groups"] == ["platform-admins"]
    assert access["client_id"] == "cli"
    # Our own subject, not the IdP's.
    assert access["sub"] != sub
    assert login.id_token["sub"] == access["sub"]

    info = _userinfo(server, tokens["access_token"])
    assert info["sub"] == access["sub"]
    assert info["email"] == email

    users = _users(server)
    line = next(line for line in users.splitlines() if email in line)
    assert "admin" in line, users


def test_person_without_mapped_groups_gets_the_default_role(deployment: Deployment) -> None:
    sub, email = _new_person()
    login = federated_login(deployment, sub, email=email, groups=["engineering"])
    assert login.access["roles"] == ["user"]
    assert login.access["groups"] == ["engineering"]
    assert _userinfo(deployment.server, login.tokens["access_token"])["email"] == email

    sub2, email2 = _new_person()
    nobody = federated_login(deployment, sub2, email=email2)  # no groups claim at all
    assert nobody.access["roles"] == ["user"]
    assert nobody.access["groups"] == []


def test_second_login_updates_groups_but_keeps_the_role(deployment: Deployment) -> None:
    sub, email = _new_person()
    first = federated_login(deployment, sub, email=email, groups=["platform-admins"])
    assert first.access["roles"] == ["admin"]

    second = federated_login(deployment, sub, email=email, groups=["viewers", "engineering"])
    assert second.access["sub"] == first.access["sub"]  # the same person, keyed by iss+sub
    assert second.access["groups"] == ["viewers", "engineering"]
    assert second.access["roles"] == ["admin"]  # the role is not re-derived

    users = [line for line in _users(deployment.server).splitlines() if email in line]
    assert len(users) == 1, users


def test_a_new_subject_with_a_taken_email_is_another_person(deployment: Deployment) -> None:
    """Keyed by (iss, sub), never by email: a second subject does not become the first."""
    sub, email = _new_person()
    first = federated_login(deployment, sub, email=email, groups=["platform-admins"])
    other = federated_login(deployment, sub + "-other", email=email, groups=[])
    assert other.access["sub"] != first.access["sub"]
    assert other.access["roles"] == ["user"]


# -- error paths ------------------------------------------------------------------------


def _started_flow(dep: Deployment) -> tuple[requests.Session, str]:
    """A browser that went to the IdP: returns it and the IdP's authorization URL."""
    session = requests.Session()
    params, _verifier = _authorize_params()
    to_idp, _ = _to_idp(session, dep.server, params)
    assert to_idp.status_code == 302, to_idp.text[:1000]
    return session, to_idp.headers["Location"]


@pytest.mark.parametrize("state", ["forged-state-value", None, ""])
def test_forged_or_missing_state_is_a_clear_400(deployment: Deployment, state: str | None) -> None:
    session, _idp_url = _started_flow(deployment)
    params = {"code": "some-code"}
    if state is not None:
        params["state"] = state
    response = session.get(
        deployment.server.url + "/callback", params=params, allow_redirects=False, timeout=15
    )
    _assert_clear_page(response, 400, "sign in again")
    assert "stale" in response.text or "not started here" in response.text
    assert not _signed_in(session, deployment.server)


def test_a_real_state_from_another_browser_is_refused(deployment: Deployment) -> None:
    """Login CSRF: the attacker's own callback URL, fed to the victim's browser."""
    sub, email = _new_person()
    deployment.idp.set_user(sub, email=email, groups=["platform-admins"])
    _attacker, idp_url = _started_flow(deployment)
    back = sign_in_at_mock(requests.Session(), idp_url, sub)
    victim = requests.Session()
    response = victim.get(back.headers["Location"], allow_redirects=False, timeout=15)
    _assert_clear_page(response, 400)
    assert not _signed_in(victim, deployment.server)


def test_a_callback_cannot_be_replayed(deployment: Deployment) -> None:
    sub, email = _new_person()
    deployment.idp.set_user(sub, email=email)
    session, idp_url = _started_flow(deployment)
    back = sign_in_at_mock(session, idp_url, sub)
    first = session.get(back.headers["Location"], allow_redirects=False, timeout=15)
    assert first.status_code == 302, first.text[:1000]
    assert _signed_in(session, deployment.server)
    replay = requests.Session().get(back.headers["Location"], allow_redirects=False, timeout=15)
    _assert_clear_page(replay, 400)


def test_access_denied_at_the_idp_is_a_clear_page(deployment: Deployment) -> None:
    session, idp_url = _started_flow(deployment)
    back = sign_in_at_mock(session, idp_url, "nobody", deny=True)
    location = back.headers["Location"]
    assert location.startswith(deployment.server.url + "/callback?")
    assert _query(location)["error"] == "access_denied"
    response = session.get(location, allow_redirects=False, timeout=15)
    _assert_clear_page(response, 400, "cancelled")
    assert "sign in again" in response.text.lower()


def test_access_denied_with_our_state_is_a_clear_page(deployment: Deployment) -> None:
    """An IdP that does send the state back with the error (most do)."""
    session, idp_url = _started_flow(deployment)
    state = _query(idp_url)["state"]
    response = session.get(
        deployment.server.url + "/callback",
        params={"error": "access_denied", "error_description": "The user said no", "state": state},
        allow_redirects=False,
        timeout=15,
    )
    _assert_clear_page(response, 400, "cancelled")


def test_unreachable_idp_is_a_502_page(deployment: Deployment) -> None:
    server = deployment.dead_server
    session = requests.Session()
    params, _verifier = _authorize_params()
    response, visited = _to_idp(session, server, params)
    assert visited == ["/login", "/login/upstream"], visited
    _assert_clear_page(response, 502, "cannot be reached")
    direct = session.get(server.url + "/login/upstream", allow_redirects=False, timeout=30)
    _assert_clear_page(direct, 502, "cannot be reached")
    log = server.log()
    assert "Traceback" not in log, log[-3000:]
    assert "unhandled error" not in log, log[-3000:]


def test_the_server_logged_no_crash(deployment: Deployment) -> None:
    """After every flow above (run first, in file order): no traceback in the log."""
    log = deployment.server.log()
    assert "unhandled error" not in log, log[-5000:]
    assert "Traceback" not in log, log[-5000:]
