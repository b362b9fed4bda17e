"""The keyboard-wedge driver: keystrokes -> uids, and the reader's real read loop.

This kernel has no uinput (and no input subsystem at all), so no real evdev node can be
made here. What is real: the parser; the reader's thread, reconnect loop, poll loop and
by-id link resolution; the bytes it reads, `struct input_event` records, read from a
real FIFO and decoded by python-evdev's own C reader (`EventIO.read`); the daemon down to
the journal. What is substituted: opening the node (`open_source`): `FifoEvents` opens
the FIFO where `GrabbedDevice` opens the evdev node, sets its clock and grabs it; and a
pipe's end of file stands for the ENODEV an unplugged node answers.
"""

from __future__ import annotations

import asyncio
import errno
import os
import queue
import re
import string
import struct
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest
from evdev import InputEvent, ecodes
from evdev.eventio import EventIO
from hypothesis import given, settings
from hypothesis import strategies as st

from drivers.base import BadFrame, BadgeRead, ReaderState
from drivers.device import Backoff, DeviceGoneError
from drivers.keyboard import KeyboardReader, detect, waiting_events
from drivers.keystrokes import MAX_UID_LENGTH, KeystrokeParser, event_time_ns
from gateway.clock import boottime_ns
from gateway.config import config_from_dict
from gateway.daemon import Daemon
from gateway.readers import build_reader
from tests.support import badges, config_data, make_config, run, with_daemon

pytestmark = pytest.mark.timeout(120)

MS = 1_000_000
T0 = 1_000 * 1_000 * MS  # a CLOCK_BOOTTIME moment: 1000 s after boot
UP, DOWN, REPEAT = 0, 1, 2

LETTERS = {c: ecodes.ecodes[f"KEY_{c.upper()}"] for c in string.ascii_lowercase}
TOP_ROW = {
    **{str(d): ecodes.ecodes[f"KEY_{d}"] for d in range(10)},
    **LETTERS,
    "\n": ecodes.KEY_ENTER,
    " ": ecodes.KEY_SPACE,
    "-": ecodes.KEY_MINUS,
}
KEYPAD = {**{str(d): ecodes.ecodes[f"KEY_KP{d}"] for d in range(10)}, "\n": ecodes.KEY_KPENTER}
# `struct input_event` on 64-bit Linux: struct timeval (two longs), u16 type, u16 code, s32 value
INPUT_EVENT = struct.Struct("llHHi")


# -- key events as a USB keyboard reports them (evtest's order) ---------------------------


