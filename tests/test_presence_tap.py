"""The tap path on a Checkinatwork site (issue 16), below the daemon: a real badge register
(limosa and declaration columns, checked against the site), a real journal, the real
clock. The first tap of a person's day is their presence; a later one is kept as an
attempt naming it and answered "already registered today"; a person on two rows (two
contracts at this entrance) is registered under each."""

from __future__ import annotations

import time
from datetime import datetime
from pathlib import Path

import pytest

from drivers.base import BadgeRead
from gateway.attendance import AttendanceRules
from gateway.badges import BadgeSite, load_badge_register
from gateway.clock import Clock, boottime_ns
from gateway.feedback import OutcomeKind, TapOutcome
from gateway.journal import Journal
from gateway.models import Channel, Direction, Language
from gateway.tap import TapPipeline
from tests.support import BRUSSELS, CHECKINATWORK_SITE, LIMOSA, WORKPLACE

OTHER_WORKPLACE = "1Y1000003EQCZ"
REGISTER = f"""\
badge_uid,niss,limosa,employer,name,language,capacity,declaration
04A23B9C,85073003328,,0450905686,Marie,fr,employee,
04FFFF01,85073003328,,0450905686,Marie,fr,employee,{OTHER_WORKPLACE}
AABBCCDD,,{LIMOSA},FR40303265045,Ana,en,posted-worker,
"""


class Shown:
    """A feedback output that keeps what it was shown."""

    def __init__(self) -> None:
        self.outcomes: list[TapOutcome] = []

    def show(self, outcome: TapOutcome) -> None:
        self.outcomes.append(outcome)


def pipeline(tmp_path: Path, journal: Journal, shown: Shown) -> TapPipeline:
    path = tmp_path / "badges.csv"
    path.write_text(REGISTER, encoding="utf-8")
    site = BadgeSite(Channel.CHECKINATWORK, (WORKPLACE, OTHER_WORKPLACE))
    register = load_badge_register(path, site)
    assert register.errors == ()
    return TapPipeline(
        clock=Clock([], tmp_path / "synchronized"),
        badges=lambda: register,
        rules=AttendanceRules(CHECKINATWORK_SITE),
        journal=journal,
        outputs=[shown],
        site_language=Language.FR,
    )


def not_at_midnight() -> None:
    """The taps of a test must fall on one Brussels day: wait out midnight's last seconds."""
    for _ in range(20):
        now = datetime.now(BRUSSELS)
        if (now.hour, now.minute, now.second) < (23, 59, 50):
            return
        time.sleep(0.6)


def tap(pipe: TapPipeline, uid: str) -> TapOutcome:
    return pipe.handle(BadgeRead(uid, "gate", "test", boottime_ns(), None))


def test_a_second_tap_the_same_day_is_kept_as_an_attempt_naming_the_presence(
    tmp_path: Path, journal: Journal
) -> None:
    shown = Shown()
    pipe = pipeline(tmp_path, journal, shown)
    not_at_midnight()

    first = tap(pipe, "04A23B9C")
    again = tap(pipe, "04A23B9C")

    assert (first.kind, first.direction) == (OutcomeKind.REGISTERED, Direction.PRESENCE)
    assert again.kind is OutcomeKind.ALREADY_TODAY and again.kind.positive
    assert again.registration_id == first.registration_id
    assert again.local_time == first.local_time  # the time of the registration, not the tap
    assert again.message() == f"Déjà enregistré aujourd'hui à {first.local_time:%H:%M}"
    [attempt] = journal.recent_attempts(10)
    assert (attempt["outcome"], attempt["detail"]) == ("already-today", str(first.registration_id))
    assert journal.stats().registrations == 1
    assert shown.outcomes == [first, again]
    kinds = [entry.kind for entry in journal.evidence_after(0, 100)]
    assert kinds == ["registration"]  # nothing was refused: no tap-refused entry


def test_a_person_on_two_rows_is_registered_under_each_declaration(
    tmp_path: Path, journal: Journal
) -> None:
    pipe = pipeline(tmp_path, journal, Shown())
    not_at_midnight()

    kinds = [tap(pipe, uid).kind for uid in ("04A23B9C", "04FFFF01", "04A23B9C", "04FFFF01")]

    assert kinds == [OutcomeKind.REGISTERED] * 2 + [OutcomeKind.ALREADY_TODAY] * 2
    stored = journal.recent_registrations(10)
    assert sorted(s.registration.declaration for s in stored) == sorted(
        [WORKPLACE, OTHER_WORKPLACE]
    )


def test_a_posted_worker_taps_by_badge_and_is_registered_by_limosa_number(
    tmp_path: Path, journal: Journal
) -> None:
    pipe = pipeline(tmp_path, journal, Shown())
    not_at_midnight()

    first, again = tap(pipe, "AABBCCDD"), tap(pipe, "AABBCCDD")

    assert (first.kind, again.kind) == (OutcomeKind.REGISTERED, OutcomeKind.ALREADY_TODAY)
    assert first.message().startswith("PRESENT ")  # in the worker's language
    [stored] = journal.recent_registrations(10)
    worker = stored.registration.worker
    assert (worker.niss, worker.limosa, stored.registration.place) == (None, LIMOSA, None)


@pytest.mark.parametrize(
    ("language", "text"),
    [
        (Language.EN, "Already registered today at 07:02"),
        (Language.FR, "Déjà enregistré aujourd'hui à 07:02"),
        (Language.NL, "Vandaag al geregistreerd om 07:02"),
        (Language.DE, "Heute bereits registriert um 07:02"),
    ],
)
def test_already_today_is_said_in_the_workers_language(language: Language, text: str) -> None:
    outcome = TapOutcome(
        kind=OutcomeKind.ALREADY_TODAY,
        language=language,
        badge_uid="04A23B9C",
        reader="gate",
        local_time=datetime(2026, 11, 23, 7, 2, 41, tzinfo=BRUSSELS),
        direction=Direction.PRESENCE,
        worker_name="Marie",
    )

    assert outcome.message() == text
