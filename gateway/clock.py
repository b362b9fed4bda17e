"""Time as evidence: wall time, CLOCK_BOOTTIME, boot id and whether the clock was synced.

"Synchronised" is read from the system, never guessed (DESIGN.md principle 4):
- systemd-timesyncd creates /run/systemd/timesync/synchronized once it has synced;
- the kernel's NTP state (adjtimex) says TIME_ERROR / STA_UNSYNC until some NTP daemon
  has disciplined the clock.
The clock counts as synchronised when any configured source says so.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import time
from collections.abc import Callable, Sequence
from functools import cache
from pathlib import Path
from typing import Any, Literal

from gateway.models import ClockSample

SyncSource = Literal["timesyncd", "kernel"]

BOOT_ID_PATH = Path("/proc/sys/kernel/random/boot_id")
_TIME_ERROR = 5
_STA_UNSYNC = 0x0040


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
def _adjtimex() -> Callable[[Any], int] | None:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    adjtimex: Callable[[Any], int] = ctypes.CDLL(name, use_errno=True).adjtimex
    return adjtimex


def kernel_synced() -> bool:
    """True when the kernel's NTP state says the clock is disciplined."""
    adjtimex = _adjtimex()
    if adjtimex is None:
        return False
    timex = _Timex()
    state = adjtimex(ctypes.byref(timex))
    return bool(state >= 0 and state != _TIME_ERROR and not timex.status & _STA_UNSYNC)


@cache
def boot_id() -> str:
    return BOOT_ID_PATH.read_text().strip()


def boottime_ns() -> int:
    return time.clock_gettime_ns(time.CLOCK_BOOTTIME)


class Clock:
    def __init__(self, sources: Sequence[SyncSource], timesyncd_flag: Path) -> None:
        self._sources = tuple(sources)
        self._timesyncd_flag = str(timesyncd_flag)

    def synced(self) -> bool:
        for source in self._sources:
            if source == "timesyncd" and os.path.exists(self._timesyncd_flag):
                return True
            if source == "kernel" and kernel_synced():
                return True
        return False

    def sample(self, at_monotonic_ns: int | None = None) -> ClockSample:
        """Now, or the moment `at_monotonic_ns` (CLOCK_BOOTTIME, in the past) of this boot."""
        wall_ns, monotonic_ns = time.time_ns(), boottime_ns()
        if at_monotonic_ns is not None:
            earlier = max(0, monotonic_ns - at_monotonic_ns)
            wall_ns, monotonic_ns = wall_ns - earlier, monotonic_ns - earlier
        return ClockSample(wall_ns, monotonic_ns, boot_id(), self.synced())
