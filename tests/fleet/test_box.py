"""The box's side of the fleet link, as deployed: `badge-gateway run` as a real process,
a real Mosquitto (TLS, passwords, ACL), the employer's side as a `fleet` client.

Every wait is bounded; a message that must never come is waited for a fixed time.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from gateway.evidence import Entry, verify_chain
from gateway.fleet.connection import connected, publish_and_wait
from gateway.fleet.signed import Command, command_document, register_document
from tests.fleet.broker import Inbox, MosquittoBroker, listening
from tests.fleet.conftest import BridgedBrokers
from tests.support import badges, daemon_process, write_badge_file, write_config

BOX = "badge-gateway/site-a/box-a1"
EVIDENCE = f"{BOX}/evidence"
OUTAGE_S = 120.0


def mqtt_section(broker: MosquittoBroker, state: Path, **extra: Any) -> dict[str, Any]:
    password = state / "mqtt-password"
    password.write_text(broker.passwords["box-a1"] + "\n")
    password.chmod(0o600)
    return {
        "enabled": True,
        "brokers": [broker.url],
        "site_id": "site-a",
        "box_id": "box-a1",
        "password": str(password),
        "ca_file": str(broker.ca_file),
        "keepalive_seconds": 5,
        "status_interval_seconds": 5,
        **extra,
    }


def box_config(broker: MosquittoBroker, state: Path, workers: int = 3, **extra: Any) -> Path:
    write_badge_file(state / "badges.csv", badges(workers))
    return write_config(state, mqtt=mqtt_section(broker, state, **extra))


def status_of(payload: bytes | bytearray) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(payload)
    return document


def test_a_box_announces_itself_its_status_and_its_evidence(
    broker: MosquittoBroker, state: Path
) -> None:
    [worker, *_] = badges(3)
    config = box_config(broker, state)
    with listening("employer", broker.access("fleet")) as fleet:
        fleet.subscribe(f"{BOX}/#")
        with daemon_process(state, config) as daemon:
            first = fleet.until(f"{BOX}/status")
            outcome = daemon.tap(worker.uid)
            messages = first + fleet.until(f"{BOX}/status", timeout=20)  # the one after the tap
            local = daemon.request({"cmd": "status"})["status"]

    assert [m.payload for m in first if m.topic == f"{BOX}/availability"] == [b"online"]
    status = status_of(first[-1].payload)
    assert outcome["kind"] == "registered"
    assert status["site"] == "site-a" and status["box"] == "box-a1"
    assert status["badges"]["workers"] == 3
    assert status["uplink"]["enabled"] is False
    assert local["fleet"]["state"] == "online"
    entries = [Entry.from_json(json.loads(m.payload)) for m in messages if m.topic == EVIDENCE]
    kinds = [entry.kind for entry in entries]
    assert "daemon-start" in kinds and "registration" in kinds
    assert [entry.seq for entry in entries] == list(range(1, len(entries) + 1))
    assert verify_chain(entries).ok
    national_numbers = [badge.niss.encode() for badge in badges(3)]
    for message in messages:
        assert not any(niss in message.payload for niss in national_numbers), message.topic


def test_a_killed_box_goes_offline_and_comes_back_online_with_a_fresh_status(
    broker: MosquittoBroker, state: Path
) -> None:
    config = box_config(broker, state)  # keepalive 5 s
    with listening("employer", broker.access("fleet")) as fleet:
        fleet.subscribe(f"{BOX}/availability")
        fleet.subscribe(f"{BOX}/status")
        with daemon_process(state, config) as daemon:
            before = status_of(fleet.until(f"{BOX}/status")[-1].payload)
            time.sleep(1.1)  # the next status is stamped a later second
            daemon.kill()
            killed_at = time.monotonic()
            offline = fleet.wait_for(f"{BOX}/availability", timeout=7.5)
            took = time.monotonic() - killed_at
            daemon.start()
            messages = fleet.until(f"{BOX}/status")

    assert offline.payload == b"offline" and offline.retain is False  # live, from the will
    assert took <= 1.5 * 5
    assert [m.payload for m in messages if m.topic.endswith("/availability")] == [b"online"]
    after = status_of(messages[-1].payload)
    assert after["published_utc"] > before["published_utc"]


def test_a_retained_status_and_availability_wait_for_a_tool_that_connects_later(
    broker: MosquittoBroker, state: Path
) -> None:
    config = box_config(broker, state)
    with daemon_process(state, config) as daemon:
        daemon.request({"cmd": "status"})
        time.sleep(1.0)
        daemon.stop()
    with listening("late-employer", broker.access("fleet")) as fleet:
        fleet.subscribe(f"{BOX}/+")
        seen = {m.topic: m for m in fleet.received_on(f"{BOX}/availability", 2.0)}

    # A clean stop says "offline" itself, retained, before it disconnects.
    assert seen[f"{BOX}/availability"].payload == b"offline"
    assert seen[f"{BOX}/availability"].retain


# --- signed badge registers from the fleet ------------------------------------------------

EMPLOYER_KEY = Ed25519PrivateKey.generate()
OTHER_KEY = Ed25519PrivateKey.generate()
BADGES_TOPIC = "badge-gateway/site-a/badges"


def public_hex(key: Ed25519PrivateKey) -> str:
    return key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw).hex()


def register_text(tmp: Path, count: int, extra_line: str = "") -> str:
    text = write_badge_file(tmp, badges(count)).read_text()
    return text + extra_line


def publish_register(broker: MosquittoBroker, payload: bytes) -> None:
    with connected("employer-tool", broker.access("fleet")) as client:
        publish_and_wait(client, BADGES_TOPIC, payload, retain=True)


def next_event(fleet: Inbox, *kinds: str, timeout: float = 15.0) -> dict[str, Any]:
    """The next event of one of `kinds` (the evidence's own events pass by meanwhile)."""
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        found: dict[str, Any] = json.loads(fleet.wait_for(f"{BOX}/events", timeout=left).payload)
        if found["kind"] in kinds:
            return found
    raise AssertionError(f"no {kinds} event within {timeout:g} s")


REGISTER_EVENTS = ("register-applied", "register-refused")


def test_a_signed_register_is_applied_and_every_bad_one_refused_with_its_reason(
    broker: MosquittoBroker, state: Path, tmp_path: Path
) -> None:
    config = box_config(broker, state, fleet_public_key=public_hex(EMPLOYER_KEY))
    five = register_text(tmp_path / "five.csv", 5)
    new_worker = badges(5)[4]
    refusals = [
        (register_document(five, "site-a", 9, OTHER_KEY), "signed by"),
        (register_document(five, "site-a", 4, EMPLOYER_KEY), "not newer than the applied 5"),
        (
            register_document(
                register_text(tmp_path / "bad.csv", 5, "04ZZ,1,2,x\n"), "site-a", 6, EMPLOYER_KEY
            ),
            "v6:7: expected 8 fields, got 4",
        ),
        (
            register_document(register_text(tmp_path / "none.csv", 0), "site-a", 7, EMPLOYER_KEY),
            "no worker",
        ),
    ]
    with listening("employer", broker.access("fleet")) as fleet:
        fleet.subscribe(f"{BOX}/events")
        with daemon_process(state, config) as daemon:
            unknown = daemon.tap(new_worker.uid)
            publish_register(broker, register_document(five, "site-a", 5, EMPLOYER_KEY))
            applied = next_event(fleet, *REGISTER_EVENTS)
            known = daemon.tap(new_worker.uid)
            refused, shown = [], []
            for payload, _ in refusals:
                publish_register(broker, payload)
                refused.append(next_event(fleet, *REGISTER_EVENTS))
                shown.append(daemon.request({"cmd": "status"})["status"]["fleet"])
            status = daemon.request({"cmd": "status"})["status"]
            daemon.stop()
            daemon.start()  # the fleet's register survives a restart; the retained bad one
            after_restart = daemon.request({"cmd": "status"})["status"]  # is refused again

    assert unknown["kind"] == "unknown-badge"
    assert applied["kind"] == "register-applied" and applied["details"]["version"] == 5
    assert known["kind"] == "registered"
    for event, fleet_status, (_, reason) in zip(refused, shown, refusals, strict=True):
        assert event["kind"] == "register-refused"
        assert reason in event["details"]["reason"], event
        assert reason in fleet_status["register_error"], fleet_status
    assert status["badges"]["workers"] == 5  # the good register kept through every refusal
    assert after_restart["badges"]["workers"] == 5
    assert after_restart["badges"]["file"].endswith("badges.fleet.csv")


def test_a_fleet_register_edited_on_the_box_is_not_trusted_at_the_next_start(
    broker: MosquittoBroker, state: Path, tmp_path: Path
) -> None:
    config = box_config(broker, state, fleet_public_key=public_hex(EMPLOYER_KEY))
    five = register_text(tmp_path / "five.csv", 5)
    with listening("employer", broker.access("fleet")) as fleet:
        fleet.subscribe(f"{BOX}/events")
        with daemon_process(state, config) as daemon:
            publish_register(broker, register_document(five, "site-a", 5, EMPLOYER_KEY))
            assert next_event(fleet, *REGISTER_EVENTS)["kind"] == "register-applied"
            daemon.stop()
            fleet_file = state / "badges.fleet.csv"
            fleet_file.write_text(fleet_file.read_text() + "# edited\n")
            daemon.start()
            status = daemon.request({"cmd": "status"})["status"]

    assert status["badges"]["file"] == str(state / "badges.csv")
    assert "changed on the box" in daemon.log()


# --- the broker away, the evidence kept off the box ----------------------------------------


def archive_process(
    broker: MosquittoBroker, directory: Path, state: Path
) -> subprocess.Popen[bytes]:
    password = state / "fleet-password"
    password.write_text(broker.passwords["fleet"])
    password.chmod(0o600)
    command = [
        sys.executable, "-m", "gateway", "fleet", "archive", "--dir", str(directory),
        "--client-id", "archive-under-test", "--broker", broker.url,
        "--ca-file", str(broker.ca_file), "--username", "fleet", "--password-file", str(password),
    ]  # fmt: skip
    log_path = state / "archive.log"
    with log_path.open("ab") as log:
        process = subprocess.Popen(command, stdout=log, stderr=log)
    deadline = time.monotonic() + 20
    while "archive: subscribed" not in log_path.read_text():  # its session exists from now on
        assert time.monotonic() < deadline, log_path.read_text()
        assert process.poll() is None, log_path.read_text()
        time.sleep(0.1)
    return process


def archived_seqs(directory: Path) -> list[int]:
    path = directory / "site-a" / "box-a1" / "evidence.jsonl"
    if not path.exists():
        return []
    return [json.loads(line)["seq"] for line in path.read_text().splitlines()]


def wait_until_archived(directory: Path, head: int, timeout: float) -> list[int]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        seqs = archived_seqs(directory)
        if seqs and seqs[-1] >= head:
            return seqs
        time.sleep(0.2)
    raise AssertionError(f"archived up to {archived_seqs(directory)[-1:]}, not {head}")


@pytest.mark.slow
def test_taps_go_on_while_the_broker_is_down_and_the_archive_gets_every_entry_once(
    broker: MosquittoBroker, state: Path, tmp_path: Path
) -> None:
    workers = badges(30)
    write_badge_file(state / "badges.csv", workers)
    config = write_config(state, mqtt=mqtt_section(broker, state))
    archive_dir = tmp_path / "archive"
    archive = archive_process(broker, archive_dir, state)
    try:
        with daemon_process(state, config) as daemon:
            for worker in workers[:10]:
                daemon.tap(worker.uid)
            broker.stop()
            taps = []
            for worker in workers[10:]:
                started = time.monotonic()
                taps.append((daemon.tap(worker.uid)["kind"], time.monotonic() - started))
                time.sleep(OUTAGE_S / 20)  # two minutes of a door without its broker
            during = daemon.request({"cmd": "status"})["status"]
            broker.start()
            head = daemon.request({"cmd": "status"})["status"]["evidence_head"]["seq"]
            # The box and the archive try again after at most a minute each (and jitter).
            seqs = wait_until_archived(archive_dir, head, timeout=2 * 60 * 1.2 + 10)
            daemon.stop()
    finally:
        archive.terminate()
        archive.wait(timeout=20)
    verified = subprocess.run(
        [sys.executable, "-m", "gateway", "evidence", "verify", "--archive",
         str(archive_dir / "site-a" / "box-a1")],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip

    assert [kind for kind, _ in taps] == ["registered"] * 20
    assert max(seconds for _, seconds in taps) < 1.0
    assert during["fleet"]["state"] in ("waiting", "connecting")
    assert seqs[:head] == list(range(1, head + 1))  # every entry, once, in order
    assert verified.returncode == 0, verified.stdout + verified.stderr


def test_a_box_on_a_site_broker_reaches_the_tools_on_the_central_one(
    bridged_brokers: BridgedBrokers, state: Path
) -> None:
    site, central = bridged_brokers.site, bridged_brokers.central
    [worker, *_] = badges(3)
    config = box_config(site, state)
    with listening("employer", central.access("fleet")) as fleet:
        fleet.subscribe(f"{BOX}/#")
        with daemon_process(state, config) as daemon:
            first = fleet.until(f"{BOX}/status", timeout=20)
            daemon.tap(worker.uid)
            later = fleet.until(f"{BOX}/status", timeout=20)

    entries = [json.loads(m.payload) for m in first + later if m.topic == EVIDENCE]
    assert [m.payload for m in first if m.topic == f"{BOX}/availability"] == [b"online"]
    assert "registration" in [entry["kind"] for entry in entries]
    assert [entry["seq"] for entry in entries] == list(range(1, len(entries) + 1))


def test_signed_commands_reload_the_register_and_publish_the_status_once_each(
    broker: MosquittoBroker, state: Path
) -> None:
    write_badge_file(state / "badges.csv", badges(3))
    section = mqtt_section(broker, state, fleet_public_key=public_hex(EMPLOYER_KEY))
    config = write_config(state, mqtt=section, badges={"poll_seconds": 3600})
    reload = command_document(
        Command.RELOAD, "site-a", "box-a1", EMPLOYER_KEY, timedelta(minutes=5)
    )
    status_now = command_document(
        Command.PUBLISH_STATUS, "site-a", None, EMPLOYER_KEY, timedelta(minutes=5)
    )
    commands = ("command-applied", "command-refused")
    with listening("employer", broker.access("fleet")) as fleet:
        fleet.subscribe(f"{BOX}/#")
        with (
            daemon_process(state, config),
            connected("tool", broker.access("fleet")) as tool,
        ):
            fleet.until(f"{BOX}/status")
            write_badge_file(state / "badges.csv", badges(5))  # not polled: only a reload sees it
            publish_and_wait(tool, "badge-gateway/site-a/commands/box-a1", reload)
            reloaded = next_event(fleet, *commands)
            publish_and_wait(tool, "badge-gateway/site-a/commands", status_now)
            asked_at = time.monotonic()
            next_event(fleet, *commands)
            status = status_of(fleet.wait_for(f"{BOX}/status", timeout=5).payload)
            took = time.monotonic() - asked_at
            publish_and_wait(tool, "badge-gateway/site-a/commands/box-a1", reload)  # replayed
            replayed = next_event(fleet, *commands)

    assert reloaded["kind"] == "command-applied" and reloaded["details"]["command"] == "reload"
    assert status["badges"]["workers"] == 5
    assert took < 5  # not the next periodic status
    assert replayed["kind"] == "command-refused"
    assert "already" in replayed["details"]["reason"]


def test_a_box_that_stops_answering_goes_offline_within_one_and_a_half_keepalives(
    broker: MosquittoBroker, state: Path
) -> None:
    """A frozen box (SIGSTOP: its socket stays open, silent, as after a power cut behind a
    NAT) is declared offline by the broker's keepalive, not by a closed connection."""
    config = box_config(broker, state)  # keepalive 5 s
    with listening("employer", broker.access("fleet")) as fleet:
        fleet.subscribe(f"{BOX}/availability")
        with daemon_process(state, config) as daemon:
            assert fleet.wait_for(f"{BOX}/availability").payload == b"online"
            daemon.signal(signal.SIGSTOP)
            frozen_at = time.monotonic()
            try:
                offline = fleet.wait_for(f"{BOX}/availability", timeout=15)
                took = time.monotonic() - frozen_at
            finally:
                daemon.signal(signal.SIGCONT)

    assert offline.payload == b"offline"
    # MQTT says 1.5 keepalives; Debian's Mosquitto 2.0.11 took 10.5-11.2 s here (about 2.1):
    # it looks at keepalives less often than that. docs/fleet.md says so.
    assert 5 <= took <= 2.5 * 5
