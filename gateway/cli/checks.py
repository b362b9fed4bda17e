"""`badge-gateway config check` and `badges check`: a configuration file (and the key files
it names) or a badge register validated before it is installed; every problem printed,
exit 1 on any (a badge register that yields no worker, a header alone, is one)."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gateway.cli.options import load_or_report
from gateway.errors import CredentialError
from gateway.models import Channel

if TYPE_CHECKING:
    from gateway.badges import BadgeSite
    from gateway.config import GatewayConfig


def add_check_commands(commands: Any) -> None:
    config = commands.add_parser("config", help="configuration tools")
    config_commands = config.add_subparsers(required=True, metavar="ACTION")
    check = config_commands.add_parser("check", help="validate the configuration file")
    check.add_argument("file", nargs="?", type=Path, help="file to check (default: --config)")
    check.set_defaults(command=_config_check)

    badges = commands.add_parser("badges", help="badge register tools")
    badges_commands = badges.add_subparsers(required=True, metavar="ACTION")
    check = badges_commands.add_parser("check", help="validate a badge register (CSV)")
    check.add_argument("file", type=Path)
    check.set_defaults(command=_badges_check)


def _config_check(args: argparse.Namespace) -> int:
    path = args.file or args.config
    config = load_or_report(path)
    if config is None:
        return 1
    problems = [*_key_problems(config), *_certificate_problems(config), *_badge_problems(config)]
    for problem in problems:
        print(problem, file=sys.stderr)
    if problems:
        return 1
    print(f"{path}: valid (site {config.site.name!r}, {len(config.readers)} reader(s))")
    return 0


def _key_problems(config: GatewayConfig) -> Iterator[str]:
    """What is wrong with the key files the configuration names, checked as the daemon will
    read them; a systemd credential name is checked only where $CREDENTIALS_DIRECTORY is set
    (inside the unit), and said so otherwise."""
    from gateway.system.credentials import key_path, load_private_key, load_signing_key

    keys: list[tuple[str, str, Callable[[Path], object]]] = []
    if config.uplink.enabled:
        keys.append(("[uplink] private_key", config.uplink.private_key, load_private_key))
    if config.evidence.signing_key is not None:
        keys.append(("[evidence] signing_key", config.evidence.signing_key, load_signing_key))
    if config.mqtt.enabled and config.mqtt.password is not None:
        keys.append(("[mqtt] password", config.mqtt.password, _read_mqtt_password))
    for field, name, load in keys:
        if not Path(name).is_absolute() and "CREDENTIALS_DIRECTORY" not in os.environ:
            print(f"{field} {name!r}: a systemd credential, checked when the daemon starts")
            continue
        try:
            load(key_path(name))
        except CredentialError as error:
            yield f"{field}: {error}"


def _certificate_problems(config: GatewayConfig) -> Iterator[str]:
    """Checkinatwork signs with `[uplink] certificate`: it must be the key's and valid now, or
    the service refuses every request (checked once the key itself loads)."""
    from gateway.system.credentials import key_path, load_private_key

    uplink = config.uplink
    if not uplink.enabled or uplink.certificate is None:
        return
    if config.site.channel is not Channel.CHECKINATWORK:
        return
    try:
        key = key_path(uplink.private_key)
        load_private_key(key)
    except CredentialError:
        return  # named by _key_problems, or a credential checked when the daemon starts
    from gateway.checkinatwork.security import load_identity  # lxml, signxml: only here

    try:
        load_identity(key, uplink.certificate, datetime.now(UTC))
    except CredentialError as error:
        yield f"[uplink] certificate: {error}"


def _badge_problems(config: GatewayConfig) -> Iterator[str]:
    """The badge register's rows that do not fit this site (its channel, its declarations),
    when the file is there to read: it is often installed after the configuration."""
    from gateway.badges import load_badge_register
    from gateway.errors import BadgeFileError

    path = config.badges.file
    if not path.exists():
        print(f"[badges] file {path}: not there yet, not checked")
        return
    try:
        register = load_badge_register(path, _badge_site(config))
    except BadgeFileError as error:
        yield f"[badges] file: {error}"
        return
    yield from (str(error) for error in register.errors)


def _badge_site(config: GatewayConfig) -> BadgeSite:
    from gateway.badges import BadgeSite

    return BadgeSite(config.site.channel, config.site.all_declarations)


def _read_mqtt_password(path: Path) -> str:
    from gateway.fleet.connection import read_password  # paho, only when [mqtt] is on

    return read_password(path, "MQTT password")


def _badges_check(args: argparse.Namespace) -> int:
    from gateway.badges import CP1252_NOTE, load_badge_register
    from gateway.errors import BadgeFileError

    site = None
    if args.config.exists():  # checked against the site as well, as the daemon will load it
        config = load_or_report(args.config)
        if config is None:
            return 1
        site = _badge_site(config)
        print(f"{args.file}: checked against the site of {args.config}")
    try:
        register = load_badge_register(args.file, site)
    except BadgeFileError as error:
        print(error, file=sys.stderr)
        return 1
    for line_error in register.errors:
        print(line_error, file=sys.stderr)
    if register.encoding != "utf-8":
        print(f"{args.file}: {CP1252_NOTE}", file=sys.stderr)
    print(f"{args.file}: {len(register.workers)} badge(s) loaded, {len(register.errors)} refused")
    empty = register.no_worker()
    if empty is not None:
        print(f"{empty} (a running daemon keeps its current register instead)", file=sys.stderr)
        return 1
    return 1 if register.errors else 0
