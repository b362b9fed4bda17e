"""Tap-to-feedback benchmark (issue 2): latency, bytes written per tap, resident memory.

Run from the repository root: `python -m bench.bench_tap [--taps N] [--socket-taps N]`.
It prints its figures and a table of targets; it is a measurement, not a test.

1. Baseline: one raw os.write of a 200-byte record + os.fsync, appending to a file opened
   once, in the journal's own directory.
2. Tap to feedback: the real Daemon in this process, debounce 0, workers tapped
   round-robin by a reader of the benchmark's own; latency runs from the reader handing
   the read to the daemon (as a driver's thread does) to the feedback output's call.
   Baseline and taps alternate in blocks so both see the same machine weather.
3. Bytes written per tap: write_bytes of /proc/self/io around the tap blocks only (the
   journal thread belongs to this process), WAL checkpoints included.
4. Resident memory: `python -m gateway run` as its own process, VmRSS after start and
   after the socket taps, sent over long-lived control-socket connections.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import platform
import shutil
import socket
import sqlite3
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from drivers.base import OnRead, ReaderHealth, ReaderState
from gateway.daemon import Daemon
from gateway.feedback import TapOutcome
from gateway.system import logs
from tests.support import (
    DaemonProcess,
    badges,
    make_config,
    tap_read,
    with_daemon,
    write_badge_file,
    write_config,
)

RECORD = b"r" * 199 + b"\n"
KIB = 1024
MB = 1000 * 1000
P50_RATIO_TARGET = 1.5
P99_RATIO_TARGET = 3.0
BYTES_PER_TAP_TARGET = 16 * KIB
RSS_START_TARGET = 60 * MB
RSS_GROWTH_TARGET = 5 * MB
PROGRESS_EVERY = 10_000


# --- small measuring tools ---------------------------------------------------------------


def percentile(values: Sequence[int], q: float) -> int:
    """Nearest-rank percentile of integer samples."""
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1))]


def write_bytes() -> int:
    """Bytes this process (all its threads) caused to be sent to the storage layer."""
    return _proc_field(Path("/proc/self/io"), "write_bytes:")


def vm_kib(pid: int, name: str) -> int:
    return _proc_field(Path(f"/proc/{pid}/status"), f"{name}:")


def _proc_field(path: Path, key: str) -> int:
    for line in path.read_text().splitlines():
        if line.startswith(key):
            return int(line.split()[1])
    raise KeyError(f"{key} not in {path}")


def fs_type(directory: Path) -> str:
    result = subprocess.run(
        ["stat", "-f", "-c", "%T", str(directory)], capture_output=True, text=True, check=True
    )
    return result.stdout.strip()


def mount_of(directory: Path) -> str:
    """The /proc/self/mounts entry the directory lives on: device, mount point, type."""
    best = ("?", "", "?")
    for line in Path("/proc/self/mounts").read_text().splitlines():
        device, point, kind = line.split()[:3]
        inside = directory.resolve().is_relative_to(point)
        if inside and len(point) >= len(best[1]):
            best = (device, point, kind)
    return f"{best[0]} on {best[1]} type {best[2]}"


def machine(directory: Path) -> dict[str, str]:
    cpuinfo = Path("/proc/cpuinfo").read_text().splitlines()
    model = next((line.split(":", 1)[1].strip() for line in cpuinfo if "model name" in line), "?")
    return {
        "cpu": f"{model} x {os.cpu_count()}",
        "kernel": platform.release(),
        "directory": str(directory),
        "file system": f"{fs_type(directory)} (stat -f); mount: {mount_of(directory)}",
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "load at start": load_average(),
    }


def load_average() -> str:
    """1, 5 and 15-minute load: other work on the machine shows in the tails."""
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


# --- the WAL, read passively (never checkpoints) ------------------------------------------


@dataclass(frozen=True, slots=True)
class WalState:
    checkpoint_seq: int  # bumped each time the WAL restarts after a checkpoint
    frames: int  # valid frames of the current WAL generation
    commits: int  # of which commit frames


def read_wal(path: Path) -> WalState | None:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    if len(data) < 32:
        return None
    _, _, page_size, checkpoint_seq, salt1, salt2 = struct.unpack(">6I", data[:24])
    frames = commits = 0
    offset = 32
    while offset + 24 + page_size <= len(data):
        _, db_size, frame_salt1, frame_salt2 = struct.unpack(">4I", data[offset : offset + 16])
        if (frame_salt1, frame_salt2) != (salt1, salt2):
            break
        frames += 1
        commits += db_size != 0
        offset += 24 + page_size
    return WalState(checkpoint_seq, frames, commits)


# --- 1. baseline: raw write + fsync -------------------------------------------------------


class FsyncBaseline:
    """Appends a 200-byte record and fsyncs it, on a file opened once."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        self.samples: list[int] = []

    def run(self, count: int, *, keep: bool = True) -> None:
        for _ in range(count):
            start = time.perf_counter_ns()
            os.write(self._fd, RECORD)
            os.fsync(self._fd)
            if keep:
                self.samples.append(time.perf_counter_ns() - start)

    def close(self) -> None:
        os.close(self._fd)


