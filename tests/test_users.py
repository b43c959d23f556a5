"""People: local users, CSV import/export, federated and proxy users, the first admin."""

from __future__ import annotations

import io
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from argon2 import PasswordHasher
from flask import Flask

from authserver.admin.csv import export_csv, import_csv
from authserver.identity import passwords
from authserver.identity.proxy import trusted_address
from authserver.identity.users import Person, UserError, UserService
from authserver.settings import InitialAdminSettings, RbacSettings
from authserver.storage.models import RefreshFamily, RefreshToken, db
from authserver.storage.users import DuplicateUser, SqlUserRepository
from authserver.web.services import Services

from .conftest import AppFactory

RBAC = RbacSettings.model_validate(
    {
        "default_role": "user",
        "roles": {"admin": ["*"], "user": ["read", "write"], "viewer": ["read"]},
        "group_roles": {"platform-admins": "admin", "devs": "user", "auditors": "viewer"},
    }
)
T0 = 1_800_000_000.0


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


def engine_of(app: Flask) -> sa.Engine:
    with app.app_context():
        return db.engine


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def repo(app: Flask) -> SqlUserRepository:
    return SqlUserRepository(engine_of(app))


@pytest.fixture
def users(repo: SqlUserRepository, clock: Clock) -> UserService:
    return UserService(repo, RBAC, clock=clock)


