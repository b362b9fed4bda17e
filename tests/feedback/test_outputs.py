"""Feedback outputs: the signal vocabulary, GPIO LEDs and buzzer, the text display.

GPIO: this machine has no /dev/gpiochip* and no gpio-sim (no configfs, no modprobe), so
the GPIO tests replace `gpiod.request_lines` (and only it) with FakeChip, which records
each line's value with the time it was set. A missing chip is the real `gpiod` failing.
The display writes to real pseudo-terminals and files; taps go through a real daemon.
"""

from __future__ import annotations

import asyncio
import os
import pty
import re
import select
import statistics
import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from itertools import combinations
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import gpiod
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from gpiod.line import Direction as LineDirection
from gpiod.line import Value
from structlog.testing import capture_logs

from drivers.display import TerminalDisplay
from drivers.gpio import CONSUMER, GpioLine, LineConfig, open_indicator
from gateway.config import (
    ConfigError,
    DisplayOutputConfig,
    FeedbackConfig,
    GpioOutputConfig,
    LogOutputConfig,
    config_from_dict,
    load_config,
)
from gateway.daemon import Daemon
from gateway.feedback import OutcomeKind, TapOutcome, display_lines
from gateway.feedback.outputs import DisplayOutput, IndicatorOutput, build_outputs
from gateway.feedback.patterns import PATTERNS, Colour, Pattern, Signal, signal_for
from gateway.models import Direction, Language
from tests.support import (
    MINIMAL_CONFIG_TOML,
    REPO,
    badges,
    config_data,
    make_config,
    run,
    tap_read,
    with_daemon,
    write_badge_file,
)

GREEN, RED, BUZZER = 17, 27, 22
MS = 1_000_000
TOLERANCE_MS = 40  # scheduler jitter on a busy machine; the steps are 100 ms and longer
BRUSSELS = ZoneInfo("Europe/Brussels")
EXAMPLE = REPO / "config" / "gateway.example.toml"


def outcome(
    kind: OutcomeKind = OutcomeKind.REGISTERED,
    direction: Direction | None = Direction.IN,
    *,
    language: Language = Language.FR,
    name: str | None = "Marie",
    online: bool | None = None,
) -> TapOutcome:
    return TapOutcome(
        kind=kind,
        language=language,
        badge_uid="04A23B9C",
        reader="entrance",
        local_time=datetime(2026, 11, 23, 7, 2, tzinfo=BRUSSELS),
        direction=direction,
        worker_name=name,
        uplink_online=online,
    )


def wait_until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.002)


def feedback_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("feedback-")]


# --- the vocabulary --------------------------------------------------------------------


def beeps(pattern: Pattern) -> tuple[tuple[int, bool], ...]:
    return tuple((step.ms, step.beep) for step in pattern.steps)


def lights(pattern: Pattern) -> tuple[Colour, tuple[tuple[int, bool], ...]]:
    return pattern.colour, tuple((step.ms, step.light) for step in pattern.steps)


@pytest.mark.parametrize("aspect", [beeps, lights], ids=["by ear", "by eye"])
def test_each_signal_is_told_apart_by_ear_and_by_eye(aspect: Callable[[Pattern], Any]) -> None:
    for first, second in combinations(Signal, 2):
        assert aspect(PATTERNS[first]) != aspect(PATTERNS[second]), (first, second)


def test_cannot_store_is_unmistakable() -> None:
    cannot_store = PATTERNS[Signal.CANNOT_STORE]
    beep_steps = [step for step in cannot_store.steps if step.beep]

    assert cannot_store.colour is Colour.RED
    assert len(beep_steps) == 3 and all(step.ms >= 300 for step in beep_steps)
    assert cannot_store.duration_ms == max(pattern.duration_ms for pattern in PATTERNS.values())


