"""The control socket: a Unix socket where `badge-gateway status`, `tap`, `queue` and
`reload` reach the running daemon, one JSON object each way.

`server` accepts connections and dispatches requests to handlers, and holds the client
side (`request`); `status` turns the daemon's state into the JSON those commands show.

May import: models, identifiers, journal, feedback. Not the daemon.
"""

from gateway.control.server import (
    AlreadyRunningError,
    ControlError,
    ControlServer,
    EncodedReply,
    request,
)

__all__ = ["AlreadyRunningError", "ControlError", "ControlServer", "EncodedReply", "request"]
