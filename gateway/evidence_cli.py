"""`badge-gateway evidence verify|export`: the employer's proof, checked and handed over."""

from __future__ import annotations

import argparse
import re
import sqlite3
import sys
from pathlib import Path
from typing import Any

from gateway.config import ConfigError, load_config
from gateway.evidence_log import Head, LogCheck, verify_journal

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
    verify.set_defaults(command=evidence_verify)


def _anchor(text: str) -> Head:
    match = _HEAD.fullmatch(text.strip().lower())
    if match is None:
        raise argparse.ArgumentTypeError("expected SEQ:HASH, the hash as 64 hex digits")
    return Head(int(match["seq"]), match["hash"])


def journal_path(args: argparse.Namespace) -> Path:
    if args.journal is not None:
        return Path(args.journal)
    try:
        return load_config(args.config).storage.journal
    except ConfigError as error:
        raise SystemExit(f"{error}\n(or give --journal FILE)") from None


def evidence_verify(args: argparse.Namespace) -> int:
    path = journal_path(args)
    if not path.exists():
        print(f"badge-gateway: no journal at {path}", file=sys.stderr)
        return 1
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        check = verify_journal(conn, anchor=args.head)
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
        lines.append("verified: every entry's hash and link holds, and the journal agrees")
    return "\n".join(lines)