@pytest.mark.parametrize(
    ("kind", "direction", "signal"),
    [
        (OutcomeKind.REGISTERED, Direction.IN, Signal.OK_IN),
        (OutcomeKind.REGISTERED, Direction.OUT, Signal.OK_OUT),
        (OutcomeKind.REPEAT, Direction.OUT, Signal.REPEAT),
        (OutcomeKind.UNKNOWN_BADGE, None, Signal.REFUSED),
        (OutcomeKind.NOT_YET_VALID, None, Signal.REFUSED),
        (OutcomeKind.EXPIRED, None, Signal.REFUSED),
        (OutcomeKind.DIRECTION_REQUIRED, None, Signal.REFUSED),
        (OutcomeKind.CANNOT_STORE, None, Signal.CANNOT_STORE),
    ],
)
def test_every_outcome_has_its_signal(
    kind: OutcomeKind, direction: Direction | None, signal: Signal
) -> None:
    assert signal_for(outcome(kind, direction)) is signal


def test_amber_lights_both_leds() -> None:
    assert [colour.leds for colour in Colour] == [(True, False), (True, True), (False, True)]


# --- GPIO, at the gpiod boundary -------------------------------------------------------


class FakeChip:
    """Stands in for gpiod.request_lines, and for the LineRequest it returns."""

    def __init__(self, *, failures: int = 0) -> None:
        self.requests: list[tuple[str, LineConfig, str | None]] = []
        self.events: list[tuple[int, int | str, Value]] = []  # (monotonic ns, line, value)
        self.released = False
        self._failures = failures

    def __call__(self, path: str, config: LineConfig, consumer: str | None = None) -> FakeChip:
        self.requests.append((path, config, consumer))
        return self

    def set_values(self, values: dict[int | str, Value]) -> None:
        if self._failures:
            self._failures -= 1
            raise OSError(5, "Input/output error")
        now = time.monotonic_ns()
        self.events.extend((now, line, value) for line, value in values.items())

    def release(self) -> None:
        self.released = True

    def changes(self, line: int, since_ns: int) -> list[tuple[int, bool]]:
        """(ms since `since_ns`, on) each time `line` changed, starting from off."""
        changes: list[tuple[int, bool]] = []
        state = False
        for at, offset, value in list(self.events):
            if offset == line and bool(value) != state:
                state = bool(value)
                changes.append((round((at - since_ns) / MS), state))
        return changes

    def first_event_ns(self) -> int:
        return self.events[0][0]

    def first_on(self, line: int, since_ns: int) -> int | None:
        times = [at for at, offset, value in list(self.events) if offset == line and value]
        return next((at for at in times if at >= since_ns), None)


@pytest.fixture
def chip() -> FakeChip:
    return FakeChip()


@pytest.fixture
def gpio(chip: FakeChip) -> Iterator[IndicatorOutput]:
    indicator = open_indicator(
        "/dev/gpiochip0",
        green=GpioLine(GREEN),
        red=GpioLine(RED, active_low=True),
        buzzer=GpioLine(BUZZER),
        request_lines=chip,
    )
    output = IndicatorOutput(indicator, "gpio-test")
    yield output
    output.close()


def assert_timeline(actual: list[tuple[int, bool]], expected: list[tuple[int, bool]]) -> None:
    assert [on for _, on in actual] == [on for _, on in expected], (actual, expected)
    for (at, _), (want, _) in zip(actual, expected, strict=True):
        assert abs(at - want) <= TOLERANCE_MS, (actual, expected)


def test_the_lines_are_requested_once_as_outputs_off_with_their_polarity(
    chip: FakeChip, gpio: IndicatorOutput
) -> None:
    [(path, config, consumer)] = chip.requests

    assert (path, consumer) == ("/dev/gpiochip0", CONSUMER)
    assert set(config) == {GREEN, RED, BUZZER}
    settings = {line: config[line] for line in (GREEN, RED, BUZZER)}
    for line, setting in settings.items():
        assert isinstance(setting, gpiod.LineSettings)
        assert setting.direction is LineDirection.OUTPUT
        assert setting.output_value is Value.INACTIVE
        assert setting.active_low is (line == RED)


def test_ok_out_plays_two_beeps_and_green_with_its_timings(
    chip: FakeChip, gpio: IndicatorOutput
) -> None:
    gpio.show(outcome(direction=Direction.OUT))
    wait_until(lambda: len(chip.changes(GREEN, 0)) == 4)

    start = chip.first_event_ns()
    assert_timeline(
        chip.changes(GREEN, start), [(0, True), (100, False), (200, True), (1000, False)]
    )
    assert_timeline(
        chip.changes(BUZZER, start), [(0, True), (100, False), (200, True), (300, False)]
    )
    assert chip.changes(RED, start) == []


