"""Attendance rules: from a read, its worker and their last registration, decide what to do.

Pure: no I/O, no clock reads. The tap pipeline gathers the inputs and stores the result.
A registration goes under its worker's own declaration (their badge register row's) or
the site's default one; "last registration" means under that declaration.

On a Checkinatwork site (docs/checkinatwork.md), a person's first valid tap of the day
(the site's time zone) registers their PRESENCE; every later tap that day is answered
"already registered today" and registers nothing. The rest is for CIaO sites:
- Toggle mode: the next type is the opposite of the worker's last stored registration at
  this site (IN, OUT, IN, ... across midnight and restarts); the first ever is IN. A
  reader key that says IN or OUT wins over the toggle.
- Explicit mode: the reader or a key must say IN or OUT.
- Debounce: a second tap of the same worker within the window is the same tap (unless a
  key asks for the other type): nothing new is registered, the worker is told what was.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime
from typing import Literal
from zoneinfo import ZoneInfo

from drivers.base import BadgeRead
from gateway.models import Channel, ClockSample, Direction, PlaceOfWork, Registration, Worker
from gateway.uuid7 import uuid7


class Refusal(enum.StrEnum):
    UNKNOWN_BADGE = "unknown-badge"
    NOT_YET_VALID = "not-yet-valid"
    EXPIRED = "expired"
    DIRECTION_REQUIRED = "direction-required"


@dataclass(frozen=True, slots=True)
class Register:
    registration: Registration


@dataclass(frozen=True, slots=True)
class Repeat:
    """The same tap again: `previous` is the registration it already made."""

    previous: Registration


@dataclass(frozen=True, slots=True)
class AlreadyToday:
    """Checkinatwork: `previous` is today's presence registration of this person."""

    previous: Registration


@dataclass(frozen=True, slots=True)
class Refuse:
    reason: Refusal
    worker: Worker | None


Decision = Register | Repeat | AlreadyToday | Refuse


@dataclass(frozen=True, slots=True)
class Site:
    declaration: str  # the default one
    place: PlaceOfWork | None
    tz: ZoneInfo
    channel: Channel = Channel.CIAO


@dataclass(frozen=True, slots=True)
class AttendanceRules:
    site: Site
    mode: Literal["toggle", "explicit"] = "toggle"
    debounce_ns: int = 10_000_000_000

    def decide(
        self,
        read: BadgeRead,
        worker: Worker | None,
        last: Registration | None,
        clock: ClockSample,
    ) -> Decision:
        if worker is None:
            return Refuse(Refusal.UNKNOWN_BADGE, None)
        refusal = self._validity(worker, clock)
        if refusal is not None:
            return Refuse(refusal, worker)
        if self.site.channel is Channel.CHECKINATWORK:
            return self._presence(read, worker, last, clock)
        if last is not None and self._is_repeat(read, last, clock):
            return Repeat(last)
        direction = self._direction(read, last)
        if direction is None:
            return Refuse(Refusal.DIRECTION_REQUIRED, worker)
        return Register(self._registration(read, worker, direction, clock))

    def declaration_of(self, worker: Worker) -> str:
        return worker.declaration or self.site.declaration

    def _presence(
        self, read: BadgeRead, worker: Worker, last: Registration | None, clock: ClockSample
    ) -> Decision:
        if (
            last is not None
            and last.direction is Direction.PRESENCE
            and self._same_day(last, clock)
        ):
            return AlreadyToday(last)
        return Register(self._registration(read, worker, Direction.PRESENCE, clock))

    def _same_day(self, last: Registration, clock: ClockSample) -> bool:
        return self.local_time(last.clock).date() == self.local_time(clock).date()

    def _is_repeat(self, read: BadgeRead, last: Registration, clock: ClockSample) -> bool:
        """Within the window the same tap again, unless a key now asks for the other type."""
        asks_other = read.direction is not None and read.direction != last.direction
        return not asks_other and self._within_debounce(last, clock)

    def _direction(self, read: BadgeRead, last: Registration | None) -> Direction | None:
        if read.direction is not None:
            return Direction(read.direction)
        if self.mode == "explicit":
            return None
        return Direction.IN if last is None else last.direction.opposite()

    def _within_debounce(self, last: Registration, clock: ClockSample) -> bool:
        """Either way round: two readers may hand over their reads in the other order."""
        if last.clock.boot_id == clock.boot_id:
            apart = abs(clock.monotonic_ns - last.clock.monotonic_ns)
        else:  # another boot: the wall clocks are all there is to compare
            apart = abs(clock.wall_ns - last.clock.wall_ns)
        return apart < self.debounce_ns

    def _validity(self, worker: Worker, clock: ClockSample) -> Refusal | None:
        if worker.valid_from is None and worker.valid_until is None:
            return None
        today = self.local_time(clock).date()
        if worker.valid_from is not None and today < worker.valid_from:
            return Refusal.NOT_YET_VALID
        if worker.valid_until is not None and today > worker.valid_until:
            return Refusal.EXPIRED
        return None

    def local_time(self, clock: ClockSample) -> datetime:
        return clock.wall_time.astimezone(self.site.tz)

    def _registration(
        self, read: BadgeRead, worker: Worker, direction: Direction, clock: ClockSample
    ) -> Registration:
        return Registration(
            id=uuid7(),
            badge_uid=worker.badge_uid,
            reader=read.reader,
            worker=worker,
            declaration=self.declaration_of(worker),
            place=self.site.place,
            direction=direction,
            clock=clock,
        )