# --- 2 and 3. the real daemon, in this process --------------------------------------------


class StampingFeedback:
    """A feedback output that only notes when it was called, and with what."""

    def __init__(self) -> None:
        self.calls = 0
        self.last_ns = 0
        self.last: TapOutcome | None = None

    def show(self, outcome: TapOutcome) -> None:
        self.last_ns = time.perf_counter_ns()
        self.last = outcome
        self.calls += 1


class BenchReader:
    """A reader whose card presentations the benchmark makes, on the benchmark's thread."""

    name = "bench"

    def __init__(self) -> None:
        self.on_read: OnRead | None = None

    def start(self, on_read: OnRead) -> None:
        self.on_read = on_read

    def stop(self) -> None:
        self.on_read = None

    def health(self) -> ReaderHealth:
        return ReaderHealth(ReaderState.CONNECTED)


@dataclass(slots=True)
class TapRun:
    latencies: list[int] = field(default_factory=list)
    outcomes: Counter[str] = field(default_factory=Counter)
    toggle_errors: int = 0
    write_bytes: int = 0
    checkpoints: int = 0
    db_bytes: int = 0
    wal_bytes: int = 0
    wal_end: WalState | None = None
    feedback_calls: int = 0
    last_direction: dict[str, str] = field(default_factory=dict)


def tap_block(
    reader: BenchReader,
    feedback: StampingFeedback,
    uids: Sequence[str],
    taps: range,
    run: TapRun,
    rate: float = 0.0,
) -> None:
    """Present cards one after the other, as a reader thread does: the daemon runs each tap
    on this thread, so the time from the hand-over to the feedback call is the latency.
    `rate`: taps a second, on a fixed schedule; 0, back to back."""
    assert reader.on_read is not None
    next_at = time.monotonic()
    for index in taps:
        if rate > 0:
            time.sleep(max(0.0, next_at - time.monotonic()))
            next_at = max(next_at + 1 / rate, time.monotonic())
        read = tap_read(uids[index % len(uids)])
        sent = time.perf_counter_ns()
        reader.on_read(read)
        run.latencies.append(feedback.last_ns - sent)
        assert feedback.last is not None
        _check(run, read.uid, feedback.last)


def _check(run: TapRun, uid: str, outcome: TapOutcome) -> None:
    run.outcomes[outcome.kind.value] += 1
    direction = outcome.direction.value if outcome.direction else "-"
    if run.last_direction.get(uid) == direction:
        run.toggle_errors += 1
    run.last_direction[uid] = direction


@dataclass(frozen=True, slots=True)
class Plan:
    taps: int
    blocks: int
    fsyncs: int
    warmup: int
    workers: int


async def measure_in_process(
    daemon: Daemon, feedback: StampingFeedback, baseline: FsyncBaseline, plan: Plan
) -> TapRun:
    uids = [badge.uid for badge in badges(plan.workers)]
    wal = daemon.config.storage.journal.with_name(daemon.config.storage.journal.name + "-wal")
    reader = daemon.readers[0]
    assert isinstance(reader, BenchReader)
    total = TapRun()
    await asyncio.to_thread(tap_block, reader, feedback, uids, range(plan.warmup), total)
    total.latencies.clear()
    total.outcomes.clear()
    baseline.run(20, keep=False)
    first = plan.warmup
    for block in range(plan.blocks):
        baseline.run(_share(plan.fsyncs, plan.blocks, block))
        count = _share(plan.taps, plan.blocks, block)
        await _measured_block(reader, feedback, uids, range(first, first + count), wal, total)
        first += count
    _final_sizes(daemon.config.storage.journal, wal, total)
    total.feedback_calls = feedback.calls - plan.warmup
    return total


