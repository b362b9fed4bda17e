"""A construction site as installed (issue 16): the box's technician switches its site to
Checkinatwork and restarts it; systemd starts it under the shipped hardened unit, and the
presences are signed (lxml, signxml, cryptography under the unit's system-call filter and
MemoryDenyWriteExecute) and delivered to the simulator's SOAP service inside the VM."""

from __future__ import annotations

import time

from tests.support import DECLARATION, EMPLOYER
from tests.vm import box as guest
from tests.vm.image import SIM_DIR, SIM_PORT, WORKERS
from tests.vm.machine import Machine

CONFIG = "/etc/badge-gateway/gateway.toml"

_REWRITE = """
import sys
path, text = sys.argv[1], sys.argv[2]
with open(path, "w", encoding="utf-8") as file:  # in place: owner and mode kept
    print(file.write(text))
"""


def as_a_construction_site(config: str) -> str:
    """The technician's edit: the channel, and the service's address and certificate."""
    site = config.replace("[site]\n", '[site]\nchannel = "checkinatwork"\n', 1)
    uplink = (
        "[uplink]\n"
        f'presence_url = "https://127.0.0.1:{SIM_PORT}/PresenceRegistration/v1"\n'
        f'certificate = "{SIM_DIR}/client-cert.pem"\n'
    )
    edited = site.replace("[uplink]\n", uplink, 1)
    assert edited.count("checkinatwork") == 1 and "presence_url" in edited, config
    return edited


def test_a_construction_site_registers_each_person_once_a_day_under_the_hardened_unit(
    machine: Machine,
) -> None:
    machine.boot()
    guest.wait_ready(machine)
    guest.synchronise_clock(machine, time.time() - machine.call("ping")["time"])  # nothing held
    config = machine.sh("cat", CONFIG)
    edited = as_a_construction_site(config)
    assert machine.python(_REWRITE, CONFIG, edited) == len(edited)
    machine.sh("systemctl", "restart", guest.UNIT, timeout=240)  # Type=notify: until READY
    assert machine.show(guest.UNIT, "ActiveState")["ActiveState"] == "active"

    first, second = WORKERS[0], WORKERS[1]
    outcomes = [guest.tap_at_reader(machine, badge.uid)["outcome"] for badge in (first, second)]
    time.sleep(1.5)  # past the debounce: a new tap, not a bounce of the first
    outcomes.append(guest.tap_at_reader(machine, first.uid)["outcome"])
    assert outcomes == ["registered", "registered", "already-today"]

    rows = machine.wait_for(
        "both presences delivered",
        lambda: (
            (rows := guest.registrations(machine))
            and len(rows) == 2
            and all(row["delivery"] == "delivered" for row in rows)
            and rows
        ),
        timeout=180,
        every=2,
    )
    assert [row["direction"] for row in rows] == ["PRESENCE", "PRESENCE"]
    presences = guest.sim_presences(machine)
    assert sorted(p["inss"] for p in presences) == sorted([first.niss, second.niss])
    for presence in presences:
        assert presence["workplace"] == DECLARATION
        assert int(presence["company_id"]) == int(EMPLOYER)  # an xs:long: no leading 0
        assert presence["times_received"] == 1
    state = machine.show(guest.UNIT, "ActiveState", "NRestarts")
    assert state["ActiveState"] == "active" and state["NRestarts"] == "0", state
    assert guest.evidence_verifies(machine)
