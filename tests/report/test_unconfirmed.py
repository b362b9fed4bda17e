"""Unconfirmed registrations in the outage analysis and the employer's report: a 2xx whose
answer could not be read, then confirmed by the employer (`queue confirm`), sent again
(`queue retry`, flagged) or not resolved yet; on hand-built chains, as the journal writes
them (gateway/journal/store.py: mark_unconfirmed, confirm, retry_unconfirmed)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from gateway.evidence import Entry, Kind
from gateway.models import Language
from gateway.report import analyse, render_report
from gateway.report.outages import Episode, Resolution
from gateway.report.texts import TEXTS
from tests.report.sample_evidence import sample_box, sample_context
from tests.report.test_report import MINUTE, T0, Event, _escaped, _table_rows, chain, registration

HOSTILE = '<img src=x onerror=alert(1)> "cut" & gone'
CUT = "HTTP 200, unreadable answer: the answer was cut after 61 bytes"
SENT_AGAIN = "sent again by the employer after an answer that could not be read"


def unconfirmed(minute: int, *ids: str, cause: str = CUT) -> Event:
    return (minute, Kind.UNCONFIRMED, {"ids": list(ids), "cause": cause})


def confirmed(minute: int, reg_id: str, onss_id: int | str, answered_minute: int) -> Event:
    """The `acknowledged` entry `queue confirm` writes."""
    return (minute, Kind.ACKNOWLEDGED, {
        "ids": {reg_id: onss_id}, "late": [], "remarks": {}, "confirmed_by": "employer",
        "answered_wall_ns": T0 + answered_minute * MINUTE,
    })  # fmt: skip


def unconfirmed_chain() -> list[Entry]:
    """r1 confirmed by the employer; r2 sent again by the employer, then created; r3 named
    by two unconfirmed entries and never resolved (its cause came from the network); r4
    delivered as usual; r5 confirmed in the period though its answer came before it."""
    return chain(
        registration("r1", 0, worker="Amina"),
        registration("r2", 1, worker="Jan"),
        registration("r3", 2, worker="Maria"),
        registration("r4", 3, worker="Lukas"),
        unconfirmed(4, "r1", "r2"),
        unconfirmed(5, "r3", "r3", cause=HOSTILE),
        unconfirmed(6, "r3", cause="again"),  # still the same episode
        (7, Kind.ACKNOWLEDGED, {"ids": {"r4": "onss-4"}, "late": [], "remarks": {}}),
        confirmed(30, "r1", 1_234_567_890_123, answered_minute=4),
        (31, Kind.POSSIBLY_DUPLICATED, {"ids": ["r2"], "cause": SENT_AGAIN}),
        (32, Kind.ACKNOWLEDGED, {"ids": {"r2": "onss-2"}, "late": ["r2"], "remarks": {}}),
        confirmed(40, "r5", "9" * 30, answered_minute=-120),
    )


def page_of(entries: list[Entry], language: Language = Language.EN) -> str:
    context = replace(
        sample_context(entries, language), period_from_ns=T0, period_to_ns=T0 + 60 * MINUTE
    )
    return render_report(entries, context)


# --- The analysis -----------------------------------------------------------------------


def test_each_unconfirmed_registration_is_listed_once_with_how_it_was_resolved() -> None:
    analysis = analyse(unconfirmed_chain())

    assert [(u.record.id, u.episodes) for u in analysis.unconfirmed] == [
        ("r1", (Episode(T0 + 4 * MINUTE, CUT, Resolution.CONFIRMED, T0 + 30 * MINUTE,
                        "1234567890123"),)),
        ("r2", (Episode(T0 + 4 * MINUTE, CUT, Resolution.SENT_AGAIN, T0 + 31 * MINUTE),)),
        ("r3", (Episode(T0 + 5 * MINUTE, HOSTILE),)),
        ("r5", (Episode(T0 - 120 * MINUTE, "", Resolution.CONFIRMED, T0 + 40 * MINUTE, "9" * 30,
                        began_before=True),)),
    ]  # fmt: skip
    assert analysis.still_unconfirmed == 1
    assert [r.id for r in analysis.records if r.unconfirmed] == ["r3"]
    assert (analysis.captured, analysis.acknowledged) == (4, 4)
    assert analysis.notes == ()


def test_a_confirmed_registration_was_at_the_onss_when_its_answer_came() -> None:
    records = {record.id: record for record in analyse(unconfirmed_chain()).records}

    r1 = records["r1"].acknowledgement
    assert r1 is not None and r1.by_employer
    assert (r1.wall_ns, r1.confirmed_ns, r1.onss_id) == (
        T0 + 4 * MINUTE,  # the answer, not the employer's check
        T0 + 30 * MINUTE,
        "1234567890123",
    )
    r2 = records["r2"].acknowledgement  # the ONSS's answer to the employer's resend
    assert r2 is not None and not r2.by_employer and r2.late


def test_the_employers_resend_is_one_more_send_of_a_possibly_duplicated_registration() -> None:
    [duplicate] = analyse(unconfirmed_chain()).duplicated
    assert (duplicate.record.id, duplicate.sends, duplicate.causes) == ("r2", 2, (SENT_AGAIN,))


def test_unconfirmed_again_after_a_resend_is_a_second_episode_of_the_same_row() -> None:
    analysis = analyse(chain(
        registration("r1", 0, worker="Amina"),
        unconfirmed(1, "r1"),
        (2, Kind.POSSIBLY_DUPLICATED, {"ids": ["r1"], "cause": SENT_AGAIN}),
        unconfirmed(3, "r1", cause="HTTP 202, unreadable answer: not JSON"),
        confirmed(9, "r1", "onss-1", answered_minute=3),
    ))  # fmt: skip

    [row] = analysis.unconfirmed
    assert [(e.since_ns, e.resolution, e.resolved_ns) for e in row.episodes] == [
        (T0 + MINUTE, Resolution.SENT_AGAIN, T0 + 2 * MINUTE),
        (T0 + 3 * MINUTE, Resolution.CONFIRMED, T0 + 9 * MINUTE),
    ]
    assert row.resolved and analysis.still_unconfirmed == 0


def test_malformed_unconfirmed_entries_are_noted_and_skipped() -> None:
    analysis = analyse(chain(
        registration("r1", 0),
        (1, Kind.UNCONFIRMED, {"ids": "r1", "cause": CUT}),
        (2, Kind.UNCONFIRMED, {"ids": ["r1"], "cause": 200}),
        (3, Kind.ACKNOWLEDGED, {"ids": {"r1": 5}, "confirmed_by": "employer",
                                "answered_wall_ns": "yesterday"}),
    ))  # fmt: skip
    assert [note.seq for note in analysis.notes] == [2, 3, 4]
    assert analysis.unconfirmed == () and analysis.still_unconfirmed == 0


# --- The report -------------------------------------------------------------------------


def test_the_report_counts_and_lists_the_unconfirmed_registrations() -> None:
    page = page_of(unconfirmed_chain()).replace("\u00a0", " ")

    assert "<b>1</b><span>Still unconfirmed at the end of the period</span>" in page
    rows = _table_rows(page, "Unconfirmed registrations")
    assert len(rows) == 4
    amina, jan, maria, outside = rows
    assert "Amina" in amina and "Mon 10/03/2025 08:00:00" in amina  # the tap
    assert "Mon 10/03/2025 08:04:00" in amina and CUT in amina  # since, cause
    assert "confirmed by the employer on Mon 10/03/2025 08:30:00" in amina
    assert '<code class="id">1234567890123</code>' in amina
    assert "********328" in amina and "Jan" in jan
    assert "sent again by the employer on Mon 10/03/2025 08:31:00" in jan
    assert "flagged as possibly duplicated" in jan
    assert "Maria" in maria and '<b class="late">not resolved yet</b>' in maria
    assert "r5" in outside and "recorded before this period" in outside
    assert "Mon 10/03/2025 06:00:00" in outside and "9" * 30 in outside
    assert "Lukas" not in "".join(rows)


def test_the_unconfirmed_cause_from_the_network_is_escaped() -> None:
    page = page_of(unconfirmed_chain())
    assert HOSTILE not in page and "<img" not in page
    escaped = "&lt;img src=x onerror=alert(1)&gt; &quot;cut&quot; &amp; gone"
    [maria] = [row for row in _table_rows(page, "Unconfirmed registrations") if "Maria" in row]
    assert escaped in maria


def test_a_registration_confirmed_by_the_employer_says_so_beside_its_onss_id() -> None:
    page = page_of(chain(
        (0, Kind.UPLINK_OFFLINE, {"cause": "dns", "detail": "", "pending": 0}),
        registration("r1", 1, worker="Amina"),
        registration("r2", 2, worker="Jan"),
        (10, Kind.UPLINK_ONLINE, {"pending": 2, "offline_seconds": 600}),
        unconfirmed(11, "r1", "r2"),
        confirmed(20, "r1", "onss-1", answered_minute=11),
    )).replace("\u00a0", " ")  # fmt: skip

    [amina, jan] = _table_rows(page, "Outage 1: registrations held back")
    assert "Mon 10/03/2025 08:11:00" in amina  # acknowledged when the answer came
    assert '<code class="id">onss-1</code><br><small>confirmed by the employer</small>' in amina
    assert '<b class="late">unconfirmed: the employer must check it</b>' in jan
    [outage] = _table_rows(page, "Outages")
    assert "1 of 2, by Mon 10/03/2025 08:11:00; 1 unconfirmed" in outage


def test_a_period_without_unconfirmed_registrations_says_none() -> None:
    page = page_of(chain(registration("r1", 0)))
    assert "<b>0</b><span>Still unconfirmed at the end of the period</span>" in page
    assert "<h2>Unconfirmed registrations</h2>" in page


@pytest.mark.parametrize("language", list(Language))
def test_the_unconfirmed_section_speaks_the_sites_language(language: Language) -> None:
    texts = TEXTS[language]
    page = page_of(unconfirmed_chain(), language)

    for key in ("sum_unconfirmed", "unconfirmed_intro", "col_unconfirmed_since", "not_resolved"):
        assert _escaped(texts[key]) in page, key
    rows = _table_rows(page, _escaped(texts["unconfirmed_title"]))
    assert len(rows) == 4
    for row, key in zip(rows, ("resolved_confirmed", "resolved_sent-again"), strict=False):
        before_time = texts[key].split("$time")[0]
        assert _escaped(before_time) in row, key
    others = [TEXTS[other]["unconfirmed_title"] for other in Language if other != language]
    assert not any(_escaped(title) in page for title in others)


def test_the_sample_week_shows_both_resolutions() -> None:
    analysis = analyse(sample_box().entries)
    resolutions = [u.episodes[-1].resolution for u in analysis.unconfirmed]
    assert resolutions == [Resolution.CONFIRMED, Resolution.SENT_AGAIN]
    assert analysis.still_unconfirmed == 0
    workers = [u.record.captured.worker for u in analysis.unconfirmed if u.record.captured]
    assert workers == ["Jan Peeters", "Maria Santos Silva"]
