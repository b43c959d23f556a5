"""``authserver login`` and ``authserver token``: a person's (or a script's) side, the
client; no config, no database."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from .output import EXIT_USAGE, CliError, add_command

if TYPE_CHECKING:
    from .output import Parser, Subcommands


@contextmanager
def _client_errors() -> Iterator[None]:
    """``LoginError`` as a one-line failure."""
    try:
        from ..client import LoginError
    except ImportError as exc:  # requests is not a server dependency
        name = exc.name or "requests"
        raise CliError(f"this command needs the {name} package: pip install {name}") from None
    try:
        yield
    except LoginError as exc:
        raise CliError(str(exc)) from None


def cmd_login(args: argparse.Namespace) -> int:
    with _client_errors():
        from ..client import TokenCache, cache_key, login_device, login_loopback

        cache = TokenCache()

        def show(text: str) -> None:
            print(text, file=sys.stderr, flush=True)

        if args.device:
            token = login_device(
                args.issuer, args.client_id, args.scope, show, audience=args.audience
            )
        else:

            def open_browser(url: str) -> None:
                if args.no_browser:
                    show(f"Open this URL in a browser to sign in:\n{url}")
                    return
                show(f"Opening a browser to sign in. If none opens, visit:\n{url}")
                import webbrowser

                webbrowser.open(url)

            token = login_loopback(
                args.issuer, args.client_id, args.scope, open_browser, audience=args.audience
            )
        cache.store(args.issuer, cache_key(args.client_id, args.audience), token)
    granted = f" (scope {token.scope})" if token.scope else ""
    print(
        f"authserver: signed in to {args.issuer}{granted}; tokens cached in {cache.path}",
        file=sys.stderr,
    )
    return 0


def cmd_token(args: argparse.Namespace) -> int:
    with _client_errors():
        if args.federated:
            from ..client import exchange_federated_token

            if not args.issuer:
                raise CliError("--federated needs --issuer (the server to trade it at)", EXIT_USAGE)

            print(exchange_federated_token(args.issuer, args.federated, audience=args.audience))
            return 0
        from ..client import fresh_access_token, key_file_access_token, key_file_path

        key_file = key_file_path(args.key_file)
        if key_file is not None:
            print(key_file_access_token(key_file, audience=args.audience, scope=args.scope))
            return 0
        if args.scope is not None:
            raise CliError(
                "--scope goes with --key-file (a person's scopes are chosen at login)", EXIT_USAGE
            )
        if not args.issuer:
            raise CliError("the --issuer argument is required (or --key-file)", EXIT_USAGE)
        print(fresh_access_token(args.issuer, args.client_id, audience=args.audience))
    return 0


def client_arguments(command: argparse.ArgumentParser, *, issuer_required: bool = True) -> None:
    command.add_argument(
        "--issuer", required=issuer_required, metavar="URL", help="the server's issuer URL"
    )
    command.add_argument(
        "--client-id", default="cli", metavar="ID", help="a public client (default: %(default)s)"
    )
    command.add_argument(
        "--audience",
        metavar="URL",
        help="the API the tokens are for (RFC 8707 resource), e.g. ISSUER/api/v1 for the "
        "admin API; each audience signs in and is cached apart",
    )


def register(sub: Subcommands, common: Parser) -> None:
    login = add_command(
        sub,
        common,
        "login",
        cmd_login,
        "sign in as a person (PKCE with a loopback redirect, or --device) and cache the tokens",
    )
    client_arguments(login)
    login.add_argument(
        "--scope",
        default="openid profile offline_access",
        help="space-separated scopes (default: %(default)s)",
    )
    login.add_argument(
        "--device", action="store_true", help="the device flow: approve on another device"
    )
    login.add_argument(
        "--no-browser", action="store_true", help="print the sign-in URL instead of opening it"
    )
    token = add_command(
        sub, common, "token", cmd_token, "print a fresh access token (refreshed when needed)"
    )
    client_arguments(token, issuer_required=False)
    token.add_argument(
        "--key-file",
        metavar="PATH",
        help="a service-account key file (default: $AUTHSERVER_CREDENTIALS): client "
        "credentials with private_key_jwt; the issuer is the file's",
    )
    token.add_argument(
        "--scope", metavar="SCOPES", help="with --key-file: space-separated scopes to ask for"
    )
    token.add_argument(
        "--federated",
        metavar="TOKEN|@FILE|env:VAR",
        help="trade this OIDC token of a CI job or Kubernetes (workload identity "
        "federation, RFC 8693) for an access token; no sign-in or secret needed",
    )
