"""Uplink drain benchmark (issue 3): backlog drain rate, taps during a drain, daemon memory.

Run from the repository root: `python -m bench.bench_drain [--backlog N] [--skip-slow-link]`.
It prints its figures and a table of targets; it is a measurement, not a test. One ONSS
simulator process (`onss_sim.testing.SimulatorProcess`, real HTTPS) serves the parts;
its registrations and request log are reset before each. It runs `--sim-nice` (19)
nicer: it stands in for a server elsewhere, whose CPU a real box does not share.

1. Backlog: a journal on a real disk filled once with N pending registrations (distinct
   workers, synchronised clock, the simulator's declaration and employer), closed, then
   copied for each part so that every part starts from the same file.
2. Drain: the real Uplink (`open_uplink`, as the daemon builds it, on a BackgroundLoop
   thread ten nicer, as the daemon runs it) delivers the backlog,
   `deliver_once` called (Uplink.run's loop without its idle sleep) until every
   registration pending at the start is acknowledged, with batch_size 50 (the default)
   and 200. Baseline: batch_size 1, one request per registration, for a sample, half
   before the drains and half after (the disk's fsync speed drifts). Every
   part checks that each registration is at the simulator exactly once, in journal
   order, with the id the journal stored, and that every request was answered 200.
3. Taps during the drain: a steady tap stream (a thread calling TapPipeline.handle, as a
   reader thread does, on the Journal object the uplink uses; pipeline built as
   Daemon._pipeline does): after one unmeasured tap per worker, a share of the idle
   taps, then taps during the batch-50 drain (the uplink is opened first, as at daemon
   start), then, the uplink stopped, another share of the idle taps. That drain runs
   `--tap-drains` (8) times on fresh copies of the backlog, so that idle and drain taps
   interleave and the p99 during drains rests on about as many taps as the idle one
   (one 20,000 drain lasts about 230 taps at 50 a second). Each tap's wait for a CPU
   comes from /proc/thread-self/schedstat. The taps' registrations queue behind the
   backlog and are delivered after the measured window. After each tapped drain (while
   `--probe-drains`, 8, last), the batch-50 drain again with, instead of taps, a raw
   write+fsync at the same rate from a separate process, idle before and after it for as
   long as the taps' idle shares last, then during it: what the disk alone does, in the
   same run and the same weather. The verdict on the taps (issue 14's restated target):
   tap p99 during / idle <= max(2, 1.25 x the raw fsync's p99 during / idle).
4. Memory: `python -m gateway --config FILE run` with the uplink enabled, started on a copy
   of the backlog; VmRSS sampled every 0.2 s until its status says the queue is empty.
5. Where the time goes: per request, the journal calls (wall time, fsyncs included), the
   benchmark process's CPU outside them, the simulator process's CPU, and the rest (time
   neither process was computing: waiting on the network stack).
6. Over a slower link: the drains and the baseline again, the simulator holding every
   request `--rtt-ms` (20) ms before answering (its latency fault): a stand-in for a
   building's 4G round trip, where a request's fixed cost is no longer only CPU.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from bench.bench_tap import (
    KIB,
    MB,
    StampingFeedback,
    add_directory_arguments,
    in_fresh_directory,
    load_average,
    machine,
    percentile,
    print_table,
    verdict,
    vm_kib,
)
from drivers.base import BadgeRead
from gateway.attendance import AttendanceRules, Register, Site
from gateway.badges import load_badge_register
from gateway.clock import Clock, boot_id, boottime_ns
from gateway.config import GatewayConfig, UplinkConfig
from gateway.identifiers import make_niss
from gateway.journal import Acknowledgement, Journal, Outbound, Rejection
from gateway.models import Capacity, ClockSample, Employer, Language, Registration, Worker
from gateway.system import logs
from gateway.system.background import BackgroundLoop, lower_priority
from gateway.tap import TapPipeline
from gateway.uplink import Uplink, open_uplink
from onss_sim.testing import SimulatorProcess
from tests.support import (
    EMPLOYER,
    DaemonProcess,
    badges,
    make_config,
    tap_read,
    write_badge_file,
    write_config,
)

RATIO_TARGET = 20.0
TAP_P99_RATIO_TARGET = 2.0  # tap p99 during a drain / idle, at most this...
DISK_RATIO_FACTOR = 1.25  # ...or at most this times the raw fsync's own ratio, if larger
RSS_TARGET = 80 * MB
RSS_SAMPLE_S = 0.2
DRAIN_BUDGET_S = 300.0
REPO = Path(__file__).resolve().parents[1]
CLOCK_TICK = os.sysconf("SC_CLK_TCK")
FSYNC_PROBE = """
import json, os, signal, sys, time
path, period = sys.argv[1], float(sys.argv[2])
stop = []
signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
samples, next_at = [], time.monotonic()
while not stop:
    time.sleep(max(0.0, next_at - time.monotonic()))
    next_at = max(next_at + period, time.monotonic())
    start = time.perf_counter_ns()
    os.write(fd, b"r" * 199 + b"\\n")
    os.fsync(fd)
    samples.append(time.perf_counter_ns() - start)
