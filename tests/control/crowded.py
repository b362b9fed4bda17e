"""A control socket in a process that runs out of file descriptors when told to, for the
EMFILE tests of test_server.py: `python -m tests.control.crowded SOCKET spare|nospare`.

It serves `status`, takes every descriptor its (lowered) RLIMIT_NOFILE allows and says
`exhausted` on stdout; SIGUSR1 gives them all back (`freed`), SIGTERM stops it. Its log is
the daemon's, JSON lines on stderr.
"""

from __future__ import annotations

import asyncio
import errno
import os
import resource
import signal
import sys
from pathlib import Path
from typing import Any

from gateway.control import ControlServer
from gateway.system.logs import configure

LIMIT = 256


async def status(request: dict[str, Any]) -> dict[str, Any]:
    return {"status": "fine"}


def exhaust(hoard: list[int]) -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(LIMIT, hard), hard))
    for _ in range(LIMIT):
        try:
            hoard.append(os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC))
        except OSError as error:
            if error.errno != errno.EMFILE:
                raise
            return
    raise AssertionError(f"no EMFILE after {LIMIT} descriptors")


def release(hoard: list[int]) -> None:
    while hoard:
        os.close(hoard.pop())
    print("freed", flush=True)


async def main(path: Path, spare: bool) -> None:
    configure(fmt="json", stream=sys.stderr)
    server = ControlServer(path, {"status": status}, spare_descriptor=spare)
    await server.start()
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    hoard: list[int] = []
    loop.add_signal_handler(signal.SIGUSR1, release, hoard)
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    exhaust(hoard)
    print("exhausted", flush=True)
    await stop.wait()
    await server.close()


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1]), sys.argv[2] == "spare"))
