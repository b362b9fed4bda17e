"""`badge-gateway evidence verify|export`: the employer's proof, checked and handed over."""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Sequence
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from gateway.cli.options import journal_path, load_or_report
from gateway.errors import CredentialError
from gateway.evidence import Entry, Head, LogCheck, verify_journal
from gateway.journal import connect

if TYPE_CHECKING:
    from collections.abc import Callable

    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from gateway.config import SiteConfig
    from gateway.report.export import Period

    Renderer = Callable[[Sequence[Entry], dict[str, Any], dict[str, str] | None], str]

# gateway.system.credentials and gateway.report are imported where they
# are used: they bring cryptography, which `badge-gateway run` must not pay for in RAM.

_HEAD = re.compile(r"(?P<seq>[0-9]+):(?P<hash>[0-9a-f]{64})")


def add_evidence_commands(commands: Any) -> None:
    evidence = commands.add_parser("evidence", help="the tamper-evident evidence log")
    actions = evidence.add_subparsers(required=True, metavar="ACTION")
    verify = actions.add_parser("verify", help="recompute the hash chain; exit 1 on any break")
    verify.add_argument("--journal", type=Path, help="journal file (default: from the config)")
    verify.add_argument(
        "--head",
        type=_anchor,
        help="SEQ:HASH of a chain head kept elsewhere (a log line, a report): must still hold",
    )
    verify.add_argument("--export", type=Path, help="verify an export directory instead, offline")
    verify.add_argument(
        "--archive",
        type=Path,
        help="verify a fleet archive instead, offline: DIR/SITE/BOX, or every box under DIR",
    )
    verify.add_argument(
        "--public-key",
        help="the signing key (hex) that the export's manifest, or the journal's retention"
        " summaries, must be signed by",
    )
    verify.set_defaults(command=evidence_verify)

    export = actions.add_parser("export", help="entries, manifest and report for a period")
    export.add_argument(
        "--from",
        dest="start",
        type=date.fromisoformat,
        required=True,
        help="first day (YYYY-MM-DD, the site's time zone)",
    )
    export.add_argument(
        "--to", dest="end", type=date.fromisoformat, required=True, help="last day, included"
    )
    export.add_argument("--out", type=Path, required=True, help="directory to write (0700)")
    export.add_argument("--journal", type=Path, help="journal file (default: from the config)")
    export.add_argument(
        "--full-niss", action="store_true", help="national numbers in full in the report"
    )
    export.set_defaults(command=evidence_export)


def _anchor(text: str) -> Head:
    match = _HEAD.fullmatch(text.strip().lower())
    if match is None:
        raise argparse.ArgumentTypeError("expected SEQ:HASH, the hash as 64 hex digits")
    return Head(int(match["seq"]), match["hash"])


def evidence_verify(args: argparse.Namespace) -> int:
    if args.export is not None:
        return _verify_export(args.export, args.public_key)
    if args.archive is not None:
        return _verify_archive(args.archive)
    path = journal_path(args)
    if not path.exists():
        print(f"badge-gateway: no journal at {path}", file=sys.stderr)
        return 1
    conn = connect(path, read_only=True)
    try:
        check = verify_journal(conn, anchor=args.head, public_key=args.public_key)
    finally:
        conn.close()
    print(describe(path, check))
    return 0 if check.ok else 1


def describe(source: Path, check: LogCheck) -> str:
    chain = check.chain
    lines = [f"{source}: {chain.entries} evidence entries"]
    if chain.first and chain.last:
        lines[0] += f", #{chain.first.seq} to #{chain.last.seq}"
        lines.append(f"head: {chain.last.seq}:{chain.last.hash}")
    if chain.broken is not None:
        lines.append(f"BROKEN at {chain.broken}")
    lines += [f"PROBLEM: {problem}" for problem in check.problems]
    if check.ok:
        lines.append(
            "verified: every entry's hash and link holds, and so does the head the box noted"
        )
    return "\n".join(lines)


def _verify_export(directory: Path, public_key: str | None) -> int:
    from gateway.report.export import verify_export

    check = verify_export(directory, public_key=public_key)
    print(f"{directory}: {check.entries} evidence entries")
    for problem in check.problems:
        print(f"PROBLEM: {problem}")
    if check.ok:
        signed = f", signed by Ed25519 key {check.signed_by}" if check.signed_by else ", unsigned"
        print(f"verified: files, hashes and chain hold{signed}")
    return 0 if check.ok else 1


def _verify_archive(directory: Path) -> int:
    from gateway.fleet.archive_check import archive_boxes, describe_check, verify_archive

    boxes = archive_boxes(directory)
    if not boxes:
        print(
            f"badge-gateway: {directory}: no archived evidence (DIR/SITE/BOX/evidence.jsonl)",
            file=sys.stderr,
        )
        return 1
    checks = [verify_archive(box) for box in boxes]
    print("\n".join(describe_check(check) for check in checks))
    return 0 if all(check.ok for check in checks) else 1


def evidence_export(args: argparse.Namespace) -> int:
    from gateway.report.export import Period, export

    config = load_or_report(args.config)
    if config is None:
        return 1
    try:
        key = _signing_key(config.evidence.signing_key)
    except CredentialError as error:
        print(f"badge-gateway: cannot sign the export: {error}", file=sys.stderr)
        return 1
    site = config.site
    period = Period(
        _day_start_ns(args.start, site.tz), _day_start_ns(args.end + timedelta(days=1), site.tz)
    )

    path = args.journal or config.storage.journal
    if not path.exists():
        print(f"badge-gateway: no journal at {path}", file=sys.stderr)
        return 1
    conn = connect(path, read_only=True)
    try:
        manifest = export(
            conn,
            args.out,
            period,
            site={
                "name": site.name,
                "channel": site.channel.value,
                "declaration": ", ".join(site.all_declarations),
            },
            render=report_renderer(site, period),
            signing_key=key,
            full_niss=args.full_niss,
        )
    finally:
        conn.close()
    print(f"{args.out}: {manifest['entries']} entries from {args.start} to {args.end}")
    if not (manifest["chain_verified"] and manifest["journal_verified"]):
        print("WARNING: the log does not verify; the report says where (evidence verify)")
    if args.full_niss:
        print("note: the report holds national numbers in full (personal data)", file=sys.stderr)
    return 0


def report_renderer(site: SiteConfig, period: Period) -> Renderer:
    """How an export renders its report: the site's name, language and zone, the period."""
    from gateway.report.document import ReportContext, render_report

    def render(
        chosen: Sequence[Entry], summary: dict[str, Any], niss: dict[str, str] | None
    ) -> str:
        context = ReportContext(
            site_name=site.name,
            declaration=", ".join(site.all_declarations),
            language=site.language,
            tz=site.tz,
            period_from_ns=period.from_ns,
            period_to_ns=period.to_ns,
            check=summary["check"],
            head=summary["head"],
            channel=site.channel,
        )
        declarations = summary.get("declarations")
        return render_report(chosen, context, full_niss=niss, declarations=declarations)

    return render


def _signing_key(name: str | None) -> Ed25519PrivateKey | None:
    """The export's signing key ([evidence] signing_key), or None when there is none."""
    if name is None:
        return None
    from gateway.system.credentials import key_path, load_signing_key

    return load_signing_key(key_path(name))


def _day_start_ns(day: date, tz: ZoneInfo) -> int:
    return int(datetime.combine(day, datetime.min.time(), tzinfo=tz).timestamp()) * 1_000_000_000
