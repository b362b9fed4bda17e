"""Keystrokes -> badge uids: what a keyboard-wedge reader types, decoded.

A wedge reader types the badge number and Enter, each key a down/up pair a few
milliseconds apart. Only key-downs count (autorepeat and key-ups are ignored), modifiers
are ignored (a reader set to a Belgian AZERTY layout holds Shift for the top-row digits),
and anything else ends the frame as bad: an unexpected key, too many characters, Enter
too early, or keys typed too slowly to come from a reader (a person at a keyboard). After
an unexpected key or an overflow the rest of the frame, up to its Enter, is dropped, so a
garbled badge never turns into a shorter, wrong uid; so is the frame in progress when the
kernel reports that it dropped events (SYN_DROPPED: its buffer overflowed).
"""

from __future__ import annotations

from typing import Final, Literal

from evdev import InputEvent, ecodes

from drivers.base import BadFrame

KEY_DOWN: Final = 1
MIN_UID_LENGTH: Final = 4
MAX_UID_LENGTH: Final = 32
# Wedge readers type a key every 2 to 20 ms; a person typing digits rarely keeps every gap
# under 100 ms for a whole badge number.
DEFAULT_MAX_KEY_GAP_SECONDS: Final = 0.1

DIGITS: Final = {
    **{ecodes.ecodes[f"KEY_{digit}"]: str(digit) for digit in range(10)},
    **{ecodes.ecodes[f"KEY_KP{digit}"]: str(digit) for digit in range(10)},
}
HEX_LETTERS: Final = {ecodes.ecodes[f"KEY_{letter}"]: letter for letter in "ABCDEF"}
# A reader set to AZERTY (Belgium, France) types A with the key QWERTY calls Q; B to F and
# the digits (with Shift, which is ignored) are on the same keys.
AZERTY_HEX_LETTERS: Final = {
    **{code: letter for code, letter in HEX_LETTERS.items() if letter != "A"},
    ecodes.KEY_Q: "A",
}
Layout = Literal["qwerty", "azerty"]
ENTER_KEYS: Final = frozenset({ecodes.KEY_ENTER, ecodes.KEY_KPENTER})
MODIFIERS: Final = frozenset(
    {
        ecodes.KEY_LEFTSHIFT,
        ecodes.KEY_RIGHTSHIFT,
        ecodes.KEY_LEFTCTRL,
        ecodes.KEY_RIGHTCTRL,
        ecodes.KEY_LEFTALT,
        ecodes.KEY_RIGHTALT,
        ecodes.KEY_LEFTMETA,
        ecodes.KEY_RIGHTMETA,
        ecodes.KEY_CAPSLOCK,
        ecodes.KEY_NUMLOCK,
    }
)


def event_time_ns(event: InputEvent) -> int:
    return event.sec * 1_000_000_000 + event.usec * 1_000


def key_name(code: int) -> str:
    name = ecodes.KEY.get(code, f"key {code}")
    return name if isinstance(name, str) else "/".join(name)


class KeystrokeParser:
    """Feed it every event read from the device; it answers a uid when Enter ends a badge."""

    def __init__(
        self,
        uid_format: Literal["decimal", "hex"] = "decimal",
        max_key_gap_seconds: float = DEFAULT_MAX_KEY_GAP_SECONDS,
        layout: Layout = "qwerty",
    ) -> None:
        letters = AZERTY_HEX_LETTERS if layout == "azerty" else HEX_LETTERS
        self._characters = {**DIGITS, **letters} if uid_format == "hex" else DIGITS
        self._max_gap_ns = int(max_key_gap_seconds * 1e9)
        self._typed: list[str] = []
        self._discarding = False
        self._last_press_ns: int | None = None

    def feed(self, event: InputEvent) -> str | BadFrame | None:
        if _reports_lost_events(event):
            self._last_press_ns = event_time_ns(event)
            return self._discard("the kernel dropped events")
        if not _is_counted_press(event):
            return None
        abandoned = self._drop_stale_frame(event_time_ns(event))
        outcome = self._press(event.code)
        return BadFrame("keys typed too slowly for a badge reader") if abandoned else outcome

    def _drop_stale_frame(self, now_ns: int) -> bool:
        """Forget a frame whose last key is too old; True if it held characters."""
        last, self._last_press_ns = self._last_press_ns, now_ns
        if last is None or now_ns - last <= self._max_gap_ns:
            return False
        abandoned = bool(self._typed)
        self._restart()
        return abandoned

    def _press(self, code: int) -> str | BadFrame | None:
        if code in ENTER_KEYS:
            return self._end_frame()
        if self._discarding:
            return None
        character = self._characters.get(code)
        if character is None:
            return self._discard(f"unexpected key {key_name(code)}")
        if len(self._typed) == MAX_UID_LENGTH:
            return self._discard(f"more than {MAX_UID_LENGTH} characters before Enter")
        self._typed.append(character)
        return None

    def _end_frame(self) -> str | BadFrame | None:
        typed, discarding = "".join(self._typed), self._discarding
        self._restart()
        if discarding:
            return None  # counted when the frame went bad
        if len(typed) < MIN_UID_LENGTH:
            return BadFrame(f"Enter after {len(typed)} characters")
        return typed

    def _discard(self, reason: str) -> BadFrame:
        self._typed.clear()
        self._discarding = True
        return BadFrame(reason)

    def _restart(self) -> None:
        self._typed.clear()
        self._discarding = False


def _reports_lost_events(event: InputEvent) -> bool:
    return event.type == ecodes.EV_SYN and event.code == ecodes.SYN_DROPPED


def _is_counted_press(event: InputEvent) -> bool:
    return event.type == ecodes.EV_KEY and event.value == KEY_DOWN and event.code not in MODIFIERS