print(json.dumps(samples))
"""


# --- small measuring tools ---------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (all its threads), from /proc/PID/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICK


def ms(seconds: float) -> str:
    return f"{seconds * 1000:,.1f} ms"


def file_size(path: Path) -> int:
    return path.stat().st_size if path.exists() else 0


class TimedJournal(Journal):
    """The real Journal, timing the calls the uplink makes (wall and the calling thread's
    CPU) and counting requests (a mark_in_flight before each) and acknowledgements."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.wall_ns = 0
        self.cpu_ns = 0
        self.requests = 0
        self.acked = 0
        self.last_append_ns = 0  # the tap thread's last append_registration, lock wait included
        self.last_lock_wait_ns = 0  # of which waiting for the journal's lock

    def _add(self, wall_start: int, cpu_start: int) -> None:
        self.wall_ns += time.perf_counter_ns() - wall_start
        self.cpu_ns += time.thread_time_ns() - cpu_start

    def append_registration(self, reg: Registration) -> int:
        started = time.perf_counter_ns()
        try:
            with self._lock.for_the_door():  # as the append takes it, which then re-enters
                self.last_lock_wait_ns = time.perf_counter_ns() - started
                return super().append_registration(reg)
        finally:
            self.last_append_ns = time.perf_counter_ns() - started

    def pending(self, limit: int, after_seq: int = 0) -> list[Outbound]:
        wall, cpu = time.perf_counter_ns(), time.thread_time_ns()
        try:
            return super().pending(limit, after_seq)
        finally:
            self._add(wall, cpu)

    def mark_in_flight(self, seqs: Sequence[int]) -> None:
        wall, cpu = time.perf_counter_ns(), time.thread_time_ns()
        try:
            super().mark_in_flight(seqs)
        finally:
            self._add(wall, cpu)
        self.requests += 1

    def clear_in_flight(self, seqs: Sequence[int]) -> None:
        wall, cpu = time.perf_counter_ns(), time.thread_time_ns()
        try:
            super().clear_in_flight(seqs)
        finally:
            self._add(wall, cpu)

    def settle(self, acks: Sequence[Acknowledgement], rejections: Sequence[Rejection] = ()) -> None:
        wall, cpu = time.perf_counter_ns(), time.thread_time_ns()
        try:
            super().settle(acks, rejections)
        finally:
            self._add(wall, cpu)
        self.acked += len(acks)


# --- 1. the backlog ----------------------------------------------------------------------


def site_rules(config: GatewayConfig) -> AttendanceRules:
    site = config.site
    return AttendanceRules(
        site=Site(site.declaration, site.place_of_work, site.tz),
        mode=config.attendance.mode,
        debounce_ns=int(config.attendance.debounce_seconds * 1e9),
    )


def backlog_worker(index: int) -> Worker:
    """Distinct workers: 1,000 serial numbers per birth date, from 1 Jan 1960 on."""
    return Worker(
        badge_uid=f"05{index:06X}",
        niss=make_niss(f"{(60 + index // 1000) % 100:02d}0101", index % 1000),
        employer=Employer(enterprise_number=EMPLOYER),
        name=f"Backlog {index}",
        language=Language.FR,
        capacity=Capacity.EMPLOYEE,
    )


def make_backlog(path: Path, count: int, rules: AttendanceRules) -> float:
    """Fill a journal with `count` pending IN registrations, as taps make them; close it."""
    journal = Journal(path)
    started = time.perf_counter()
    try:
        for index in range(count):
            worker = backlog_worker(index)
            now = ClockSample(time.time_ns(), boottime_ns(), boot_id(), True)
            read = BadgeRead(worker.badge_uid, "backlog", "bench", now.monotonic_ns)
            decision = rules.decide(read, worker, None, now)
            assert isinstance(decision, Register)
            journal.append_registration(decision.registration)
        assert journal.stats().pending == count
    finally:
        journal.close()  # the last connection: SQLite checkpoints and removes the WAL
    return time.perf_counter() - started


def copy_backlog(backlog: Path, target: Path) -> Path:
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(backlog, target)
    target.chmod(0o600)
    return target


# --- 2. drains ---------------------------------------------------------------------------


@dataclass(slots=True)
class TapStream:
    latencies: list[int] = field(default_factory=list)
    appends: list[int] = field(default_factory=list)  # of which in append_registration
    run_queue: list[int] = field(default_factory=list)  # of which runnable, waiting for a CPU
    collecting: list[int] = field(default_factory=list)  # of which in a garbage collection
    lock_waits: list[int] = field(default_factory=list)  # of which for the journal's lock
    outcomes: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0


@dataclass(slots=True)
class DrainRun:
    label: str
    batch_size: int
    pending_before: int
    delivered: int = 0  # acknowledged within the measured window
    seconds: float = 0.0
    requests: int = 0
    journal_wall_s: float = 0.0
    journal_cpu_s: float = 0.0
    client_cpu_s: float = 0.0
    sim_cpu_s: float = 0.0
    wal_bytes_end: int = 0
    reached: bool = False
    problems: list[str] = field(default_factory=list)
    taps: TapStream | None = None
    fsync: FsyncSamples | None = None

    @property
    def rate(self) -> float:
        return self.delivered / self.seconds if self.seconds else 0.0

    def per_request(self, seconds: float) -> float:
        return seconds / self.requests if self.requests else 0.0

    @property
    def unaccounted_s(self) -> float:
        """Time neither process computed nor the journal ran: waiting on the network."""
        client_outside = self.client_cpu_s - self.journal_cpu_s
        return self.seconds - self.journal_wall_s - client_outside - self.sim_cpu_s


def combined(runs: Sequence[DrainRun], label: str) -> DrainRun:
    """Repeated drains of the same backlog as one run: their sums (taps are shared)."""
    if len(runs) == 1:
        return runs[0]
    first = runs[0]
    total = DrainRun(label, first.batch_size, sum(run.pending_before for run in runs))
    summed = ("delivered", "seconds", "requests", "journal_wall_s", "journal_cpu_s")
    for name in (*summed, "client_cpu_s", "sim_cpu_s"):
        setattr(total, name, sum(getattr(run, name) for run in runs))
    total.wal_bytes_end = max(run.wal_bytes_end for run in runs)
    total.reached = all(run.reached for run in runs)
    total.problems = [f"{run.label}: {problem}" for run in runs for problem in run.problems]
    total.taps, total.fsync = first.taps, first.fsync
    return total


