"""``authserver login`` and ``authserver token``: a person's (or a script's) side, the
client; no config, no database. The issuer, client and flow come from the flags, else
from a profile of the client config file (:mod:`authserver.client.profiles`), which
``login`` saves."""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, TextIO

from . import profiles as profile_commands
from .output import EXIT_USAGE, CliError, add_command

if TYPE_CHECKING:
    from ..client.profiles import Profile, ProfileFile
    from .output import Parser, Subcommands

DEFAULT_CLIENT_ID = "cli"
DEFAULT_SCOPES = "openid profile offline_access"


@contextmanager
def client_errors() -> Iterator[None]:
    """``LoginError`` as a one-line failure."""
    try:
        from ..client.http import LoginError, UsageError
    except ImportError as exc:  # requests is not a server dependency
        name = exc.name or "requests"
        raise CliError(f"this command needs the {name} package: pip install {name}") from None
    try:
        yield
    except UsageError as exc:
        raise CliError(str(exc), EXIT_USAGE) from None
    except LoginError as exc:
        raise CliError(str(exc)) from None


@dataclass(frozen=True)
class Target:
    """What a command works on: the profile's values with the flags over them."""

    file: ProfileFile
    name: str
    issuer: str | None
    client_id: str
    #: whether the client id was given (a flag, or the profile), not the default
    client_id_given: bool
    audience: str | None
    scopes: str
    flow: str
    stored: Profile | None

    def require_issuer(self) -> str:
        if self.issuer:
            return self.issuer
        raise CliError(
            "no issuer: pass --issuer URL, or sign in once with `authserver login --issuer URL` "
            f"(it saves the issuer in profile {self.name!r} of {self.file.path})",
            EXIT_USAGE,
        )


def resolve(args: argparse.Namespace, *, creating: bool = False) -> Target:
    """The flags over the selected profile (``--profile``, ``$AUTHSERVER_PROFILE``, the
    file's ``default_profile``). A profile asked for by name must exist, unless
    ``creating`` (``login --issuer``), which saves it."""
    from ..client.profiles import ProfileFile

    file = ProfileFile()
    name, named = file.selected_name(args.profile)
    stored = file.get(name)
    if stored is None and named and not (creating and args.issuer):
        raise file.missing(name)
    client_id = args.client_id or (stored.client_id if stored else None)
    scopes = getattr(args, "login_scope", None) or (stored.scopes if stored else None)
    flow = getattr(args, "flow", None) or (stored.flow if stored else None)
    return Target(
        file=file,
        name=name,
        issuer=args.issuer or (stored.issuer if stored else None),
        client_id=client_id or DEFAULT_CLIENT_ID,
        client_id_given=client_id is not None,
        audience=args.audience or (stored.audience if stored else None),
        scopes=scopes or DEFAULT_SCOPES,
        flow=flow or "loopback",
        stored=stored,
    )


# -- login ----------------------------------------------------------------------------


def cmd_login(args: argparse.Namespace) -> int:
    with client_errors():
        from ..client import TokenCache, cache_key, login_device, login_loopback
        from ..client.profiles import Profile

        target = resolve(args, creating=True)
        issuer = target.require_issuer()
        cache = TokenCache()

        def show(text: str) -> None:
            print(text, file=sys.stderr, flush=True)

        if target.flow == "device":
            waiting = Waiting(sys.stderr)
            try:
                token = login_device(
                    issuer,
                    target.client_id,
                    target.scopes,
                    show,
                    audience=target.audience,
                    wait=waiting.wait,
                )
            finally:
                waiting.clear()
        else:

            def open_browser(url: str) -> None:
                if args.no_browser:
                    show(f"Open this URL in a browser to sign in:\n{url}")
                    return
                show(f"Opening a browser to sign in. If none opens, visit:\n{url}")
                problem = start_browser(url)
                if problem:
                    show(f"authserver: {problem}: open the URL above to sign in (or use --device)")

            token = login_loopback(
                issuer, target.client_id, target.scopes, open_browser, audience=target.audience
            )
        cache.store(issuer, cache_key(target.client_id, target.audience), token)
        saved = target.file.save(
            Profile(
                target.name,
                issuer=issuer,
                client_id=target.client_id,
                audience=target.audience,
                scopes=target.scopes,
                flow=target.flow,
            )
        )
    granted = f" (scope {token.scope})" if token.scope else ""
    print(
        f"authserver: signed in to {issuer}{granted}; tokens cached in {cache.path}",
        file=sys.stderr,
    )
    if saved:
        print(
            f"authserver: saved as profile {target.name!r} in {target.file.path}: "
            "the next `authserver login` and `authserver token` need no flags",
            file=sys.stderr,
        )
    return 0


def start_browser(url: str) -> str | None:
    """Open ``url`` in the person's browser; why not, if none started. Without a
    display (an SSH session) none is tried: Python's ``webbrowser`` would fall back to
    a text browser in this very terminal."""
    import webbrowser

    graphical = os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")
    if (
        sys.platform.startswith(("linux", "freebsd", "openbsd", "netbsd"))
        and not graphical
        and not os.environ.get("BROWSER")
    ):
        return "no display to open a browser on"
    try:
        opened = webbrowser.open(url)
    except webbrowser.Error:
        opened = False
    return None if opened else "no browser could be started"


