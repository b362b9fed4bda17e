"""What each tap outcome looks and sounds like: one vocabulary for every LED, buzzer and display.

The worker must know at once what happened without reading anything, so each signal has
its own colour, light rhythm and beep rhythm, and any one of the three tells the signals
apart (a colour-blind worker, a LED out of sight, a buzzer in a noisy hall). The patterns
are data, defined once here; each output plays what its hardware has of them.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from gateway.feedback.outcome import OutcomeKind, TapOutcome
from gateway.models import Direction


class Signal(enum.StrEnum):
    OK_IN = "ok-in"
    OK_OUT = "ok-out"
    REPEAT = "repeat"  # already registered: nothing new, and nothing wrong
    REFUSED = "refused"  # unknown, not yet valid, expired badge; IN/OUT key needed
    CANNOT_STORE = "cannot-store"  # NOT registered: the worker must use the app


class Colour(enum.StrEnum):
    GREEN = "green"
    AMBER = "amber"
    RED = "red"

    @property
    def leds(self) -> tuple[bool, bool]:
        """(green, red): a two-LED indicator shows amber with both lit."""
        return self is not Colour.RED, self is not Colour.GREEN


@dataclass(frozen=True, slots=True)
class Step:
    ms: int
    light: bool = False  # the pattern's colour, or dark
    beep: bool = False


@dataclass(frozen=True, slots=True)
class Pattern:
    """Steps played in order from the tap; everything is off after the last one."""

    colour: Colour
    steps: tuple[Step, ...]

    @property
    def duration_ms(self) -> int:
        return sum(step.ms for step in self.steps)


def _flashes(count: int, on_ms: int, off_ms: int) -> tuple[Step, ...]:
    """Light and buzzer on together, `count` times, dark and silent in between."""
    flash = (Step(on_ms, light=True, beep=True), Step(off_ms))
    return (flash * count)[:-1]  # the pattern goes on from the last flash


PATTERNS: Mapping[Signal, Pattern] = MappingProxyType(
    {
        # One short beep, steady green.
        Signal.OK_IN: Pattern(
            Colour.GREEN, (Step(100, light=True, beep=True), Step(900, light=True))
        ),
        # Two short beeps, green flashing with them, then steady.
        Signal.OK_OUT: Pattern(Colour.GREEN, (*_flashes(2, 100, 100), Step(700, light=True))),
        # One medium beep, steady amber.
        Signal.REPEAT: Pattern(
            Colour.AMBER, (Step(300, light=True, beep=True), Step(700, light=True))
        ),
        # One long beep, steady red.
        Signal.REFUSED: Pattern(
            Colour.RED, (Step(800, light=True, beep=True), Step(700, light=True))
        ),
        # Three long beeps with red flashes, then red for longer: unmistakable.
        Signal.CANNOT_STORE: Pattern(Colour.RED, (*_flashes(3, 400, 150), Step(1500, light=True))),
    }
)


def signal_for(outcome: TapOutcome) -> Signal:
    match outcome.kind:
        case OutcomeKind.REGISTERED:
            return Signal.OK_OUT if outcome.direction is Direction.OUT else Signal.OK_IN
        case OutcomeKind.REPEAT | OutcomeKind.ALREADY_TODAY:
            return Signal.REPEAT
        case OutcomeKind.CANNOT_STORE:
            return Signal.CANNOT_STORE
        case _:
            return Signal.REFUSED


def pattern_for(outcome: TapOutcome) -> Pattern:
    return PATTERNS[signal_for(outcome)]
