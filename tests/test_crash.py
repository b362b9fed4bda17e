"""SIGKILL in the middle of bursts of taps: every tap that got a positive answer survives once.

The daemon runs as a real process and is killed at random moments, most while taps are in
flight over its control socket, some while it is still opening its journal. After each
kill it is started again on the same journal. At the end every acknowledged registration
must be in the journal exactly once, and each worker's IN/OUT sequence must still
alternate: the toggle read the journal correctly after every restart.
"""

from __future__ import annotations

import random
import sqlite3
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from gateway import control
from tests.support import Badge, DaemonProcess, badges, write_badge_file, write_config

KILLS = 200
TIME_BUDGET_SECONDS = 900
TAPPERS = 3


@dataclass
class Answers:
    acked: list[str] = field(default_factory=list)  # ids of taps answered "registered"
    wrong: list[dict[str, object]] = field(default_factory=list)  # debounce is 0: none


def tap_until_refused(
    daemon: DaemonProcess, workers: list[Badge], rng: random.Random, answers: Answers
) -> None:
    for _ in range(10_000):
        try:
            outcome = daemon.tap(rng.choice(workers).uid)
        except (control.ControlError, OSError, ValueError):
            return  # the daemon died under us
        if outcome["kind"] == "registered":
            answers.acked.append(outcome["registration_id"])
        else:
            answers.wrong.append(outcome)


def burst_then_kill(
    daemon: DaemonProcess, workers: list[Badge], rng: random.Random, answers: Answers
) -> None:
    threads = [
        threading.Thread(
            target=tap_until_refused, args=(daemon, workers, random.Random(rng.random()), answers)
        )
        for _ in range(TAPPERS)
    ]
    for thread in threads:
        thread.start()
    time.sleep(rng.uniform(0.0, 0.25))
    daemon.kill()
    for thread in threads:
        thread.join(timeout=30)
        assert not thread.is_alive()


def kill_while_starting(daemon: DaemonProcess, rng: random.Random) -> None:
    daemon.spawn()
    time.sleep(rng.uniform(0.0, 0.4))
    daemon.kill()


@pytest.mark.slow
def test_sigkill_loses_no_acknowledged_tap(state: Path) -> None:
    workers = badges(10)
    write_badge_file(state / "badges.csv", workers)
    config = write_config(state, attendance={"debounce_seconds": 0})
    daemon = DaemonProcess(config, state / "control.sock", state / "daemon.log")
    seed = random.randrange(1 << 32)
    rng = random.Random(seed)
    answers = Answers()
    kills = 0
    deadline = time.monotonic() + TIME_BUDGET_SECONDS
    while kills < KILLS and time.monotonic() < deadline:
        if rng.random() < 0.15:
            kill_while_starting(daemon, rng)
        else:
            daemon.start()
            burst_then_kill(daemon, workers, rng, answers)
        kills += 1
    assert kills >= KILLS, f"only {kills} kills in {TIME_BUDGET_SECONDS} s (seed {seed})"

    daemon.start()  # recovers on the journal the last kill left behind
    assert daemon.tap(workers[0].uid)["kind"] == "registered"
    assert daemon.stop() == 0

    with sqlite3.connect(state / "journal.db") as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        rows = conn.execute("SELECT id, niss, direction FROM registrations ORDER BY seq").fetchall()
        pending = conn.execute(
            "SELECT count(*) FROM registration_rows WHERE delivery = 'pending'"
        ).fetchone()[0]
    stored = [row[0] for row in rows]
    acked, wrong = answers.acked, answers.wrong
    assert not wrong, f"{len(wrong)} taps not registered, first: {wrong[0]} (seed {seed})"
    assert len(acked) > 1000, f"too few taps acknowledged to mean anything (seed {seed})"
    assert len(stored) == len(set(stored)), f"a registration is stored twice (seed {seed})"
    missing = set(acked) - set(stored)
    assert not missing, f"{len(missing)} acknowledged taps lost (seed {seed})"
    assert pending == len(stored), "every registration waits for the uplink"
    sequences: dict[str, list[str]] = defaultdict(list)
    for _, niss, direction in rows:
        sequences[niss].append(direction)
    for niss, directions in sequences.items():
        expected = ["IN", "OUT"] * (len(directions) // 2 + 1)
        assert directions == expected[: len(directions)], f"toggle broken for ...{niss[-3:]}"
