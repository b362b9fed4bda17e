"""A construction site end to end (issue 16): `badge-gateway run` as a real process, its
Checkinatwork registrations sent over real TLS to the simulator's SOAP service, which
checks each request against the official XSD and its WS-Security signature."""

from __future__ import annotations

import json
import sqlite3
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from gateway.checkinatwork import client_reference
from gateway.errors import ControlError
from gateway.identifiers import make_niss
from onss_sim.pki import make_client_identity
from onss_sim.testing import SimulatorProcess
from tests.support import (
    DECLARATION,
    EMPLOYER,
    DaemonProcess,
    daemon_process,
    wait_for,
    wait_until_delivered,
    write_config,
)

BRUSSELS = ZoneInfo("Europe/Brussels")
SECOND_SITE = "WP0000000002"  # another declaration served at the same entrance
UNKNOWN_AT_THE_ONSS = "WP0000000404"  # in the box's configuration, unknown to the service
LIBFAKETIME = sorted(Path("/usr/lib").glob("*/faketime/libfaketime.so.1"))


@dataclass(frozen=True)
class Person:
    uid: str
    name: str
    niss: str = ""
    limosa: str = ""
    declaration: str = ""


def people(count: int, *, first: int = 0) -> list[Person]:
    return [
        Person(
            f"0C{first + index:06X}",
            f"Worker {index}",
            niss=make_niss("850730", 300 + first + index),
        )
        for index in range(count)
    ]


def write_register(path: Path, persons: Sequence[Person]) -> None:
    lines = ["badge_uid,niss,limosa,employer,name,language,capacity,declaration"]
    lines += [
        f"{p.uid},{p.niss},{p.limosa},{EMPLOYER},{p.name},nl,employee,{p.declaration}"
        for p in persons
    ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def site_config(state: Path, sim: SimulatorProcess, **uplink: Any) -> Path:
    (state / "synchronized").touch()  # the clock is synchronised: nothing is held for it
    return write_config(
        state,
        site={
            "name": "Chantier Gare",
            "channel": "checkinatwork",
            "declarations": [SECOND_SITE, UNKNOWN_AT_THE_ONSS],
        },
        uplink={
            "enabled": True,
            "presence_url": sim.soap_url,
            "private_key": str(sim.client_key_file),
            "certificate": str(sim.client_cert_file),
            "ca_file": str(sim.ca_file),
            "backoff_initial_seconds": 0.05,
            "backoff_max_seconds": 1.0,
            "read_timeout_seconds": 2.0,
            **uplink,
        },
    )


@pytest.fixture(scope="module")
def simulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimulatorProcess]:
    workplaces = [f"{SECOND_SITE}:{EMPLOYER}"]
    with SimulatorProcess(tmp_path_factory.mktemp("onss"), workplaces=workplaces) as sim:
        yield sim


@pytest.fixture
def sim(simulator: SimulatorProcess) -> SimulatorProcess:
    simulator.reset()
    simulator.add_workplace(SECOND_SITE, [EMPLOYER])
    simulator.configure(validation_delay_s=0)
    return simulator


def rows(journal: Path, sql: str, *args: Any) -> list[sqlite3.Row]:
    conn = sqlite3.connect(f"file:{journal}?mode=ro", uri=True)
    conn.row_factory = sqlite3.Row
    try:
        return list(conn.execute(sql, args))
    finally:
        conn.close()


def registrations(state: Path) -> dict[str, sqlite3.Row]:
    """The journal's registrations by badge uid (one each in these tests)."""
    found = rows(state / "journal.db", "SELECT * FROM registration_rows ORDER BY seq")
    return {row["badge_uid"]: row for row in found}


def delivered_or_refused(state: Path, uid: str) -> Callable[[], bool]:
    return lambda: registrations(state)[uid]["delivery"] != "pending"


def settled(state: Path, count: int) -> Callable[[], bool]:
    def check() -> bool:
        regs = rows(state / "journal.db", "SELECT delivery FROM registration_rows")
        return len(regs) == count and all(r["delivery"] != "pending" for r in regs)

    return check