def uplink_config(sim: SimulatorProcess, batch_size: int) -> UplinkConfig:
    return UplinkConfig(
        enabled=True,
        token_url=sim.token_url,
        base_url=sim.base_url,
        client_id=sim.client_id,
        private_key=str(sim.client_key_file),
        ca_file=sim.ca_file,
        batch_size=batch_size,
        type_values="upper" if sim.type_values == "upper" else "lower",
    )


class Companions:
    """What runs beside the measured drain window: started once the uplink is open (as in
    the daemon, where it opens at start-up), stopped as the window ends."""

    def __init__(self) -> None:
        self.begin: list[Callable[[], None]] = []
        self.end: list[Callable[[], None]] = []

    def start(self) -> None:
        while self.begin:
            self.begin.pop(0)()

    def stop(self) -> None:
        """Once: the first call runs them all."""
        while self.end:
            self.end.pop(0)()


async def drain(
    uplink: Uplink,
    http: httpx.AsyncClient,
    journal: TimedJournal,
    run: DrainRun,
    *,
    target: int,
    budget: float,
    sim_pid: int,
    companions: Companions,
) -> None:
    """deliver_once until `target` registrations are acknowledged (the queue is oldest
    first, so: the registrations pending at the start), or the budget is spent; the
    measured window ends there."""
    try:
        cpu0, sim0 = time.process_time(), cpu_seconds(sim_pid)
        started = time.perf_counter()
        while journal.acked < target and time.perf_counter() - started < budget:
            if not await uplink.deliver_once():
                break
        run.seconds = time.perf_counter() - started
        run.client_cpu_s = time.process_time() - cpu0
        run.sim_cpu_s = cpu_seconds(sim_pid) - sim0
        await asyncio.to_thread(companions.stop)
        run.reached = journal.acked >= target
        run.delivered, run.requests = journal.acked, journal.requests
        run.journal_wall_s, run.journal_cpu_s = journal.wall_ns / 1e9, journal.cpu_ns / 1e9
        run.wal_bytes_end = file_size(journal.path.with_name(journal.path.name + "-wal"))
    finally:
        await http.aclose()


async def deliver_rest(uplink: Uplink, http: httpx.AsyncClient) -> None:
    """Unmeasured: the registrations of the taps made during and after the window."""
    try:
        while await uplink.deliver_once():
            pass
    finally:
        await http.aclose()


def check_delivery(journal_path: Path, at_onss: list[dict[str, Any]], whole: bool) -> list[str]:
    """Each delivered registration at the ONSS exactly once, in journal order, with the id
    the journal stored; with `whole`, nothing left pending, nothing flagged or rejected."""
    conn = sqlite3.connect(journal_path)
    conn.row_factory = sqlite3.Row
    try:
        rows = conn.execute(
            "SELECT niss, direction, delivery, onss_id, possibly_duplicated,"
            " sent_registration_date FROM registration_rows ORDER BY seq"
        ).fetchall()
    finally:
        conn.close()
    problems = []
    states = Counter(row["delivery"] for row in rows)
    flagged = sum(row["possibly_duplicated"] for row in rows)
    if whole and states != Counter({"delivered": len(rows)}):
        problems.append(f"journal states {dict(states)}")
    if flagged:
        problems.append(f"{flagged} flagged possibly duplicated")
    sent = [row for row in rows if row["delivery"] == "delivered"]
    ids = [record["id"] for record in at_onss]
    if len(at_onss) != len(sent):
        problems.append(f"{len(at_onss)} at the ONSS for {len(sent)} delivered")
    if len(set(ids)) != len(ids) or ids != sorted(ids):
        problems.append("ONSS ids repeated or out of order")
    if [row["onss_id"] for row in sent] != ids:
        problems.append("journal onss_id != ONSS ids, in order")
    journal_items = [(row["niss"], row["direction"], row["sent_registration_date"]) for row in sent]
    onss_items = [
        (r["item"]["ssin"], r["item"]["type"].upper(), r["item"]["registrationDate"])
        for r in at_onss
    ]
    if journal_items != onss_items:
        problems.append("items differ from the journal's, in order")
    remarked = sum(1 for record in at_onss if record["remarks"])
    if remarked:
        problems.append(f"{remarked} with ONSS remarks")
    return problems


def check_requests(sim: SimulatorProcess, expected: int) -> list[str]:
    bulk = [r for r in sim.requests() if r["path"].endswith("/registerInBulk")]
    problems = []
    statuses = Counter(r["status"] for r in bulk)
    if statuses != Counter({200: len(bulk)}):
        problems.append(f"registerInBulk statuses {dict(statuses)}")
    if len(bulk) != expected:
        problems.append(f"{len(bulk)} registerInBulk requests at the ONSS, {expected} sent")
    return problems


