"""Test support: real badge files, real configurations, real daemons (in or out of process)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Literal, TypeVar
from zoneinfo import ZoneInfo

from drivers.base import BadgeRead
from gateway import control
from gateway.attendance import AttendanceRules, Register, Site
from gateway.clock import boottime_ns
from gateway.config import GatewayConfig, config_from_dict
from gateway.daemon import Daemon
from gateway.identifiers import make_niss
from gateway.journal.rows import REGISTRATION_COLUMNS, registration_row
from gateway.models import (
    Capacity,
    Channel,
    ClockSample,
    Coordinates,
    Employer,
    Language,
    PlaceOfWork,
    Registration,
    Worker,
)
from onss_sim.testing import SimulatorProcess

T = TypeVar("T")
REPO = Path(__file__).resolve().parent.parent  # the checkout's root, for files tests read
DECLARATION = "1Y1002V9KLZ6Z"
EMPLOYER = "0450905686"


@dataclass(frozen=True)
class Badge:
    uid: str
    niss: str
    name: str
    language: str = "fr"
    capacity: str = "employee"
    valid_from: str = ""
    valid_until: str = ""


def badges(count: int) -> list[Badge]:
    """`count` workers with valid, distinct test NISS numbers."""
    return [
        Badge(uid=f"04{index:06X}", niss=make_niss("850730", 100 + index), name=f"Worker {index}")
        for index in range(count)
    ]


def write_badge_file(path: Path, rows: Sequence[Badge]) -> Path:
    lines = ["badge_uid,niss,employer,name,language,capacity,valid_from,valid_until"]
    lines += [
        f"{b.uid},{b.niss},{EMPLOYER},{b.name},{b.language},{b.capacity},{b.valid_from},"
        f"{b.valid_until}"
        for b in rows
    ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


# The smallest valid configuration file, for tests of what one more section may hold.
MINIMAL_CONFIG_TOML = """\
[site]
name = "Test site"
declaration = "A1B2C3D4E5F6G"

[site.place_of_work.coordinates]
latitude = 50.85
longitude = 4.35

