"""The options several commands share (--config, --socket, --journal, --utc) and what they
resolve to: the configuration, the control socket, the journal file, the site's time zone
(the one times are shown in, unless --utc). Where the configuration cannot be read, the
configuration's own defaults stand in.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from zoneinfo import ZoneInfo

from gateway.config import (
    DEFAULT_CONTROL_SOCKET,
    DEFAULT_TIMEZONE,
    ConfigError,
    GatewayConfig,
    load_config,
)


def add_socket_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--socket", type=Path, help="control socket (default: from the config)")


def load_or_report(path: Path) -> GatewayConfig | None:
    """The configuration at `path`, or None once its problems are printed."""
    try:
        return load_config(path)
    except ConfigError as error:
        print(error, file=sys.stderr)
        return None


def socket_path(args: argparse.Namespace) -> Path:
    if args.socket:
        return Path(args.socket)
    try:
        return load_config(args.config).control.socket
    except ConfigError:
        return DEFAULT_CONTROL_SOCKET


def site_timezone(args: argparse.Namespace) -> ZoneInfo:
    try:
        return load_config(args.config).site.tz
    except ConfigError:
        return ZoneInfo(DEFAULT_TIMEZONE)


def add_utc_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--utc",
        action="store_true",
        help="times in UTC (2026-12-06T07:02:11Z), not in the site's time zone",
    )


def shown_zone(args: argparse.Namespace) -> ZoneInfo | None:
    """The zone a person reads this command's times in: the site's, or None for UTC."""
    return None if args.utc else site_timezone(args)


def journal_path(args: argparse.Namespace) -> Path:
    if args.journal is not None:
        return Path(args.journal)
    try:
        return load_config(args.config).storage.journal
    except ConfigError as error:
        raise SystemExit(f"{error}\n(or give --journal FILE)") from None
