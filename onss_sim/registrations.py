"""registerInBulk once the call is accepted: per-item checks, ids, remarks, the stored book.

Not thread-safe: the caller holds the simulator's lock.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from onss_sim.checks import business_errors, registration_time

LATE = "LATE REGISTRATION"
DUPLICATE = "SAME DECLARATION HAS ALREADY BEEN REGISTERED"


@dataclass(frozen=True)
class Rules:
    """The settings the per-item answer depends on."""

    late_threshold_s: float
    future_tolerance_s: float


@dataclass(frozen=True)
class Registration:
    """One created presence registration."""

    id: int
    item: dict[str, Any]
    client_id: str
    received_at: datetime
    remarks: tuple[str, ...]

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "validity": "pending",
            "remarks": list(self.remarks),
            "client_id": self.client_id,
            "received_at": _iso(self.received_at),
            "item": self.item,
        }


@dataclass(frozen=True)
class _Call:
    """What every item of one call is answered with: worked out once, not per item."""

    client_id: str
    received_at: datetime
    latest: datetime  # a registrationDate after this is in the future (error 6)
    late: timedelta  # received more than this after its registrationDate: a late remark

    @classmethod
    def of(cls, client_id: str, received_at: datetime, rules: Rules) -> _Call:
        latest = received_at + timedelta(seconds=rules.future_tolerance_s)
        return cls(client_id, received_at, latest, timedelta(seconds=rules.late_threshold_s))


def _iso(moment: datetime) -> str:
    return moment.isoformat(timespec="microseconds").replace("+00:00", "Z")


# ssin, type, registrationDate, the employer's (field, value) pairs, declaration of works
DuplicateKey = tuple[str, str, str, tuple[tuple[str, str], ...], str]


def _duplicate_key(item: dict[str, Any]) -> DuplicateKey:
    return (
        item["ssin"],
        item["type"],
        item["registrationDate"],
        tuple(sorted(item["employer"].items())),  # the schema made every value a string
        item["contractualRelationshipReference"],
    )


class RegistrationBook:
    """The declarations of works known, and every registration created, in order."""

    def __init__(self) -> None:
        self.declarations: dict[str, frozenset[str]] = {}
        self._created: list[Registration] = []
        self._keys: set[DuplicateKey] = set()
        self._next_id = 1  # never reset: ids stay unique for the life of the process

    def set_declaration(self, declaration: str, employers: Iterable[str]) -> None:
        self.declarations[declaration] = frozenset(employers)

    def register(
        self, items: list[dict[str, Any]], client_id: str, received_at: datetime, rules: Rules
    ) -> list[dict[str, Any]]:
        """One answer per schema-valid item, in order; the acceptable ones are stored.

        The book keeps the items it stores, not copies: the caller gives them up.
        """
        call = _Call.of(client_id, received_at, rules)
        return [self._register_one(item, call) for item in items]

    def created(self, after_id: int | None = None) -> list[dict[str, Any]]:
        start = after_id if after_id is not None else 0
        return [record.as_json() for record in self._created if record.id > start]

    def forget(self) -> None:
        self._created.clear()
        self._keys.clear()

    def _register_one(self, item: dict[str, Any], call: _Call) -> dict[str, Any]:
        when = registration_time(item)
        errors = business_errors(item, when, self.declarations, call.latest)
        if errors:
            return {"notCreatedPresenceRegistration": {"errors": errors}}
        key = _duplicate_key(item)
        record = Registration(
            id=self._next_id,
            item=item,
            client_id=call.client_id,
            received_at=call.received_at,
            remarks=self._remarks(when, key, call),
        )
        self._next_id += 1
        self._created.append(record)
        self._keys.add(key)
        answer = {"id": record.id, "validity": "pending", "remarks": list(record.remarks)}
        return {"createdPresenceRegistration": answer}

    def _remarks(self, when: datetime, key: DuplicateKey, call: _Call) -> tuple[str, ...]:
        remarks = []
        if call.received_at - when > call.late:
            remarks.append(LATE)
        if key in self._keys:
            remarks.append(DUPLICATE)
        return tuple(remarks)
