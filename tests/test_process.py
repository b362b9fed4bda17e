"""`badge-gateway run` as a real process: signals, the control socket, reloads, its logs."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gateway import control
from gateway.errors import EXIT_FAILURE, EXIT_TAP_REFUSED, EXIT_USAGE
from gateway.journal import JournalReader
from tests.support import (
    REPO,
    Badge,
    badges,
    daemon_process,
    write_badge_file,
    write_config,
)


def raw_exchange(path: Path, payload: bytes) -> dict[str, Any]:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(10)
        sock.connect(str(path))
        sock.sendall(payload)
        with sock.makefile("rb") as replies:
            reply: dict[str, Any] = json.loads(replies.readline())
    return reply


@pytest.mark.parametrize(
    ("payload", "error"),
    [
        (b"garbage\n", "not JSON"),
        (b"\xff\xfe\x00\n", "not JSON"),
        (b"[1, 2]\n", '"cmd"'),
        (b'{"cmd": 5}\n', '"cmd"'),
        (b'{"cmd": "reboot"}\n', "unknown command"),
        (b'{"cmd": "tap"}\n', "uid"),
        (b'{"cmd": "tap", "uid": "xyz!"}\n', "uid"),
        (b'{"cmd": "tap", "uid": "04A2", "direction": "UP"}\n', "direction"),
        (b'{"cmd": "registrations", "since_ns": "yesterday"}\n', "since_ns"),
        (b"x" * 200_000, "longer than"),
    ],
)
def test_bad_control_messages_get_an_error_and_change_nothing(
    state: Path, payload: bytes, error: str
) -> None:
    write_badge_file(state / "badges.csv", badges(1))
    with daemon_process(state, write_config(state)) as daemon:
        reply = raw_exchange(daemon.socket, payload)
        assert reply["ok"] is False
        assert error in reply["error"]
        assert daemon.tap(badges(1)[0].uid)["kind"] == "registered"
        assert stat.S_IMODE(daemon.socket.stat().st_mode) == 0o660
        assert daemon.process is not None and daemon.process.poll() is None


def test_a_client_that_hangs_up_mid_message_changes_nothing(state: Path) -> None:
    write_badge_file(state / "badges.csv", badges(1))
    with daemon_process(state, write_config(state)) as daemon:
        for _ in range(20):
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                sock.connect(str(daemon.socket))
                sock.sendall(b'{"cmd": "ta')
        assert daemon.tap(badges(1)[0].uid)["kind"] == "registered"


def test_sigterm_finishes_the_taps_in_progress_and_closes_the_journal(state: Path) -> None:
    workers = badges(8)
    write_badge_file(state / "badges.csv", workers)
    config = write_config(state, attendance={"debounce_seconds": 0})
    answered: list[dict[str, Any]] = []
    refused: list[str] = []

    def tapper(worker: Badge, daemon: Any) -> None:
        for _ in range(200):
            try:
                answered.append(daemon.tap(worker.uid))
            except (control.ControlError, OSError) as error:
                refused.append(str(error))
                return

    with daemon_process(state, config) as daemon:
        threads = [threading.Thread(target=tapper, args=(w, daemon)) for w in workers]
        for thread in threads:
            thread.start()
        time.sleep(0.5)
        daemon.signal(signal.SIGTERM)
        assert daemon.process is not None
        assert daemon.process.wait(timeout=30) == 0
        for thread in threads:
            thread.join(timeout=30)
    assert answered and all(outcome["kind"] == "registered" for outcome in answered)
    assert not (state / "journal.db-wal").exists(), "journal not closed cleanly"
    reader = JournalReader(state / "journal.db")
    stored = {str(s.registration.id) for s in reader.registrations_since(0, limit=10_000)}
    reader.close()
    assert {outcome["registration_id"] for outcome in answered} <= stored
    assert "daemon stopped cleanly" in daemon.log()


def test_sighup_reloads_the_badge_register(state: Path) -> None:
    first, second = badges(2)
    write_badge_file(state / "badges.csv", [first])
    config = write_config(state, badges={"poll_seconds": 3600})
    with daemon_process(state, config) as daemon:
        assert daemon.tap(second.uid)["kind"] == "unknown-badge"
        write_badge_file(state / "badges.csv", [first, second])
        daemon.signal(signal.SIGHUP)
        for _ in range(100):
            if daemon.request({"cmd": "status"})["status"]["badges"]["workers"] == 2:
                break
            time.sleep(0.05)
        assert daemon.tap(second.uid)["kind"] == "registered"


def test_badge_file_changes_are_picked_up_without_losing_a_tap(state: Path) -> None:
    regular, *newcomers = badges(21)
    path = state / "badges.csv"
    write_badge_file(path, [regular])
    config = write_config(state, attendance={"debounce_seconds": 0}, badges={"poll_seconds": 0.05})
    outcomes: list[str] = []
    stop = threading.Event()

    with daemon_process(state, config) as daemon:

        def keep_tapping() -> None:
            while not stop.is_set() and len(outcomes) < 5000:
                outcomes.append(daemon.tap(regular.uid)["kind"])

        tapper = threading.Thread(target=keep_tapping)
        tapper.start()
        for count in range(1, len(newcomers) + 1):  # the employer saves the file 20 times
            staged = path.with_suffix(".tmp")
            write_badge_file(staged, [regular, *newcomers[:count]])
            os.replace(staged, path)
            time.sleep(0.1)
        stop.set()
        tapper.join(timeout=30)
        assert daemon.tap(newcomers[-1].uid)["kind"] == "registered"
    assert len(outcomes) > 20
    assert set(outcomes) == {"registered"}


def test_no_niss_in_clear_in_the_logs(state: Path) -> None:
    workers = badges(2)
    path = write_badge_file(state / "badges.csv", workers)
    with path.open("a") as badge_file:  # a refused line carrying a NISS with a bad checksum
        badge_file.write(f"0499,{workers[0].niss[:-1]}0,0450905686,Bad Line,fr,employee,,\n")
    with daemon_process(state, write_config(state)) as daemon:
        daemon.tap(workers[0].uid)
        daemon.tap(workers[1].uid, direction="OUT")
        daemon.tap("DEADBEEF")
        daemon.stop()
    log = daemon.log()
    assert "badge register line refused" in log
    assert "badge register is readable by others" in log  # written 0644 by the test
    assert "registered" in log
    # eleven digits standing as a word; inside a hex id (a registration's UUID, a hash) they
    # are not a NISS, and the log must keep those ids whole
    niss = re.search(r"(?<![0-9A-Za-z])\d{11}(?![0-9A-Za-z])", log)
    assert niss is None, (
        f"a NISS reached the log in clear: {log[niss.start() - 80 : niss.end() + 20]}"
    )
    for line in log.splitlines():
        json.loads(line)  # journald gets JSON when not on a terminal


def cli(*args: str, config: Path | None = None) -> subprocess.CompletedProcess[str]:
    prefix = ["--config", str(config)] if config else []
    return subprocess.run(
        [sys.executable, "-m", "gateway", *prefix, *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_cli_tap_status_and_registrations(state: Path) -> None:
    worker = badges(1)[0]
    write_badge_file(state / "badges.csv", [worker])
    config = write_config(state)
    with daemon_process(state, config):
        tapped = cli("tap", worker.uid.lower(), config=config)
        assert tapped.returncode == 0, tapped.stderr
        assert tapped.stdout.startswith("registered: ENTRÉE")
        unknown = cli("tap", "DEADBEEF", config=config)
        assert unknown.returncode == EXIT_TAP_REFUSED
        assert "Badge inconnu" in unknown.stdout
        assert cli("tap", config=config).returncode == EXIT_USAGE  # no UID: argparse's own
        status = cli("status", "--json", config=config)
        assert json.loads(status.stdout)["journal"]["queue_depth"] == 1
        human = cli("status", config=config)
        assert "queue depth 1" in human.stdout and worker.niss not in human.stdout
        listed = cli("registrations", "--since", "1h", "--json", config=config)
        [reg] = [json.loads(line) for line in listed.stdout.splitlines()]
        assert reg["type"] == "IN" and reg["niss"].endswith(worker.niss[-3:])
        assert cli("registrations", "--since", "soon", config=config).returncode == 1
    gone = cli("status", config=config)
    assert gone.returncode == 1 and "not running" in gone.stderr
    offline = cli("registrations", "--journal", str(state / "journal.db"), "--json")
    assert offline.returncode == 0, offline.stderr
    assert [json.loads(line)["id"] for line in offline.stdout.splitlines()] == [reg["id"]]


def test_invalid_configuration_refuses_to_start(state: Path) -> None:
    config = write_config(state, site={"declaration": "1Y1002V9KLZ6O"})
    checked = cli("config", "check", str(config))
    assert checked.returncode == 1
    assert "site.declaration" in checked.stderr
    started = cli("run", config=config)
    assert started.returncode == EXIT_FAILURE
    assert "site.declaration" in started.stderr
    assert "refusing to start" in started.stderr


def test_a_second_daemon_on_the_same_journal_is_refused(state: Path) -> None:
    write_badge_file(state / "badges.csv", badges(1))
    config = write_config(state)
    with daemon_process(state, config):
        second = cli("run", config=config)
        assert second.returncode == EXIT_FAILURE
        assert "in use" in second.stderr or "another daemon" in second.stderr


def test_example_files_are_valid() -> None:
    examples = REPO / "config"
    config = cli("config", "check", str(examples / "gateway.example.toml"))
    assert config.returncode == 0, config.stderr
    register = cli("badges", "check", str(examples / "badges.example.csv"))
    assert register.returncode == 0, register.stderr
    assert "3 badge(s) loaded, 0 refused" in register.stdout


def test_badges_check_names_each_bad_line(tmp_path: Path) -> None:
    path = write_badge_file(tmp_path / "badges.csv", badges(2))
    with path.open("a") as badge_file:
        badge_file.write("04BEEF,85073003329,0450905686,Bad Checksum,fr,employee,,\n")
    checked = cli("badges", "check", str(path))
    assert checked.returncode == 1
    assert "badges.csv:4: niss" in checked.stderr
    assert "85073003329" not in checked.stderr
    assert "2 badge(s) loaded, 1 refused" in checked.stdout


@pytest.mark.slow
def test_demo_runs_without_arguments() -> None:
    """The README's first command, as a newcomer types it: no --out, so the demo keeps its
    files in a directory of its own and names it (tests/cli/test_demo.py checks the rest)."""
    demo = cli("demo")
    assert demo.returncode == 0, demo.stderr
    for expected in ("ENTRÉE", "Déjà enregistré", "Unknown badge", "Badge expired", "UIT"):
        assert expected in demo.stdout, expected
    assert "5 registrations captured, 5 acknowledged by the ONSS" in demo.stdout
    named = re.search(r"report for the day: (\S+/report\.html)", demo.stdout)
    assert named is not None, demo.stdout
    report = Path(named.group(1))
    assert report.is_file()
    shutil.rmtree(report.parents[1])  # the demo's own directory, kept for the reader


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A real 1 MiB file system (tmpfs), to fill up for real."""
    mount = tmp_path / "disk"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(directory: Path) -> Path:
    filler = directory / "filler"
    with filler.open("wb", buffering=0) as out:
        for _ in range(1024):  # at most 4 MiB: the disk is smaller
            try:
                out.write(b"\0" * 4096)
            except OSError:
                break
    return filler


