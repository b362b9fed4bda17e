"""The uplink's loop: a thread of its own, at a lower CPU priority, that a daemon can stop."""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import threading

import pytest

from gateway.system.background import MAX_NICE, BackgroundLoop


def nice_of(thread_id: int) -> int:
    return os.getpriority(os.PRIO_PROCESS, thread_id)


def own_nice() -> int:
    return nice_of(threading.get_native_id())


def test_the_loop_and_the_threads_it_starts_run_ten_nicer() -> None:
    caller = own_nice()
    background = BackgroundLoop("uplink")
    background.start()
    try:

        async def nice_values() -> tuple[int, int]:
            return own_nice(), await asyncio.to_thread(own_nice)  # as the journal calls run

        on_loop, in_worker = background.submit(nice_values()).result(timeout=10)
    finally:
        background.close()
    assert on_loop == in_worker == background.nice == min(MAX_NICE, caller + 10)
    assert background.native_id != threading.get_native_id()
    assert own_nice() == caller  # the caller keeps its priority
    assert not background.alive


def test_the_nice_value_stops_at_19() -> None:
    started: list[BackgroundLoop] = []

    def start_from_a_nice_thread() -> None:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 15)
        background = BackgroundLoop("uplink")
        background.start()
        started.append(background)

    thread = threading.Thread(target=start_from_a_nice_thread)
    thread.start()
    thread.join(timeout=10)
    [background] = started
    try:
        assert background.nice == 19
    finally:
        background.close()


def test_close_cancels_what_still_runs_and_its_cleanup_runs_on_the_loop() -> None:
    background = BackgroundLoop("uplink")
    background.start()
    cleaned_up_on: list[int] = []

    async def forever() -> None:
        try:
            await asyncio.sleep(3600)
        finally:
            await asyncio.sleep(0)  # the cleanup may still await, as closing a client does
            cleaned_up_on.append(threading.get_native_id())

    future = background.submit(forever())
    background.close()
    assert cleaned_up_on == [background.native_id]
    assert future.cancelled()


def test_cancelling_the_future_cancels_the_coroutine() -> None:
    background = BackgroundLoop("uplink")
    background.start()
    cancelled = threading.Event()

    async def forever() -> None:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    future = background.submit(forever())
    try:
        future.cancel()
        assert cancelled.wait(timeout=10)
        with pytest.raises(concurrent.futures.CancelledError):
            future.result(timeout=10)
    finally:
        background.close()


def test_a_coroutine_s_error_comes_back_to_the_caller() -> None:
    background = BackgroundLoop("uplink")
    background.start()

    async def fails() -> None:
        raise ValueError("bad answer")

    try:
        with pytest.raises(ValueError, match="bad answer"):
            background.submit(fails()).result(timeout=10)
        assert background.alive  # one failed coroutine does not end the loop
    finally:
        background.close()
