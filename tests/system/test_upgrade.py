"""An upgrade in the field: a box running the previous commit's build, with registrations
waiting for the ONSS, is upgraded by `install.sh --upgrade` from a wheelhouse (no
internet); every waiting registration is kept and delivered by the new release.

BADGE_GATEWAY_UPGRADE_FROM names the release to upgrade from (default HEAD~1).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from tests.system import box as guest
from tests.system.conftest import record
from tests.system.image import WORKERS, Image, build_image
from tests.system.machine import Machine

UPGRADE_FROM = os.environ.get("BADGE_GATEWAY_UPGRADE_FROM", "HEAD~1")


@pytest.mark.timeout(1800)
def test_an_upgrade_keeps_waiting_registrations_and_delivers_them(
    image: Image, vm_workdir: Path
) -> None:
    old = build_image(
        vm_workdir / "previous",
        ref=UPGRADE_FROM,
        extra={"new-release": image.source, "new-wheels": image.wheels},
    )
    box = Machine(old, vm_workdir, name="upgrade")
    box.boot()
    try:
        guest.wait_ready(box)
        uids = [worker.uid for worker in WORKERS[20:25]]
        outcomes = guest.tap_over_socket(box, uids)
        assert [outcome["kind"] for outcome in outcomes] == ["registered"] * len(uids)
        waiting = guest.registrations(box)
        assert {row["delivery"] for row in waiting} == {"pending"}  # the clock is not synced

        started = time.monotonic()
        result = box.call(
            "run",
            argv=["./install.sh", "--upgrade", "--wheels", "/root/new-wheels"],
            cwd="/root/new-release",
            timeout=900,
        )
        took = time.monotonic() - started
        assert result["rc"] == 0, result["stderr"][-3000:]
        record(f"upgrade in the VM (TCG) with install.sh --upgrade --wheels: {took:.0f} s")
        release = box.sh("readlink", "/opt/badge-gateway/venv").strip()
        assert release != old.release
        guest.wait_ready(box)
        backups = box.sh("ls", "/var/lib/badge-gateway/backups").split()
        assert backups, "no backup of the journal before its migration"

        kept = guest.registrations(box)
        assert [row["id"] for row in kept] == [row["id"] for row in waiting]
        box.call("ntp")
        box.sh("systemctl", "restart", "systemd-timesyncd")
        delivered = box.wait_for(
            "every kept registration delivered by the new release",
            lambda: all(row["delivery"] == "delivered" for row in guest.registrations(box)),
            timeout=180,
            every=3,
        )
        assert delivered
        assert len(guest.sim_registrations(box)) == len(waiting)
        assert guest.evidence_verifies(box)
    finally:
        box.shutdown()
