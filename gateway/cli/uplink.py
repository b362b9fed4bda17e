"""`badge-gateway uplink check`: the configured `[uplink]` tried step by step (DNS, TCP, TLS,
token, a registerInBulk that creates nothing, the case of `type`), each printed with its
time and, when it fails, its cause; exit 0 when every step passes, 1 otherwise. The steps
are gateway.uplink.check's."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import Any

from gateway.cli.options import load_or_report

MARKS = {"passed": "ok", "warning": "warn", "failed": "FAILED", "skipped": "skipped"}


def add_uplink_commands(commands: Any) -> None:
    uplink = commands.add_parser("uplink", help="ONSS uplink tools")
    uplink_commands = uplink.add_subparsers(required=True, metavar="ACTION")
    check = uplink_commands.add_parser(
        "check",
        help="try the configured [uplink] before going live (creates nothing at the ONSS)",
    )
    # SUPPRESS: given here it overrides the global --config, else the global one stands.
    check.add_argument("--config", type=Path, default=argparse.SUPPRESS, help="TOML file")
    check.add_argument("--json", action="store_true", help="the steps as one JSON document")
    check.set_defaults(command=_check)


def _check(args: argparse.Namespace) -> int:
    config = load_or_report(args.config)
    if config is None:
        return 1
    # Imported here: the uplink brings httpx, cryptography and jwt with it.
    from gateway.uplink.check import check_uplink

    uplink = config.uplink
    if not args.json:
        print(f"uplink check ({args.config}): token {uplink.token_url}, API {uplink.base_url}")
        if not uplink.enabled:
            print("  note: [uplink] enabled = false; checking its settings all the same")
    try:
        report = asyncio.run(check_uplink(uplink))
    except Exception as error:  # check_uplink answers every step; this is a last guard
        print(f"badge-gateway: uplink check: {type(error).__name__}: {error}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(report.as_json(), ensure_ascii=False, indent=2))
    else:
        _print_steps(report.as_json())
    return 0 if report.passed else 1


def _print_steps(report: dict[str, Any]) -> None:
    for step in report["steps"]:
        ms = "" if step["ms"] is None else f"{step['ms']:.0f} ms"
        line = f"  {MARKS[step['status']]:<8} {step['step']:<15} {ms:>8}  {step['detail']}"
        print(line.rstrip())
    failed = [step["step"] for step in report["steps"] if step["status"] == "failed"]
    print("result: ready" if report["passed"] else f"result: FAILED at {failed[0]}")