def run_drain(
    sim: SimulatorProcess,
    state: Path,
    backlog: Path,
    label: str,
    batch_size: int,
    *,
    limit: int | None = None,
    budget: float = DRAIN_BUDGET_S,
    taps: TapSetup | None = None,
    probe: FsyncProbe | None = None,
    latency_s: float = 0.0,
) -> DrainRun:
    """One drain of a fresh copy of the backlog, with the tap stream or the fsync probe."""
    sim.reset()
    if latency_s:
        sim.add_faults({"kind": "latency", "seconds": latency_s, "times": 10**9})
    path = copy_backlog(backlog, state / "journal.db")
    (state / "synchronized").touch()
    journal = TimedJournal(path)
    clock = Clock(["timesyncd"], state / "synchronized")
    config = uplink_config(sim, batch_size)
    run = DrainRun(label, batch_size, 0)
    companions = Companions()
    background = BackgroundLoop("uplink")  # the uplink runs as in the daemon (gateway.daemon)
    background.start()
    try:
        if taps is not None:
            print(f"  {label}: {taps.idle_share} idle taps before and after", flush=True)
            run.taps = taps.idle_and_during(journal, companions)
        if probe is not None:
            print(f"  {label}: fsync probe, idle before and after", flush=True)
            run.fsync = probe.idle_and_during(state / "fsync-probe.bin", companions)
        run.pending_before = journal.stats().pending
        target = run.pending_before if limit is None else limit
        uplink, http = open_uplink(config, journal, clock)  # opened first, as at daemon start
        companions.start()  # from this thread: threads started on the uplink's are niced
        measured = drain(
            uplink,
            http,
            journal,
            run,
            target=target,
            budget=budget,
            sim_pid=sim.pid,
            companions=companions,
        )
        background.submit(measured).result()
        if taps is not None:  # the uplink has stopped: idle taps again
            taps.run(journal, taps.idle, threading.Event(), taps.idle_share)
        if probe is not None:  # the same for the fsync probe
            probe.idle(state / "fsync-probe.bin")
        if limit is None:
            background.submit(deliver_rest(*open_uplink(config, journal, clock))).result()
    finally:
        companions.stop()
        background.close()
        journal.close()
    run.problems = check_delivery(path, sim.registrations(), whole=limit is None)
    run.problems += check_requests(sim, journal.requests)
    if not run.reached:
        run.problems.append(f"{target:,} not delivered within {budget:.0f} s")
    print(
        f"  {label}: {run.delivered:,} in {run.seconds:.1f} s = {run.rate:,.0f}/s,"
        f" {run.requests:,} requests; check: {'; '.join(run.problems) or 'OK'}",
        flush=True,
    )
    return run


class FsyncProbe:
    """Raw write + fsync at a steady rate from a separate process (no GIL, no journal lock
    shared with the uplink) in the journal's directory: what the disk alone does to a
    commit's tail while the uplink commits beside it. Its samples are pooled over every
    probed drain, as the taps' are."""

    def __init__(self, rate: float, idle_seconds: float) -> None:
        self.period = 1.0 / rate
        self.idle_seconds = idle_seconds  # before and after each drain
        self.samples = FsyncSamples()

    def start(self, path: Path) -> subprocess.Popen[str]:
        command = [sys.executable, "-c", FSYNC_PROBE, str(path), str(self.period)]
        return subprocess.Popen(command, stdout=subprocess.PIPE, text=True)

    @staticmethod
    def stop(process: subprocess.Popen[str]) -> list[int]:
        process.send_signal(signal.SIGTERM)
        out, _ = process.communicate(timeout=30)
        samples: list[int] = json.loads(out)
        return samples

    def idle(self, path: Path) -> None:
        """One share of the idle samples: no drain, no uplink."""
        process = self.start(path)
        time.sleep(self.idle_seconds)
        self.samples.idle.extend(self.stop(process))

    def idle_and_during(self, path: Path, companions: Companions) -> FsyncSamples:
        """A share of the idle samples now; the probe during the drain set up to start and
        stop with the measured window. Returns the samples of every probed drain."""
        self.idle(path)
        during: list[subprocess.Popen[str]] = []
        companions.begin.append(lambda: during.append(self.start(path)))
        companions.end.append(lambda: self.samples.during.extend(self.stop(during.pop())))
        return self.samples


@dataclass(slots=True)
class FsyncSamples:
    idle: list[int] = field(default_factory=list)
    during: list[int] = field(default_factory=list)


# --- 3. the tap stream -------------------------------------------------------------------


