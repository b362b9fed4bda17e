"""The path of one tap: badges -> attendance -> journal -> feedback (docs/design.md,
"The path of one tap").

`TapPipeline.handle` runs the whole path synchronously on the thread that read the card
(a reader thread, or a worker thread for taps injected over the control socket). Taps
are handled one at a time under one lock, so each decision sees the journal as the
previous tap left it. Feedback is given only after the commit returned: a positive beep
means the registration is on disk. No hand-off to another thread sits between the card
and the beep: each hand-off costs a scheduler wake-up, and the fsync is cost enough.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import structlog

from drivers.base import BadgeRead
from gateway.attendance import AlreadyToday, AttendanceRules, Decision, Refuse, Register, Repeat
from gateway.badges import BadgeRegister
from gateway.clock import Clock
from gateway.errors import StorageError
from gateway.feedback import Feedback, OutcomeKind, TapOutcome
from gateway.journal import TapAttempt, TapJournal
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
        journal: TapJournal,
        outputs: Sequence[Feedback],
        site_language: Language,
        uplink_online: Callable[[], bool | None] = lambda: None,
    ) -> None:
        self.clock = clock
        self._badges = badges
        self._rules = rules
        self._journal = journal
        self._outputs = tuple(outputs)
        self._site_language = site_language
        self._uplink_online = uplink_online
        self._one_at_a_time = threading.Lock()
        self.counters = TapCounters()
        self.busy_since: float | None = None  # time.monotonic() of the tap in progress

    def handle(self, read: BadgeRead) -> TapOutcome:
        with self._one_at_a_time:
            self.busy_since = time.monotonic()
            try:
                outcome = self._settle(read)
                self._tell(outcome)
                return outcome
            finally:
                self.busy_since = None

    def _settle(self, read: BadgeRead) -> TapOutcome:
        clock = self.clock.sample(at_monotonic_ns=read.monotonic_ns)  # when it was read
        worker = self._badges().lookup(read.uid)
        try:
            last = self._last_registration(worker)
            decision = self._rules.decide(read, worker, last, clock)
            outcome = self._store(read, decision, clock)
        except (StorageError, sqlite3.Error) as error:
            outcome = self._cannot_store(read, worker, clock, error)
        self._count(outcome)
        return outcome

    def _last_registration(self, worker: Worker | None) -> Registration | None:
        if worker is None:
            return None
        return self._journal.previous_registration(worker, self._rules.declaration_of(worker))

    def _store(self, read: BadgeRead, decision: Decision, clock: ClockSample) -> TapOutcome:
        match decision:
            case Register(registration):
                self._journal.append_registration(registration)
                return self._outcome(
                    OutcomeKind.REGISTERED, read, registration.worker, clock, registration
                )
            case Repeat(previous):
                return self._again(OutcomeKind.REPEAT, read, previous, clock)
            case AlreadyToday(previous):
                return self._again(OutcomeKind.ALREADY_TODAY, read, previous, clock)
            case Refuse(reason, worker):
                kind = OutcomeKind(reason.value)
                self._journal.append_attempt(self._attempt(kind, read, worker, clock))
                return self._outcome(kind, read, worker, clock)

    def _again(
        self, kind: OutcomeKind, read: BadgeRead, previous: Registration, clock: ClockSample
    ) -> TapOutcome:
        """A tap kept as an attempt, answered with the registration it already made."""
        attempt = self._attempt(kind, read, previous.worker, clock, str(previous.id))
        self._journal.append_attempt(attempt)
        return self._outcome(kind, read, previous.worker, previous.clock, previous)

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
            uplink_online=self._uplink_online(),
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

    def _tell(self, outcome: TapOutcome) -> None:
        for output in self._outputs:
            try:
                output.show(outcome)
            except Exception:
                log.exception("feedback output failed", output=type(output).__name__)