def test_a_day_on_a_construction_site_registers_each_person_once(
    sim: SimulatorProcess, state: Path
) -> None:
    anna, bart = people(2)
    posted = Person("0C0000FF", "Piotr Nowak", limosa="LIM-2026-000123")
    chef = Person("0C0000EE", "Chef", niss=make_niss("790101", 77), declaration=SECOND_SITE)
    crew = [anna, bart, posted, chef]
    write_register(state / "badges.csv", crew)
    with daemon_process(state, site_config(state, sim)) as daemon:
        for round_ in range(3):  # arriving, back from a break, back from lunch
            for person in crew:
                outcome = daemon.tap(person.uid)
                expected = "registered" if round_ == 0 else "already-today"
                assert outcome["kind"] == expected, (person, outcome)
                assert outcome["direction"] == "PRESENCE"
        wait_until_delivered(daemon, time.monotonic() + 30)
        attempts = rows(state / "journal.db", "SELECT outcome FROM tap_attempts")
    assert [a["outcome"] for a in attempts] == ["already-today"] * 8

    today = datetime.now(BRUSSELS).date().isoformat()
    stored = registrations(state)
    at_the_onss = {p["reference"]: p for p in sim.presences()}
    assert len(at_the_onss) == 4  # one per person, whatever their taps
    for person in crew:
        row = stored[person.uid]
        assert (row["direction"], row["delivery"]) == ("PRESENCE", "delivered")
        assert row["sent_registration_date"] == today
        presence = at_the_onss[client_reference(uuid.UUID(row["id"]))]
        assert str(row["onss_id"]) == str(presence["id"])
        assert presence["date"] == today
        assert presence["workplace"] == (person.declaration or DECLARATION)
        if person.limosa:
            assert presence["limosa_id"] == person.limosa and presence["inss"] is None
        else:
            assert presence["inss"] == person.niss
            assert int(presence["company_id"]) == int(EMPLOYER)  # an xs:long: no leading 0
        assert presence["times_received"] == 1
    # every request passed the service's XSD and signature checks
    soap = [r for r in sim.requests() if r.get("operation")]
    assert soap and all(r["status"] == 200 for r in soap)


def test_each_error_code_of_an_item_rejects_that_item_alone(
    sim: SimulatorProcess, state: Path
) -> None:
    """Codes 2-6 (§5.1.3, p. 12): 4 as the service finds it (a workplace it does not know),
    the others injected for one person each; everyone else is registered."""
    crew = people(6)
    refused = dict(zip(("2", "3", "5", "6"), crew, strict=False))
    unknown_site = Person(
        "0C0000AA", "Elsewhere", niss=make_niss("800101", 5), declaration=UNKNOWN_AT_THE_ONSS
    )
    write_register(state / "badges.csv", [*crew, unknown_site])
    injected = {person.uid: code for code, person in refused.items()}
    with daemon_process(state, site_config(state, sim)) as daemon:
        for person in [*crew, unknown_site]:  # one at a time: a fault is one request's
            if person.uid in injected:
                fault = {"kind": "item_error", "inss": person.niss, "code": injected[person.uid]}
                sim.add_faults(fault)
            assert daemon.tap(person.uid)["kind"] == "registered"
            wait_for(delivered_or_refused(state, person.uid))
    stored = registrations(state)
    for code, person in {**refused, "4": unknown_site}.items():
        row = stored[person.uid]
        assert row["delivery"] == "rejected", (code, dict(row))
        [error] = json.loads(row["rejection"])["errors"]
        assert error["code"] == code
    for person in crew[4:]:
        assert stored[person.uid]["delivery"] == "delivered"
    assert len(sim.presences()) == 2  # only the two without an error


# Each system error of §7.1 (p. 33), as the uplink's state shows it while it lasts, and
# what becomes of the registration once the service answers normally again.
SYSTEM_FAULTS = [
    ("SOA-00001", "offline", "delivered"),
    ("SOA-02002", "offline", "delivered"),
    ("SOA-01001", "unauthorized", "delivered"),
    ("SOA-01002", "forbidden", "delivered"),
    ("SOA-02001", "forbidden", "delivered"),
    ("SOA-03002", "forbidden", "delivered"),
    ("SOA-03003", "forbidden", "delivered"),
    ("SOA-03004", "forbidden", "delivered"),
    ("SOA-03005", "forbidden", "delivered"),
    # the content of the item: isolated (a batch of one here) and rejected, never resent
    ("SOA-03001", None, "rejected"),
    ("SOA-03006", None, "rejected"),
    ("SOA-03007", None, "rejected"),
]


