"""`DaemonView`: what the control socket's commands and `status` read of the running daemon.

gateway.daemon.Daemon is the one implementation; control never imports it (the daemon
imports control), and a test may hand the commands a smaller stand-in.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol

from gateway.journal import RegistrationReads, StatusReads

if TYPE_CHECKING:
    from drivers.base import BadgeRead, Reader
    from gateway.badges import BadgeRegisterWatcher
    from gateway.config import GatewayConfig
    from gateway.feedback import TapOutcome
    from gateway.tap import TapPipeline
    from gateway.uplink.connectivity import Connectivity
    from gateway.uplink.service import Held


class ControlJournal(StatusReads, RegistrationReads, Protocol):
    """The daemon's journal as the control socket uses it: what `status`, `registrations`
    and `queue list` read, and the writes of `queue retry` and `queue confirm`."""

    def requeue(self, registration_id: str) -> bool: ...

    def retry_unconfirmed(self, registration_id: str) -> bool: ...

    def confirm(
        self, registration_id: str, onss_id: int | str, late_after_ns: int
    ) -> int | str | None: ...


class DaemonView(Protocol):
    """The running daemon, read-only; the parts start-up opens are None until it has."""

    @property
    def config(self) -> GatewayConfig: ...

    @property
    def started_at(self) -> float: ...  # time.time() at start

    @property
    def readers(self) -> Sequence[Reader]: ...

    @property
    def journal(self) -> ControlJournal | None: ...

    @property
    def badges(self) -> BadgeRegisterWatcher | None: ...

    @property
    def pipeline(self) -> TapPipeline | None: ...

    @property
    def connectivity(self) -> Connectivity | None: ...  # None: no uplink delivers

    @property
    def uplink_error(self) -> str | None: ...  # why the uplink could not start

    def fleet_status(self) -> dict[str, Any]: ...  # the fleet link: enabled, state, cause...

    async def held_at_the_onss(self, onss_id: int | str) -> Held | None:
        """What the ONSS holds under its id, asked by the uplink; NoLookupError when it
        cannot be asked (CIaO, or no uplink), another UplinkError when the call failed."""
        ...

    async def tap(self, read: BadgeRead) -> TapOutcome:
        """Run a read down the tap pipeline as a reader would; ControlError while the daemon
        is not accepting taps."""
        ...
