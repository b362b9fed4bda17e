"""A line display on a terminal: the Linux console (/dev/tty1), a serial LCD's tty, or a file.

On a terminal each screen replaces the previous one (home, clear, one line per row, ANSI
colour optional); anything else (a file, a FIFO read by a display program) gets each
screen as plain lines. The device is opened non-blocking: a terminal nobody reads (a
stopped serial LCD) drops a screen rather than hang its output, since a late screen would
describe the wrong worker anyway.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import structlog

log = structlog.get_logger("drivers")

_CLEAR_SCREEN = "\x1b[H\x1b[2J"
_RESET = "\x1b[0m"
_ANSI_COLOURS = {"green": "\x1b[1;32m", "amber": "\x1b[1;33m", "red": "\x1b[1;31m"}
_MAX_WRITES = 64  # a screen is a few hundred bytes: this many partial writes is a stuck device


class TerminalDisplay:
    def __init__(self, fd: int, *, colour: bool) -> None:
        self._fd = fd
        self._terminal = os.isatty(fd)
        self._colour = colour and self._terminal

    @classmethod
    def open(cls, path: Path, *, colour: bool = True) -> TerminalDisplay:
        """Open an existing device or file (OSError otherwise) and clear it."""
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_NOCTTY | os.O_NONBLOCK)
        display = cls(fd, colour=colour)
        display.clear()
        return display

    def show(self, lines: Sequence[str], colour: str | None = None) -> None:
        if self._terminal:
            rows = (self._row(index, line, colour) for index, line in enumerate(lines))
            self._write(_CLEAR_SCREEN + "".join(rows))
        else:
            self._write("".join(f"{line}\n" for line in lines))

    def clear(self) -> None:
        if self._terminal:
            self._write(_CLEAR_SCREEN)

    def close(self) -> None:
        try:
            self.clear()
        finally:
            os.close(self._fd)

    def _row(self, index: int, text: str, colour: str | None) -> str:
        start = f"\x1b[{index + 1};1H\x1b[2K"
        paint = _ANSI_COLOURS.get(colour or "", "") if self._colour else ""
        return f"{start}{paint}{text}{_RESET if paint else ''}"

    def _write(self, text: str) -> None:
        data = memoryview(text.encode())
        for _ in range(_MAX_WRITES):
            try:
                data = data[os.write(self._fd, data) :]
            except BlockingIOError:
                break
            if not data:
                return
        log.warning("display not keeping up: screen dropped", bytes_left=len(data))
