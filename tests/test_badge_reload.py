"""A badge file that yields no worker, during a reload and before it is installed (issue 14,
point 10): a running daemon keeps the register it has and says why; `badges check` exits 1.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gateway import control
from gateway.daemon import Daemon
from gateway.feedback import OutcomeKind
from tests.support import badges, make_config, run, tap_read, with_daemon, write_badge_file

HEADER = "badge_uid,niss,employer,name,language,capacity,valid_from,valid_until"


def save(path: Path, *lines: str) -> None:
    """What an editor does: the whole file again, with a new mtime."""
    mtime_ns = path.stat().st_mtime_ns + 10**9
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    os.utime(path, ns=(mtime_ns, mtime_ns))


async def badge_status(socket: Path) -> dict[str, Any]:
    reply = await asyncio.to_thread(control.request, socket, {"cmd": "status"})
    badges_status: dict[str, Any] = reply["status"]["badges"]
    return badges_status


async def badges_once(
    socket: Path, done: Callable[[dict[str, Any]], bool], timeout: float = 10.0
) -> dict[str, Any]:
    """The status once the watcher (polling every 0.2 s) has looked at the new file."""
    deadline = time.monotonic() + timeout
    status = await badge_status(socket)
    while not done(status) and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
        status = await badge_status(socket)
    return status


def error_says(words: str) -> Callable[[dict[str, Any]], bool]:
    return lambda status: words in (status["last_error"] or "")


def test_a_reload_to_a_file_without_workers_keeps_the_register(state: Path) -> None:
    workers = badges(2)
    config = make_config(state, workers)
    socket, path = config.control.socket, config.badges.file

    async def break_the_file(daemon: Daemon) -> list[tuple[dict[str, Any], OutcomeKind]]:
        seen = []
        save(path, HEADER)
        header_only = await badges_once(socket, error_says("only its header"))
        seen.append((header_only, (await daemon.tap(tap_read(workers[0].uid))).kind))
        save(path, HEADER, f"{workers[0].uid},12345678901,0450905686,A,fr,employee,,", "x")
        all_bad = await badges_once(socket, error_says("every line refused"))
        seen.append((all_bad, (await daemon.tap(tap_read(workers[1].uid))).kind))
        write_badge_file(path, workers[1:])
        fixed = await badges_once(socket, lambda status: status["last_error"] is None)
        seen.append((fixed, (await daemon.tap(tap_read(workers[0].uid))).kind))
        return seen

    [(header_only, first), (all_bad, second), (fixed, third)] = run(
        with_daemon(config, break_the_file)
    )
    assert header_only["workers"] == 2
    assert header_only["last_error"] == (
        f"{path}: no worker: the file holds only its header; keeping the previous register"
    )
    assert first is OutcomeKind.REGISTERED  # the worker is still known
    assert all_bad["workers"] == 2
    assert all_bad["last_error"].startswith(f"{path}: no worker: every line refused (2 error(s)")
    assert "12345678901" not in all_bad["last_error"]
    assert second is OutcomeKind.REGISTERED
    assert (fixed["workers"], fixed["last_error"]) == (1, None)  # a good file loads again
    assert third is OutcomeKind.UNKNOWN_BADGE  # workers[0] was taken out of it


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_badges_check_exits_1_on_a_file_without_workers(tmp_path: Path) -> None:
    header_only = tmp_path / "header-only.csv"
    header_only.write_text(HEADER + "\n", encoding="utf-8")
    all_bad = tmp_path / "all-bad.csv"
    all_bad.write_text(f"{HEADER}\nnot,a,worker\n04AABBCC,,,,,,,\n", encoding="utf-8")
    good = write_badge_file(tmp_path / "good.csv", badges(1))

    checked = cli("badges", "check", str(header_only))
    assert checked.returncode == 1
    assert f"{header_only}: no worker: the file holds only its header" in checked.stderr
    assert f"{header_only}: 0 badge(s) loaded, 0 refused" in checked.stdout

    checked = cli("badges", "check", str(all_bad))
    assert checked.returncode == 1
    assert f"{all_bad}: no worker: every line refused (" in checked.stderr
    assert f"{all_bad}:2: expected 8 fields, got 3" in checked.stderr

    checked = cli("badges", "check", str(good))
    assert checked.returncode == 0, checked.stderr
    assert "no worker" not in checked.stderr
