"""Service accounts: confidential clients that admins make at runtime for CI and services.

A service account has a name, one role, the scopes it may ask for (within its role's
permissions, ``rbac.roles``) and an expiry (30 days unless told otherwise, or never).
Its token, ``as_sa_<client_id>.<secret>`` (DESIGN.md), is returned once by
:meth:`ServiceAccountService.create` and :meth:`~ServiceAccountService.rotate` and
stored only as a hash. With it a CI job uses the client credentials grant (RFC 6749
§4.4), authenticating with HTTP Basic ``<client_id>:<token>`` or with the token alone
as ``client_secret``. Rotated, revoked (deleted) or expired, it is ``invalid_client``.

Instead of (or beside) a token, an account may hold keys: :meth:`create_with_key` and
:meth:`add_key` return a key file (``authserver.key_file``) whose private key is never
stored; the account authenticates with ``private_key_jwt`` (RFC 7523 §2.2) by any of
its keys, so a new key can be rolled out before the old one is removed.
"""

from __future__ import annotations

import builtins
import re
import secrets
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

from ..key_file import DEFAULT_KEY_ALGORITHM, KEY_ALGORITHMS, KeyFile, generate_key, public_jwk
from ..oauth.clients import (
    SERVICE_ACCOUNT_ID_PREFIX,
    Client,
    ServiceAccountClient,
    key_generation,
    new_service_account_token,
    secret_generation,
    service_account_token_hash,
)
from ..oauth.secrets import SecretVerifier
from ..oauth.vocabulary import GRANT_CLIENT_CREDENTIALS, SCOPE_TOKEN
from ..settings import RbacSettings
from ..storage.service_accounts import (
    DuplicateServiceAccount,
    ServiceAccountKeyRecord,
    ServiceAccountRecord,
    SqlServiceAccountRepository,
    TooManyKeys,
)
from ..storage.service_accounts import (
    ServiceAccountInfo as ServiceAccountInfo,
)
from .users import AlreadyExists, NotFound, UserError, check_role

DEFAULT_EXPIRY_SECONDS = 30 * 86400
#: The longest expiry one can ask for (about 10 years); longer is "never".
MAX_EXPIRY_SECONDS = 3650 * 86400
#: ``last_used_at`` is written at most this often per account.
LAST_USED_RESOLUTION_SECONDS = 60
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
#: Keys one account may hold at once (GCP's limit too): enough to roll one over.
MAX_KEYS = 10


@dataclass(frozen=True)
class ServiceAccountKeyInfo:
    """What a listing shows of a key: its public half's name and age."""

    kid: str
    algorithm: str
    created_at: datetime
    created_by: str | None

    def as_dict(self) -> dict[str, object]:
        return {
            "kid": self.kid,
            "algorithm": self.algorithm,
            "created_at": self.created_at.isoformat(),
            "created_by": self.created_by,
        }


