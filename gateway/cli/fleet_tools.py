"""`badge-gateway fleet archive` and `fleet status`: the employer's server keeping every
box's evidence, and IT's view of every box (docs/fleet.md)."""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import threading
from pathlib import Path
from types import FrameType
from typing import Any

from gateway.cli.fleet_options import add_broker_options, broker_access
from gateway.errors import FleetError
from gateway.fleet.topics import check_prefix


def add_tool_commands(actions: Any) -> None:
    archive = actions.add_parser(
        "archive", help="keep every box's evidence chain in a directory (runs until stopped)"
    )
    archive.add_argument(
        "--dir", type=Path, required=True, help="the archive's directory (0700; DIR/site/box/)"
    )
    archive.add_argument(
        "--client-id",
        help="the MQTT client id, stable across restarts for the broker to keep the session"
        " (default: badge-gateway-archive-HOSTNAME)",
    )
    archive.add_argument(
        "--exit-when-idle",
        type=_seconds,
        metavar="SECONDS",
        help="stop once no entry came for this long (a catch-up run; default: run until stopped)",
    )
    add_broker_options(archive)
    archive.set_defaults(command=fleet_archive)

    status = actions.add_parser("status", help="every box: online or not, queue, alerts")
    status.add_argument("--json", action="store_true", help="a JSON list, one object per box")
    status.add_argument(
        "--wait",
        type=_seconds,
        default=3.0,
        metavar="SECONDS",
        help="collect the boxes' retained messages for at most this long (3)",
    )
    status.add_argument(
        "--status-interval",
        type=_seconds,
        default=60.0,
        metavar="SECONDS",
        help="the boxes' status interval, when a status does not say (60): a status three"
        " intervals old from a box said online is flagged stale",
    )
    add_broker_options(status)
    status.set_defaults(command=fleet_status)


def fleet_archive(args: argparse.Namespace) -> int:
    from gateway.fleet.archive_session import run_archive
    from gateway.system import logs

    logs.configure()
    access = broker_access(args)
    stop = threading.Event()

    def stop_on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, stop_on_signal)
    signal.signal(signal.SIGINT, stop_on_signal)
    client_id = args.client_id or f"badge-gateway-archive-{socket.gethostname()}"
    run_archive(access, _prefix(args), args.dir, client_id, stop, args.exit_when_idle)
    return 0


def fleet_status(args: argparse.Namespace) -> int:
    from gateway.fleet.census import census, collect, render_line

    access = broker_access(args)
    client_id = f"badge-gateway-status-{socket.gethostname()}-{os.getpid()}"
    seen = collect(access, _prefix(args), client_id, args.wait)
    rows = census(seen, None, args.status_interval)
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    if not rows:
        print(f"no box has published under {args.prefix}/ on this broker")
    for row in rows:
        print(render_line(row))
    return 0


def _prefix(args: argparse.Namespace) -> str:
    try:
        return check_prefix(args.prefix)
    except ValueError as error:
        raise FleetError(f"--prefix: {error}") from error


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 < value < 86400:
        raise argparse.ArgumentTypeError(f"{text!r}: expected seconds, more than 0")
    return value