def test_each_system_error_is_handled_by_its_class(sim: SimulatorProcess, state: Path) -> None:
    crew = people(len(SYSTEM_FAULTS))
    write_register(state / "badges.csv", crew)
    journal = state / "journal.db"
    with daemon_process(state, site_config(state, sim)) as daemon:
        for (code, state_shown, outcome), person in zip(SYSTEM_FAULTS, crew, strict=True):
            sim.add_faults({"kind": "soap_fault", "code": code, "times": 2})
            assert daemon.tap(person.uid)["kind"] == "registered"
            wait_for(delivered_or_refused(state, person.uid))
            assert registrations(state)[person.uid]["delivery"] == outcome, code
            if state_shown is not None:
                transitions = rows(
                    journal,
                    "SELECT state FROM uplink_transitions WHERE cause || ' ' || detail LIKE ?",
                    f"%{code}%",
                )
                assert state_shown in {t["state"] for t in transitions}, (code, transitions)
            if outcome == "rejected":  # with the service's code, for the employer
                [error] = json.loads(registrations(state)[person.uid]["rejection"])["errors"]
                assert error["code"] == code
            sim.clear_faults()
    sent = [r for r in sim.requests() if r.get("operation") == "registerPresences"]
    assert all(r["status"] in (200, 500) for r in sent)


def test_a_certificate_the_onss_does_not_know_sends_nothing_and_loses_nothing(
    sim: SimulatorProcess, state: Path
) -> None:
    """Signed with the wrong key: refused as not authenticated (SOA-01001), shown as a
    configuration problem; the presences wait and go once the right certificate is set."""
    stranger = make_client_identity("not registered at the ONSS")
    key, certificate = state / "other-key.pem", state / "other-cert.pem"
    key.write_bytes(stranger.key_pem)
    key.chmod(0o600)
    certificate.write_bytes(stranger.cert_pem)
    crew = people(2)
    write_register(state / "badges.csv", crew)
    config = site_config(state, sim, private_key=str(key), certificate=str(certificate))
    with daemon_process(state, config) as daemon:
        for person in crew:
            assert daemon.tap(person.uid)["kind"] == "registered"

        def refused() -> dict[str, Any] | None:
            uplink = daemon.request({"cmd": "status"})["status"]["uplink"]
            return uplink if uplink.get("state") == "unauthorized" else None

        assert "SOA-01001" in str(wait_for(refused))
        daemon.stop()
    assert sim.presences() == []
    assert all(r["delivery"] == "pending" for r in registrations(state).values())
    with daemon_process(state, site_config(state, sim)) as daemon:  # the right certificate
        wait_until_delivered(daemon, time.monotonic() + 30)
    assert len(sim.presences()) == 2


@pytest.mark.slow
def test_presences_kept_past_midnight_by_an_outage_are_never_sent_with_another_date(
    sim: SimulatorProcess, state: Path, tmp_path: Path
) -> None:
    """The box and the service both run a clock set to 23:59:50 in Brussels (libfaketime):
    taps at 23:59:5x wait out an outage that ends after midnight. The service would only
    take today or tomorrow, so the box keeps them as force majeure instead of sending them
    dated the next day; a tap after midnight registers the new day, and is sent."""
    if not LIBFAKETIME:
        pytest.fail("libfaketime is needed: ./dev test installs it")
    now = datetime.now(BRUSSELS)
    start = now.replace(hour=23, minute=59, second=50, microsecond=0)
    # one offset for both processes: their clocks agree, whenever each one started
    offset = round((start - now).total_seconds())
    faked = {"LD_PRELOAD": str(LIBFAKETIME[0]), "FAKETIME": f"{offset:+d}"}
    crew = people(3)
    write_register(state / "badges.csv", crew)
    with SimulatorProcess(tmp_path / "onss-faked", environment=faked) as faked_sim:
        faked_sim.configure(validation_delay_s=0)
        faked_sim.add_faults({"kind": "outage", "seconds": 14})
        daemon = DaemonProcess(site_config(state, faked_sim), state / "control.sock", state / "log")
        daemon.wrapper = ["env", *(f"{name}={value}" for name, value in faked.items())]
        daemon.start()
        try:
            for person in crew[:2]:  # 23:59:5x: registered, kept during the outage
                assert daemon.tap(person.uid)["kind"] == "registered"
            wait_for(lambda: faked_sim.today() > start.date(), 30)
            time.sleep(1)  # the box's clock has turned too
            late = daemon.tap(crew[0].uid)  # a new day: registered again
            assert late["kind"] == "registered"
            wait_for(settled(state, 3), 30)
            presences = faked_sim.presences()
        finally:
            daemon.kill()
    stored = rows(state / "journal.db", "SELECT * FROM registration_rows ORDER BY seq")
    before, after = stored[:2], stored[2]
    for row in before:
        assert row["delivery"] == "rejected"
        [error] = json.loads(row["rejection"])["errors"]
        assert error["code"] == "day-passed" and str(start.date()) in error["description"]
    assert after["delivery"] == "delivered"
    assert [p["date"] for p in presences] == [str(start.date() + timedelta(days=1))]
    kinds = [r["kind"] for r in rows(state / "journal.db", "SELECT kind FROM evidence")]
    assert kinds.count("rejected") == 2 and "uplink-offline" in kinds


