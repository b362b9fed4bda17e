"""The serial drivers (RDM6300 and line-based) on real pseudo-terminals and pyserial URLs.

A pty stands for the reader: the driver opens a stable path (a symlink, as udev makes under
/dev/serial/by-id) pointing at the pty's slave; the test writes the reader's bytes to the
master. Unplugging closes the master (the driver's reads fail with EIO), replugging opens
a new pty and re-points the symlink atomically.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import socket
import threading
import time
import tty
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from functools import partial, reduce
from operator import xor
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from drivers.base import BadFrame, BadgeRead, ReaderState
from drivers.device import Backoff
from drivers.rdm6300 import Rdm6300Parser, Rdm6300Reader, UidFormat, encode_frame, uid_of
from drivers.serial_line import MAX_LINE_BYTES, LineParser, SerialLineReader
from drivers.serial_port import FrameParser, Presence, SerialReader, detect
from gateway.config import (
    ConfigError,
    Rdm6300ReaderConfig,
    SerialLineReaderConfig,
    config_from_dict,
)
from gateway.readers import build_reader
from tests.support import (
    badges,
    config_data,
    daemon_process,
    write_badge_file,
    write_config_with_readers,
)

CARD = bytes.fromhex("0A00BC614E")  # card id 0x00BC614E = 12345678, as printed: 0012345678
OTHER = bytes.fromhex("1F2E3D4C5B")
GAP = 0.3  # presence gap of the readers under test
FRAME = re.compile(rb"\x02([0-9A-Fa-f]{12})\x03")
SECOND = 1_000_000_000


# --- helpers -------------------------------------------------------------------------------


def wait_until(predicate: Callable[[], bool], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return predicate()


def parse(parser: FrameParser, stream: bytes, cuts: list[int]) -> list[str | BadFrame]:
    """Feed `stream` cut at `cuts`, as a serial port hands it over in arbitrary chunks."""
    bounds = [0, *sorted(cuts), len(stream)]
    return [item for a, b in itertools.pairwise(bounds) for item in parser.feed(stream[a:b])]


def uids(items: list[str | BadFrame]) -> list[str]:
    return [item for item in items if isinstance(item, str)]


def bad(items: list[str | BadFrame]) -> list[BadFrame]:
    return [item for item in items if isinstance(item, BadFrame)]


def valid_frames_in(stream: bytes, uid_format: UidFormat = "hex") -> list[str]:
    """The oracle: every well-formed frame with a good checksum, wherever it sits."""
    found = []
    for match in FRAME.finditer(stream):
        data = bytes.fromhex(match[1][:10].decode())
        if reduce(xor, data, 0) == int(match[1][10:], 16):
            found.append(uid_of(data, uid_format))
    return found


@dataclass
class Pty:
    master: int
    slave: int  # kept open, as the hardware would be, so the master can always be written

    @classmethod
    def open(cls) -> Pty:
        master, slave = os.openpty()
        tty.setraw(slave)  # no echo, no line editing: the bytes reach the reader as written
        return cls(master, slave)

    def close(self) -> None:
        os.close(self.master)
        os.close(self.slave)


class SerialDevice:
    """A reader on a stable path that the test can unplug and plug in again."""

    def __init__(self, link: Path) -> None:
        self.link = link
        self.pty: Pty | None = None
        self.plug()

    def plug(self) -> None:
        self.pty = Pty.open()
        fresh = self.link.with_name(self.link.name + ".new")
        os.symlink(os.ttyname(self.pty.slave), fresh)
        os.replace(fresh, self.link)

    def unplug(self) -> None:
        assert self.pty is not None
        self.pty.close()
        self.pty = None

    def send(self, data: bytes) -> None:
        assert self.pty is not None
        os.write(self.pty.master, data)


class Reads:
    """The on_read callback: collects reads, and lets the test wait for them."""

    def __init__(self) -> None:
        self.items: list[BadgeRead] = []
        self._changed = threading.Condition()

    def __call__(self, read: BadgeRead) -> None:
        with self._changed:
            self.items.append(read)
            self._changed.notify_all()

    def wait_for(self, count: int, timeout: float = 5.0) -> list[str]:
        with self._changed:
            self._changed.wait_for(lambda: len(self.items) >= count, timeout)
            return [read.uid for read in self.items]


@pytest.fixture
def device(tmp_path: Path) -> Iterator[SerialDevice]:
    serial_device = SerialDevice(tmp_path / "reader")
    yield serial_device
    if serial_device.pty is not None:
        serial_device.unplug()


def rdm6300(
    port: str, uid_format: UidFormat = "hex", name: str = "door", **options: Any
) -> Rdm6300Reader:
    parser = partial(Rdm6300Parser, uid_format)
    return Rdm6300Reader(name, port=port, parser=parser, presence_gap=GAP, **options)


def line_reader(port: str) -> SerialLineReader:
    return SerialLineReader("desk", port=port, parser=LineParser, presence_gap=GAP)


def reader_threads(reader: SerialReader) -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == f"reader-{reader.name}"]


@contextmanager
def running(reader: SerialReader, reads: Reads) -> Iterator[SerialReader]:
    reader.start(reads)
    try:
        yield reader
    finally:
        reader.stop()
    assert reader_threads(reader) == []


def connected(reader: SerialReader) -> bool:
    return reader.health().state is ReaderState.CONNECTED


# --- the RDM6300 frame parser ----------------------------------------------------------------


def test_a_frame_gives_the_uid_in_hex_or_as_the_printed_decimal() -> None:
    frame = encode_frame(CARD)
    assert frame == b"\x020A00BC614E99\x03"  # 0A^00^BC^61^4E = 99
    assert uids(Rdm6300Parser("hex").feed(frame)) == ["0A00BC614E"]
    assert uids(Rdm6300Parser("decimal").feed(frame)) == ["0012345678"]


def test_lower_case_digits_are_read() -> None:
    assert uids(Rdm6300Parser().feed(encode_frame(CARD).lower())) == ["0A00BC614E"]


@pytest.mark.parametrize(
    ("stream", "reason"),
    [
        (b"\x020A00BC614E98\x03", "bad checksum"),
        (b"\x020A00BC61", "frame cut short by the next STX"),
        (b"\x020A00BC614E99\x04", "no ETX after 12 digits"),
        (b"\x020A00BG614E99\x03", "not a hex digit"),
        (b"\r\nnoise", "bytes outside a frame"),
    ],
)
def test_a_bad_frame_is_counted_once_and_the_next_frame_read(stream: bytes, reason: str) -> None:
    items = Rdm6300Parser().feed(stream + encode_frame(CARD))
    assert [frame.reason for frame in bad(items)] == [reason]
    assert uids(items) == ["0A00BC614E"]


def test_each_run_of_garbage_counts_as_one_bad_frame() -> None:
    items = Rdm6300Parser().feed(b"garbage" + encode_frame(CARD) + b"more garbage")
    assert uids(items) == ["0A00BC614E"]
    assert len(bad(items)) == 2


def frames_and_junk() -> st.SearchStrategy[bytes]:
    frame = st.binary(min_size=5, max_size=5).map(encode_frame)
    truncated = st.tuples(frame, st.integers(1, 13)).map(lambda fc: fc[0][: fc[1]])
    corrupted = st.tuples(frame, st.integers(0, 13), st.integers(0, 255)).map(
        lambda fib: fib[0][: fib[1]] + bytes([fib[2]]) + fib[0][fib[1] + 1 :]
    )
    pieces = st.one_of(frame, frame, truncated, corrupted, st.binary(max_size=20))
    return st.lists(pieces, max_size=30).map(b"".join)


@given(
    stream=st.one_of(st.binary(max_size=300), frames_and_junk()),
    uid_format=st.sampled_from(["hex", "decimal"]),
    data=st.data(),
)
def test_rdm6300_any_bytes_in_any_chunks_give_exactly_the_valid_frames(
    stream: bytes, uid_format: UidFormat, data: st.DataObject
) -> None:
    cuts = data.draw(st.lists(st.integers(0, len(stream)), max_size=20))
    items = parse(Rdm6300Parser(uid_format), stream, cuts)
    expected = valid_frames_in(stream, uid_format)
    assert uids(items) == expected
    digits = r"[0-9A-F]{10}" if uid_format == "hex" else r"[0-9]{10}"
    assert all(re.fullmatch(digits, uid) for uid in expected)
    # Each bad frame drops bytes that belong to no valid frame, and junk before a valid frame
    # is never silently swallowed.
    assert len(bad(items)) <= len(stream) - 14 * len(expected)
    junk_before_frames = [gap for gap in _gaps_before_valid_frames(stream) if gap]
    assert len(bad(items)) >= len(junk_before_frames)


def _gaps_before_valid_frames(stream: bytes) -> list[bytes]:
    gaps, start = [], 0
    for match in FRAME.finditer(stream):
        if valid_frames_in(match[0]):
            gaps.append(stream[start : match.start()])
            start = match.end()
    return gaps


@given(cards=st.lists(st.binary(min_size=5, max_size=5), max_size=20), data=st.data())
def test_valid_frames_back_to_back_give_every_uid_and_no_bad_frame(
    cards: list[bytes], data: st.DataObject
) -> None:
    stream = b"".join(encode_frame(card) for card in cards)
    cuts = data.draw(st.lists(st.integers(0, len(stream)), max_size=40))
    items = parse(Rdm6300Parser(), stream, cuts)
    assert items == [card.hex().upper() for card in cards]


# --- the line parser -------------------------------------------------------------------------


def test_lines_with_any_ending_and_prefixes_give_upper_case_uids() -> None:
    stream = b"04a23b9c\r\nID:0012345678\n\x02DEADBEEF\x03\r\r\n"
    assert LineParser().feed(stream) == ["04A23B9C", "0012345678", "DEADBEEF"]


def test_the_uid_group_or_else_the_whole_match_is_the_uid() -> None:
    assert LineParser(r"UID=(?P<uid>\d+);").feed(b"RSSI=12;UID=0012345678;\n") == ["0012345678"]
    assert LineParser(r"[0-9A-F]{8}").feed(b"card 04A23B9C seen\n") == ["04A23B9C"]


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        (b"no badge here", "no uid in the line"),
        (b"04A23B9C\xff", "not ASCII"),
        (b"Z" * (MAX_LINE_BYTES + 1), f"line longer than {MAX_LINE_BYTES} bytes"),
    ],
)
def test_a_bad_line_is_one_bad_frame_and_the_next_line_is_read(line: bytes, reason: str) -> None:
    items = LineParser().feed(line + b"\n04A23B9C\n")
    assert [frame.reason for frame in bad(items)] == [reason]
    assert uids(items) == ["04A23B9C"]


def test_an_endless_line_is_counted_before_it_ends() -> None:
    parser = LineParser()
    assert len(bad(parser.feed(b"0" * (MAX_LINE_BYTES + 1)))) == 1
    assert parser.feed(b"0" * 10_000) == []
    assert parser.feed(b"\n04A23B9C\n") == ["04A23B9C"]


hex_uid = st.text("0123456789abcdefABCDEF", min_size=4, max_size=32)
line_end = st.sampled_from([b"\r", b"\n", b"\r\n"])
good_line = st.tuples(st.sampled_from(["", "ID:", "\x02", "UID "]), hex_uid, line_end).map(
    lambda pue: (pue[0] + pue[1]).encode() + pue[2]
)
bad_line = st.tuples(st.sampled_from([b"no uid", b"\xffbadge", b"Z" * 300]), line_end).map(b"".join)


@given(lines=st.lists(st.one_of(good_line, bad_line), max_size=20), data=st.data())
def test_lines_in_any_chunks_give_their_uids_and_count_the_bad_ones(
    lines: list[bytes], data: st.DataObject
) -> None:
    stream = b"".join(lines)
    cuts = data.draw(st.lists(st.integers(0, len(stream)), max_size=30))
    items = parse(LineParser(), stream, cuts)
    expected = [_uid_of_good_line(line) for line in lines if not _is_bad_line(line)]
    assert uids(items) == expected
    assert len(bad(items)) == sum(_is_bad_line(line) for line in lines)


def _is_bad_line(line: bytes) -> bool:
    return line.startswith((b"no uid", b"\xff", b"Z"))


def _uid_of_good_line(line: bytes) -> str:
    match = re.search(rb"[0-9A-Fa-f]{4,32}", line)
    assert match is not None
    return match[0].decode().upper()


@given(stream=st.binary(max_size=600), data=st.data())
def test_line_parser_any_bytes_give_only_valid_uids_whatever_the_chunks(
    stream: bytes, data: st.DataObject
) -> None:
    cuts = data.draw(st.lists(st.integers(0, len(stream)), max_size=20))
    items = parse(LineParser(), stream, cuts)
    assert items == LineParser().feed(stream)
    for uid in uids(items):
        assert re.fullmatch(r"[0-9A-F]{4,32}", uid)
        assert uid.encode() in stream.upper()


# --- one read per presentation ---------------------------------------------------------------


def test_presence_one_read_until_the_card_was_away_for_the_gap() -> None:
    presence = Presence(0.3)
    at = [int(s * SECOND) for s in (0, 0.2, 0.45, 0.74, 1.1)]
    assert [presence.is_new("A", t) for t in at] == [True, False, False, False, True]


def test_presence_another_card_is_new_at_once_and_each_keeps_its_own_presence() -> None:
    presence = Presence(0.3)
    seen = [("A", 0.0), ("B", 0.05), ("A", 0.1), ("B", 0.15), ("A", 0.5)]
    assert [presence.is_new(uid, int(s * SECOND)) for uid, s in seen] == [
        True,
        True,
        False,
        False,
        True,
    ]


def test_presence_the_time_spent_handing_a_read_over_counts_as_present() -> None:
    presence = Presence(0.3)
    assert presence.is_new("A", 0)
    presence.still_present_at(1 * SECOND)  # a slow fsync: nobody listened until now
    assert not presence.is_new("A", int(1.1 * SECOND))


# --- readers on real ptys --------------------------------------------------------------------


def test_rdm6300_frames_on_the_port_become_reads(device: SerialDevice) -> None:
    reads = Reads()
    with running(rdm6300(str(device.link)), reads) as reader:
        assert wait_until(lambda: connected(reader))
        before = time.clock_gettime_ns(time.CLOCK_BOOTTIME)
        device.send(encode_frame(CARD) + encode_frame(OTHER))
        assert reads.wait_for(2) == ["0A00BC614E", "1F2E3D4C5B"]
    first = reads.items[0]
    assert (first.reader, first.technology) == ("door", "em4100")
    assert before <= first.monotonic_ns <= time.clock_gettime_ns(time.CLOCK_BOOTTIME)
    assert reader.health().reads == 2


def test_rdm6300_decimal_uids_are_the_number_printed_on_the_card(device: SerialDevice) -> None:
    reads = Reads()
    with running(rdm6300(str(device.link), "decimal"), reads) as reader:
        assert wait_until(lambda: connected(reader))
        device.send(encode_frame(CARD))
        assert reads.wait_for(1) == ["0012345678"]


def test_a_card_left_on_the_reader_is_read_once_and_again_after_it_was_away(
    device: SerialDevice,
) -> None:
    reads = Reads()
    with running(rdm6300(str(device.link)), reads) as reader:
        assert wait_until(lambda: connected(reader))
        for _ in range(10):  # the module repeats the frame while the card lies on it
            device.send(encode_frame(CARD))
            time.sleep(0.05)
        assert reads.wait_for(2, timeout=GAP) == ["0A00BC614E"]
        time.sleep(GAP * 1.5)  # card lifted
        device.send(encode_frame(CARD))
        assert reads.wait_for(2) == ["0A00BC614E", "0A00BC614E"]


def test_noise_on_the_line_is_counted_and_the_reader_keeps_reading(device: SerialDevice) -> None:
    reads = Reads()
    with running(rdm6300(str(device.link)), reads) as reader:
        assert wait_until(lambda: connected(reader))
        device.send(b"noise" + b"\x020A00BC614E98\x03" + b"\x02123" + encode_frame(CARD))
        assert reads.wait_for(1) == ["0A00BC614E"]
        assert reader.health().bad_frames == 3  # noise, bad checksum, cut short
        assert connected(reader)


def test_line_reader_on_a_pty(device: SerialDevice) -> None:
    reads = Reads()
    with running(line_reader(str(device.link)), reads) as reader:
        assert wait_until(lambda: connected(reader))
        device.send(b"04a23b9c\r\n04a23b9c\r\nnot a badge\r\n\xff\xfe\r\nUID 0012345678\r\n")
        assert reads.wait_for(3, timeout=1) == ["04A23B9C", "0012345678"]
        assert reader.health().bad_frames == 2
        assert reads.items[0].technology == "serial-line"


def test_a_pyserial_url_works_as_the_port() -> None:
    with socket.create_server(("127.0.0.1", 0)) as server:
        server.settimeout(5)
        reads = Reads()
        port = server.getsockname()[1]
        with running(rdm6300(f"socket://127.0.0.1:{port}"), reads) as reader:
            peer, _ = server.accept()
            with peer:
                assert wait_until(lambda: connected(reader))
                peer.sendall(encode_frame(OTHER))
                assert reads.wait_for(1) == ["1F2E3D4C5B"]
            assert wait_until(lambda: not connected(reader))  # the peer hung up
            assert "socket" in (reader.health().error or "")


def test_a_port_another_reader_holds_is_not_shared(device: SerialDevice) -> None:
    reads = Reads()
    first, second = rdm6300(str(device.link)), rdm6300(str(device.link), name="thief")
    with running(first, reads):
        assert wait_until(lambda: connected(first))
        with running(second, Reads()):
            assert wait_until(lambda: "lock" in (second.health().error or ""), 2)
            assert second.health().state is ReaderState.RECONNECTING
            device.send(encode_frame(CARD))
            assert reads.wait_for(1) == ["0A00BC614E"]


def test_unplug_is_reported_then_failed_then_replug_reads_again(device: SerialDevice) -> None:
    reads = Reads()
    reader = rdm6300(str(device.link), failed_after=0.5)
    with running(reader, reads):
        assert wait_until(lambda: connected(reader))
        device.send(encode_frame(CARD))
        assert reads.wait_for(1) == ["0A00BC614E"]

        device.unplug()
        assert wait_until(lambda: reader.health().state is ReaderState.RECONNECTING, 2)
        assert (reader.health().error or "").startswith(f"DeviceGoneError: {device.link}: ")
        assert wait_until(lambda: reader.health().state is ReaderState.FAILED, 2)
        assert "could not open port" in (reader.health().error or "")
        assert reader.health().down_since_ns is not None

        device.plug()
        replugged = time.monotonic()
        assert wait_until(lambda: connected(reader), 5)
        assert time.monotonic() - replugged < 5
        assert reader.health().down_since_ns is None
        cards = [bytes([0x0B, 0, 0, 0, n]) for n in range(5)]
        device.send(b"".join(encode_frame(card) for card in [*cards, CARD]))
        expected = ["0A00BC614E", *(card.hex().upper() for card in cards), "0A00BC614E"]
        assert reads.wait_for(7) == expected  # no tap lost once it is back


def test_a_port_that_is_missing_at_start_is_waited_for(tmp_path: Path) -> None:
    reads = Reads()
    reader = rdm6300(str(tmp_path / "reader"), backoff=Backoff(initial=0.05, maximum=0.1))
    with running(reader, reads):
        assert wait_until(lambda: "could not open port" in (reader.health().error or ""), 2)
        assert reader.health().state is ReaderState.RECONNECTING
        device = SerialDevice(tmp_path / "reader")
        try:
            assert wait_until(lambda: connected(reader), 5)
            device.send(encode_frame(CARD))
            assert reads.wait_for(1) == ["0A00BC614E"]
        finally:
            device.unplug()


@pytest.mark.parametrize("plugged", [True, False])
def test_stop_is_prompt_and_leaves_no_thread(device: SerialDevice, plugged: bool) -> None:
    reader = rdm6300(str(device.link), backoff=Backoff(initial=5, maximum=5))
    if not plugged:
        device.unplug()
    reader.start(Reads())
    assert wait_until(lambda: connected(reader) is plugged and reader.health().error != "starting")
    assert len(reader_threads(reader)) == 1
    started = time.monotonic()
    reader.stop()
    assert time.monotonic() - started < 1
    assert reader_threads(reader) == []
    assert reader.health().state is ReaderState.STOPPED


# --- configuration and registry --------------------------------------------------------------


def test_the_registry_builds_both_serial_drivers(state: Path) -> None:
    data = config_data(state)
    data["readers"] = [
        {"name": "a", "driver": "rdm6300", "port": "/dev/serial0", "uid_format": "decimal"},
        {"name": "b", "driver": "serial-line", "port": "socket://x:1", "pattern": "(?P<uid>\\d+)"},
    ]
    config = config_from_dict(data, source="test")
    a, b = (build_reader(entry) for entry in config.readers)
    assert isinstance(a, Rdm6300Reader) and isinstance(b, SerialLineReader)
    assert isinstance(config.readers[0], Rdm6300ReaderConfig)
    assert (a.port, a.baudrate, a.name) == ("/dev/serial0", 9600, "a")
    assert uids(a.new_parser().feed(encode_frame(CARD))) == ["0012345678"]
    assert b.new_parser().feed(b"x 42\n") == ["42"]


def test_a_pattern_that_is_not_a_regular_expression_is_refused(state: Path) -> None:
    data = config_data(state)
    data["readers"] = [{"name": "b", "driver": "serial-line", "port": "/dev/x", "pattern": "(["}]
    with pytest.raises(ConfigError) as refused:
        config_from_dict(data, source="test")
    assert any(e.startswith("readers[0].pattern: ") for e in refused.value.errors), refused.value
    default = SerialLineReaderConfig(name="b", driver="serial-line", port="/dev/x")
    assert default.presence_gap_seconds == 0.5


def test_detect_lists_serial_ports_for_either_serial_driver() -> None:
    for found in detect():
        assert found.driver == "rdm6300/serial-line"
        assert found.path.startswith("/dev/")
        assert found.description


# --- end to end: the daemon process --------------------------------------------------------


def test_frames_on_two_serial_readers_end_as_registrations(state: Path, tmp_path: Path) -> None:
    rdm, line = SerialDevice(tmp_path / "rdm6300"), SerialDevice(tmp_path / "line")
    marie, jan = badges(2)
    workers = [replace(marie, uid="0A00BC614E"), replace(jan, uid="04A23B9C")]
    write_badge_file(state / "badges.csv", workers)
    config = write_config_with_readers(
        state,
        [
            {"name": "entrance", "driver": "rdm6300", "port": str(rdm.link)},
            {"name": "back-door", "driver": "serial-line", "port": str(line.link)},
        ],
        logging={"level": "debug"},
    )
    try:
        with daemon_process(state, config) as daemon:
            assert wait_until(lambda: _reader_states(daemon.request) == ["connected"] * 2, 10)
            rdm.send(b"noise" + encode_frame(CARD) * 3)  # the card lies there: one tap
            line.send(b"ID:04a23b9c\r\n")
            assert wait_until(lambda: len(_registrations(daemon.request)) == 2, 10)
            registered = _registrations(daemon.request)
            assert {(r["badge_uid"], r["reader"], r["type"]) for r in registered} == {
                ("0A00BC614E", "entrance", "IN"),
                ("04A23B9C", "back-door", "IN"),
            }
            status = daemon.request({"cmd": "status"})["status"]
            assert [r["bad_frames"] for r in status["readers"]] == [1, 0]
            assert status["taps"] == {"registered": 2}  # no repeat from the card left there
            assert daemon.stop() == 0
        dropped = [e for e in _log_events(daemon.log()) if e["event"] == "bad frame dropped"]
        assert [(e["reader"], e["reason"]) for e in dropped] == [
            ("entrance", "bytes outside a frame")
        ]
    finally:
        rdm.unplug()
        line.unplug()


def test_the_same_card_on_two_readers_within_the_debounce_is_one_tap(
    state: Path, tmp_path: Path
) -> None:
    """An NFC and a 125 kHz reader side by side, or entrance and back door: the worker who
    presents the card to both (or whose card both see) registers once."""
    first, second = SerialDevice(tmp_path / "left"), SerialDevice(tmp_path / "right")
    [marie] = badges(1)
    write_badge_file(state / "badges.csv", [replace(marie, uid="0A00BC614E")])
    config = write_config_with_readers(
        state,
        [
            {"name": "left", "driver": "rdm6300", "port": str(first.link)},
            {"name": "right", "driver": "rdm6300", "port": str(second.link)},
        ],
        attendance={"debounce_seconds": 30},
    )
    try:
        with daemon_process(state, config) as daemon:
            assert wait_until(lambda: _reader_states(daemon.request) == ["connected"] * 2, 10)
            first.send(encode_frame(CARD))
            second.send(encode_frame(CARD))
            assert wait_until(lambda: sum(_taps(daemon.request).values()) == 2, 10)
            assert _taps(daemon.request) == {"registered": 1, "repeat": 1}
            [registered] = _registrations(daemon.request)
            assert (registered["badge_uid"], registered["type"]) == ("0A00BC614E", "IN")
    finally:
        first.unplug()
        second.unplug()


def _taps(request: Callable[[dict[str, Any]], dict[str, Any]]) -> dict[str, int]:
    counts: dict[str, int] = request({"cmd": "status"})["status"]["taps"]
    return counts


def _reader_states(request: Callable[[dict[str, Any]], dict[str, Any]]) -> list[str]:
    return [reader["state"] for reader in request({"cmd": "status"})["status"]["readers"]]


def _registrations(request: Callable[[dict[str, Any]], dict[str, Any]]) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = request({"cmd": "registrations", "since_ns": 0})["registrations"]
    return found


def _log_events(log: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in log.splitlines() if line.startswith("{")]
