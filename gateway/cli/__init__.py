"""`badge-gateway`, the command line: `run` starts the daemon; the other commands check a
configuration or badge file, talk to a running daemon over its control socket, or read the
journal and its evidence.

May import: everything in gateway; nothing in gateway imports it.
"""

from gateway.cli.main import main

__all__ = ["main"]
