"""What the worker at the door sees and hears after a tap.

`outcome` holds the tap's outcome and the words shown for it; `patterns` the LED colours
and buzzer patterns for each outcome; `outputs` the devices that show them (a log line,
GPIO LEDs and buzzer, a text display, an ACR122U's own LED and buzzer).

May import: models, config, drivers. Nothing above it.
"""

from gateway.feedback.outcome import (
    Feedback,
    LogFeedback,
    OutcomeKind,
    Output,
    TapOutcome,
    display_lines,
)
from gateway.feedback.outputs import build_outputs, close_outputs

__all__ = [
    "Feedback",
    "LogFeedback",
    "OutcomeKind",
    "Output",
    "TapOutcome",
    "build_outputs",
    "close_outputs",
    "display_lines",
]
