"""Flyte (issue 15): flytekit's own authenticators against a live authserver.

The server runs the clients and audience of the recipe in ``examples/flyte/`` on both
backends. flytekit gets its client configuration the way flyteadmin hands it out with
``authServerType: External``: our ``/.well-known/oauth-authorization-server`` document
as it is, plus ``thirdPartyConfig.flyteClient`` (``flytectl``, the fixed redirect
``http://localhost:53593/callback``, scopes ``all offline``, Flyte's URL as audience).
Every token flytekit gets must pass :mod:`tests.flyteadmin`, a port of what flyteadmin
checks (signature through the metadata's ``jwks_uri``, ``verifyClaims``,
``BlanketAuthorization``).

The person's side is a real Chromium (Playwright) that does what a person does on each
page: sign in, or click Allow/Approve when a confirmation appears (RFC 8252 §8.6,
issue 16.13). flytekit opens the browser with ``webbrowser.open_new_tab`` from its own
thread and then waits on its loopback listener; Playwright stays on the test's thread.
"""

from __future__ import annotations

import contextlib
import itertools
import queue
import re
import secrets
import shutil
import time
import webbrowser
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import click
import keyring
import pytest
import requests
import yaml
from flytekit.clients.auth import auth_client, token_client
from flytekit.clients.auth.authenticator import (
    ClientConfig,
    ClientConfigStore,
    ClientCredentialsAuthenticator,
    DeviceCodeAuthenticator,
    PKCEAuthenticator,
)
from flytekit.clients.auth.exceptions import AuthenticationError, AuthenticationPending
from keyring.backend import KeyringBackend
from keyring.errors import PasswordDeleteError
from playwright.sync_api import Browser, BrowserContext, Page, expect

from authserver.oauth.vocabulary import classify_secret_hash
from authserver.settings import load_settings

from .conftest import BACKENDS, without_failure_limits
from .flyteadmin import (
    FlyteadminRefused,
    IdentityContext,
    flyteadmin_identity,
    metadata_url,
)
from .support.factories import PASSWORD, create_user
from .support.flows import (
    authorize_confirmed,
    jwt_claims,
    pkce_pair,
    redirect_params,
    signed_in_session,
)
from .support.servers import (
    LiveServer,
    serving,
)

EXAMPLES = Path(__file__).resolve().parent.parent / "examples" / "flyte"
FLYTE_URL = "https://flyte.example.com"
#: flytekit's ``PlatformConfig.endpoint``: only the key of its keyring entries here.
FLYTE_ENDPOINT = "flyte.example.com"
FLYTECTL_REDIRECT = "http://localhost:53593/callback"
FLYTE_SCOPES = ["all", "offline"]
#: The example secrets of examples/flyte/authserver.yaml.
PROPELLER_SECRET = "example-flytepropeller-secret"
CONSOLE_SECRET = "example-flyteconsole-secret"
DEVICE_INTERVAL = 1
TIMEOUT_MS = 15_000
USERNAME = "flo"


# -- the recipe -------------------------------------------------------------------------


def example_config() -> dict[str, Any]:
    config: dict[str, Any] = yaml.safe_load((EXAMPLES / "authserver.yaml").read_text())
    return config


