"""What the serial drivers share: the port, the read loop, one read per card presentation,
and the list of this machine's serial ports (`badge-gateway readers list`).

A serial reader is a `SerialReader` with a parser: bytes in, uids and bad frames out. The
port is a device path or any pyserial URL (`loop://`, `socket://host:port`, `rfc2217://`),
opened exclusively where the platform can. A read error, a hang-up (EIO once a USB adapter
or a pty peer is gone) or a vanished device ends the session: the `DeviceReader` base
closes the port and reopens it with backoff.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

import serial
import structlog
from serial.tools import list_ports
from serial.tools.list_ports_common import ListPortInfo

from drivers.base import BadFrame, DetectedDevice
from drivers.device import Backoff, DeviceGoneError, DeviceReader, boottime_ns

log = structlog.get_logger("drivers")

DEFAULT_PRESENCE_GAP = 0.5  # seconds; see the configuration's presence_gap_seconds
STABLE_NAMES = Path("/dev/serial/by-id")  # udev's names that survive a replug
LOGGED_BYTES = 64
# A port does not tell which protocol the reader behind it speaks: the technician chooses.
EITHER_DRIVER = "rdm6300/serial-line"


class FrameParser(Protocol):
    def feed(self, data: bytes) -> list[str | BadFrame]:
        """Consume bytes in any chunking; return the uids and bad frames they completed."""


class Presence:
    """One read per card presentation, from a reader that repeats itself.

    A uid is new unless the same uid was seen less than `gap` before. While the reader hands
    a read to the daemon it is not listening, so frames queued meanwhile arrive together
    afterwards: `still_present_at` counts that deaf time as presence, or a slow tap (an SD
    card's fsync) would turn one presentation into two.
    """

    def __init__(self, gap_seconds: float) -> None:
        self._gap_ns = int(gap_seconds * 1e9)
        self._last_seen: dict[str, int] = {}

    def is_new(self, uid: str, seen_ns: int) -> bool:
        self._last_seen = {u: t for u, t in self._last_seen.items() if seen_ns - t < self._gap_ns}
        new = uid not in self._last_seen
        self._last_seen[uid] = seen_ns
        return new

    def still_present_at(self, now_ns: int) -> None:
        self._last_seen = dict.fromkeys(self._last_seen, now_ns)


def open_port(port: str, baudrate: int, timeout: float) -> serial.Serial:
    """A device path or pyserial URL, 8N1, reads returning after at most `timeout`."""
    return serial.serial_for_url(
        port,
        baudrate=baudrate,
        bytesize=serial.EIGHTBITS,
        parity=serial.PARITY_NONE,
        stopbits=serial.STOPBITS_ONE,
        timeout=timeout,
        exclusive=True,  # another process reading the same reader would steal frames
    )


def read_available(port: serial.Serial) -> bytes:
    """Wait up to the port's timeout for a byte, then take whatever else has arrived."""
    try:
        return port.read(port.in_waiting or 1)
    except OSError as exc:  # SerialException is one: EIO after a hang-up, device removed
        raise DeviceGoneError(f"{port.port}: {exc}") from exc


class SerialReader(DeviceReader[serial.Serial]):
    """A reader on a serial port whose bytes a FrameParser turns into uids; a driver
    subclasses it for its technology and its parser."""

    def __init__(
        self,
        name: str,
        *,
        port: str,
        parser: Callable[[], FrameParser],
        baudrate: int = 9600,
        presence_gap: float = DEFAULT_PRESENCE_GAP,
        backoff: Backoff | None = None,
        failed_after: float = 60.0,
    ) -> None:
        super().__init__(name, backoff=backoff, failed_after=failed_after)
        self.port = port
        self.baudrate = baudrate
        self.new_parser = parser  # a fresh one for each opened port
        # Kept across reconnects: a card lying on a reader that glitched is not a new tap.
        self._presence = Presence(presence_gap)

    def open(self) -> serial.Serial:
        return open_port(self.port, self.baudrate, timeout=self.poll_interval)

    def read_until_gone(self, handle: serial.Serial) -> None:
        parser = self.new_parser()
        while not self.stopping.is_set():
            data = read_available(handle)
            arrived_ns = boottime_ns()  # the bytes just read arrived by this instant
            for item in parser.feed(data):
                self._take(item, arrived_ns)

    def close(self, handle: serial.Serial) -> None:
        handle.close()

    def _take(self, item: str | BadFrame, arrived_ns: int) -> None:
        if isinstance(item, BadFrame):
            self.count_bad_frame()
            log.debug(
                "bad frame dropped",
                reader=self.name,
                reason=item.reason,
                data=item.data[:LOGGED_BYTES].hex(" "),
            )
        elif self._presence.is_new(item, arrived_ns):
            self.emit(item, arrived_ns)
            self._presence.still_present_at(boottime_ns())


def detect() -> list[DetectedDevice]:
    """This machine's serial ports, named by their stable udev path where there is one."""
    stable = _stable_names()
    return [
        DetectedDevice(EITHER_DRIVER, stable.get(info.device, info.device), _describe(info))
        for info in sorted(list_ports.comports(), key=lambda info: info.device)
    ]


def _stable_names() -> dict[str, str]:
    try:
        links = list(STABLE_NAMES.iterdir())
    except OSError:  # no USB serial device plugged in: udev made no directory
        return {}
    return {os.path.realpath(link): str(link) for link in sorted(links)}


def _describe(info: ListPortInfo) -> str:
    description = info.description if info.description not in ("", "n/a") else "serial port"
    return f"{description} ({info.device})"
