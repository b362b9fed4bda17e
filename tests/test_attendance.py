"""The IN/OUT and presence rules: pure decisions over reads, workers, the last registration."""

from __future__ import annotations

from dataclasses import replace
from datetime import date
from pathlib import Path
from typing import Any, Literal

import pytest

from gateway.attendance import (
    AlreadyToday,
    AttendanceRules,
    Decision,
    Refusal,
    Refuse,
    Register,
    Repeat,
)
from gateway.journal import Journal
from gateway.models import Direction, Worker
from tests.support import (
    CHECKINATWORK_SITE,
    LIMOSA,
    POSTED_WORKER,
    SECOND,
    SITE,
    WORKER,
    WORKPLACE,
    clock_at,
    read,
    registered,
)

OTHER_WORKPLACE = "1Y1000003EQCZ"  # another declaration of works (the specification's example)


def test_first_tap_is_in_then_toggles_across_midnight() -> None:
    rules = AttendanceRules(SITE)
    first = registered(rules.decide(read(), WORKER, None, clock_at("2026-11-22T22:00", 100)))
    assert first.direction is Direction.IN
    second = registered(rules.decide(read(), WORKER, first, clock_at("2026-11-23T06:00", 28900)))
    assert second.direction is Direction.OUT
    third = registered(rules.decide(read(), WORKER, second, clock_at("2026-11-23T06:30", 30700)))
    assert third.direction is Direction.IN
    assert len({first.id, second.id, third.id}) == 3


def test_registration_carries_site_worker_and_clock() -> None:
    clock = clock_at("2026-11-22T07:02")
    reg = registered(AttendanceRules(SITE).decide(read(), WORKER, None, clock))
    assert (reg.declaration, reg.place, reg.worker, reg.clock) == (
        SITE.declaration,
        SITE.place,
        WORKER,
        clock,
    )
    assert reg.id.version == 7


def test_double_tap_within_window_is_the_same_tap() -> None:
    rules = AttendanceRules(SITE, debounce_ns=10 * SECOND)
    first = registered(rules.decide(read(), WORKER, None, clock_at("2026-11-22T07:02:00", 100)))
    again = rules.decide(read(), WORKER, first, clock_at("2026-11-22T07:02:09", 109.9))
    assert again == Repeat(first)
    later = registered(rules.decide(read(), WORKER, first, clock_at("2026-11-22T07:02:10", 110)))
    assert later.direction is Direction.OUT


def test_debounce_uses_the_monotonic_clock_within_a_boot() -> None:
    rules = AttendanceRules(SITE, debounce_ns=10 * SECOND)
    first = registered(rules.decide(read(), WORKER, None, clock_at("2026-11-22T07:02:00", 100)))
    # NTP stepped the wall clock an hour back, yet only 2 s really passed: same tap.
    stepped = clock_at("2026-11-22T06:02:02", 102)
    assert rules.decide(read(), WORKER, first, stepped) == Repeat(first)


def test_debounce_across_a_reboot_compares_wall_times() -> None:
    rules = AttendanceRules(SITE, debounce_ns=10 * SECOND)
    first = registered(rules.decide(read(), WORKER, None, clock_at("2026-11-22T07:02:00", 5000)))
    soon = clock_at("2026-11-22T07:02:05", 3, boot="boot-b")
    assert rules.decide(read(), WORKER, first, soon) == Repeat(first)
    later = clock_at("2026-11-22T07:03:00", 60, boot="boot-b")
    assert registered(rules.decide(read(), WORKER, first, later)).direction is Direction.OUT


def test_reads_handed_over_in_the_other_order_are_still_one_tap() -> None:
    # Two readers saw the same card; the later read got the lock first.
    rules = AttendanceRules(SITE, debounce_ns=10 * SECOND)
    later = registered(rules.decide(read(), WORKER, None, clock_at("2026-11-22T07:02:01", 101)))
    earlier = clock_at("2026-11-22T07:02:00", 100)
    assert rules.decide(read(), WORKER, later, earlier) == Repeat(later)
    assert isinstance(
        AttendanceRules(SITE, debounce_ns=0).decide(read(), WORKER, later, earlier), Register
    )


