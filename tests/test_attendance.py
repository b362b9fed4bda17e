"""The IN/OUT rules, as pure decisions over reads, workers and the last registration."""

from __future__ import annotations

from dataclasses import replace
from datetime import date

from gateway.attendance import AttendanceRules, Refusal, Refuse, Register, Repeat
from gateway.models import Direction
from tests.support import SECOND, SITE, WORKER, clock_at, read, registered


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
