"""What the tests read off a running box, through the guest agent: the service's state as
systemd sees it, the journal's rows, the evidence, the simulator's registrations."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

from tests.vm.image import SIM_DIR, SIM_PORT
from tests.vm.machine import Machine, MachineError

UNIT = "badge-gateway.service"
JOURNAL = "/var/lib/badge-gateway/journal.db"

_READ_JOURNAL = f"""
import json, sqlite3, sys
conn = sqlite3.connect("file:{JOURNAL}?mode=ro", uri=True)
conn.row_factory = sqlite3.Row
print(json.dumps([dict(row) for row in conn.execute(sys.argv[1])]))
"""

_SIM_LIST = f"""
import json, ssl, sys, urllib.request
context = ssl.create_default_context(cafile="{SIM_DIR}/ca.pem")
url = "https://127.0.0.1:{SIM_PORT}/_sim/" + sys.argv[1]
with urllib.request.urlopen(url, context=context, timeout=20) as answer:
    print(json.dumps(json.load(answer)[sys.argv[1]]))
"""


@dataclass(frozen=True)
class Ready:
    guest_uptime_s: float  # the kernel's boot to the daemon's READY=1
    host_s: float  # QEMU started to READY seen by the host


def wait_ready(box: Machine, *, timeout: float = 180.0, after_restarts: int = 0) -> Ready:
    """Wait for systemd to report the daemon active: with Type=notify, after READY=1."""

    def ready() -> dict[str, str] | None:
        state = box.show(
            UNIT, "ActiveState", "SubState", "NRestarts", "ActiveEnterTimestampMonotonic"
        )
        if state["ActiveState"] == "active" and int(state["NRestarts"]) >= after_restarts:
            return state
        return None

    state = box.wait_for(f"{UNIT} active", ready, timeout=timeout)
    return Ready(
        guest_uptime_s=int(state["ActiveEnterTimestampMonotonic"]) / 1e6,
        host_s=time.monotonic() - box.started_at,
    )


def journal_rows(box: Machine, sql: str) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = box.python(_READ_JOURNAL, sql)
    return rows


def registrations(box: Machine) -> list[dict[str, Any]]:
    return journal_rows(
        box,
        "SELECT seq, id, badge_uid, reader, direction, wall_ns, boot_id, clock_synced,"
        " delivery, onss_id, sent_registration_date, time_uncertain, possibly_duplicated"
        " FROM registration_rows ORDER BY seq",
    )


def evidence(box: Machine) -> list[dict[str, Any]]:
    rows = journal_rows(box, "SELECT seq, kind, details, boot_id FROM evidence ORDER BY seq")
    return [{**row, "details": json.loads(row["details"])} for row in rows]


def sim_registrations(box: Machine) -> list[dict[str, Any]]:
    """What the simulator's REST service (CIaO) holds."""
    rows: list[dict[str, Any]] = box.python(_SIM_LIST, "registrations")
    return rows


def sim_presences(box: Machine) -> list[dict[str, Any]]:
    """What the simulator's SOAP service (Checkinatwork) holds."""
    rows: list[dict[str, Any]] = box.python(_SIM_LIST, "presences")
    return rows


def synchronise_clock(box: Machine, offset: float) -> None:
    """systemd-timesyncd against the agent's NTP server, which serves the guest's time plus
    `offset` seconds (the host's true time); until the box says it is synchronised."""
    box.call("ntp", offset=offset)
    box.sh("systemctl", "restart", "systemd-timesyncd")
    box.wait_for(
        "timesyncd synchronised",
        lambda: (
            box.call("run", argv=["test", "-e", "/run/systemd/timesync/synchronized"])["rc"] == 0
        ),
        timeout=90,
    )


def tap_over_socket(box: Machine, uids: list[str], pause: float = 0.0) -> list[dict[str, Any]]:
    """Taps through the control socket; each tap's outcome, in order."""
    return [
        reply["reply"]["outcome"]
        for reply in box.stream("taps", uids=uids, pause=pause)
        if "tap" in reply
    ]


def feedback(line: str) -> dict[str, Any] | None:
    """The log output's line for one tap, as journald forwards it to the console."""
    start = line.find("{")
    if start < 0 or '"outcome"' not in line:
        return None
    try:
        fields: dict[str, Any] = json.loads(line[start:])
    except ValueError:
        return None
    return fields if "badge" in fields else None


def tap_at_reader(box: Machine, uid: str, *, timeout: float = 60.0) -> dict[str, Any]:
    """A badge held to the UART reader; the feedback the worker got, read off the console."""
    mark = box.console_mark()
    box.badge(uid)
    line = box.wait_console(f'"badge": "{uid}"', since=mark, timeout=timeout)
    fields = feedback(line)
    if fields is None:
        raise MachineError(f"not a feedback line: {line}")
    return fields


def evidence_verifies(box: Machine) -> bool:
    reply = box.call("run", argv=["badge-gateway", "evidence", "verify"], timeout=180)
    return bool(reply["rc"] == 0)
