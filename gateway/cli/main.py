"""`badge-gateway`: the parser, one sub-command per module of this package, and dispatch."""

from __future__ import annotations

import argparse
import asyncio
import sqlite3
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from gateway.cli.checks import add_check_commands
from gateway.cli.evidence import add_evidence_commands
from gateway.cli.fleet import add_fleet_commands
from gateway.cli.journal import add_journal_commands
from gateway.cli.live import add_live_commands, add_run_command
from gateway.cli.queue import add_queue_commands
from gateway.cli.readers import add_reader_commands
from gateway.cli.uplink import add_uplink_commands
from gateway.config import DEFAULT_CONFIG_PATH
from gateway.errors import EXIT_FAILURE, EXIT_INTERRUPTED, GatewayError

Command = Callable[[argparse.Namespace], int]


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    command: Command = args.command
    try:
        return command(args)
    except (GatewayError, OSError, sqlite3.Error) as error:  # one line, never a traceback
        print(f"badge-gateway: {error}", file=sys.stderr)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="badge-gateway",
        description="Badge taps to ONSS attendance registrations (Check In and Out at Work).",
    )
    parser.add_argument(
        "--config",
        type=Path,
        default=DEFAULT_CONFIG_PATH,
        help=f"TOML file (default {DEFAULT_CONFIG_PATH})",
    )
    commands = parser.add_subparsers(required=True, metavar="COMMAND")
    add_run_command(commands)
    add_check_commands(commands)
    add_live_commands(commands)
    add_queue_commands(commands)
    add_reader_commands(commands)
    add_evidence_commands(commands)
    add_journal_commands(commands)
    add_uplink_commands(commands)
    add_fleet_commands(commands)
    demo = commands.add_parser("demo", help="run a self-contained demonstration")
    demo.add_argument(
        "--out", type=Path, help="where to write the day's report (default: a new temporary dir)"
    )
    demo.set_defaults(command=_demo)
    return parser


def _demo(args: argparse.Namespace) -> int:
    # Imported here: the demo brings the daemon and the evidence export with it.
    from gateway.cli.demo import run_demo

    return asyncio.run(run_demo(args.out))


if __name__ == "__main__":
    sys.exit(main())
