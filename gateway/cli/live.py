"""The daemon, live: `run` is the daemon (what systemd starts); `tap`, `status` and
`registrations` ask the running one over its control socket (`registrations --journal`
reads the journal file instead, daemon or not). Their times are shown in the site's time
zone with the offset, or in UTC with --utc; --json keeps the daemon's UTC."""

from __future__ import annotations

import argparse
import json
import re
import sys
from datetime import UTC, datetime, timedelta, tzinfo
from pathlib import Path
from typing import Any

from gateway import control
from gateway.cli.options import (
    add_socket_option,
    add_utc_option,
    load_or_report,
    shown_zone,
    socket_path,
)
from gateway.cli.render import registration_line, render_status
from gateway.errors import EXIT_OK, EXIT_TAP_REFUSED

_DURATION = re.compile(r"^(\d+)\s*([smhd])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def add_run_command(commands: Any) -> None:
    run = commands.add_parser("run", help="run the daemon (what systemd starts)")
    run.set_defaults(command=_run)


def add_live_commands(commands: Any) -> None:
    tap = commands.add_parser("tap", help="inject a tap into the running daemon")
    tap.add_argument("uid", help="badge uid, hex")
    tap.add_argument(
        "--direction", choices=["IN", "OUT"], help="as if an IN or OUT key was pressed"
    )
    tap.add_argument("--reader", default="control", help="reader name to record (default control)")
    add_socket_option(tap)
    tap.set_defaults(command=_tap)

    status = commands.add_parser("status", help="readers, last taps, queue depth, clock")
    status.add_argument("--json", action="store_true", help="machine-readable output (UTC)")
    add_utc_option(status)
    add_socket_option(status)
    status.set_defaults(command=_status)

    since = commands.add_parser("registrations", help="list registrations since a moment")
    since.add_argument(
        "--since",
        default="today",
        help="'today', a duration back ('2h', '30m', '7d'), a date or an ISO time (read in"
        " the site's time zone unless it has an offset, or in UTC with --utc)",
    )
    since.add_argument("--limit", type=int, default=1000)
    since.add_argument("--json", action="store_true", help="JSON lines (UTC)")
    add_utc_option(since)
    since.add_argument(
        "--journal", type=Path, help="read this journal file directly (read-only, daemon or not)"
    )
    add_socket_option(since)
    since.set_defaults(command=_registrations)


def _run(args: argparse.Namespace) -> int:
    from gateway.daemon import run_daemon

    config = load_or_report(args.config)
    if config is None:
        print("badge-gateway: refusing to start on an invalid configuration", file=sys.stderr)
        return 1
    return run_daemon(config)


def _tap(args: argparse.Namespace) -> int:
    message = {"cmd": "tap", "uid": args.uid, "direction": args.direction, "reader": args.reader}
    outcome = control.request(socket_path(args), message)["outcome"]
    print(f"{outcome['kind']}: {outcome['message']}")
    return EXIT_OK if outcome["positive"] else EXIT_TAP_REFUSED


def _status(args: argparse.Namespace) -> int:
    status = control.request(socket_path(args), {"cmd": "status"})["status"]
    print(json.dumps(status, indent=2) if args.json else render_status(status, shown_zone(args)))
    return 0


def parse_since(text: str, tz: tzinfo, now: datetime | None = None) -> datetime:
    """'today', '2h', '2026-11-22', '2026-11-22T07:00' -> an aware datetime."""
    now = now or datetime.now(tz)
    text = text.strip()
    if text == "today":
        return now.astimezone(tz).replace(hour=0, minute=0, second=0, microsecond=0)
    match = _DURATION.match(text)
    if match:
        return now - timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})
    try:
        moment = datetime.fromisoformat(text)
    except ValueError as error:
        raise ValueError(f"--since: cannot read {text!r}: {error}") from error
    return moment if moment.tzinfo else moment.replace(tzinfo=tz)


def _registrations(args: argparse.Namespace) -> int:
    zone = shown_zone(args)
    try:
        since = parse_since(args.since, UTC if zone is None else zone)
    except ValueError as error:
        print(f"badge-gateway: {error}", file=sys.stderr)
        return 1
    for reg in _registrations_since(args, int(since.timestamp() * 1e9)):
        print(json.dumps(reg) if args.json else registration_line(reg, zone))
    return 0


def _registrations_since(args: argparse.Namespace, since_ns: int) -> list[dict[str, Any]]:
    if args.journal is None:
        message = {"cmd": "registrations", "since_ns": since_ns, "limit": args.limit}
        reply = control.request(socket_path(args), message)
        registrations: list[dict[str, Any]] = reply["registrations"]
        return registrations
    from gateway.control.status import registration_json
    from gateway.journal.store import JournalReader

    reader = JournalReader(args.journal)
    try:
        return [registration_json(s) for s in reader.registrations_since(since_ns, args.limit)]
    finally:
        reader.close()