def test_example_config_is_valid_and_matches_the_helm_values() -> None:
    """examples/flyte/ stays loadable, and its three files name the same URLs and clients."""
    settings = load_settings(EXAMPLES / "authserver.yaml", environ={})
    clients = {c.client_id: c for c in settings.clients}
    assert set(clients) == {"flytectl", "flytepropeller", "flyteconsole"}
    flytectl = clients["flytectl"]
    assert flytectl.public
    assert flytectl.redirect_uris == (FLYTECTL_REDIRECT,)
    assert set(FLYTE_SCOPES) <= set(flytectl.scopes)
    propeller_hash = clients["flytepropeller"].client_secret_hash
    assert propeller_hash is not None
    assert not propeller_hash.startswith("$")  # Flyte's form: base64 of a bcrypt hash
    assert classify_secret_hash(propeller_hash) == "bcrypt"
    assert clients["flyteconsole"].redirect_uris == (FLYTE_URL + "/callback",)
    assert settings.tokens.audiences == (FLYTE_URL,)

    binary = yaml.safe_load((EXAMPLES / "values-flyte-binary.yaml").read_text())
    core = yaml.safe_load((EXAMPLES / "values-flyte-core.yaml").read_text())
    auth = binary["configuration"]["auth"]
    inline = binary["configuration"]["inline"]["auth"]
    core_auth = core["configmap"]["adminServer"]["auth"]
    assert auth["enableAuthServer"] is False
    for app_auth, user_auth, flyte_client in [
        (inline["appAuth"], inline["userAuth"], auth["flyteClient"]),
        (
            core_auth["appAuth"],
            core_auth["userAuth"],
            core_auth["appAuth"]["thirdPartyConfig"]["flyteClient"],
        ),
    ]:
        assert app_auth["authServerType"] == "External"
        external = app_auth["externalAuthServer"]
        # go-oidc and flyteadmin compare these with the issuer exactly.
        assert external["baseUrl"] == settings.issuer
        assert user_auth["openId"]["baseUrl"] == settings.issuer
        assert metadata_url(external["baseUrl"], external["metadataUrl"]) == (
            settings.issuer + "/.well-known/oauth-authorization-server"
        )
        assert set(external["allowedAudience"]) <= set(settings.tokens.audiences)
        assert user_auth["openId"]["clientId"] == "flyteconsole"
        assert set(user_auth["openId"]["scopes"]) <= set(clients["flyteconsole"].scopes)
        assert flyte_client["clientId"] == "flytectl"
        assert flyte_client["redirectUri"] == FLYTECTL_REDIRECT
        assert set(flyte_client["scopes"]) <= set(flytectl.scopes)
        assert flyte_client["audience"] in settings.tokens.audiences
    assert auth["oidc"]["baseUrl"] == settings.issuer
    assert auth["internal"]["clientId"] == "flytepropeller"
    assert auth["internal"]["clientSecretHash"] == propeller_hash
    assert core["secrets"]["adminOauthClientCredentials"]["clientId"] == "flytepropeller"


# -- a live server with the recipe's clients ---------------------------------------------


@dataclass(frozen=True)
class FlyteServer:
    server: LiveServer
    person_id: str

    @property
    def url(self) -> str:
        return self.server.url


@pytest.fixture(scope="module", params=BACKENDS)
def flyte_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[FlyteServer]:
    """``authserver serve`` with the clients and audience of examples/flyte/authserver.yaml,
    a one-second device interval (flytekit waits exactly that) and one person."""
    workdir = tmp_path_factory.mktemp("flyte")

    def as_in_the_example(config: dict[str, Any]) -> None:
        example = example_config()
        config["clients"] = example["clients"]
        config["tokens"] = {
            **config["tokens"],
            "audiences": example["tokens"]["audiences"],
            "device_poll_interval": f"{DEVICE_INTERVAL}s",
            "device_code_ttl": "30s",
        }
        without_failure_limits(config)

    with serving(request, workdir, as_in_the_example) as server:
        yield FlyteServer(server, create_user(server, USERNAME))
    if request.param == "sqlite":
        shutil.rmtree(workdir, ignore_errors=True)


