"""Time as evidence: wall time, CLOCK_BOOTTIME, boot id and whether the clock was synced.

"Synchronised" is read from the system, never guessed (docs/design.md, "Principles"):
- systemd-timesyncd creates /run/systemd/timesync/synchronized once it has synced;
- the kernel's NTP state (clock_adjtime, as adjtimex(2) reads it) says TIME_ERROR /
  STA_UNSYNC until some NTP daemon has disciplined the clock.
The clock counts as synchronised when any configured source says so.

A source reads as synced, not synced, or unreadable: a sandbox that denies the system call
(EPERM, ENOSYS), a directory the daemon may not search (EACCES), no C library function.
An unreadable source counts as not synchronised and never raises: it is logged once, shown
by `status`, recorded once per run in the evidence (gateway.watch), and the finding is kept
for RETRY_NS, so that the tap path, which samples the clock on every tap, does not repeat
a failing system call each time.
"""

from __future__ import annotations

import ctypes
import enum
import errno
import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, Literal

import structlog

from gateway.errors import BootIdError
from gateway.models import ClockSample

log = structlog.get_logger("clock")

SyncSource = Literal["timesyncd", "kernel"]

BOOT_ID_PATH = Path("/proc/sys/kernel/random/boot_id")
RETRY_NS = 60 * 1_000_000_000  # an unreadable source is read again after this long
_TIME_ERROR = 5
_STA_UNSYNC = 0x0040


class SourceState(enum.Enum):
    SYNCED = "synced"
    NOT_SYNCED = "not synced"
    UNREADABLE = "unreadable"


@dataclass(frozen=True, slots=True)
class SourceReading:
    state: SourceState
    reason: str | None = None  # why the source is unreadable, as the system said it

    def as_json(self) -> dict[str, Any]:
        return {"state": self.state.value, "reason": self.reason}


SYNCED = SourceReading(SourceState.SYNCED)
NOT_SYNCED = SourceReading(SourceState.NOT_SYNCED)


def _unreadable(call: str, number: int | None) -> SourceReading:
    if not number:
        return SourceReading(SourceState.UNREADABLE, f"{call}: failed, no error number")
    name = errno.errorcode.get(number, f"errno {number}")
    return SourceReading(SourceState.UNREADABLE, f"{call}: {os.strerror(number)} ({name})")


class _Timex(ctypes.Structure):
    """struct timex from <sys/timex.h> (Linux, glibc), used read-only (modes = 0)."""

    _fields_ = [
        ("modes", ctypes.c_uint),
        ("offset", ctypes.c_long),
        ("freq", ctypes.c_long),
        ("maxerror", ctypes.c_long),
        ("esterror", ctypes.c_long),
        ("status", ctypes.c_int),
        ("constant", ctypes.c_long),
        ("precision", ctypes.c_long),
        ("tolerance", ctypes.c_long),
        ("time_sec", ctypes.c_long),
        ("time_usec", ctypes.c_long),
        ("tick", ctypes.c_long),
        ("ppsfreq", ctypes.c_long),
        ("jitter", ctypes.c_long),
        ("shift", ctypes.c_int),
        ("stabil", ctypes.c_long),
        ("jitcnt", ctypes.c_long),
        ("calcnt", ctypes.c_long),
        ("errcnt", ctypes.c_long),
        ("stbcnt", ctypes.c_long),
        ("tai", ctypes.c_int),
        ("_reserved", ctypes.c_int * 11),
    ]


@cache
def _clock_adjtime() -> Callable[[int, Any], int] | str:
    """The C library's clock_adjtime, or why it cannot be had. Looked up among the symbols
    the process already has (the C library Python runs on): no ldconfig run, no file read.

    clock_adjtime, not adjtimex: glibc 2.32 and later implement adjtimex with this system
    call anyway (clock_adjtime64 on 32-bit ARM), and calling it by name makes the system
    call the unit's filter must allow the one the code names."""
    try:
        function: Callable[[int, Any], int] = ctypes.CDLL(None, use_errno=True).clock_adjtime
    except (OSError, AttributeError) as error:
        return f"clock_adjtime: not found in the C library ({error})"
    return function


def read_kernel() -> SourceReading:
    """The kernel's NTP state: clock_adjtime(CLOCK_REALTIME) with modes = 0, a pure read.
    Changing the clock would need CAP_SYS_TIME, which the daemon never has."""
    function = _clock_adjtime()
    if isinstance(function, str):
        return SourceReading(SourceState.UNREADABLE, function)
    timex = _Timex()
    state = function(time.CLOCK_REALTIME, ctypes.byref(timex))
    if state < 0:
        return _unreadable("clock_adjtime", ctypes.get_errno())
    return NOT_SYNCED if state == _TIME_ERROR or timex.status & _STA_UNSYNC else SYNCED


