"""`[uplink] type_values`: the case of `type` on the wire (issue 14, point 8).

The ONSS OpenAPI enum is lowercase by the better-supported reading, uppercase by an older
public client (docs/onss-api.md, open questions). The payload sends what the configuration
says; the simulator accepts only the case it was started with and answers the other with
the 400 the real service would give. Real journals, a real simulator process, real TLS.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from collections.abc import Iterator
from contextlib import closing
from dataclasses import replace
from pathlib import Path
from typing import Literal

import pytest
from pydantic import ValidationError

from gateway.attendance import AttendanceRules
from gateway.clock import Clock, boot_id, boottime_ns
from gateway.config import UplinkConfig
from gateway.identifiers import make_niss
from gateway.journal import Journal, Outbound, connect
from gateway.models import ClockSample, Registration
from gateway.uplink import open_uplink
from gateway.uplink.payload import item, registration_date, wire_type
from onss_sim.testing import SimulatorProcess
from tests.support import SITE, WORKER, read, registered, run
from tests.uplink.test_uplink import journal_with, uplink_config

Case = Literal["lower", "upper"]


@pytest.fixture(scope="module", params=["lower", "upper"])
def started(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[SimulatorProcess]:
    """A simulator started for each case (its --type-values)."""
    directory = tmp_path_factory.mktemp(f"onss-{request.param}")
    with SimulatorProcess(directory, type_values=request.param) as sim:
        yield sim


@pytest.fixture
def simulator(started: SimulatorProcess) -> SimulatorProcess:
    started.admin("DELETE", "/faults")
    started.admin("POST", "/reset")
    return started


def in_and_out(count: int = 2) -> list[Registration]:
    """An IN and an OUT (and so on), each of its own worker, as the tap path makes them."""
    rules = AttendanceRules(SITE)
    made = []
    for index in range(count):
        worker = replace(WORKER, niss=make_niss("850730", 300 + index), badge_uid=f"05{index:06X}")
        clock = ClockSample(time.time_ns(), boottime_ns(), boot_id(), True)
        tap = read("IN" if index % 2 == 0 else "OUT")
        made.append(registered(rules.decide(tap, worker, None, clock)))
    return made


def outbound(state: Path) -> list[Outbound]:
    return journal_with(state, in_and_out()).pending(10)


def deliver_all(sim: SimulatorProcess, state: Path, type_values: Case | None) -> Journal:
    """Two registrations, IN then OUT, through the real uplink to the simulator."""
    journal = journal_with(state, in_and_out())
    flag = state / "synchronized"
    flag.touch()
    uplink, http = open_uplink(
        uplink_config(sim, **({} if type_values is None else {"type_values": type_values})),
        journal,
        Clock(["timesyncd"], flag),
    )

    async def once() -> None:
        try:
            await asyncio.wait_for(uplink.deliver_once(), 30)
        finally:
            await http.aclose()

    run(once())
    return journal


def deliveries(journal: Journal) -> list[sqlite3.Row]:
    with closing(connect(journal.path, read_only=True)) as conn:
        conn.row_factory = sqlite3.Row
        return conn.execute(
            "SELECT direction, delivery, rejection FROM registration_rows ORDER BY seq"
        ).fetchall()


def other(case: str) -> Case:
    return "upper" if case == "lower" else "lower"


# --- The payload and the configuration ---------------------------------------------------


def test_the_payload_sends_the_configured_case(state: Path) -> None:
    pending = outbound(state)
    assert [out.direction for out in pending] == ["IN", "OUT"]  # the journal keeps IN/OUT
    date = registration_date(pending[0].clock.wall_ns)
    assert [item(out, date, "lower")["type"] for out in pending] == ["in", "out"]
    assert [item(out, date, "upper")["type"] for out in pending] == ["IN", "OUT"]
    lower, upper = item(pending[0], date, "lower"), item(pending[0], date, "upper")
    assert {**lower, "type": "IN"} == upper  # nothing else changes
    assert [wire_type(d, c) for d in ("IN", "OUT") for c in ("lower", "upper")] == [
        "in", "IN", "out", "OUT",
    ]  # fmt: skip


def test_type_values_defaults_to_lower_and_refuses_anything_else() -> None:
    assert UplinkConfig().type_values == "lower"
    assert UplinkConfig(type_values="upper").type_values == "upper"
    for wrong in ("Lower", "UPPER", "in", ""):
        with pytest.raises(ValidationError) as error:
            UplinkConfig(type_values=wrong)
        [problem] = error.value.errors()
        assert problem["loc"] == ("type_values",)


# --- Against the simulator, over real TLS --------------------------------------------------


def test_the_configured_case_is_delivered_as_sent(simulator: SimulatorProcess, state: Path) -> None:
    case: Case = "upper" if simulator.type_values == "upper" else "lower"
    journal = deliver_all(simulator, state, case)
    assert [row["delivery"] for row in deliveries(journal)] == ["delivered", "delivered"]
    expected = ["IN", "OUT"] if case == "upper" else ["in", "out"]
    assert [r["item"]["type"] for r in simulator.registrations()] == expected


def test_the_default_agrees_with_the_simulators_default(tmp_path: Path, state: Path) -> None:
    with SimulatorProcess(tmp_path / "onss") as sim:
        assert sim.type_values == "lower"
        journal = deliver_all(sim, state, None)
        assert [row["delivery"] for row in deliveries(journal)] == ["delivered", "delivered"]
        assert [r["item"]["type"] for r in sim.registrations()] == ["in", "out"]


def test_the_other_case_is_refused_with_a_400_and_nothing_is_created(
    simulator: SimulatorProcess, state: Path
) -> None:
    """A wrong case is a schema error of every item: the ONSS answers 400 and creates
    nothing; the uplink isolates the items and rejects each, naming the field, once."""
    journal = deliver_all(simulator, state, other(simulator.type_values))
    assert simulator.registrations() == []
    refused = [r for r in simulator.requests() if r["path"].endswith("/registerInBulk")]
    assert refused and {r["status"] for r in refused} == {400}
    assert len(refused) <= 3  # the pair, then each alone: no resend loop
    rows = deliveries(journal)
    assert [row["delivery"] for row in rows] == ["rejected", "rejected"]
    for index, row in enumerate(rows):
        rejection = json.loads(row["rejection"])
        errors = rejection["errors"]
        assert rejection["source"] == "onss"
        assert any("items[0].type" in error["description"] for error in errors), (index, errors)
