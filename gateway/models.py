"""The typed values that flow along the tap path (docs/design.md, "The path of one tap").

Plain frozen dataclasses: every stage receives one of these and hands the next one on.
The place of work is a pydantic model because it is read from the configuration and
sent to the ONSS as it is.
"""

from __future__ import annotations

import enum
import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Self

from pydantic import BaseModel, ConfigDict, Field, model_validator


class Direction(enum.StrEnum):
    """A registration's type: IN or OUT (CIaO), or PRESENCE (Checkinatwork: this person is
    at this workplace today, once a day)."""

    IN = "IN"
    OUT = "OUT"
    PRESENCE = "PRESENCE"

    def opposite(self) -> Direction:
        return Direction.OUT if self is Direction.IN else Direction.IN


class Channel(enum.StrEnum):
    """The ONSS service a site registers with (docs/domain.md)."""

    CIAO = "ciao"  # cleaning: every IN and OUT, over the REST service
    CHECKINATWORK = "checkinatwork"  # construction, meat: one presence a day, over SOAP


class Language(enum.StrEnum):
    FR = "fr"
    NL = "nl"
    DE = "de"
    EN = "en"


class Capacity(enum.StrEnum):
    """The capacity of a person on site (docs/domain.md, "What a registration carries")."""

    EMPLOYEE = "employee"
    SELF_EMPLOYED = "self-employed"
    EMPLOYER = "employer"
    TEMP = "temp"
    TRAINEE = "trainee"
    STUDENT = "student"
    POSTED_WORKER = "posted-worker"
    HELPER = "helper"


class DeliveryState(enum.StrEnum):
    PENDING = "pending"  # the uplink's queue
    DELIVERED = "delivered"
    REJECTED = "rejected"
    # The ONSS may hold it, but its answer could not be read: never sent again by itself;
    # the employer confirms it (`queue confirm`) or sends it again, flagged (`queue retry`).
    UNCONFIRMED = "unconfirmed"


class UplinkState(enum.StrEnum):
    """Where delivery to the ONSS stands; `status` shows the value."""

    UNKNOWN = "unknown"  # no request has ended yet
    ONLINE = "online"
    OFFLINE = "offline"  # the last request failed (the cause says how); retried with backoff
    FORBIDDEN = "forbidden"  # 403: scope or permission at the ONSS; retried slowly
    MISCONFIGURED = "misconfigured"  # the uplink could not start (its key): nothing is sent
    # a 401 a fresh token does not cure, or the token endpoint refuses our credentials: the
    # client id, key or scope (a configuration matter); retried with a growing backoff
    UNAUTHORIZED = "unauthorized"


@dataclass(frozen=True, slots=True)
class Employer:
    """Exactly one of a Belgian enterprise number (10 digits) or a foreign VAT id."""

    enterprise_number: str | None = None
    foreign_vat: str | None = None

    def __post_init__(self) -> None:
        if (self.enterprise_number is None) == (self.foreign_vat is None):
            raise ValueError("an employer has exactly one of enterprise_number or foreign_vat")

    @property
    def ident(self) -> str:
        return self.enterprise_number or self.foreign_vat or ""


@dataclass(frozen=True, slots=True)
class Worker:
    """One line of the employer's badge register: a person with a NISS, or a posted
    foreign worker known by their Limosa declaration's number (exactly one of the two)."""

    badge_uid: str
    niss: str | None
    employer: Employer
    name: str
    language: Language
    capacity: Capacity
    valid_from: date | None = None
    valid_until: date | None = None
    limosa: str | None = None
    declaration: str | None = None  # this worker's contract; None: the site's default

    def __post_init__(self) -> None:
        if (self.niss is None) == (self.limosa is None):
            raise ValueError("a worker has exactly one of niss or limosa")

    @property
    def person(self) -> str:
        """Who, as logs and evidence may show it: the masked NISS, or 'Limosa ' + its id's
        last characters."""
        if self.niss is not None:
            return mask(self.niss)
        return "Limosa " + mask(self.limosa or "")


class Coordinates(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    latitude: float = Field(ge=-90, le=90)
    longitude: float = Field(ge=-180, le=180)


class Address(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    post_code: str = Field(min_length=1, max_length=12)
    municipality: str = Field(min_length=1)
    street: str = Field(min_length=1)
    house_number: str = Field(min_length=1)
    box: str | None = None


class PlaceOfWork(BaseModel):
    """GPS coordinates (preferred by the ONSS) or a postal address, never both."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    coordinates: Coordinates | None = None
    address: Address | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> Self:
        if (self.coordinates is None) == (self.address is None):
            raise ValueError("give exactly one of coordinates or address")
        return self


def mask(identifier: str) -> str:
    """A personal identifier with all but its last three characters hidden."""
    return "*" * max(len(identifier) - 3, 0) + identifier[-3:]


def iso_utc(wall_ns: int) -> str:
    """A wall time in nanoseconds as ISO 8601 UTC, to the second."""
    return datetime.fromtimestamp(wall_ns / 1e9, tz=UTC).isoformat(timespec="seconds")


@dataclass(frozen=True, slots=True)
class ClockSample:
    """The time of one event, as evidence (docs/design.md, "Principles": time is evidence).

    monotonic_ns is CLOCK_BOOTTIME: it keeps counting through suspend, so a wall time can
    be re-derived later from any other sample of the same boot.
    """

    wall_ns: int
    monotonic_ns: int
    boot_id: str
    synced: bool

    @property
    def wall_time(self) -> datetime:
        return datetime.fromtimestamp(self.wall_ns / 1e9, tz=UTC)

    def wall_at(self, monotonic_ns: int) -> int:
        """The wall time, by this sample's clock, of another moment of the same boot."""
        return self.wall_ns - (self.monotonic_ns - monotonic_ns)


@dataclass(frozen=True, slots=True)
class Registration:
    """One IN, OUT or PRESENCE, as stored in the journal and later sent to the ONSS."""

    id: uuid.UUID
    badge_uid: str
    reader: str
    worker: Worker
    declaration: str  # CIaO: the declaration of works; Checkinatwork: the WorkPlaceId
    place: PlaceOfWork | None  # None on a Checkinatwork site, which need not declare it
    direction: Direction
    clock: ClockSample
    delivery: DeliveryState = DeliveryState.PENDING