def test_cannot_store_plays_three_long_beeps_and_red_flashes(
    chip: FakeChip, gpio: IndicatorOutput
) -> None:
    gpio.show(outcome(OutcomeKind.CANNOT_STORE, None))
    wait_until(lambda: len(chip.changes(RED, 0)) == 6)

    start = chip.first_event_ns()
    flashes = [(0, True), (400, False), (550, True), (950, False), (1100, True)]
    assert_timeline(chip.changes(RED, start), [*flashes, (3000, False)])
    assert_timeline(chip.changes(BUZZER, start), [*flashes, (1500, False)])
    assert chip.changes(GREEN, start) == []


def test_show_returns_at_once(chip: FakeChip, gpio: IndicatorOutput) -> None:
    durations = []
    for index in range(200):
        kind = OutcomeKind.CANNOT_STORE if index % 2 else OutcomeKind.REPEAT
        started = time.perf_counter_ns()
        gpio.show(outcome(kind))
        durations.append((time.perf_counter_ns() - started) / MS)

    assert statistics.median(durations) < 0.5, durations
    assert max(durations) < 10, durations


def test_a_new_tap_interrupts_the_pattern_playing(chip: FakeChip, gpio: IndicatorOutput) -> None:
    gpio.show(outcome(OutcomeKind.CANNOT_STORE, None))
    wait_until(lambda: bool(chip.events))
    time.sleep(0.2)
    shown = time.monotonic_ns()
    gpio.show(outcome(OutcomeKind.REGISTERED, Direction.IN))
    wait_until(lambda: len(chip.changes(GREEN, 0)) == 2)

    began = round((chip.first_event_ns() - shown) / MS)  # about -200: the error pattern
    assert_timeline(chip.changes(GREEN, shown), [(0, True), (1000, False)])
    assert_timeline(chip.changes(RED, shown), [(began, True), (0, False)])
    assert_timeline(chip.changes(BUZZER, shown), [(began, True), (100, False)])  # not 400


def test_close_ends_the_thread_promptly_and_leaves_everything_off(
    chip: FakeChip, gpio: IndicatorOutput
) -> None:
    gpio.show(outcome(OutcomeKind.CANNOT_STORE, None))
    wait_until(lambda: bool(chip.events))

    started = time.monotonic()
    gpio.close()

    assert time.monotonic() - started < 0.1
    assert "feedback-gpio-test" not in feedback_threads()
    last = {line: value for _, line, value in chip.events}
    assert last == dict.fromkeys((GREEN, RED, BUZZER), Value.INACTIVE)
    assert chip.released
    events = len(chip.events)
    gpio.show(outcome())  # a tap finishing during shutdown: ignored, no error
    assert len(chip.events) == events


def test_a_failing_line_does_not_end_the_output() -> None:
    chip = FakeChip(failures=1)
    output = IndicatorOutput(
        open_indicator("/dev/gpiochip0", buzzer=GpioLine(3), request_lines=chip), "flaky"
    )
    try:
        with capture_logs() as logs:
            output.show(outcome())
            wait_until(lambda: any(e["event"] == "feedback output failed" for e in logs))
        output.show(outcome())
        wait_until(lambda: bool(chip.events))
    finally:
        output.close()

    assert chip.changes(3, chip.first_event_ns())[0] == (0, True)


def test_a_missing_chip_is_named_and_the_other_outputs_still_work(tmp_path: Path) -> None:
    screen = tmp_path / "screen.txt"
    screen.touch()
    configs: list[FeedbackConfig] = [
        GpioOutputConfig(output="gpio", chip="/dev/gpiochip9", green_led={"line": 17}),
        DisplayOutputConfig(output="display", device=screen),
    ]

    with capture_logs() as logs:
        outputs = build_outputs(configs)
    try:
        [display] = outputs
        display.show(outcome())
        wait_until(lambda: "ENTRÉE 07:02 Marie" in screen.read_text())
    finally:
        display.close()

    [error] = [entry for entry in logs if entry["log_level"] == "error"]
    assert error["output"] == "gpio" and error["entry"] == "feedback[0]"
    assert "/dev/gpiochip9" in error["error"] and "No such file" in error["error"]


