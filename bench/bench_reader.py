"""Reader latency benchmark (issue 4): the last byte of a serial frame to the feedback output.

Run from the repository root: `python -m bench.bench_reader [--taps N]`. It prints its
figures against the target (p99 under 50 ms); it is a measurement, not a test.

Each figure is the time from just before os.write of a 14-byte RDM6300 frame to a pty
master until the far end has it, one frame at a time (the next is written once the last
arrived), each frame a distinct card, so the presence gap never merges two:

1. Baseline, raw pty: a thread blocked in os.read on the raw pty slave has the whole frame.
2. The driver alone: an Rdm6300Reader on its own pty calls its on_read.
3. Frame to feedback: the real Daemon in this process, its rdm6300 reader built from the
   configuration (a symlink to a pty, as /dev/serial/by-id is), the real tap pipeline and
   journal (debounce 0; one worker per card, so every tap registers), and a feedback
   output whose show() ends the measurement.

The three alternate in blocks, so they all see the same machine weather.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import threading
import time
import tty
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from bench.bench_tap import (
    add_directory_arguments,
    in_fresh_directory,
    load_average,
    machine,
    percentile,
    print_table,
    us,
    verdict,
)
from drivers.base import Reader, ReaderHealth, ReaderState
from drivers.rdm6300 import Rdm6300Parser, Rdm6300Reader, encode_frame
from gateway.daemon import Daemon
from gateway.feedback import TapOutcome
from gateway.identifiers import make_niss
from gateway.system import logs
from tests.support import Badge, make_config_with_readers, with_daemon

P99_TARGET_NS = 50_000_000
WAIT_SECONDS = 5.0  # a tap with no feedback by then is counted as lost, not waited for
FRAME_LENGTH = 14


def card_data(index: int) -> bytes:
    """5 data bytes: a version byte, then the worker's number as the card id."""
    return bytes([0x0B]) + index.to_bytes(4, "big")


def workers(count: int) -> list[Badge]:
    """One worker per card (the badges of tests.support stop at 900: one birth date)."""
    return [
        Badge(uid=card_data(index).hex().upper(), niss=niss(index), name=f"Worker {index}")
        for index in range(count)
    ]


