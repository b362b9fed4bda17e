"""The uplink against the ONSS simulator: a real process, real TLS, real tokens."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import time
from collections.abc import Iterator
from contextlib import closing
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from gateway.attendance import AttendanceRules
from gateway.clock import Clock, boot_id, boottime_ns
from gateway.config import UplinkConfig
from gateway.errors import CredentialError
from gateway.evidence import Entry, entries
from gateway.identifiers import make_niss
from gateway.journal import Journal, connect
from gateway.models import ClockSample, Registration, UplinkState
from gateway.system.credentials import load_private_key
from gateway.uplink import Uplink, open_uplink
from onss_sim.testing import SimulatorProcess
from tests.support import (
    SITE,
    WORKER,
    badges,
    daemon_process,
    read,
    registered,
    run,
    uplink_section,
    wait_until_delivered,
    write_badge_file,
    write_config,
)


@pytest.fixture(scope="module")
def simulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimulatorProcess]:
    with SimulatorProcess(tmp_path_factory.mktemp("onss")) as sim:
        yield sim


@pytest.fixture(autouse=True)
def clean_simulator(simulator: SimulatorProcess) -> None:
    simulator.admin("DELETE", "/faults")
    simulator.admin("POST", "/reset")


def uplink_config(sim: SimulatorProcess, **overrides: Any) -> UplinkConfig:
    values: dict[str, Any] = {
        "enabled": True,
        "token_url": sim.token_url,
        "base_url": sim.base_url,
        "client_id": sim.client_id,
        "private_key": str(sim.client_key_file),
        "ca_file": sim.ca_file,
        "backoff_initial_seconds": 0.05,
        "backoff_max_seconds": 0.5,
        "read_timeout_seconds": 2.0,
    }
    return UplinkConfig(**{**values, **overrides})


def synced_clock(state: Path) -> Clock:
    flag = state / "synchronized"
    flag.touch()
    return Clock(["timesyncd"], flag)


def now_sample(*, synced: bool = True, seconds_ago: float = 0.0) -> ClockSample:
    ago = int(seconds_ago * 1e9)
    return ClockSample(time.time_ns() - ago, boottime_ns() - ago, boot_id(), synced)


def registrations(
    count: int, *, synced: bool = True, seconds_ago: float = 0.0
) -> list[Registration]:
    """`count` IN registrations of distinct workers, as the tap path makes them."""
    rules = AttendanceRules(SITE)
    made = []
    for index in range(count):
        worker = replace(WORKER, niss=make_niss("850730", 200 + index), badge_uid=f"04{index:06X}")
        made.append(
            registered(
                rules.decide(
                    read(), worker, None, now_sample(synced=synced, seconds_ago=seconds_ago)
                )
            )
        )
    return made


def journal_with(state: Path, regs: list[Registration]) -> Journal:
    journal = Journal(state / "journal.db")
    for reg in regs:
        journal.append_registration(reg)
    return journal


async def deliver(uplink: Uplink, http: Any, timeout: float = 30) -> None:
    try:
        await asyncio.wait_for(uplink.deliver_once(), timeout)
    finally:
        await http.aclose()


def evidence_of(journal: Journal, *kinds: str) -> list[Entry]:
    with closing(connect(journal.path, read_only=True)) as conn:
        return [entry for entry in entries(conn) if entry.kind in kinds]


def delivered(journal: Journal) -> list[sqlite3.Row]:
    with closing(connect(journal.path, read_only=True)) as conn:
        conn.row_factory = sqlite3.Row
        return conn.execute(
            "SELECT id, delivery, onss_id, possibly_duplicated, late, time_uncertain, rejection,"
            " sent_registration_date FROM registration_rows ORDER BY seq"
        ).fetchall()


def test_a_batch_is_delivered_in_order_with_its_acknowledgements(
    simulator: SimulatorProcess, state: Path
) -> None:
    regs = registrations(5)
    journal = journal_with(state, regs)
    uplink, http = open_uplink(uplink_config(simulator), journal, synced_clock(state))
    run(deliver(uplink, http))
    at_onss = simulator.registrations()
    assert [r["item"]["ssin"] for r in at_onss] == [reg.worker.niss for reg in regs]
    rows = delivered(journal)
    assert [row["delivery"] for row in rows] == ["delivered"] * 5
    assert [row["onss_id"] for row in rows] == [r["id"] for r in at_onss]
    assert uplink.connectivity.state is UplinkState.ONLINE
    assert journal.stats().pending == 0
    [acknowledged] = evidence_of(journal, "acknowledged")
    assert acknowledged.details["ids"] == {row["id"]: row["onss_id"] for row in rows}
    journal.close()


def test_one_token_serves_many_batches(simulator: SimulatorProcess, state: Path) -> None:
    journal = journal_with(state, registrations(120))
    uplink, http = open_uplink(
        uplink_config(simulator, batch_size=50), journal, synced_clock(state)
    )

    async def drain() -> None:
        while await uplink.deliver_once():
            pass
        await http.aclose()

    run(drain())
    requests = simulator.admin("GET", "/requests")["requests"]
    assert [r["items"] for r in requests if "registerInBulk" in r["path"]] == [50, 50, 20]
    assert len([r for r in requests if "oauth" in r["path"]]) == 1
    journal.close()


def test_503_with_retry_after_is_retried_and_the_outage_recorded(
    simulator: SimulatorProcess, state: Path
) -> None:
    simulator.admin(
        "POST", "/faults", [{"kind": "status", "status": 503, "retry_after": 1, "times": 2}]
    )
    journal = journal_with(state, registrations(3))
    uplink, http = open_uplink(uplink_config(simulator), journal, synced_clock(state))
    started = time.monotonic()
    run(deliver(uplink, http))
    assert time.monotonic() - started >= 2.0  # Retry-After honoured, beyond our own backoff
    assert len(simulator.registrations()) == 3
    transitions = journal.uplink_transitions()
    assert [t["state"] for t in reversed(transitions)] == ["offline", "online"]
    assert transitions[-1]["cause"] == "http 503"
    offline, online = evidence_of(journal, "uplink-offline", "uplink-online")
    assert (offline.kind, offline.details["cause"], offline.details["pending"]) == (
        "uplink-offline",
        "http 503",
        3,
    )
    assert online.kind == "uplink-online" and online.wall_ns - offline.wall_ns >= 1e9
    journal.close()


def test_an_answer_lost_after_processing_is_resent_and_flagged(
    simulator: SimulatorProcess, state: Path
) -> None:
    simulator.admin("POST", "/faults", [{"kind": "drop_after_processing", "times": 1}])
    regs = registrations(2)
    journal = journal_with(state, regs)
    uplink, http = open_uplink(uplink_config(simulator), journal, synced_clock(state))
    run(deliver(uplink, http))
    assert len(simulator.registrations()) == 4  # the ONSS got them twice: it will remark it
    rows = delivered(journal)
    assert [(row["delivery"], row["possibly_duplicated"]) for row in rows] == [("delivered", 1)] * 2
    [flagged] = evidence_of(journal, "possibly-duplicated")
    assert sorted(flagged.details["ids"]) == sorted(row["id"] for row in rows)
    journal.close()


def test_a_failed_connection_is_retried_without_a_duplicate_flag(
    simulator: SimulatorProcess, state: Path
) -> None:
    simulator.admin("POST", "/faults", [{"kind": "drop", "times": 2}])
    journal = journal_with(state, registrations(2))
    uplink, http = open_uplink(uplink_config(simulator), journal, synced_clock(state))
    run(deliver(uplink, http))
    assert len(simulator.registrations()) == 2
    # a dropped connection after the request was sent is ambiguous: flagged, resent
    assert all(row["delivery"] == "delivered" for row in delivered(journal))
    journal.close()


def test_413_makes_batches_smaller(simulator: SimulatorProcess, state: Path) -> None:
    simulator.admin("POST", "/faults", [{"kind": "status", "status": 413, "times": 1}])
    journal = journal_with(state, registrations(8))
    uplink, http = open_uplink(uplink_config(simulator), journal, synced_clock(state))
    run(deliver(uplink, http))
    assert len(simulator.registrations()) == 8
    journal.close()


def test_business_rejections_are_kept_with_their_errors(
    simulator: SimulatorProcess, state: Path
) -> None:
    good, other = registrations(2)
    unknown_declaration = replace(other, declaration="2Y1002V9KLZ6Z")
    journal = journal_with(state, [good, unknown_declaration])
    uplink, http = open_uplink(uplink_config(simulator), journal, synced_clock(state))
    run(deliver(uplink, http))
    first, second = delivered(journal)
    assert first["delivery"] == "delivered"
    assert second["delivery"] == "rejected"
    assert '"code": "4"' in second["rejection"]
    assert journal.requeue(second["id"]) is True
    assert journal.stats().pending == 1
    journal.close()


def test_invalid_registrations_are_rejected_without_sending(
    simulator: SimulatorProcess, state: Path
) -> None:
    [good] = registrations(1)
    niss = good.worker.niss or ""
    bad = replace(good, worker=replace(good.worker, niss=niss[:-1] + "0"))
    journal = journal_with(state, [bad])
    uplink, http = open_uplink(uplink_config(simulator), journal, synced_clock(state))
    run(deliver(uplink, http))
    assert simulator.registrations() == []
    [row] = delivered(journal)
    assert row["delivery"] == "rejected" and '"source": "local"' in row["rejection"]
    journal.close()


def test_forbidden_stops_sending_but_keeps_the_queue(
    simulator: SimulatorProcess, state: Path
) -> None:
    simulator.admin("POST", "/faults", [{"kind": "status", "status": 403, "times": 100}])
    journal = journal_with(state, registrations(2))
    uplink, http = open_uplink(uplink_config(simulator), journal, synced_clock(state))
    with pytest.raises(TimeoutError):
        run(deliver(uplink, http, timeout=1.5))
    assert uplink.connectivity.state is UplinkState.FORBIDDEN
    assert journal.stats().pending == 2
    journal.close()


def test_taps_before_clock_sync_are_held_then_sent_with_a_rederived_time(
    simulator: SimulatorProcess, state: Path
) -> None:
    [reg] = registrations(1, synced=False, seconds_ago=30)
    journal = journal_with(state, [reg])
    flag = state / "synchronized"
    clock = Clock(["timesyncd"], flag)
    uplink, http = open_uplink(uplink_config(simulator), journal, clock)

    async def held_then_sent() -> None:
        assert await uplink.deliver_once() is False
        assert uplink.connectivity.held_for_clock == 1
        flag.touch()
        await deliver(uplink, http)

    run(held_then_sent())
    [row] = delivered(journal)
    assert row["delivery"] == "delivered" and row["time_uncertain"] == 0
    journal.close()


def test_late_deliveries_are_flagged(simulator: SimulatorProcess, state: Path) -> None:
    journal = journal_with(state, registrations(1, seconds_ago=20 * 60))
    uplink, http = open_uplink(uplink_config(simulator), journal, synced_clock(state))
    run(deliver(uplink, http))
    [row] = delivered(journal)
    assert row["late"] == 1
    assert "LATE REGISTRATION" in simulator.registrations()[0]["remarks"]
    journal.close()


def test_a_key_readable_by_others_is_refused(simulator: SimulatorProcess, tmp_path: Path) -> None:
    key = tmp_path / "key.pem"
    key.write_bytes(Path(simulator.client_key_file).read_bytes())
    key.chmod(0o644)
    with pytest.raises(CredentialError, match="readable by others"):
        load_private_key(key)
    key.chmod(0o600)
    load_private_key(key)


def test_a_400_for_one_item_among_50_isolates_it(simulator: SimulatorProcess, state: Path) -> None:
    regs = registrations(50)
    refused = regs[17]
    simulator.admin(
        "POST", "/faults", [{"kind": "refuse_ssin", "ssin": refused.worker.niss, "times": 1000}]
    )
    journal = journal_with(state, regs)
    uplink, http = open_uplink(uplink_config(simulator), journal, synced_clock(state))
    run(deliver(uplink, http))
    rows = delivered(journal)
    assert [row["delivery"] for row in rows].count("delivered") == 49
    assert rows[17]["delivery"] == "rejected" and "items[0].ssin" in rows[17]["rejection"]
    at_onss = [r["item"]["ssin"] for r in simulator.registrations()]
    assert at_onss == [reg.worker.niss for reg in regs if reg is not refused]  # in order, once
    simulator.admin("DELETE", "/faults")
    journal.close()


@pytest.mark.parametrize(
    ("status", "retry_after"), [(429, 1), (500, None), (502, None), (504, None)]
)
def test_server_errors_are_retried(
    simulator: SimulatorProcess, state: Path, status: int, retry_after: int | None
) -> None:
    rule: dict[str, Any] = {"kind": "status", "status": status, "times": 2}
    if retry_after is not None:
        rule["retry_after"] = retry_after
    simulator.admin("POST", "/faults", [rule])
    journal = journal_with(state, registrations(2))
    uplink, http = open_uplink(uplink_config(simulator), journal, synced_clock(state))
    run(deliver(uplink, http))
    assert len(simulator.registrations()) == 2
    assert journal.uplink_transitions()[-1]["cause"] == f"http {status}"
    journal.close()


def test_a_refused_token_renewal_is_retried(simulator: SimulatorProcess, state: Path) -> None:
    simulator.admin("POST", "/faults", [{"kind": "status", "status": 503, "target": "token"}])
    journal = journal_with(state, registrations(1))
    uplink, http = open_uplink(uplink_config(simulator), journal, synced_clock(state))
    run(deliver(uplink, http))
    assert len(simulator.registrations()) == 1
    assert journal.uplink_transitions()[-1]["cause"] == "token"
    journal.close()


def test_an_expired_token_is_renewed_mid_run(simulator: SimulatorProcess, state: Path) -> None:
    simulator.admin("POST", "/config", {"token_lifetime_s": 1})
    try:
        journal = journal_with(state, registrations(1))
        uplink, http = open_uplink(uplink_config(simulator), journal, synced_clock(state))

        async def twice() -> None:
            await uplink.deliver_once()
            await asyncio.sleep(1.2)  # the token has expired meanwhile
            journal.append_registration(registrations(1)[0])
            await deliver(uplink, http)

        run(twice())
    finally:
        simulator.admin("POST", "/config", {"token_lifetime_s": 600})
    tokens = [r for r in simulator.admin("GET", "/requests")["requests"] if "oauth" in r["path"]]
    assert [r["status"] for r in tokens] == [200, 200]
    assert len(simulator.registrations()) == 2
    journal.close()


def test_a_401_renews_the_token_once(simulator: SimulatorProcess, state: Path) -> None:
    simulator.admin("POST", "/faults", [{"kind": "status", "status": 401}])
    journal = journal_with(state, registrations(1))
    uplink, http = open_uplink(uplink_config(simulator), journal, synced_clock(state))
    run(deliver(uplink, http))
    tokens = [r for r in simulator.admin("GET", "/requests")["requests"] if "oauth" in r["path"]]
    assert len(tokens) == 2  # the first token, then a fresh one after the 401
    assert len(simulator.registrations()) == 1
    journal.close()


def test_a_read_timeout_is_ambiguous(simulator: SimulatorProcess, state: Path) -> None:
    simulator.admin("POST", "/faults", [{"kind": "latency", "seconds": 3, "times": 1}])
    journal = journal_with(state, registrations(1))
    uplink, http = open_uplink(
        uplink_config(simulator, read_timeout_seconds=0.5), journal, synced_clock(state)
    )
    run(deliver(uplink, http))
    [row] = delivered(journal)
    assert row["delivery"] == "delivered" and row["possibly_duplicated"] == 1
    assert journal.uplink_transitions()[-1]["cause"] == "timeout"
    journal.close()


def test_tls_and_tcp_failures_are_named(simulator: SimulatorProcess, state: Path) -> None:
    journal = journal_with(state, registrations(1))
    untrusting, http = open_uplink(
        uplink_config(simulator, ca_file=None), journal, synced_clock(state)
    )
    with pytest.raises(TimeoutError):
        run(deliver(untrusting, http, timeout=1.0))
    assert untrusting.connectivity.cause == "tls"
    closed = simulator.base_url.replace(simulator.base_url.split("/")[2], "127.0.0.1:9")
    refused, http = open_uplink(
        uplink_config(simulator, base_url=closed), journal, synced_clock(state)
    )
    with pytest.raises(TimeoutError):
        run(deliver(refused, http, timeout=1.0))
    assert refused.connectivity.cause == "tcp"
    assert journal.stats().pending == 1
    journal.close()


def test_the_daemon_delivers_from_a_nicer_thread_and_stops_cleanly(
    simulator: SimulatorProcess, state: Path
) -> None:
    """The uplink's loop runs on a thread of its own, ten nicer than the taps' threads."""
    workers = badges(3)
    write_badge_file(state / "badges.csv", workers)
    (state / "synchronized").touch()
    config = write_config(state, uplink=uplink_section(simulator))
    with daemon_process(state, config) as daemon:
        for worker in workers:
            assert daemon.tap(worker.uid)["kind"] == "registered"
        wait_until_delivered(daemon, time.monotonic() + 30)
        assert daemon.process is not None
        nice_values = thread_nice_values(daemon.process.pid)
        assert daemon.stop() == 0
    base = nice_values[daemon.process.pid]  # the main thread: the loop, the socket, the taps
    assert set(nice_values.values()) == {base, min(19, base + 10)}
    assert len(simulator.registrations()) == 3
    assert "Unclosed" not in daemon.log() and "Traceback" not in daemon.log()


def thread_nice_values(pid: int) -> dict[int, int]:
    """Each thread of a process and its nice value."""
    tids = [int(task.name) for task in Path(f"/proc/{pid}/task").iterdir()]
    return {tid: os.getpriority(os.PRIO_PROCESS, tid) for tid in tids}
