"""NFC readers through nfcpy: PN532 on a UART, PN533, ACR122U, Sony RC-S380, and nfcpy's
`udp` device for tests (nfcpy 1.0.4, its last release, March 2022).

The reader polls: each poll senses the configured technologies one after the other and
takes the card's identifier from its anticollision answer, without activating it as a tag.
nfcpy's `connect(rdwr=...)` is not used because it only reports cards it can activate
(MIFARE Classic, the commonest badge, is not a tag it knows), because it returns False on
an IOError instead of saying what failed, and because it checks `terminate` only between
rounds of several polls. A sense takes milliseconds on a PN53x, so stopping is checked
between technologies and between polls.

ACR122U and PN532 on a UART: nfcpy's close puts the PN532 into PowerDown, after which
neither wakes up again until it is power-cycled (nfcpy #154, #186, #231, #239): every
reopen after a glitch would fail until someone replugs the reader. Closing here keeps the
chip awake. nfcpy already turns the ACR122U's own card polling off and sets its LED to
green when it opens the reader; the reader never beeps on its own, `signal` does.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Sequence
from typing import Any, Final, Literal

import nfc
import nfc.clf
import nfc.clf.acr122
import nfc.clf.device
import nfc.clf.pn532
import nfc.clf.transport
import structlog

from drivers.base import DetectedDevice
from drivers.device import Backoff, DeviceReader, boottime_ns

log = structlog.get_logger("drivers")

Technology = Literal["106A", "106B", "212F"]  # ISO 14443A, ISO 14443B, FeliCa (nfcpy's names)
ALL_TECHNOLOGIES: Final[tuple[Technology, ...]] = ("106A", "106B", "212F")
DEFAULT_PRESENCE_GAP: Final = 0.5  # seconds; see the configuration's presence_gap_seconds

# ACR122U "LED and buzzer control" pseudo-APDU: FF 00 40 <LED state> 04 <T1> <T2> <repeat>
# <buzzer>, T1 and T2 in tenths of a second; buzzer 01 sounds during T1. The LED state byte
# AE blinks green (on in T1) and keeps red off; DE blinks red (on in T1) against green (on
# in T2). Both end in nfcpy's default state, green on and red off.
ACR122_ACCEPTED: Final = bytes.fromhex("FF 00 40 AE 04 02 01 01 01")  # one 0.2 s beep
ACR122_REFUSED: Final = bytes.fromhex("FF 00 40 DE 04 01 01 03 01")  # three 0.1 s beeps
ACR122_PATTERN_SECONDS: Final = 0.6  # the longest pattern; the answer comes after it

UART_NAMES: Final = re.compile(r"^tty(AMA|USB|ACM)\d+$")
UART_ALIASES: Final = ("serial0", "serial1")  # a Raspberry Pi's GPIO UARTs, by any name

OpenFrontend = Callable[[str], nfc.ContactlessFrontend]


# What a read records as its technology, by nfcpy's target type.
TECHNOLOGY_NAMES = {"106A": "iso14443a", "106B": "iso14443b", "212F": "felica"}


def uid_of(target: nfc.clf.RemoteTarget) -> str | None:
    """The card's identifier in upper-case hex: the UID of an ISO 14443A card, the PUPI of a
    14443B card, the IDm of a FeliCa card; None for a Type 1 tag, which no badge is."""
    if target.sdd_res is not None:
        return bytes(target.sdd_res).hex().upper()
    if target.sensb_res is not None:
        return bytes(target.sensb_res[1:5]).hex().upper()
    if target.sensf_res is not None:
        return bytes(target.sensf_res[1:9]).hex().upper()
    return None


class PolledPresence:
    """One read per card presentation, from a reader that is asked again and again.

    Only a poll that did not find the card is evidence that it left: the card counts as
    removed once polls have missed it for `gap` (and at least two polls, unless gap is 0).
    Time without polls (a slow tap, a busy machine, a reconnect) is no evidence, so a card
    lying on the reader is one tap however long it lies there, and a card at the edge of the
    field that one poll misses is not tapped twice.
    """

    def __init__(self, gap_seconds: float) -> None:
        self._gap_ns = int(gap_seconds * 1e9)
        self._uid: str | None = None
        self._missed_since_ns: int | None = None

    def is_new(self, uid: str, polled_ns: int) -> bool:
        """A poll found this card: True when it was just presented."""
        new = uid != self._uid
        self._uid, self._missed_since_ns = uid, None
        return new

    def missed(self, polled_ns: int) -> None:
        """A poll found no card."""
        if self._missed_since_ns is None:
            self._missed_since_ns = polled_ns
        if polled_ns - self._missed_since_ns >= self._gap_ns:
            self._uid = None


class NfcReader(DeviceReader[nfc.ContactlessFrontend]):
    """A reader nfcpy drives, named by its nfcpy path ("usb:072f:2200", "tty:AMA0:pn532")."""

    technology = "nfc"

    def __init__(
        self,
        name: str,
        path: str,
        *,
        technologies: Sequence[Technology] = ALL_TECHNOLOGIES,
        presence_gap: float = DEFAULT_PRESENCE_GAP,
        open_frontend: OpenFrontend = nfc.ContactlessFrontend,
        backoff: Backoff | None = None,
        failed_after: float = 60.0,
    ) -> None:
        super().__init__(name, backoff=backoff, failed_after=failed_after)
        self.path = path
        self._targets = [nfc.clf.RemoteTarget(technology) for technology in technologies]
        self._open_frontend = open_frontend  # nfcpy's own; tests pull the plug through it
        # Kept across reconnects: a card lying on a reader that glitched is not a new tap.
        self._presence = PolledPresence(presence_gap)
        self._frontend: nfc.ContactlessFrontend | None = None

    def open(self) -> nfc.ContactlessFrontend:
        # nfcpy raises OSError (ENODEV) when no reader answers at the path.
        self._frontend = self._open_frontend(self.path)
        return self._frontend

    def read_until_gone(self, handle: nfc.ContactlessFrontend) -> None:
        """Poll until stopped; nfcpy's OSError (ENODEV after an unplug, ETIMEDOUT or EIO
        from a reader that stopped answering) ends the session, the base reopens."""
        while not self.stopping.is_set():
            found = self._poll(handle)
            polled_ns = boottime_ns()
            if found is None:
                self._presence.missed(polled_ns)
            elif self._presence.is_new(found[0], polled_ns):
                self.emit(found[0], polled_ns, technology=found[1])
            self.stopping.wait(self.poll_interval)

    def close(self, handle: nfc.ContactlessFrontend) -> None:
        self._frontend = None
        _keep_chip_awake(handle)
        handle.close()

    def signal(self, accepted: bool) -> None:
        """Flash and beep an ACR122U's own LED and buzzer: a green blink and one beep, or
        red blinks and three beeps. Does nothing on other readers or while disconnected.
        Blocks for the pattern (up to 0.6 s): the ACR122U answers when it has played it."""
        frontend = self._frontend
        if frontend is None:
            return
        with frontend.lock:  # polls hold it: one USB exchange at a time
            device = frontend.device
            if isinstance(device, nfc.clf.acr122.Device):
                _play(device, ACR122_ACCEPTED if accepted else ACR122_REFUSED)

    def _poll(self, frontend: nfc.ContactlessFrontend) -> tuple[str, str] | None:
        """The uid and technology of a card in the field, if any."""
        for target in tuple(self._targets):
            if self.stopping.is_set():
                return None
            try:
                found = frontend.sense(target, iterations=1)
            except nfc.clf.UnsupportedTargetError as exc:
                self._leave_out(target, exc)
                continue
            uid = None if found is None else uid_of(found)
            if uid is not None:
                return uid, TECHNOLOGY_NAMES.get(target.brty, target.brty)
        return None

    def _leave_out(self, target: nfc.clf.RemoteTarget, exc: Exception) -> None:
        """A technology this reader cannot sense (a PN531 has no Type B) is no longer polled;
        the last one left is kept, and its error shows in the reader's health."""
        if len(self._targets) == 1:
            raise exc
        self._targets.remove(target)
        log.warning(
            "technology not polled", reader=self.name, technology=target.brty, error=str(exc)
        )


