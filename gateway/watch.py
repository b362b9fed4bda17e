"""What the evidence log must record that no tap or request reports: readers going down and
coming back, the clock losing or regaining synchronisation or jumping, a clock source that
cannot be read (once per run), and the heartbeat that bounds a power cut. One asyncio task
polls them about once a second; each change is one entry (docs/evidence.md), written on a
worker thread. The same task applies the retention once a day.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import structlog

from drivers.base import Reader, ReaderState
from gateway.clock import SourceReading
from gateway.errors import StorageError
from gateway.evidence import Kind
from gateway.journal import EvidenceSink
from gateway.models import ClockSample

log = structlog.get_logger("evidence")

POLL_SECONDS = 1.0
JUMP_NS = 2_000_000_000  # the wall clock moved this much against the monotonic clock
HEAD_LOG_SECONDS = 3600.0
RETAIN_EVERY_SECONDS = 86_400.0
FIRST_RETAIN_SECONDS = 60.0  # not during start-up
BUDGET_FILL = 0.9  # of [storage] max_size_mb: prune younger delivered ones too
DAY_NS = 86_400 * 1_000_000_000

Change = tuple[Kind, dict[str, Any]]


@dataclass(slots=True)
class WatchState:
    """What was last seen, to tell a change from more of the same."""

    readers: dict[str, ReaderState] = field(default_factory=dict)
    down_since: dict[str, int] = field(default_factory=dict)  # CLOCK_BOOTTIME, per reader
    synced: bool | None = None
    offset_ns: int | None = None  # wall minus monotonic, for jumps
    unreadable_recorded: set[str] = field(default_factory=set)  # clock sources, this run


def reader_changes(readers: Sequence[Reader], state: WatchState, now: ClockSample) -> list[Change]:
    changes: list[Change] = []
    for reader in readers:
        health = reader.health()
        before = state.readers.get(reader.name)
        state.readers[reader.name] = health.state
        if health.down_since_ns is not None:
            state.down_since[reader.name] = health.down_since_ns
        if health.state is before:
            continue
        if health.state is ReaderState.CONNECTED:
            down_since = state.down_since.pop(reader.name, None)
            down = None if down_since is None else round((now.monotonic_ns - down_since) / 1e9, 1)
            changes.append((Kind.READER_CONNECTED, {"reader": reader.name, "down_seconds": down}))
        elif health.state is ReaderState.FAILED:
            down_since_ns = health.down_since_ns
            since = None if down_since_ns is None else now.wall_at(down_since_ns)
            failed = {"reader": reader.name, "error": health.error, "down_since_wall_ns": since}
            changes.append((Kind.READER_FAILED, failed))
    return changes


def clock_changes(state: WatchState, now: ClockSample, source: str) -> list[Change]:
    changes: list[Change] = []
    if state.synced is not None and now.synced != state.synced:
        kind = Kind.CLOCK_SYNCED if now.synced else Kind.CLOCK_LOST
        changes.append((kind, {"source": source}))
    state.synced = now.synced
    offset = now.wall_ns - now.monotonic_ns
    if state.offset_ns is not None and abs(offset - state.offset_ns) > JUMP_NS:
        changes.append((Kind.CLOCK_JUMPED, {"correction_ns": offset - state.offset_ns}))
    state.offset_ns = offset
    return changes


def source_changes(state: WatchState, unreadable: Mapping[str, SourceReading]) -> dict[str, Change]:
    """One entry per clock source the first time it is found unreadable in this run (the
    caller notes it recorded once written: a failed write is tried again)."""
    return {
        name: (Kind.CLOCK_SOURCE_UNREADABLE, {"source": name, "reason": reading.reason})
        for name, reading in unreadable.items()
        if name not in state.unreadable_recorded
    }


class EvidenceWatch:
    def __init__(
        self,
        journal: EvidenceSink,
        readers: Sequence[Reader],
        clock: Callable[[], ClockSample],
        *,
        heartbeat_seconds: float,
        clock_source: str,
        retention: Retention,
        unreadable_sources: Callable[[], Mapping[str, SourceReading]] = dict,
    ) -> None:
        self._journal = journal
        self._readers = readers
        self._clock = clock
        self._heartbeat_s = heartbeat_seconds
        self._clock_source = clock_source
        self._retention = retention
        self._unreadable_sources = unreadable_sources
        self.state = WatchState()

    async def run(self) -> None:
        last_beat = last_head = time.monotonic()
        next_retain = time.monotonic() + FIRST_RETAIN_SECONDS
        while True:
            await asyncio.sleep(POLL_SECONDS)
            try:
                await asyncio.to_thread(self.check_once)
                if time.monotonic() - last_beat >= self._heartbeat_s:
                    await asyncio.to_thread(self._journal.heartbeat)
                    last_beat = time.monotonic()
                if time.monotonic() >= next_retain:
                    next_retain = time.monotonic() + RETAIN_EVERY_SECONDS
                    await asyncio.to_thread(self._retention.apply, self._journal, self._clock())
            except StorageError as error:  # the tap path says it louder; try again later
                log.warning("evidence not written", error=str(error))
            if time.monotonic() - last_head >= HEAD_LOG_SECONDS:
                log_head(self._journal)
                last_head = time.monotonic()

    def check_once(self) -> None:
        now = self._clock()
        changes = reader_changes(self._readers, self.state, now)
        changes += clock_changes(self.state, now, self._clock_source)
        for kind, details in changes:
            self._journal.record(kind, details, now)
            level = log.info if kind in (Kind.READER_CONNECTED, Kind.CLOCK_SYNCED) else log.warning
            level("evidence: " + kind.value, **details)
        for name, (kind, details) in source_changes(self.state, self._unreadable_sources()).items():
            self._journal.record(kind, details, now)  # the clock logged it when it found it
            self.state.unreadable_recorded.add(name)


@dataclass(frozen=True, slots=True)
class Retention:
    days: int
    max_size_mb: int | None = None
    sign: Callable[[dict[str, Any]], dict[str, Any]] | None = None

    def apply(self, journal: EvidenceSink, now: ClockSample) -> int:
        """Prune what is older than the retention, then, if the journal nears its disk
        budget, the oldest delivered registrations whatever their age. Returns how many."""
        if not now.synced:  # an unsynchronised clock could make recent taps look old
            return 0
        pruned = journal.prune(now.wall_ns - self.days * DAY_NS, sign=self.sign)
        if pruned:
            log.info("retention: delivered registrations pruned", pruned=pruned, days=self.days)
        if self.max_size_mb is not None and journal.size_bytes() > (
            BUDGET_FILL * self.max_size_mb * 1024 * 1024
        ):
            forced = journal.prune(now.wall_ns, limit=5_000, sign=self.sign)
            log.warning(
                "disk budget nearly spent: delivered registrations pruned before their time",
                pruned=forced,
                max_size_mb=self.max_size_mb,
            )
            pruned += forced
        return pruned


def log_head(journal: EvidenceSink) -> None:
    """An anchor outside the box: whoever keeps the log lines can check the chain later."""
    head = journal.evidence_head
    log.info("evidence head", seq=head.seq, hash=head.hash, wall_ns=head.wall_ns)
