"""The nfcpy driver against nfcpy's own `udp` device: a card emulated by nfcpy in another
process (tests/drivers/nfc_card.py), real UDP datagrams on loopback, the real daemon at the end."""

from __future__ import annotations

import errno
import os
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any, cast

import nfc
import nfc.clf
import pytest

from drivers.base import BadgeRead, ReaderState
from drivers.device import Backoff
from drivers.nfc import NfcReader, PolledPresence, Technology, detect, uid_of
from gateway.config import ConfigError
from tests.support import (
    badges,
    daemon_process,
    make_config_with_readers,
    write_badge_file,
    write_config_with_readers,
)

CARD_SCRIPT = Path(__file__).with_name("nfc_card.py")
MARIE = "04A1B2C3D4E5F6"  # a double-size (7 byte) ISO 14443A uid
JAN = "A1B2C3D4"
FELICA = "0123456789ABCDEF"
GAP = 0.2  # the presence gap the readers here use; the card script settles for longer
QUICK = Backoff(initial=0.05, maximum=0.5)
SECOND = 1_000_000_000


def eventually(condition: Callable[[], bool], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return condition()


class CardField:
    """tests/drivers/nfc_card.py: the udp port a reader polls, where the test presents cards."""

    def __init__(self, port: int = 0) -> None:
        self.process = subprocess.Popen(
            [sys.executable, str(CARD_SCRIPT), str(port)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            bufsize=1,
        )
        self._lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._pump, name="card-field-stdout", daemon=True).start()
        self.port = int(self._expect("ready").split()[1])
        self.path = f"udp:localhost:{self.port}"

    def present(self, uid: str, technology: str = "106A") -> None:
        self._send(f"present {technology} {uid}")
        self._expect(f"presented {uid}")

    def remove(self) -> None:
        """Returns once the reader has polled the empty field for longer than GAP."""
        self._send("remove")
        self._expect("removed")

    def kill(self) -> None:
        self.process.kill()
        self.process.wait(timeout=5)

    def close(self) -> None:
        if self.process.poll() is None:
            self._send("quit")
            self.process.wait(timeout=5)

    def _send(self, line: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(line + "\n")
        self.process.stdin.flush()

    def _expect(self, start: str, timeout: float = 10.0) -> str:
        line = self._lines.get(timeout=timeout)
        assert line.startswith(start), line
        return line

    def _pump(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self._lines.put(line.strip())


@contextmanager
def card_field(port: int = 0) -> Iterator[CardField]:
    field = CardField(port)
    try:
        yield field
    finally:
        field.close()


class Reads:
    """What a reader hands to the daemon, as the test sees it."""

    def __init__(self) -> None:
        self._queue: queue.Queue[BadgeRead] = queue.Queue()

    def __call__(self, read: BadgeRead) -> None:
        self._queue.put(read)

    def next(self, timeout: float = 5.0) -> BadgeRead:
        return self._queue.get(timeout=timeout)

    def next_uid(self, timeout: float = 5.0) -> str:
        return self.next(timeout).uid

    def none_within(self, seconds: float) -> bool:
        try:
            extra = self._queue.get(timeout=seconds)
        except queue.Empty:
            return True
        raise AssertionError(f"unexpected read {extra}")


@contextmanager
def reading(reader: NfcReader) -> Iterator[Reads]:
    reads = Reads()
    reader.start(reads)
    try:
        yield reads
    finally:
        reader.stop()


def udp_reader(field: CardField, **options: Any) -> NfcReader:
    options = {"presence_gap": GAP, "backoff": QUICK, **options}
    return NfcReader("entrance", field.path, **options)


def reader_threads() -> list[str]:
    return [thread.name for thread in threading.enumerate() if thread.name.startswith("reader-")]


# --- identifiers and presence -----------------------------------------------------------


def test_each_technology_is_identified_in_upper_case_hex() -> None:
    pupi, application, protocol = "1A2B3C4D", "00000000", "718185"
    idm, pmm = FELICA.lower(), "0000000000000000"
    assert uid_of(nfc.clf.RemoteTarget("106A", sdd_res=bytearray.fromhex(MARIE))) == MARIE
    sensb_res = bytearray.fromhex("50" + pupi + application + protocol)
    assert uid_of(nfc.clf.RemoteTarget("106B", sensb_res=sensb_res)) == pupi
    sensf_res = bytearray.fromhex("01" + idm + pmm + "12fc")
    assert uid_of(nfc.clf.RemoteTarget("212F", sensf_res=sensf_res)) == FELICA
    topaz = nfc.clf.RemoteTarget("106A", sens_res=bytearray.fromhex("0C00"))  # Type 1: no uid
    assert uid_of(topaz) is None


def test_only_polls_that_miss_a_card_remove_it() -> None:
    presence = PolledPresence(gap_seconds=0.5)
    assert presence.is_new(JAN, 0)
    assert not presence.is_new(JAN, 60 * SECOND)  # lying there a minute, no poll missed it
    presence.missed(61 * SECOND)
    assert not presence.is_new(JAN, 62 * SECOND)  # one missed poll, however long ago
    presence.missed(63 * SECOND)
    presence.missed(63 * SECOND + SECOND // 4)  # missed for 0.25 s: not yet gone
    assert not presence.is_new(JAN, 64 * SECOND)
    presence.missed(65 * SECOND)
    presence.missed(65 * SECOND + SECOND // 2)  # missed for 0.5 s: gone
    assert presence.is_new(JAN, 66 * SECOND)
    assert presence.is_new(MARIE, 66 * SECOND)  # another card took its place


# --- reading cards over nfcpy's udp device ------------------------------------------------


def test_a_card_is_read_once_however_long_it_stays_and_again_when_presented_again() -> None:
    with card_field() as field, reading(udp_reader(field)) as reads:
        field.present(MARIE)
        assert reads.next_uid() == MARIE
        assert reads.none_within(1.5)  # about ten polls found it still there
        field.remove()
        field.present(MARIE)
        assert reads.next_uid() == MARIE
        assert reads.none_within(0.5)


def test_two_cards_are_two_reads() -> None:
    with card_field() as field, reading(udp_reader(field)) as reads:
        field.present(MARIE)
        assert reads.next_uid() == MARIE
        field.present(JAN)  # Marie's card taken away and Jan's laid down at once
        assert reads.next_uid() == JAN
        assert reads.none_within(0.5)


def test_a_felica_card_is_read_by_its_idm() -> None:
    with card_field() as field, reading(udp_reader(field, technologies=["212F"])) as reads:
        field.present(FELICA, technology="212F")
        read = reads.next()
        assert (read.uid, read.technology) == (FELICA, "felica")


def test_a_read_carries_the_reader_the_technology_and_the_time_it_was_polled() -> None:
    with card_field() as field, reading(udp_reader(field)) as reads:
        before = time.clock_gettime_ns(time.CLOCK_BOOTTIME)
        field.present(JAN)
        read = reads.next()
        after = time.clock_gettime_ns(time.CLOCK_BOOTTIME)
    assert (read.uid, read.reader, read.technology) == (JAN, "entrance", "iso14443a")
    assert before <= read.monotonic_ns <= after


@pytest.mark.parametrize("card", [None, MARIE], ids=["empty field", "card on the reader"])
def test_stop_is_prompt_and_leaves_no_reader_thread(card: str | None) -> None:
    with card_field() as field:
        if card is not None:
            field.present(card)
        reader = udp_reader(field)
        reader.start(Reads())
        assert eventually(lambda: reader.health().state is ReaderState.CONNECTED)
        time.sleep(0.3)  # polling
        started = time.monotonic()
        reader.stop()
        assert time.monotonic() - started < 1.0
    assert reader_threads() == []
    assert reader.health().state is ReaderState.STOPPED


# --- readers that go away -------------------------------------------------------------------


def test_udp_peer_gone_and_back_is_a_card_gone_and_back() -> None:
    """nfcpy's udp reader sends from an unbound socket and never hears the ICMP "port
    unreachable": a peer that is gone is only a silent field, never a failing device."""
    with card_field() as field:
        reader = udp_reader(field, technologies=["106A"])
        with reading(reader) as reads:
            field.present(MARIE)
            assert reads.next_uid() == MARIE
            field.kill()
            assert reads.none_within(1.5)
            assert reader.health().state is ReaderState.CONNECTED
            with card_field(field.port) as back:
                back.present(MARIE)
                assert reads.next_uid() == MARIE  # the card came back: a new presentation


class Plug:
    """The narrowest seam for a USB reader unplugged and plugged in again, which nfcpy's udp
    device cannot express: unplugging closes the real frontends (nfcpy's sense then raises
    its own OSError ENODEV) and opening fails with ENODEV, as nfcpy's does with no reader."""

    def __init__(self) -> None:
        self.plugged = True
        self._opened: list[nfc.ContactlessFrontend] = []

    def open(self, path: str) -> nfc.ContactlessFrontend:
        if not self.plugged:
            raise OSError(errno.ENODEV, os.strerror(errno.ENODEV))
        frontend = nfc.ContactlessFrontend(path)
        self._opened.append(frontend)
        return frontend

    def unplug(self) -> None:
        self.plugged = False
        for frontend in self._opened:
            frontend.close()

    def replug(self) -> None:
        self.plugged = True


def test_an_unplugged_reader_is_reported_and_reads_again_once_plugged_back() -> None:
    plug = Plug()
    with card_field() as field:
        reader = udp_reader(field, open_frontend=plug.open, failed_after=0.5)
        with reading(reader) as reads:
            field.present(MARIE)
            assert reads.next_uid() == MARIE
            plug.unplug()
            assert eventually(lambda: reader.health().state is ReaderState.RECONNECTING, 2)
            assert "No such device" in (reader.health().error or "")
            assert eventually(lambda: reader.health().state is ReaderState.FAILED, 2)
            field.present(JAN)  # tapped while the reader is unplugged
            plug.replug()
            assert eventually(lambda: reader.health().state is ReaderState.CONNECTED, 5)
            assert reads.next_uid() == JAN  # the card lying there is read once it is back
            field.remove()
            field.present(MARIE)
            assert reads.next_uid() == MARIE
            assert reads.none_within(0.5)
        assert reader.health().reads == 3


def test_a_path_with_no_reader_behind_it_keeps_retrying() -> None:
    reader = NfcReader("entrance", "tty:AMA97:pn532", backoff=QUICK)
    with reading(reader):
        assert eventually(lambda: "No such device" in (reader.health().error or ""), 2)
        assert reader.health().state is ReaderState.RECONNECTING


# nfcpy's udp device senses Type A at 106, 212 and 424 kbps only.
UNSUPPORTED = cast(Technology, "848A")


def test_a_technology_the_reader_cannot_sense_is_left_out() -> None:
    with card_field() as field:
        reader = udp_reader(field, technologies=[UNSUPPORTED, "106A"])
        with reading(reader) as reads:
            field.present(JAN)
            assert reads.next_uid() == JAN
            assert reader.health().state is ReaderState.CONNECTED


def test_a_reader_that_senses_none_of_its_technologies_says_so() -> None:
    with card_field() as field:
        reader = udp_reader(field, technologies=[UNSUPPORTED])
        with reading(reader):
            assert eventually(lambda: "Unsupported" in (reader.health().error or ""), 2)


def test_signal_is_silent_on_a_reader_without_led_or_buzzer() -> None:
    with card_field() as field:
        reader = udp_reader(field)
        reader.signal(True)  # not connected yet: nothing to drive
        with reading(reader) as reads:
            assert eventually(lambda: reader.health().state is ReaderState.CONNECTED)
            reader.signal(True)
            reader.signal(False)
            field.present(JAN)
            assert reads.next_uid() == JAN


def test_detect_lists_only_nfc_candidates_and_returns_at_once() -> None:
    started = time.monotonic()
    found = detect()
    assert time.monotonic() - started < 2.0
    assert all(device.driver == "nfc" for device in found)
    assert all(device.path.startswith(("usb:", "tty:")) for device in found)


# --- configuration and the daemon ---------------------------------------------------------


def test_the_configuration_names_known_technologies_only(state: Path) -> None:
    entry = {"name": "entrance", "driver": "nfc", "path": "usb"}
    for technologies in ([], ["106A", "424F"]):
        with pytest.raises(ConfigError, match=r"readers\[0\]\.technologies"):
            make_config_with_readers(state, [], [{**entry, "technologies": technologies}])


def test_a_card_on_an_nfc_reader_ends_in_the_journal(state: Path) -> None:
    marie = replace(badges(1)[0], uid=MARIE)
    write_badge_file(state / "badges.csv", [marie])
    with card_field() as field:
        reader = {"name": "entrance", "driver": "nfc", "path": field.path, "technologies": ["106A"]}
        config = write_config_with_readers(state, [reader])
        with daemon_process(state, config) as daemon:
            field.present(MARIE)
            assert eventually(lambda: len(registrations(daemon.request)) == 1, 10)
            time.sleep(1.0)  # the card stays: still one tap
            [registration] = registrations(daemon.request)
            status = daemon.request({"cmd": "status"})["status"]
            assert daemon.stop() == 0
    assert (registration["badge_uid"], registration["reader"]) == (MARIE, "entrance")
    assert registration["type"] == "IN"
    [entrance] = status["readers"]
    assert (entrance["state"], entrance["reads"]) == ("connected", 1)


def registrations(request: Callable[[dict[str, Any]], dict[str, Any]]) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = request({"cmd": "registrations", "since_ns": 0})["registrations"]
    return found
