"""The reader interface: every driver turns its hardware into BadgeRead values.

A driver knows nothing of workers, journals or the ONSS. It is started with a callback
that it calls once per card presentation, from the driver's own thread; the daemon runs
the whole tap (decision, journal commit, feedback) on that thread (docs/design.md, "The
path of one tap").
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, Protocol


@dataclass(frozen=True, slots=True)
class BadgeRead:
    """One presentation of one card to one reader."""

    uid: str
    reader: str
    technology: str
    monotonic_ns: int  # CLOCK_BOOTTIME when the card was read
    direction: Literal["IN", "OUT"] | None = None  # set by readers with IN/OUT keys


class ReaderState(enum.StrEnum):
    CONNECTED = "connected"
    RECONNECTING = "reconnecting"
    FAILED = "failed"
    STOPPED = "stopped"


@dataclass(frozen=True, slots=True)
class ReaderHealth:
    state: ReaderState
    error: str | None = None
    reads: int = 0
    bad_frames: int = 0
    down_since_ns: int | None = None  # CLOCK_BOOTTIME since when it is not connected


@dataclass(frozen=True, slots=True)
class DetectedDevice:
    """A reader found on this machine, as `badge-gateway readers list` shows it."""

    driver: str  # the config's driver = "..."
    path: str  # what to put in the config (port, path or device)
    description: str


@dataclass(frozen=True, slots=True)
class BadFrame:
    """Input a driver's parser dropped instead of reading a badge from it, and why: counted
    in the reader's health (`bad_frames`) and logged. `data` is the bytes dropped, where the
    input is bytes (a serial frame); dropped keystrokes leave it empty."""

    reason: str
    data: bytes = b""


OnRead = Callable[[BadgeRead], None]


class Reader(Protocol):
    name: str

    def start(self, on_read: OnRead) -> None:
        """Begin reading; call on_read for every card presentation, from any thread."""

    def stop(self) -> None:
        """Stop promptly and leave no thread behind."""

    def health(self) -> ReaderHealth: ...
