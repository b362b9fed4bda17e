"""`badge-gateway`, the command line: `run` starts the daemon; the other commands check a
configuration or badge file, talk to a running daemon over its control socket, or read the
journal and its evidence.

`main` builds the parser and dispatches; each command group has its module: `live` (`run`,
and `tap`, `status`, `registrations` asked of the running daemon), `checks` (`config check`,
`badges check`), `queue`, `readers`, `evidence`, `journal`, `demo`. `render` turns the
daemon's status into text; `options` holds the options several commands share (--config,
--socket, --journal) and what they resolve to.

May import: everything in gateway; nothing in gateway imports it.
"""

from gateway.cli.main import main

__all__ = ["main"]
