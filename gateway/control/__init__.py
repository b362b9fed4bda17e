"""The control socket: a Unix socket where `badge-gateway status`, `tap`, `registrations`
and `queue` reach the running daemon, one JSON object each way.

`server` accepts connections (at most MAX_CLIENTS, idle ones dropped within seconds, every
malformed request answered with an error, resource errors logged once a second) and
dispatches requests to handlers, and holds the client side (`request`); `commands` holds
the daemon's handlers; `status` turns the daemon's state into the JSON those commands show;
`view` is `DaemonView`, what they read of the daemon.

May import: models, errors, identifiers, clock, journal, feedback, badges, config, tap,
uplink, drivers. Not the daemon.
"""

from gateway.control.server import ControlServer, EncodedReply, request
from gateway.control.view import ControlJournal, DaemonView
from gateway.errors import AlreadyRunningError, ControlError

__all__ = [
    "AlreadyRunningError",
    "ControlError",
    "ControlJournal",
    "ControlServer",
    "DaemonView",
    "EncodedReply",
    "request",
]