class TapSetup:
    """Taps presented at a steady rate by one thread, as a reader thread does: the pipeline
    runs each on that thread; latency runs from the hand-over to the feedback call."""

    def __init__(
        self, config: GatewayConfig, rate: float, idle_taps: int, workers: int, drains: int
    ) -> None:
        self.config = config
        self.period = 1.0 / rate
        self.idle_share = max(1, idle_taps // (2 * drains))  # before and after each drain
        self.warmup = workers  # each worker once, unmeasured: the journal caches its last tap
        self.uids = [badge.uid for badge in badges(workers)]
        self.feedback = StampingFeedback()
        self.idle = TapStream()
        self.during = TapStream()  # over every drain with taps
        self._next = 0

    def pipeline(self, journal: Journal) -> TapPipeline:
        """As Daemon._pipeline builds it."""
        register = load_badge_register(self.config.badges.file)
        return TapPipeline(
            clock=Clock(self.config.clock.sources, self.config.clock.timesyncd_flag),
            badges=lambda: register,
            rules=site_rules(self.config),
            journal=journal,
            outputs=[self.feedback],
            site_language=self.config.site.language,
        )

    def idle_and_during(self, journal: TimedJournal, companions: Companions) -> TapStream:
        """Warm-up and a share of the idle taps now; the stream during the drain set up to
        start and stop with the measured window. Returns the stream of every drain's taps."""
        self.run(journal, TapStream(), threading.Event(), self.warmup)
        self.run(journal, self.idle, threading.Event(), self.idle_share)
        stop = threading.Event()
        thread = threading.Thread(target=self.run, args=(journal, self.during, stop, None))

        def end() -> None:
            stop.set()
            thread.join()

        companions.begin.append(thread.start)
        companions.end.append(end)
        return self.during

    def run(
        self, journal: TimedJournal, stream: TapStream, stop: threading.Event, count: int | None
    ) -> None:
        """`count` more taps into `stream` (None: until `stop`)."""
        pipeline = self.pipeline(journal)
        started = next_at = time.monotonic()
        end = None if count is None else len(stream.latencies) + count
        while not stop.is_set() and (end is None or len(stream.latencies) < end):
            delay = next_at - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            next_at = max(next_at + self.period, time.monotonic())
            read = tap_read(self.uids[self._next % len(self.uids)])
            self._next += 1
            journal.last_append_ns = journal.last_lock_wait_ns = 0
            waited, collected = run_queue_ns(), GC_PAUSES.total_ns
            sent = time.perf_counter_ns()
            outcome = pipeline.handle(read)
            stream.latencies.append(self.feedback.last_ns - sent)
            stream.run_queue.append(run_queue_ns() - waited)
            stream.collecting.append(GC_PAUSES.total_ns - collected)
            stream.appends.append(journal.last_append_ns)
            stream.lock_waits.append(journal.last_lock_wait_ns)
            stream.outcomes[outcome.kind.value] += 1
        stream.seconds += time.monotonic() - started


# --- 4. the daemon process ---------------------------------------------------------------


@dataclass(slots=True)
class DaemonRun:
    pending_before: int
    seconds: float = 0.0
    rss_start_kib: int = 0
    rss_max_kib: int = 0
    rss_end_kib: int = 0
    hwm_end_kib: int = 0
    samples: int = 0
    cpu_s: float = 0.0
    sim_cpu_s: float = 0.0
    wal_bytes_end: int = 0
    exit_code: int | None = None
    emptied: bool = False
    problems: list[str] = field(default_factory=list)
    trail: list[tuple[float, int, int]] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.pending_before / self.seconds if self.seconds else 0.0


def run_daemon(sim: SimulatorProcess, state: Path, backlog: Path, count: int) -> DaemonRun:
    sim.reset()
    state.mkdir(parents=True)
    write_badge_file(state / "badges.csv", badges(50)).chmod(0o600)
    journal = copy_backlog(backlog, state / "journal.db")
    (state / "synchronized").touch()
    uplink = {
        "enabled": True,
        "token_url": sim.token_url,
        "base_url": sim.base_url,
        "client_id": sim.client_id,
        "private_key": str(sim.client_key_file.resolve()),
        "ca_file": str(sim.ca_file.resolve()),
        "type_values": sim.type_values,
    }
    config = write_config(state, attendance={"debounce_seconds": 0}, uplink=uplink)
    daemon = DaemonProcess(config, state / "control.sock", state / "daemon.log")
    result = DaemonRun(count)
    sim0 = cpu_seconds(sim.pid)
    daemon.start()
    try:
        assert daemon.process is not None
        _sample_until_empty(daemon, daemon.process.pid, result)
        result.sim_cpu_s = cpu_seconds(sim.pid) - sim0
        result.wal_bytes_end = file_size(journal.with_name(journal.name + "-wal"))
    finally:
        result.exit_code = daemon.stop()
    result.problems = check_delivery(journal, sim.registrations(), whole=True)
    if not result.emptied:
        result.problems.append(f"queue not empty after {DRAIN_BUDGET_S:.0f} s")
    if result.exit_code != 0:
        result.problems.append(f"daemon exit code {result.exit_code}")
    print(
        f"  daemon: {count:,} in {result.seconds:.1f} s = {result.rate:,.0f}/s,"
        f" max VmRSS {result.rss_max_kib:,} KiB; check: {'; '.join(result.problems) or 'OK'}",
        flush=True,
    )
    return result


def _sample_until_empty(daemon: DaemonProcess, pid: int, result: DaemonRun) -> None:
    """VmRSS every RSS_SAMPLE_S, and the queue depth from the status command, until 0."""
    result.rss_start_kib = result.rss_max_kib = vm_kib(pid, "VmRSS")
    cpu0 = cpu_seconds(pid)
    started = next_at = time.perf_counter()
    while time.perf_counter() - started < DRAIN_BUDGET_S:
        next_at += RSS_SAMPLE_S
        time.sleep(max(0.0, next_at - time.perf_counter()))
        rss = vm_kib(pid, "VmRSS")
        result.rss_max_kib = max(result.rss_max_kib, rss)
        result.samples += 1
        status = daemon.request({"cmd": "status"})["status"]
        depth = int(status["journal"]["queue_depth"])
        result.trail.append((time.perf_counter() - started, rss, depth))
        if depth == 0:
            result.emptied = True
            break
    result.seconds = time.perf_counter() - started
    result.cpu_s = cpu_seconds(pid) - cpu0
    result.rss_end_kib = vm_kib(pid, "VmRSS")
    result.hwm_end_kib = vm_kib(pid, "VmHWM")


@dataclass(slots=True)
class Drains:
    baseline: DrainRun
    by_batch: list[DrainRun]
    probed: DrainRun | None = None  # the first batch size again, with the fsync probe
    latency_s: float = 0.0  # what the simulator added to each request


def run_drains(
    sim: SimulatorProcess,
    root: Path,
    backlog: Path,
    args: argparse.Namespace,
    tag: str,
    taps: TapSetup | None,
    probe: FsyncProbe | None,
    latency_s: float = 0.0,
) -> Drains:
    baseline = [run_baseline(sim, root, backlog, args, tag, 1, latency_s)]
    first, probed = run_alternating(sim, root, backlog, args, tag, taps, probe, latency_s)
    by_batch = [first]
    for batch_size in args.batch_sizes[1:]:
        state = root / f"{tag}drain-{batch_size}-0"
        label = f"{tag}drain, batch {batch_size}"
        by_batch.append(run_drain(sim, state, backlog, label, batch_size, latency_s=latency_s))
    baseline.append(run_baseline(sim, root, backlog, args, tag, 2, latency_s))
    return Drains(combined(baseline, f"{tag}baseline, batch 1"), by_batch, probed, latency_s)


def run_alternating(
    sim: SimulatorProcess,
    root: Path,
    backlog: Path,
    args: argparse.Namespace,
    tag: str,
    taps: TapSetup | None,
    probe: FsyncProbe | None,
    latency_s: float,
) -> tuple[DrainRun, DrainRun | None]:
    """The first batch size's drains: each with the taps followed by one with the fsync
    probe (while probe drains are left), so that the tap's ratio and the disk's own are
    measured in the same weather. Returns the tapped drains and the probed ones, each
    combined."""
    batch_size = args.batch_sizes[0]
    label = f"{tag}drain, batch {batch_size}"
    probe_label = f"{label}, fsync probe"
    tap_repeats = args.tap_drains if taps is not None else 1
    probe_repeats = args.probe_drains if probe is not None else 0
    tapped: list[DrainRun] = []
    probed: list[DrainRun] = []
    for index in range(max(tap_repeats, probe_repeats)):
        if index < tap_repeats:
            state = root / f"{tag}drain-{batch_size}-{index}"
            numbered = _numbered(label, index, tap_repeats)
            tapped.append(
                run_drain(sim, state, backlog, numbered, batch_size, taps=taps, latency_s=latency_s)
            )
        if index < probe_repeats:
            state = root / f"{tag}drain-{batch_size}-probe-{index}"
            numbered = _numbered(probe_label, index, probe_repeats)
            probed.append(
                run_drain(
                    sim, state, backlog, numbered, batch_size, probe=probe, latency_s=latency_s
                )
            )
    return combined(tapped, label), combined(probed, probe_label) if probed else None


def _numbered(label: str, index: int, repeats: int) -> str:
    return label if repeats == 1 else f"{label} ({index + 1}/{repeats})"


def run_baseline(
    sim: SimulatorProcess,
    root: Path,
    backlog: Path,
    args: argparse.Namespace,
    tag: str,
    half: int,
    latency_s: float,
) -> DrainRun:
    """Half of the baseline: one half before the drains and one after, so that a disk
    whose fsyncs speed up or slow down meanwhile weighs on both sides of the ratio."""
    return run_drain(
        sim,
        root / f"{tag}baseline-{half}",
        backlog,
        f"{tag}baseline, batch 1 ({half}/2)",
        1,
        limit=args.baseline // 2,
        budget=args.baseline_budget / 2,
        latency_s=latency_s,
    )


# --- the report --------------------------------------------------------------------------


Row = tuple[str, str, str, str]


def breakdown_rows(runs: Sequence[DrainRun]) -> list[tuple[str, ...]]:
    rows: list[tuple[str, ...]] = [
        (
            "run",
            "regs",
            "s",
            "regs/s",
            "requests",
            "wall/req",
            "journal/req",
            "client CPU/req",
            "sim CPU/req",
            "rest/req",
            "WAL at end",
        )
    ]
    for run in runs:
        rows.append(
            (
                run.label,
                f"{run.delivered:,}",
                f"{run.seconds:.1f}",
                f"{run.rate:,.0f}",
                f"{run.requests:,}",
                ms(run.per_request(run.seconds)),
                ms(run.per_request(run.journal_wall_s)),
                ms(run.per_request(run.client_cpu_s - run.journal_cpu_s)),
                ms(run.per_request(run.sim_cpu_s)),
                ms(run.per_request(run.unaccounted_s)),
                f"{run.wal_bytes_end / MB:.1f} MB",
            )
        )
    return rows


def print_columns(rows: Sequence[tuple[str, ...]]) -> None:
    widths = [max(len(row[col]) for row in rows) for col in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.rjust(width) for cell, width in zip(row, widths, strict=True)))


