"""registerInBulk once the call is accepted: per-item checks, ids, remarks, the stored book.

Not thread-safe: the caller holds the simulator's lock.
"""

from __future__ import annotations

import copy
import json
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


def _iso(moment: datetime) -> str:
    return moment.isoformat(timespec="microseconds").replace("+00:00", "Z")


def _duplicate_key(item: dict[str, Any]) -> tuple[str, ...]:
    return (
        item["ssin"],
        item["type"],
        item["registrationDate"],
        json.dumps(item["employer"], sort_keys=True),
        item["contractualRelationshipReference"],
    )


class RegistrationBook:
    """The declarations of works known, and every registration created, in order."""

    def __init__(self) -> None:
        self.declarations: dict[str, frozenset[str]] = {}
        self._created: list[Registration] = []
        self._keys: set[tuple[str, ...]] = set()
        self._next_id = 1  # never reset: ids stay unique for the life of the process

    def set_declaration(self, declaration: str, employers: Iterable[str]) -> None:
        self.declarations[declaration] = frozenset(employers)

    def register(
        self, items: list[dict[str, Any]], client_id: str, received_at: datetime, rules: Rules
    ) -> list[dict[str, Any]]:
        """One answer per schema-valid item, in order; the acceptable ones are stored."""
        return [self._register_one(item, client_id, received_at, rules) for item in items]

    def created(self, after_id: int | None = None) -> list[dict[str, Any]]:
        start = after_id if after_id is not None else 0
        return [record.as_json() for record in self._created if record.id > start]

    def forget(self) -> None:
        self._created.clear()
        self._keys.clear()

    def _register_one(
        self, item: dict[str, Any], client_id: str, received_at: datetime, rules: Rules
    ) -> dict[str, Any]:
        errors = business_errors(item, self.declarations, received_at, rules.future_tolerance_s)
        if errors:
            return {"notCreatedPresenceRegistration": {"errors": errors}}
        record = Registration(
            id=self._next_id,
            item=copy.deepcopy(item),
            client_id=client_id,
            received_at=received_at,
            remarks=self._remarks(item, received_at, rules),
        )
        self._next_id += 1
        self._created.append(record)
        self._keys.add(_duplicate_key(item))
        answer = {"id": record.id, "validity": "pending", "remarks": list(record.remarks)}
        return {"createdPresenceRegistration": answer}

    def _remarks(
        self, item: dict[str, Any], received_at: datetime, rules: Rules
    ) -> tuple[str, ...]:
        remarks = []
        if received_at - registration_time(item) > timedelta(seconds=rules.late_threshold_s):
            remarks.append(LATE)
        if _duplicate_key(item) in self._keys:
            remarks.append(DUPLICATE)
        return tuple(remarks)
