"""Keyboard-wedge readers: USB readers that type the badge number and Enter, read via evdev.

The reader is named by its stable link, /dev/input/by-id/usb-...-event-kbd, resolved
again at every open: a replugged reader comes back as another /dev/input/eventN. The
device is grabbed (EVIOCGRAB) so that its digits never reach a console, a getty or a
desktop, and its clock is set to CLOCK_BOOTTIME (EVIOCSCLOCKID): every event then
carries the kernel's CLOCK_BOOTTIME time of the key, so a badge is stamped with the time
its Enter was typed and the parser's typing-speed check never sees a wall-clock step.
"""

from __future__ import annotations

import contextlib
import fcntl
import select
import struct
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Final, Literal, Protocol

import evdev
import structlog
from evdev import InputEvent

from drivers.base import BadFrame, DetectedDevice
from drivers.device import Backoff, DeviceGoneError, DeviceReader
from drivers.keystrokes import (
    DEFAULT_MAX_KEY_GAP_SECONDS,
    KeystrokeParser,
    Layout,
    event_time_ns,
)

log = structlog.get_logger("drivers")

BY_ID: Final = Path("/dev/input/by-id")
# _IOW('E', 0xa0, int) from linux/input.h; python-evdev has no call for it.
EVIOCSCLOCKID: Final = 0x400445A0


class EventSource(Protocol):
    """An open input device, as the reader uses it: evdev's InputDevice in production."""

    def fileno(self) -> int: ...

    def read(self) -> Iterator[InputEvent]:
        """The events waiting; BlockingIOError when there are none, OSError when gone."""

    def close(self) -> None: ...


OpenSource = Callable[[Path], EventSource]


class GrabbedDevice(evdev.InputDevice[str]):
    """An event device held exclusively, with event times in CLOCK_BOOTTIME."""

    def __init__(self, node: Path) -> None:
        super().__init__(str(node))
        try:
            fcntl.ioctl(self.fd, EVIOCSCLOCKID, struct.pack("i", time.CLOCK_BOOTTIME))
            self.grab()
        except OSError:
            super().close()
            raise

    def close(self) -> None:
        if self.fd > -1:
            with contextlib.suppress(OSError):  # unplugged: the kernel released the grab
                self.ungrab()
        super().close()


class KeyboardReader(DeviceReader[EventSource]):
    technology = "keyboard-wedge"

    def __init__(
        self,
        name: str,
        device: Path,
        uid_format: Literal["decimal", "hex"] = "decimal",
        max_key_gap_seconds: float = DEFAULT_MAX_KEY_GAP_SECONDS,
        *,
        layout: Layout = "qwerty",
        open_source: OpenSource = GrabbedDevice,
        backoff: Backoff | None = None,
        failed_after: float = 60.0,
    ) -> None:
        super().__init__(name, backoff=backoff, failed_after=failed_after)
        self._device = device
        self._uid_format: Literal["decimal", "hex"] = uid_format
        self._max_key_gap_seconds = max_key_gap_seconds
        self._layout: Layout = layout
        self._open_source = open_source

    def open(self) -> EventSource:
        node = self._device.resolve(strict=True)
        source = self._open_source(node)
        log.info("keyboard reader opened", reader=self.name, device=str(node))
        return source

    def read_until_gone(self, source: EventSource) -> None:
        # A fresh parser: a frame cut by an unplug is not continued after it.
        parser = KeystrokeParser(self._uid_format, self._max_key_gap_seconds, self._layout)
        poller = select.poll()
        poller.register(source.fileno(), select.POLLIN)
        timeout_ms = int(self.poll_interval * 1000)
        while not self.stopping.is_set():
            if poller.poll(timeout_ms):
                for event in waiting_events(source):
                    self._take(parser.feed(event), event)

    def close(self, source: EventSource) -> None:
        source.close()

    def _take(self, outcome: str | BadFrame | None, event: InputEvent) -> None:
        if isinstance(outcome, BadFrame):
            log.info("keyboard reader bad frame", reader=self.name, reason=outcome.reason)
            self.count_bad_frame()
        elif outcome is not None:
            self.emit(outcome, event_time_ns(event))


def waiting_events(source: EventSource) -> list[InputEvent]:
    try:
        return list(source.read())
    except BlockingIOError:
        return []
    except OSError as exc:  # ENODEV once the reader is unplugged
        raise DeviceGoneError(f"reading the device failed: {exc}") from exc


def detect(by_id: Path = BY_ID) -> list[DetectedDevice]:
    """Keyboard-like input devices by their stable links (a wedge reader is one of them)."""
    links = sorted(by_id.glob("*-event-kbd")) if by_id.is_dir() else []
    return [
        DetectedDevice("keyboard", str(link), f"{_product(link)} ({link.resolve().name})")
        for link in links
    ]


def _product(link: Path) -> str:
    """'usb-Sycreader_RFID_Technology_Co.__Ltd_SYC_ID_IC_USB_Reader_08FF3300-event-kbd' -> words."""
    bus, _, rest = link.name.removesuffix("-event-kbd").partition("-")
    return rest.replace("_", " ") if rest else bus
