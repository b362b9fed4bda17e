"""A card in front of an nfcpy `udp` reader, run as its own process: the test presents and
removes cards through stdin and waits for the acknowledgements on stdout.

    python tests/drivers/nfc_card.py [PORT]     (0 or none: any free port)
    -> "ready PORT"
    <- "present 106A 04A1B2C3"  (ISO 14443A, the uid)   or   "present 212F IDM"  (FeliCa)
    -> "presented 04A1B2C3"
    <- "remove"
    -> "removed"                (after the reader has polled the empty field for a while)
    <- "quit" or end of input

nfcpy's udp driver pairs the two ends by port: the card side binds it (LocalTarget +
`ContactlessFrontend.listen`), the reader sends each sense request to it from an unbound
socket. A present card is nfcpy's own card emulation. The empty field keeps the port bound
and answers every request at once with an empty frame, which nfcpy's reader reads as no
card: the udp driver's own "no card" is silence, a 1 s timeout per technology per poll,
where a real chip answers "no target" in milliseconds.
"""

from __future__ import annotations

import contextlib
import select
import socket
import sys
import threading
import time
from dataclasses import dataclass

import nfc
import nfc.clf

# nfcpy's listen answers poll after poll until its timeout, and a timeout falling inside a
# poll breaks that poll: listen long, and end it early when the test changes the card.
LISTEN_SECONDS = 5.0
# "removed" only once the reader has found the field empty in polls spanning this long.
SETTLE_SECONDS = 0.6
SETTLE_REQUESTS = 6
QUIET_SECONDS = 0.02  # no request for this long: the reader is between polls


@dataclass(frozen=True)
class Card:
    technology: str  # "106A" or "212F"
    uid: str  # hex: the 14443A UID or the FeliCa IDm

    def target(self) -> nfc.clf.LocalTarget:
        uid = bytearray.fromhex(self.uid)
        if self.technology == "212F":
            pmm, system_code = bytearray(8), bytearray.fromhex("12FC")
            return nfc.clf.LocalTarget("212F", sensf_res=b"\x01" + uid + pmm + system_code)
        sens_res = b"\x44\x00" if len(uid) > 4 else b"\x04\x00"  # double or single size uid
        return nfc.clf.LocalTarget("106A", sens_res=sens_res, sdd_res=uid, sel_res=b"\x08")


class Field:
    """What the reader finds on its port: a card, or an empty field that says so at once."""

    def __init__(self, port: int) -> None:
        self.card: Card | None = None
        self.quitting = threading.Event()
        self._empty = _bound_socket(port)
        self.port: int = self._empty.getsockname()[1]
        self._clf = nfc.ContactlessFrontend(f"udp:localhost:{self.port}")
        self._removal_pending = False

    def run(self) -> None:
        while not self.quitting.is_set():
            card = self.card
            if card is None:
                self._answer_empty()
            else:
                self._emulate(card)

    def close(self) -> None:
        self._clf.close()
        self._empty.close()

    def present(self, card: Card) -> None:
        self._change(card)

    def remove(self) -> None:
        self._removal_pending = True
        self._change(None)

    def quit(self) -> None:
        self.quitting.set()
        self._change(None)

    def _change(self, card: Card | None) -> None:
        emulating, self.card = self.card, card
        if emulating is not None:
            self._end_listen()

    def _end_listen(self) -> None:
        """A datagram that is not hex makes nfcpy's listen raise (binascii.Error, a
        ValueError): the one way to end a listen before its timeout."""
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
            sender.sendto(b"END zz", ("127.0.0.1", self.port))

    def _emulate(self, card: Card) -> None:
        self._empty.close()  # the port is unbound until listen binds it, a few microseconds
        say(f"presented {card.uid}")
        try:
            while self.card is card and not self.quitting.is_set():
                with contextlib.suppress(ValueError):  # _end_listen
                    self._clf.listen(card.target(), LISTEN_SECONDS)
        finally:
            self._clf.device.mute()  # gives the port back
            self._empty = _bound_socket(self.port)

    def _answer_empty(self) -> None:
        """Until a card is presented; it lands between two polls, not in the middle of one
        (the card would not answer the poll's other technologies: a 1 s timeout each)."""
        started, answered = time.monotonic(), 0
        while not self.quitting.is_set():
            if select.select([self._empty], [], [], QUIET_SECONDS)[0]:
                data, sender = self._empty.recvfrom(1024)
                if not data.startswith(b"RFOFF"):
                    self._empty.sendto(data.split()[0], sender)  # technology, no data
                    answered += 1
            elif self.card is not None:
                return
            settled = answered >= SETTLE_REQUESTS and time.monotonic() - started >= SETTLE_SECONDS
            if self._removal_pending and settled:
                self._removal_pending = False
                say("removed")


def _bound_socket(port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("0.0.0.0", port))  # where nfcpy's listen binds too
    return sock


def say(line: str) -> None:
    print(line, flush=True)


def serve(field: Field) -> None:
    for line in sys.stdin:
        match line.split():
            case ["present", technology, uid]:
                field.present(Card(technology, uid))
            case ["remove"]:
                field.remove()
            case ["quit"]:
                break
            case _:
                say(f"error: {line.strip()!r}")
    field.quit()


def main() -> None:
    field = Field(int(sys.argv[1]) if len(sys.argv) > 1 else 0)
    runner = threading.Thread(target=field.run, name="field")
    runner.start()
    say(f"ready {field.port}")
    serve(field)
    runner.join()
    field.close()


if __name__ == "__main__":
    main()