class Waiting:
    """Shows that the device flow is waiting for the approval: a spinner and the code's
    remaining lifetime, on one line of stderr rewritten in place; on a TTY only (a log
    or a pipe gets nothing extra)."""

    FRAMES = "|/-\\"

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.active = stream.isatty()
        self.frame = 0
        self.shown = False

    def wait(self, seconds: float, left: float) -> None:
        if not self.active:
            time.sleep(seconds)
            return
        start = time.monotonic()
        while (elapsed := time.monotonic() - start) < seconds:
            remaining = max(0, int(left - elapsed))
            spinner = self.FRAMES[self.frame % len(self.FRAMES)]
            self.frame += 1
            self.stream.write(
                f"\r{spinner} waiting for the approval; the code expires in "
                f"{remaining // 60}:{remaining % 60:02d} "
            )
            self.stream.flush()
            self.shown = True
            time.sleep(min(0.25, seconds - elapsed))

    def clear(self) -> None:
        if self.shown:
            self.stream.write("\r\x1b[K")  # back to the start; erase the line
            self.stream.flush()
            self.shown = False


# -- token ----------------------------------------------------------------------------


def cmd_token(args: argparse.Namespace) -> int:
    with client_errors():
        from ..client import exchange_federated_token, fresh_access_token, key_file_access_token
        from ..client.ci import (
            CLIENT_SECRET_KIND,
            FEDERATED,
            KEY_FILE,
            choose_credential,
            client_credentials_token,
            service_account_client_id,
        )

        credential = choose_credential(
            federated=args.federated,
            key_file=args.key_file,
            client_secret_file=args.client_secret_file,
        )
        if credential is not None and credential.kind == KEY_FILE:
            # the issuer and client are the file's
            print(key_file_access_token(credential.value, audience=args.audience, scope=args.scope))
            return 0
        target = resolve(args)
        if credential is None:
            if args.scope is not None:
                raise CliError(
                    "--scope goes with a machine's credential (--key-file, a client secret, a "
                    "service-account token); a person's scopes are chosen at login",
                    EXIT_USAGE,
                )
            print(
                fresh_access_token(
                    target.require_issuer(), target.client_id, audience=target.audience
                )
            )
            return 0
        issuer = target.require_issuer()
        if credential.kind == FEDERATED:
            print(exchange_federated_token(issuer, credential.value, audience=target.audience))
            return 0
        if credential.kind == CLIENT_SECRET_KIND:
            if not target.client_id_given:
                raise CliError(
                    f"a client secret ({credential.source}) needs the client's id: "
                    "pass --client-id ID (or set client_id in the profile)",
                    EXIT_USAGE,
                )
            client_id = target.client_id
        else:
            client_id = service_account_client_id(credential.value, credential.source)
            if args.client_id and args.client_id != client_id:
                raise CliError(
                    f"--client-id {args.client_id} is not the client of {credential.source} "
                    f"({client_id}): leave --client-id out",
                    EXIT_USAGE,
                )
        print(
            client_credentials_token(
                issuer, client_id, credential.value, audience=target.audience, scope=args.scope
            )
        )
    return 0


# -- arguments ------------------------------------------------------------------------


def client_arguments(command: argparse.ArgumentParser) -> None:
    """``--profile``, and the flags that override the profile's values."""
    command.add_argument(
        "--profile",
        metavar="NAME",
        help="a profile of the client config file (default: $AUTHSERVER_PROFILE, else the "
        "file's default_profile, else `default`)",
    )
    command.add_argument(
        "--issuer", metavar="URL", help="the server's issuer URL (default: the profile's)"
    )
    command.add_argument(
        "--client-id",
        metavar="ID",
        help=f"the client (default: the profile's, else {DEFAULT_CLIENT_ID}, a public client)",
    )
    command.add_argument(
        "--audience",
        metavar="URL",
        help="the API the tokens are for (RFC 8707 resource), e.g. ISSUER/api/v1 for the "
        "admin API; each audience signs in and is cached apart (default: the profile's)",
    )


def register(sub: Subcommands, common: Parser) -> None:
    login = add_command(
        sub,
        common,
        "login",
        cmd_login,
        "sign in as a person (PKCE with a loopback redirect, or --device), cache the "
        "tokens, and save the issuer, client and flow in the profile",
    )
    client_arguments(login)
    login.add_argument(
        "--scope",
        dest="login_scope",
        metavar="SCOPES",
        help=f"space-separated scopes (default: the profile's, else {DEFAULT_SCOPES})",
    )
    login.add_argument(
        "--flow",
        choices=("loopback", "device"),
        help="loopback: a browser on this machine; device: approve on another device "
        "(default: the profile's, else loopback)",
    )
    login.add_argument(
        "--device",
        dest="flow",
        action="store_const",
        const="device",
        help="the device flow (--flow device): approve on another device",
    )
    login.add_argument(
        "--no-browser", action="store_true", help="print the sign-in URL instead of opening it"
    )
    token = add_command(
        sub,
        common,
        "token",
        cmd_token,
        "print a fresh access token: a person's (refreshed when needed), or a machine's "
        "(client secret, service-account token, key file, federated; cached until near expiry)",
    )
    client_arguments(token)
    token.add_argument(
        "--client-secret-file",
        metavar="PATH",
        help="a confidential client's secret, in a file (with --client-id): the client "
        "credentials grant; or $AUTHSERVER_CLIENT_SECRET, $AUTHSERVER_CLIENT_SECRET_FROM_FILE "
        "(a path), $AUTHSERVER_CLIENT_SECRET_FROM_ENV_VAR (a variable's name)",
    )
    token.add_argument(
        "--key-file",
        metavar="PATH",
        help="a service-account key file (default: $AUTHSERVER_CREDENTIALS): client "
        "credentials with private_key_jwt; the issuer is the file's",
    )
    token.add_argument(
        "--scope",
        metavar="SCOPES",
        help="with a machine's credential: space-separated scopes to ask for",
    )
    token.add_argument(
        "--federated",
        metavar="TOKEN|@FILE|env:VAR",
        help="trade this OIDC token of a CI job or Kubernetes (workload identity "
        "federation, RFC 8693) for an access token; no sign-in or secret needed",
    )
    profile_commands.register(sub, common)
