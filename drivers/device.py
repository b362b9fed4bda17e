"""One thread per physical reader: open, read until it fails, close, back off, reopen.

Real readers get unplugged, stop answering, glitch. Every hardware driver is a
`DeviceReader`: it says how to open its device and how to read from an open one; this
module owns the thread, the reconnect loop with capped backoff, prompt stopping, and the
health the daemon reports (connected / reconnecting with the error / failed after
`failed_after` of being down, reconnect attempts continuing). Health changes are logged.
"""

from __future__ import annotations

import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

import structlog

from drivers.base import BadgeRead, OnRead, ReaderHealth, ReaderState

log = structlog.get_logger("drivers")

Handle = TypeVar("Handle")
STARTING = "starting"


def boottime_ns() -> int:
    return time.clock_gettime_ns(time.CLOCK_BOOTTIME)


@dataclass(frozen=True, slots=True)
class Backoff:
    """Reconnect delays: initial, doubled after each failed attempt, capped."""

    initial: float = 0.25
    maximum: float = 5.0

    def delay(self, failures: int) -> float:
        return float(min(self.maximum, self.initial * 2 ** max(0, failures - 1)))


class DeviceGoneError(Exception):
    """The device stopped answering or vanished; close it and reopen with backoff."""


class DeviceReader(ABC, Generic[Handle]):
    """Base of every hardware driver. Subclasses implement open/read_until_gone/close.

    `read_until_gone` blocks reading the open device and calls `self.emit(uid)` once per
    card presentation. It must return (or raise) within about `poll_interval` of
    `self.stopping` being set, and raise when the device fails.
    """

    technology: str = "unknown"
    poll_interval: float = 0.1

    def __init__(
        self,
        name: str,
        *,
        backoff: Backoff | None = None,
        failed_after: float = 60.0,
    ) -> None:
        self.name = name
        self._backoff = backoff or Backoff()
        self._failed_after_ns = int(failed_after * 1e9)
        self.stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._on_read: OnRead | None = None
        self._lock = threading.Lock()
        self._state = ReaderState.STOPPED
        self._error: str | None = None
        self._down_since_ns: int | None = None
        self._reads = 0
        self._bad_frames = 0
        self._failure_reported = False

    # -- what a driver implements -------------------------------------------------------

    @abstractmethod
    def open(self) -> Handle:
        """Open the device; raise (any exception) when it is absent or refuses."""

    @abstractmethod
    def read_until_gone(self, handle: Handle) -> None:
        """Read presentations from the open device until stopping is set or it fails."""

    @abstractmethod
    def close(self, handle: Handle) -> None:
        """Release the device; must not raise for a device that is already gone."""

    # -- what a driver calls ------------------------------------------------------------

    def emit(
        self, uid: str, monotonic_ns: int | None = None, *, technology: str | None = None
    ) -> None:
        """Hand one card presentation to the daemon (on this reader's thread)."""
        with self._lock:
            self._reads += 1
        assert self._on_read is not None
        technology = technology or self.technology
        self._on_read(BadgeRead(uid, self.name, technology, monotonic_ns or boottime_ns()))

    def count_bad_frame(self) -> None:
        with self._lock:
            self._bad_frames += 1

    # -- the Reader protocol --------------------------------------------------------------

    def start(self, on_read: OnRead) -> None:
        self._on_read = on_read
        self.stopping.clear()
        with self._lock:  # not yet connected, and nothing worth a log line
            self._state, self._error = ReaderState.RECONNECTING, STARTING
            self._down_since_ns = boottime_ns()
        self._thread = threading.Thread(target=self._run, name=f"reader-{self.name}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self.stopping.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        self._set_state(ReaderState.STOPPED, None)

    def health(self) -> ReaderHealth:
        with self._lock:
            state = self._state
            down_since = self._down_since_ns
            if (
                state is ReaderState.RECONNECTING
                and down_since is not None
                and boottime_ns() - down_since >= self._failed_after_ns
            ):
                state = ReaderState.FAILED
            return ReaderHealth(
                state=state,
                error=self._error,
                reads=self._reads,
                bad_frames=self._bad_frames,
                down_since_ns=down_since,
            )

    # -- the loop ---------------------------------------------------------------------------

    def _run(self) -> None:
        failures = 0
        while not self.stopping.is_set():
            was_connected = self._session()
            if self.stopping.is_set():
                return
            failures = 1 if was_connected else failures + 1
            self._report_failed_once()
            self.stopping.wait(self._backoff.delay(failures))

    def _session(self) -> bool:
        """One open-read-close cycle; returns whether the device was opened."""
        try:
            handle = self.open()
        except Exception as exc:
            self._set_state(ReaderState.RECONNECTING, _describe(exc))
            return False
        self._set_state(ReaderState.CONNECTED, None)
        error = "device stopped answering"
        try:
            self.read_until_gone(handle)
        except Exception as exc:
            error = _describe(exc)
        finally:
            _quietly(self.close, handle)
        if not self.stopping.is_set():
            self._set_state(ReaderState.RECONNECTING, error)
        return True

    def _report_failed_once(self) -> None:
        health = self.health()
        if health.state is ReaderState.FAILED and not self._failure_reported:
            self._failure_reported = True
            log.error(
                "reader failed",
                reader=self.name,
                error=health.error,
                down_since_ns=health.down_since_ns,
            )

    def _set_state(self, state: ReaderState, error: str | None) -> None:
        with self._lock:
            previous, previous_error = self._state, self._error
            down_since = self._down_since_ns
            self._state, self._error = state, error
            if state is ReaderState.CONNECTED or state is ReaderState.STOPPED:
                self._down_since_ns = None
            elif self._down_since_ns is None:
                self._down_since_ns = boottime_ns()
        if state is ReaderState.CONNECTED:
            self._failure_reported = False
            down_s = None if down_since is None else round((boottime_ns() - down_since) / 1e9, 1)
            log.info("reader connected", reader=self.name, down_seconds=down_s)
        elif state is ReaderState.RECONNECTING and previous is ReaderState.CONNECTED:
            log.warning("reader down", reader=self.name, error=error)
        elif state is ReaderState.RECONNECTING and previous_error == STARTING:
            log.warning("reader not available", reader=self.name, error=error)
        elif state is ReaderState.RECONNECTING and error != previous_error:
            log.info("reader still down", reader=self.name, error=error)
        elif state is ReaderState.STOPPED and previous is not ReaderState.STOPPED:
            log.info("reader stopped", reader=self.name)


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _quietly(close: Callable[[Handle], None], handle: Handle) -> None:
    try:
        close(handle)
    except Exception as exc:  # the device is gone already; nothing more to release
        log.debug("closing a reader failed", error=_describe(exc))
