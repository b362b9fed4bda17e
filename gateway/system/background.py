"""An event loop on a thread of its own, at a lower CPU priority: for work that must never
delay a tap, such as the uplink draining a backlog.

A tap runs on its reader's thread and is mostly CPU (its SQL, its evidence hash) around
one fsync. When the uplink competes for the same cores, the scheduler hands them out
fairly, and a tap waits behind a batch being encoded. With the uplink's thread niced, the
kernel runs the tap first and the uplink takes what is left (docs/benchmarks.md, "Uplink
drain, fifth run": a tap's mean wait for a CPU during a drain, 0.74-0.79 ms before,
0.49-0.55 ms after). Threads started from the loop's thread, such as its default executor's
(`asyncio.to_thread`), inherit the nice value, so the uplink's journal calls yield too.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

import structlog

log = structlog.get_logger("background")
T = TypeVar("T")

NICE_INCREMENT = 10  # CFS weight 110 against a tap's 1024: about a tenth of a contested core
MAX_NICE = 19


class BackgroundLoop:
    """`start`, then `submit` coroutines from any thread; `close` cancels what still runs
    (each coroutine's `finally` runs on the loop) and joins the thread."""

    def __init__(self, name: str, nice_increment: int = NICE_INCREMENT) -> None:
        self.name = name
        self._nice_increment = nice_increment
        self._thread = threading.Thread(target=self._main, name=name, daemon=True)
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self.native_id: int | None = None
        self.nice: int | None = None  # the loop thread's, once started

    def start(self) -> None:
        self._thread.start()
        self._ready.wait()

    def submit(self, coroutine: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        """Run `coroutine` on the loop. Cancelling the returned future cancels it there."""
        assert self._loop is not None, "start() first"
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def close(self) -> None:
        if self._loop is not None and self._stop is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join()

    def _main(self) -> None:
        self.native_id = threading.get_native_id()
        try:
            self.nice = lower_priority(self.native_id, self._nice_increment)
        except OSError as error:  # refused by a sandbox: taps slower during a drain, no more
            log.warning("cannot lower the CPU priority", thread=self.name, error=str(error))
        try:
            asyncio.run(self._serve())  # on return, cancels and awaits the tasks left
        finally:
            self._ready.set()  # never leave start() waiting

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        self._ready.set()
        await self._stop.wait()


def lower_priority(thread_id: int, increment: int) -> int:
    """Raise a thread's nice value by `increment`; returns the new value. Lowering one's
    own priority needs no privilege, but a seccomp filter may deny the system call
    (systemd/badge-gateway.service allows it)."""
    nice = min(MAX_NICE, os.getpriority(os.PRIO_PROCESS, thread_id) + increment)
    os.setpriority(os.PRIO_PROCESS, thread_id, nice)
    return nice