def test_a_key_for_the_other_type_is_not_a_repeat() -> None:
    rules = AttendanceRules(SITE, debounce_ns=10 * SECOND)
    first = registered(rules.decide(read("IN"), WORKER, None, clock_at("2026-11-22T07:02", 100)))
    assert rules.decide(read("IN"), WORKER, first, clock_at("2026-11-22T07:02:03", 103)) == Repeat(
        first
    )
    fixed = registered(
        rules.decide(read("OUT"), WORKER, first, clock_at("2026-11-22T07:02:04", 104))
    )
    assert fixed.direction is Direction.OUT


def test_key_overrides_toggle() -> None:
    rules = AttendanceRules(SITE)
    first = registered(rules.decide(read(), WORKER, None, clock_at("2026-11-22T07:00", 100)))
    second = registered(rules.decide(read("IN"), WORKER, first, clock_at("2026-11-22T08:00", 3700)))
    assert second.direction is Direction.IN


def test_explicit_mode_requires_a_direction() -> None:
    rules = AttendanceRules(SITE, mode="explicit")
    clock = clock_at("2026-11-22T07:00")
    assert rules.decide(read(), WORKER, None, clock) == Refuse(Refusal.DIRECTION_REQUIRED, WORKER)
    assert registered(rules.decide(read("OUT"), WORKER, None, clock)).direction is Direction.OUT


def test_unknown_badge_is_refused() -> None:
    decision = AttendanceRules(SITE).decide(read(), None, None, clock_at("2026-11-22T07:00"))
    assert decision == Refuse(Refusal.UNKNOWN_BADGE, None)


def test_validity_dates_are_inclusive_in_the_site_time_zone() -> None:
    worker = replace(WORKER, valid_from=date(2026, 11, 1), valid_until=date(2026, 11, 30))
    rules = AttendanceRules(SITE)
    # 23:30 UTC on 31 October is already 1 November in Brussels: valid.
    assert isinstance(rules.decide(read(), worker, None, clock_at("2026-11-01T00:30")), Register)
    assert isinstance(rules.decide(read(), worker, None, clock_at("2026-11-30T23:59")), Register)
    assert rules.decide(read(), worker, None, clock_at("2026-10-31T23:59")) == Refuse(
        Refusal.NOT_YET_VALID, worker
    )
    assert rules.decide(read(), worker, None, clock_at("2026-12-01T00:00")) == Refuse(
        Refusal.EXPIRED, worker
    )


# --- Checkinatwork: one presence a day (issue 16) -------------------------------------------


def presence_rules(**options: Any) -> AttendanceRules:
    return AttendanceRules(CHECKINATWORK_SITE, **options)


def test_the_first_tap_of_the_day_registers_a_presence_under_the_site_default() -> None:
    clock = clock_at("2026-11-23T07:02")
    reg = registered(presence_rules().decide(read(), WORKER, None, clock))

    assert reg.direction is Direction.PRESENCE
    assert (reg.declaration, reg.place, reg.worker, reg.clock) == (WORKPLACE, None, WORKER, clock)
    assert reg.id.version == 7


def test_later_taps_that_day_are_already_registered_pointing_at_the_first() -> None:
    rules = presence_rules()
    first = registered(rules.decide(read(), WORKER, None, clock_at("2026-11-23T07:02", 100)))
    # Outside the debounce window, hours later, and at the day's last minute: all the same day.
    for local, monotonic_s in [("2026-11-23T07:02:30", 130), ("2026-11-23T23:59:59", 61_000)]:
        assert rules.decide(read(), WORKER, first, clock_at(local, monotonic_s)) == AlreadyToday(
            first
        )


def test_within_the_debounce_window_it_is_already_today_not_a_repeat() -> None:
    rules = presence_rules(debounce_ns=10 * SECOND)
    first = registered(rules.decide(read(), WORKER, None, clock_at("2026-11-23T07:02:00", 100)))

    assert rules.decide(read(), WORKER, first, clock_at("2026-11-23T07:02:03", 103)) == (
        AlreadyToday(first)
    )


