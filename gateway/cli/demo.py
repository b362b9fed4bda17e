"""`badge-gateway demo`: the whole tap path on an embedded configuration, no set-up needed.

A temporary state directory, a sample badge register with valid test NISS numbers, and a
simulated reader that presents: Marie (IN), Marie again at once (a double tap: the same
tap), an unknown badge, Jan (IN), an expired badge, Jan (OUT: a break), Marie (OUT).
The ONSS simulator (onss_sim, started as its own process, never imported here) plays
the ONSS: the daemon obtains a token with a signed JWT and delivers the registrations,
and the acknowledgements arrive in the log. Afterwards the demo asks the running daemon
for its status and registrations over the real control socket, exactly as
`badge-gateway status` would, then stops both.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from gateway import control
from gateway.cli.evidence import describe
from gateway.cli.render import render_status
from gateway.config import GatewayConfig, SimulatedReaderConfig, config_from_dict
from gateway.daemon import Daemon
from gateway.evidence import entries, verify_journal
from gateway.identifiers import make_niss
from gateway.journal import connect
from gateway.models import iso_utc
from gateway.system import logs

MARIE, JAN, OLGA, UNKNOWN = "04A23B9C", "04:5E:11:7F", "04C0FFEE", "DEADBEEF"


def sample_badges() -> str:
    return "\n".join(
        [
            "badge_uid,niss,employer,name,language,capacity,valid_from,valid_until",
            f"{MARIE},{make_niss('850730', 33)},0450.905.686,Marie Dubois,fr,employee,,",
            f"{JAN},{make_niss('010215', 127, born_2000=True)},0450905686,Jan Peeters,nl,student,,",
            f"{OLGA},{make_niss('920411', 8)},PL5260001246,Olga Nowak,en,posted-worker,"
            "2024-01-01,2024-12-31",
        ]
    )


def demo_config(state: Path, onss: dict[str, Any]) -> dict[str, Any]:
    taps = [
        (MARIE, 0.5),
        (MARIE, 1.0),
        (UNKNOWN, 1.0),
        (JAN, 1.0),
        (OLGA, 1.0),
        (JAN, 3.5),
        (MARIE, 0.5),
    ]
    return {
        "site": {
            "name": "Demo office building, Wavre",
            "declaration": "1Y1002V9KLZ6Z",
            "place_of_work": {"coordinates": {"latitude": 50.681805, "longitude": 4.834123}},
        },
        "badges": {"file": str(state / "badges.csv"), "poll_seconds": 1.0},
        "attendance": {"debounce_seconds": 3.0},
        "storage": {"journal": str(state / "journal.db")},
        "control": {"socket": str(state / "control.sock")},
        "logging": {"format": "console"},
        # The demo stands in for systemd-timesyncd: its flag file says "synchronised".
        "clock": {"sources": ["timesyncd"], "timesyncd_flag": str(state / "synchronized")},
        "uplink": {
            "enabled": True,
            "token_url": onss["token_url"],
            "base_url": onss["base_url"],
            "client_id": onss["client_id"],
            "private_key": onss["client_key_file"],
            "ca_file": onss["ca_file"],
        },
        "readers": [
            {
                "driver": "simulated",
                "name": "entrance",
                "start_delay_seconds": 0.5,
                "taps": [{"uid": uid, "after_seconds": after} for uid, after in taps],
            }
        ],
    }


async def run_demo() -> int:
    with tempfile.TemporaryDirectory(prefix="badge-gateway-demo-") as tmp:
        state = Path(tmp)
        (state / "badges.csv").write_text(sample_badges() + "\n", encoding="utf-8")
        (state / "badges.csv").chmod(0o600)
        (state / "synchronized").touch()
        logs.configure(fmt="console", level="info")
        simulator = _start_simulator(state / "onss")
        try:
            onss = await _simulator_files(state / "onss", simulator)
            config = config_from_dict(
                demo_config(state, onss), source="embedded demo configuration"
            )
            print(f"demo: state in {state}; ONSS simulator at {onss['base_url']}\n")
            await _run_daemon(config)
            _show_evidence(config.storage.journal)
        finally:
            simulator.terminate()
            simulator.wait(timeout=10)
    return 0


async def _run_daemon(config: GatewayConfig) -> None:
    daemon = Daemon(config)
    scripted = config.readers[0]
    assert isinstance(scripted, SimulatedReaderConfig)
    runner = asyncio.create_task(daemon.run())
    try:
        await _wait_for_reads(daemon, expected=len(scripted.taps), timeout=30)
        await _wait_for_delivery(config.control.socket, timeout=30)
        socket = config.control.socket
        status = await asyncio.to_thread(control.request, socket, {"cmd": "status"})
        print("\n$ badge-gateway status\n" + render_status(status["status"]))
        since = await asyncio.to_thread(
            control.request, socket, {"cmd": "registrations", "since_ns": 0}
        )
        print("\n$ badge-gateway registrations --json")
        for reg in since["registrations"]:
            print(json.dumps(reg))
    finally:
        daemon.stop()
        await runner


def _show_evidence(journal: Path) -> None:
    """What the employer keeps: the chain, verified, entry by entry."""
    conn = connect(journal, read_only=True)
    try:
        print("\n$ badge-gateway evidence verify")
        print(describe(journal, verify_journal(conn)))
        print("\nthe evidence log, entry by entry:")
        for entry in entries(conn):
            print(f"  #{entry.seq:<3} {iso_utc(entry.wall_ns)}  {entry.kind:<19} {entry.hash[:16]}")
    finally:
        conn.close()


def _start_simulator(directory: Path) -> subprocess.Popen[bytes]:
    directory.mkdir()
    return subprocess.Popen(
        [sys.executable, "-m", "onss_sim", "--dir", str(directory)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


async def _simulator_files(directory: Path, simulator: subprocess.Popen[bytes]) -> dict[str, Any]:
    """What the simulator wrote for a gateway to trust and use it, once it listens."""
    description = directory / "simulator.json"
    for _ in range(200):
        if description.exists():
            data: dict[str, Any] = json.loads(description.read_text())
            return data
        if simulator.poll() is not None:
            break
        await asyncio.sleep(0.1)
    raise RuntimeError("the ONSS simulator did not start")


async def _wait_for_delivery(socket: Path, timeout: float) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        status = await asyncio.to_thread(control.request, socket, {"cmd": "status"})
        if status["status"]["journal"]["queue_depth"] == 0:
            return
        await asyncio.sleep(0.2)
    raise TimeoutError("the registrations were not delivered in time")


async def _wait_for_reads(daemon: Daemon, expected: int, timeout: float) -> None:
    """Until the simulated reader has tapped every card and each tap got its feedback."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        pipeline = daemon.pipeline
        if pipeline is not None and sum(pipeline.counters.outcomes.values()) >= expected:
            return
        await asyncio.sleep(0.1)
    raise TimeoutError("the simulated reader did not finish in time")