# --- the text display ------------------------------------------------------------------


@pytest.fixture
def terminal() -> Iterator[tuple[int, Path]]:
    """A real pseudo-terminal: the display writes to its path, the test reads the other end."""
    master, follower = pty.openpty()
    yield master, Path(os.ttyname(follower))
    os.close(master)
    os.close(follower)


def read_until(master: int, wanted: str, timeout: float = 5.0) -> str:
    received = b""
    deadline = time.monotonic() + timeout
    while wanted not in received.decode(errors="replace"):
        remaining = deadline - time.monotonic()
        assert remaining > 0, f"{wanted!r} not in {received!r}"
        if select.select([master], [], [], remaining)[0]:
            received += os.read(master, 4096)
    return received.decode(errors="replace")


def display_on(path: Path, clear_after: float = 10.0) -> DisplayOutput:
    return DisplayOutput(TerminalDisplay.open(path), "display-test", clear_after=clear_after)


@pytest.mark.parametrize(
    ("language", "direction", "offline"),
    [
        (Language.FR, "SORTIE", "Hors ligne — enregistré"),
        (Language.NL, "UIT", "Offline — opgeslagen"),
        (Language.DE, "AUS", "Offline — gespeichert"),
        (Language.EN, "OUT", "Offline — saved"),
    ],
)
def test_the_display_shows_type_time_and_name_in_the_workers_language_and_offline(
    terminal: tuple[int, Path], language: Language, direction: str, offline: str
) -> None:
    master, path = terminal
    display = display_on(path)
    try:
        display.show(outcome(direction=Direction.OUT, language=language, online=False))
        text = read_until(master, offline)
    finally:
        display.close()

    assert f"\x1b[1;32m{direction} 07:02 Marie\x1b[0m" in text  # green, as the LED
    assert "\x1b[2;1H" in text  # the notice on the second row


@pytest.mark.parametrize(
    ("shown", "lines"),
    [
        (outcome(online=True), ["ENTRÉE 07:02 Marie"]),
        (outcome(online=None), ["ENTRÉE 07:02 Marie"]),
        (
            outcome(OutcomeKind.REPEAT, online=False),
            ["Déjà enregistré : ENTRÉE à 07:02", "Marie", "Hors ligne — enregistré"],
        ),
        (
            outcome(OutcomeKind.EXPIRED, None, online=False),
            ["Badge expiré : rien n'est enregistré", "Marie"],
        ),
        (
            outcome(OutcomeKind.CANNOT_STORE, None, name=None, online=False),
            ["ERREUR : non enregistré. Utilisez l'app et prévenez l'employeur"],
        ),
    ],
    ids=["online", "no uplink", "repeat offline", "refused offline", "cannot store offline"],
)
def test_offline_saved_is_said_only_of_a_tap_kept(shown: TapOutcome, lines: list[str]) -> None:
    assert display_lines(shown) == lines


def test_the_screen_is_cleared_after_a_while(terminal: tuple[int, Path]) -> None:
    master, path = terminal
    display = display_on(path, clear_after=0.2)
    try:
        read_until(master, "\x1b[2J")  # cleared when opened
        shown = time.monotonic()
        display.show(outcome(OutcomeKind.UNKNOWN_BADGE, None, name=None))
        read_until(master, "\x1b[1;31mBadge inconnu")
        read_until(master, "\x1b[2J")
        cleared_after = time.monotonic() - shown
    finally:
        display.close()

    assert 0.2 - TOLERANCE_MS / 1000 < cleared_after < 0.2 + 4 * TOLERANCE_MS / 1000


