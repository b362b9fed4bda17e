"""The employer's report at a Checkinatwork site (issue 16): daily PRESENCE registrations,
posted workers named by their masked Limosa number, and the presences an outage kept from
being delivered on their day (rejected on the box as `day-passed`) presented as cases of
force majeure with that outage, never counted among the ordinary rejections."""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

import pytest

from gateway.checkinatwork.service import DAY_PASSED
from gateway.cli.evidence import report_renderer
from gateway.config.sections import SiteConfig
from gateway.evidence import Entry, Kind
from gateway.journal import Journal, Rejection, connect
from gateway.models import Channel, Language, mask
from gateway.report import Period, analyse, export, render_report
from gateway.report import outages as report_outages
from gateway.report.texts import TEXTS
from tests.report.sample_evidence import sample_context
from tests.report.test_report import MINUTE, T0, Event, chain
from tests.support import LIMOSA, POSTED_WORKER, WORKER, WORKPLACE, a_presence, clock_at

NISS = "85073003328"
OTHER_WORKPLACE = "1Y1002V9KLZ6Z"
DAY = 24 * 60  # minutes


def presence(reg_id: str, minute: int, worker: str, **person: str) -> Event:
    return (minute, Kind.REGISTRATION, {
        "id": reg_id, "type": "PRESENCE", "registration_wall_ns": T0 + minute * MINUTE,
        "reader": "gate", "badge_uid": "04B0C0DE", "worker": worker, **person,
    })  # fmt: skip


def day_passed(reg_id: str, minute: int) -> Event:
    error = {"code": DAY_PASSED, "description": "not delivered on its day (2025-03-10)"}
    return (minute, Kind.REJECTED, {"id": reg_id, "source": "local", "errors": [error]})


def presence_week() -> list[Entry]:
    """Monday 08:00: Jan's presence, acknowledged; 08:59 Ana's (posted, by Limosa), still
    waiting when the internet goes down at 09:00 until Tuesday 09:00; 10:00 Jan's colleague
    Piet's, held by the outage. Both Monday presences are then too late (day-passed);
    Tuesday 09:10 a presence the ONSS refuses (an ordinary rejection)."""
    return chain(
        presence("jan", 0, "Jan Peeters", niss=mask(NISS)),
        (1, Kind.ACKNOWLEDGED, {"ids": {"jan": "9001"}, "late": []}),
        presence("ana", 59, "Ana", limosa=mask(LIMOSA)),
        (60, Kind.UPLINK_OFFLINE, {"cause": "tcp", "detail": "", "pending": 1}),
        presence("piet", 120, "Piet Claes", niss=mask(NISS)),
        (DAY + 60, Kind.UPLINK_ONLINE, {"pending": 2, "offline_seconds": DAY * 60.0}),
        day_passed("ana", DAY + 61),
        day_passed("piet", DAY + 61),
        presence("tom", DAY + 70, "Tom", niss=mask(NISS)),
        (DAY + 71, Kind.REJECTED, {"id": "tom", "source": "onss", "errors": [
            {"code": "3", "description": "unknown WorkPlaceId"}]}),
    )  # fmt: skip


def presence_report(language: Language = Language.EN, full: dict[str, str] | None = None) -> str:
    entries = presence_week()
    context = replace(sample_context(entries, language), channel=Channel.CHECKINATWORK)
    declarations = {"ana": OTHER_WORKPLACE, "piet": WORKPLACE, "jan": WORKPLACE}
    return render_report(entries, context, full_niss=full, declarations=declarations)


def section(page: str, title: str) -> str:
    start = page.index(f"<h2>{title}</h2>")
    end = page.find("<h2>", start + 1)
    return page[start : end if end > 0 else len(page)]


def tiles(page: str) -> dict[str, int]:
    return {name: int(n) for n, name in re.findall(r"<b>(\d+)</b><span>([^<]*)</span>", page)}


def test_day_passed_presences_are_force_majeure_not_rejections() -> None:
    analysis = analyse(presence_week())
    assert [r.id for r in analysis.force_majeure] == ["ana", "piet"]
    assert [r.id for r in analysis.rejected] == ["tom"]
    assert report_outages.DAY_PASSED == DAY_PASSED  # the report's copy of the sender's code
    [outage] = analysis.outages
    assert [r.id for r in outage.held] == ["piet"]  # Ana's was already waiting


def test_the_force_majeure_section_lists_each_with_the_outage_that_kept_it() -> None:
    page = presence_report()
    texts = TEXTS[Language.EN]
    rows = section(page, texts["force_majeure_title"]).split("<tr>")[2:]
    assert len(rows) == 2
    ana, piet = rows
    assert "Mon\u00a010/03/2025 08:59:00" in ana and "Piet" not in ana
    assert f"Limosa {mask(LIMOSA)}" in ana and OTHER_WORKPLACE in ana
    assert "Mon\u00a010/03/2025 10:00:00" in piet and mask(NISS) in piet and WORKPLACE in piet
    for row in rows:  # the outage, linked to its row in the outages table
        assert '<a href="#outage-1">#1</a> Internet / ONSS unavailable' in row
        assert "Tue\u00a011/03/2025 09:01:00" in row  # rejected on the box when back online
        assert texts["dir_PRESENCE"] in row
    rejected = section(page, texts["rejected_title"])
    assert "Tom" in rejected and "Ana" not in rejected and DAY_PASSED not in rejected