def test_the_next_local_day_registers_again_just_after_midnight() -> None:
    rules = presence_rules()
    late = registered(rules.decide(read(), WORKER, None, clock_at("2026-11-23T23:58", 100)))
    # 00:02 in Brussels is still 23:02 UTC on the 23rd: the site's day decides, not UTC's.
    early = registered(rules.decide(read(), WORKER, late, clock_at("2026-11-24T00:02", 340)))

    assert early.direction is Direction.PRESENCE
    assert early.id != late.id
    assert rules.decide(read(), WORKER, early, clock_at("2026-11-24T18:00", 64_000)) == (
        AlreadyToday(early)
    )


def test_a_tap_of_the_new_day_registers_even_within_the_debounce_window() -> None:
    """A tap is an arrival (Checkinatwork has no OUT): someone who tapped at 23:59:58 is on
    site at 00:00:03 too, so the new day's presence is registered, not debounced away."""
    rules = presence_rules(debounce_ns=10 * SECOND)
    late = registered(rules.decide(read(), WORKER, None, clock_at("2026-11-23T23:59:58", 100)))

    early = registered(rules.decide(read(), WORKER, late, clock_at("2026-11-24T00:00:03", 105)))

    assert early.direction is Direction.PRESENCE and early.id != late.id


def test_the_day_follows_brussels_across_the_end_of_summer_time() -> None:
    """25 October 2026 lasts 25 hours in Brussels (03:00 CEST -> 02:00 CET)."""
    rules = presence_rules()
    saturday = registered(rules.decide(read(), WORKER, None, clock_at("2026-10-24T23:30", 100)))
    # 00:30 CEST on Sunday is 22:30 UTC on Saturday, one hour after the first tap.
    sunday = registered(rules.decide(read(), WORKER, saturday, clock_at("2026-10-25T00:30", 3700)))
    assert sunday.direction is Direction.PRESENCE
    # 23:30 CET on Sunday is 24 hours after 00:30 CEST, and a UTC day later: still Sunday.
    assert rules.decide(read(), WORKER, sunday, clock_at("2026-10-25T23:30", 90_100)) == (
        AlreadyToday(sunday)
    )
    monday = clock_at("2026-10-26T00:00:30", 92_000)
    assert registered(rules.decide(read(), WORKER, sunday, monday)).direction is Direction.PRESENCE


def test_the_day_follows_brussels_across_the_start_of_summer_time() -> None:
    """29 March 2026 lasts 23 hours in Brussels (02:00 CET -> 03:00 CEST)."""
    rules = presence_rules()
    early = registered(rules.decide(read(), WORKER, None, clock_at("2026-03-29T00:10", 100)))
    # 23:50 CEST is 21:50 UTC: 22 h 40 min later, the same local day.
    assert rules.decide(read(), WORKER, early, clock_at("2026-03-29T23:50", 81_700)) == (
        AlreadyToday(early)
    )
    next_day = clock_at("2026-03-30T00:00:01", 82_300)
    assert registered(rules.decide(read(), WORKER, early, next_day)).id != early.id


@pytest.mark.parametrize("key", ["IN", "OUT"])
def test_a_reader_key_still_registers_a_presence(key: Literal["IN", "OUT"]) -> None:
    rules = presence_rules()
    first = registered(rules.decide(read(key), WORKER, None, clock_at("2026-11-23T07:00", 100)))
    assert first.direction is Direction.PRESENCE
    other: Literal["IN", "OUT"] = "OUT" if key == "IN" else "IN"
    # Under CIaO a key for the other type is a new registration; here the day decides.
    assert rules.decide(read(other), WORKER, first, clock_at("2026-11-23T07:00:02", 102)) == (
        AlreadyToday(first)
    )


def test_explicit_mode_needs_no_key_on_a_checkinatwork_site() -> None:
    rules = presence_rules(mode="explicit")

    reg = registered(rules.decide(read(), WORKER, None, clock_at("2026-11-23T07:00")))

    assert reg.direction is Direction.PRESENCE


def test_a_ciao_registration_of_today_does_not_count_as_a_presence() -> None:
    # The site switched from CIaO to Checkinatwork during the day: the IN is no presence.
    ciao_in = registered(
        AttendanceRules(SITE).decide(read(), WORKER, None, clock_at("2026-11-23T07:00"))
    )
    reg = registered(
        presence_rules().decide(read(), WORKER, ciao_in, clock_at("2026-11-23T07:30", 1900))
    )

    assert reg.direction is Direction.PRESENCE


