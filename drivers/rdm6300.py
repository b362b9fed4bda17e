"""RDM6300 / EM4100 125 kHz modules: 9600 8N1, one frame per card read, repeated while the
card lies on the module.

A frame is STX (0x02), 10 ASCII hex digits (a version byte and the 4-byte card id), 2 ASCII
hex digits of checksum (the XOR of those 5 bytes), ETX (0x03). Digits never include an STX,
so whatever goes wrong (a bad checksum, a frame cut short, lost bytes, line noise) the
parser drops what it has and starts again at the next STX, counting one bad frame.
"""

from __future__ import annotations

from functools import reduce
from operator import xor
from typing import Literal

from drivers.base import BadFrame
from drivers.serial_port import SerialReader

UidFormat = Literal["hex", "decimal"]

STX = 0x02
ETX = 0x03
DIGITS = 12  # 10 data + 2 checksum
HEX_DIGITS = frozenset(b"0123456789ABCDEFabcdef")


def uid_of(data: bytes, uid_format: UidFormat) -> str:
    """5 data bytes as the badge file spells them: all of them in hex, or the card id (the
    last 4) in decimal, zero-padded to the 10 digits printed on the card."""
    if uid_format == "hex":
        return data.hex().upper()
    return f"{int.from_bytes(data[1:], 'big'):010d}"


def encode_frame(data: bytes) -> bytes:
    """The frame a module sends for 5 data bytes (for tests and benchmarks)."""
    checksum = reduce(xor, data, 0)
    return bytes([STX]) + f"{data.hex()}{checksum:02x}".upper().encode() + bytes([ETX])


class Rdm6300Parser:
    """Incremental: feed bytes in any chunking, get the uids of the valid frames completed."""

    def __init__(self, uid_format: UidFormat = "hex") -> None:
        self._uid_format = uid_format
        self._digits = bytearray()
        self._in_frame = False
        self._in_noise = False  # bytes outside a frame: one bad frame per run of them

    def feed(self, data: bytes) -> list[str | BadFrame]:
        items = (self._step(byte) for byte in data)
        return [item for item in items if item is not None]

    def _step(self, byte: int) -> str | BadFrame | None:
        if byte == STX:
            return self._start_frame()
        if not self._in_frame:
            return self._noise(byte)
        if len(self._digits) < DIGITS:
            if byte in HEX_DIGITS:
                self._digits.append(byte)
                return None
            return self._drop("not a hex digit", byte)
        if byte != ETX:
            return self._drop("no ETX after 12 digits", byte)
        self._in_frame = False
        return self._decode(bytes(self._digits))

    def _start_frame(self) -> BadFrame | None:
        cut_short = self._in_frame  # an STX inside a frame: the frame lost its end
        dropped = bytes([STX, *self._digits])
        self._in_frame, self._in_noise = True, False
        self._digits.clear()
        return BadFrame("frame cut short by the next STX", dropped) if cut_short else None

    def _noise(self, byte: int) -> BadFrame | None:
        if self._in_noise:
            return None
        self._in_noise = True
        return BadFrame("bytes outside a frame", bytes([byte]))

    def _drop(self, reason: str, byte: int) -> BadFrame:
        self._in_frame, self._in_noise = False, True  # the rest, up to the next STX, is noise
        return BadFrame(reason, bytes([STX, *self._digits, byte]))

    def _decode(self, digits: bytes) -> str | BadFrame:
        data = bytes.fromhex(digits[:10].decode("ascii"))
        if reduce(xor, data, 0) != int(digits[10:], 16):
            return BadFrame("bad checksum", bytes([STX, *digits, ETX]))
        return uid_of(data, self._uid_format)


class Rdm6300Reader(SerialReader):
    technology = "em4100"