def test_a_really_full_disk_refuses_taps_and_recovers(state: Path, small_disk: Path) -> None:
    first, second = badges(2)
    write_badge_file(state / "badges.csv", [first, second])
    config = write_config(state, storage={"journal": str(small_disk / "journal.db")})
    with daemon_process(state, config) as daemon:
        assert daemon.tap(first.uid)["kind"] == "registered"
        filler = fill(small_disk)
        refused = daemon.tap(second.uid)
        assert refused["kind"] == "cannot-store"
        assert refused["message"].startswith("ERREUR")
        assert "full" in daemon.request({"cmd": "status"})["status"]["journal"]["storage_error"]
        filler.unlink()
        again = daemon.tap(second.uid)
        assert again["kind"] == "registered"
        listed = daemon.request({"cmd": "registrations", "since_ns": 0})["registrations"]
        assert [reg["badge_uid"] for reg in listed] == [first.uid, second.uid]
    assert "journal cannot store: tap NOT registered" in daemon.log()


def test_a_second_daemon_on_the_same_socket_leaves_the_first_alone(state: Path) -> None:
    write_badge_file(state / "badges.csv", badges(1))
    config = write_config(state)
    other = state / "other"
    other.mkdir()
    second_config = write_config(other, control={"socket": str(state / "control.sock")})
    write_badge_file(other / "badges.csv", badges(1))
    with daemon_process(state, config) as daemon:
        second = cli("run", config=second_config)
        assert second.returncode == EXIT_FAILURE
        assert "another daemon" in second.stderr
        assert daemon.socket.exists()
        assert daemon.tap(badges(1)[0].uid)["kind"] == "registered"