def niss(index: int) -> str:
    """Distinct valid NISS numbers: 900 serial numbers per birth date, 28 dates a month."""
    month, day = divmod(index // 900, 28)
    return make_niss(f"85{month + 1:02d}{day + 1:02d}", 100 + index % 900)


def open_raw_pty() -> tuple[int, int]:
    master, slave = os.openpty()
    tty.setraw(slave)
    return master, slave


class Probe:
    """Writes frames of distinct cards to a pty master, one at a time, and times each until
    the far end calls `arrived()`; a frame with no arrival within WAIT_SECONDS is lost."""

    def __init__(self, master: int) -> None:
        self.master = master
        self.samples: list[int] = []
        self.lost = 0
        self._arrived = threading.Event()
        self._arrived_ns = 0
        self._next_card = 0

    def arrived(self) -> None:
        self._arrived_ns = time.perf_counter_ns()
        self._arrived.set()

    def run(self, count: int, *, keep: bool = True) -> None:
        for _ in range(count):
            frame = encode_frame(card_data(self._next_card))
            self._next_card += 1
            self._arrived.clear()
            sent = time.perf_counter_ns()  # before the write: its own cost counts too
            os.write(self.master, frame)
            if not self._arrived.wait(WAIT_SECONDS):
                self.lost += 1
            elif keep:
                self.samples.append(self._arrived_ns - sent)


# --- 1. baseline: a blocking os.read on the pty slave -------------------------------------


class RawPtyReader:
    """A thread blocked in os.read on a pty slave, reporting each whole frame read."""

    def __init__(self, probe: Probe, slave: int) -> None:
        self._probe = probe
        self._slave = slave
        self._thread = threading.Thread(target=self._read_frames, name="raw-pty", daemon=True)
        self._thread.start()

    def _read_frames(self) -> None:
        pending = 0
        while data := _read_or_nothing(self._slave):
            pending += len(data)
            if pending >= FRAME_LENGTH:
                pending -= FRAME_LENGTH
                self._probe.arrived()

    def join(self) -> None:
        """Once the master is closed, the read fails (EIO) and the thread ends."""
        self._thread.join(timeout=WAIT_SECONDS)


def _read_or_nothing(fd: int) -> bytes:
    try:
        return os.read(fd, 64)
    except OSError:  # EIO: the master is closed, the run is over
        return b""


# --- 2. the driver alone, and 3. the driver with the daemon -------------------------------


class ArrivalFeedback:
    """A feedback output that reports each call to the probe and counts the outcomes."""

    def __init__(self, probe: Probe) -> None:
        self._probe = probe
        self.outcomes: Counter[str] = Counter()

    def show(self, outcome: TapOutcome) -> None:
        self._probe.arrived()
        self.outcomes[outcome.kind.value] += 1


@dataclass(frozen=True, slots=True)
class Plan:
    taps: int
    blocks: int
    warmup: int


@dataclass(slots=True)
class Results:
    raw: Probe
    driver: Probe
    daemon: Probe
    outcomes: Counter[str] = field(default_factory=Counter)
    health: ReaderHealth | None = None


def share(total: int, parts: int, index: int) -> int:
    return total // parts + (1 if index < total % parts else 0)


def alternate(plan: Plan, probes: Sequence[Probe]) -> None:
    for probe in probes:
        probe.run(plan.warmup, keep=False)
    for block in range(plan.blocks):
        for probe in probes:
            probe.run(share(plan.taps, plan.blocks, block))
        print(f"  block {block + 1}/{plan.blocks}: {len(probes[-1].samples):,} taps", flush=True)


async def wait_connected(reader: Reader) -> None:
    deadline = time.monotonic() + WAIT_SECONDS
    while reader.health().state is not ReaderState.CONNECTED:
        if time.monotonic() > deadline:
            raise RuntimeError(f"reader not connected: {reader.health()}")
        await asyncio.sleep(0.01)


def symlink_to_pty(link: Path, slave: int) -> str:
    """The stable path a site would configure (/dev/serial/by-id/...), here in the state."""
    link.symlink_to(os.ttyname(slave))
    return str(link)


def run_bench(state: Path, plan: Plan) -> Results:
    logs.configure(fmt="console", level="warning")
    ptys = [open_raw_pty() for _ in range(3)]
    raw_probe, driver_probe, daemon_probe = (Probe(master) for master, _ in ptys)
    results = Results(raw_probe, driver_probe, daemon_probe)
    raw = RawPtyReader(results.raw, ptys[0][1])
    alone = Rdm6300Reader(
        "alone", port=symlink_to_pty(state / "alone", ptys[1][1]), parser=Rdm6300Parser
    )
    reader = {
        "name": "bench",
        "driver": "rdm6300",
        "port": symlink_to_pty(state / "bench", ptys[2][1]),
    }
    config = make_config_with_readers(
        state, workers(plan.warmup + plan.taps), [reader], attendance={"debounce_seconds": 0}
    )
    config.badges.file.chmod(0o600)  # as deployed: the register holds national numbers
    feedback = ArrivalFeedback(results.daemon)

    async def body(daemon: Daemon) -> None:
        alone.start(lambda read: results.driver.arrived())
        try:
            await wait_connected(alone)
            await wait_connected(daemon.readers[0])
            await asyncio.to_thread(alternate, plan, [results.raw, results.driver, results.daemon])
        finally:
            alone.stop()
        results.health = daemon.readers[0].health()

    try:
        asyncio.run(with_daemon(config, body, outputs=[feedback]))
    finally:
        for master, _ in ptys:
            os.close(master)
        raw.join()
        for _, slave in ptys:
            os.close(slave)
    results.outcomes = feedback.outcomes
    return results


# --- the report ---------------------------------------------------------------------------


def latency_rows(label: str, probe: Probe, target: str = "") -> list[tuple[str, str, str, str]]:
    p99 = percentile(probe.samples, 0.99)
    judged = verdict(p99 < P99_TARGET_NS) if target else ""
    return [
        (f"{label} p50 ({len(probe.samples):,})", us(percentile(probe.samples, 0.50)), "", ""),
        (f"{label} p99", us(p99), target, judged),
        (f"{label} max", us(max(probe.samples)), "", ""),
    ]


def ratio_row(label: str, probe: Probe, baseline: Probe, q: float) -> tuple[str, str, str, str]:
    ratio = percentile(probe.samples, q) / percentile(baseline.samples, q)
    return (label, f"{ratio:,.1f}x", "", "")


def figures(results: Results) -> list[tuple[str, str, str, str]]:
    raw, driver, daemon = results.raw, results.driver, results.daemon
    lost = raw.lost + driver.lost + daemon.lost
    return [
        ("figure", "measured", "target", "verdict"),
        *latency_rows("raw pty write->read", raw),
        *latency_rows("frame->driver emit", driver),
        *latency_rows("frame->feedback", daemon, "< 50 ms"),
        ratio_row("frame->feedback / raw pty, p50", daemon, raw, 0.50),
        ratio_row("frame->feedback / raw pty, p99", daemon, raw, 0.99),
        ratio_row("driver emit / raw pty, p50", driver, raw, 0.50),
        ("frames with no arrival", str(lost), "0", verdict(lost == 0)),
    ]


def print_report(info: dict[str, str], results: Results) -> None:
    print("\n== machine")
    for key, value in info.items():
        print(f"{key:>13}: {value}")
    print(f"{'load at end':>13}: {load_average()}")
    health = results.health
    assert health is not None
    print(
        f"\n== outcomes (warm-up included): {dict(results.outcomes)}; the daemon's reader:"
        f" {health.state.value}, {health.reads:,} reads, {health.bad_frames} bad frames"
    )
    print("\n== figures")
    print_table(figures(results))


# --- main ---------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.bench_reader",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--taps", type=int, default=5_000, help="measured taps (5,000)")
    parser.add_argument("--blocks", type=int, default=10, help="alternating blocks (10)")
    parser.add_argument("--warmup", type=int, default=100, help="unmeasured first taps (100)")
    add_directory_arguments(parser)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    plan = Plan(args.taps, args.blocks, args.warmup)

    def body(root: Path) -> int:
        info = machine(root)
        print(f"{plan.warmup} warm-up frames each, then {plan.blocks} blocks in {root}")
        results = run_bench(root, plan)
        print_report(info, results)
        return 0 if results.raw.lost + results.driver.lost + results.daemon.lost == 0 else 1

    return in_fresh_directory(args.dir, "bench-reader-", args.keep, body)


if __name__ == "__main__":
    sys.exit(main())
