"""Issue 16.3 and 15.7: an upstream email names the account only when the IdP verified
it, and ID tokens and userinfo pass ``email_verified`` on (live server, mock IdP, both
backends)."""

from __future__ import annotations

import pytest

from . import test_federation as fed
from .test_federation import Deployment, _new_person, _userinfo, _users, federated_login

# The federation tests' fixtures: a mock IdP and a live server federated to it.
idp = fed.idp
deployment = fed.deployment

pytestmark = pytest.mark.live


def test_unverified_email_does_not_take_the_name(deployment: Deployment) -> None:
    sub, email = _new_person()
    squatter = federated_login(
        deployment, sub + "-squat", email=email, email_verified=False, groups=[]
    )
    # The squatter is named from its sub, never from the address it typed.
    line = next(line for line in _users(deployment.server).splitlines() if sub + "-squat" in line)
    assert not line.startswith(email), line
    assert squatter.id_token["email_verified"] is False
    info = _userinfo(deployment.server, squatter.tokens["access_token"])
    assert info["email"] == email
    assert info["email_verified"] is False

    # The real owner, verified, gets the address as username after the squatter came.
    owner = federated_login(deployment, sub, email=email, email_verified=True, groups=[])
    assert owner.access["sub"] != squatter.access["sub"]
    names = [line.split()[0] for line in _users(deployment.server).splitlines() if email in line]
    assert email in names, names
    assert owner.id_token["email_verified"] is True
    assert _userinfo(deployment.server, owner.tokens["access_token"])["email_verified"] is True
    promoted = deployment.server.cli("users", "set-role", email, "admin")
    assert promoted.returncode == 0, promoted.stderr
    again = federated_login(deployment, sub, email=email, email_verified=True, groups=[])
    assert again.access["roles"] == ["admin"]
    squatter_again = federated_login(
        deployment, sub + "-squat", email=email, email_verified=False, groups=[]
    )
    assert squatter_again.access["roles"] == ["user"]


def test_missing_email_verified_is_not_verified(deployment: Deployment) -> None:
    sub, email = _new_person()
    login = federated_login(deployment, sub, email=email, groups=[])
    names = [line.split()[0] for line in _users(deployment.server).splitlines() if email in line]
    assert names, names
    assert email not in names, names
    assert "email_verified" not in login.id_token


def test_a_look_alike_email_does_not_name_the_account(deployment: Deployment) -> None:
    """Issue 9.8: a verified address that mixes scripts ("admin" with a Cyrillic a) is
    passed on as the email, but the username is built from sub, never that address."""
    sub, email = _new_person()
    look_alike = "\u0430dmin-" + email
    login = federated_login(deployment, sub, email=look_alike, email_verified=True, groups=[])
    line = next(line for line in _users(deployment.server).splitlines() if sub in line)
    assert line.split()[0].startswith(sub + "#"), line
    assert login.id_token["email"] == look_alike
