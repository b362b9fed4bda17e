"""`./dev demo`, the README's first command, runs to the end and shows what it promises:
the ONSS goes down in the middle, the taps made meanwhile are kept (the door says
"offline — saved") and delivered afterwards with their original times, every registration
reaches the ONSS, and the day's evidence report it names holds that outage and verifies.

The demo runs as `python -m gateway demo --out DIR`, the real command; what it wrote in DIR
(the evidence export: entries.jsonl, manifest.json, report.html) is checked here on its own,
besides what it printed.
"""

from __future__ import annotations

import html
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from gateway.evidence import Entry
from gateway.report import OutageKind, analyse, verify_export

# A row of the demo's table: worker, IN/OUT, tapped, reached the ONSS [(N s later)], the
# time the ONSS registered.
ROW = re.compile(
    r"^ +(?P<worker>\S.*?) +(?P<type>IN|OUT) +(?P<tapped>\d\d:\d\d:\d\d)"
    r" +(?P<reached>\d\d:\d\d:\d\d)(?: \((?P<later>\d+) s later\))?"
    r" +(?P<registered>\d\d:\d\d:\d\d)$",
    re.MULTILINE,
)
REPORT = re.compile(r"report for the day: (?P<path>\S+report\.html)")


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    """The demo's output, and the directory it wrote its report to (run once)."""
    out = tmp_path_factory.mktemp("demo")
    result = subprocess.run(
        [sys.executable, "-m", "gateway", "demo", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    printed = result.stdout + result.stderr
    assert result.returncode == 0, printed[-4000:]
    assert "PROBLEM" not in printed and "Traceback" not in printed, printed[-4000:]
    return result.stdout, out


def _entries(directory: Path) -> list[Entry]:
    lines = (directory / "entries.jsonl").read_text(encoding="utf-8").splitlines()
    return [Entry.from_json(json.loads(line)) for line in lines if line.strip()]


def _report_dir(stdout: str) -> Path:
    match = REPORT.search(stdout)
    assert match is not None, stdout
    return Path(match["path"]).parent


@pytest.mark.slow
def test_every_registration_reaches_the_onss_with_the_time_of_its_tap(
    demo: tuple[str, Path],
) -> None:
    stdout, _ = demo
    rows = list(ROW.finditer(stdout))

    assert [(row["worker"], row["type"]) for row in rows] == [
        ("Marie Dubois", "IN"),  # her double tap is one registration
        ("Jan Peeters", "IN"),
        ("Jan Peeters", "OUT"),
        ("Marie Dubois", "OUT"),
        ("Jan Peeters", "IN"),
    ]  # the unknown badge and the expired one registered nothing
    assert all(row["registered"] == row["tapped"] for row in rows)
    late = [row for row in rows if row["later"] is not None]
    assert len(late) == 3  # the three taps made while the ONSS was down
    assert all(row["reached"] > row["tapped"] for row in late)


@pytest.mark.slow
def test_the_door_says_offline_saved_for_the_taps_made_while_the_onss_is_down(
    demo: tuple[str, Path],
) -> None:
    stdout, _ = demo
    morning, outage = stdout.split("2. The ONSS goes down", 1)
    outage = outage.split("3. The ONSS is back", 1)[0]

    assert "Offline —" not in morning and "Hors ligne" not in morning  # reachable then
    # Marie (French) and Jan (Dutch), once the box knows, each in their language.
    assert '"SORTIE' in outage and '"Hors ligne — enregistré"' in outage
    assert '"IN' in outage and '"Offline — opgeslagen"' in outage


@pytest.mark.slow
def test_the_report_it_names_holds_the_outage_and_the_late_deliveries(
    demo: tuple[str, Path],
) -> None:
    stdout, out = demo
    directory = _report_dir(stdout)
    assert directory.parent == out and (directory / "report.html").is_file()

    analysis = analyse(_entries(directory))

    assert analysis.captured == analysis.acknowledged == 5  # every registration delivered
    [outage] = analysis.outages
    assert outage.kind is OutageKind.UPLINK and outage.end_ns is not None
    assert "503" in outage.cause
    # Jan's break was the tap that found the ONSS down; Marie and Jan tapped after that.
    assert outage.pending_at_start == 1
    assert [r.captured.worker for r in outage.held if r.captured] == [
        "Marie Dubois",
        "Jan Peeters",
    ]
    for record in outage.held:
        assert record.captured is not None and record.acknowledgement is not None
        assert outage.start_ns <= record.captured.wall_ns <= outage.end_ns  # its original time
        assert record.acknowledgement.wall_ns >= outage.end_ns  # delivered after the outage


@pytest.mark.slow
def test_the_report_shows_the_outage_and_the_evidence_verifies(demo: tuple[str, Path]) -> None:
    stdout, _ = demo
    directory = _report_dir(stdout)
    page = (directory / "report.html").read_text(encoding="utf-8")
    outages = page[page.index("<h2>Outages</h2>") :]
    outages = html.unescape(outages[: outages.index("</section>")])

    assert "Internet / ONSS unavailable" in outages and "http 503" in outages
    assert "2 (+ 1 already waiting)" in outages
    assert "Outage 1: registrations held back" in page
    assert verify_export(directory).ok
    assert "verified: every entry's hash and link holds" in stdout
    kinds = [entry.kind for entry in _entries(directory)]
    assert kinds[-1] == "daemon-stop" and "unclean-stop" not in kinds
