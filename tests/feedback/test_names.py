"""Names are input (the badge file, the control socket): before they reach the door's
display, a terminal or a log line, escape sequences, control, bidi and zero-width
characters are taken out (`printable`), once, at the feedback boundary."""

from __future__ import annotations

import json
import re
import time
import unicodedata
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import structlog
from structlog.testing import capture_logs

from drivers.display import TerminalDisplay
from gateway.attendance import AttendanceRules
from gateway.control.commands import _tap_read
from gateway.errors import ControlError
from gateway.feedback import LogFeedback, OutcomeKind, TapOutcome, display_lines
from gateway.feedback.outcome import printable
from gateway.feedback.outputs import DisplayOutput
from gateway.journal import Journal
from gateway.models import Direction, Language
from tests.support import (
    SITE,
    WORKER,
    badges,
    clock_at,
    daemon_process,
    read,
    registered,
    write_badge_file,
    write_config,
)
from tests.test_process import cli

HOSTILE = {
    "CSI colour": ("\x1b[31mMarie\x1b[0m", "Marie"),
    "clear screen and home": ("Ma\x1b[2J\x1b[Hrie", "Marie"),
    "OSC window title, BEL": ("\x1b]0;pwned\x07Marie", "Marie"),
    "OSC hyperlink, ST": ("\x1b]8;;http://evil\x1b\\Marie\x1b]8;;\x1b\\", "Marie"),
    "unterminated CSI": ("Marie\x1b[31", "Marie"),
    "8-bit CSI": ("\x9b31mMarie", "Marie"),
    "8-bit OSC": ("\x9d0;pwned\x9cMarie", "Marie"),
    "DCS": ("\x1bPq#0;2;0;0;0\x1b\\Marie", "Marie"),
    "two-byte escapes": ("\x1bcMarie\x1b7", "Marie"),
    "C0 controls": ("Ma\x00r\x07i\x08e", "Marie"),
    "DEL": ("Mar\x7fie", "Marie"),
    "C1 controls": ("Ma\x80ri\x8de\x99", "Marie"),
    "8-bit APC, unterminated": ("Marie\x9fpayload", "Marie"),
    "newline forging a line": ("Marie\nERROR fake log line", "Marie ERROR fake log line"),
    "carriage return, tab": ("Evil\rMarie\tDupont", "Evil Marie Dupont"),
    "next line, line separator": ("Marie\x85Dupont\u2028X", "Marie Dupont X"),
    "bidi override": ("\u202eeiraM\u202c", "eiraM"),
    "bidi isolates and marks": ("\u2066Marie\u2069\u200e\u200f", "Marie"),
    "zero width": ("Ma\u200brie\ufeff", "Marie"),
    "lone surrogate": ("Marie\udcff", "Marie"),
    "only controls": ("\x1b[2J\x00\u202e", ""),
}
KEPT = [
    "Marie",
    "Marie-Thérèse O'Brien",
    "Zoë Van den Bossche",
    "Łukasz Żółć",
    "محمد علي",
    "李雷",
    "José  García ",
]


@pytest.mark.parametrize(("text", "shown"), HOSTILE.values(), ids=HOSTILE.keys())
def test_escape_sequences_and_controls_are_taken_out(text: str, shown: str) -> None:
    assert printable(text) == shown


@pytest.mark.parametrize("name", KEPT)
def test_real_names_are_kept(name: str) -> None:
    assert printable(name) == " ".join(name.split())


def assert_showable(text: str) -> None:
    for char in text:
        assert unicodedata.category(char) not in ("Cc", "Cf", "Cs"), repr(text)


def outcome(kind: OutcomeKind, name: str, reader: str = "entrance") -> TapOutcome:
    return TapOutcome(
        kind=kind,
        language=Language.EN,
        badge_uid="04A23B9C",
        reader=reader,
        local_time=datetime(2026, 11, 23, 7, 2, tzinfo=ZoneInfo("Europe/Brussels")),
        direction=Direction.IN if kind.positive else None,
        worker_name=name,
        uplink_online=False,
    )


@pytest.mark.parametrize(
    "kind", [OutcomeKind.REGISTERED, OutcomeKind.REPEAT, OutcomeKind.EXPIRED], ids=str
)
@pytest.mark.parametrize("text", [text for text, _ in HOSTILE.values()], ids=HOSTILE.keys())
def test_the_display_lines_and_the_message_show_no_control_character(
    kind: OutcomeKind, text: str
) -> None:
    shown = outcome(kind, text)
    for line in [*display_lines(shown), shown.message()]:
        assert_showable(line)
    assert printable(text) in "\n".join(display_lines(shown))