def drain_rows(drains: Drains, tag: str = "") -> list[Row]:
    base = drains.baseline
    rows: list[Row] = [
        (
            f"{tag}baseline, batch 1 ({base.delivered:,} regs)",
            f"{base.rate:,.1f} regs/s",
            "(baseline)",
            "",
        )
    ]
    for run in drains.by_batch:
        ratio = run.rate / base.rate if base.rate else 0.0
        rows.append(
            (
                f"{tag}drain, batch {run.batch_size} ({run.delivered:,} regs)",
                f"{run.rate:,.0f} regs/s",
                "",
                "",
            )
        )
        rows.append(
            (
                f"{tag}drain {run.batch_size} / baseline",
                f"{ratio:.1f}x",
                ">= 20x",
                verdict(ratio >= RATIO_TARGET),
            )
        )
    every = [base, *drains.by_batch, *([drains.probed] if drains.probed else [])]
    bad = [run.label for run in every if run.problems]
    rows.append(
        (
            f"{tag}at the ONSS exactly once, in order",
            f"{len(every) - len(bad)}/{len(every)} runs",
            "all",
            verdict(not bad),
        )
    )
    return rows


def p99_ratio(idle: Sequence[int], during: Sequence[int]) -> float:
    return percentile(during, 0.99) / percentile(idle, 0.99)


def disk_ratio(fsync: FsyncSamples | None) -> float | None:
    """The raw fsync's own p99 during / idle, if it was measured."""
    if fsync is None or not fsync.idle or not fsync.during:
        return None
    return p99_ratio(fsync.idle, fsync.during)


def tap_ratio_limit(disk: float | None) -> float:
    """Issue 14's target: tap p99 during / idle at most 2, or at most 1.25 times the disk's
    own ratio measured in the same run, whichever is larger (2 alone without a probe)."""
    if disk is None:
        return TAP_P99_RATIO_TARGET
    return max(TAP_P99_RATIO_TARGET, DISK_RATIO_FACTOR * disk)


def tap_verdict(idle: TapStream, during: TapStream, fsync: FsyncSamples | None) -> str:
    """One line: both ratios and the restated target's verdict."""
    ratio, disk = p99_ratio(idle.latencies, during.latencies), disk_ratio(fsync)
    limit = tap_ratio_limit(disk)
    how = "2x (no fsync probe)" if disk is None else f"max(2x, 1.25 x {disk:.2f}x)"
    return f"tap p99 during / idle {ratio:.2f}x <= {how} = {limit:.2f}x: {verdict(ratio <= limit)}"


