"""The broker options the `fleet` tools share, and what they resolve to."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from gateway.fleet.connection import BrokerAccess, parse_broker, read_password

DEFAULT_PREFIX = "badge-gateway"


def add_broker_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("broker")
    group.add_argument(
        "--broker",
        dest="brokers",
        action="append",
        required=True,
        type=_broker,
        metavar="mqtts://HOST[:PORT]",
        help="the fleet's broker; repeat for a fallback list (tried in turn)",
    )
    group.add_argument("--ca-file", type=Path, help="a CA bundle trusted besides the system's")
    group.add_argument("--username", help="the broker user (default: none)")
    group.add_argument(
        "--password-file", type=Path, help="a file (mode 600) holding the user's password"
    )
    group.add_argument("--client-cert", type=Path, help="a client certificate (PEM)")
    group.add_argument("--client-key", type=Path, help="its private key (PEM)")
    group.add_argument(
        "--prefix", default=DEFAULT_PREFIX, help=f"the fleet's topic prefix ({DEFAULT_PREFIX})"
    )


def broker_access(args: argparse.Namespace) -> BrokerAccess:
    """What the broker options say; FleetError or CredentialError (one line) if unusable."""
    password = None
    if args.password_file is not None:
        password = read_password(args.password_file, "broker password")
    return BrokerAccess(
        brokers=tuple(args.brokers),
        ca_file=args.ca_file,
        client_cert=args.client_cert,
        client_key=args.client_key,
        username=args.username,
        password=password,
    )


def _broker(text: str) -> Any:
    try:
        return parse_broker(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from error