def test_a_file_gets_plain_lines(tmp_path: Path) -> None:
    path = tmp_path / "screen.txt"
    path.touch()
    display = display_on(path)
    try:
        display.show(outcome(language=Language.NL, online=False))
        wait_until(lambda: path.read_text().count("\n") == 2)
    finally:
        display.close()

    assert path.read_text() == "IN 07:02 Marie\nOffline — opgeslagen\n"


# --- through the daemon ----------------------------------------------------------------


def test_tap_to_output_under_300_ms_through_the_real_pipeline(
    state: Path, chip: FakeChip, gpio: IndicatorOutput
) -> None:
    workers = badges(30)
    config = make_config(state, workers)
    latencies: list[float] = []

    async def taps(daemon: Daemon) -> None:
        for worker in workers:
            read = tap_read(worker.uid)
            started = time.monotonic_ns()
            await daemon.tap(read)
            wait_until(lambda: chip.first_on(BUZZER, started) is not None)  # noqa: B023
            fired = chip.first_on(BUZZER, started)
            assert fired is not None
            latencies.append((fired - started) / MS)

    run(with_daemon(config, taps, outputs=[gpio]))

    print(f"tap to GPIO: p50 {statistics.median(latencies):.2f} ms, max {max(latencies):.2f} ms")
    assert max(latencies) < 300, latencies


def write_key(path: Path) -> Path:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    path.write_bytes(pem)
    path.chmod(0o600)
    return path


def test_the_daemon_builds_its_outputs_says_offline_and_closes_them(
    state: Path, terminal: tuple[int, Path]
) -> None:
    master, screen = terminal
    workers = badges(2)
    unreachable = "https://127.0.0.1:9"
    write_badge_file(state / "badges.csv", workers)
    (state / "synchronized").touch()  # the clock: registrations are not held for it
    data = config_data(
        state,
        uplink={
            "enabled": True,
            "client_id": "test-client",
            "private_key": str(write_key(state / "key.pem")),
            "token_url": f"{unreachable}/token",
            "base_url": f"{unreachable}/api",
            "backoff_initial_seconds": 0.05,
        },
    )
    data["feedback"] = [
        {"output": "gpio", "chip": "/dev/gpiochip9", "buzzer": {"line": 4}},
        {"output": "display", "device": str(screen)},
        {"output": "log"},
    ]
    config = config_from_dict(data, source="test")

    async def taps(daemon: Daemon) -> None:
        await daemon.tap(tap_read(workers[0].uid))
        for _ in range(500):
            if daemon.uplink is not None and daemon.uplink.connectivity.state == "offline":
                break
            await asyncio.sleep(0.01)
        await daemon.tap(tap_read(workers[1].uid))

    with capture_logs() as logs:
        run(with_daemon(config, taps))
    text = read_until(master, "Hors ligne — enregistré")

    assert "ENTRÉE" in text and "Worker 1" in text
    assert not any(name.startswith("feedback-display") for name in feedback_threads())
    [unavailable] = [e for e in logs if e["event"].startswith("feedback output unavailable")]
    assert "/dev/gpiochip9" in unavailable["error"]
    told = [e["event"] for e in logs if e.get("outcome") == "registered"]  # the log output
    assert len(told) == 2 and told[1].endswith("Worker 1")


# --- configuration ---------------------------------------------------------------------

BASE = MINIMAL_CONFIG_TOML


def config_errors(tmp_path: Path, feedback: str) -> list[str]:
    path = tmp_path / "gateway.toml"
    path.write_text(feedback + BASE, encoding="utf-8")  # before the tables: top-level keys
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    return caught.value.errors


def test_the_default_is_one_log_output(tmp_path: Path) -> None:
    path = tmp_path / "gateway.toml"
    path.write_text(BASE, encoding="utf-8")

    assert load_config(path).feedback == [LogOutputConfig(output="log")]