def _share(total: int, parts: int, index: int) -> int:
    return total // parts + (1 if index < total % parts else 0)


async def _measured_block(
    reader: BenchReader,
    feedback: StampingFeedback,
    uids: Sequence[str],
    taps: range,
    wal: Path,
    total: TapRun,
) -> None:
    wal_before = read_wal(wal)
    io_before = write_bytes()
    await asyncio.to_thread(tap_block, reader, feedback, uids, taps, total)
    total.write_bytes += write_bytes() - io_before
    wal_after = read_wal(wal)
    if wal_before and wal_after:
        total.checkpoints += wal_after.checkpoint_seq - wal_before.checkpoint_seq


def _final_sizes(journal: Path, wal: Path, run: TapRun) -> None:
    """Sizes while the daemon still runs (closing it checkpoints and removes the WAL)."""
    run.db_bytes = journal.stat().st_size
    run.wal_bytes = wal.stat().st_size if wal.exists() else 0
    run.wal_end = read_wal(wal)


def run_in_process(state: Path, plan: Plan) -> tuple[FsyncBaseline, TapRun]:
    logs.configure(fmt="console", level="warning")
    config = make_config(state, badges(plan.workers), attendance={"debounce_seconds": 0})
    config.badges.file.chmod(0o600)  # as deployed: the register holds national numbers
    feedback = StampingFeedback()
    baseline = FsyncBaseline(state / "fsync-baseline.bin")

    async def body(daemon: Daemon) -> TapRun:
        return await measure_in_process(daemon, feedback, baseline, plan)

    try:
        taps = asyncio.run(with_daemon(config, body, outputs=[feedback], readers=[BenchReader()]))
    finally:
        baseline.close()
    return baseline, taps


# --- 4. resident memory of the real daemon process ----------------------------------------


@dataclass(slots=True)
class SocketRun:
    rss_start_kib: int = 0
    rss_end_kib: int = 0
    hwm_end_kib: int = 0
    sent: int = 0
    seconds: float = 0.0
    exit_code: int | None = None
    outcomes: Counter[str] = field(default_factory=Counter)
    rss_trail: list[tuple[int, int]] = field(default_factory=list)


