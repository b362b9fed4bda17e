"""`CheckinatworkService.prepare`: a registration from the journal made into the presence item
the service receives, or refused locally with a reason, by the date rule first.

The service takes only today or tomorrow as a RegistrationDate (PresenceRegistration v1,
5.1.3 code 6, p. 12; RegistrationDateType 6.1.29, p. 25): a presence not delivered on its
own day (Europe/Brussels) is `day-passed`, never sent with another date. The service is
built as the daemon builds it (`presence_service`, from an [uplink] section and the
employer's key and certificate); each registration is stored in a real journal and read
back as the sender reads its queue. Nothing is sent: the client is tested in test_client.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from dataclasses import replace
from datetime import date

import httpx
import pytest

from gateway.checkinatwork import PresenceItem, schema_problems
from gateway.checkinatwork.factory import presence_service
from gateway.checkinatwork.messages import register_presences_body
from gateway.checkinatwork.service import DAY_PASSED, CheckinatworkService
from gateway.config import UplinkConfig
from gateway.journal import Journal, Outbound
from gateway.models import ClockSample, Employer, Registration
from gateway.uplink.answers import AnswerLimits
from gateway.uplink.service import Item, Service, Unsendable
from gateway.uplink.timing import send_time
from onss_sim.pki import PkiFiles, ensure_pki
from tests.support import (
    LIMOSA,
    POSTED_WORKER,
    SECOND,
    WORKER,
    WORKPLACE,
    a_presence,
    a_registration,
    clock_at,
)

NISS = "85073003328"  # WORKER's


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PkiFiles:
    return ensure_pki(tmp_path_factory.mktemp("service-pki"))  # keys are slow: once


@pytest.fixture(scope="module")
def service(pki: PkiFiles) -> Iterator[Service]:
    config = UplinkConfig(
        enabled=True, private_key=str(pki.client_key), certificate=pki.client_cert
    )
    http = httpx.AsyncClient()
    try:
        yield presence_service(config, http, AnswerLimits())
    finally:
        asyncio.run(http.aclose())


def queued(journal: Journal, reg: Registration) -> Outbound:
    """The registration as the sender reads it from its queue."""
    seq = journal.append_registration(reg)
    [out] = [out for out in journal.pending(1000) if out.seq == seq]
    return out


def prepare(service: Service, out: Outbound, now: ClockSample) -> Item | Unsendable:
    time = send_time(out.clock, now)
    assert time is not None, "held until the clock is synchronised"
    return service.prepare(out, time, now)


def item_of(prepared: Item | Unsendable) -> PresenceItem:
    assert isinstance(prepared, Item), prepared
    assert isinstance(prepared.payload, PresenceItem)
    assert schema_problems(register_presences_body([prepared.payload])) == ()  # the XSD's word
    return prepared.payload


def refusal_of(prepared: Item | Unsendable) -> dict[str, str]:
    assert isinstance(prepared, Unsendable), prepared
    [error] = prepared.errors
    return error


def test_the_service_is_the_one_the_daemon_builds(service: Service) -> None:
    assert isinstance(service, CheckinatworkService)
    assert (service.name, service.max_items) == ("checkinatwork", 200)


def test_a_niss_worker_of_a_belgian_employer(service: Service, journal: Journal) -> None:
    reg = a_presence("2026-11-23T07:02")
    out = queued(journal, reg)

    prepared = prepare(service, out, clock_at("2026-11-23T07:05", 280))

    item = item_of(prepared)
    assert (item.inss, item.company_id, item.limosa_id) == (NISS, "0450905686", None)
    assert (item.workplace_id, item.registration_date) == (WORKPLACE, date(2026, 11, 23))
    assert item.registration_id == reg.id
    assert isinstance(prepared, Item) and prepared.sent_as == "2026-11-23"


def test_a_posted_worker_by_limosa_number(service: Service, journal: Journal) -> None:
    reg = a_presence("2026-11-23T07:02", POSTED_WORKER)

    item = item_of(prepare(service, queued(journal, reg), clock_at("2026-11-23T07:05", 280)))

    assert (item.inss, item.company_id, item.limosa_id) == (None, None, LIMOSA)
    assert (item.workplace_id, item.registration_date) == (WORKPLACE, date(2026, 11, 23))


def test_a_worker_under_another_declaration_goes_to_that_workplace(
    service: Service, journal: Journal
) -> None:
    own = replace(WORKER, declaration="1Y1000003EQCZ")

    item = item_of(
        prepare(
            service,
            queued(journal, a_presence("2026-11-23T07:02", own)),
            clock_at("2026-11-23T07:05", 280),
        )
    )

    assert item.workplace_id == "1Y1000003EQCZ"


def test_a_niss_worker_with_only_a_foreign_vat_is_unsendable(
    service: Service, journal: Journal
) -> None:
    foreign = replace(WORKER, employer=Employer(foreign_vat="FR40303265045"))
    out = queued(journal, a_presence("2026-11-23T07:02", foreign))

    refusal = refusal_of(prepare(service, out, clock_at("2026-11-23T07:05", 280)))

    assert refusal["code"] == "local"
    assert refusal["description"].startswith(
        "CompanyID: the employer has no Belgian enterprise number"
    )
    assert "Limosa" in refusal["description"]  # says what to do instead
    assert NISS not in refusal["description"]


def test_a_niss_that_cannot_be_valid_is_unsendable_and_masked(service: Service) -> None:
    # not from a badge register (which refuses it): a journal edited, or an older release's
    out = Outbound(
        seq=1,
        id=str(uuid.uuid4()),
        niss=NISS[:-1] + "9",
        limosa=None,
        direction="PRESENCE",
        enterprise_number="0450905686",
        foreign_vat=None,
        declaration=WORKPLACE,
        place=None,
        clock=clock_at("2026-11-23T07:02"),
    )

    refusal = refusal_of(prepare(service, out, clock_at("2026-11-23T07:05", 1180)))

    assert refusal["code"] == "local"
    assert refusal["description"].startswith("INSS ********329: ")
    assert NISS[:-1] not in refusal["description"]


@pytest.mark.parametrize("direction", ["IN", "OUT"])
def test_a_ciao_registration_is_unsendable(
    service: Service, journal: Journal, direction: str
) -> None:
    reg = a_registration("2026-11-23T07:02")
    out = replace(queued(journal, reg), direction=direction)

    refusal = refusal_of(prepare(service, out, clock_at("2026-11-23T07:05", 280)))

    assert refusal == {
        "code": "local",
        "description": f"an {direction} registration (CIaO) cannot be sent to Checkinatwork",
    }


def test_a_presence_tapped_yesterday_is_day_passed(service: Service, journal: Journal) -> None:
    out = queued(journal, a_presence("2026-11-22T16:00"))

    refusal = refusal_of(prepare(service, out, clock_at("2026-11-23T08:00", 57_700)))

    assert refusal["code"] == DAY_PASSED == "day-passed"
    assert refusal["description"].startswith(
        "not delivered on its day (2026-11-22; now 2026-11-23)"
    )


def test_a_presence_tapped_at_23_59_and_prepared_at_00_01_is_day_passed(
    service: Service, journal: Journal
) -> None:
    out = queued(journal, a_presence("2026-11-23T23:59", monotonic_s=100))

    on_its_day = prepare(service, out, clock_at("2026-11-23T23:59:40", 140))
    next_day = prepare(service, out, clock_at("2026-11-24T00:01", 220))

    assert item_of(on_its_day).registration_date == date(2026, 11, 23)
    assert refusal_of(next_day)["code"] == DAY_PASSED


def test_the_registration_date_is_the_taps_day_in_brussels_not_utc(
    service: Service, journal: Journal
) -> None:
    # 00:30 in Brussels on the 24th is 23:30 UTC on the 23rd.
    out = queued(journal, a_presence("2026-11-24T00:30"))

    prepared = prepare(service, out, clock_at("2026-11-24T00:45", 1000))

    assert item_of(prepared).registration_date == date(2026, 11, 24)
    assert isinstance(prepared, Item) and prepared.sent_as == "2026-11-24"


def test_a_tap_made_before_the_clock_was_synchronised_takes_its_rederived_day(
    service: Service, journal: Journal
) -> None:
    """A Pi without a real-time clock booted with yesterday's time; the tap's day is the one
    CLOCK_BOOTTIME places it on once the clock is synchronised, in the same boot."""
    wrong = clock_at("2026-11-22T21:00", monotonic_s=100)
    tapped = replace(a_presence(), clock=replace(wrong, synced=False))
    out = queued(journal, tapped)
    now = clock_at("2026-11-23T07:10", monotonic_s=700)  # synchronised: the tap was 07:00

    prepared = prepare(service, out, now)

    assert item_of(prepared).registration_date == date(2026, 11, 23)
    assert now.wall_at(out.clock.monotonic_ns) == clock_at("2026-11-23T07:00").wall_ns
    assert out.clock.wall_ns + 10 * 3600 * SECOND == clock_at("2026-11-23T07:00").wall_ns
