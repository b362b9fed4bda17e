"""The clock's sync sources: synced, not synced, or unreadable (a sandbox's EPERM or ENOSYS,
a directory the daemon may not search, no C library function). Unreadable counts as not
synchronised, never raises, and is reported once: `status`, one evidence entry, one log
line; the tap path does not repeat the failing call on every tap. And what a sample holds:
wall time, boot time and this boot's id."""

from __future__ import annotations

import asyncio
import ctypes
import errno
import io
import json
import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from gateway import clock, control
from gateway.cli.render import render_status
from gateway.clock import (
    RETRY_NS,
    Clock,
    SourceState,
    boot_id,
    boottime_ns,
    read_flag,
    read_kernel,
)
from gateway.daemon import Daemon
from gateway.evidence import entries, verify_journal
from gateway.system import logs
from tests.support import badges, make_config, run, tap_read, with_daemon

UNREADABLE_LOG = "clock source unreadable: treated as not synchronised"
EPERM_REASON = "clock_adjtime: Operation not permitted (EPERM)"


class FakeClockAdjtime:
    """Stands in for the C library's clock_adjtime, the ctypes function (the narrowest
    boundary): fails with `error` as a seccomp filter makes it fail, or, with no error,
    reports the kernel's NTP status `status` (0: synchronised). Counts its calls."""

    def __init__(self, error: int | None) -> None:
        self.error = error
        self.status = 0
        self.calls = 0

    def __call__(self, clock_id: int, timex: Any) -> int:
        self.calls += 1
        if self.error is not None:
            ctypes.set_errno(self.error)  # what ctypes' use_errno=True hands get_errno
            return -1
        timex._obj.status = self.status  # timex is ctypes.byref(_Timex())
        return 0


@pytest.fixture
def denied(monkeypatch: pytest.MonkeyPatch) -> FakeClockAdjtime:
    fake = FakeClockAdjtime(errno.EPERM)
    monkeypatch.setattr(clock, "_clock_adjtime", lambda: fake)
    return fake


@contextmanager
def log_lines() -> Iterator[list[dict[str, Any]]]:
    """The log lines written meanwhile, decoded (JSON)."""
    stream = io.StringIO()
    lines: list[dict[str, Any]] = []
    logs.configure(fmt="json", stream=stream)
    try:
        yield lines
    finally:
        logs.configure(fmt="json")
        lines.extend(json.loads(line) for line in stream.getvalue().splitlines())


def test_clock_synced_from_the_timesyncd_flag(tmp_path: Path) -> None:
    flag = tmp_path / "synchronized"
    clock = Clock(["timesyncd"], flag)
    assert clock.sample().synced is False
    flag.touch()
    assert clock.sample().synced is True
    assert Clock([], flag).synced() is False


def test_clock_sample_is_wall_boottime_and_this_boot() -> None:
    sample = Clock([], Path("/nonexistent")).sample()
    assert sample.boot_id == Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    assert sample.boot_id == boot_id()
    assert abs(sample.wall_ns - time.time_ns()) < 1_000_000_000
    assert 0 <= boottime_ns() - sample.monotonic_ns < 1_000_000_000


def test_the_kernel_source_reads_this_machines_ntp_state() -> None:
    """The real call, as the daemon makes it: synced or not, never unreadable here."""
    assert callable(clock._clock_adjtime())
    assert read_kernel().state in (SourceState.SYNCED, SourceState.NOT_SYNCED)


def test_a_kernel_source_the_sandbox_denies_is_unreadable_and_not_synchronised(
    denied: FakeClockAdjtime,
) -> None:
    with log_lines() as lines:
        kernel = Clock(["kernel"], Path("/nonexistent"))
        taps = [kernel.sample(at_monotonic_ns=boottime_ns()) for _ in range(200)]
        reading = kernel.readings()["kernel"]
    assert not any(sample.synced for sample in taps)
    assert denied.calls == 1  # the finding is kept: no failing system call per tap
    assert reading.state is SourceState.UNREADABLE
    assert reading.reason == EPERM_REASON
    assert reading.as_json() == {"state": "unreadable", "reason": EPERM_REASON}
    [line] = lines
    assert line["event"] == UNREADABLE_LOG
    assert line["source"] == "kernel" and line["reason"] == EPERM_REASON
    assert line["level"] == "error"


def test_an_unreadable_source_is_read_again_after_a_while_and_reported_once_per_run(
    denied: FakeClockAdjtime,
) -> None:
    denied.error = errno.ENOSYS  # a kernel or libc without the call
    kernel, now = Clock(["kernel"], Path("/nonexistent")), boottime_ns()
    with log_lines() as lines:
        assert kernel.synced(now) is False
        assert kernel.synced(now + RETRY_NS - 1) is False
        assert denied.calls == 1
        denied.error = None  # the sandbox was fixed, or it was transient
        assert kernel.synced(now + RETRY_NS) is True
        assert denied.calls == 2
        assert kernel.readings(now + RETRY_NS)["kernel"].state is SourceState.SYNCED
        denied.status = 0x0040  # STA_UNSYNC
        assert kernel.readings(now + RETRY_NS)["kernel"].state is SourceState.NOT_SYNCED
        denied.error = errno.EPERM  # and unreadable again: no second report in this run
        assert kernel.synced(now + RETRY_NS + 1) is False
    assert [line["event"] for line in lines] == [UNREADABLE_LOG, "clock source readable again"]
    first = kernel.unreadable()["kernel"]
    assert first.reason == "clock_adjtime: Function not implemented (ENOSYS)"