def _keep_chip_awake(frontend: nfc.ContactlessFrontend) -> None:
    """Make nfcpy's close skip the PN532 PowerDown (ACR122U, PN532 over UART)."""
    device = frontend.device
    if isinstance(device, nfc.clf.pn532.Device):
        device.chipset.power_down = _stay_awake


def _stay_awake(*_: Any, **__: Any) -> None:
    """Stands in for the PN532 chipset's power_down when nfcpy closes the reader."""


def _play(device: nfc.clf.acr122.Device, pattern: bytes) -> None:
    try:
        device.chipset.ccid_xfr_block(bytearray(pattern), timeout=ACR122_PATTERN_SECONDS + 0.2)
    except OSError as exc:  # unplugged meanwhile: the poll will notice and reconnect
        log.warning("ACR122U signal failed", error=str(exc))


def detect() -> list[DetectedDevice]:
    """nfcpy's USB readers plugged in here, and the serial ports a PN532 board could be on.

    Nothing is opened: opening a reader takes it from a running daemon, and probing a
    serial port writes to whatever is wired there (nfcpy's own --search-tty can hang).
    """
    return _usb_readers() + _uart_candidates()


def _usb_readers() -> list[DetectedDevice]:
    try:
        found = nfc.clf.transport.USB.find("usb") or []
    except Exception as exc:  # no libusb-1.0 (OSError), or it fails to start (usb1.USBError)
        if "libusb" in str(exc):
            log.warning("cannot list USB NFC readers: libusb-1.0 is missing (Debian: libusb-1.0-0)")
        else:
            log.warning("cannot list USB NFC readers", error=f"{type(exc).__name__}: {exc}")
        return []
    readers = []
    for vendor, product, bus, address in found:
        module = nfc.clf.device.usb_device_map.get((vendor, product))
        if module is not None:
            path = f"usb:{vendor:04x}:{product:04x}"  # bus and address change on a replug
            readers.append(DetectedDevice("nfc", path, _usb_description(module, bus, address)))
    return readers


def _usb_description(module: str, bus: int, address: int) -> str:
    description = f"nfcpy {module} reader on USB bus {bus:03d} device {address:03d}"
    node = f"/dev/bus/usb/{bus:03d}/{address:03d}"
    if not os.access(node, os.R_OK | os.W_OK):
        description += f" (no access to {node}: install systemd/60-badge-gateway-nfc.rules)"
    return description


def _uart_candidates() -> list[DetectedDevice]:
    names = {name for name in os.listdir("/dev") if UART_NAMES.match(name)}
    aliases = [f"/dev/{alias}" for alias in UART_ALIASES]
    names |= {os.path.basename(os.path.realpath(a)) for a in aliases if os.path.exists(a)}
    return [
        DetectedDevice(
            "nfc",
            f"tty:{name.removeprefix('tty')}:pn532",
            f"serial port /dev/{name}: a PN532 board in HSU mode here (not probed)",
        )
        for name in sorted(names)
    ]
