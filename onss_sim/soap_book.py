"""Checkinatwork presence registrations once a registerPresences call is accepted: the
workplaces known, the per-item checks (§5.1.3, p. 12), ids, the later validation, the
simulated date.

Not thread-safe: the caller holds the simulator's lock. Identifier checks are
onss_sim.checks' (written apart from the gateway's on purpose).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from onss_sim.checks import enterprise_number_is_valid, ssin_is_valid

BRUSSELS = ZoneInfo("Europe/Brussels")  # the service's "today" [ours: the spec names none]
DEFAULT_VALIDATION_DELAY_S = 1.0
MAX_OFFSET_DAYS = 3660  # the simulated date stays within ten years of the real one
DUPLICATE = "SAME DECLARATION HAS ALREADY BEEN REGISTERED"  # SearchRemarkType, p. 29
REGISTERED, VALIDATED, FAILED = "SUCCESSFULLY REGISTERED", "VALIDATED", "FAILED"

# §5.1.3, p. 12, as printed.
INVALID_COMPANY = ("2", "Invalid companyId node content. Invalid KBO/BCE number")
COMPANY_NOT_IN_WORKPLACE = ("3", "Invalid companyId node content. Invalid KBO/BCE number")
INVALID_WORKPLACE = (
    "4",
    "Invalid WorkPlaceId node content. Invalid Déclaration de Travaux/Aangifte van Werken number",
)
INVALID_INSS = ("5", "Invalid INSS node content. Invalid INSZ/INSS number")
INVALID_DATE = ("6", "Invalid registration date (only today or tomorrow are allowed)")

Error = tuple[str, str]  # code, description


@dataclass(frozen=True)
class Submitted:
    """One PresenceRegistrationRequest as sent (texts as written, None when absent)."""

    workplace: str
    registration_date: str | None = None
    inss: str | None = None
    company_id: str | None = None
    limosa_id: str | None = None
    reference: str | None = None

    @property
    def person(self) -> tuple[str, str]:
        if self.limosa_id is not None:
            return ("LimosaId", self.limosa_id)
        return ("INSS", self.inss or "")


@dataclass(frozen=True)
class Validation:
    status: str
    at: datetime | None = None  # simulated Brussels time, naive (as the examples write it)
    remarks: tuple[str, ...] = ()


@dataclass(frozen=True)
class Presence:
    """One registration created."""

    id: int
    submitted: Submitted
    day: date
    client_id: str
    received_at: datetime  # real UTC
    created_at: datetime  # simulated Brussels time, naive: CreationDate
    validated_after: datetime  # real UTC: from then on, getPresenceRegistration shows it
    duplicate: bool

    def validation(self, now: datetime) -> Validation:
        """SUCCESSFULLY REGISTERED until validated; then VALIDATED, or FAILED with the
        duplicate remark (the registration still exists)."""
        if now < self.validated_after:
            return Validation(REGISTERED)
        at = self.created_at + (self.validated_after - self.received_at)
        if self.duplicate:
            return Validation(FAILED, at, (DUPLICATE,))
        return Validation(VALIDATED, at)


@dataclass(frozen=True)
class Outcome:
    """What one item is answered with: a presence created, or its errors."""

    submitted: Submitted
    presence: Presence | None = None
    errors: tuple[Error, ...] = ()


class PresenceBook:
    """Workplaces (WorkPlaceId -> companies), presences, the simulated date."""

    def __init__(self) -> None:
        self.workplaces: dict[str, frozenset[str]] = {}
        self.offset_days = 0  # POST /_sim/clock: the simulated date minus the real one
        self._presences: list[Presence] = []
        self._keys: set[tuple[tuple[str, str], str, date]] = set()
        self._received: Counter[str] = Counter()  # reference -> items received with it
        self._next_id = 1  # never reset

    def set_workplace(self, workplace: str, companies: Iterable[str]) -> None:
        self.workplaces[workplace] = frozenset(companies)

    # --- the simulated date ---------------------------------------------------------------

    def local_now(self, now: datetime) -> datetime:
        """The simulated time in Brussels, naive."""
        moved = now.astimezone(BRUSSELS) + timedelta(days=self.offset_days)
        return moved.replace(tzinfo=None)

    def today(self, now: datetime) -> date:
        return self.local_now(now).date()

    def set_today(self, day: date | None, now: datetime) -> None:
        """Make `day` the simulated today (it turns at real Brussels midnight); None: real.
        ValueError if it is more than MAX_OFFSET_DAYS away."""
        real = now.astimezone(BRUSSELS).date()
        offset = 0 if day is None else (day - real).days
        if abs(offset) > MAX_OFFSET_DAYS:
            raise ValueError(f"the date must be within {MAX_OFFSET_DAYS} days of today")
        self.offset_days = offset

    # --- registering ----------------------------------------------------------------------

    def register(
        self,
        items: list[Submitted],
        client_id: str,
        now: datetime,
        delay_s: float,
        forced: dict[tuple[str, str], Error],
    ) -> list[Outcome]:
        """One outcome per item, in order; the acceptable ones are stored. `forced` maps a
        person (("INSS", n) or ("LimosaId", id)) to an injected business error."""
        today = self.today(now)
        outcomes = []
        for item in items:
            if item.reference is not None:
                self._received[item.reference] += 1
            errors = ([forced[item.person]] if item.person in forced else []) + self._errors(
                item, today
            )
            if errors:
                outcomes.append(Outcome(item, errors=tuple(errors)))
            else:
                outcomes.append(Outcome(item, self._create(item, client_id, now, delay_s)))
        return outcomes

    def _errors(self, item: Submitted, today: date) -> list[Error]:
        errors: list[Error] = []
        companies = self.workplaces.get(item.workplace)
        if item.company_id is not None:
            number = _enterprise_number(item.company_id)
            if number is None or not enterprise_number_is_valid(number):
                errors.append(INVALID_COMPANY)
            elif companies is not None and number not in companies:
                errors.append(COMPANY_NOT_IN_WORKPLACE)
        if companies is None:
            errors.append(INVALID_WORKPLACE)
        if item.inss is not None and not ssin_is_valid(item.inss):
            errors.append(INVALID_INSS)
        day = _day(item.registration_date, today)
        if day is None or not today <= day <= today + timedelta(days=1):
            errors.append(INVALID_DATE)
        return errors

    def _create(self, item: Submitted, client_id: str, now: datetime, delay_s: float) -> Presence:
        day = _day(item.registration_date, self.today(now))
        assert day is not None  # checked
        key = (item.person, item.workplace, day)
        presence = Presence(
            id=self._next_id,
            submitted=item,
            day=day,
            client_id=client_id,
            received_at=now,
            created_at=self.local_now(now),
            validated_after=now + timedelta(seconds=delay_s),
            duplicate=key in self._keys,
        )
        self._next_id += 1
        self._keys.add(key)
        self._presences.append(presence)
        return presence

    # --- reading --------------------------------------------------------------------------

    def get(self, presence_id: int, client_id: str) -> Presence | None:
        """The presence of that id if this client made it (no other's is shown)."""
        found = next((p for p in self._presences if p.id == presence_id), None)
        return found if found is not None and found.client_id == client_id else None

    def listed(self, now: datetime, after_id: int | None = None) -> list[dict[str, Any]]:
        start = after_id or 0
        return [self._as_json(p, now) for p in self._presences if p.id > start]

    def forget(self) -> None:
        """Forget presences, counts and the simulated date (ids are never reused)."""
        self._presences.clear()
        self._keys.clear()
        self._received.clear()
        self.offset_days = 0

    def _as_json(self, presence: Presence, now: datetime) -> dict[str, Any]:
        item, validation = presence.submitted, presence.validation(now)
        return {
            "id": presence.id,
            "reference": item.reference,
            "inss": item.inss,
            "company_id": item.company_id,
            "limosa_id": item.limosa_id,
            "workplace": item.workplace,
            "date": presence.day.isoformat(),
            "client_id": presence.client_id,
            "received_at": presence.received_at.isoformat(timespec="microseconds").replace(
                "+00:00", "Z"
            ),
            "status": validation.status,
            "remarks": list(validation.remarks),
            "times_received": self._received[item.reference] if item.reference else 1,
        }


def _enterprise_number(company_id: str) -> str | None:
    """The 10-digit KBO/BCE number an xs:long CompanyID writes (448181966 is 0448181966)."""
    try:
        value = int(company_id)
    except ValueError:
        return None
    return f"{value:010d}" if 0 <= value < 10**10 else None


def _day(text: str | None, today: date) -> date | None:
    """The RegistrationDate (absent: today, §6.1.29 p. 25); None if it names no day. An
    xs:date may carry a zone (2026-12-07Z): the day is its first ten characters."""
    if text is None:
        return today
    try:
        return date.fromisoformat(text[:10])
    except ValueError:
        return None


def real_now() -> datetime:
    return datetime.now(UTC)