def test_validity_refusals_apply_on_a_checkinatwork_site() -> None:
    worker = replace(WORKER, valid_from=date(2026, 11, 1), valid_until=date(2026, 11, 30))
    rules = presence_rules()

    assert rules.decide(read(), None, None, clock_at("2026-11-23T07:00")) == Refuse(
        Refusal.UNKNOWN_BADGE, None
    )
    assert rules.decide(read(), worker, None, clock_at("2026-10-31T23:59")) == Refuse(
        Refusal.NOT_YET_VALID, worker
    )
    assert rules.decide(read(), worker, None, clock_at("2026-12-01T00:00")) == Refuse(
        Refusal.EXPIRED, worker
    )
    # expired even though today's presence is registered: the refusal comes first
    first = registered(rules.decide(read(), worker, None, clock_at("2026-11-30T08:00", 100)))
    expired = replace(worker, valid_until=date(2026, 11, 29))
    assert rules.decide(read(), expired, first, clock_at("2026-11-30T09:00", 3700)) == Refuse(
        Refusal.EXPIRED, expired
    )


def test_a_posted_worker_registers_by_limosa_number() -> None:
    reg = registered(
        presence_rules().decide(read(), POSTED_WORKER, None, clock_at("2026-11-23T07:00"))
    )

    assert (reg.worker.niss, reg.worker.limosa) == (None, LIMOSA)
    assert reg.direction is Direction.PRESENCE


def test_a_worker_of_another_declaration_registers_under_it() -> None:
    rules = presence_rules()
    own = replace(WORKER, declaration=OTHER_WORKPLACE)

    reg = registered(rules.decide(read(), own, None, clock_at("2026-11-23T07:00")))

    assert rules.declaration_of(own) == OTHER_WORKPLACE
    assert rules.declaration_of(WORKER) == WORKPLACE
    assert reg.declaration == OTHER_WORKPLACE
    ciao = registered(AttendanceRules(SITE).decide(read(), own, None, clock_at("2026-11-23T07:00")))
    assert ciao.declaration == OTHER_WORKPLACE  # CIaO sites too: the row's own declaration


def test_the_day_is_counted_per_declaration(tmp_path: Path) -> None:
    """The same person on two badge rows (two contracts at this entrance): registered under A
    does not make them registered under B; the journal's lookup is per declaration."""
    rules = presence_rules()
    under_a = replace(WORKER, badge_uid="04A23B9C")  # the site's default, WORKPLACE
    under_b = replace(WORKER, badge_uid="04FFFF01", declaration=OTHER_WORKPLACE)
    journal = Journal(tmp_path / "journal.db")
    try:

        def tap(worker: Worker, local: str, monotonic_s: float) -> Decision:
            declaration = rules.declaration_of(worker)
            last = journal.previous_registration(worker, declaration)
            decision = rules.decide(read(), worker, last, clock_at(local, monotonic_s))
            if isinstance(decision, Register):
                journal.append_registration(decision.registration)
            return decision

        first_a = registered(tap(under_a, "2026-11-23T07:00", 100))
        first_b = registered(tap(under_b, "2026-11-23T07:05", 400))
        again_a = tap(under_a, "2026-11-23T12:00", 18_100)
        again_b = tap(under_b, "2026-11-23T12:05", 18_400)
        posted = registered(tap(POSTED_WORKER, "2026-11-23T07:10", 700))
        posted_again = tap(POSTED_WORKER, "2026-11-23T16:00", 32_500)
    finally:
        journal.close()

    assert (first_a.declaration, first_b.declaration) == (WORKPLACE, OTHER_WORKPLACE)
    assert again_a == AlreadyToday(first_a)
    assert again_b == AlreadyToday(first_b)
    assert posted_again == AlreadyToday(posted)  # looked up by Limosa number


def test_a_ciao_site_after_a_presence_starts_again_with_in() -> None:
    # The site went back to CIaO: its first IN/OUT follows no presence's "opposite".
    presence = registered(
        presence_rules().decide(read(), WORKER, None, clock_at("2026-11-23T07:00"))
    )
    nxt = registered(
        AttendanceRules(SITE).decide(read(), WORKER, presence, clock_at("2026-11-23T09:00", 7300))
    )

    assert nxt.direction is Direction.IN