def tap_rows(idle: TapStream, during: TapStream, fsync: FsyncSamples | None) -> list[Row]:
    ratio = p99_ratio(idle.latencies, during.latencies)
    disk = disk_ratio(fsync)
    limit = tap_ratio_limit(disk)
    target = f"<= {limit:.2f}x" + (" (2x; no probe)" if disk is None else " (max 2x, 1.25 disk)")
    return [
        (
            f"tap p50 / p99 / max idle ({len(idle.latencies):,})",
            _latencies(idle.latencies),
            "",
            "",
        ),
        (
            f"tap p50 / p99 / max during drain ({len(during.latencies):,})",
            _latencies(during.latencies),
            "",
            "",
        ),
        *(fsync_rows(fsync) if disk is not None and fsync is not None else []),
        ("tap p99 during / idle", f"{ratio:.2f}x", target, verdict(ratio <= limit)),
        ("  the same, against 2x alone", "", "<= 2x", verdict(ratio <= TAP_P99_RATIO_TARGET)),
        (
            "slowest 1% of taps: share in append (idle / drain)",
            f"{_append_share(idle):.0%} / {_append_share(during):.0%}",
            "",
            "",
        ),
        (
            "  of which waiting for the journal's lock (idle / drain)",
            f"{_slowest_share(idle, idle.lock_waits):.0%}"
            f" / {_slowest_share(during, during.lock_waits):.0%}",
            "",
            "",
        ),
        (
            "slowest 1% of taps: share waiting for a CPU (idle / drain)",
            f"{_slowest_share(idle, idle.run_queue):.0%}"
            f" / {_slowest_share(during, during.run_queue):.0%}",
            "",
            "",
        ),
        (
            "slowest 1% of taps: share in a garbage collection (idle / drain)",
            f"{_slowest_share(idle, idle.collecting):.0%}"
            f" / {_slowest_share(during, during.collecting):.0%}",
            "",
            "",
        ),
        (
            "tap mean wait for a CPU (idle / drain)",
            f"{mean_us(idle.run_queue):,.0f} / {mean_us(during.run_queue):,.0f} us",
            "",
            "",
        ),
    ]


def mean_us(values: Sequence[int]) -> float:
    return sum(values) / len(values) / 1000 if values else 0.0