[badges]
file = "/srv/badges.csv"
"""


def config_data(state: Path, **sections: dict[str, Any]) -> dict[str, Any]:
    data: dict[str, Any] = {
        "site": {
            "name": "Test site",
            "declaration": DECLARATION,
            "place_of_work": {"coordinates": {"latitude": 50.68, "longitude": 4.83}},
        },
        "badges": {"file": str(state / "badges.csv"), "poll_seconds": 0.2},
        "storage": {"journal": str(state / "journal.db")},
        "control": {"socket": str(state / "control.sock")},
        "clock": {"sources": ["timesyncd"], "timesyncd_flag": str(state / "synchronized")},
        "logging": {"format": "json"},
    }
    for name, values in sections.items():
        data[name] = {**data.get(name, {}), **values}
    return data


def uplink_section(sim: SimulatorProcess) -> dict[str, Any]:
    """Delivery to the simulator, with short retries and timeouts."""
    return {
        "enabled": True,
        "token_url": sim.token_url,
        "base_url": sim.base_url,
        "client_id": sim.client_id,
        "private_key": str(sim.client_key_file),
        "ca_file": str(sim.ca_file),
        "type_values": sim.type_values,
        "backoff_initial_seconds": 0.05,
        "backoff_max_seconds": 1.0,
        "read_timeout_seconds": 1.0,
    }


def write_config(state: Path, **sections: dict[str, Any]) -> Path:
    """The same configuration as a TOML file, for daemons run as real processes."""
    path = state / "gateway.toml"
    path.write_text(_toml(config_data(state, **sections)), encoding="utf-8")
    return path


def _toml(data: dict[str, Any], prefix: str = "") -> str:
    scalars = [
        f"{key} = {_toml_value(value)}"
        for key, value in data.items()
        if not isinstance(value, dict)
    ]
    tables = [
        f"\n[{prefix}{key}]\n{_toml(value, f'{prefix}{key}.')}"
        for key, value in data.items()
        if isinstance(value, dict)
    ]
    return "\n".join(scalars) + "".join(tables)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(item) for item in value) + "]"
    return str(value)


def make_config(state: Path, workers: Sequence[Badge], **sections: dict[str, Any]) -> GatewayConfig:
    write_badge_file(state / "badges.csv", workers)
    return config_from_dict(config_data(state, **sections), source="test")


class DaemonProcess:
    """`badge-gateway run` as a real process, talked to over its real control socket."""

    def __init__(self, config_path: Path, socket: Path, log_path: Path) -> None:
        self.config_path = config_path
        self.socket = socket
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None
        self.wrapper: Sequence[str] = ()  # a command the daemon runs under (a fake clock...)

    def spawn(self) -> None:
        command = [sys.executable, "-m", "gateway", "--config", str(self.config_path), "run"]
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [*self.wrapper, *command],
                stdout=log,
                stderr=log,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )

    def start(self, timeout: float = 20.0) -> None:
        """Spawn the daemon and wait until its control socket answers."""
        self.spawn()
        assert self.process is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"daemon exited {self.process.returncode}: {self.log()}")
            try:
                self.request({"cmd": "status"}, timeout=2)
                return
            except (control.ControlError, OSError):
                time.sleep(0.02)
        raise AssertionError(f"daemon not ready after {timeout} s: {self.log()}")

    def request(self, message: dict[str, Any], timeout: float = 10) -> dict[str, Any]:
        return control.request(self.socket, message, timeout=timeout)

    def tap(self, uid: str, **extra: Any) -> dict[str, Any]:
        outcome: dict[str, Any] = self.request({"cmd": "tap", "uid": uid, **extra})["outcome"]
        return outcome

    def signal(self, signum: signal.Signals) -> None:
        assert self.process is not None
        self.process.send_signal(signum)

    def kill(self) -> None:
        assert self.process is not None
        self.process.kill()
        self.process.wait(timeout=10)

    def stop(self, timeout: float = 20.0) -> int:
        assert self.process is not None
        if self.process.poll() is None:
            self.process.terminate()
        return self.process.wait(timeout=timeout)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


@contextmanager
def daemon_process(state: Path, config_path: Path) -> Iterator[DaemonProcess]:
    daemon = DaemonProcess(config_path, state / "control.sock", state / "daemon.log")
    daemon.start()
    try:
        yield daemon
    finally:
        if daemon.process is not None and daemon.process.poll() is None:
            daemon.kill()


def wait_for(condition: Callable[[], Any], timeout: float = 15.0) -> Any:
    """The condition's first true value, polled every 0.1 s; fails after `timeout`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"not within {timeout} s")


def wait_until_delivered(daemon: DaemonProcess, deadline: float) -> None:
    while time.monotonic() < deadline:
        if daemon.request({"cmd": "status"})["status"]["journal"]["queue_depth"] == 0:
            return
        time.sleep(0.2)
    raise AssertionError("the queue did not drain in time")


def run(coro: Any, timeout: float = 60) -> Any:
    """Run a coroutine to completion, bounded in time."""
    return asyncio.run(asyncio.wait_for(coro, timeout))


BRUSSELS = ZoneInfo("Europe/Brussels")
SITE = Site(
    "1Y1002V9KLZ6Z", PlaceOfWork(coordinates=Coordinates(latitude=50.7, longitude=4.8)), BRUSSELS
)
WORKER = Worker(
    badge_uid="04A23B9C",
    niss="85073003328",
    employer=Employer(enterprise_number="0450905686"),
    name="Marie",
    language=Language.FR,
    capacity=Capacity.EMPLOYEE,
)
SECOND = 1_000_000_000


