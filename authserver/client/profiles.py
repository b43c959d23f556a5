"""Named client profiles (as the AWS CLI's ``~/.aws/config`` and ``AWS_PROFILE``): the
issuer, client id, audience, scopes and flow of a sign-in, so that ``authserver login``
and ``authserver token`` need no flags after ``authserver login --issuer URL`` once.

The file is ``$AUTHSERVER_CLIENT_CONFIG``, else ``$XDG_CONFIG_HOME/authserver/config.yaml``
(XDG Base Directory), else ``~/.config/authserver/config.yaml``::

    default_profile: default          # optional; "default" when left out
    profiles:
      default:
        issuer: https://auth.example.com
        client_id: cli                # optional
        audience: https://api.example.com   # optional (RFC 8707 resource)
        scopes: openid profile offline_access   # optional; a string or a list
        flow: loopback                # loopback | device

It is written by its owner only (0600), replaced atomically. Client side: PyYAML only.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import yaml

from .env import CLIENT_CONFIG, PROFILE
from .files import write_private_file
from .http import LoginError, UsageError, reason

DEFAULT_PROFILE = "default"
FLOWS = ("loopback", "device")
_KEYS = ("issuer", "client_id", "audience", "scopes", "flow")


@dataclass(frozen=True)
class Profile:
    """One named set of client defaults; ``None`` is "not set"."""

    name: str
    issuer: str | None = None
    client_id: str | None = None
    audience: str | None = None
    scopes: str | None = None
    flow: str | None = None

    def to_yaml(self) -> dict[str, str]:
        return {k: v for k, v in asdict(self).items() if k != "name" and v is not None}


def client_config_path() -> Path:
    """``$AUTHSERVER_CLIENT_CONFIG``, else ``$XDG_CONFIG_HOME/authserver/config.yaml``,
    else ``~/.config/authserver/config.yaml``."""
    explicit = os.environ.get(CLIENT_CONFIG)
    if explicit:
        return Path(explicit).expanduser()
    base = os.environ.get("XDG_CONFIG_HOME")
    # XDG Base Directory: a relative value is invalid and is ignored.
    root = Path(base) if base and os.path.isabs(base) else Path.home() / ".config"
    return root / "authserver" / "config.yaml"


class ProfileFile:
    """The client config file: its profiles and which one is the default."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path or client_config_path()
        self.default_name, self.profiles = self._load()

    def names(self) -> list[str]:
        return sorted(self.profiles)

    def get(self, name: str) -> Profile | None:
        return self.profiles.get(name)

    def selected_name(self, explicit: str | None) -> tuple[str, bool]:
        """The profile to use, and whether it was asked for by name: ``--profile``,
        else ``$AUTHSERVER_PROFILE``, else the file's ``default_profile``."""
        if explicit:
            return explicit, True
        from_env = os.environ.get(PROFILE)
        if from_env:
            return from_env, True
        return self.default_name, False

    def missing(self, name: str) -> UsageError:
        """The one-line error for a profile that does not exist."""
        if self.profiles:
            known = ", ".join(self.names())
            return UsageError(f"no profile {name!r} in {self.path}; the profiles are: {known}")
        return UsageError(
            f"no profile {name!r}: {self.path} has none yet; "
            f"`authserver login --issuer URL --profile {name}` saves one"
        )

    def save(self, profile: Profile) -> bool:
        """Store ``profile`` (replacing one of its name); ``False`` if nothing changed."""
        if self.profiles.get(profile.name) == profile:
            return False
        self.profiles[profile.name] = profile
        data: dict[str, Any] = {}
        if self.default_name != DEFAULT_PROFILE:
            data["default_profile"] = self.default_name
        data["profiles"] = {name: self.profiles[name].to_yaml() for name in self.names()}
        self._write(yaml.safe_dump(data, sort_keys=False, default_flow_style=False))
        return True

    # -- reading and writing ------------------------------------------------------------

    def _load(self) -> tuple[str, dict[str, Profile]]:
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return DEFAULT_PROFILE, {}
        except OSError as exc:
            raise LoginError(f"cannot read {self.path}: {reason(exc)}") from None
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise UsageError(yaml_problem(self.path, exc)) from None
        if data is None:
            return DEFAULT_PROFILE, {}
        if not isinstance(data, dict):
            raise UsageError(f"{self.path}: expected a mapping with `profiles:`")
        unknown = sorted(str(k) for k in data if k not in ("default_profile", "profiles"))
        if unknown:
            raise UsageError(
                f"{self.path}: unknown key {unknown[0]!r} (the keys are default_profile, profiles)"
            )
        default = data.get("default_profile", DEFAULT_PROFILE)
        if not isinstance(default, str) or not default:
            raise UsageError(f"{self.path}: default_profile must be a profile's name")
        raw = data.get("profiles") or {}
        if not isinstance(raw, dict):
            raise UsageError(f"{self.path}: profiles must be a mapping of names to profiles")
        profiles = {str(name): _profile(self.path, str(name), body) for name, body in raw.items()}
        return default, profiles

    def _write(self, text: str) -> None:
        try:
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as exc:
            raise LoginError(f"cannot create {self.path.parent}: {reason(exc)}") from None
        write_private_file(self.path, text, str(self.path))


def _profile(path: Path, name: str, body: object) -> Profile:
    where = f"{path}: profile {name!r}"
    if body is None:
        return Profile(name)
    if not isinstance(body, Mapping):
        raise UsageError(f"{where} must be a mapping (issuer, client_id, ...)")
    unknown = sorted(str(k) for k in body if k not in _KEYS)
    if unknown:
        raise UsageError(f"{where}: unknown key {unknown[0]!r} (the keys are {', '.join(_KEYS)})")
    values: dict[str, str] = {}
    for key in _KEYS:
        value = body.get(key)
        if value is None:
            continue
        if key == "scopes" and isinstance(value, list):
            value = " ".join(str(scope) for scope in value)
        if not isinstance(value, str) or not value.strip():
            raise UsageError(f"{where}: {key} must be a non-empty string")
        values[key] = value.strip()
    if values.get("flow", "loopback") not in FLOWS:
        raise UsageError(f"{where}: flow must be loopback or device, not {values['flow']!r}")
    return replace(Profile(name), **values)


def yaml_problem(path: Path, exc: yaml.YAMLError) -> str:
    """One line naming the file, and the line and column of a YAML error (PyYAML's own
    text names ``<unicode string>``, over several lines)."""
    if not isinstance(exc, yaml.MarkedYAMLError) or exc.problem_mark is None:
        return f"{path}: not valid YAML: {' '.join(str(exc).split())}"
    mark = exc.problem_mark
    where = f"{path}, line {mark.line + 1}, column {mark.column + 1}"
    context = f" ({exc.context})" if exc.context else ""
    return f"{where}: not valid YAML: {exc.problem or 'cannot parse this'}{context}"
