"""The employer's evidence report: the outage analysis on hand-built chains, the HTML's
guarantees (self-contained, escaped, NISS masked, four languages), and the sample week
rendered by a real browser (Debian's chromium) to a screenshot and a PDF."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from gateway.evidence import GENESIS, Entry, Kind, make_entry, verify_chain
from gateway.models import ClockSample, Language
from gateway.report import Analysis, Outage, OutageKind, analyse, render_report
from gateway.report.texts import TEXTS
from tests.report.sample_evidence import (
    CHROMIUM,
    WORKERS,
    pdf_arguments,
    run_chromium,
    sample_box,
    sample_context,
    screenshot_arguments,
)

MINUTE = 60 * 1_000_000_000
T0 = 1_741_590_000 * 1_000_000_000  # Mon 10 March 2025, 08:00 in Brussels

Event = tuple[int, Kind, Mapping[str, Any]]  # minutes after T0, kind, details


def chain(*events: Event, unsynced: Sequence[int] = ()) -> list[Entry]:
    """Valid linked entries; `unsynced`: the indexes of entries made with an unsynced clock."""
    entries: list[Entry] = []
    for index, (minute, kind, details) in enumerate(events):
        wall_ns = T0 + minute * MINUTE
        clock = ClockSample(wall_ns, wall_ns - T0 + MINUTE, "boot-1", index not in unsynced)
        prev_hash = entries[-1].hash if entries else GENESIS
        entries.append(make_entry(index + 1, clock, kind, details, prev_hash))
    return entries


def registration(reg_id: str, minute: int, worker: str = "Jan Peeters") -> Event:
    return (minute, Kind.REGISTRATION, {
        "id": reg_id, "type": "IN", "registration_wall_ns": T0 + minute * MINUTE,
        "reader": "entrance", "badge_uid": "04A1", "worker": worker, "niss": "********328",
        "time_uncertain": False,
    })  # fmt: skip


def only(analysis: Analysis, kind: OutageKind) -> Outage:
    matching = [outage for outage in analysis.outages if outage.kind == kind]
    assert len(matching) == 1, analysis.outages
    return matching[0]


# --- The analysis -----------------------------------------------------------------------


def test_an_uplink_outage_holds_registrations_and_tells_when_each_was_acknowledged() -> None:
    analysis = analyse(chain(
        (0, Kind.UPLINK_OFFLINE, {"cause": "dns", "detail": "no resolver", "pending": 2}),
        registration("r1", 10),
        registration("r2", 170),
        (180, Kind.UPLINK_ONLINE, {"pending": 4, "offline_seconds": 10800.0}),
        (181, Kind.ACKNOWLEDGED, {"ids": {"r1": "onss-1", "r2": "onss-2"}, "late": ["r1"]}),
    ))  # fmt: skip

    outage = only(analysis, OutageKind.UPLINK)
    assert (outage.cause, outage.detail, outage.pending_at_start) == ("dns", "no resolver", 2)
    assert (outage.start_ns, outage.end_ns, outage.began_before) == (T0, T0 + 180 * MINUTE, False)
    assert [held.id for held in outage.held] == ["r1", "r2"]
    acknowledgements = [held.acknowledgement for held in outage.held]
    assert [(a.wall_ns, a.onss_id, a.late) for a in acknowledgements if a] == [
        (T0 + 181 * MINUTE, "onss-1", True),
        (T0 + 181 * MINUTE, "onss-2", False),
    ]
    assert [record.id for record in analysis.late] == ["r1"]
    assert analysis.notes == ()


def test_registrations_outside_an_outage_are_not_held_back() -> None:
    analysis = analyse(chain(
        registration("before", 0),
        (5, Kind.UPLINK_OFFLINE, {"cause": "tcp", "detail": "", "pending": 0}),
        registration("during", 6),
        (9, Kind.UPLINK_ONLINE, {"pending": 1, "offline_seconds": 240}),
        registration("after", 10),
    ))  # fmt: skip
    assert [held.id for held in only(analysis, OutageKind.UPLINK).held] == ["during"]


def test_outages_that_began_before_the_first_entry_are_bounded_from_their_end() -> None:
    analysis = analyse(chain(
        registration("r1", 0),
        (30, Kind.UPLINK_ONLINE, {"pending": 1, "offline_seconds": 3600}),
        (40, Kind.READER_CONNECTED, {"reader": "back-door", "down_seconds": 7200}),
        (50, Kind.CLOCK_SYNCED, {"source": "ntp"}),
        unsynced=(0, 1, 2),
    ))  # fmt: skip

    uplink = only(analysis, OutageKind.UPLINK)
    assert (uplink.start_ns, uplink.end_ns, uplink.began_before) == (
        T0 - 30 * MINUTE, T0 + 30 * MINUTE, True,
    )  # fmt: skip
    reader = only(analysis, OutageKind.READER)
    assert (reader.subject, reader.start_ns, reader.began_before) == (
        "back-door",
        T0 - 80 * MINUTE,
        True,
    )
    clock = only(analysis, OutageKind.CLOCK)
    assert (clock.start_ns, clock.end_ns, clock.began_before) == (T0, T0 + 50 * MINUTE, True)


def test_a_reader_reconnecting_after_a_short_drop_within_the_period_is_no_failure() -> None:
    analysis = analyse(chain(
        registration("r1", 0),
        (30, Kind.READER_CONNECTED, {"reader": "entrance", "down_seconds": 12}),
    ))  # fmt: skip
    assert analysis.outages == ()


def test_outages_still_going_on_at_the_last_entry_have_no_end() -> None:
    analysis = analyse(chain(
        (0, Kind.READER_FAILED, {"reader": "entrance", "down_since_wall_ns": T0 - MINUTE}),
        (5, Kind.UPLINK_OFFLINE, {"cause": "http 503", "detail": "", "pending": 0}),
        registration("r1", 10),
        (11, Kind.UPLINK_OFFLINE, {"cause": "timeout", "detail": "again", "pending": 1}),
        (20, Kind.CLOCK_LOST, {"source": "timesyncd"}),
        unsynced=(3,),
    ))  # fmt: skip

    assert all(outage.ongoing for outage in analysis.outages)
    uplink = only(analysis, OutageKind.UPLINK)
    assert (uplink.cause, uplink.start_ns) == ("http 503", T0 + 5 * MINUTE)  # the first start
    assert [(h.id, h.acknowledgement) for h in uplink.held] == [("r1", None)]
    assert only(analysis, OutageKind.READER).start_ns == T0 - MINUTE
    clock = only(analysis, OutageKind.CLOCK)
    assert (clock.start_ns, clock.cause) == (T0 + 11 * MINUTE, "")  # the entries' own flag


def test_an_unclean_stop_is_a_power_cut_when_the_boot_changed_and_a_crash_otherwise() -> None:
    def stop(minute: int, last_seen: int, power_cut: bool) -> Event:
        return (minute, Kind.UNCLEAN_STOP, {
            "last_seen_wall_ns": T0 + last_seen * MINUTE, "last_seen_monotonic_ns": 1,
            "last_seen_boot_id": "boot-0", "gap_seconds": 60.0 * (minute - last_seen),
            "same_boot": not power_cut, "power_cut_likely": power_cut,
        })  # fmt: skip

    analysis = analyse(chain(stop(300, 10, True), stop(400, 390, False)))
    cut, crash = only(analysis, OutageKind.POWER_CUT), only(analysis, OutageKind.CRASH)
    assert (cut.start_ns, cut.end_ns) == (T0 + 10 * MINUTE, T0 + 300 * MINUTE)
    assert (crash.start_ns, crash.end_ns) == (T0 + 390 * MINUTE, T0 + 400 * MINUTE)


def test_duplicated_rejected_and_clock_corrections_are_listed() -> None:
    analysis = analyse(chain(
        registration("r1", 0, worker="Amina"),
        (1, Kind.POSSIBLY_DUPLICATED, {"ids": ["r1"], "cause": "timeout"}),
        (2, Kind.ACKNOWLEDGED, {"ids": {"r1": "onss-1"}, "late": []}),
        registration("r2", 3),
        (4, Kind.REJECTED, {"id": "r2", "source": "onss", "errors": [
            {"code": "400", "description": "worker.ssin: unknown"}, "plain text",
        ]}),
        (5, Kind.CLOCK_JUMPED, {"correction_ns": -4_000_000_000}),
    ))  # fmt: skip

    [duplicate] = analysis.duplicated
    assert (duplicate.record.id, duplicate.causes, duplicate.flagged_ns, duplicate.sends) == (
        "r1",
        ("timeout",),
        T0 + MINUTE,
        2,
    )
    assert duplicate.record.captured is not None and duplicate.record.captured.worker == "Amina"
    [rejected] = analysis.rejected
    assert rejected.rejection is not None
    assert rejected.rejection.errors == ("400: worker.ssin: unknown", "plain text")
    assert [(j.wall_ns, j.correction_ns) for j in analysis.clock_jumps] == [
        (T0 + 5 * MINUTE, -4_000_000_000)
    ]
    assert (analysis.captured, analysis.acknowledged) == (2, 1)


def resent_chain() -> list[Entry]:
    """r1 sent four times (three unanswered: two timeouts and a crash), then created; r2
    named twice in one flag and still unanswered; r3 sent twice, then refused by the ONSS;
    r4 never flagged."""
    return chain(
        registration("r1", 0, worker="Amina"),
        registration("r2", 1, worker="Jan"),
        registration("r3", 2, worker="Maria"),
        registration("r4", 3, worker="Lukas"),
        (4, Kind.POSSIBLY_DUPLICATED, {"ids": ["r1", "r3"], "cause": "timeout"}),
        (5, Kind.POSSIBLY_DUPLICATED, {"ids": ["r1"], "cause": "timeout"}),
        (6, Kind.POSSIBLY_DUPLICATED, {"ids": ["r2", "r1", "r2"], "cause": "sent before a crash"}),
        (7, Kind.ACKNOWLEDGED, {"ids": {"r1": "onss-1", "r4": "onss-4"}, "late": []}),
        (8, Kind.REJECTED, {"id": "r3", "source": "onss", "errors": ["5: invalid ssin"]}),
    )


def test_each_possibly_duplicated_registration_counts_once_with_the_sends_it_took() -> None:
    analysis = analyse(resent_chain())

    assert [
        (d.record.id, d.flagged_ns, d.unanswered_sends, d.sends, d.answered, d.causes)
        for d in analysis.duplicated
    ] == [
        ("r1", T0 + 4 * MINUTE, 3, 4, True, ("timeout", "sent before a crash")),
        ("r2", T0 + 6 * MINUTE, 1, 1, False, ("sent before a crash",)),
        ("r3", T0 + 4 * MINUTE, 1, 2, True, ("timeout",)),
    ]
    assert (analysis.captured, analysis.acknowledged, len(analysis.rejected)) == (4, 2, 1)


def test_the_report_lists_each_possibly_duplicated_registration_once() -> None:
    entries = resent_chain()
    context = replace(sample_context(entries), period_from_ns=T0, period_to_ns=T0 + 60 * MINUTE)
    page = render_report(entries, context).replace("\u00a0", " ")

    assert "<b>3</b><span>Possibly duplicated</span>" in page  # 5 flag events, 3 registrations
    rows = _table_rows(page, "Possibly duplicated registrations")
    assert len(rows) == 3
    amina, jan, maria = rows
    assert "Amina" in amina and "<td>4</td>" in amina and "timeout<br>sent before a crash" in amina
    assert "onss-1" in amina and "Mon 10/03/2025 08:04:00" in amina  # the first flag
    assert "Jan" in jan and "<td>1, none answered yet</td>" in jan
    assert "Maria" in maria and "<td>2</td>" in maria
    assert "Lukas" not in "".join(rows)


@pytest.mark.parametrize("language", list(Language))
def test_the_sends_column_speaks_the_sites_language(language: Language) -> None:
    entries = resent_chain()
    context = replace(
        sample_context(entries, language), period_from_ns=T0, period_to_ns=T0 + 60 * MINUTE
    )
    texts = TEXTS[language]
    rows = _table_rows(render_report(entries, context), _escaped(texts["duplicated_title"]))
    assert len(rows) == 3
    unanswered = texts["sends_unanswered"].replace("$count", "1")
    assert f"<td>{_escaped(unanswered)}</td>" in rows[1]


def _table_rows(page: str, title: str) -> list[str]:
    """The body rows of the table in the section titled `title` (as it is in the page)."""
    section = re.search(rf"<h2>{re.escape(title)}</h2>.*?</section>", page, re.DOTALL)
    assert section is not None, f"no section {title!r}"
    body = re.search(r"<tbody>(.*?)</tbody>", section.group(0), re.DOTALL)
    assert body is not None, f"no table in {title!r}"
    return re.findall(r"<tr>.*?</tr>", body.group(1), re.DOTALL)


def test_malformed_details_are_skipped_with_a_note_and_the_rest_still_counts() -> None:
    analysis = analyse(chain(
        (0, Kind.REGISTRATION, {"type": "IN"}),  # no id
        (1, Kind.UPLINK_OFFLINE, {"cause": 42}),
        (2, Kind.UNCLEAN_STOP, {"last_seen_wall_ns": "yesterday", "power_cut_likely": True}),
        (3, Kind.ACKNOWLEDGED, {"ids": ["r1"], "late": []}),
        (4, Kind.READER_FAILED, {"reader": "entrance", "down_since_wall_ns": True}),
        (5, Kind.UPLINK_OFFLINE, {"cause": "dns", "detail": "", "pending": 0}),
        registration("r2", 6),
        (7, Kind.UPLINK_ONLINE, {"pending": 1, "offline_seconds": 120}),
    ))  # fmt: skip

    assert [note.seq for note in analysis.notes] == [1, 2, 3, 4, 5]
    assert "last_seen_wall_ns" in analysis.notes[2].problem
    outage = only(analysis, OutageKind.UPLINK)
    assert (outage.start_ns, [h.id for h in outage.held]) == (T0 + 5 * MINUTE, ["r2"])


def test_an_empty_period_has_nothing_to_report() -> None:
    analysis = analyse([])
    assert (analysis.outages, analysis.records, analysis.notes) == ((), (), ())


def test_the_sample_week_is_a_valid_chain_with_the_incidents_the_example_shows() -> None:
    entries = sample_box().entries
    assert verify_chain(entries).ok
    analysis = analyse(entries)
    uplink = only(analysis, OutageKind.UPLINK)
    assert uplink.cause == "dns" and uplink.end_ns is not None
    assert round((uplink.end_ns - uplink.start_ns) / MINUTE) == 184
    assert len(uplink.held) == 6 and all(held.acknowledgement for held in uplink.held)
    assert len(analysis.late) == 5  # the last one held was sent within 15 minutes
    cut = only(analysis, OutageKind.POWER_CUT)
    assert cut.end_ns is not None and round((cut.end_ns - cut.start_ns) / MINUTE) == 315
    reader = only(analysis, OutageKind.READER)
    assert reader.subject == "back-door" and reader.end_ns is not None
    assert (len(analysis.duplicated), len(analysis.rejected), analysis.notes) == (2, 1, ())
    assert analysis.duplicated[0].sends == 3  # two flags, one row
    assert analysis.duplicated[1].sends == 2  # unconfirmed, then sent again by the employer
    assert (len(analysis.unconfirmed), analysis.still_unconfirmed) == (2, 0)
    assert [o.kind for o in analysis.outages].count(OutageKind.CLOCK) == 2


# --- The HTML ---------------------------------------------------------------------------


def sample_report(language: Language = Language.EN, *, full: bool = False) -> str:
    box = sample_box()
    context = sample_context(box.entries, language)
    return render_report(box.entries, context, full_niss=box.full_niss if full else None)


def test_the_report_is_self_contained() -> None:
    page = sample_report()
    assert "<script" not in page.lower()
    links = re.findall(r"""\b(?:src|href)\s*=\s*["']?([^"'\s>]*)""", page, re.IGNORECASE)
    assert all(link.startswith("#") for link in links), links
    assert "@import" not in page and "url(" not in page
    assert page.count("<svg") >= 1 and page.startswith("<!DOCTYPE html>")


def test_strings_from_the_entries_are_escaped() -> None:
    hostile = "<img src=x onerror=alert(1)>"
    entries = chain(
        (
            0,
            Kind.UPLINK_OFFLINE,
            {"cause": '"><script>x</script>', "detail": hostile, "pending": 0},
        ),
        registration("r1", 1, worker=hostile),
        (2, Kind.READER_FAILED, {"reader": "<b>door</b>", "error": hostile}),
        (3, Kind.REJECTED, {"id": "r1", "source": "<i>", "errors": [hostile]}),
    )
    context = replace(sample_context(entries), period_from_ns=T0, period_to_ns=T0 + 60 * MINUTE)
    page = render_report(entries, context)

    for raw in (hostile, "<script>", "<b>door</b>", "<i>"):
        assert raw not in page
    assert "&lt;img src=x onerror=alert(1)&gt;" in page
    assert "&lt;b&gt;door&lt;/b&gt;" in page


def test_niss_numbers_are_masked_unless_the_employer_asks_for_them() -> None:
    masked, full = sample_report(), sample_report(full=True)
    for worker in WORKERS:
        assert worker.niss not in masked
        assert f"********{worker.niss[-3:]}" in masked
    assert WORKERS[1].niss in full  # Jan Peeters' OUT was held back on Tuesday
    assert TEXTS[Language.EN]["niss_full"].replace("'", "&#x27;") in full


@pytest.mark.parametrize("language", list(Language))
def test_the_report_speaks_the_sites_language(language: Language) -> None:
    page = sample_report(language)
    texts = TEXTS[language]
    assert f'<html lang="{language.value}">' in page
    for key in ("title", "outages", "kind_uplink", "col_held", "verification", "timeline"):
        assert _escaped(texts[key]) in page, key
    others = [TEXTS[other]["title"] for other in Language if other != language]
    assert not any(_escaped(title) in page for title in others)


def test_every_language_has_every_text_with_the_same_placeholders() -> None:
    english = TEXTS[Language.EN]
    for language in Language:
        texts = TEXTS[language]
        assert texts.keys() == english.keys(), language
        for key, text in texts.items():
            assert _placeholders(text) == _placeholders(english[key]), (language, key)


def test_a_broken_chain_is_reported_with_the_first_break() -> None:
    box = sample_box()
    entries = list(box.entries)
    entries[40] = replace(entries[40], details={**entries[40].details, "worker": "Someone"})
    page = render_report(entries, sample_context(entries))
    assert "NOT VERIFIED: the chain breaks at entry 41 (edited)" in page
    assert "Verified:" not in page


def _escaped(text: str) -> str:
    return text.replace("&", "&amp;").replace("'", "&#x27;").replace('"', "&quot;")


def _placeholders(text: str) -> set[str]:
    return set(re.findall(r"\$(\w+)", text))


# --- In a real browser ------------------------------------------------------------------


def browser(tmp_path: Path, *arguments: str) -> str:
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: run ./dev test, which installs Debian's chromium")
    result = run_chromium(tmp_path, *arguments)
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


def test_chromium_renders_the_sample_week_to_a_screenshot_and_a_pdf(tmp_path: Path) -> None:
    report = tmp_path / "report.html"
    report.write_text(sample_report(), encoding="utf-8")
    url = report.as_uri()
    screenshot, pdf = tmp_path / "report.png", tmp_path / "report.pdf"

    browser(tmp_path, *screenshot_arguments(screenshot), url)
    browser(tmp_path, *pdf_arguments(pdf), url)
    dom = browser(tmp_path, "--dump-dom", url).replace("&nbsp;", " ")

    assert screenshot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert screenshot.stat().st_size > 50_000
    assert pdf.read_bytes()[:5] == b"%PDF-" and pdf.stat().st_size > 20_000
    rows = _outage_rows(dom)
    assert any(
        "Internet / ONSS unavailable" in r and "dns" in r and "3 h 04 min" in r for r in rows
    )
    assert any(
        "Power cut" in r and "Wed 12/03/2025 23:40:12" in r and "5 h 15 min" in r for r in rows
    )
    assert any("Badge reader failure" in r and "back-door" in r and "41 min" in r for r in rows)
    for kind in ("uplink", "power-cut", "reader", "clock"):
        assert re.search(rf'<g class="bar k-{kind}[^"]*"><title>[^<]*</title><rect ', dom), kind


def _outage_rows(dom: str) -> list[str]:
    table = re.search(r'<table class="outages">.*?</table>', dom, re.DOTALL)
    assert table is not None, "no outage table in the rendered page"
    return re.findall(r"<tr>.*?</tr>", table.group(0), re.DOTALL)
