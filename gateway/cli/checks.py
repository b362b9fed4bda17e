"""`badge-gateway config check` and `badges check`: a configuration file (and the key files
it names) or a badge register validated before it is installed; every problem printed,
exit 1 on any (a badge register that yields no worker, a header alone, is one). `config
check` names the register's rows that do not fit the site as warnings only: the unit runs
it before every start."""

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
    _warn_about_the_register(config)
    problems = [*_key_problems(config), *_certificate_problems(config)]
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
    """Checkinatwork signs with `[uplink] certificate`, which must be its key's (checked
    once the key itself loads). One that is merely not valid today is a warning: it
    expires on its own one day, and the daemon must still start then, store the taps and
    say so in status."""
    from gateway.system.credentials import key_path, load_certificate, load_private_key

    uplink = config.uplink
    if not uplink.enabled or uplink.certificate is None:
        return
    if config.site.channel is not Channel.CHECKINATWORK:
        return
    try:
        key_file = key_path(uplink.private_key)
        key = load_private_key(key_file)
    except CredentialError:
        return  # named by _key_problems, or a credential checked when the daemon starts
    from gateway.checkinatwork.security import check_key_pair, not_valid_now  # lxml: here

    try:
        certificate = load_certificate(uplink.certificate)
    except CredentialError as error:
        yield f"[uplink] certificate: {error}"
        return
    try:
        check_key_pair(key, certificate)
    except CredentialError:
        yield f"[uplink] certificate: {uplink.certificate}: not {key_file}'s certificate"
        return
    invalid = not_valid_now(certificate, datetime.now(UTC))
    if invalid is not None:
        print(
            f"warning: [uplink] certificate: {uplink.certificate}: {invalid}; the ONSS will"
            " refuse every presence until it is replaced (taps are still stored)",
            file=sys.stderr,
        )


def _warn_about_the_register(config: GatewayConfig) -> None:
    """The badge register's rows that do not fit this site (its channel, its declarations),
    as warnings: the unit's ExecStartPre runs this check, and the daemon runs with the rows
    that load (its status names the others), so a bad row must not keep it from starting.
    `badges check` is the strict one. The file is often installed after the configuration."""
    from gateway.badges import load_badge_register
    from gateway.errors import BadgeFileError

    path = config.badges.file
    if not path.exists():
        print(f"[badges] file {path}: not there yet, not checked")
        return
    try:
        found = [str(line) for line in load_badge_register(path, _badge_site(config)).errors]
    except BadgeFileError as unusable:
        found = [str(unusable)]
    for problem in found:
        print(f"warning: [badges] file: {problem}", file=sys.stderr)


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
