"""A green LED, a red LED and a buzzer on GPIO lines, through libgpiod v2 (`gpiod`).

The lines are requested once, as outputs starting off, and held until close: no other
program can take them meanwhile, and each change of all of them is one ioctl. Active-low
wiring (an LED between 3.3 V and the pin) is set on the request, so the kernel inverts
it: this module speaks only of on and off.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

import gpiod
from gpiod.line import Direction, Value

CONSUMER = "badge-gateway"  # shown by `gpioinfo` next to the lines we hold


@dataclass(frozen=True, slots=True)
class GpioLine:
    offset: int
    active_low: bool = False


class LineRequest(Protocol):
    """The part of gpiod.LineRequest used here."""

    def set_values(self, values: dict[int | str, Value]) -> None: ...

    def release(self) -> None: ...


LineConfig = dict[Iterable[int | str] | int | str, gpiod.LineSettings | None]


class RequestLines(Protocol):
    """gpiod.request_lines, or a stand-in for it in tests."""

    def __call__(
        self, path: str, config: LineConfig, consumer: str | None = None
    ) -> LineRequest: ...


class GpioIndicator:
    """The lines of one chip, each optional; open with `open_indicator`."""

    def __init__(
        self, request: LineRequest, green: int | None, red: int | None, buzzer: int | None
    ) -> None:
        self._request = request
        self._offsets = (green, red, buzzer)

    def set(self, *, green: bool, red: bool, buzzer: bool) -> None:
        states = zip(self._offsets, (green, red, buzzer), strict=True)
        self._request.set_values(
            {offset: _value(on) for offset, on in states if offset is not None}
        )

    def close(self) -> None:
        try:
            self.set(green=False, red=False, buzzer=False)
        finally:
            self._request.release()


def open_indicator(
    chip: str,
    *,
    green: GpioLine | None = None,
    red: GpioLine | None = None,
    buzzer: GpioLine | None = None,
    request_lines: RequestLines = gpiod.request_lines,
) -> GpioIndicator:
    """Request the given lines of `chip` as outputs, off; OSError if the chip cannot be used."""
    lines = [line for line in (green, red, buzzer) if line is not None]
    config: LineConfig = {line.offset: _output_settings(line) for line in lines}
    try:
        request = request_lines(chip, config, consumer=CONSUMER)
    except OSError as error:  # libgpiod's errors do not name the chip
        raise OSError(error.errno, error.strerror, chip) from error
    return GpioIndicator(request, _offset(green), _offset(red), _offset(buzzer))


def _offset(line: GpioLine | None) -> int | None:
    return line.offset if line else None


def _output_settings(line: GpioLine) -> gpiod.LineSettings:
    return gpiod.LineSettings(
        direction=Direction.OUTPUT, active_low=line.active_low, output_value=Value.INACTIVE
    )


def _value(on: bool) -> Value:
    return Value.ACTIVE if on else Value.INACTIVE
