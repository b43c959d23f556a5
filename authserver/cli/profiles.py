"""``authserver logout``, ``whoami`` and ``status``: a person's sign-ins, per profile
(as ``gh auth logout`` and ``gh auth status``). ``whoami`` and ``status`` read the
cache only: no network."""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from .output import CliError, add_command, print_table

if TYPE_CHECKING:
    from .output import Parser, Subcommands


def cmd_logout(args: argparse.Namespace) -> int:
    from .login import client_errors, resolve

    with client_errors():
        from ..client import TokenCache, cache_key
        from ..client.account import revoke_sign_in

        target = resolve(args)
        issuer = target.require_issuer()
        cache = TokenCache()
        key = cache_key(target.client_id, target.audience)
        with cache.locked():
            token = cache.load(issuer, key)
            if token is None:
                print(
                    f"authserver: not signed in to {issuer} as client {target.client_id}"
                    + (f" for {target.audience}" if target.audience else "")
                    + ": nothing to do",
                    file=sys.stderr,
                )
                return 0
            problem = revoke_sign_in(issuer, target.client_id, token)
            cache.remove(issuer, key)
    if problem:
        print(
            f"authserver: warning: the tokens could not be revoked at the server ({problem}); "
            "they are removed from this machine only",
            file=sys.stderr,
        )
        print(f"authserver: signed out of {issuer} on this machine", file=sys.stderr)
    else:
        print(f"authserver: signed out of {issuer}; the tokens are revoked", file=sys.stderr)
    return 0


def cmd_whoami(args: argparse.Namespace) -> int:
    from .login import client_errors, resolve

    with client_errors():
        from ..client import TokenCache, cache_key
        from ..client.account import who

        target = resolve(args)
        issuer = target.require_issuer()
        token = TokenCache().load(issuer, cache_key(target.client_id, target.audience))
    if token is None:
        raise CliError(
            f"not signed in to {issuer} as client {target.client_id}: run `authserver login"
            + (f" --profile {args.profile}" if args.profile else "")
            + "`"
        )
    info = {"profile": target.name, "issuer": issuer, **who(token)}
    info["client_id"] = info["client_id"] or target.client_id
    info["expires_at"] = _iso(token.expires_at)
    info["expired"] = token.expires_at <= time.time()
    if args.output == "json":
        json.dump(info, sys.stdout, indent=2)
        print()
        return 0
    expires = info["expires_at"] + " " + _left(token.expires_at)
    if info["expired"] and token.refresh_token:
        expires += " (`authserver token` refreshes it)"
    rows = [
        ["profile", target.name],
        ["issuer", issuer],
        ["subject", info["sub"] or "-"],
        ["username", info["username"] or "-"],
        ["email", info["email"] or "-"],
        ["roles", ", ".join(map(str, info["roles"])) or "-"],
        ["audience", ", ".join(map(str, info["audience"])) or "-"],
        ["client", info["client_id"]],
        ["scope", info["scope"] or "-"],
        ["expires", expires],
    ]
    print_table(rows)
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    from .login import client_errors

    with client_errors():
        from ..client import TokenCache, cache_key
        from ..client.profiles import ProfileFile

        file = ProfileFile()
        cache = TokenCache()
        selected, _ = file.selected_name(args.profile)
        if args.profile and file.get(args.profile) is None:
            raise file.missing(args.profile)
        names = [args.profile] if args.profile else file.names()
        items: list[dict[str, Any]] = []
        for name in names:
            profile = file.profiles[name]
            client_id = profile.client_id or "cli"
            token = (
                cache.load(profile.issuer, cache_key(client_id, profile.audience))
                if profile.issuer
                else None
            )
            items.append(
                {
                    "profile": name,
                    "default": name == selected,
                    "issuer": profile.issuer,
                    "client_id": client_id,
                    "audience": profile.audience,
                    "flow": profile.flow or "loopback",
                    "state": _state(token),
                    "expires_at": _iso(token.expires_at) if token else None,
                }
            )
    if args.output == "json":
        json.dump(items, sys.stdout, indent=2)
        print()
        return 0
    if not items:
        print(
            f"authserver: no profiles in {file.path}: `authserver login --issuer URL` saves one",
            file=sys.stderr,
        )
        return 0
    rows = [["PROFILE", "ISSUER", "CLIENT", "AUDIENCE", "FLOW", "STATE", "EXPIRES"]]
    for item in items:
        rows.append(
            [
                item["profile"] + (" *" if item["default"] else ""),
                item["issuer"] or "-",
                item["client_id"],
                item["audience"] or "-",
                item["flow"],
                item["state"],
                item["expires_at"] or "-",
            ]
        )
    print_table(rows)
    return 0


def _state(token: Any) -> str:
    """``signed in`` (a valid access token, or a refresh token to get one), ``expired``
    (neither), or ``signed out`` (nothing cached)."""
    if token is None:
        return "signed out"
    if token.expires_at > time.time() or token.refresh_token:
        return "signed in"
    return "expired"


def _iso(timestamp: int) -> str:
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _left(timestamp: int) -> str:
    seconds = int(timestamp - time.time())
    if seconds <= 0:
        return "(expired)"
    hours, rest = divmod(seconds, 3600)
    return f"(in {hours}h{rest // 60:02d}m)" if hours else f"(in {rest // 60}m{rest % 60:02d}s)"


def _output(command: argparse.ArgumentParser, what: str) -> None:
    command.add_argument(
        "--output",
        choices=("table", "json"),
        default="table",
        help=f"a table for people, or {what} for scripts (default: %(default)s)",
    )


def register(sub: Subcommands, common: Parser) -> None:
    from .login import client_arguments

    logout = add_command(
        sub,
        common,
        "logout",
        cmd_logout,
        "sign out: revoke the refresh token at the server (RFC 7009) and remove the cached "
        "tokens (removed even when the server cannot be reached)",
    )
    client_arguments(logout)
    whoami = add_command(
        sub,
        common,
        "whoami",
        cmd_whoami,
        "who the cached tokens say you are: subject, username, roles, audience, expiry "
        "(no network)",
    )
    client_arguments(whoami)
    _output(whoami, "a JSON object")
    status = add_command(
        sub,
        common,
        "status",
        cmd_status,
        "each profile: its issuer and client, signed in or not, and when the access "
        "token expires (no network); * marks the default",
    )
    status.add_argument("--profile", metavar="NAME", help="only this profile")
    _output(status, "a JSON list of objects")
