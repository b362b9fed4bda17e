"""`badge-gateway readers list|test`, run as the technician runs them: a real process."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from gateway.cli.render import render_status
from gateway.control import status
from gateway.daemon import Daemon
from gateway.identifiers import mask_niss
from tests.support import (
    badges,
    make_config_with_readers,
    run,
    with_daemon,
    write_badge_file,
    write_config,
)

WORKERS = badges(2)
SCRIPTED_DOOR = f"""

[[readers]]
name = "door"
driver = "simulated"
start_delay_seconds = 0
taps = [
    {{ uid = "{WORKERS[0].uid}", after_seconds = 0.1 }},
    {{ uid = "0A0B0C0D", after_seconds = 0.1 }},
]
"""


def gateway(config: Path, *args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway", "--config", str(config), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def configured(state: Path) -> Path:
    write_badge_file(state / "badges.csv", WORKERS)
    path = write_config(state)
    with path.open("a", encoding="utf-8") as file:
        file.write(SCRIPTED_DOOR)
    return path


def test_readers_test_prints_each_uid_and_who_it_belongs_to(state: Path) -> None:
    result = gateway(configured(state), "readers", "test", "door", "--count", "2")

    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    first = WORKERS[0]
    assert f"{first.uid}  simulated  {first.name} ({mask_niss(first.niss)})" in lines
    assert "0A0B0C0D  simulated  not in the badge file" in lines
    assert first.niss not in result.stdout  # masked: this output ends up in tickets
    assert "[door connected]" in result.stderr


def test_readers_test_stops_after_its_time_without_reads(state: Path) -> None:
    path = configured(state)
    path.write_text(
        path.read_text().replace('"0A0B0C0D", after_seconds = 0.1', '"0A0B", after_seconds = 60')
    )

    result = gateway(path, "readers", "test", "door", "--count", "5", "--seconds", "1")

    assert result.returncode == 0, result.stderr
    assert WORKERS[0].uid in result.stdout
    assert "0A0B" not in result.stdout.replace(WORKERS[0].uid, "")


def test_readers_test_names_the_configured_readers_when_the_name_is_wrong(state: Path) -> None:
    result = gateway(configured(state), "readers", "test", "back-door")

    assert result.returncode == 1
    assert "no reader named 'back-door' (configured: door)" in result.stdout


def test_readers_test_of_a_reader_that_cannot_open_shows_why_and_keeps_trying(
    state: Path,
) -> None:
    path = write_config(state)
    write_badge_file(state / "badges.csv", WORKERS)
    missing = state / "no-such-tty"
    with path.open("a", encoding="utf-8") as file:
        file.write(f'\n[[readers]]\nname = "rfid"\ndriver = "rdm6300"\nport = "{missing}"\n')

    result = gateway(path, "readers", "test", "rfid", "--seconds", "1.5")

    assert result.returncode == 0, result.stderr
    assert "[rfid reconnecting:" in result.stderr
    assert str(missing) in result.stderr


def test_readers_list_shows_the_configured_readers(state: Path) -> None:
    result = gateway(configured(state), "readers", "list")

    assert result.returncode == 0, result.stderr
    assert "Detected on this machine:" in result.stdout
    assert "detection failed" not in result.stdout
    assert "door" in result.stdout.split("Configured in")[1]


def test_status_says_which_reader_is_down_since_when_and_why(state: Path) -> None:
    missing = state / "ttyUSB-unplugged"
    reader = {"name": "rfid", "driver": "rdm6300", "port": str(missing)}
    config = make_config_with_readers(state, WORKERS, [reader])

    async def body(daemon: Daemon) -> dict[str, Any]:
        await asyncio.sleep(1.2)
        return await asyncio.to_thread(status.collect, daemon)

    snapshot = run(with_daemon(config, body))

    [rfid] = snapshot["readers"]
    assert rfid["state"] == "reconnecting"
    assert str(missing) in rfid["error"]
    assert 1.0 <= rfid["down_seconds"] < 30
    down_since = datetime.fromisoformat(rfid["down_since"].replace("Z", "+00:00"))
    assert abs((datetime.now(UTC) - down_since).total_seconds() - rfid["down_seconds"]) < 2
    line = render_status(snapshot)
    assert "reader      rfid: reconnecting (" in line
    assert "since " in line.split("reader      rfid")[1]