# Checkinatwork (issue 16): a construction site, known by its WorkPlaceId, with no place of
# work, and a posted worker known by the Limosa number of the specification's example
# (PresenceRegistration v1, 5.1.1.1, p. 10).
WORKPLACE = "1Y1000NF9KCQZ"
CHECKINATWORK_SITE = Site(WORKPLACE, None, BRUSSELS, Channel.CHECKINATWORK)
LIMOSA = "24910158641968060"
POSTED_WORKER = Worker(
    badge_uid="04B0C0DE",
    niss=None,
    employer=Employer(foreign_vat="FR40303265045"),
    name="Ana",
    language=Language.EN,
    capacity=Capacity.POSTED_WORKER,
    limosa=LIMOSA,
)


def clock_at(local: str, monotonic_s: float = 1000.0, boot: str = "boot-a") -> ClockSample:
    wall = datetime.fromisoformat(local).replace(tzinfo=BRUSSELS)
    return ClockSample(int(wall.timestamp() * 1e9), int(monotonic_s * SECOND), boot, True)


def read(direction: Literal["IN", "OUT"] | None = None) -> BadgeRead:
    return BadgeRead("04A23B9C", "entrance", "simulated", 0, direction)


def registered(decision: object) -> Registration:
    assert isinstance(decision, Register), decision
    return decision.registration


def a_registration(local: str = "2026-11-22T07:02", monotonic_s: float = 100.0) -> Registration:
    return registered(
        AttendanceRules(SITE).decide(read(), WORKER, None, clock_at(local, monotonic_s))
    )


def a_presence(
    local: str = "2026-11-23T07:02", worker: Worker = WORKER, monotonic_s: float = 100.0
) -> Registration:
    """A PRESENCE registration at CHECKINATWORK_SITE, tapped at `local` (Brussels time)."""
    rules = AttendanceRules(CHECKINATWORK_SITE)
    return registered(rules.decide(read(), worker, None, clock_at(local, monotonic_s)))


async def with_daemon(
    config: GatewayConfig, body: Callable[[Daemon], Awaitable[T]], **options: Any
) -> T:
    """Run `body` against a daemon running in this event loop, then stop it cleanly."""
    daemon = Daemon(config, **options)
    runner = asyncio.create_task(daemon.run())
    for _ in range(500):
        if daemon.accepting or runner.done():
            break
        await asyncio.sleep(0.01)
    try:
        assert daemon.accepting, "daemon did not start"
        return await body(daemon)
    finally:
        daemon.stop()
        await runner


def tap_read(uid: str, direction: Literal["IN", "OUT"] | None = None) -> BadgeRead:
    return BadgeRead(uid, "test", "test", boottime_ns(), direction)


# --- readers in configurations (issue 4: serial drivers) -----------------------------------


def write_config_with_readers(
    state: Path, readers: Sequence[dict[str, Any]], **sections: dict[str, Any]
) -> Path:
    """write_config, plus one [[readers]] table per entry (scalar values only)."""
    path = write_config(state, **sections)
    tables = [
        "\n\n[[readers]]\n"
        + "\n".join(f"{key} = {_toml_value(value)}" for key, value in reader.items())
        for reader in readers
    ]
    with path.open("a", encoding="utf-8") as file:
        file.write("".join(tables) + "\n")
    return path


def make_config_with_readers(
    state: Path,
    workers: Sequence[Badge],
    readers: Sequence[dict[str, Any]],
    **sections: dict[str, Any],
) -> GatewayConfig:
    """make_config, with these reader entries (shaped like the TOML file's [[readers]])."""
    write_badge_file(state / "badges.csv", workers)
    data = {**config_data(state, **sections), "readers": list(readers)}
    return config_from_dict(data, source="test")


def insert_before_version_8(conn: Any, reg: Registration) -> None:
    """A registration row as journals before schema 8 (no `limosa` column) held it, with no
    evidence entry: for the tests of older migrations."""
    row = registration_row(reg)
    columns = REGISTRATION_COLUMNS.replace(" limosa,", "")
    values = (*row[:4], *row[5:], None, None, None)
    marks = ", ".join("?" * len(values))
    conn.execute(
        f"INSERT INTO registrations ({columns}, ev_seq, ev_prev, ev_hash) VALUES ({marks})",
        values,
    )
