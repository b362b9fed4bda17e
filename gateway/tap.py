"""The path of one tap: identity -> attendance -> journal -> feedback (DESIGN.md).

Taps are handled one at a time, in arrival order, so each decision sees the journal as
the previous tap left it. Feedback is given only after the journal call returned: a
positive beep means the registration is on disk.
"""

from __future__ import annotations

import sqlite3
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

import structlog

from drivers.base import BadgeRead
from gateway.attendance import AttendanceRules, Decision, Refuse, Register, Repeat
from gateway.clock import Clock
from gateway.feedback import Feedback, OutcomeKind, TapOutcome
from gateway.identity import BadgeRegister
from gateway.journal import AsyncJournal, StorageError, TapAttempt
from gateway.models import ClockSample, Language, Registration, Worker

log = structlog.get_logger("tap")


@dataclass(slots=True)
class TapCounters:
    outcomes: Counter[str] = field(default_factory=Counter)
    last_storage_error: str | None = None


class TapPipeline:
    def __init__(
        self,
        *,
        clock: Clock,
        badges: Callable[[], BadgeRegister],
        rules: AttendanceRules,
        journal: AsyncJournal,
        outputs: Sequence[Feedback],
        site_language: Language,
    ) -> None:
        self.clock = clock
        self._badges = badges
        self._rules = rules
        self._journal = journal
        self._outputs = tuple(outputs)
        self._site_language = site_language
        self.counters = TapCounters()

    async def handle(self, read: BadgeRead) -> TapOutcome:
        clock = self._clock_at(read)
        worker = self._badges().lookup(read.uid)
        try:
            last = await self._last_registration(worker)
            decision = self._rules.decide(read, worker, last, clock)
            outcome = await self._store(read, decision, clock)
        except (StorageError, sqlite3.Error) as error:
            outcome = self._cannot_store(read, worker, clock, error)
        self._count(outcome)
        await self._tell(outcome)
        return outcome

    def _clock_at(self, read: BadgeRead) -> ClockSample:
        """The clock as it was when the card was read, not when the tap got its turn."""
        now = self.clock.sample()
        waited = max(0, now.monotonic_ns - read.monotonic_ns)
        return replace(now, wall_ns=now.wall_ns - waited, monotonic_ns=now.monotonic_ns - waited)

    async def _last_registration(self, worker: Worker | None) -> Registration | None:
        if worker is None:
            return None
        return await self._journal.last_registration(worker.niss, self._rules.site.declaration)

    async def _store(self, read: BadgeRead, decision: Decision, clock: ClockSample) -> TapOutcome:
        match decision:
            case Register(registration):
                await self._journal.append_registration(registration)
                return self._outcome(
                    OutcomeKind.REGISTERED, read, registration.worker, clock, registration
                )
            case Repeat(previous):
                attempt = self._attempt(
                    OutcomeKind.REPEAT, read, previous.worker, clock, str(previous.id)
                )
                await self._journal.append_attempt(attempt)
                return self._outcome(
                    OutcomeKind.REPEAT, read, previous.worker, previous.clock, previous
                )
            case Refuse(reason, worker):
                kind = OutcomeKind(reason.value)
                await self._journal.append_attempt(self._attempt(kind, read, worker, clock))
                return self._outcome(kind, read, worker, clock)

    def _attempt(
        self,
        kind: OutcomeKind,
        read: BadgeRead,
        worker: Worker | None,
        clock: ClockSample,
        detail: str | None = None,
    ) -> TapAttempt:
        return TapAttempt(
            outcome=kind.value,
            badge_uid=read.uid,
            reader=read.reader,
            clock=clock,
            niss=worker.niss if worker else None,
            detail=detail,
        )

    def _outcome(
        self,
        kind: OutcomeKind,
        read: BadgeRead,
        worker: Worker | None,
        clock: ClockSample,
        registration: Registration | None = None,
    ) -> TapOutcome:
        return TapOutcome(
            kind=kind,
            language=worker.language if worker else self._site_language,
            badge_uid=read.uid,
            reader=read.reader,
            local_time=self._rules.local_time(clock),
            direction=registration.direction if registration else None,
            worker_name=worker.name if worker else None,
            registration_id=registration.id if registration else None,
        )

    def _cannot_store(
        self, read: BadgeRead, worker: Worker | None, clock: ClockSample, error: Exception
    ) -> TapOutcome:
        self.counters.last_storage_error = str(error)
        log.error(
            "journal cannot store: tap NOT registered",
            error=str(error),
            badge=read.uid,
            reader=read.reader,
            niss=worker.niss if worker else None,
        )
        return self._outcome(OutcomeKind.CANNOT_STORE, read, worker, clock)

    def _count(self, outcome: TapOutcome) -> None:
        self.counters.outcomes[outcome.kind.value] += 1
        if outcome.kind is not OutcomeKind.CANNOT_STORE:
            self.counters.last_storage_error = None

    async def _tell(self, outcome: TapOutcome) -> None:
        for output in self._outputs:
            try:
                await output.show(outcome)
            except Exception:
                log.exception("feedback output failed", output=type(output).__name__)