def read_flag(path: str) -> SourceReading:
    """timesyncd's flag file: there, synced; absent, not synced; unreachable, unreadable
    (os.path.exists would say "absent" for a directory the daemon may not search)."""
    try:
        os.stat(path)
    except FileNotFoundError:
        return NOT_SYNCED
    except OSError as error:
        return _unreadable(f"stat {path}", error.errno)
    return SYNCED


@cache
def boot_id() -> str:
    try:
        text = BOOT_ID_PATH.read_text().strip()
    except OSError as error:
        raise BootIdError(
            f"the kernel's boot id cannot be read ({BOOT_ID_PATH}: {error.strerror or error}):"
            " every registration and evidence entry records it, so the daemon does not start"
            " without it (under systemd, /proc/sys must stay visible: no ProcSubset=pid)"
        ) from error
    if not text:
        raise BootIdError(f"the kernel's boot id is empty ({BOOT_ID_PATH})")
    return text


def boottime_ns() -> int:
    return time.clock_gettime_ns(time.CLOCK_BOOTTIME)


class _Source:
    """One configured source, read through `probe`. Taps read it from reader threads, the
    evidence watch and `status` from others: the common path takes no lock; a finding of
    "unreadable", or the end of one, takes it, so that each is logged once."""

    def __init__(self, name: SyncSource, probe: Callable[[], SourceReading]) -> None:
        self.name = name
        self._probe = probe
        self._lock = threading.Lock()
        self._kept: SourceReading | None = None  # an unreadable finding, until _retry_ns
        self._retry_ns = 0
        self.first_unreadable: SourceReading | None = None  # in this run, for the evidence

    def read(self, now_ns: int) -> SourceReading:
        kept = self._kept
        if kept is not None and now_ns < self._retry_ns:
            return kept
        reading = self._probe()
        if reading.state is SourceState.UNREADABLE or kept is not None:
            self._settle(reading, now_ns)
        return reading

    def _settle(self, reading: SourceReading, now_ns: int) -> None:
        unreadable = reading.state is SourceState.UNREADABLE
        with self._lock:
            was, first = self._kept, self.first_unreadable is None
            if unreadable:
                self._kept, self._retry_ns = reading, now_ns + RETRY_NS
                if first:
                    self.first_unreadable = reading
            else:
                self._kept = None
        if unreadable and first:
            log.error(
                "clock source unreadable: treated as not synchronised",
                source=self.name,
                reason=reading.reason,
                retry_seconds=RETRY_NS // 1_000_000_000,
            )
        elif not unreadable and was is not None:
            log.info("clock source readable again", source=self.name, state=reading.state.value)


class Clock:
    def __init__(self, sources: Sequence[SyncSource], timesyncd_flag: Path) -> None:
        flag = str(timesyncd_flag)
        probes: dict[SyncSource, Callable[[], SourceReading]] = {
            "timesyncd": lambda: read_flag(flag),
            "kernel": read_kernel,
        }
        self._sources = tuple(_Source(name, probes[name]) for name in sources)

    def synced(self, now_ns: int | None = None) -> bool:
        """Whether a source says synced, reading them in order until one does (the tap
        path: the same system calls as ever, none for a source found unreadable)."""
        now_ns = boottime_ns() if now_ns is None else now_ns
        return any(source.read(now_ns).state is SourceState.SYNCED for source in self._sources)

    def readings(self, now_ns: int | None = None) -> dict[str, SourceReading]:
        """Every source's state, in the configured order (status, the evidence watch)."""
        now_ns = boottime_ns() if now_ns is None else now_ns
        return {source.name: source.read(now_ns) for source in self._sources}

    def unreadable(self, now_ns: int | None = None) -> dict[str, SourceReading]:
        """Each source found unreadable at some point of this run, with that first finding.
        Reads every source first, so that one `synced` never needed is found too."""
        self.readings(now_ns)
        return {
            source.name: source.first_unreadable
            for source in self._sources
            if source.first_unreadable is not None
        }

    def sample(self, at_monotonic_ns: int | None = None) -> ClockSample:
        """Now, or the moment `at_monotonic_ns` (CLOCK_BOOTTIME, in the past) of this boot."""
        wall_ns, monotonic_ns = time.time_ns(), boottime_ns()
        synced = self.synced(monotonic_ns)
        if at_monotonic_ns is not None:
            earlier = max(0, monotonic_ns - at_monotonic_ns)
            wall_ns, monotonic_ns = wall_ns - earlier, monotonic_ns - earlier
        return ClockSample(wall_ns, monotonic_ns, boot_id(), synced)
