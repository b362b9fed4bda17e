"""`badge-gateway readers list|test`: what a technician installing a reader needs on site.

`list` shows the readers this machine can see (serial ports, NFC front-ends, keyboard-wedge
readers) and the ones the configuration names. `test NAME` opens one configured reader,
without the daemon, and prints every uid it reads and whether the badge register knows it,
so the badge file can be written at the door. Stop the daemon first: a serial port or an
NFC front-end has one owner at a time.
"""

from __future__ import annotations

import argparse
import queue
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

from drivers.base import BadgeRead, DetectedDevice, Reader, ReaderHealth
from gateway.cli.options import load_or_report
from gateway.config import ConfigError, GatewayConfig, ReaderConfig, load_config
from gateway.feedback.outcome import printable

HEALTH_POLL_S = 0.2


def add_reader_commands(commands: Any) -> None:
    readers = commands.add_parser("readers", help="find and try badge readers (installation)")
    actions = readers.add_subparsers(required=True, metavar="ACTION")
    listing = actions.add_parser("list", help="readers detected here and readers configured")
    listing.set_defaults(command=readers_list)
    test = actions.add_parser("test", help="print every badge a configured reader reads")
    test.add_argument("name", help="the reader's name in the configuration")
    test.add_argument("--count", type=int, help="stop after this many reads")
    test.add_argument("--seconds", type=float, help="stop after this long")
    test.set_defaults(command=readers_test)


def detectors() -> dict[str, Callable[[], list[DetectedDevice]]]:
    # Imported here: each pulls in its driver's library, which `readers test` may not need.
    from drivers import keyboard, nfc, serial_port

    return {"serial": serial_port.detect, "nfc": nfc.detect, "keyboard": keyboard.detect}


def readers_list(args: argparse.Namespace) -> int:
    print("Detected on this machine:")
    found = 0
    for kind, detect in detectors().items():
        try:
            devices = detect()
        except Exception as error:  # a library or a bus acting up must not hide the rest
            print(f"  {kind}: detection failed: {error}")
            continue
        for device in devices:
            found += 1
            print(f"  {device.driver:<12} {device.path:<40} {device.description}")
    if not found:
        print("  nothing (is the reader plugged in? `dmesg | tail` tells what the kernel saw)")
    config = _config_or_none(args)
    if config is not None:
        print(f"\nConfigured in {args.config}:")
        for reader in config.readers or []:
            print(f"  {reader.name:<16} driver = {reader.driver!r:<14} {_where(reader)}")
        if not config.readers:
            print("  no [[readers]]")
    return 0


def readers_test(args: argparse.Namespace) -> int:
    from gateway.readers import build_reader

    config = load_or_report(args.config)
    if config is None:
        return 1
    entry = next((r for r in config.readers if r.name == args.name), None)
    if entry is None:
        names = ", ".join(r.name for r in config.readers) or "none"
        print(f"badge-gateway: no reader named {args.name!r} (configured: {names})")
        return 1
    lookup = _badge_lookup(config)
    reader = build_reader(entry)
    print(f"{entry.name}: {entry.driver} {_where(entry)}; present a badge (Ctrl-C stops)")
    for read in _watch(reader, args.count, args.seconds, _health_printer(entry.name)):
        print(f"{read.uid}  {read.technology}  {lookup(read.uid)}", flush=True)
    return 0


def _badge_lookup(config: GatewayConfig) -> Callable[[str], str]:
    """Who a uid belongs to, NISS masked; a broken badge file must not stop the test."""
    from gateway.badges import load_badge_register
    from gateway.errors import BadgeFileError

    try:
        register = load_badge_register(config.badges.file)
    except (BadgeFileError, OSError) as error:
        print(f"badge file not read ({error}): uids only", file=sys.stderr)
        return lambda uid: ""

    def describe(uid: str) -> str:
        worker = register.lookup(uid)
        return f"{printable(worker.name)} ({worker.person})" if worker else "not in the badge file"

    return describe


def _watch(
    reader: Reader,
    count: int | None,
    seconds: float | None,
    on_health: Callable[[ReaderHealth], None],
) -> Iterator[BadgeRead]:
    """Yield the reader's reads as they come, until count reads or seconds have passed."""
    reads: queue.SimpleQueue[BadgeRead] = queue.SimpleQueue()
    deadline = None if seconds is None else time.monotonic() + seconds
    reader.start(reads.put)
    seen = 0
    try:
        while (count is None or seen < count) and (deadline is None or time.monotonic() < deadline):
            on_health(reader.health())
            try:
                read = reads.get(timeout=HEALTH_POLL_S)
            except queue.Empty:
                continue
            seen += 1
            yield read
    finally:
        reader.stop()


def _health_printer(name: str) -> Callable[[ReaderHealth], None]:
    last: list[tuple[str, str | None]] = []

    def show(health: ReaderHealth) -> None:
        now = (health.state.value, health.error)
        if not last or last[0] != now:
            suffix = f": {health.error}" if health.error else ""
            print(f"[{name} {health.state.value}{suffix}]", file=sys.stderr, flush=True)
            last[:] = [now]

    return show


def _where(reader: ReaderConfig) -> str:
    for field in ("port", "path", "device"):
        value = getattr(reader, field, None)
        if value is not None:
            return f"{field} = {str(value)!r}"
    return ""


def _config_or_none(args: argparse.Namespace) -> GatewayConfig | None:
    if not args.config.exists():
        return None
    try:
        return load_config(args.config)
    except ConfigError as error:
        print(f"\n{args.config}: not valid, readers not shown:\n{error}")
        return None