def test_a_c_library_without_clock_adjtime_is_unreadable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(clock, "_clock_adjtime", lambda: "clock_adjtime: not found (test)")
    reading = Clock(["kernel"], Path("/nonexistent")).readings()["kernel"]
    assert reading.state is SourceState.UNREADABLE
    assert reading.reason == "clock_adjtime: not found (test)"


def test_one_readable_source_that_says_synced_is_enough(
    denied: FakeClockAdjtime, tmp_path: Path
) -> None:
    flag = tmp_path / "synchronized"
    both = Clock(["kernel", "timesyncd"], flag)
    assert both.synced() is False
    flag.touch()
    assert both.synced() is True
    assert {name: r.state for name, r in both.readings().items()} == {
        "kernel": SourceState.UNREADABLE,
        "timesyncd": SourceState.SYNCED,
    }


def test_an_absent_flag_or_directory_is_not_synchronised_not_unreadable(tmp_path: Path) -> None:
    assert read_flag(str(tmp_path / "synchronized")).state is SourceState.NOT_SYNCED
    assert read_flag(str(tmp_path / "timesync" / "synchronized")).state is SourceState.NOT_SYNCED
    assert Clock(["timesyncd"], tmp_path / "timesync" / "synchronized").unreadable() == {}


def test_a_flag_in_a_directory_the_daemon_may_not_search_is_unreadable(tmp_path: Path) -> None:
    """A real EACCES, where os.path.exists would have said "not there"."""
    directory = tmp_path / "timesync"
    directory.mkdir()
    (directory / "synchronized").touch()  # timesyncd synced, but the daemon cannot see it
    directory.chmod(0o000)
    script = (
        "import sys; from pathlib import Path; from gateway.clock import Clock;"
        " c = Clock(['timesyncd'], Path(sys.argv[1]));"
        " print(c.synced(), c.readings()['timesyncd'].as_json()['reason'])"
    )
    command = [sys.executable, "-c", script, str(directory / "synchronized")]
    if os.geteuid() == 0:  # root searches any directory: take away the capabilities for it
        command = ["setpriv", "--bounding-set=-dac_override,-dac_read_search", "--", *command]
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    finally:
        directory.chmod(0o700)
    assert result.returncode == 0, result.stderr[-2000:]
    *logged, said = result.stdout.strip().splitlines()  # structlog's default: stdout
    assert said == f"False stat {directory}/synchronized: Permission denied (EACCES)", logged
    assert len(logged) == 1 and "clock source unreadable" in logged[0], logged


def test_the_daemon_registers_taps_and_reports_a_denied_kernel_source_once(
    state: Path, denied: FakeClockAdjtime
) -> None:
    """The default sources, no timesyncd flag (a boot without network), the kernel's state
    denied: taps are registered as unsynchronised, status names the source and why, the
    evidence has one entry, the log one line; then the flag appears and the clock is synced."""
    *workers, later = badges(4)
    config = make_config(state, [*workers, later], clock={"sources": ["timesyncd", "kernel"]})
    flag = state / "synchronized"

    async def body(daemon: Daemon) -> dict[str, Any]:
        outcomes = [await daemon.tap(tap_read(worker.uid)) for worker in workers]
        assert [outcome.kind.value for outcome in outcomes] == ["registered"] * 3
        deadline = time.monotonic() + 10
        while not recorded(config.storage.journal) and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        await asyncio.sleep(2.5)  # two more rounds of the evidence watch: nothing more
        before = await asyncio.to_thread(status, config.control.socket)
        flag.touch()
        assert (await daemon.tap(tap_read(later.uid))).kind.value == "registered"
        return {"before": before, "after": await asyncio.to_thread(status, config.control.socket)}

    with log_lines() as lines:
        seen = run(with_daemon(config, body))
    before, after = seen["before"], seen["after"]
    assert before["clock"]["synced"] is False
    assert before["clock"]["sources"] == [
        {"name": "timesyncd", "state": "not synced", "reason": None},
        {"name": "kernel", "state": "unreadable", "reason": EPERM_REASON},
    ]
    assert [reg["clock_synced"] for reg in before["recent_registrations"]] == [False] * 3
    assert (
        f"NOT synchronised, {before['clock']['now'].replace('+00:00', 'Z')}; timesyncd not synced;"
        f" kernel unreadable ({EPERM_REASON})"
    ) in render_status(before)
    assert after["clock"]["synced"] is True
    assert after["clock"]["sources"][0] == {"name": "timesyncd", "state": "synced", "reason": None}
    assert after["clock"]["sources"][1]["state"] == "unreadable"
    assert after["recent_registrations"][0]["clock_synced"] is True

    assert recorded(config.storage.journal) == [{"source": "kernel", "reason": EPERM_REASON}]
    assert [line["event"] for line in lines].count(UNREADABLE_LOG) == 1
    assert not [line for line in lines if "clock-source-unreadable" in line["event"]]
    assert denied.calls == 1  # taps, status and the watch all used the finding
    conn = sqlite3.connect(f"file:{config.storage.journal}?mode=ro", uri=True)
    try:
        assert verify_journal(conn).ok
    finally:
        conn.close()


def recorded(journal: Path) -> list[dict[str, Any]]:
    """The details of the journal's clock-source-unreadable entries."""
    conn = sqlite3.connect(f"file:{journal}?mode=ro", uri=True)
    try:
        return [dict(e.details) for e in entries(conn) if e.kind == "clock-source-unreadable"]
    except sqlite3.OperationalError:  # not created yet
        return []
    finally:
        conn.close()


def status(socket: Path) -> dict[str, Any]:
    reply: dict[str, Any] = control.request(socket, {"cmd": "status"})["status"]
    return reply
