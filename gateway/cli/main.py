"""`badge-gateway`: the daemon and the tools around it, one sub-command each."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import csv
import io
import json
import os
import re
import sqlite3
import sys
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from gateway import control
from gateway.cli.evidence import add_evidence_commands
from gateway.cli.journal import add_journal_commands
from gateway.cli.readers import add_reader_commands
from gateway.config import ConfigError, GatewayConfig, load_config
from gateway.control.status import QUEUE_MAX, delivery_json

DEFAULT_CONFIG = Path("/etc/badge-gateway/gateway.toml")
DEFAULT_SOCKET = Path("/run/badge-gateway/control.sock")

Command = Callable[[argparse.Namespace], int]


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    command: Command = args.command
    try:
        return command(args)
    except (control.ControlError, OSError, sqlite3.Error) as error:
        print(f"badge-gateway: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="badge-gateway",
        description="Badge taps to ONSS attendance registrations (Check In and Out at Work).",
    )
    parser.add_argument(
        "--config", type=Path, default=DEFAULT_CONFIG, help=f"TOML file (default {DEFAULT_CONFIG})"
    )
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    run = commands.add_parser("run", help="run the daemon (what systemd starts)")
    run.set_defaults(command=_run)

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

    tap = commands.add_parser("tap", help="inject a tap into the running daemon")
    tap.add_argument("uid", help="badge uid, hex")
    tap.add_argument(
        "--direction", choices=["IN", "OUT"], help="as if an IN or OUT key was pressed"
    )
    tap.add_argument("--reader", default="control", help="reader name to record (default control)")
    _add_socket(tap)
    tap.set_defaults(command=_tap)

    status = commands.add_parser("status", help="readers, last taps, queue depth, clock")
    status.add_argument("--json", action="store_true", help="machine-readable output")
    _add_socket(status)
    status.set_defaults(command=_status)

    since = commands.add_parser("registrations", help="list registrations since a moment")
    since.add_argument(
        "--since",
        default="today",
        help="'today', a duration back ('2h', '30m', '7d'), a date or an ISO time",
    )
    since.add_argument("--limit", type=int, default=1000)
    since.add_argument("--json", action="store_true", help="JSON lines")
    since.add_argument(
        "--journal", type=Path, help="read this journal file directly (read-only, daemon or not)"
    )
    _add_socket(since)
    since.set_defaults(command=_registrations)

    _add_queue_commands(commands)

    add_reader_commands(commands)
    add_evidence_commands(commands)
    add_journal_commands(commands)

    demo = commands.add_parser("demo", help="run a self-contained demonstration")
    demo.set_defaults(command=_demo)
    return parser


def _add_queue_commands(commands: Any) -> None:
    queue = commands.add_parser("queue", help="registrations and their delivery to the ONSS")
    actions = queue.add_subparsers(required=True, metavar="ACTION")

    listing = actions.add_parser("list", help="registrations with their delivery, newest first")
    _add_queue_source(listing)
    listing.add_argument("--limit", type=_queue_limit, default=100, help="at most N (default 100)")
    listing.add_argument("--json", action="store_true", help="JSON lines with every field")
    listing.set_defaults(command=_queue_list)

    retry = actions.add_parser("retry", help="send a rejected registration again (cause fixed)")
    retry.add_argument("id", help="the registration id, from `queue list`")
    _add_socket(retry)
    retry.set_defaults(command=_queue_retry)

    export = actions.add_parser("export", help="every registration with its delivery details")
    _add_queue_source(export)
    export.add_argument("--format", choices=["csv", "json"], default="csv")
    export.add_argument("--out", type=Path, help="file to write, created 0600 (default stdout)")
    export.set_defaults(command=_queue_export)


def _add_queue_source(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--state", choices=QUEUE_STATES, help="only this delivery state")
    parser.add_argument(
        "--show-niss", action="store_true", help="national numbers in full (personal data)"
    )
    parser.add_argument(
        "--journal", type=Path, help="read this journal file directly (read-only, daemon or not)"
    )
    _add_socket(parser)


def _queue_limit(text: str) -> int:
    limit = int(text)
    if not 0 < limit <= QUEUE_MAX:
        raise argparse.ArgumentTypeError(f"must be 1..{QUEUE_MAX}")
    return limit


def _add_socket(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--socket", type=Path, help="control socket (default: from the config)")


def _load(path: Path) -> GatewayConfig | None:
    try:
        return load_config(path)
    except ConfigError as error:
        print(error, file=sys.stderr)
        return None


def _run(args: argparse.Namespace) -> int:
    from gateway.daemon import run_daemon

    config = _load(args.config)
    if config is None:
        print("badge-gateway: refusing to start on an invalid configuration", file=sys.stderr)
        return 1
    return run_daemon(config)


def _config_check(args: argparse.Namespace) -> int:
    path = args.file or args.config
    config = _load(path)
    if config is None:
        return 1
    print(f"{path}: valid (site {config.site.name!r}, {len(config.readers)} reader(s))")
    return 0


def _badges_check(args: argparse.Namespace) -> int:
    from gateway.badges import CP1252_NOTE, BadgeFileError, load_badge_register

    try:
        register = load_badge_register(args.file)
    except BadgeFileError as error:
        print(error, file=sys.stderr)
        return 1
    for line_error in register.errors:
        print(line_error, file=sys.stderr)
    if register.encoding != "utf-8":
        print(f"{args.file}: {CP1252_NOTE}", file=sys.stderr)
    print(f"{args.file}: {len(register.workers)} badge(s) loaded, {len(register.errors)} refused")
    return 1 if register.errors else 0


def _socket(args: argparse.Namespace) -> Path:
    if args.socket:
        return Path(args.socket)
    try:
        return load_config(args.config).control.socket
    except ConfigError:
        return DEFAULT_SOCKET


def _tap(args: argparse.Namespace) -> int:
    message = {"cmd": "tap", "uid": args.uid, "direction": args.direction, "reader": args.reader}
    outcome = control.request(_socket(args), message)["outcome"]
    print(f"{outcome['kind']}: {outcome['message']}")
    return 0 if outcome["positive"] else 2


def _status(args: argparse.Namespace) -> int:
    status = control.request(_socket(args), {"cmd": "status"})["status"]
    print(json.dumps(status, indent=2) if args.json else render_status(status))
    return 0


def render_status(status: dict[str, Any]) -> str:
    journal, clock, badges = status["journal"], status["clock"], status["badges"]
    lines = [
        f"site        {status['site']['name']} (declaration {status['site']['declaration']})",
        f"clock       {'synchronised' if clock['synced'] else 'NOT synchronised'}, {clock['now']}"
        + "".join(f"; {_source_text(source)}" for source in clock.get("sources", [])),
        f"badges      {badges['workers']} worker(s), {badges['refused_lines']} refused line(s)"
        + (f", ERROR {badges['last_error']}" if badges["last_error"] else ""),
        f"journal     {journal['registrations']} registration(s), queue depth"
        f" {journal['queue_depth']}, oldest pending {journal['oldest_pending'] or '-'},"
        f" {journal['rejected']} rejected (badge-gateway queue list --state rejected)",
    ]
    if journal["storage_error"]:
        lines.append(f"STORAGE     cannot store: {journal['storage_error']}")
    lines.append(f"uplink      {_uplink_line(status['uplink'])}")
    head = status.get("evidence_head")
    if head:
        lines.append(f"evidence    head #{head['seq']} {head['hash']}")
    for reader in status["readers"]:
        lines.append(f"reader      {_reader_line(reader)}")
    lines.append("last taps")
    for reg in status["recent_registrations"]:
        lines.append(f"  {_registration_line(reg)}")
    for attempt in status["recent_refused_or_repeated"]:
        lines.append(
            f"  {attempt['time_utc']}  {attempt['outcome']:<14} badge {attempt['badge_uid']}"
        )
    return "\n".join(lines)


def _source_text(source: dict[str, Any]) -> str:
    """`kernel unreadable (clock_adjtime: EPERM)`: where "synchronised" is read, and how."""
    reason = f" ({source['reason']})" if source.get("reason") else ""
    return f"{source['name']} {source['state']}{reason}"


def _reader_line(reader: dict[str, Any]) -> str:
    """State (and error, and since when it is down), reads, bad frames."""
    state = reader["state"]
    if reader.get("error"):
        state += f" ({reader['error']})"
    if reader.get("down_since"):
        state += f" since {reader['down_since']} ({reader['down_seconds']:.0f} s)"
    bad = reader.get("bad_frames") or 0
    return f"{reader['name']}: {state}, {reader['reads']} read(s)" + (
        f", {bad} bad frame(s)" if bad else ""
    )


def _uplink_line(uplink: dict[str, Any]) -> str:
    """State (and cause), since when, last acknowledgement (or never), next retry."""
    if not uplink["enabled"]:
        return "disabled"
    line = str(uplink["state"]) + (f" ({uplink['cause']})" if uplink.get("cause") else "")
    if uplink.get("since"):
        line += f" since {uplink['since']}"
    if uplink["state"] != "misconfigured":
        line += f", last ack {uplink.get('last_acknowledgement') or 'never'}"
    if uplink.get("next_retry"):
        line += f", next retry {uplink['next_retry']}"
    if uplink.get("held_until_clock_synchronised"):
        line += f", held for the clock {uplink['held_until_clock_synchronised']}"
    return line


def _registration_line(reg: dict[str, Any]) -> str:
    synced = "" if reg["clock_synced"] else "  (clock not synced)"
    return (
        f"{reg['time_utc']}  {reg['type']:<3}  {reg['name']:<20} {reg['niss']}"
        f"  {reg['delivery']}  {reg['id']}{synced}"
    )


_DURATION = re.compile(r"^(\d+)\s*([smhd])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def parse_since(text: str, tz: ZoneInfo, now: datetime | None = None) -> datetime:
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


def _site_tz(args: argparse.Namespace) -> ZoneInfo:
    try:
        return load_config(args.config).site.tz
    except ConfigError:
        return ZoneInfo("Europe/Brussels")


def _registrations(args: argparse.Namespace) -> int:
    try:
        since = parse_since(args.since, _site_tz(args))
    except ValueError as error:
        print(f"badge-gateway: {error}", file=sys.stderr)
        return 1
    for reg in _registrations_since(args, int(since.timestamp() * 1e9)):
        print(json.dumps(reg) if args.json else _registration_line(reg))
    return 0


def _registrations_since(args: argparse.Namespace, since_ns: int) -> list[dict[str, Any]]:
    if args.journal is None:
        message = {"cmd": "registrations", "since_ns": since_ns, "limit": args.limit}
        reply = control.request(_socket(args), message)
        registrations: list[dict[str, Any]] = reply["registrations"]
        return registrations
    from gateway.control.status import registration_json
    from gateway.journal.store import JournalReader

    reader = JournalReader(args.journal)
    try:
        return [registration_json(s) for s in reader.registrations_since(since_ns, args.limit)]
    finally:
        reader.close()


QUEUE_STATES = ("pending", "rejected", "delivered")
PERSONAL_DATA_NOTE = (
    "badge-gateway: note: this output holds national numbers (NISS) in full:"
    " personal data, keep it to the employer"
)
EXPORT_COLUMNS = (
    "id",
    "time_local",
    "time_utc",
    "type",
    "name",
    "niss",
    "employer",
    "capacity",
    "badge_uid",
    "reader",
    "declaration",
    "clock_synced",
    "delivery",
    "onss_id",
    "onss_validity",
    "onss_remarks",
    "delivered_utc",
    "sent_registration_date",
    "late",
    "possibly_duplicated",
    "time_uncertain",
    "rejection_source",
    "errors",
)
_FLAGS = (
    ("late", "late"),
    ("possibly_duplicated", "possibly duplicated"),
    ("time_uncertain", "time uncertain"),
)


def _queue_records(args: argparse.Namespace, limit: int) -> list[dict[str, Any]]:
    """Newest first: from the running daemon, or read-only from --journal."""
    if args.journal is None:
        message = {"cmd": "queue", "state": args.state, "limit": limit, "show_niss": args.show_niss}
        records: list[dict[str, Any]] = control.request(_socket(args), message)["records"]
        return records
    from gateway.journal.store import JournalReader

    reader = JournalReader(args.journal)
    try:
        found = reader.deliveries(args.state, limit)
    finally:
        reader.close()
    tz = _site_tz(args)
    return [delivery_json(record, tz, full_niss=args.show_niss) for record in found]


def _queue_list(args: argparse.Namespace) -> int:
    for record in _queue_records(args, args.limit):
        print(json.dumps(record) if args.json else _queue_lines(record))
    _note_personal_data(args)
    return 0


def _queue_lines(record: dict[str, Any]) -> str:
    onss_id = record["onss_id"] if record["onss_id"] is not None else "-"
    line = (
        f"{record['time_local'].replace('T', ' ')}  {record['type']:<3}  {record['name']:<20}"
        f" {record['niss']}  {record['delivery']:<9}  onss {onss_id}  {record['id']}"
    )
    flags = [label for key, label in _FLAGS if record[key]]
    if flags:
        line += f"  [{', '.join(flags)}]"
    errors = [
        f"    {record['rejection_source']} error {error['code']}: {error['description']}"
        for error in record["errors"]
    ]
    return "\n".join([line, *errors])


def _note_personal_data(args: argparse.Namespace) -> None:
    if args.show_niss:
        print(PERSONAL_DATA_NOTE, file=sys.stderr)


def _queue_retry(args: argparse.Namespace) -> int:
    reply = control.request(_socket(args), {"cmd": "requeue", "id": args.id})
    print(f"requeued: {reply['id']} will be sent to the ONSS again")
    return 0


def _queue_export(args: argparse.Namespace) -> int:
    records = _queue_records(args, QUEUE_MAX)
    if len(records) == QUEUE_MAX:
        print(
            f"badge-gateway: only the newest {QUEUE_MAX} registrations were exported;"
            " narrow it with --state",
            file=sys.stderr,
        )
    records.reverse()  # oldest first, as a spreadsheet reads
    text = _export_csv(records) if args.format == "csv" else json.dumps(records, indent=2) + "\n"
    if args.out is None:
        sys.stdout.write(text)
    else:
        _write_private(args.out, text)
        print(f"{args.out}: {len(records)} registration(s) exported", file=sys.stderr)
    _note_personal_data(args)
    return 0


def _export_csv(records: list[dict[str, Any]]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=EXPORT_COLUMNS, extrasaction="ignore")
    writer.writeheader()
    for record in records:
        writer.writerow(_csv_row(record))
    return out.getvalue()


def _csv_row(record: dict[str, Any]) -> dict[str, Any]:
    errors = "; ".join(f"{error['code']}: {error['description']}" for error in record["errors"])
    return {**record, "onss_remarks": "; ".join(record["onss_remarks"]), "errors": errors}


def _write_private(path: Path, text: str) -> None:
    """Personal data: the file is created 0600 (whatever was there before), atomically."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as out:
            os.fchmod(out.fileno(), 0o600)  # a umask cannot widen it, but make it exact
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            temporary.unlink()
        raise


def _demo(args: argparse.Namespace) -> int:
    from gateway.cli.demo import run_demo

    return asyncio.run(run_demo())


if __name__ == "__main__":
    sys.exit(main())
