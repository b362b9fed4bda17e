"""The box's operating system, as the daemon meets it: systemd's notifications and
watchdog (`sdnotify`), the uplink's background thread at a lower CPU priority
(`background`), structured logs with NISS numbers masked (`logs`), and private keys read
from files or systemd credentials (`credentials`).

`credentials` is imported by its module path where a key is loaded, not from here: it
brings cryptography, which the daemon does not load unless the uplink or signing needs it.

May import: the standard library and third-party packages only.
"""

from gateway.system.background import BackgroundLoop
from gateway.system.sdnotify import notify, systemd_notifies, watchdog_interval

__all__ = ["BackgroundLoop", "notify", "systemd_notifies", "watchdog_interval"]