class FlyteadminClientConfig(ClientConfigStore):
    """What flytekit's ``RemoteClientConfigStore`` gets from flyteadmin with
    ``authServerType: External``: the document at ``{baseUrl}/{metadataUrl}`` as it is
    (GetOAuth2Metadata) and ``thirdPartyConfig.flyteClient`` (GetPublicClientConfig)."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url

    def get_client_config(self) -> ClientConfig:
        metadata = requests.get(metadata_url(self.base_url), timeout=10).json()
        return ClientConfig(
            token_endpoint=metadata["token_endpoint"],
            authorization_endpoint=metadata["authorization_endpoint"],
            redirect_uri=FLYTECTL_REDIRECT,
            client_id="flytectl",
            device_authorization_endpoint=metadata.get("device_authorization_endpoint"),
            scopes=list(FLYTE_SCOPES),
            header_key="flyte-authorization",
            audience=FLYTE_URL,
        )


def accepted(server: FlyteServer, token: str) -> IdentityContext:
    """The identity flyteadmin (allowedAudience: Flyte's URL) sees for ``token``."""
    return flyteadmin_identity(server.url, token, {FLYTE_URL})


# -- flytekit's surroundings: keyring, browser, printed prompts ---------------------------------


class MemoryKeyring(KeyringBackend):
    """flytekit keeps its tokens in the system keyring; here, in a dict of the test's."""

    priority = 1

    def __init__(self) -> None:
        super().__init__()
        self.passwords: dict[tuple[str, str], str] = {}

    def get_password(self, service: str, username: str) -> str | None:
        return self.passwords.get((service, username))

    def set_password(self, service: str, username: str, password: str) -> None:
        self.passwords[(service, username)] = password

    def delete_password(self, service: str, username: str) -> None:
        if self.passwords.pop((service, username), None) is None:
            raise PasswordDeleteError(username)


def forget_authorization_clients() -> None:
    """flytekit keeps one ``AuthorizationClient`` per authorization endpoint for the
    process (with 60 s of cached credentials); each flytectl run starts without."""
    type(auth_client.AuthorizationClient)._instances.clear()


@pytest.fixture
def keyring_memory() -> Iterator[MemoryKeyring]:
    previous = keyring.get_keyring()
    memory = MemoryKeyring()
    keyring.set_keyring(memory)
    forget_authorization_clients()
    yield memory
    forget_authorization_clients()
    keyring.set_keyring(previous)


@pytest.fixture
def context(browser: Browser) -> Iterator[BrowserContext]:
    ctx = browser.new_context()
    ctx.set_default_timeout(TIMEOUT_MS)
    yield ctx
    ctx.close()


class BrowserOpener:
    """Stands in for ``webbrowser.open_new_tab``: hands the URL to the test's thread."""

    def __init__(self) -> None:
        self.urls: queue.Queue[str] = queue.Queue()

    def __call__(self, url: str, *args: Any, **kwargs: Any) -> bool:
        self.urls.put(url)
        return True


@pytest.fixture
def opener(monkeypatch: pytest.MonkeyPatch) -> BrowserOpener:
    opened = BrowserOpener()
    monkeypatch.setattr(webbrowser, "open_new_tab", opened)
    return opened


def click_through(
    page: Page,
    server_url: str,
    done: Callable[[Page], bool],
    *,
    compare: Callable[[Page], None] | None = None,
    steps: int = 4,
) -> list[str]:
    """Do what a person does on each of our pages until ``done``: sign in on the login
    form, or click Allow/Approve when a confirmation appears (after ``compare``, what
    the person checks there). Returns the paths seen."""
    seen: list[str] = []
    for _ in range(steps):
        page.wait_for_load_state()
        if done(page):
            return seen
        assert page.url.startswith(server_url + "/"), page.url
        path = urlsplit(page.url).path
        seen.append(path)
        if path == "/login":
            page.get_by_label("Username").fill(USERNAME)
            page.get_by_label("Password").fill(PASSWORD)
            with page.expect_navigation():
                page.get_by_role("button", name="Sign in").click()
        elif page.locator("#approve").count():
            if compare is not None:
                compare(page)
            with page.expect_navigation():
                page.locator("#approve").click()
        else:
            raise AssertionError(f"no way on from {page.url}:\n{page.content()[:2000]}")
    raise AssertionError(f"not done after {seen}: {page.url}")


def finish(future: Future[Any], timeout: float = 60) -> Any:
    """The result of flytekit's step; if it hangs on its loopback listener (a sign-in
    that never came back), release the listener so that the thread ends, and fail."""
    try:
        return future.result(timeout=timeout)
    except TimeoutError:
        release_listener()
        raise


def release_listener() -> None:
    with contextlib.suppress(requests.RequestException):
        requests.get(FLYTECTL_REDIRECT, params={"code": "none", "state": "none"}, timeout=5)


@pytest.fixture
def pool() -> Iterator[ThreadPoolExecutor]:
    """flytekit's thread. A failed test may leave it waiting on its loopback listener:
    answer that once, so that the thread ends."""
    executor = ThreadPoolExecutor(max_workers=1)
    yield executor
    release_listener()
    executor.shutdown(wait=True)


# -- 1. client credentials: flytepropeller ------------------------------------------------------


@pytest.mark.live
def test_client_credentials_authenticator(flyte_server: FlyteServer) -> None:
    """flytepropeller's flow: Basic auth with the secret whose hash is base64 of bcrypt,
    the scopes flyteadmin advertises (``all offline``) and ``audience``."""
    cfg = FlyteadminClientConfig(flyte_server.url)
    authenticator = ClientCredentialsAuthenticator(
        FLYTE_ENDPOINT,
        client_id="flytepropeller",
        client_secret=PROPELLER_SECRET,
        cfg_store=cfg,
        audience=FLYTE_URL,
    )
    authenticator.refresh_credentials()
    credentials = authenticator.get_credentials()
    assert credentials.refresh_token is None  # never with client credentials
    identity = accepted(flyte_server, credentials.access_token)
    assert identity.audience == FLYTE_URL
    assert identity.subject == "flytepropeller"
    assert identity.client_id == "flytepropeller"
    assert identity.scopes == {"all", "offline"}
    claims = jwt_claims(credentials.access_token)
    assert claims["scp"] == ["all", "offline"]
    assert claims["scope"] == "all offline"
    assert claims["iss"] == flyte_server.url
    # The header flytekit puts on its gRPC calls to flyteadmin.
    assert authenticator.fetch_grpc_call_auth_metadata() == (
        "flyte-authorization",
        f"Bearer {credentials.access_token}",
    )
    # Without `audience` (flytekit's default): Flyte's URL is the server's default.
    plain = ClientCredentialsAuthenticator(
        FLYTE_ENDPOINT, client_id="flytepropeller", client_secret=PROPELLER_SECRET, cfg_store=cfg
    )
    plain.refresh_credentials()
    assert accepted(flyte_server, plain.get_credentials().access_token).audience == FLYTE_URL
    # A token for another audience is refused by flyteadmin.
    with pytest.raises(FlyteadminRefused, match="invalid audience"):
        flyteadmin_identity(flyte_server.url, credentials.access_token, {"https://other.example"})

    wrong = ClientCredentialsAuthenticator(
        FLYTE_ENDPOINT, client_id="flytepropeller", client_secret="not-the-secret", cfg_store=cfg
    )
    with pytest.raises(AuthenticationError, match=r"\(401\).*invalid_client"):
        wrong.refresh_credentials()


# -- 2. PKCE through a browser, then refresh -----------------------------------------------


@pytest.mark.live
def test_pkce_authenticator_through_a_browser_then_refresh(
    flyte_server: FlyteServer,
    keyring_memory: MemoryKeyring,
    opener: BrowserOpener,
    context: BrowserContext,
    pool: ThreadPoolExecutor,
) -> None:
    cfg = FlyteadminClientConfig(flyte_server.url)
    authenticator = PKCEAuthenticator(FLYTE_ENDPOINT, cfg)
    signing_in = pool.submit(authenticator.refresh_credentials)

    url = opener.urls.get(timeout=30)
    request = urlsplit(url)
    assert f"{request.scheme}://{request.netloc}{request.path}" == (
        flyte_server.url + "/oauth2/authorize"
    )
    query = {k: v[0] for k, v in parse_qs(request.query).items()}
    assert query["client_id"] == "flytectl"
    assert query["redirect_uri"] == FLYTECTL_REDIRECT
    assert query["scope"] == "all offline"
    assert query["audience"] == FLYTE_URL
    assert query["code_challenge_method"] == "S256"

    page = context.new_page()
    page.goto(url)
    seen = click_through(page, flyte_server.url, lambda p: p.url.startswith(FLYTECTL_REDIRECT))
    # The sign-in this request started: the code comes without a click (issue 16.13).
    assert seen == ["/login"]
    finish(signing_in)

    first = authenticator.get_credentials()
    identity = accepted(flyte_server, first.access_token)
    assert identity.subject == flyte_server.person_id
    assert identity.client_id == "flytectl"
    assert identity.audience == FLYTE_URL
    assert identity.scopes == {"all", "offline"}
    # `offline` asked for a refresh token, as `offline_access` does.
    assert first.refresh_token is not None
    assert first.refresh_token.startswith("as_rt_")
    assert keyring_memory.passwords[(FLYTE_ENDPOINT, "refresh_token")] == first.refresh_token

    # flytekit refreshes when flyteadmin says the token expired: no browser this time.
    finish(pool.submit(authenticator.refresh_credentials))
    second = authenticator.get_credentials()
    assert opener.urls.empty()
    assert second.access_token != first.access_token
    assert second.refresh_token not in (None, first.refresh_token)  # rotated
    assert accepted(flyte_server, second.access_token).subject == flyte_server.person_id

    # The next flytectl run starts from the keyring and refreshes again.
    forget_authorization_clients()
    later = PKCEAuthenticator(FLYTE_ENDPOINT, cfg)
    assert later.get_credentials().refresh_token == second.refresh_token
    finish(pool.submit(later.refresh_credentials))
    assert opener.urls.empty()
    third = later.get_credentials()
    assert third.refresh_token not in (None, second.refresh_token)
    assert accepted(flyte_server, third.access_token).scopes == {"all", "offline"}

    # A sign-in the person already has, for a new flytectl login: a confirmation page
    # this time (the sign-in was not started by this request), clicked through.
    forget_authorization_clients()
    keyring_memory.passwords.clear()
    again = PKCEAuthenticator(FLYTE_ENDPOINT, cfg)
    signing_in = pool.submit(again.refresh_credentials)
    page.goto(opener.urls.get(timeout=30))
    seen = click_through(page, flyte_server.url, lambda p: p.url.startswith(FLYTECTL_REDIRECT))
    assert seen == ["/oauth2/authorize"]
    finish(signing_in)
    assert accepted(flyte_server, again.get_credentials().access_token).subject == (
        flyte_server.person_id
    )


# -- 3. the device flow, which ignores slow_down ---------------------------------------------


ANSI = re.compile(r"\x1b\[[0-9;]*m")


@pytest.mark.live
def test_device_code_authenticator_completes_although_it_ignores_slow_down(
    flyte_server: FlyteServer,
    keyring_memory: MemoryKeyring,
    context: BrowserContext,
    pool: ThreadPoolExecutor,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """flytekit takes ``slow_down`` for pending and keeps its first interval (RFC 8628
    §3.5 says to add 5 s). One of its polls is made to arrive twice, as through a proxy
    that retries: the second copy is ``slow_down``; flytekit goes on at 1 s, and once
    the person approves, its next poll gets the tokens."""
    printed: queue.Queue[str] = queue.Queue()
    monkeypatch.setattr(click, "secho", lambda message=None, *a, **k: printed.put(str(message)))
    real_get_token = token_client.get_token
    polls: list[tuple[float, str]] = []

    def get_token(*args: Any, **kwargs: Any) -> Any:
        if kwargs.get("grant_type") != token_client.GrantType.DEVICE_CODE:
            return real_get_token(*args, **kwargs)
        if not polls:  # the duplicate, just ahead of flytekit's first poll
            duplicate = requests.post(
                args[0],
                data={
                    "grant_type": token_client.GrantType.DEVICE_CODE.value,
                    "device_code": kwargs["device_code"],
                    "client_id": kwargs["client_id"],
                },
                timeout=10,
            )
            assert duplicate.json()["error"] == "authorization_pending", duplicate.text
        try:
            result = real_get_token(*args, **kwargs)
        except AuthenticationPending as pending:
            polls.append((time.monotonic(), str(pending)))
            raise
        polls.append((time.monotonic(), "token"))
        return result

    monkeypatch.setattr(token_client, "get_token", get_token)
    cfg = FlyteadminClientConfig(flyte_server.url)
    authenticator = DeviceCodeAuthenticator(FLYTE_ENDPOINT, cfg, audience=FLYTE_URL)
    polling = pool.submit(authenticator.refresh_credentials)

    # The person reads the URL flytekit prints and opens it in a browser.
    prompt = ANSI.sub("", printed.get(timeout=30))
    found = re.search(r"(http\S+\?user_code=([A-Z]{4}-[A-Z]{4}))", prompt)
    assert found, prompt
    url, user_code = found.groups()
    assert url.startswith(flyte_server.url + "/device?")
    # Let flytekit see slow_down and go on polling at its one second for a while.
    deadline = time.monotonic() + 10
    while not any("slow_down" in p for _, p in polls) and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(2.5 * DEVICE_INTERVAL)

    page = context.new_page()
    page.goto(url)

    def connected(p: Page) -> bool:
        return p.get_by_role("heading", name="Device connected").count() > 0

    def same_code(p: Page) -> None:
        expect(p.locator("#shown-code")).to_have_text(user_code)

    seen = click_through(page, flyte_server.url, connected, compare=same_code)
    assert seen == ["/login", "/device"]
    finish(polling)

    outcomes = [outcome for _, outcome in polls]
    assert "slow_down" in outcomes[0], outcomes
    assert sum("slow_down" in o for o in outcomes) >= 3, outcomes  # it kept its pace
    assert outcomes[-1] == "token"
    gaps = [later - earlier for (earlier, _), (later, _) in itertools.pairwise(polls)]
    assert max(gaps) < DEVICE_INTERVAL + 2, gaps  # flytekit never added the 5 s

    first = authenticator.get_credentials()
    identity = accepted(flyte_server, first.access_token)
    assert identity.subject == flyte_server.person_id
    assert identity.client_id == "flytectl"
    assert identity.scopes == {"all", "offline"}
    assert first.refresh_token is not None

    # Its refresh: the refresh_token grant with `all offline` and the audience again.
    finish(pool.submit(authenticator.refresh_credentials))
    assert printed.empty()  # no second device authorization
    second = authenticator.get_credentials()
    assert second.refresh_token not in (None, first.refresh_token)
    assert accepted(flyte_server, second.access_token).subject == flyte_server.person_id


# -- the offline scope, and flyteadmin's own sign-in -------------------------------------------


def flytectl_tokens(server: FlyteServer, scope: str) -> dict[str, Any]:
    """The authorization code flow of ``flytectl`` over plain HTTP (a signed-in person)."""
    session = signed_in_session(server.url, USERNAME)
    verifier, challenge = pkce_pair()
    params = {
        "response_type": "code",
        "client_id": "flytectl",
        "redirect_uri": FLYTECTL_REDIRECT,
        "scope": scope,
        "state": secrets.token_urlsafe(8),
        "code_challenge": challenge,
        "code_challenge_method": "S256",
    }
    code = redirect_params(authorize_confirmed(session, server.url, params))["code"]
    response = requests.post(
        server.url + "/oauth2/token",
        data={
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": FLYTECTL_REDIRECT,
            "client_id": "flytectl",
            "code_verifier": verifier,
        },
        timeout=10,
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


@pytest.mark.live
def test_offline_scope_asks_for_a_refresh_token(flyte_server: FlyteServer) -> None:
    """``flytectl`` is registered with ``offline``: a refresh token when it asks for it
    (as for ``offline_access``), none when it does not."""
    with_offline = flytectl_tokens(flyte_server, "all offline")
    assert with_offline["scope"] == "all offline"
    assert with_offline["refresh_token"].startswith("as_rt_")
    without = flytectl_tokens(flyte_server, "all")
    assert without["scope"] == "all"
    assert "refresh_token" not in without
    assert accepted(flyte_server, without["access_token"]).scopes == {"all"}


@pytest.mark.live
def test_flyteconsole_sign_in_as_flyteadmin_does_it(flyte_server: FlyteServer) -> None:
    """flyteadmin's own OpenID Connect login (userAuth.openId, golang.org/x/oauth2 and
    go-oidc): discovery at the issuer, a code without PKCE for a confidential client,
    Basic auth at the token endpoint, an ID token for ``flyteconsole``, userinfo with
    the access token, and a refresh that brings a new ID token."""
    discovery = requests.get(
        flyte_server.url + "/.well-known/openid-configuration", timeout=10
    ).json()
    assert discovery["issuer"] == flyte_server.url  # go-oidc compares it exactly
    session = signed_in_session(flyte_server.url, USERNAME)
    redirect_uri = FLYTE_URL + "/callback"
    state = secrets.token_urlsafe(8)
    params = {
        "response_type": "code",
        "client_id": "flyteconsole",
        "redirect_uri": redirect_uri,
        "scope": "openid profile email offline_access",
        "state": state,
    }
    result = redirect_params(authorize_confirmed(session, flyte_server.url, params))
    assert result["state"] == state
    tokens = requests.post(
        discovery["token_endpoint"],
        data={
            "grant_type": "authorization_code",
            "code": result["code"],
            "redirect_uri": redirect_uri,
        },
        auth=("flyteconsole", CONSOLE_SECRET),
        timeout=10,
    )
    assert tokens.status_code == 200, tokens.text
    body = tokens.json()
    id_claims = jwt_claims(body["id_token"])
    assert id_claims["aud"] in ("flyteconsole", ["flyteconsole"])
    assert id_claims["iss"] == flyte_server.url
    assert id_claims["sub"] == flyte_server.person_id
    userinfo = requests.get(
        discovery["userinfo_endpoint"],
        headers={"Authorization": f"Bearer {body['access_token']}"},
        timeout=10,
    )
    assert userinfo.status_code == 200, userinfo.text
    assert userinfo.json()["sub"] == flyte_server.person_id
    refreshed = requests.post(
        discovery["token_endpoint"],
        data={"grant_type": "refresh_token", "refresh_token": body["refresh_token"]},
        auth=("flyteconsole", CONSOLE_SECRET),
        timeout=10,
    )
    assert refreshed.status_code == 200, refreshed.text
    assert jwt_claims(refreshed.json()["id_token"])["sub"] == flyte_server.person_id
