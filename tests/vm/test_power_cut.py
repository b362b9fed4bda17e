"""Power cuts: QEMU killed at a random moment of a burst of taps, then booted again.

After each boot every tap that was answered "registered" before the cut, at the reader
(the feedback line on the console) or over the control socket (the agent's live reply),
is in the journal exactly once; the evidence chain verifies; and the cut is recorded as an
`unclean-stop` with `power_cut_likely`. BADGE_GATEWAY_POWER_CUTS sets how many cuts (10
here; `scripts/vm-soak` runs 200), BADGE_GATEWAY_POWER_CUT_SEED the random moments.
"""

from __future__ import annotations

import collections
import os
import random
import threading
import time
from dataclasses import dataclass, field

import pytest

from tests.vm import box as guest
from tests.vm.conftest import record
from tests.vm.image import WORKERS
from tests.vm.machine import Machine, MachineError

CUTS = int(os.environ.get("BADGE_GATEWAY_POWER_CUTS", "10"))
SEED = int(os.environ.get("BADGE_GATEWAY_POWER_CUT_SEED", str(time.time_ns() % 1_000_000)))
READER_TAP_EVERY = 0.25

pytestmark = pytest.mark.timeout(300 + CUTS * 180)


@dataclass
class Burst:
    """The registrations the workers were told of before the power went."""

    answered: dict[str, str] = field(default_factory=dict)  # registration id -> uid
    by_channel: collections.Counter[str] = field(default_factory=collections.Counter)
    errors: list[str] = field(default_factory=list)  # what failed before the power went
    power_off: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def answer(self, channel: str, registration_id: str | None, uid: str) -> None:
        if registration_id:
            with self.lock:
                self.answered[registration_id] = uid
                self.by_channel[channel] += 1

    def failed(self, error: Exception) -> None:
        if not self.power_off.is_set():
            self.errors.append(repr(error))


def test_every_answered_tap_survives_power_cuts_exactly_once(machine: Machine) -> None:
    rng = random.Random(SEED)
    record(f"power cuts: {CUTS}, seed {SEED}")
    machine.boot()
    guest.wait_ready(machine)
    answered: dict[str, str] = {}
    by_channel: collections.Counter[str] = collections.Counter()
    extra_found = 0
    for cut in range(1, CUTS + 1):
        burst = tap_until_the_power_goes(machine, rng, cut)
        assert not burst.errors, f"cut {cut}: the taps failed before the power went"
        answered.update(burst.answered)
        by_channel.update(burst.by_channel)
        machine.boot()
        guest.wait_ready(machine)
        rows = guest.registrations(machine)
        found = collections.Counter(row["id"] for row in rows)
        assert all(count == 1 for count in found.values()), "a registration stored twice"
        lost = {rid: uid for rid, uid in answered.items() if found[rid] != 1}
        assert not lost, f"cut {cut}: answered taps missing after the cut: {lost}"
        extra_found = len(rows) - len(answered)
        unclean = [entry for entry in guest.evidence(machine) if entry["kind"] == "unclean-stop"]
        assert len(unclean) == cut, unclean
        assert unclean[-1]["details"]["power_cut_likely"] is True, unclean[-1]
        assert guest.evidence_verifies(machine)
        record(
            f"power cut {cut}/{CUTS}: {len(burst.answered)} taps answered in the burst,"
            f" all {len(answered)} answered so far found once;"
            f" {extra_found} stored whose answer the host had not yet seen"
        )
    # both ways in were exercised: a run that answered nothing would prove nothing
    assert by_channel["reader"] > 0 and by_channel["socket"] > 0, by_channel
    record(
        f"power cuts survived: {CUTS}; taps answered positively {len(answered)},"
        f" found exactly once {len(answered)}; stored without a seen answer {extra_found}"
    )


def tap_until_the_power_goes(machine: Machine, rng: random.Random, cut: int) -> Burst:
    """Taps at the reader and over the control socket at once; the power goes at a random
    moment a few seconds in."""
    burst = Burst()
    offset = (cut * 37) % len(WORKERS)
    uids = [WORKERS[(offset + i) % len(WORKERS)].uid for i in range(len(WORKERS))]
    socket_uids, reader_uids = uids[: len(uids) // 2], uids[len(uids) // 2 :]
    mark = machine.console_mark()
    threads = [
        threading.Thread(target=_tap_over_socket, args=(machine, socket_uids, burst)),
        threading.Thread(target=_tap_at_reader, args=(machine, reader_uids, burst)),
    ]
    for thread in threads:
        thread.start()
    time.sleep(rng.uniform(0.5, 6.0))
    burst.power_off.set()
    machine.power_cut()
    for thread in threads:
        thread.join(timeout=30)
    for line in machine.console_since(mark):
        fields = guest.feedback(line)
        if fields and fields.get("outcome") == "registered":
            burst.answer("reader", fields.get("registration"), fields["badge"])
    return burst


def _tap_over_socket(machine: Machine, uids: list[str], burst: Burst) -> None:
    try:
        for reply in machine.stream("taps", uids=uids, timeout=60):
            outcome = reply.get("reply", {}).get("outcome")
            if outcome and outcome["kind"] == "registered":
                burst.answer("socket", outcome["registration_id"], reply["tap"])
    except (MachineError, OSError) as error:
        burst.failed(error)


def _tap_at_reader(machine: Machine, uids: list[str], burst: Burst) -> None:
    for uid in uids:
        if burst.power_off.wait(READER_TAP_EVERY):
            return
        try:
            machine.badge(uid)
        except (MachineError, OSError) as error:
            burst.failed(error)
            return