def event(at_ns: int, type_: int, code: int, value: int) -> InputEvent:
    return InputEvent(at_ns // 1_000_000_000, at_ns % 1_000_000_000 // 1_000, type_, code, value)


def key(at_ns: int, code: int, value: int) -> list[InputEvent]:
    # MSC_SCAN (the HID usage; its value is not looked at), then the key, then SYN_REPORT
    return [
        event(at_ns, ecodes.EV_MSC, ecodes.MSC_SCAN, 0x70000 + code),
        event(at_ns, ecodes.EV_KEY, code, value),
        event(at_ns, ecodes.EV_SYN, ecodes.SYN_REPORT, 0),
    ]


def typed(
    text: str,
    start_ns: int = T0,
    gap_ms: float = 4.0,
    keymap: dict[str, int] = TOP_ROW,
    azerty: bool = False,
) -> list[InputEvent]:
    """Each character pressed and released 2 ms later, key-downs `gap_ms` apart.

    Upper-case letters are typed with Shift held; with `azerty`, digits are too (a reader
    set to a Belgian or French layout types the top-row digits that way).
    """
    events: list[InputEvent] = []
    for index, char in enumerate(text):
        at = start_ns + int(index * gap_ms * MS)
        shifted = char.isupper() or (azerty and char.isdigit())
        chord = [ecodes.KEY_LEFTSHIFT, keymap[char.lower()]] if shifted else [keymap[char]]
        for code in chord:
            events += key(at, code, DOWN)
        for code in reversed(chord):
            events += key(at + 2 * MS, code, UP)
    return events


def enter_time(events: Sequence[InputEvent]) -> int:
    enters = (ecodes.KEY_ENTER, ecodes.KEY_KPENTER)
    presses = [e for e in events if e.type == ecodes.EV_KEY and e.code in enters and e.value]
    return event_time_ns(presses[-1])


@dataclass
class Parsed:
    uids: list[str]
    bad: list[str]


def parse(events: Sequence[InputEvent], uid_format: str = "decimal") -> Parsed:
    parser = KeystrokeParser("hex" if uid_format == "hex" else "decimal")
    outcomes = [parser.feed(e) for e in events]
    return Parsed(
        uids=[o for o in outcomes if isinstance(o, str)],
        bad=[o.reason for o in outcomes if isinstance(o, BadFrame)],
    )


# -- the parser on recorded sequences -------------------------------------------------------


def test_a_decimal_badge_typed_by_a_reader() -> None:
    assert parse(typed("0012345678\n")) == Parsed(["0012345678"], [])


def test_gaps_between_keys_of_1_to_8_ms_and_several_badges_in_a_row() -> None:
    events = typed("0012345678\n", gap_ms=1) + typed("87654321\n", T0 + 500 * MS, gap_ms=8)
    assert parse(events) == Parsed(["0012345678", "87654321"], [])


def test_keypad_digits_and_keypad_enter() -> None:
    assert parse(typed("0412345\n", keymap=KEYPAD)).uids == ["0412345"]


def test_hex_letters_with_or_without_shift_read_upper_case() -> None:
    assert parse(typed("04A2b9cF\n"), "hex").uids == ["04A2B9CF"]
    assert parse(typed("04a23b9c\n"), "hex").uids == ["04A23B9C"]


def test_digits_typed_with_shift_as_on_an_azerty_layout() -> None:
    assert parse(typed("0012345678\n", azerty=True)).uids == ["0012345678"]


def test_a_hex_badge_from_a_reader_set_to_azerty_reads_its_a_on_the_q_key() -> None:
    # "A" on an AZERTY reader is the key QWERTY calls Q (evdev reports key positions).
    azerty_keys = {**TOP_ROW, "a": ecodes.KEY_Q, "q": ecodes.KEY_A}
    events = typed("04AB12CD\n", keymap=azerty_keys, azerty=True)

    azerty = KeystrokeParser("hex", layout="azerty")
    assert [o for e in events if isinstance(o := azerty.feed(e), str)] == ["04AB12CD"]
    qwerty = parse(events, "hex")  # the same keys, misread as QWERTY: refused, not wrong
    assert qwerty.uids == [] and qwerty.bad


def test_hex_letters_are_refused_when_the_reader_types_decimal() -> None:
    assert parse(typed("04a23b9c\n")) == Parsed([], ["unexpected key KEY_A"])


def test_key_up_and_autorepeat_events_add_nothing() -> None:
    held_four = [
        *key(T0 + 20 * MS, ecodes.KEY_4, DOWN),
        *key(T0 + 30 * MS, ecodes.KEY_4, REPEAT),
        *key(T0 + 40 * MS, ecodes.KEY_4, REPEAT),
        *key(T0 + 50 * MS, ecodes.KEY_4, UP),
    ]
    events = typed("123", T0) + held_four + typed("5\n", T0 + 60 * MS)
    assert parse(events) == Parsed(["12345"], [])


def test_human_typing_speed_never_becomes_a_badge() -> None:
    # a fast typist: 150 ms from key to key; the first digits are forgotten, one by one
    parsed = parse(typed("0012345678\n", gap_ms=150))
    assert parsed.uids == []
    assert parsed.bad == ["keys typed too slowly for a badge reader"] * 10


def test_a_badge_after_abandoned_keys_reads_whole() -> None:
    events = typed("12") + typed("0012345678\n", T0 + 2_000 * MS)
    assert parse(events) == Parsed(["0012345678"], ["keys typed too slowly for a badge reader"])


def test_a_garbled_frame_is_dropped_up_to_its_enter_not_shortened() -> None:
    events = typed("0012x45678\n") + typed("0012345678\n", T0 + 100 * MS)
    assert parse(events) == Parsed(["0012345678"], ["unexpected key KEY_X"])


def test_garbage_empty_and_short_frames_are_bad_and_reading_goes_on() -> None:
    events = typed("\n") + typed("123\n", T0 + 100 * MS) + typed("- 9\n", T0 + 200 * MS)
    events += typed("5555\n", T0 + 300 * MS)
    bad = ["Enter after 0 characters", "Enter after 3 characters", "unexpected key KEY_MINUS"]
    assert parse(events) == Parsed(["5555"], bad)


def test_an_overlong_frame_is_one_bad_frame() -> None:
    digits = "1234567890" * 5
    parsed = parse(typed(digits + "\n") + typed("0012345678\n", T0 + 500 * MS))
    assert parsed == Parsed(["0012345678"], [f"more than {MAX_UID_LENGTH} characters before Enter"])


def test_events_dropped_by_the_kernel_spoil_the_frame_they_cut() -> None:
    dropped = [event(T0 + 18 * MS, ecodes.EV_SYN, ecodes.SYN_DROPPED, 0)]
    events = typed("00123") + dropped + typed("45678\n", T0 + 20 * MS)
    assert parse(events) == Parsed([], ["the kernel dropped events"])
    # after a pause, the start of a badge lost: its tail is not a badge either
    dropped = [event(T0 + 2_000 * MS, ecodes.EV_SYN, ecodes.SYN_DROPPED, 0)]
    events = typed("0012345678\n") + dropped + typed("45678\n", T0 + 2_002 * MS)
    assert parse(events) == Parsed(["0012345678"], ["the kernel dropped events"])


# -- the parser on any input ------------------------------------------------------------------

RELEVANT_CODES = [*TOP_ROW.values(), *KEYPAD.values(), ecodes.KEY_LEFTSHIFT, ecodes.KEY_CAPSLOCK]
any_event = st.builds(
    InputEvent,
    st.integers(0, 2**31 - 1),
    st.integers(0, 999_999),
    st.sampled_from([ecodes.EV_SYN, ecodes.EV_KEY, ecodes.EV_MSC]) | st.integers(0, 0x1F),
    st.sampled_from(RELEVANT_CODES) | st.integers(0, 0x2FF),
    st.sampled_from([UP, DOWN, REPEAT]) | st.integers(-(2**31), 2**31 - 1),
)


@given(st.lists(any_event, max_size=300), st.sampled_from(["decimal", "hex"]))
def test_any_event_stream_gives_only_well_formed_uids(
    events: list[InputEvent], uid_format: str
) -> None:
    alphabet = "0-9A-F" if uid_format == "hex" else "0-9"
    well_formed = re.compile(f"[{alphabet}]{{4,{MAX_UID_LENGTH}}}")
    for uid in parse(events, uid_format).uids:
        assert well_formed.fullmatch(uid), uid


uids = st.text("0123456789ABCDEFabcdef", min_size=4, max_size=MAX_UID_LENGTH)


@st.composite
def frames(draw: st.DrawFn) -> tuple[str, str | None]:
    """What a reader types for one badge (maybe garbled, maybe cut short); the uid expected."""
    uid, ended = draw(uids), draw(st.booleans())
    if draw(st.booleans()):
        noise, at = draw(st.sampled_from("xyz -")), draw(st.integers(0, len(uid)))
        return uid[:at] + noise + uid[at:] + "\n" * ended, None
    return uid + "\n" * ended, uid.upper() if ended else None


@settings(max_examples=200)
@given(st.lists(frames(), max_size=8))
def test_badges_read_back_exactly_and_garbled_ones_never(
    frames: list[tuple[str, str | None]],
) -> None:
    events: list[InputEvent] = []
    for index, (text, _) in enumerate(frames):
        events += typed(text, T0 + index * 1_000 * MS, gap_ms=3)
    assert parse(events, "hex").uids == [uid for _, uid in frames if uid is not None]


# -- the reader, through its real read loop ---------------------------------------------------


class FifoEvents(EventIO):
    """The reader's end of a FIFO carrying `struct input_event` records.

    evdev's `EventIO.read` reads and decodes them, as it does for an InputDevice. A pipe
    whose writer closed reads as end of file; an unplugged evdev node answers ENODEV.
    """

    def __init__(self, node: Path) -> None:
        self.fd = os.open(node, os.O_RDONLY | os.O_NONBLOCK)

    def read(self) -> Iterator[InputEvent]:
        events = list(super().read())
        if not events:
            raise OSError(errno.ENODEV, os.strerror(errno.ENODEV))
        return iter(events)

    def close(self) -> None:
        os.close(self.fd)


class WedgeDevice:
    """A wedge reader as the kernel shows it: /dev/input/eventN and a by-id link to it."""

    def __init__(self, root: Path) -> None:
        self.root = root
        (root / "by-id").mkdir()
        self.link = root / "by-id" / "usb-Sycreader_RFID_Technology_USB_Reader_08FF0009-event-kbd"
        self.opened: list[Path] = []
        self._number = 2
        self._node: Path | None = None
        self._writer: int | None = None

    def plug(self) -> None:
        self._number += 1
        self._node = self.root / f"event{self._number}"
        os.mkfifo(self._node)
        # Read-write: the FIFO then always has a writer, so the reader sees no end of file.
        self._writer = os.open(self._node, os.O_RDWR | os.O_NONBLOCK)
        self.link.symlink_to(self._node)

    def unplug(self) -> None:
        assert self._node is not None and self._writer is not None
        self.link.unlink()
        self._node.unlink()
        os.close(self._writer)
        self._writer = None

    def open(self, node: Path) -> FifoEvents:
        self.opened.append(node)
        return FifoEvents(node)

    def type(self, text: str, gap_ms: float = 4.0) -> int:
        """Type `text` as the reader would have just now; the CLOCK_BOOTTIME of its Enter."""
        assert self._writer is not None
        events = typed(text, boottime_ns() - int((len(text) * gap_ms + 5) * MS), gap_ms)
        records = (INPUT_EVENT.pack(e.sec, e.usec, e.type, e.code, e.value) for e in events)
        os.write(self._writer, b"".join(records))
        return enter_time(events)


@pytest.fixture
def device(tmp_path: Path) -> Iterator[WedgeDevice]:
    device = WedgeDevice(tmp_path)
    yield device
    if device._writer is not None:
        os.close(device._writer)


def keyboard_reader(device: WedgeDevice, name: str = "entrance") -> KeyboardReader:
    return KeyboardReader(
        name, device.link, open_source=device.open, backoff=Backoff(0.05, 0.2), failed_after=30
    )


def wait_for(condition: Callable[[], bool], timeout: float = 5.0) -> float:
    """Seconds it took for `condition` to hold; fails after `timeout`."""
    start = time.monotonic()
    while not condition():
        assert time.monotonic() - start < timeout, "timed out"
        time.sleep(0.01)
    return time.monotonic() - start


def state_is(reader: KeyboardReader, state: ReaderState) -> Callable[[], bool]:
    return lambda: reader.health().state is state


Started = tuple[KeyboardReader, "queue.Queue[BadgeRead]"]


@pytest.fixture
def started(device: WedgeDevice) -> Iterator[Started]:
    device.plug()
    reader = keyboard_reader(device)
    reads: queue.Queue[BadgeRead] = queue.Queue()
    reader.start(reads.put)
    try:
        wait_for(state_is(reader, ReaderState.CONNECTED))
        yield reader, reads
    finally:
        reader.stop()


def test_nothing_waiting_is_no_event_and_a_vanished_device_is_gone(device: WedgeDevice) -> None:
    device.plug()
    source = device.open(device.link.resolve())
    try:
        assert waiting_events(source) == []  # evdev's read: BlockingIOError (EAGAIN)
        device.unplug()
        with pytest.raises(DeviceGoneError, match="No such device"):
            waiting_events(source)
    finally:
        source.close()


def test_a_badge_is_read_with_the_time_of_its_enter(device: WedgeDevice, started: Started) -> None:
    reader, reads = started
    enter_ns = device.type("0012345678\n")
    read = reads.get(timeout=5)
    assert read == BadgeRead("0012345678", "entrance", "keyboard-wedge", enter_ns)
    assert device.opened == [device.root / "event3"]
    assert reader.health().reads == 1


def test_bad_frames_are_counted_and_the_next_badge_reads(
    device: WedgeDevice, started: Started
) -> None:
    reader, reads = started
    device.type("12x4\n")
    device.type("\n")
    device.type("0012345678\n")
    assert reads.get(timeout=5).uid == "0012345678"
    health = reader.health()
    assert (health.reads, health.bad_frames) == (1, 2)
    assert reads.empty()


def test_unplug_and_replug_under_another_event_node(device: WedgeDevice, started: Started) -> None:
    reader, reads = started
    device.unplug()
    wait_for(state_is(reader, ReaderState.RECONNECTING))
    assert "No such device" in (reader.health().error or "")
    wait_for(lambda: "FileNotFoundError" in (reader.health().error or ""))
    device.plug()
    assert wait_for(state_is(reader, ReaderState.CONNECTED)) < 5
    device.type("0099887766\n")
    assert reads.get(timeout=5).uid == "0099887766"
    assert device.opened == [device.root / "event3", device.root / "event4"]


def test_a_reader_absent_at_start_is_picked_up_when_plugged(device: WedgeDevice) -> None:
    reader = keyboard_reader(device)
    reads: queue.Queue[BadgeRead] = queue.Queue()
    reader.start(reads.put)
    try:
        wait_for(lambda: "FileNotFoundError" in (reader.health().error or ""))
        device.plug()
        wait_for(state_is(reader, ReaderState.CONNECTED))
        device.type("04000000\n")
        assert reads.get(timeout=5).uid == "04000000"
    finally:
        reader.stop()


@pytest.mark.parametrize("plugged", [True, False])
def test_stop_is_prompt_and_leaves_no_thread(device: WedgeDevice, plugged: bool) -> None:
    if plugged:
        device.plug()
    reader = KeyboardReader("door", device.link, open_source=device.open, backoff=Backoff(5, 5))
    reader.start(lambda read: None)
    if plugged:
        wait_for(state_is(reader, ReaderState.CONNECTED))
    else:
        wait_for(lambda: "FileNotFoundError" in (reader.health().error or ""))
    started = time.monotonic()
    reader.stop()
    assert time.monotonic() - started < 1
    assert not [t for t in threading.enumerate() if t.name == "reader-door"]
    assert reader.health().state is ReaderState.STOPPED


def test_the_real_opener_refuses_a_node_that_is_not_an_evdev_device(device: WedgeDevice) -> None:
    # evdev.InputDevice opens the FIFO, then its first ioctl (EVIOCGID) is not understood
    device.plug()
    reader = KeyboardReader("door", device.link, backoff=Backoff(0.05, 0.2))
    reader.start(lambda read: None)
    try:
        wait_for(lambda: "Inappropriate ioctl" in (reader.health().error or ""))
        assert reader.health().state is ReaderState.RECONNECTING
    finally:
        reader.stop()


def test_detect_lists_keyboard_links_by_id(tmp_path: Path) -> None:
    (tmp_path / "event5").touch()
    for name in ("usb-ACME_Badge_Reader_01-event-kbd", "usb-ACME_Mouse-event-mouse"):
        (tmp_path / name).symlink_to(tmp_path / "event5")
    [found] = detect(tmp_path)
    assert found.driver == "keyboard"
    assert found.path == str(tmp_path / "usb-ACME_Badge_Reader_01-event-kbd")
    assert found.description == "ACME Badge Reader 01 (event5)"
    assert detect(tmp_path / "absent") == []
    assert all(found.driver == "keyboard" for found in detect())  # no /dev/input here: []


def test_the_registry_builds_a_keyboard_reader_from_the_configuration(tmp_path: Path) -> None:
    entry = {"driver": "keyboard", "name": "back door", "device": str(tmp_path / "absent")}
    config = config_from_dict({**config_data(tmp_path), "readers": [entry]}, source="test")
    reader = build_reader(config.readers[0])
    assert isinstance(reader, KeyboardReader)
    reader.start(lambda read: None)
    try:
        wait_for(lambda: "FileNotFoundError" in (reader.health().error or ""))
    finally:
        reader.stop()


# -- into the daemon ------------------------------------------------------------------------


def test_a_badge_typed_on_the_reader_ends_as_a_registration(
    state: Path, device: WedgeDevice
) -> None:
    worker = badges(1)[0]
    config = make_config(state, [worker])
    device.plug()
    reader = keyboard_reader(device, "front door")

    async def type_and_find(daemon: Daemon) -> list[object]:
        for _ in range(500):
            if reader.health().state is ReaderState.CONNECTED:
                break
            await asyncio.sleep(0.01)
        enter_ns = device.type(worker.uid + "\n")
        assert daemon.journal is not None
        for _ in range(500):
            if stored := daemon.journal.registrations_since(0):
                registration = stored[0].registration
                return [
                    registration.badge_uid,
                    registration.reader,
                    registration.direction,
                    registration.clock.monotonic_ns == enter_ns,
                ]
            await asyncio.sleep(0.01)
        raise AssertionError("no registration")

    found = run(with_daemon(config, type_and_find, readers=[reader]))
    assert found == [worker.uid, "front door", "IN", True]