def test_a_box_killed_mid_request_flags_the_presence_and_sends_it_again(
    sim: SimulatorProcess, state: Path
) -> None:
    [anna] = people(1)
    write_register(state / "badges.csv", [anna])
    config = site_config(state, sim)
    sim.add_faults({"kind": "latency", "seconds": 3, "target": "registerPresences"})
    with daemon_process(state, config) as daemon:
        assert daemon.tap(anna.uid)["kind"] == "registered"
        wait_for(lambda: rows(state / "journal.db", "SELECT seq FROM in_flight"))
        time.sleep(0.5)  # the request is at the service, which answers in 3 s
        daemon.kill()  # SIGKILL
    with daemon_process(state, config) as daemon:
        wait_until_delivered(daemon, time.monotonic() + 30)
    [row] = registrations(state).values()
    assert row["possibly_duplicated"] == 1 and row["delivery"] == "delivered"
    # the service processes the first request after its 3 s: two presences, one reference
    presences = wait_for(lambda: len(sim.presences()) == 2 and sim.presences(), 10)
    assert {p["reference"] for p in presences} == {client_reference(uuid.UUID(row["id"]))}
    assert {p["status"] for p in presences} >= {"FAILED"}  # the service's duplicate remark
    kinds = [r["kind"] for r in rows(state / "journal.db", "SELECT kind FROM evidence")]
    assert "possibly-duplicated" in kinds


def test_an_unreadable_answer_is_confirmed_only_with_the_id_the_onss_holds_for_it(
    sim: SimulatorProcess, state: Path
) -> None:
    """The service stored the presences but its answer was cut: they are unconfirmed. `queue
    confirm` asks the service (getPresenceRegistration) before believing an id."""
    anna, bart = people(2)
    write_register(state / "badges.csv", [anna, bart])
    # a rule per request: the two taps may go in one batch, or in two
    sim.add_faults({"kind": "cut_after_processing", "times": 2})
    with daemon_process(state, site_config(state, sim)) as daemon:
        for person in (anna, bart):
            assert daemon.tap(person.uid)["kind"] == "registered"
        wait_for(settled(state, 2))
        stored = registrations(state)
        assert {row["delivery"] for row in stored.values()} == {"unconfirmed"}
        held = {p["reference"]: p["id"] for p in sim.presences()}
        ids = {uid: held[client_reference(uuid.UUID(row["id"]))] for uid, row in stored.items()}
        anna_id, bart_id = stored[anna.uid]["id"], stored[bart.uid]["id"]

        def confirm(registration: str, onss_id: object) -> dict[str, Any]:
            return daemon.request({"cmd": "confirm", "id": registration, "onss_id": onss_id})

        for wrong in (ids[bart.uid], 999_999):  # another's id, an id it does not hold
            with pytest.raises(ControlError, match="not confirmed"):
                confirm(anna_id, wrong)
        assert registrations(state)[anna.uid]["delivery"] == "unconfirmed"
        reply = confirm(anna_id, ids[anna.uid])
        assert reply["checked"] and reply["status"] == "VALIDATED"
        sim.add_faults({"kind": "outage", "seconds": 5})  # the service cannot be asked
        with pytest.raises(ControlError, match="could not ask the ONSS"):
            confirm(bart_id, ids[bart.uid])
    after = registrations(state)
    assert after[anna.uid]["delivery"] == "delivered"
    assert str(after[anna.uid]["onss_id"]) == str(ids[anna.uid])
    assert after[bart.uid]["delivery"] == "unconfirmed"