class ServiceAccountService:
    """The rules about service accounts, over a ``SqlServiceAccountRepository``.

    :meth:`get_client` is how the token endpoint finds them (``ChainedClientStore``).
    """

    def __init__(
        self,
        repository: SqlServiceAccountRepository,
        rbac: RbacSettings,
        *,
        clock: Callable[[], float] = time.time,
        issuer: str = "",
        token_url: str = "",
    ) -> None:
        self._repo = repository
        self._rbac = rbac
        self._clock = clock
        #: What key files name (the ``aud`` of their assertions, and where to send them).
        self.issuer = issuer
        self.token_url = token_url
        self._verifier = SecretVerifier()

    # -- admin operations -------------------------------------------------------------

    def list(self) -> list[ServiceAccountInfo]:
        return [record.info for record in self._repo.list()]

    def get(self, name: str) -> ServiceAccountInfo:
        return self._existing(name).info

    def names(self, client_ids: Iterable[str]) -> dict[str, str]:
        """``{client_id: name}`` for the ids that name a service account, in one lookup."""
        return self._repo.names(client_ids)

    def create(
        self,
        name: str,
        *,
        role: str | None = None,
        scopes: Iterable[str] | None = None,
        expires_in: float | None = DEFAULT_EXPIRY_SECONDS,
        created_by: str | None = None,
    ) -> tuple[ServiceAccountInfo, str]:
        """Make one; returns it and its token, which is never shown again.

        ``expires_in`` is seconds from now, ``None`` for never. ``scopes`` defaults to
        the role's permissions (for a ``*`` role: every permission of any role).
        """
        client_id = SERVICE_ACCOUNT_ID_PREFIX + secrets.token_hex(8)
        token = new_service_account_token(client_id)
        record = self._new_record(
            client_id, name, role, scopes, expires_in, created_by, service_account_token_hash(token)
        )
        self._insert(record)
        return record.info, token

    def create_with_key(
        self,
        name: str,
        *,
        role: str | None = None,
        scopes: Iterable[str] | None = None,
        expires_in: float | None = DEFAULT_EXPIRY_SECONDS,
        created_by: str | None = None,
        algorithm: str = DEFAULT_KEY_ALGORITHM,
    ) -> tuple[ServiceAccountInfo, KeyFile]:
        """Make one that holds a key and no token; returns it and its key file, whose
        private key is never stored nor shown again."""
        algorithm = check_key_algorithm(algorithm)
        client_id = SERVICE_ACCOUNT_ID_PREFIX + secrets.token_hex(8)
        record = self._new_record(client_id, name, role, scopes, expires_in, created_by, None)
        key_file, key = self._new_key(record, algorithm, created_by)
        self._insert(record, key)
        return record.info, key_file

    def add_key(
        self, name: str, *, created_by: str | None = None, algorithm: str = DEFAULT_KEY_ALGORITHM
    ) -> tuple[ServiceAccountInfo, KeyFile]:
        """One more key; the others keep working (remove them with :meth:`remove_key`
        once the new file is in place)."""
        algorithm = check_key_algorithm(algorithm)
        record = self._existing(name)
        info = record.info
        key_file, key = self._new_key(record, algorithm, created_by)
        try:
            added = self._repo.add_key(key, MAX_KEYS)
        except TooManyKeys:
            raise UserError(
                f"service account {info.name!r} holds {MAX_KEYS} keys already; remove one first"
            ) from None
        if not added:
            raise NotFound(f"no service account {info.name!r}")
        return info, key_file

    def remove_key(self, name: str, kid: str) -> ServiceAccountInfo:
        """The key stops authenticating at once (access tokens it minted run out)."""
        record = self._existing(name)
        if not self._repo.remove_key(record.info.client_id, kid):
            raise NotFound(f"service account {record.info.name!r} has no key {kid!r}")
        return record.info

    def keys(self, name: str) -> builtins.list[ServiceAccountKeyInfo]:
        record = self._existing(name)
        return [
            ServiceAccountKeyInfo(k.kid, k.algorithm, k.created_at, k.created_by)
            for k in self._repo.keys(record.info.client_id)
        ]

    def rotate(self, name: str) -> tuple[ServiceAccountInfo, str]:
        """A new token; the old one stops working at once. The expiry is kept."""
        record = self._existing(name)
        if record.token_hash is None:
            raise UserError(
                f"service account {record.info.name!r} has key files and no token: "
                "rotate its keys with add-key and remove-key"
            )
        token = new_service_account_token(record.info.client_id)
        now = self._now()
        new_hash = service_account_token_hash(token)
        if not self._repo.replace_token(record.info.client_id, record.token_hash, new_hash, now):
            raise AlreadyExists(
                f"service account {record.info.name!r} was rotated or revoked meanwhile; "
                "its token is not this one"
            )
        return replace(record.info, rotated_at=now), token

    def revoke(self, name: str) -> ServiceAccountInfo:
        """Delete it: its token is refused from now on (access tokens run out)."""
        record = self._existing(name)
        if not self._repo.delete(record.info.client_id):
            raise NotFound(f"no service account {record.info.name!r}")
        return record.info

    # -- ClientStore ----------------------------------------------------------------------

    def get_client(self, client_id: str) -> Client | None:
        record = self._repo.get(client_id)
        if record is None or record.info.role not in self._rbac.roles:
            return None  # gone, or its role was taken out of the config
        info = record.info
        permitted = self._rbac.roles[info.role]
        scopes = tuple(s for s in info.scopes if "*" in permitted or s in permitted)
        keys = tuple(k.public_jwk for k in self._repo.keys(client_id))
        return ServiceAccountClient(
            client_id=info.client_id,
            is_public=False,
            secret_hash=record.token_hash,
            grant_types=(GRANT_CLIENT_CREDENTIALS,),
            redirect_uris=(),
            scopes=scopes,
            roles=(info.role,),
            verifier=self._verifier,
            expires_at=info.expires_at.timestamp() if info.expires_at else None,
            # ``last_used_at`` is written only once it is stale: no write per token.
            on_use=self._touch if self._stale(info.last_used_at) else None,
            clock=self._clock,
            jwks=keys,
        )

    def token_still_good(self, client_id: str, issued_at: float, generation: object = None) -> bool:
        """Whether an access token issued to ``client_id`` at ``issued_at`` may still act
        at our own admin API: the account exists, has not expired, and was not rotated
        since (rotation is the answer to a leaked token): the token's secret
        generation is the current secret's (issue 16.7)."""
        record = self._repo.get(client_id)
        if record is None or record.info.role not in self._rbac.roles:
            return False
        info = record.info
        now = self._clock()
        if info.expires_at is not None and info.expires_at.timestamp() <= now:
            return False
        if record.token_hash is not None and generation == secret_generation(record.token_hash):
            return info.rotated_at is None or issued_at >= int(info.rotated_at.timestamp())
        # Minted with a key file: good while that key is there.
        return any(
            generation == key_generation(info.client_id, key.kid)
            for key in self._repo.keys(client_id)
        )

    # -- helpers ------------------------------------------------------------------------

    def _new_record(
        self,
        client_id: str,
        name: str,
        role: str | None,
        scopes: Iterable[str] | None,
        expires_in: float | None,
        created_by: str | None,
        token_hash: str | None,
    ) -> ServiceAccountRecord:
        name = validate_name(name)
        role = check_role(self._rbac, role)
        granted = self._scopes(role, scopes)
        now = self._now()
        info = ServiceAccountInfo(
            client_id=client_id,
            name=name,
            role=role,
            scopes=granted,
            created_at=now,
            created_by=created_by,
            expires_at=self._expiry(now, expires_in),
            rotated_at=None,
            last_used_at=None,
        )
        return ServiceAccountRecord(info, token_hash)

    def _insert(
        self, record: ServiceAccountRecord, key: ServiceAccountKeyRecord | None = None
    ) -> None:
        try:
            self._repo.insert(record, key)
        except DuplicateServiceAccount:
            raise AlreadyExists(f"service account {record.info.name!r} already exists") from None

    def _new_key(
        self, record: ServiceAccountRecord, algorithm: str, created_by: str | None
    ) -> tuple[KeyFile, ServiceAccountKeyRecord]:
        private = generate_key(algorithm)
        kid = str(private.kid)
        key_file = KeyFile(
            client_id=record.info.client_id,
            key_id=kid,
            issuer=self.issuer,
            token_url=self.token_url,
            private_key=private,
            name=record.info.name,
        )
        key = ServiceAccountKeyRecord(
            client_id=record.info.client_id,
            kid=kid,
            algorithm=algorithm,
            public_jwk=public_jwk(private),
            created_at=self._now(),
            created_by=created_by,
        )
        return key_file, key

    def _stale(self, last_used_at: datetime | None) -> bool:
        limit = self._now() - timedelta(seconds=LAST_USED_RESOLUTION_SECONDS)
        return last_used_at is None or last_used_at < limit

    def _touch(self, client_id: str) -> None:
        now = self._now()
        # Conditional again in SQL: of workers racing here, one writes.
        self._repo.touch(client_id, now, now - timedelta(seconds=LAST_USED_RESOLUTION_SECONDS))

    def _existing(self, name: str) -> ServiceAccountRecord:
        record = self._repo.by_name(name) if NAME_PATTERN.fullmatch(name) else None
        if record is None:
            raise NotFound(f"no service account {name!r}")
        return record

    def _scopes(self, role: str, asked: Iterable[str] | None) -> tuple[str, ...]:
        permissions = self._rbac.roles[role]
        if "*" in permissions:
            every = {p for perms in self._rbac.roles.values() for p in perms if p != "*"}
            default = tuple(sorted(every))
        else:
            default = tuple(permissions)
        if asked is None:
            return default
        scopes = tuple(dict.fromkeys(asked))
        for scope in scopes:
            if not SCOPE_TOKEN.fullmatch(scope) or scope == "*":
                raise UserError(f"{scope!r} is not a valid scope")
            if "*" not in permissions and scope not in permissions:
                raise UserError(
                    f"role {role!r} does not permit scope {scope!r}; "
                    f"its permissions are: {', '.join(permissions) or 'none'}"
                )
        return scopes

    def _expiry(self, now: datetime, expires_in: float | None) -> datetime | None:
        if expires_in is None:
            return None
        if not 0 < expires_in <= MAX_EXPIRY_SECONDS:
            raise UserError("the expiry must be more than 0 s and at most 3650 days (or never)")
        return now + timedelta(seconds=expires_in)

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self._clock(), UTC)


def check_key_algorithm(algorithm: str) -> str:
    if algorithm not in KEY_ALGORITHMS:
        raise UserError(
            f"the key algorithm is one of {', '.join(KEY_ALGORITHMS)}, not {algorithm!r}"
        )
    return algorithm


def validate_name(name: str) -> str:
    if not NAME_PATTERN.fullmatch(name):
        raise UserError(
            "a service account name is 1 to 64 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    return name
