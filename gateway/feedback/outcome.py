"""What the worker at the door is told, in their language, once the tap is settled.

A Feedback output receives a TapOutcome only after the journal has committed whatever the
tap produced (docs/design.md, "Principles": durable before visible). Outputs must be quick
and must not raise; the pipeline shields itself from a failing output anyway. What each
outcome looks and sounds like on LEDs and buzzers is gateway.feedback.patterns; the outputs
themselves are gateway.feedback.outputs.
"""

from __future__ import annotations

import enum
import re
import unicodedata
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

import structlog

from gateway.models import Direction, Language


class OutcomeKind(enum.StrEnum):
    REGISTERED = "registered"
    REPEAT = "repeat"
    ALREADY_TODAY = "already-today"  # Checkinatwork: this person's presence today is registered
    UNKNOWN_BADGE = "unknown-badge"
    NOT_YET_VALID = "not-yet-valid"
    EXPIRED = "expired"
    DIRECTION_REQUIRED = "direction-required"
    CANNOT_STORE = "cannot-store"

    @property
    def positive(self) -> bool:
        """The worker may walk on: their tap is (or already was) registered."""
        return self in (OutcomeKind.REGISTERED, OutcomeKind.REPEAT, OutcomeKind.ALREADY_TODAY)


@dataclass(frozen=True, slots=True)
class TapOutcome:
    kind: OutcomeKind
    language: Language
    badge_uid: str
    reader: str
    local_time: datetime
    direction: Direction | None = None
    worker_name: str | None = None
    registration_id: uuid.UUID | None = None
    # Whether the ONSS can be reached at the time of the tap; None: not known yet, or this
    # box does not deliver.
    uplink_online: bool | None = None

    def message(self) -> str:
        return render(self)


class Feedback(Protocol):
    """Called on the tap's thread, once the tap is settled; return quickly, never raise."""

    def show(self, outcome: TapOutcome) -> None: ...


class Output(Feedback, Protocol):
    """An output the daemon built and owns: closed, once, when the daemon stops."""

    def close(self) -> None: ...


_DIRECTION_WORDS: dict[Language, dict[Direction, str]] = {
    Language.EN: {Direction.IN: "IN", Direction.OUT: "OUT", Direction.PRESENCE: "PRESENT"},
    Language.FR: {Direction.IN: "ENTRÉE", Direction.OUT: "SORTIE", Direction.PRESENCE: "PRÉSENT"},
    Language.NL: {Direction.IN: "IN", Direction.OUT: "UIT", Direction.PRESENCE: "AANWEZIG"},
    Language.DE: {Direction.IN: "EIN", Direction.OUT: "AUS", Direction.PRESENCE: "ANWESEND"},
}

_TEMPLATES: dict[Language, dict[OutcomeKind, str]] = {
    Language.EN: {
        OutcomeKind.REGISTERED: "{direction} {time} {name}",
        OutcomeKind.REPEAT: "Already registered {direction} at {time}",
        OutcomeKind.ALREADY_TODAY: "Already registered today at {time}",
        OutcomeKind.UNKNOWN_BADGE: "Unknown badge: not registered",
        OutcomeKind.NOT_YET_VALID: "Badge not valid yet: not registered",
        OutcomeKind.EXPIRED: "Badge expired: not registered",
        OutcomeKind.DIRECTION_REQUIRED: "Press IN or OUT, then tap again",
        OutcomeKind.CANNOT_STORE: "ERROR: not saved. Use the app and tell your employer",
    },
    Language.FR: {
        OutcomeKind.REGISTERED: "{direction} {time} {name}",
        OutcomeKind.REPEAT: "Déjà enregistré : {direction} à {time}",
        OutcomeKind.ALREADY_TODAY: "Déjà enregistré aujourd'hui à {time}",
        OutcomeKind.UNKNOWN_BADGE: "Badge inconnu : rien n'est enregistré",
        OutcomeKind.NOT_YET_VALID: "Badge pas encore valable : rien n'est enregistré",
        OutcomeKind.EXPIRED: "Badge expiré : rien n'est enregistré",
        OutcomeKind.DIRECTION_REQUIRED: "Appuyez sur ENTRÉE ou SORTIE, puis badgez",
        OutcomeKind.CANNOT_STORE: "ERREUR : non enregistré. Utilisez l'app et prévenez l'employeur",
    },
    Language.NL: {
        OutcomeKind.REGISTERED: "{direction} {time} {name}",
        OutcomeKind.REPEAT: "Al geregistreerd: {direction} om {time}",
        OutcomeKind.ALREADY_TODAY: "Vandaag al geregistreerd om {time}",
        OutcomeKind.UNKNOWN_BADGE: "Onbekende badge: niets geregistreerd",
        OutcomeKind.NOT_YET_VALID: "Badge nog niet geldig: niets geregistreerd",
        OutcomeKind.EXPIRED: "Badge vervallen: niets geregistreerd",
        OutcomeKind.DIRECTION_REQUIRED: "Druk op IN of UIT en badge opnieuw",
        OutcomeKind.CANNOT_STORE: "FOUT: niet opgeslagen. Gebruik de app en verwittig de werkgever",
    },
    Language.DE: {
        OutcomeKind.REGISTERED: "{direction} {time} {name}",
        OutcomeKind.REPEAT: "Bereits registriert: {direction} um {time}",
        OutcomeKind.ALREADY_TODAY: "Heute bereits registriert um {time}",
        OutcomeKind.UNKNOWN_BADGE: "Unbekannter Ausweis: nichts registriert",
        OutcomeKind.NOT_YET_VALID: "Ausweis noch nicht gültig: nichts registriert",
        OutcomeKind.EXPIRED: "Ausweis abgelaufen: nichts registriert",
        OutcomeKind.DIRECTION_REQUIRED: "EIN oder AUS drücken, dann erneut badgen",
        OutcomeKind.CANNOT_STORE: (
            "FEHLER: nicht gespeichert. App benutzen, Arbeitgeber informieren"
        ),
    },
}


