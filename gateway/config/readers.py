"""The [[readers]] tables: one model per driver, chosen by the table's `driver` key."""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import AfterValidator, Field, field_validator

from gateway.config.sections import AbsolutePath, NonEmptyStr, Section
from gateway.identifiers import check_reader_name


class SimulatedTap(Section):
    uid: NonEmptyStr
    after_seconds: float = Field(default=1.0, ge=0)
    direction: Literal["IN", "OUT"] | None = None


class _ReaderBase(Section):
    name: Annotated[NonEmptyStr, AfterValidator(check_reader_name)]


class SimulatedReaderConfig(_ReaderBase):
    """Replays a fixed list of taps, each after_seconds after the previous one."""

    driver: Literal["simulated"]
    taps: list[SimulatedTap] = Field(default_factory=list)
    start_delay_seconds: float = Field(default=1.0, ge=0)


class _DeviceReaderBase(_ReaderBase):
    """What every hardware reader shares: how it reconnects and when it counts as failed."""

    # Down (unplugged, not answering) for this long: reported as failed, an outage cause.
    failed_after_seconds: float = Field(default=60.0, gt=0, le=86_400)
    reconnect_max_seconds: float = Field(default=5.0, gt=0, le=300)


class _CardPresenceReaderBase(_DeviceReaderBase):
    """A reader that keeps reporting a card while it lies there (NFC polls, serial modules
    repeating their frame): one read per presentation, however long the card stays."""

    # Unseen for this long, the card counts as removed, and seen again it is a new
    # presentation (arduino12/rdm6300 uses 300 ms; 0.5 s leaves margin for a busy Pi and
    # a poll missing a card at the edge of the field). A quicker re-tap meets the
    # attendance debounce anyway.
    presence_gap_seconds: float = Field(default=0.5, gt=0, le=10)


class NfcReaderConfig(_CardPresenceReaderBase):
    """An nfcpy device: PN532, PN533, ACR122U (drivers/nfc.py says what nfcpy needs)."""

    driver: Literal["nfc"]
    # nfcpy's device path: "usb", "usb:072f:2200", "tty:AMA0:pn532", "tty:USB0", "udp:host:port"
    path: NonEmptyStr = "usb"
    # The card technologies each poll looks for, in this order (nfcpy's names): ISO 14443A
    # (MIFARE, DESFire: most badges), ISO 14443B, FeliCa. Fewer make each poll quicker.
    technologies: list[Literal["106A", "106B", "212F"]] = Field(
        default=["106A", "106B", "212F"], min_length=1
    )


class Rdm6300ReaderConfig(_CardPresenceReaderBase):
    """A 125 kHz EM4100 module speaking RDM6300 frames (STX, 10 hex, 2 hex checksum, ETX)."""

    driver: Literal["rdm6300"]
    port: NonEmptyStr  # a device path (/dev/serial0) or a pyserial URL
    baudrate: int = Field(default=9600, gt=0)
    # "hex": all 5 bytes as 10 upper-case hex digits; "decimal": the 4-byte card id as the
    # 10-digit decimal number printed on most cards.
    uid_format: Literal["hex", "decimal"] = "hex"


class SerialLineReaderConfig(_CardPresenceReaderBase):
    """A reader that sends one badge per line; `pattern` extracts the uid (group "uid")."""

    driver: Literal["serial-line"]
    port: NonEmptyStr
    baudrate: int = Field(default=9600, gt=0)
    pattern: NonEmptyStr = r"(?P<uid>[0-9A-Fa-f]{4,32})"

    @field_validator("pattern")
    @classmethod
    def _compiles(cls, pattern: str) -> str:
        try:
            re.compile(pattern)
        except re.error as exc:
            raise ValueError(f"not a regular expression: {exc}") from None
        return pattern


class KeyboardReaderConfig(_DeviceReaderBase):
    """A USB reader that types the badge number and Enter (keyboard wedge), via evdev."""

    driver: Literal["keyboard"]
    device: AbsolutePath  # a stable path: /dev/input/by-id/usb-...-event-kbd
    uid_format: Literal["decimal", "hex"] = "decimal"
    # The keyboard layout the reader is set to type for: only hex uids care ("azerty": A is
    # the key QWERTY calls Q; digits need no setting).
    layout: Literal["qwerty", "azerty"] = "qwerty"
    # Keys further apart than this end the badge as bad: a reader types every 2-20 ms, a
    # person much slower, so typing on a keyboard never becomes a badge. Raise it only for
    # a slow reader (Bluetooth, or one set to an inter-character delay).
    max_key_gap_seconds: float = Field(default=0.1, gt=0, le=2)


ReaderConfig = Annotated[
    SimulatedReaderConfig
    | NfcReaderConfig
    | Rdm6300ReaderConfig
    | SerialLineReaderConfig
    | KeyboardReaderConfig,
    Field(discriminator="driver"),
]