def test_the_summary_names_the_channel_and_counts_force_majeure_apart() -> None:
    page = presence_report()
    texts = TEXTS[Language.EN]
    summary = section(page, texts["summary"])
    assert f"{texts['service']}: <b>{texts['channel_checkinatwork']}</b>" in summary
    counts = tiles(summary)
    assert counts[texts["sum_rejected"]] == 1
    assert counts[texts["sum_force_majeure"]] == 2
    assert counts[texts["sum_captured"]] == 4 and counts[texts["sum_acknowledged"]] == 1
    held = section(page, texts["held_title"].replace("$number", "1"))
    assert texts["day_passed_cell"] in held and texts["rejected_cell"] not in held
    outages = section(page, texts["outages"])
    assert "1 not delivered on their day" in outages and "rejected" not in outages


def test_presences_per_day() -> None:
    page = presence_report()
    per_day = section(page, TEXTS[Language.EN]["perday_title"])
    rows = per_day.split("<tr>")[2:]
    assert len(rows) == 2
    assert [re.findall(r"<td>(.*?)</td>", row) for row in rows] == [
        ["Mon\u00a010/03/2025", "3 (3 PRESENCE)", "1", "2"],
        ["Tue\u00a011/03/2025", "1 (1 PRESENCE)", "0", "0"],
    ]


def test_no_full_limosa_or_niss_unless_the_employer_asks() -> None:
    masked = presence_report()
    assert LIMOSA not in masked and NISS not in masked
    assert "NISS / Limosa" in masked
    full = presence_report(full={"ana": LIMOSA, "piet": NISS})
    assert f"Limosa {LIMOSA}" in full and NISS in full
    texts = TEXTS[Language.EN]
    assert texts["personal_masked"] in masked
    assert texts["personal_full"].replace("'", "&#x27;") in full


@pytest.mark.parametrize("language", list(Language))
def test_the_force_majeure_section_speaks_the_sites_language(language: Language) -> None:
    page = presence_report(language)
    texts = TEXTS[language]
    for key in ("force_majeure_title", "channel_checkinatwork", "dir_PRESENCE", "col_held_by"):
        assert texts[key].replace("'", "&#x27;") in page, key


def test_a_ciao_report_has_no_force_majeure_section() -> None:
    entries = chain(presence("r1", 0, "Jan", niss=mask(NISS)))
    page = render_report(entries, sample_context(entries))
    texts = TEXTS[Language.EN]
    assert texts["force_majeure_title"] not in page and texts["channel_ciao"] in page


def test_an_export_names_each_presences_declaration_from_the_journal(tmp_path: Path) -> None:
    """A real journal: the entries do not carry the declaration, the export reads it."""
    journal = Journal(tmp_path / "journal.db", clock=lambda: clock_at("2025-03-11T09:01", 9e4))
    mine = a_presence("2025-03-10T08:00", WORKER)
    posted = a_presence("2025-03-10T08:05", replace(POSTED_WORKER, declaration=OTHER_WORKPLACE))
    seqs = [journal.append_registration(reg) for reg in (mine, posted)]
    error = {"code": DAY_PASSED, "description": "not delivered on its day"}
    journal.settle([], [Rejection(seqs[1], "local", (error,))])
    journal.close()
    site = SiteConfig.model_validate(
        {"name": "Chantier", "channel": "checkinatwork", "declaration": WORKPLACE,
         "declarations": [OTHER_WORKPLACE], "language": "en"}
    )  # fmt: skip
    period = Period(T0 - DAY * MINUTE, T0 + 2 * DAY * MINUTE)
    conn = connect(tmp_path / "journal.db", read_only=True)
    try:
        for full, out in ((False, tmp_path / "masked"), (True, tmp_path / "full")):
            manifest = export(
                conn, out, period, site={"name": site.name},
                render=report_renderer(site, period), full_niss=full,
            )  # fmt: skip
            assert manifest["chain_verified"] and manifest["entries"] == 3
    finally:
        conn.close()
    masked = (tmp_path / "masked" / "report.html").read_text()
    texts = TEXTS[Language.EN]
    [row] = section(masked, texts["force_majeure_title"]).split("<tr>")[2:]
    assert f"<code>{OTHER_WORKPLACE}</code>" in row and f"Limosa {mask(LIMOSA)}" in row
    assert f"{WORKPLACE}, {OTHER_WORKPLACE}" in masked  # the site's workplaces, in the header
    assert LIMOSA not in masked and (WORKER.niss or "-") not in masked
    assert f"Limosa {LIMOSA}" in (tmp_path / "full" / "report.html").read_text()
