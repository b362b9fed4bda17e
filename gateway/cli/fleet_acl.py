"""`badge-gateway fleet acl BOXES.csv`: the broker's ACL (Mosquitto's acl_file) for the
boxes IT lists, printed on stdout (gateway.fleet.acl, docs/fleet.md)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gateway.errors import EXIT_OK, FleetError
from gateway.fleet.acl import (
    DEFAULT_FLEET_USER,
    DEFAULT_PREFIX,
    SITE_PLACEHOLDER,
    acl_text,
    read_boxes,
)
from gateway.fleet.topics import check_name, check_prefix


def add_acl_command(actions: Any) -> None:
    acl = actions.add_parser(
        "acl",
        help="the broker's ACL for a list of boxes (Mosquitto acl_file, on stdout)",
        description="Print the Mosquitto acl_file for the boxes of BOXES.csv (header"
        " site,box): each box writes only its own topics and reads only its site's register"
        " and commands. Write it to a new file, then move it over the old one.",
    )
    acl.add_argument("boxes", type=Path, metavar="BOXES.csv", help="one site,box per line")
    acl.add_argument(
        "--prefix",
        default=DEFAULT_PREFIX,
        type=_checked(check_prefix),
        help=f"the fleet's topic prefix ({DEFAULT_PREFIX})",
    )
    acl.add_argument(
        "--fleet-user",
        default=DEFAULT_FLEET_USER,
        type=_checked(_user),
        help=f"the broker user of the employer's tools ({DEFAULT_FLEET_USER})",
    )
    acl.add_argument(
        "--bridge-user",
        type=_checked(_user),
        help="the broker user a site broker's bridge logs in as (none); bridge-{site} gives"
        " each site's bridge a user of its own, limited to that site's topics",
    )
    acl.set_defaults(command=fleet_acl_main)


def _user(name: str) -> str:
    """A broker user, or a pattern of them: `bridge-{site}` names one bridge user a site."""
    try:
        check_name(name.replace(SITE_PLACEHOLDER, "site"), "broker user")
    except ValueError:
        raise ValueError(f"broker user {name!r}: 1 to 64 of A-Z a-z 0-9 _ . -") from None
    return name


def _checked(check: Callable[[str], str]) -> Callable[[str], str]:
    """An argparse type: the value as `check` passes it, its ValueError as a usage error."""

    def checked(text: str) -> str:
        try:
            return check(text)
        except ValueError as error:
            raise argparse.ArgumentTypeError(str(error)) from error

    return checked


def fleet_acl_main(args: argparse.Namespace) -> int:
    users = [args.fleet_user]
    if args.bridge_user is not None and SITE_PLACEHOLDER not in args.bridge_user:
        users.append(args.bridge_user)
    boxes = read_boxes(args.boxes, other_users=users)
    try:
        text = acl_text(boxes, args.prefix, args.fleet_user, args.bridge_user)
    except ValueError as error:
        raise FleetError(f"{args.boxes}: {error}") from error
    sys.stdout.write(text)
    return EXIT_OK