def test_a_hostile_name_reaches_the_display_device_as_plain_text(tmp_path: Path) -> None:
    screen = tmp_path / "screen.txt"
    screen.touch()
    display = DisplayOutput(TerminalDisplay.open(screen), "display-test", clear_after=10)
    try:
        display.show(outcome(OutcomeKind.REPEAT, "\x1b[2J\x1b]0;pwned\x07Marie\u202e\nDupont"))
        deadline = time.monotonic() + 5
        while screen.read_text().count("\n") < 3:
            assert time.monotonic() < deadline, screen.read_text()
            time.sleep(0.005)
    finally:
        display.close()

    assert screen.read_text() == ("Already registered IN at 07:02\nMarie Dupont\nOffline — saved\n")


def test_the_log_line_of_a_tap_carries_no_control_character() -> None:
    shown = outcome(OutcomeKind.REGISTERED, "\x1b[31mMarie\nfake line", reader="door\x1b[2J")
    with capture_logs() as logs:
        LogFeedback().show(shown)

    [line] = logs
    assert line["event"] == "IN 07:02 Marie fake line"
    assert line["reader"] == "door"
    for value in line.values():
        assert_showable(str(value))


def test_the_rendered_console_log_line_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    """The text format (ConsoleRenderer) prints the event as it is: nothing to escape it."""
    structlog.configure(
        processors=[structlog.dev.ConsoleRenderer(colors=False)],
        logger_factory=structlog.PrintLoggerFactory(),
        cache_logger_on_first_use=False,
    )
    try:
        LogFeedback().show(outcome(OutcomeKind.REGISTERED, "Marie\n2026-11-23 [error] forged"))
    finally:
        structlog.reset_defaults()

    printed = capsys.readouterr().out
    assert printed.count("\n") == 1
    assert "IN 07:02 Marie 2026-11-23 [error] forged" in printed


# --- reader names over the control socket: bounded, printable, stored as given ------------

LONGEST_READER = "Entrée principale, bâtiment B — lecteur n°2 (côté parking) 01234"


@pytest.mark.parametrize(
    ("reader", "expected"),
    [
        ("r" * 60_000, '"reader" must be at most 64 characters, not 60000'),
        (LONGEST_READER + "4", '"reader" must be at most 64 characters, not 65'),
        ("door\x1b[2J", '"reader" must be printable'),
        ("door\nERROR forged", '"reader" must be printable'),
        ("\u202erood", '"reader" must be printable'),
        (" door", "no space at either end"),
        ("", '"reader" must not be empty'),
    ],
    ids=["60 kB", "65 characters", "escape", "newline", "bidi", "leading space", "empty"],
)
def test_a_bad_reader_name_is_refused_with_a_clear_error(reader: str, expected: str) -> None:
    with pytest.raises(ControlError, match=re.escape(expected)):
        _tap_read({"cmd": "tap", "uid": "04A23B9C", "reader": reader})


def test_reader_names_through_the_socket_and_the_cli(state: Path) -> None:
    assert len(LONGEST_READER) == 64
    [worker, other] = badges(2)
    write_badge_file(state / "badges.csv", [worker, other])
    config = write_config(state)
    with daemon_process(state, config) as daemon:
        with pytest.raises(ControlError) as refused:
            daemon.request({"cmd": "tap", "uid": worker.uid, "reader": "r" * 60_000})
        by_cli = cli("tap", worker.uid, "--reader", "door\x1b]0;pwned\x07", config=config)
        kept = daemon.tap(worker.uid, reader=LONGEST_READER)
        by_cli_ok = cli("tap", other.uid, "--reader", "Sortie", config=config)
        listed = cli("registrations", "--since", "1h", "--json", config=config)

    assert str(refused.value) == '"reader" must be at most 64 characters, not 60000'
    assert by_cli.returncode == 1 and "Traceback" not in by_cli.stderr
    assert '"reader" must be printable' in by_cli.stderr
    assert kept["kind"] == "registered"
    assert by_cli_ok.returncode == 0, by_cli_ok.stderr
    readers = sorted(json.loads(line)["reader"] for line in listed.stdout.splitlines())
    assert readers == sorted([LONGEST_READER, "Sortie"])  # stored as given


# --- names the command line prints: `registrations`, `queue list` --------------------------


def test_the_command_line_prints_a_hostile_name_as_plain_text(state: Path) -> None:
    hostile = replace(WORKER, name="\x1b]0;pwned\x07\x1b[2JMarie\u202e\nDupont")
    decision = AttendanceRules(SITE).decide(read("IN"), hostile, None, clock_at("2026-11-22T07:02"))
    journal = Journal(state / "journal.db")
    journal.append_registration(registered(decision))
    journal.close()
    config = write_config(state)
    where = ("--journal", str(state / "journal.db"))

    listed = cli("registrations", "--since", "2026-11-01", *where, config=config)
    queued = cli("queue", "list", *where, config=config)
    as_json = cli("registrations", "--since", "2026-11-01", "--json", *where, config=config)

    for result in (listed, queued):
        assert result.returncode == 0, result.stderr
        [line] = result.stdout.splitlines()
        assert "Marie Dupont" in line
        assert_showable(line)
    assert json.loads(as_json.stdout)["name"] == hostile.name  # the data, as stored
