"""The system tests' agent inside the VM: the host's hands on the box, over virtio-serial.

Runs as root under Debian's python3 (standard library only). One JSON object a line each
way. A request is `{"id": N, "op": ..., ...}`; the reply carries the same id and `"end":
true` on its last line; `taps` streams one line per answered tap before its end, so that
the host knows which taps were answered even when it cuts the power mid-burst.
"""

from __future__ import annotations

import json
import os
import socket
import struct
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

PORT = "/dev/virtio-ports/org.badge-gateway.agent"
CONTROL = "/run/badge-gateway/control.sock"
NTP_EPOCH_OFFSET = 2_208_988_800

Reply = dict[str, Any]


def run(request: dict[str, Any]) -> Iterator[Reply]:
    result = subprocess.run(
        request["argv"],
        capture_output=True,
        text=True,
        timeout=request.get("timeout", 120),
        check=False,
        input=request.get("input"),
        cwd=request.get("cwd"),
    )
    yield {"rc": result.returncode, "stdout": result.stdout, "stderr": result.stderr}


def taps(request: dict[str, Any]) -> Iterator[Reply]:
    """Tap each uid over the control socket, one after the other, as a reader would."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
        conn.settimeout(30)
        conn.connect(CONTROL)
        for uid in request["uids"]:
            reply = _ask(conn, {"cmd": "tap", "uid": uid, "reader": "agent"})
            yield {"tap": uid, "reply": reply, "more": True}
            time.sleep(request.get("pause", 0.0))
    yield {}


def _ask(conn: socket.socket, message: dict[str, Any]) -> Any:
    conn.sendall(json.dumps(message).encode() + b"\n")
    line = b""
    while not line.endswith(b"\n"):
        chunk = conn.recv(65536)
        if not chunk:
            raise ConnectionError("the daemon closed the control socket")
        line += chunk
    return json.loads(line)


def ntp(request: dict[str, Any]) -> Iterator[Reply]:
    """An SNTP server on the loopback, stratum 2, serving this machine's clock plus
    `offset` seconds (the host's true time): what systemd-timesyncd needs to set the clock
    and declare it synchronised, without a network."""
    server = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("127.0.0.1", 123))
    offset = float(request.get("offset", 0.0))
    threading.Thread(target=_serve_ntp, args=(server, offset), daemon=True).start()
    yield {"listening": True}


def _serve_ntp(server: socket.socket, offset: float) -> None:
    while True:
        packet, peer = server.recvfrom(512)
        if len(packet) < 48:
            continue
        received = _ntp_time(time.time() + offset)
        transmit_of_client = packet[40:48]
        version = (packet[0] >> 3) & 0x7
        header = struct.pack(
            "!BBbbII4s", (0 << 6) | (version << 3) | 4, 2, 4, -20, 0x10, 0x10, b"LOCL"
        )
        reply = (
            header
            + received  # reference time
            + transmit_of_client  # origin
            + received
            + _ntp_time(time.time() + offset)
        )
        server.sendto(reply, peer)


def _ntp_time(seconds: float) -> bytes:
    whole = int(seconds) + NTP_EPOCH_OFFSET
    fraction = int((seconds % 1) * 2**32)
    return struct.pack("!II", whole, fraction)


def fill_disk(request: dict[str, Any]) -> Iterator[Reply]:
    """Take every free block of the file system at `path`, the root's reserve included."""
    stat = os.statvfs(request["dir"])
    size = stat.f_bfree * stat.f_frsize
    fd = os.open(request["path"], os.O_CREAT | os.O_WRONLY, 0o600)
    try:
        while size > 0:
            try:
                os.posix_fallocate(fd, 0, size)
                break
            except OSError:
                size -= 1 << 20
    finally:
        os.close(fd)
    yield {"filled": size, "free": os.statvfs(request["dir"]).f_bavail}


OPS: dict[str, Callable[[dict[str, Any]], Iterator[Reply]]] = {
    "run": run,
    "taps": taps,
    "ntp": ntp,
    "fill_disk": fill_disk,
    "ping": lambda request: iter(
        [{"boot_id": _boot_id(), "uptime": _uptime(), "time": time.time()}]
    ),
}


def _boot_id() -> str:
    with open("/proc/sys/kernel/random/boot_id") as file:
        return file.read().strip()


def _uptime() -> float:
    with open("/proc/uptime") as file:
        return float(file.read().split()[0])


def serve(fd: int) -> None:
    with os.fdopen(fd, "rb", closefd=False) as lines:
        for line in lines:
            request = json.loads(line)
            try:
                for reply in OPS[request["op"]](request):
                    more = reply.pop("more", False)
                    _send(fd, {"id": request["id"], **reply, "end": not more})
            except Exception as error:  # the host asked something that failed: tell it
                _send(fd, {"id": request["id"], "error": repr(error), "end": True})


def _send(fd: int, reply: Reply) -> None:
    data = json.dumps(reply).encode() + b"\n"
    while data:
        data = data[os.write(fd, data) :]


def main() -> None:
    for _ in range(600):
        if os.path.exists(PORT):
            break
        time.sleep(0.1)
    serve(os.open(PORT, os.O_RDWR))


if __name__ == "__main__":
    main()