def test_the_examples_in_the_example_file_load_once_uncommented(tmp_path: Path) -> None:
    text = EXAMPLE.read_text(encoding="utf-8")
    head, feedback = text.split("[[feedback]]", 1)
    uncommented = re.sub(r"(?m)^# (\[\[feedback\]\]|\w+ = .*)$", r"\1", feedback)
    path = tmp_path / "gateway.toml"
    path.write_text(head + "[[feedback]]" + uncommented, encoding="utf-8")

    log, gpio, display = load_config(path).feedback

    assert isinstance(log, LogOutputConfig)
    assert isinstance(gpio, GpioOutputConfig) and gpio.red_led is not None
    assert (gpio.chip, gpio.red_led.line, gpio.red_led.active_low) == ("/dev/gpiochip0", 27, True)
    assert isinstance(display, DisplayOutputConfig)
    assert (display.device, display.clear_after_seconds) == (Path("/dev/tty1"), 10.0)


GPIO = '[[feedback]]\noutput = "gpio"\n'

BAD_FEEDBACK: list[tuple[str, str, str]] = [
    (
        "unknown output",
        '[[feedback]]\noutput = "lcd"\n',
        "feedback[0].output: unknown output (expected 'log', 'gpio', 'display', 'acr122u')"
        " (got 'lcd')",
    ),
    ("no output", "[[feedback]]\n", "feedback[0].output: required, but missing"),
    ("not an array", 'feedback = "log"\n', "feedback: input should be an array (got 'log')"),
    ("gpio without lines", GPIO, "feedback[0]: give at least one of green_led, red_led or buzzer"),
    (
        "one line twice",
        GPIO + "green_led = { line = 17 }\nbuzzer = { line = 17 }\n",
        "feedback[0]: green_led and buzzer are both line 17",
    ),
    (
        "negative offset",
        GPIO + "red_led = { line = -1 }\n",
        "feedback[0].red_led.line: input should be greater than or equal to 0 (got -1)",
    ),
    (
        "line not a table",
        GPIO + "buzzer = 22\n",
        "feedback[0].buzzer: input should be a table (got 22)",
    ),
    (
        "unknown key in an output",
        '[[feedback]]\noutput = "log"\n' + GPIO + "buzzer = { line = 2 }\nled = 3\n",
        "feedback[1].led: unknown key",
    ),
    (
        "empty chip",
        GPIO + 'chip = ""\nbuzzer = { line = 2 }\n',
        "feedback[0].chip: string should have at least 1 character (got '')",
    ),
    (
        "display never cleared",
        '[[feedback]]\noutput = "display"\nclear_after_seconds = 0\n',
        "feedback[0].clear_after_seconds: input should be greater than 0 (got 0)",
    ),
    (
        "reader output without such an nfc reader",
        '[[feedback]]\noutput = "acr122u"\nreader = "door"\n',
        "feedback[0].reader: no nfc reader named 'door' in [[readers]] (only nfc readers"
        " signal) (got 'door')",
    ),
]


@pytest.mark.parametrize(
    ("text", "expected"), [case[1:] for case in BAD_FEEDBACK], ids=[c[0] for c in BAD_FEEDBACK]
)
def test_a_bad_output_is_named_by_its_field(tmp_path: Path, text: str, expected: str) -> None:
    assert config_errors(tmp_path, text) == [expected]


class SignallingReader:
    """An ACR122U's verdict at the driver boundary: drivers.nfc.NfcReader.signal."""

    technology = "nfc"

    def __init__(self, name: str) -> None:
        self.name = name
        self.verdicts: list[bool] = []

    def start(self, on_read: Callable[..., None]) -> None: ...

    def stop(self) -> None: ...

    def health(self) -> Any: ...

    def signal(self, accepted: bool) -> None:
        self.verdicts.append(accepted)


def test_a_reader_output_plays_the_verdict_on_that_reader(tmp_path: Path) -> None:
    reader = SignallingReader("door")
    nfc = {"name": "door", "driver": "nfc", "path": "udp:localhost:9"}
    data = config_data(tmp_path, feedback={})
    data["readers"], data["feedback"] = [nfc], [{"output": "acr122u", "reader": "door"}]
    config = config_from_dict(data, source="test")

    [output] = build_outputs(config.feedback, [reader])
    try:
        output.show(outcome(OutcomeKind.REGISTERED))
        wait_until(lambda: reader.verdicts == [True])
        output.show(outcome(OutcomeKind.UNKNOWN_BADGE))
        wait_until(lambda: reader.verdicts == [True, False])
    finally:
        output.close()