class GcPauses:
    """The process's garbage collections, summed: whichever thread triggers one, every
    other thread waits for the GIL until it ends."""

    def __init__(self) -> None:
        self.total_ns = 0
        self._started = 0
        gc.callbacks.append(self._callback)

    def _callback(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.perf_counter_ns()
        else:
            self.total_ns += time.perf_counter_ns() - self._started


GC_PAUSES = GcPauses()


def run_queue_ns() -> int:
    """How long this thread has been runnable but waiting for a CPU (schedstat, field 2)."""
    with open("/proc/thread-self/schedstat", "rb") as stat:
        return int(stat.read().split()[1])


def _append_share(stream: TapStream) -> float:
    """In the slowest 1% of taps, the share of the latency spent in append_registration
    (waiting for the journal lock, the INSERT and its fsync)."""
    return _slowest_share(stream, stream.appends)


def _slowest_share(stream: TapStream, parts: Sequence[int]) -> float:
    """In the slowest 1% of taps, the share of the latency that `parts` (one per tap)
    accounts for. What neither the append nor the wait for a CPU explains is Python run
    outside the journal, or a wait for the GIL (a blocked thread is not runnable)."""
    pairs = sorted(zip(stream.latencies, parts, strict=True), reverse=True)
    slowest = pairs[: max(1, len(pairs) // 100)]
    return sum(part for _, part in slowest) / sum(latency for latency, _ in slowest)


def _latencies(values: Sequence[int]) -> str:
    p50, p99 = percentile(values, 0.50) / 1000, percentile(values, 0.99) / 1000
    return f"{p50:,.0f} / {p99:,.0f} / {max(values) / 1000:,.0f} us"


def fsync_rows(samples: FsyncSamples) -> list[Row]:
    ratio = p99_ratio(samples.idle, samples.during)
    return [
        (
            f"raw fsync, other process, idle ({len(samples.idle):,})",
            _latencies(samples.idle),
            "",
            "",
        ),
        (
            f"raw fsync, other process, during drain ({len(samples.during):,})",
            _latencies(samples.during),
            "",
            "",
        ),
        ("raw fsync p99 during / idle", f"{ratio:.2f}x", "(disk alone)", ""),
    ]


def daemon_rows(run: DaemonRun) -> list[Row]:
    return [
        ("daemon VmRSS at ready", f"{run.rss_start_kib * KIB / MB:.1f} MB", "", ""),
        (
            f"daemon max VmRSS ({run.samples} samples / {RSS_SAMPLE_S} s)",
            f"{run.rss_max_kib * KIB / MB:.1f} MB",
            "< 80 MB",
            verdict(run.rss_max_kib * KIB < RSS_TARGET),
        ),
        ("daemon VmHWM at end", f"{run.hwm_end_kib * KIB / MB:.1f} MB", "", ""),
        (
            f"daemon drain ({run.pending_before:,} regs, batch 50)",
            f"{run.rate:,.0f} regs/s in {run.seconds:.1f} s",
            "",
            "",
        ),
        (
            "daemon at the ONSS exactly once, in order",
            "; ".join(run.problems) or "yes",
            "",
            verdict(not run.problems),
        ),
    ]


def print_report(
    info: dict[str, str],
    drains: Drains,
    idle: TapStream,
    daemon: DaemonRun | None,
    slow_link: Drains | None,
) -> None:
    print("\n== machine")
    for key, value in info.items():
        print(f"{key:>13}: {value}")
    print(f"{'load at end':>13}: {load_average()}")
    runs = [*drains.by_batch, *([drains.probed] if drains.probed else []), drains.baseline]
    runs += [*slow_link.by_batch, slow_link.baseline] if slow_link else []
    print("\n== where the time goes, per registerInBulk request")
    print_columns(breakdown_rows(runs))
    print(
        "   journal = pending + mark_in_flight + settle (wall, fsyncs included);"
        " client CPU = this process outside them;\n   sim CPU = the simulator process;"
        " rest = wall - journal - client CPU - sim CPU (neither computing: waiting)"
    )
    for run in runs:
        if run.problems:
            print(f"   {run.label}: {'; '.join(run.problems)}")
    during = drains.by_batch[0].taps
    assert during is not None
    print(f"\n== taps: idle {dict(idle.outcomes)}, during the drain {dict(during.outcomes)}")
    if daemon is not None:
        print(
            f"== daemon: CPU {daemon.cpu_s:.1f} s, simulator CPU {daemon.sim_cpu_s:.1f} s"
            f" over {daemon.seconds:.1f} s; WAL at end {daemon.wal_bytes_end / MB:.1f} MB;"
            f" exit code {daemon.exit_code}"
        )
    print("\n== figures")
    fsync = drains.probed.fsync if drains.probed else None
    rows: list[Row] = [("figure", "measured", "target", "verdict")]
    rows += drain_rows(drains) + tap_rows(idle, during, fsync)
    rows += daemon_rows(daemon) if daemon is not None else []
    if slow_link is not None:
        rows += [
            (f"each request held {slow_link.latency_s * 1000:.0f} ms by the simulator", "", "", "")
        ]
        rows += drain_rows(slow_link, "  ")
    print_table(rows)
    print(f"\n== {tap_verdict(idle, during, fsync)}")


# --- main --------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.bench_drain",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--backlog", type=int, default=20_000, help="pending registrations (20,000)"
    )
    parser.add_argument(
        "--batch-sizes",
        type=int,
        nargs="+",
        default=[50, 200],
        help="drains to run; the taps run during the first (50 200)",
    )
    parser.add_argument(
        "--baseline", type=int, default=1_000, help="registrations sent one per request (1,000)"
    )
    parser.add_argument(
        "--baseline-budget", type=float, default=60.0, help="baseline stops after (60) s"
    )
    parser.add_argument("--tap-rate", type=float, default=50.0, help="taps per second (50)")
    parser.add_argument("--idle-taps", type=int, default=1_800, help="taps with no drain (1,800)")
    parser.add_argument(
        "--tap-drains",
        type=int,
        default=8,
        help="batch-50 drains with taps, each between idle taps (8)",
    )
    parser.add_argument("--workers", type=int, default=50, help="tapping workers, in turn (50)")
    parser.add_argument(
        "--probe-drains",
        type=int,
        default=8,
        help="batch-50 drains with the fsync probe, one after each tapped drain (8)",
    )
    parser.add_argument(
        "--probe-idle",
        type=float,
        default=None,
        help="idle fsync probe before and after each of its drains, s"
        " (default: as long as the taps' idle shares)",
    )
    parser.add_argument(
        "--skip-probe", action="store_true", help="no fsync-probe drain (the tap target is 2x)"
    )
    parser.add_argument("--skip-daemon", action="store_true", help="no daemon-process part")
    parser.add_argument(
        "--rtt-ms", type=float, default=20.0, help="the slow-link variant's delay (20) ms"
    )
    parser.add_argument("--skip-slow-link", action="store_true", help="no slow-link variant")
    parser.add_argument(
        "--sim-nice",
        type=int,
        default=19,
        help="nice increment for the simulator, a stand-in for a server elsewhere (19)",
    )
    parser.add_argument(
        "--switch-interval",
        type=float,
        default=None,
        help="the GIL's switch interval for this process, s (default: Python's, 0.005)",
    )
    add_directory_arguments(parser)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    return in_fresh_directory(args.dir, "bench-drain-", args.keep, lambda root: _run(args, root))


def _run(args: argparse.Namespace, root: Path) -> int:
    logs.configure(fmt="console", level="warning")
    if args.switch_interval is not None:
        sys.setswitchinterval(args.switch_interval)
    print(f"GIL switch interval {sys.getswitchinterval() * 1000:g} ms", flush=True)
    info = machine(root)
    started = time.perf_counter()
    (root / "taps").mkdir()
    config = make_config(root / "taps", badges(args.workers), attendance={"debounce_seconds": 0})
    config.badges.file.chmod(0o600)
    backlog = root / "backlog" / "journal.db"
    print(f"filling a journal with {args.backlog:,} pending registrations in {root}", flush=True)
    fill = make_backlog(backlog, args.backlog, site_rules(config))
    print(f"  {args.backlog:,} in {fill:.1f} s ({file_size(backlog) / MB:.1f} MB)", flush=True)
    taps = TapSetup(config, args.tap_rate, args.idle_taps, args.workers, args.tap_drains)
    daemon = slow_link = None
    with SimulatorProcess(root / "onss") as sim:
        print(f"simulator pid {sim.pid}: drains", flush=True)
        if args.sim_nice:
            print(f"  simulator niced by {args.sim_nice}", flush=True)
            for thread in Path(f"/proc/{sim.pid}/task").iterdir():
                lower_priority(int(thread.name), args.sim_nice)
        probe = None
        if not args.skip_probe and args.probe_drains > 0:
            probe_idle = args.probe_idle or taps.idle_share / args.tap_rate
            probe = FsyncProbe(args.tap_rate, probe_idle)
        drains = run_drains(sim, root, backlog, args, "", taps, probe)
        if not args.skip_daemon:
            print("daemon process", flush=True)
            daemon = run_daemon(sim, root / "daemon", backlog, args.backlog)
        if not args.skip_slow_link:
            print(f"slow link: every request held {args.rtt_ms:.0f} ms", flush=True)
            slow_link = run_drains(
                sim, root, backlog, args, "slow link ", None, None, args.rtt_ms / 1000
            )
    print_report(info, drains, taps.idle, daemon, slow_link)
    print(f"\nwhole run: {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
