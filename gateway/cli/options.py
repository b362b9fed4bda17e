"""The options several commands share (--config, --socket, --journal) and what they resolve
to: the configuration, the control socket, the journal file, the site's time zone. Where
the configuration cannot be read, the configuration's own defaults stand in.
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


def journal_path(args: argparse.Namespace) -> Path:
    if args.journal is not None:
        return Path(args.journal)
    try:
        return load_config(args.config).storage.journal
    except ConfigError as error:
        raise SystemExit(f"{error}\n(or give --journal FILE)") from None