class SocketTapper:
    """Client threads, each with one connection, sending newline-delimited tap requests."""

    def __init__(self, path: Path, uids: Sequence[str], total: int, deadline: float) -> None:
        self._path = path
        self._uids = list(uids)
        self._total = total
        self._deadline = deadline
        self._lock = threading.Lock()
        self._next = 0
        self.done = 0
        self.outcomes: Counter[str] = Counter()
        self.on_progress: Callable[[int], None] = lambda done: None

    def run(self, threads: int) -> None:
        workers = [threading.Thread(target=self._client) for _ in range(threads)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()

    def _take(self) -> int | None:
        with self._lock:
            if self._next >= self._total or time.monotonic() > self._deadline:
                return None
            self._next += 1
            return self._next - 1

    def _client(self) -> None:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(30)
            sock.connect(str(self._path))
            with sock.makefile("rb") as replies:
                while (index := self._take()) is not None:
                    uid = self._uids[index % len(self._uids)]
                    sock.sendall(json.dumps({"cmd": "tap", "uid": uid}).encode() + b"\n")
                    self._record(json.loads(replies.readline()))

    def _record(self, reply: dict[str, object]) -> None:
        outcome = reply.get("outcome")
        kind = str(outcome.get("kind", "?")) if isinstance(outcome, dict) else "error"
        with self._lock:
            self.outcomes[kind if reply.get("ok") else "error"] += 1
            self.done += 1
            done = self.done
        if done % PROGRESS_EVERY == 0:
            self.on_progress(done)


def run_daemon_process(state: Path, taps: int, workers: int, budget: float) -> SocketRun:
    write_badge_file(state / "badges.csv", badges(workers)).chmod(0o600)
    config = write_config(state, attendance={"debounce_seconds": 0})
    daemon = DaemonProcess(config, state / "control.sock", state / "daemon.log")
    daemon.start()
    result = SocketRun()
    try:
        assert daemon.process is not None
        _drive_socket(daemon.process.pid, daemon.socket, taps, workers, budget, result)
    finally:
        result.exit_code = daemon.stop()
    return result


def _drive_socket(
    pid: int, path: Path, taps: int, workers: int, budget: float, result: SocketRun
) -> None:
    result.rss_start_kib = vm_kib(pid, "VmRSS")
    print(f"daemon pid {pid}: VmRSS after start {result.rss_start_kib} KiB", flush=True)
    tapper = SocketTapper(path, [b.uid for b in badges(workers)], taps, time.monotonic() + budget)
    started = time.monotonic()

    def progress(done: int) -> None:
        rss = vm_kib(pid, "VmRSS")
        result.rss_trail.append((done, rss))
        rate = done / (time.monotonic() - started)
        print(f"  {done:>7,} socket taps, {rate:,.0f}/s, VmRSS {rss} KiB", flush=True)

    tapper.on_progress = progress
    tapper.run(threads=2)
    result.seconds = time.monotonic() - started
    result.sent = tapper.done
    result.outcomes = tapper.outcomes
    result.rss_end_kib = vm_kib(pid, "VmRSS")
    result.hwm_end_kib = vm_kib(pid, "VmHWM")


# --- the report ----------------------------------------------------------------------------


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def us(ns: int) -> str:
    return f"{ns / 1000:,.0f} us"


def latency_rows(baseline: FsyncBaseline, taps: TapRun) -> list[tuple[str, str, str, str]]:
    base50, base99 = percentile(baseline.samples, 0.50), percentile(baseline.samples, 0.99)
    tap50, tap99 = percentile(taps.latencies, 0.50), percentile(taps.latencies, 0.99)
    ratio50, ratio99 = tap50 / base50, tap99 / base99
    n = len(baseline.samples)
    return [
        (f"raw write+fsync p50 ({n:,})", us(base50), "(baseline)", ""),
        (f"raw write+fsync p99 ({n:,})", us(base99), "(baseline)", ""),
        (f"tap->feedback p50 ({len(taps.latencies):,})", us(tap50), "", ""),
        ("tap->feedback p99", us(tap99), "", ""),
        ("tap->feedback max", us(max(taps.latencies)), "", ""),
        ("p50 / baseline p50", f"{ratio50:.2f}x", "<= 1.5x", verdict(ratio50 <= P50_RATIO_TARGET)),
        ("p99 / baseline p99", f"{ratio99:.2f}x", "<= 3x", verdict(ratio99 <= P99_RATIO_TARGET)),
    ]


def disk_rows(taps: TapRun) -> list[tuple[str, str, str, str]]:
    per_tap = taps.write_bytes / len(taps.latencies)
    wal = taps.wal_end
    frames = f"{wal.frames / wal.commits:.2f}" if wal and wal.commits else "?"
    return [
        (
            "bytes written per tap",
            f"{per_tap / KIB:.1f} KiB",
            "<= 16 KiB",
            verdict(per_tap <= BYTES_PER_TAP_TARGET),
        ),
        ("WAL checkpoints during taps", str(taps.checkpoints), "(included above)", ""),
        ("WAL frames per commit (last gen.)", frames, "", ""),
        ("journal file at end", f"{taps.db_bytes / KIB:,.0f} KiB", "", ""),
        ("WAL file at end", f"{taps.wal_bytes / KIB:,.0f} KiB", "", ""),
    ]


def memory_rows(sock: SocketRun) -> list[tuple[str, str, str, str]]:
    growth = (sock.rss_end_kib - sock.rss_start_kib) * KIB
    start = sock.rss_start_kib * KIB
    return [
        (
            "daemon VmRSS after start",
            f"{start / MB:.1f} MB",
            "< 60 MB",
            verdict(start < RSS_START_TARGET),
        ),
        (
            f"VmRSS growth ({sock.sent:,} socket taps)",
            f"{growth / MB:+.1f} MB",
            "< 5 MB",
            verdict(growth < RSS_GROWTH_TARGET),
        ),
        (
            f"VmRSS growth after the first {PROGRESS_EVERY:,} taps",
            f"{_plateau_growth(sock) / MB:+.1f} MB",
            "",
            "",
        ),
        (
            "daemon VmRSS / VmHWM at end",
            f"{sock.rss_end_kib * KIB / MB:.1f} / {sock.hwm_end_kib * KIB / MB:.1f} MB",
            "",
            "",
        ),
        ("socket taps per second", f"{sock.sent / sock.seconds:,.0f}", "", ""),
    ]


def _plateau_growth(sock: SocketRun) -> int:
    """Growth once caches are warm: what a leak would look like."""
    first = sock.rss_trail[0][1] if sock.rss_trail else sock.rss_end_kib
    return (sock.rss_end_kib - first) * KIB


def print_table(rows: Sequence[tuple[str, str, str, str]]) -> None:
    widths = [max(len(row[col]) for row in rows) for col in range(4)]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)))