# The tap is kept on the box, though the ONSS has not acknowledged it yet.
_OFFLINE_SAVED: dict[Language, str] = {
    Language.EN: "Offline — saved",
    Language.FR: "Hors ligne — enregistré",
    Language.NL: "Offline — opgeslagen",
    Language.DE: "Offline — gespeichert",
}


# Terminal escape sequences, in their 7-bit (ESC ...) and 8-bit (C1) forms: CSI with its
# parameters; OSC, DCS, SOS, PM and APC up to their terminator (BEL or ST) or the end; any
# other ESC with its intermediate and final bytes. Removed whole: a bare ESC removed would
# leave "[31m" on the screen.
_ESCAPE_SEQUENCE = re.compile(
    r"(?:\x1b\[|\x9b)[0-?]*[ -/]*[@-~]?"
    r"|(?:\x1b[\]PX^_]|[\x90\x98\x9d\x9e\x9f])[^\x07\x1b\x9c]*(?:\x07|\x1b\\|\x9c)?"
    r"|\x1b[ -/]*[0-~]?"
)
# Control (C0, DEL, C1), format (bidi overrides and isolates, zero-width) and surrogate
# code points; the whitespace among them becomes a space, the rest goes.
_UNSHOWN = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})


def printable(text: str) -> str:
    """`text` (a worker's or a reader's name: input from a file or a socket) fit to show on a
    display, a terminal or a log line: no escape sequence, control or bidi character; runs of
    whitespace as one space."""
    if text.isprintable() and "  " not in text:
        return text.strip()
    text = _ESCAPE_SEQUENCE.sub("", text)
    kept = (
        (" " if char.isspace() else "") if unicodedata.category(char) in _UNSHOWN else char
        for char in text
    )
    return " ".join("".join(kept).split())


def render(outcome: TapOutcome) -> str:
    direction = _DIRECTION_WORDS[outcome.language][outcome.direction] if outcome.direction else ""
    return (
        _TEMPLATES[outcome.language][outcome.kind]
        .format(
            direction=direction,
            time=outcome.local_time.strftime("%H:%M"),
            name=printable(outcome.worker_name or ""),
        )
        .strip()
    )


def display_lines(outcome: TapOutcome) -> list[str]:
    """What a text display shows: the message, whose badge it was, the offline notice."""
    lines = [render(outcome)]
    name = printable(outcome.worker_name or "")
    if name and outcome.kind is not OutcomeKind.REGISTERED:  # not in the message
        lines.append(name)
    if outcome.kind.positive and outcome.uplink_online is False:
        lines.append(_OFFLINE_SAVED[outcome.language])
    return lines


class LogFeedback:
    """The console output: one log line per tap, the worker's message included."""

    def __init__(self) -> None:
        self._log = structlog.get_logger("feedback")

    def show(self, outcome: TapOutcome) -> None:
        log = self._log.warning if outcome.kind is OutcomeKind.CANNOT_STORE else self._log.info
        log(
            outcome.message(),
            outcome=outcome.kind.value,
            reader=printable(outcome.reader),
            badge=printable(outcome.badge_uid),
            registration=str(outcome.registration_id) if outcome.registration_id else None,
        )

    def close(self) -> None:
        pass
