"""A reader with no hardware: it presents a scripted list of cards, for demos and tests."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from drivers.base import BadgeRead, OnRead, ReaderHealth, ReaderState


@dataclass(frozen=True, slots=True)
class ScriptedTap:
    uid: str
    after_seconds: float = 1.0
    direction: Literal["IN", "OUT"] | None = None


class SimulatedReader:
    technology = "simulated"

    def __init__(self, name: str, taps: Sequence[ScriptedTap], start_delay: float = 0.0) -> None:
        self.name = name
        self._taps = tuple(taps)
        self._start_delay = start_delay
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._reads = 0
        self._state = ReaderState.STOPPED

    def start(self, on_read: OnRead) -> None:
        self._state = ReaderState.CONNECTED
        self._thread = threading.Thread(
            target=self._run, args=(on_read,), name=f"reader-{self.name}", daemon=True
        )
        self._thread.start()

    def _run(self, on_read: OnRead) -> None:
        if self._stop.wait(self._start_delay):
            return
        for tap in self._taps:
            if self._stop.wait(tap.after_seconds):
                return
            self._reads += 1
            on_read(
                BadgeRead(
                    uid=tap.uid,
                    reader=self.name,
                    technology=self.technology,
                    monotonic_ns=time.clock_gettime_ns(time.CLOCK_BOOTTIME),
                    direction=tap.direction,
                )
            )

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self._state = ReaderState.STOPPED

    def health(self) -> ReaderHealth:
        return ReaderHealth(state=self._state, reads=self._reads)