def print_report(
    info: dict[str, str], baseline: FsyncBaseline, taps: TapRun, sock: SocketRun | None
) -> None:
    print("\n== machine")
    for key, value in info.items():
        print(f"{key:>13}: {value}")
    print(f"{'load at end':>13}: {load_average()}")
    print(
        f"\n== tap outcomes (in-process): {dict(taps.outcomes)};"
        f" feedback calls {taps.feedback_calls:,}; IN/OUT toggle errors: {taps.toggle_errors}"
    )
    if sock is not None:
        print(f"== socket outcomes: {dict(sock.outcomes)}; daemon exit code {sock.exit_code}")
    print("\n== figures")
    rows = [("figure", "measured", "target", "verdict")]
    rows += latency_rows(baseline, taps) + disk_rows(taps)
    rows += memory_rows(sock) if sock is not None else []
    print_table(rows)


# --- main ------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.bench_tap",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--taps", type=int, default=10_000, help="in-process taps (10,000)")
    parser.add_argument("--fsyncs", type=int, default=2_000, help="baseline fsyncs (2,000)")
    parser.add_argument("--blocks", type=int, default=10, help="alternating blocks (10)")
    parser.add_argument("--warmup", type=int, default=100, help="unmeasured first taps (100)")
    parser.add_argument("--workers", type=int, default=50, help="workers tapped in turn (50)")
    parser.add_argument(
        "--socket-taps",
        type=int,
        default=100_000,
        help="taps sent to the daemon process; 0 skips it (100,000)",
    )
    parser.add_argument(
        "--socket-budget",
        type=float,
        default=420.0,
        help="stop the socket taps after this many seconds (420)",
    )
    add_directory_arguments(parser)
    return parser.parse_args(argv)


def add_directory_arguments(parser: argparse.ArgumentParser) -> None:
    """--dir and --keep, for `in_fresh_directory`."""
    parser.add_argument(
        "--dir",
        type=Path,
        default=Path("/var/tmp"),
        help="where the journals go; must be a real disk (/var/tmp)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the state directory")


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    return in_fresh_directory(args.dir, "bench-tap-", args.keep, lambda root: _run(args, root))


def in_fresh_directory(parent: Path, prefix: str, keep: bool, body: Callable[[Path], int]) -> int:
    """Run `body` in a new directory on a real disk (never tmpfs), removed afterwards."""
    if fs_type(parent) in ("tmpfs", "ramfs"):
        print(f"{parent} is {fs_type(parent)}: fsync means nothing there", file=sys.stderr)
        return 2
    root = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
    try:
        return body(root)
    finally:
        if keep:
            print(f"state kept in {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)


def _run(args: argparse.Namespace, root: Path) -> int:
    info = machine(root)
    plan = Plan(args.taps, args.blocks, args.fsyncs, args.warmup, args.workers)
    print(
        f"in-process: {plan.warmup} warm-up taps, then {plan.blocks} blocks of"
        f" ~{plan.fsyncs // plan.blocks} fsyncs + ~{plan.taps // plan.blocks} taps, in {root}",
        flush=True,
    )
    (root / "inproc").mkdir()
    baseline, taps = run_in_process(root / "inproc", plan)
    sock = None
    if args.socket_taps > 0:
        print(
            f"daemon process: {args.socket_taps:,} socket taps (budget {args.socket_budget:.0f} s)",
            flush=True,
        )
        (root / "proc").mkdir()
        sock = run_daemon_process(root / "proc", args.socket_taps, args.workers, args.socket_budget)
    print_report(info, baseline, taps, sock)
    return 0


if __name__ == "__main__":
    sys.exit(main())
