"""The [[feedback]] tables: one model per output, chosen by the table's `output` key."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, model_validator

from gateway.config.sections import AbsolutePath, NonEmptyStr, Section


class LogOutputConfig(Section):
    """One log line per tap, with the worker's message (the console; journald under systemd)."""

    output: Literal["log"]


class GpioLineConfig(Section):
    line: int = Field(ge=0)  # the line's offset on the chip (the BCM number on a Raspberry Pi)
    active_low: bool = False  # on when the pin is low (an LED wired from 3.3 V to the pin)


class GpioOutputConfig(Section):
    """LEDs and a buzzer on GPIO lines, through libgpiod; each optional, at least one."""

    output: Literal["gpio"]
    chip: NonEmptyStr = "/dev/gpiochip0"
    green_led: GpioLineConfig | None = None
    red_led: GpioLineConfig | None = None
    buzzer: GpioLineConfig | None = None

    @model_validator(mode="after")
    def _one_line_each(self) -> GpioOutputConfig:
        roles = {"green_led": self.green_led, "red_led": self.red_led, "buzzer": self.buzzer}
        by_offset: dict[int, list[str]] = {}
        for role, line in roles.items():
            if line is not None:
                by_offset.setdefault(line.line, []).append(role)
        if not by_offset:
            raise ValueError("give at least one of green_led, red_led or buzzer")
        for offset, sharing in by_offset.items():
            if len(sharing) > 1:
                raise ValueError(f"{' and '.join(sharing)} are both line {offset}")
        return self


class DisplayOutputConfig(Section):
    """A text display: a terminal (the console, a serial LCD's tty), or a file or FIFO."""

    output: Literal["display"]
    device: AbsolutePath = Path("/dev/tty1")
    colour: bool = True  # ANSI colours, on a terminal only
    # Cleared this long after a tap, so that the next worker does not see who came before.
    clear_after_seconds: float = Field(default=10.0, gt=0, le=3600)


class Acr122uOutputConfig(Section):
    """An ACR122U's own LED and buzzer, played by the nfc reader that drives it.

    A green blink and one beep for a tap that counts, red blinks and three beeps otherwise.
    """

    output: Literal["acr122u"]
    reader: NonEmptyStr  # the name of an nfc reader in [[readers]] (other devices: no-op)


FeedbackConfig = Annotated[
    LogOutputConfig | GpioOutputConfig | DisplayOutputConfig | Acr122uOutputConfig,
    Field(discriminator="output"),
]
