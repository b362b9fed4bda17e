"""Which time a registration is sent with (docs/design.md, "The uplink"; time is evidence).

A tap taken while the clock was synchronised is sent with its own time. One taken before
the clock was synchronised is held until it is; then, within the same boot, its time is
re-derived from CLOCK_BOOTTIME, which kept counting; after a reboot that is impossible,
so the best known time is sent and the registration flagged. The original record is
never rewritten: the time sent is stored beside it.
"""

from __future__ import annotations

from dataclasses import dataclass

from gateway.models import ClockSample


@dataclass(frozen=True, slots=True)
class SendTime:
    wall_ns: int
    uncertain: bool  # the clock was never synchronised for this tap's boot
    rederived: bool  # re-derived from the monotonic clock after synchronisation


def send_time(tapped: ClockSample, now: ClockSample) -> SendTime | None:
    """The time to send, or None to hold the registration until the clock is synchronised."""
    if tapped.synced:
        return SendTime(tapped.wall_ns, uncertain=False, rederived=False)
    if not now.synced:
        return None
    if tapped.boot_id == now.boot_id:
        return SendTime(now.wall_at(tapped.monotonic_ns), uncertain=False, rederived=True)
    return SendTime(tapped.wall_ns, uncertain=True, rederived=False)
