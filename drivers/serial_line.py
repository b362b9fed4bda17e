"""Readers that send one badge per line (CR, LF or CRLF), such as many USB and RS-232
125 kHz and 13.56 MHz readers in "serial" mode: ASCII hex or decimal, with whatever prefix
or suffix the model adds. A regular expression picks the uid out of each line: its group
"uid", or the whole match if it has no such group.

Most of these readers send one line per presentation; some repeat it while the card is
present. Both get one read per presentation from the same rule as the RDM6300: an identical
uid again within the presence gap is the same presentation (a worker cannot lift and
present a card again that fast, and the attendance debounce would refuse it anyway).
"""

from __future__ import annotations

import re

from drivers.base import BadFrame
from drivers.serial_port import SerialReader

DEFAULT_PATTERN = r"(?P<uid>[0-9A-Fa-f]{4,32})"
MAX_LINE_BYTES = 256  # far above any badge line; a longer one is noise or a wrong baudrate
LINE_END = re.compile(rb"[\r\n]")  # CRLF ends a line and then an empty one, ignored


class LineParser:
    """Incremental: feed bytes in any chunking, get the uid of each complete line."""

    def __init__(self, pattern: str | re.Pattern[str] = DEFAULT_PATTERN) -> None:
        self._pattern = re.compile(pattern)
        self._group: int | str = "uid" if "uid" in self._pattern.groupindex else 0
        self._line = bytearray()
        self._too_long = False

    def feed(self, data: bytes) -> list[str | BadFrame]:
        *complete, rest = LINE_END.split(data)
        items: list[str | BadFrame | None] = []
        for piece in complete:
            items.append(self._add(piece))
            items.append(self._end_line())
        items.append(self._add(rest))
        return [item for item in items if item is not None]

    def _add(self, piece: bytes) -> BadFrame | None:
        if self._too_long:
            return None
        if len(self._line) + len(piece) <= MAX_LINE_BYTES:
            self._line += piece
            return None
        # Counted at once, not at the end of the line, which a wrong baudrate may never send.
        self._too_long = True
        dropped = bytes(self._line + piece)
        self._line.clear()
        return BadFrame(f"line longer than {MAX_LINE_BYTES} bytes", dropped)

    def _end_line(self) -> str | BadFrame | None:
        line = bytes(self._line)
        self._line.clear()
        if self._too_long:
            self._too_long = False
            return None
        if not line.strip():
            return None
        return self._uid_in(line)

    def _uid_in(self, line: bytes) -> str | BadFrame:
        if not line.isascii():
            return BadFrame("not ASCII", line)
        found = self._pattern.search(line.decode("ascii"))
        uid = (found.group(self._group) or "").strip() if found else ""
        if not uid:
            return BadFrame("no uid in the line", line)
        return uid.upper()


class SerialLineReader(SerialReader):
    technology = "serial-line"
