"""What the journal stores and gives back: typed records and their SQLite rows."""

from __future__ import annotations

import json
import re
import sqlite3
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Literal

from gateway.models import (
    Capacity,
    ClockSample,
    DeliveryState,
    Direction,
    Employer,
    Language,
    PlaceOfWork,
    Registration,
    Worker,
    mask,
)

REGISTRATION_COLUMNS = (
    "id, badge_uid, reader, niss, limosa, enterprise_number, foreign_vat, worker_name,"
    " language, capacity, declaration, place, direction, wall_ns, monotonic_ns, boot_id,"
    " clock_synced, delivery"
)
DELIVERY_COLUMNS = (
    "onss_id, onss_validity, onss_remarks, rejection, delivered_wall_ns,"
    " sent_registration_date, late, possibly_duplicated, time_uncertain, unconfirmed_cause,"
    " unconfirmed_wall_ns"
)
OUTBOUND_COLUMNS = (
    "seq, id, niss, limosa, direction, enterprise_number, foreign_vat, declaration, place,"
    " wall_ns, monotonic_ns, boot_id, clock_synced"
)
INSERT_ATTEMPT = (
    "INSERT INTO tap_attempts (outcome, badge_uid, reader, niss, detail, wall_ns, monotonic_ns,"
    " boot_id, clock_synced) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
INSERT_REGISTRATION = (
    f"INSERT INTO registrations ({REGISTRATION_COLUMNS}, ev_seq, ev_prev, ev_hash)"
    f" VALUES ({', '.join('?' * 21)})"
)


@dataclass(frozen=True, slots=True)
class TapAttempt:
    """A tap that registered nothing: unknown or expired badge, repeat, no direction."""

    outcome: str
    badge_uid: str
    reader: str
    clock: ClockSample
    niss: str | None = None
    detail: str | None = None


@dataclass(frozen=True, slots=True)
class StoredRegistration:
    seq: int
    registration: Registration


@dataclass(frozen=True, slots=True)
class Outbound:
    """A pending registration as the uplink sends it: the fields of the ONSS item and the
    tap's clock. Lighter than a StoredRegistration, since a drain reads thousands."""

    seq: int
    id: str
    niss: str | None
    limosa: str | None  # a posted worker's, instead of a NISS
    direction: str
    enterprise_number: str | None
    foreign_vat: str | None
    declaration: str
    place: str | None  # the place of work as stored (place_json), None at a Checkinatwork site
    clock: ClockSample


INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
_CANONICAL_INT = re.compile(r"-?(0|[1-9][0-9]{0,18})")


def storable_onss_id(onss_id: int | str) -> int | str:
    """An ONSS id as the journal stores it: as given, an integer if it is a 64-bit one
    (also when given as its decimal text, as `queue confirm` gets it), else text (an
    integer beyond 64 bits as its decimal digits: SQLite cannot hold it as a number)."""
    if isinstance(onss_id, str) and _CANONICAL_INT.fullmatch(onss_id):
        onss_id = int(onss_id)
    if isinstance(onss_id, int) and INT64_MIN <= onss_id <= INT64_MAX:
        return onss_id
    return str(onss_id)


@dataclass(frozen=True, slots=True)
class Acknowledgement:
    """The ONSS created the registration: its id (stored as `storable_onss_id` says),
    validity and remarks, and how it went."""

    seq: int
    onss_id: int | str
    validity: str
    remarks: tuple[str, ...]
    sent_registration_date: str
    delivered_wall_ns: int
    late: bool
    time_uncertain: bool


@dataclass(frozen=True, slots=True)
class Rejection:
    """Never sent again by itself: the ONSS said notCreated (or a 400), or it cannot be valid."""

    seq: int
    source: str  # "onss" or "local"
    errors: tuple[dict[str, str], ...]


@dataclass(frozen=True, slots=True)
class DeliveryRecord:
    """A registration with what the uplink learnt about it (for `queue list` and exports)."""

    stored: StoredRegistration
    onss_id: int | str | None
    onss_validity: str | None
    onss_remarks: tuple[str, ...]
    rejection: dict[str, Any] | None
    delivered_wall_ns: int | None
    sent_registration_date: str | None
    late: bool
    possibly_duplicated: bool
    time_uncertain: bool
    unconfirmed_cause: str | None = None  # why the ONSS's answer could not be read
    unconfirmed_wall_ns: int | None = None  # when that answer came


@dataclass(frozen=True, slots=True)
class JournalStats:
    registrations: int
    pending: int
    oldest_pending_wall_ns: int | None
    tap_attempts: int
    rejected: int
    unconfirmed: int = 0


@lru_cache(maxsize=16)
def place_json(place: PlaceOfWork) -> str:
    return place.model_dump_json(exclude_none=True)


@lru_cache(maxsize=16)
def place_from_json(text: str | None) -> PlaceOfWork | None:
    return None if text is None else PlaceOfWork.model_validate(json.loads(text))


def registration_row(reg: Registration) -> tuple[Any, ...]:
    worker = reg.worker
    return (
        str(reg.id),
        reg.badge_uid,
        reg.reader,
        worker.niss,
        worker.limosa,
        worker.employer.enterprise_number,
        worker.employer.foreign_vat,
        worker.name,
        worker.language,  # StrEnum members bind as their text
        worker.capacity,
        reg.declaration,
        None if reg.place is None else place_json(reg.place),
        reg.direction,
        reg.clock.wall_ns,
        reg.clock.monotonic_ns,
        reg.clock.boot_id,
        int(reg.clock.synced),
        reg.delivery,
    )


def registration_from_row(row: sqlite3.Row) -> StoredRegistration:
    worker = Worker(
        badge_uid=row["badge_uid"],
        niss=row["niss"],
        limosa=row["limosa"],
        employer=Employer(row["enterprise_number"], row["foreign_vat"]),
        name=row["worker_name"],
        language=Language(row["language"]),
        capacity=Capacity(row["capacity"]),
    )
    registration = Registration(
        id=uuid.UUID(row["id"]),
        badge_uid=row["badge_uid"],
        reader=row["reader"],
        worker=worker,
        declaration=row["declaration"],
        place=place_from_json(row["place"]),
        direction=Direction(row["direction"]),
        clock=ClockSample(
            wall_ns=row["wall_ns"],
            monotonic_ns=row["monotonic_ns"],
            boot_id=row["boot_id"],
            synced=bool(row["clock_synced"]),
        ),
        delivery=DeliveryState(row["delivery"]),
    )
    return StoredRegistration(seq=row["seq"], registration=registration)


def outbound_from_row(row: sqlite3.Row) -> Outbound:
    seq, id_, niss, limosa, direction, enterprise, vat, declaration, place, *clock = row
    wall_ns, monotonic_ns, boot_id, synced = clock  # OUTBOUND_COLUMNS' order
    clock_sample = ClockSample(wall_ns, monotonic_ns, boot_id, bool(synced))
    return Outbound(
        seq, id_, niss, limosa, direction, enterprise, vat, declaration, place, clock_sample
    )


def delivery_from_row(row: sqlite3.Row) -> DeliveryRecord:
    return DeliveryRecord(
        stored=registration_from_row(row),
        onss_id=row["onss_id"],
        onss_validity=row["onss_validity"],
        onss_remarks=tuple(json.loads(row["onss_remarks"] or "[]")),
        rejection=json.loads(row["rejection"]) if row["rejection"] else None,
        delivered_wall_ns=row["delivered_wall_ns"],
        sent_registration_date=row["sent_registration_date"],
        late=bool(row["late"]),
        possibly_duplicated=bool(row["possibly_duplicated"]),
        time_uncertain=bool(row["time_uncertain"]),
        unconfirmed_cause=row["unconfirmed_cause"],
        unconfirmed_wall_ns=row["unconfirmed_wall_ns"],
    )


def captured(reg: Registration) -> dict[str, Any]:
    return {
        "id": str(reg.id),
        "type": reg.direction.value,
        "registration_wall_ns": reg.clock.wall_ns,
        "reader": reg.reader,
        "badge_uid": reg.badge_uid,
        "worker": reg.worker.name,
        **person_evidence(reg.worker),
    }


def person_evidence(worker: Worker) -> dict[str, str]:
    """Who, as the evidence names them (the view `evidence_chain` reads a row the same way)."""
    if worker.niss is not None:
        return {"niss": mask(worker.niss)}
    return {"limosa": mask(worker.limosa or "")}


def attempt_row(attempt: TapAttempt) -> tuple[Any, ...]:
    return (
        attempt.outcome,
        attempt.badge_uid,
        attempt.reader,
        attempt.niss,
        attempt.detail,
        attempt.clock.wall_ns,
        attempt.clock.monotonic_ns,
        attempt.clock.boot_id,
        int(attempt.clock.synced),
    )


def registration_values(
    conn: sqlite3.Connection,
    key: Literal["seq", "id"],
    column: Literal["id", "niss"],
    keys: Sequence[int | str],
) -> dict[Any, Any]:
    """{key: column} of the registrations whose `key` is one of `keys`."""
    found: dict[Any, Any] = {}
    for start in range(0, len(keys), 500):  # SQLite bounds a statement's parameters
        chunk = list(keys[start : start + 500])
        marks = ",".join("?" * len(chunk))
        rows = conn.execute(
            f"SELECT {key}, {column} FROM registrations WHERE {key} IN ({marks})", chunk
        )
        found.update((row[0], row[1]) for row in rows)
    return found
