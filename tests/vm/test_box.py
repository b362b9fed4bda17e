"""The box as installed, one machine through its life: first boot without time
synchronisation and with a clock an hour slow, synchronisation arriving, a hung daemon, a
full disk, a clean reboot.

The scenarios run in this order on one VM (a boot costs 20-40 s under emulation); each
leaves the box as a technician would find it, and each asserts its own behaviour.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest

from tests.vm import box as guest
from tests.vm.conftest import record
from tests.vm.image import WORKERS, Image
from tests.vm.machine import Machine

FILL = "/var/lib/filler"
CLOCK_OFF_S = -3600.0  # the box's clock at first boot: an hour slow, no network to fix it


@pytest.fixture(scope="module")
def box(image: Image, vm_workdir: Path) -> Iterator[Machine]:
    machine = Machine(image, vm_workdir, name="box")
    machine.boot(clock_offset_s=CLOCK_OFF_S)
    try:
        yield machine
    finally:
        if machine.running:
            machine.power_cut()


def test_first_boot_is_ready_and_taps_are_registered_but_held_until_the_clock_is_synced(
    box: Machine,
) -> None:
    ready = guest.wait_ready(box)
    record(
        f"first boot to READY: {ready.guest_uptime_s:.1f} s of guest uptime,"
        f" {ready.host_s:.1f} s from power on (TCG)"
    )
    status = box.sh("systemctl", "status", guest.UNIT, "--no-pager", check=False)
    assert re.search(r'Status: ".+"', status), status
    exposure = box.sh("systemd-analyze", "security", guest.UNIT, "--no-pager", check=False)
    score = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", exposure)
    assert score, exposure
    record(f"systemd-analyze security as installed, in the VM: {score.group(1)}")
    assert float(score.group(1)) < 3.0

    at_reader = [guest.tap_at_reader(box, worker.uid) for worker in WORKERS[:3]]
    assert [fields["outcome"] for fields in at_reader] == ["registered"] * 3
    over_socket = guest.tap_over_socket(box, [worker.uid for worker in WORKERS[3:6]])
    assert [outcome["kind"] for outcome in over_socket] == ["registered"] * 3

    rows = guest.registrations(box)
    assert [row["badge_uid"] for row in rows] == [worker.uid for worker in WORKERS[:6]]
    assert {row["reader"] for row in rows[:3]} == {"door-uart"}
    assert not any(row["clock_synced"] for row in rows)
    for row in rows:  # stored with the box's own (wrong) time, and marked so
        assert abs(row["wall_ns"] / 1e9 - time.time() - CLOCK_OFF_S) < 120
    # Held, not lost: the uplink waits for the clock before it sends a time to the ONSS,
    # and `systemctl status` says so.
    status_text = box.wait_for(
        "the STATUS= line counts the waiting registrations",
        lambda: (
            (text := box.show(guest.UNIT, "StatusText")["StatusText"]).startswith(
                "6 registered, 6 waiting"
            )
            and text
        ),
        timeout=60,
    )
    assert "held until the clock is synchronised" in status_text, status_text
    assert "readers 1/1 up, clock NOT synced" in status_text, status_text
    assert {row["delivery"] for row in guest.registrations(box)} == {"pending"}
    assert guest.sim_registrations(box) == []


def test_synchronisation_arrives_and_held_registrations_go_with_their_tap_times(
    box: Machine,
) -> None:
    before = guest.registrations(box)
    offset = time.time() - box.call("ping")["time"]  # the host's clock is the true time
    assert abs(offset + CLOCK_OFF_S) < 120
    guest.synchronise_clock(box, offset)
    rows = box.wait_for(
        "every registration delivered",
        lambda: (
            (rows := guest.registrations(box))
            and all(row["delivery"] == "delivered" for row in rows)
            and rows
        ),
        timeout=120,
        every=2,
    )
    assert len(rows) == len(before)
    sent = {item["id"]: item for item in guest.sim_registrations(box)}
    assert len(sent) == len(rows)
    for row in rows:
        assert row["onss_id"] in sent
        assert not row["time_uncertain"]
        # The time sent is the tap's true time, re-derived from CLOCK_BOOTTIME and the
        # synchronised clock (same boot), not the hour-slow time the tap was stored with.
        sent_s = datetime.strptime(row["sent_registration_date"], "%Y-%m-%dT%H:%M:%S%z")
        assert abs(sent_s.timestamp() - (row["wall_ns"] / 1e9 + offset)) < 3, row
    assert abs(time.time() - box.call("ping")["time"]) < 5, "timesyncd set the clock"
    # a tap now is registered as synchronised
    (outcome,) = guest.tap_over_socket(box, [WORKERS[6].uid])
    assert outcome["kind"] == "registered"
    assert guest.registrations(box)[-1]["clock_synced"] == 1


def test_a_hung_daemon_is_restarted_by_the_watchdog(box: Machine) -> None:
    state = box.show(guest.UNIT, "MainPID", "NRestarts", "WatchdogUSec")
    watchdog_s = int(state["WatchdogUSec"]) / 1e6 if state["WatchdogUSec"].isdigit() else 30.0
    box.sh("sh", "-c", f"kill -STOP {state['MainPID']}")
    stopped = time.monotonic()
    guest.wait_ready(box, timeout=watchdog_s + 90, after_restarts=int(state["NRestarts"]) + 1)
    restarted_after = time.monotonic() - stopped
    record(f"watchdog: a SIGSTOPped daemon active again after {restarted_after:.0f} s")
    assert box.show(guest.UNIT, "MainPID")["MainPID"] != state["MainPID"]
    log = box.sh("journalctl", "-u", guest.UNIT, "--no-pager", "-o", "cat")
    assert "Watchdog timeout" in log
    (outcome,) = guest.tap_over_socket(box, [WORKERS[7].uid])
    assert outcome["kind"] == "registered"


def test_a_full_disk_refuses_taps_with_the_distinct_message_and_recovers(box: Machine) -> None:
    box.call("fill_disk", dir="/var/lib/badge-gateway", path=FILL)
    try:
        outcomes = guest.tap_over_socket(box, [WORKERS[8].uid, WORKERS[9].uid], pause=1.5)
        assert [outcome["kind"] for outcome in outcomes] == ["cannot-store"] * 2, outcomes
        assert box.show(guest.UNIT, "ActiveState")["ActiveState"] == "active"
    finally:
        box.sh("rm", "-f", FILL)
    outcome = box.wait_for(
        "a tap registered once space returned",
        lambda: guest.tap_over_socket(box, [WORKERS[10].uid])[0]["kind"] == "registered",
        timeout=60,
        every=3,
    )
    assert outcome


def test_a_clean_reboot_records_a_stop_and_a_start_under_a_new_boot_id(box: Machine) -> None:
    old_boot = box.call("ping")["boot_id"]
    box.call("run", argv=["systemctl", "reboot"], timeout=30)
    box.wait_off(timeout=120)
    box.boot()
    guest.wait_ready(box)
    new_boot = box.call("ping")["boot_id"]
    assert new_boot != old_boot
    kinds = [(entry["kind"], entry["boot_id"]) for entry in guest.evidence(box)]
    stop = kinds.index(("daemon-stop", old_boot))
    assert ("daemon-start", new_boot) in kinds[stop:]
    assert not any(kind == "unclean-stop" for kind, _ in kinds[stop:])
    assert guest.evidence_verifies(box)
