"""`badge-gateway queue list|retry|confirm|export`: the registrations and their delivery to
the ONSS, from the running daemon or read-only from a journal file; NISS masked unless
--show-niss, and an export is written 0600 (personal data). `queue list` shows times in
the site's time zone with the offset (UTC with --utc); --json and the export keep both
`time_local` (the site's, with the offset) and `time_utc`, and the UTC of the other times.

An `unconfirmed` registration (the ONSS answered, but the answer could not be read) is
never sent again by itself: the employer looks it up at the ONSS and either confirms it
with the id found there (`queue confirm`) or sends it again, flagged "possibly
duplicated" (`queue retry`)."""

from __future__ import annotations

import argparse
import contextlib
import csv
import io
import json
import os
import sys
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from gateway import control
from gateway.cli.options import (
    add_socket_option,
    add_utc_option,
    shown_zone,
    site_timezone,
    socket_path,
)
from gateway.cli.render import person, shown_time
from gateway.control.status import QUEUE_MAX, delivery_json
from gateway.feedback.outcome import printable
from gateway.models import DeliveryState

PERSONAL_DATA_NOTE = (
    "badge-gateway: note: this output holds national numbers (NISS) and Limosa numbers in"
    " full: personal data, keep it to the employer"
)
EXPORT_COLUMNS = (
    "id",
    "time_local",
    "time_utc",
    "type",
    "name",
    "niss",
    "limosa",
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
    "unconfirmed_utc",
    "unconfirmed_cause",
)
_FLAGS = (
    ("late", "late"),
    ("possibly_duplicated", "possibly duplicated"),
    ("time_uncertain", "time uncertain"),
)


def add_queue_commands(commands: Any) -> None:
    queue = commands.add_parser("queue", help="registrations and their delivery to the ONSS")
    actions = queue.add_subparsers(required=True, metavar="ACTION")

    listing = actions.add_parser("list", help="registrations with their delivery, newest first")
    _add_queue_source(listing)
    listing.add_argument("--limit", type=_queue_limit, default=100, help="at most N (default 100)")
    listing.add_argument("--json", action="store_true", help="JSON lines with every field")
    add_utc_option(listing)
    listing.set_defaults(command=_queue_list)

    retry = actions.add_parser(
        "retry",
        help="send a rejected registration again (cause fixed), or an unconfirmed one"
        " (flagged possibly duplicated)",
    )
    retry.add_argument("id", help="the registration id, from `queue list`")
    add_socket_option(retry)
    retry.set_defaults(command=_queue_retry)

    confirm = actions.add_parser(
        "confirm", help="an unconfirmed registration the ONSS does hold: delivered, with its id"
    )
    confirm.add_argument("id", help="the registration id, from `queue list --state unconfirmed`")
    confirm.add_argument("onss_id", metavar="ONSS_ID", help="the id the ONSS gave it")
    add_socket_option(confirm)
    confirm.set_defaults(command=_queue_confirm)

    export = actions.add_parser("export", help="every registration with its delivery details")
    _add_queue_source(export)
    export.add_argument("--format", choices=["csv", "json"], default="csv")
    export.add_argument("--out", type=Path, help="file to write, created 0600 (default stdout)")
    export.set_defaults(command=_queue_export)


def _add_queue_source(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--state", choices=[state.value for state in DeliveryState], help="only this delivery state"
    )
    parser.add_argument(
        "--show-niss",
        action="store_true",
        help="national (and Limosa) numbers in full (personal data)",
    )
    parser.add_argument(
        "--journal", type=Path, help="read this journal file directly (read-only, daemon or not)"
    )
    add_socket_option(parser)


def _queue_limit(text: str) -> int:
    limit = int(text)
    if not 0 < limit <= QUEUE_MAX:
        raise argparse.ArgumentTypeError(f"must be 1..{QUEUE_MAX}")
    return limit


def _queue_records(args: argparse.Namespace, limit: int) -> list[dict[str, Any]]:
    """Newest first: from the running daemon, or read-only from --journal."""
    state = None if args.state is None else DeliveryState(args.state)
    if args.journal is None:
        message = {"cmd": "queue", "state": state, "limit": limit, "show_niss": args.show_niss}
        records: list[dict[str, Any]] = control.request(socket_path(args), message)["records"]
        return records
    from gateway.journal.store import JournalReader

    reader = JournalReader(args.journal)
    try:
        found = reader.deliveries(state, limit)
    finally:
        reader.close()
    tz = site_timezone(args)
    return [delivery_json(record, tz, full_niss=args.show_niss) for record in found]


def _queue_list(args: argparse.Namespace) -> int:
    zone = shown_zone(args)
    for record in _queue_records(args, args.limit):
        print(json.dumps(record) if args.json else _queue_lines(record, zone))
    _note_personal_data(args)
    return 0


def _queue_lines(record: dict[str, Any], zone: ZoneInfo | None) -> str:
    """The registration's line (its time in `zone`, None: UTC), then its errors or doubt."""
    onss_id = record["onss_id"] if record["onss_id"] is not None else "-"
    line = (
        f"{shown_time(record['time_utc'], zone)}  {record['type']:<3}"
        f"  {printable(record['name']):<20} {person(record)}  {record['declaration']}"
        f"  {record['delivery']:<11}  onss {onss_id}  {record['id']}"
    )
    flags = [label for key, label in _FLAGS if record[key]]
    if flags:
        line += f"  [{', '.join(flags)}]"
    details = [
        f"    {record['rejection_source']} error {error['code']}: {error['description']}"
        for error in record["errors"]
    ]
    if record.get("unconfirmed_cause"):
        details.append(
            f"    answer unreadable at {shown_time(record['unconfirmed_utc'], zone)}:"
            f" {record['unconfirmed_cause']};"
            f" the ONSS may hold it: queue confirm {record['id']} ONSS_ID, or queue retry"
        )
    return "\n".join([line, *details])


def _note_personal_data(args: argparse.Namespace) -> None:
    if args.show_niss:
        print(PERSONAL_DATA_NOTE, file=sys.stderr)


def _queue_retry(args: argparse.Namespace) -> int:
    reply = control.request(socket_path(args), {"cmd": "requeue", "id": args.id})
    flagged = " (flagged possibly duplicated)" if reply.get("possibly_duplicated") else ""
    print(f"requeued: {reply['id']} will be sent to the ONSS again{flagged}")
    return 0


def _queue_confirm(args: argparse.Namespace) -> int:
    message = {"cmd": "confirm", "id": args.id, "onss_id": args.onss_id}
    reply = control.request(socket_path(args), message)
    print(f"confirmed: {reply['id']} delivered, ONSS id {reply['onss_id']}")
    if reply.get("checked"):  # Checkinatwork: the ONSS said it holds this very one
        remarks = "; ".join(reply.get("remarks") or []) or "no remark"
        print(f"  checked at the ONSS: {reply['status']} ({remarks})")
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