def at(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


# -- local users ------------------------------------------------------------------------


def test_create_local_then_authenticate(
    users: UserService, repo: SqlUserRepository, clock: Clock
) -> None:
    person, generated = users.create_local("Alice", "correct horse battery", "viewer")
    assert generated is None
    assert (person.username, person.role, person.source) == ("alice", "viewer", "local")
    assert person.roles == ("viewer",)
    assert len(person.id) == 32
    assert person.last_login_at is None
    stored = repo.get(person.id)
    assert stored is not None
    assert stored.password_hash is not None
    assert stored.password_hash.startswith("$argon2id$")

    clock.now = T0 + 60
    assert users.authenticate("alice", "wrong password!!") is None
    signed_in = users.authenticate("ALICE", "correct horse battery")
    assert signed_in is not None
    assert signed_in.id == person.id
    assert signed_in.last_login_at == at(T0 + 60)
    again = users.by_username("Alice")
    assert again is not None
    assert again.last_login_at == at(T0 + 60)
    assert users.get(person.id) == again
    assert users.get("nobody") is None


def test_generated_password_is_random_and_works(users: UserService) -> None:
    first, password = users.create_local("bob")
    _, other = users.create_local("carol")
    assert first.role == "user"  # rbac.default_role
    assert password is not None
    assert other is not None
    assert len(password) >= 20
    assert password != other
    assert users.authenticate("bob", password) is not None


@pytest.mark.parametrize(
    ("username", "password", "role", "message"),
    [
        ("", None, None, "may not be empty"),
        ("a b", None, None, "whitespace or control"),
        ("tab\there", None, None, "whitespace or control"),
        ("nul\x00", None, None, "whitespace or control"),
        ("x" * 256, None, None, "at most 255"),
        ("dave", "short", None, "at least 12"),
        ("dave", None, "root", "unknown role 'root'"),
    ],
)
def test_create_local_refuses_bad_input(
    users: UserService, username: str, password: str | None, role: str | None, message: str
) -> None:
    with pytest.raises(UserError, match=message):
        users.create_local(username, password, role)
    assert users.list() == []


def test_duplicate_username_is_an_error(users: UserService, repo: SqlUserRepository) -> None:
    users.create_local("erin", "a long enough password")
    with pytest.raises(UserError, match="already exists"):
        users.create_local("ERIN", "another long password")
    record = repo.by_username("erin")
    assert record is not None
    with pytest.raises(DuplicateUser):
        repo.insert(record)
    assert repo.count() == 1


def test_every_failed_sign_in_pays_exactly_one_argon2_verify(
    users: UserService, monkeypatch: pytest.MonkeyPatch
) -> None:
    users.create_local("frank", "frank's long password")
    users.create_local("gina", "gina's long password")
    users.set_disabled("gina", True)
    users.provisioning.federated(
        "https://idp.example", "sub-1", email="hal@example.com", name=None, groups=[]
    )
    passwords.dummy_hash()  # made once per process, before the first unknown name

    seen: list[str] = []
    real_verify = passwords.verify_password

    def counting(stored_hash: str, password: str) -> bool:
        seen.append(stored_hash)
        return real_verify(stored_hash, password)

    monkeypatch.setattr(passwords, "verify_password", counting)
    cases = [
        ("nobody", "whatever password", None),  # unknown
        ("gina", "gina's long password", None),  # disabled
        ("hal@example.com", "anything at all", None),  # no password here
        ("frank", "not frank's password", None),  # wrong
        ("frank", "frank's long password", "frank"),  # right
    ]
    for username, password, expected in cases:
        seen.clear()
        person = users.authenticate(username, password)
        assert (person.username if person else None) == expected
        assert len(seen) == 1, username
    # the cases with no stored hash to check paid against the dummy one
    seen.clear()
    users.authenticate("nobody", "x")
    assert seen == [passwords.dummy_hash()]


def test_sign_in_upgrades_an_old_hash(users: UserService, repo: SqlUserRepository) -> None:
    person, _ = users.create_local("ivan", "ivan's long password")
    weak = PasswordHasher(time_cost=1, memory_cost=8192).hash("ivan's long password")
    repo.update(person.id, password_hash=weak)
    assert passwords.needs_rehash(weak)
    assert users.authenticate("ivan", "ivan's long password") is not None
    record = repo.get(person.id)
    assert record is not None
    assert record.password_hash != weak
    assert record.password_hash is not None
    assert not passwords.needs_rehash(record.password_hash)
    assert users.authenticate("ivan", "ivan's long password") is not None


def test_passwords_never_raise() -> None:
    assert not passwords.verify_password("not a hash", "pw")
    assert not passwords.verify_password("$argon2id$v=19$m=1,t=1,p=1$bad$bad", "pw")
    assert passwords.needs_rehash("not a hash")
    good = passwords.hash_password("pw")
    assert passwords.verify_password(good, "pw")
    assert not passwords.verify_password(good, "PW")


def test_set_role_set_password_and_unknowns(users: UserService) -> None:
    users.create_local("judy", "judy's long password")
    assert users.set_role("JUDY", "admin").role == "admin"
    person = users.by_username("judy")
    assert person is not None
    assert person.role == "admin"
    with pytest.raises(UserError, match="unknown role 'root'"):
        users.set_role("judy", "root")
    users.set_password("judy", "judy's new password")
    assert users.authenticate("judy", "judy's long password") is None
    assert users.authenticate("judy", "judy's new password") is not None
    with pytest.raises(UserError, match="at least 12"):
        users.set_password("judy", "short")
    for action in (
        lambda: users.set_role("nobody", "user"),
        lambda: users.set_password("nobody", "a long enough password"),
        lambda: users.delete("nobody"),
    ):
        with pytest.raises(UserError, match="no user 'nobody'"):
            action()


def test_delete_removes_the_user_and_their_refresh_tokens(app: Flask, users: UserService) -> None:
    person, _ = users.create_local("kim", "kim's long password")
    other, _ = users.create_local("lee", "lee's long password")
    engine = engine_of(app)
    families = sa.Table(RefreshFamily.__tablename__, sa.MetaData(), autoload_with=engine)
    tokens = sa.Table(RefreshToken.__tablename__, sa.MetaData(), autoload_with=engine)
    now = datetime.now(UTC)
    with engine.begin() as conn:
        for family_id, user_id in (("f-kim", person.id), ("f-lee", other.id)):
            conn.execute(
                sa.insert(families).values(
                    id=family_id,
                    user_id=user_id,
                    client_id="cli",
                    scope="openid",
                    audience="https://api.example.com",
                    auth_time=0,
                    created_at=now,
                    expires_at=now + timedelta(days=1),
                )
            )
            conn.execute(
                sa.insert(tokens).values(
                    token_hash=family_id.ljust(64, "0"),
                    family_id=family_id,
                    created_at=now,
                    idle_expires_at=now + timedelta(days=1),
                )
            )
    assert users.delete("kim").id == person.id
    assert users.by_username("kim") is None
    with engine.connect() as conn:
        assert [r.id for r in conn.execute(sa.select(families))] == ["f-lee"]
        assert [r.family_id for r in conn.execute(sa.select(tokens))] == ["f-lee"]


# -- CSV ----------------------------------------------------------------------------


def test_import_then_export_without_passwords(users: UserService) -> None:
    users.provisioning.federated(
        "https://idp.example",
        "s",
        email="zed@example.com",
        name="Z",
        groups=[],
        email_verified=True,
    )
    text = (
        "username,password,role\nMallory,mallory's password,admin\n\nniaj,niaj's long password,\n"
    )
    assert import_csv(users.records, io.StringIO(text)) == 2
    mallory = users.authenticate("mallory", "mallory's password")
    assert mallory is not None
    assert mallory.role == "admin"
    niaj = users.by_username("niaj")
    assert niaj is not None
    assert niaj.role == "user"  # an empty role cell: the default role
    out = io.StringIO()
    assert export_csv(users.records, out) == 3
    assert out.getvalue() == (
        "username,password,role,email\n"
        "mallory,,admin,\n"
        "niaj,,user,\n"
        "zed@example.com,,user,zed@example.com\n"
    )


@pytest.mark.parametrize(
    ("bad_line", "message"),
    [
        ("olivia,olivia's password,root", "line 4: unknown role 'root'"),
        ("olivia,,user", "line 4: user 'olivia' has no password"),
        ("olivia,short,user", "line 4: a password needs at least 12"),
        ("olivia,olivia's password", "line 4: expected 3 cells"),
        ("ol ivia,olivia's password,user", "line 4: username 'ol ivia' has whitespace"),
        ("PEGGY,peggy's password,user", "line 4: user 'peggy' is also on line 2"),
        ("existing,existing password,user", "line 4: user 'existing' already exists"),
    ],
)
def test_a_bad_csv_row_imports_nothing(users: UserService, bad_line: str, message: str) -> None:
    users.create_local("existing", "existing password")
    text = (
        "username,password,role\n"
        "peggy,peggy's password,user\n"
        "quinn,quinn's password,viewer\n"
        f"{bad_line}\n"
        "rupert,rupert's password,admin\n"
    )
    with pytest.raises(UserError, match=message) as raised:
        import_csv(users.records, io.StringIO(text))
    assert "no user was imported" in str(raised.value)
    assert "\n" not in str(raised.value)
    assert [p.username for p in users.list()] == ["existing"]


def test_csv_header_is_required(users: UserService) -> None:
    with pytest.raises(UserError, match="empty"):
        import_csv(users.records, io.StringIO(""))
    with pytest.raises(UserError, match="line 1: the header must be exactly"):
        import_csv(users.records, io.StringIO("name,password,role\nsam,sam's long password,user\n"))
    with pytest.raises(UserError, match="line 1: the header must be exactly"):
        import_csv(users.records, io.StringIO("sam,sam's long password,user\n"))
    assert users.list() == []


def test_csv_import_reports_every_bad_line_count(users: UserService) -> None:
    text = "username,password,role\na,short,user\nb,short,user\nc,short,user\n"
    with pytest.raises(UserError, match=r"^line 2: .* \(and 2 more bad lines\)"):
        import_csv(users.records, io.StringIO(text))


# -- federated and proxy users ----------------------------------------------------------


def test_federated_role_from_groups_on_first_sign_in_only(users: UserService, clock: Clock) -> None:
    issuer = "https://idp.example"
    first = users.provisioning.federated(
        issuer,
        "sub-a",
        email="Amy@Example.com",
        name="Amy",
        groups=["devs", "platform-admins"],
        email_verified=True,
    )
    # both groups map; the role listed first in rbac.roles wins
    assert (first.username, first.role, first.source) == ("amy@example.com", "admin", "upstream")
    assert first.groups == ("devs", "platform-admins")
    assert first.last_login_at == at(T0)

    users.set_role("amy@example.com", "viewer")  # an admin changes it
    clock.now = T0 + 3600
    later = users.provisioning.federated(
        issuer, "sub-a", email="amy@new.example", name="Amy B", groups=["platform-admins"]
    )
    assert later.id == first.id  # the same `sub` for ever
    assert later.role == "viewer"  # kept: groups decide only on first sight
    assert (later.email, later.name, later.groups) == (
        "amy@new.example",
        "Amy B",
        ("platform-admins",),
    )
    assert later.last_login_at == at(T0 + 3600)
    assert users.get(first.id) == later

    plain = users.provisioning.federated(
        issuer, "sub-b", email="ben@example.com", name=None, groups=["other"]
    )
    assert plain.role == "user"  # rbac.default_role
    auditor = users.provisioning.federated(
        issuer, "sub-c", email=None, name=None, groups="auditors"
    )
    assert auditor.role == "viewer"
    assert auditor.groups == ("auditors",)
    # no verified email: the sub with a hash of the pair, never a bare sub (a local
    # user could have that name)
    assert auditor.username.startswith("sub-c#")
    assert len(auditor.username) == len("sub-c#") + 10


def test_federated_never_takes_over_a_local_user_by_email(users: UserService) -> None:
    local, _ = users.create_local("cat@example.com", "cat's long password", "admin")
    federated = users.provisioning.federated(
        "https://idp.example",
        "sub-cat",
        email="cat@example.com",
        name=None,
        groups=[],
        email_verified=True,
    )
    assert federated.id != local.id
    assert federated.username.startswith("cat@example.com#")
    assert federated.role == "user"
    # the same pair from another issuer is another person
    other = users.provisioning.federated(
        "https://other.example", "sub-cat", email="cat@example.com", name=None, groups=[]
    )
    assert other.id not in (local.id, federated.id)
    assert (
        users.provisioning.federated(
            "https://idp.example", "sub-cat", email="cat@example.com", name=None, groups=[]
        ).id
        == federated.id
    )


def test_a_disabled_federated_user_is_returned_disabled(users: UserService, clock: Clock) -> None:
    person = users.provisioning.federated(
        "https://idp.example", "s", email="d@example.com", name=None, groups=[], email_verified=True
    )
    users.set_disabled("d@example.com", True)
    clock.now = T0 + 10
    again = users.provisioning.federated(
        "https://idp.example", "s", email="d@example.com", name=None, groups=[]
    )
    assert again.id == person.id
    assert again.disabled
    assert again.last_login_at == at(T0)  # no sign-in happened


def test_proxy_user(users: UserService, clock: Clock) -> None:
    first = users.provisioning.proxy_user(" Eve@Example.com ")
    assert (first.username, first.email, first.source, first.role) == (
        "eve@example.com",
        "eve@example.com",
        "proxy",
        "user",
    )
    clock.now = T0 + 5
    again = users.provisioning.proxy_user("eve@example.com")
    assert again.id == first.id
    assert again.last_login_at == at(T0 + 5)
    users.create_local("fay@example.com", "fay's long password")
    with pytest.raises(UserError, match="not a proxy user"):
        users.provisioning.proxy_user("fay@example.com")
    for garbage in ("", "no-at-sign", "a b@example.com", "x\r\n@example.com"):
        with pytest.raises(UserError, match="email"):
            users.provisioning.proxy_user(garbage)


@pytest.mark.parametrize(
    ("remote", "networks", "expected"),
    [
        ("127.0.0.1", ["127.0.0.1/32"], True),
        ("::ffff:127.0.0.1", ["127.0.0.1/32"], True),
        ("10.1.2.3", ["10.0.0.0/8", "192.168.0.0/16"], True),
        ("10.1.2.3", ["10.0.0.1"], False),
        ("::1", ["::1/128"], True),
        ("::1", ["127.0.0.1/32"], False),
        ("127.0.0.1", ["::/0"], False),
        ("fe80::1%eth0", ["fe80::/10"], True),
        ("not an address", ["0.0.0.0/0"], False),
        ("", ["0.0.0.0/0"], False),
        (None, ["0.0.0.0/0"], False),
        ("127.0.0.1", ["garbage", "127.0.0.0/8"], True),
        ("127.0.0.1", [], False),
    ],
)
def test_trusted_address(remote: str | None, networks: list[str], expected: bool) -> None:
    assert trusted_address(remote, networks) is expected


# -- the first admin --------------------------------------------------------------------


def test_initial_admin_gets_a_random_password_once(users: UserService) -> None:
    password = users.ensure_initial_admin(None)
    assert password is not None
    admin = users.authenticate("admin", password)
    assert admin is not None
    assert admin.role == "admin"
    assert users.ensure_initial_admin(None) is None
    assert len(users.list()) == 1


def test_initial_admin_from_config(users: UserService) -> None:
    initial = InitialAdminSettings(username="root", password="the configured password")
    assert users.ensure_initial_admin(initial) is None
    root = users.authenticate("root", "the configured password")
    assert root is not None
    assert root.role == "admin"


def test_no_initial_admin_on_a_database_with_users(users: UserService) -> None:
    users.create_local("someone", "a long enough password")
    assert users.ensure_initial_admin(None) is None
    assert users.by_username("admin") is None


def test_admin_and_user_roles_always_exist(repo: SqlUserRepository) -> None:
    """Issue #4: ``admin`` and ``user`` exist by default; config may change their
    permissions, so the initial admin always has its role."""
    rbac = RbacSettings.model_validate(
        {"default_role": "user", "roles": {"user": ["read"], "ops": ["deploy"]}}
    )
    assert rbac.roles == {"admin": ("*",), "user": ("read",), "ops": ("deploy",)}
    assert UserService(repo, rbac).ensure_initial_admin(None)
    admin = UserService(repo, rbac).by_username("admin")
    assert admin is not None
    assert admin.role == "admin"


def test_concurrent_initial_admin_creates_exactly_one(repo: SqlUserRepository) -> None:
    services = [UserService(repo, RBAC) for _ in range(6)]
    barrier = threading.Barrier(len(services))

    def race(service: UserService) -> Any:
        barrier.wait()
        return service.ensure_initial_admin(None)

    with ThreadPoolExecutor(len(services)) as pool:
        results = list(pool.map(race, services))
    passwords_made = [r for r in results if r is not None]
    assert len(passwords_made) == 1
    assert [p.username for p in services[0].list()] == ["admin"]
    assert services[0].authenticate("admin", passwords_made[0]) is not None


def test_concurrent_first_federated_sign_in_makes_one_person(
    make_app: AppFactory,
) -> None:
    repo = SqlUserRepository(engine_of(make_app()))
    barrier = threading.Barrier(4)

    def sign_in(_: int) -> Person:
        barrier.wait()
        return UserService(repo, RBAC).provisioning.federated(
            "https://idp.example", "racer", email="racer@example.com", name=None, groups=[]
        )

    with ThreadPoolExecutor(4) as pool:
        people = list(pool.map(sign_in, range(4)))
    assert len({p.id for p in people}) == 1
    assert repo.count() == 1


def test_a_new_password_revokes_refresh_tokens(make_app: AppFactory) -> None:
    from .support.factories import PASSWORD, new_local_user
    from .support.flows import flask_refresh, flask_sign_in, flask_tokens

    app = make_app()
    user = new_local_user(app)
    tokens = flask_tokens(flask_sign_in(app, user))
    with app.app_context():
        service = Services.of(app).users
        assert service.check_password(user, PASSWORD)
        assert not service.check_password(user, "not the password at all")
        service.set_password(user, "a brand new password")
        assert service.check_password(user, "a brand new password")
    response = flask_refresh(app.test_client(), tokens["refresh_token"])
    assert response.status_code == 400
    assert response.get_json()["error"] == "invalid_grant"


# -- issue 16.6: upstream names are validated; exports are not formulas ----------------


@pytest.mark.parametrize(
    "email", ['=HYPERLINK("http://x")@example.com', "a\tb@example.com", "x\ny@example.com"]
)
def test_an_odd_upstream_email_is_not_a_username(users: UserService, email: str) -> None:
    person = users.provisioning.federated(
        "https://idp.example", "sub-odd", email=email, name=None, groups=[], email_verified=True
    )
    assert person.username.startswith("sub-odd#")
    assert person.email == email  # kept as the IdP said, never the name


def test_an_odd_upstream_sub_falls_back_to_a_plain_name(users: UserService) -> None:
    person = users.provisioning.federated(
        "https://idp.example", "=cmd|x", email=None, name=None, groups=[]
    )
    assert person.username.startswith("upstream#")
    assert len(person.username) == len("upstream#") + 10


@pytest.mark.parametrize("header", ["=SUM(1)@example.com", "@x@example.com", "a\tb@example.com"])
def test_an_odd_proxy_email_is_refused(users: UserService, header: str) -> None:
    with pytest.raises(UserError, match="does not hold an email address"):
        users.provisioning.proxy_user(header)


def test_export_neutralises_formula_cells(users: UserService) -> None:
    users.create_local("+plus", "plus's long password", "user")
    users.create_local("-minus", "minus's long password", "user")
    users.create_local("plain", "plain's long password", "user")
    out = io.StringIO()
    assert export_csv(users.records, out) == 3
    lines = out.getvalue().splitlines()
    assert lines[0] == "username,password,role,email"
    assert sorted(lines[1:]) == ["'+plus,,user,", "'-minus,,user,", "plain,,user,"]
