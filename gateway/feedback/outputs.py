"""Feedback outputs: the registry (configuration entry -> output), and the outputs that
play the signal vocabulary (gateway.feedback.patterns) on the hardware of drivers/.

`show()` runs on the tap's thread and only hands the outcome over: each output with
something timed to do (a pattern, a screen to clear later) has its own thread, where the
newest outcome wins. A pattern still playing when the next worker taps is cut short: that
worker must see and hear their own signal at once. An output whose device cannot be
opened is left out with a loud log; the others work.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from functools import partial
from typing import Protocol, runtime_checkable

import structlog

from drivers.base import Reader
from drivers.display import TerminalDisplay
from drivers.gpio import GpioLine, open_indicator
from gateway.config import (
    Acr122uOutputConfig,
    DisplayOutputConfig,
    FeedbackConfig,
    GpioLineConfig,
    GpioOutputConfig,
    LogOutputConfig,
)
from gateway.feedback.outcome import LogFeedback, Output, TapOutcome, display_lines
from gateway.feedback.patterns import Colour, Pattern, pattern_for

log = structlog.get_logger("feedback")

# pause(deadline) waits until time.monotonic() reaches deadline: True, or False as soon as
# a newer job or close() arrives, and the job must then return at once.
Pause = Callable[[float], bool]
Job = Callable[[Pause], None]

CLOSE_TIMEOUT = 2.0


class LatestWins:
    """One thread running the newest job handed to it; a newer job ends the one running."""

    def __init__(self, name: str, *, on_stop: Callable[[], None]) -> None:
        self.name = name
        self._on_stop = on_stop  # run on this thread, the only one touching the device
        self._changed = threading.Condition()
        self._next: Job | None = None
        self._closing = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def submit(self, job: Job) -> None:
        with self._changed:
            if not self._closing:
                self._next = job
                self._changed.notify()

    def close(self) -> None:
        with self._changed:
            self._closing = True
            self._changed.notify()
        self._thread.join(CLOSE_TIMEOUT)
        if self._thread.is_alive():
            log.error("feedback output stuck, left behind", output=self.name)

    def _run(self) -> None:
        try:
            while (job := self._take()) is not None:
                self._guarded(partial(job, self._pause))
        finally:
            self._guarded(self._on_stop)

    def _take(self) -> Job | None:
        with self._changed:
            self._changed.wait_for(lambda: self._next is not None or self._closing)
            job, self._next = self._next, None
            return None if self._closing else job

    def _pause(self, deadline: float) -> bool:
        with self._changed:
            while self._next is None and not self._closing:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return True
                self._changed.wait(remaining)
            return False

    def _guarded(self, action: Callable[[], None]) -> None:
        try:
            action()
        except Exception:  # a device error must not end the thread: the next tap tries again
            log.exception("feedback output failed", output=self.name)


class Indicator(Protocol):
    """A green and a red LED (amber: both) and a buzzer: drivers.gpio.GpioIndicator."""

    def set(self, *, green: bool, red: bool, buzzer: bool) -> None: ...

    def close(self) -> None: ...


class Screen(Protocol):
    """A few lines of text: drivers.display.TerminalDisplay."""

    def show(self, lines: Sequence[str], colour: str | None = None) -> None: ...

    def clear(self) -> None: ...

    def close(self) -> None: ...


class IndicatorOutput:
    """Plays each outcome's pattern on an indicator's LEDs and buzzer."""

    def __init__(self, indicator: Indicator, name: str) -> None:
        self._indicator = indicator
        self._player = LatestWins(f"feedback-{name}", on_stop=indicator.close)

    def show(self, outcome: TapOutcome) -> None:
        self._player.submit(partial(self._play, pattern_for(outcome)))

    def close(self) -> None:
        self._player.close()

    def _play(self, pattern: Pattern, pause: Pause) -> None:
        deadline = time.monotonic()  # steps are timed from the start: no drift adds up
        for step in pattern.steps:
            self._light(pattern.colour if step.light else None, beep=step.beep)
            deadline += step.ms / 1000
            if not pause(deadline):
                return
        self._light(None, beep=False)

    def _light(self, colour: Colour | None, *, beep: bool) -> None:
        green, red = colour.leds if colour else (False, False)
        self._indicator.set(green=green, red=red, buzzer=beep)


class DisplayOutput:
    """Shows each outcome's text in its colour, and clears it after a while."""

    def __init__(self, screen: Screen, name: str, *, clear_after: float) -> None:
        self._screen = screen
        self._clear_after = clear_after
        self._writer = LatestWins(f"feedback-{name}", on_stop=screen.close)

    def show(self, outcome: TapOutcome) -> None:
        self._writer.submit(partial(self._display, outcome))

    def close(self) -> None:
        self._writer.close()

    def _display(self, outcome: TapOutcome, pause: Pause) -> None:
        self._screen.show(display_lines(outcome), pattern_for(outcome).colour)
        if pause(time.monotonic() + self._clear_after):
            self._screen.clear()


@runtime_checkable
class Signalling(Protocol):
    """A reader that can play a verdict on its own LED and buzzer: drivers.nfc.NfcReader."""

    name: str

    def signal(self, accepted: bool) -> None: ...


class ReaderSignalOutput:
    """Plays each outcome on the reader's own LED and buzzer (it blocks while playing)."""

    def __init__(self, reader: Signalling) -> None:
        self._reader = reader
        self._player = LatestWins(f"feedback-reader-{reader.name}", on_stop=lambda: None)

    def show(self, outcome: TapOutcome) -> None:
        accepted = outcome.kind.positive
        self._player.submit(lambda pause: self._reader.signal(accepted))

    def close(self) -> None:
        self._player.close()


def build_output(config: FeedbackConfig, readers: Sequence[Reader] = ()) -> Output:
    """The output for one configuration entry; OSError if its device cannot be opened."""
    match config:
        case Acr122uOutputConfig():
            reader = next((r for r in readers if r.name == config.reader), None)
            if not isinstance(reader, Signalling):
                raise OSError(f"reader {config.reader!r} cannot signal")
            return ReaderSignalOutput(reader)
        case LogOutputConfig():
            return LogFeedback()
        case GpioOutputConfig():
            indicator = open_indicator(
                config.chip,
                green=_gpio_line(config.green_led),
                red=_gpio_line(config.red_led),
                buzzer=_gpio_line(config.buzzer),
            )
            return IndicatorOutput(indicator, f"gpio {config.chip}")
        case DisplayOutputConfig():
            screen = TerminalDisplay.open(config.device, colour=config.colour)
            return DisplayOutput(
                screen, f"display {config.device}", clear_after=config.clear_after_seconds
            )
    raise ValueError(f"no output for {config!r}")  # unreachable while the union is matched


def build_outputs(
    configs: Sequence[FeedbackConfig], readers: Sequence[Reader] = ()
) -> list[Output]:
    """Every output that can be opened; a missing device must not stop the daemon."""
    outputs: list[Output] = []
    for index, config in enumerate(configs):
        try:
            outputs.append(build_output(config, readers))
        except OSError as error:
            log.error(
                "feedback output unavailable; the other outputs still work",
                entry=f"feedback[{index}]",
                output=config.output,
                error=str(error),
            )
    return outputs


def close_outputs(outputs: Sequence[Output]) -> None:
    for output in outputs:
        try:
            output.close()
        except Exception:
            log.exception("feedback output failed to close", output=type(output).__name__)


def _gpio_line(config: GpioLineConfig | None) -> GpioLine | None:
    return GpioLine(config.line, config.active_low) if config else None
