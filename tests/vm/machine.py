"""One box as QEMU runs it: boot, talk to it, cut its power.

The VM has no network device. Three channels reach it:
- the serial console (ttyS0): the kernel's and journald's lines, live (`console`);
- the second UART (ttyS1): the badge reader; the host writes one uid a line to it;
- a virtio-serial port: the guest agent (tests/vm/guest/agent.py) takes requests.
A power cut is SIGKILL to QEMU: what the guest kept in its page cache is lost, what it
had written to its virtual disk stays, as on a disk without a volatile write cache (a
missing fsync shows; a missing disk flush under it would not). The disk is a qcow2
overlay of the image's raw file, so each machine starts from the image as built and
leaves it untouched.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import json
import os
import re
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from tests.vm.image import Image

BOOT_TIMEOUT = 240.0
KVM_PROBE_TIMEOUT = 10.0  # a working KVM gets its kernel to the root mount in 1-2 s


class MachineError(Exception):
    """The VM did not do what the test needed (boot, answer, stop)."""


class Machine:
    def __init__(self, image: Image, workdir: Path, name: str = "box") -> None:
        self.image = image
        self.dir = workdir / name
        self.dir.mkdir(parents=True, exist_ok=True)
        self.disk = self.dir / "disk.qcow2"
        subprocess.run(
            [
                "qemu-img", "create", "-q", "-f", "qcow2",
                "-b", str(image.disk), "-F", "raw", str(self.disk),
            ],
            check=True,
        )  # fmt: skip
        self.console_log = self.dir / "console.log"
        self._process: subprocess.Popen[bytes] | None = None
        self._lines: list[str] = []
        self._lines_changed = threading.Condition()
        self._agent: _Agent | None = None
        self._uart: socket.socket | None = None
        self._console_reader: threading.Thread | None = None
        self.boots = 0
        self.started_at = 0.0

    # Power ---------------------------------------------------------------------------

    def boot(self, *, clock_offset_s: float = 0.0) -> None:
        """Power on and wait until the guest agent answers. The real-time clock starts at
        the host's time plus `clock_offset_s`: a box whose clock is off after a power cut."""
        if self.running:
            raise MachineError("the machine is already on")
        self.boots += 1
        sockets = {name: self.dir / f"{name}.sock" for name in ("agent", "uart")}
        for path in sockets.values():
            path.unlink(missing_ok=True)
        append = "root=/dev/vda rw console=ttyS0 quiet systemd.show_status=0"
        command = [
            "qemu-system-x86_64", *accelerator(self.image.boot.kernel), "-m", "1024",
            "-smp", "2", "-display", "none", "-no-reboot", "-nic", "none", "-monitor", "none",
            "-kernel", str(self.image.boot.kernel), "-initrd", str(self.image.boot.initrd),
            "-append", append,
            "-rtc", f"base={_rtc_base(clock_offset_s)},clock=host",
            "-drive", f"file={self.disk},if=virtio,format=qcow2,cache=writeback",
            "-serial", "stdio",
            "-chardev", f"socket,id=uart,path={sockets['uart']},server=on,wait=off",
            "-serial", "chardev:uart",
            "-device", "virtio-serial",
            "-chardev", f"socket,id=agent,path={sockets['agent']},server=on,wait=off",
            "-device", "virtserialport,chardev=agent,name=org.badge-gateway.agent",
        ]  # fmt: skip
        self.started_at = time.monotonic()
        self._process = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
        self._console_reader = threading.Thread(
            target=self._read_console, args=(self._process,), daemon=True
        )
        self._console_reader.start()
        try:
            self._uart = _connect(sockets["uart"])
            self._agent = _Agent(_connect(sockets["agent"]))
            self.call("ping", timeout=BOOT_TIMEOUT)
        except BaseException:
            self.power_cut()  # a guest that did not come up must not spin for the session
            raise

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def power_cut(self) -> None:
        """Pull the plug: QEMU killed, nothing flushed."""
        if self._process is None:
            raise MachineError("the machine is off")
        self._process.send_signal(signal.SIGKILL)
        self._process.wait(timeout=30)
        self._disconnect()

    def wait_off(self, timeout: float = 120.0) -> None:
        """Wait for the guest to power off or reboot (QEMU exits: -no-reboot)."""
        if self._process is None:
            return
        try:
            self._process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.power_cut()
            raise MachineError(f"the guest did not stop within {timeout} s") from None
        self._disconnect()

    def shutdown(self) -> None:
        if not self.running:
            return
        with contextlib.suppress(MachineError, OSError):
            self.call("run", argv=["systemctl", "poweroff"], timeout=10)
        with contextlib.suppress(MachineError):
            self.wait_off(60)

    def _disconnect(self) -> None:
        for channel in (self._agent, self._uart):
            if channel is not None:
                with contextlib.suppress(OSError):
                    channel.close()
        self._agent = self._uart = None
        self._process = None
        if self._console_reader is not None:
            self._console_reader.join(timeout=10)  # every line QEMU wrote is in the log

    # The console ---------------------------------------------------------------------

    def _read_console(self, process: subprocess.Popen[bytes]) -> None:
        assert process.stdout is not None
        with self.console_log.open("ab") as log:
            log.write(f"\n===== boot {self.boots} =====\n".encode())
            for raw in process.stdout:
                log.write(raw)
                log.flush()
                with self._lines_changed:
                    self._lines.append(raw.decode(errors="replace").rstrip("\r\n"))
                    self._lines_changed.notify_all()

    def console_mark(self) -> int:
        with self._lines_changed:
            return len(self._lines)

    def console_since(self, mark: int) -> list[str]:
        with self._lines_changed:
            return self._lines[mark:]

    def wait_console(self, pattern: str, *, since: int = 0, timeout: float = 60.0) -> str:
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self._lines_changed:
            while True:
                for line in self._lines[since:]:
                    if regex.search(line):
                        return line
                since = len(self._lines)
                left = deadline - time.monotonic()
                if left <= 0:
                    raise MachineError(f"no console line matching {pattern!r} in {timeout} s")
                self._lines_changed.wait(left)

    # The reader and the agent ---------------------------------------------------------

    def badge(self, uid: str) -> None:
        """A badge held to the reader on the VM's second UART."""
        if self._uart is None:
            raise MachineError("the machine is off")
        self._uart.sendall(uid.encode() + b"\r\n")

    def call(self, op: str, *, timeout: float = 120.0, **fields: Any) -> dict[str, Any]:
        (reply,) = self.stream(op, timeout=timeout, **fields)
        return reply

    def stream(self, op: str, *, timeout: float = 120.0, **fields: Any) -> Iterator[dict[str, Any]]:
        if self._agent is None:
            raise MachineError("the machine is off")
        # the guest's own limit (a command's run time), and the host's a little later
        return self._agent.request(op, timeout + 30, {**fields, "timeout": timeout})

    def sh(self, *argv: str, timeout: float = 120.0, check: bool = True) -> str:
        """A command in the guest, as root; its standard output."""
        reply = self.call("run", argv=list(argv), timeout=timeout)
        if check and reply["rc"] != 0:
            raise MachineError(f"{argv} exited {reply['rc']}: {reply['stderr'][-2000:]}")
        return str(reply["stdout"])

    def python(self, code: str, *args: str, timeout: float = 120.0) -> Any:
        """Python in the guest (Debian's python3, as root); what it prints, as JSON."""
        return json.loads(self.sh("python3", "-c", code, *args, timeout=timeout))

    def show(self, unit: str, *properties: str) -> dict[str, str]:
        text = self.sh("systemctl", "show", unit, *(f"--property={name}" for name in properties))
        return dict(line.split("=", 1) for line in text.splitlines() if "=" in line)

    def wait_for(self, what: str, check: Any, *, timeout: float = 120.0, every: float = 1.0) -> Any:
        """Poll `check()` until it returns something true; bounded in time."""
        deadline = time.monotonic() + timeout
        while True:
            value = check()
            if value:
                return value
            if time.monotonic() > deadline:
                raise MachineError(f"{what}: not within {timeout} s (last: {value!r})")
            time.sleep(every)


class _Agent:
    def __init__(self, conn: socket.socket) -> None:
        self._conn = conn
        self._file = conn.makefile("rb")
        self._ids = itertools.count(1)
        self._lock = threading.Lock()

    def request(self, op: str, timeout: float, fields: dict[str, Any]) -> Iterator[dict[str, Any]]:
        with self._lock:
            ident = next(self._ids)
            message = {"id": ident, "op": op, **fields}
            self._conn.sendall(json.dumps(message).encode() + b"\n")
            deadline = time.monotonic() + timeout
            while True:
                self._conn.settimeout(max(0.1, deadline - time.monotonic()))
                try:
                    line = self._file.readline()
                except (TimeoutError, OSError) as error:
                    raise MachineError(f"agent: no answer to {op} in {timeout} s") from error
                if not line:
                    raise MachineError(f"agent: the guest went away during {op}")
                reply = json.loads(line)
                if reply.get("id") != ident:
                    continue  # a late answer to a request that timed out
                if "error" in reply:
                    raise MachineError(f"agent: {op} failed in the guest: {reply['error']}")
                end = reply.pop("end")
                reply.pop("id")
                yield reply
                if end:
                    return

    def close(self) -> None:
        self._conn.close()


@functools.cache
def accelerator(kernel: Path) -> tuple[str, ...]:
    """KVM where it runs a guest, else TCG, QEMU's own translator (Debian boots in about
    25 s with two vCPUs). BADGE_GATEWAY_VM_ACCEL=kvm|tcg decides without a probe."""
    chosen = os.environ.get("BADGE_GATEWAY_VM_ACCEL") or ("kvm" if _kvm_boots(kernel) else "tcg")
    return (
        ("-accel", "kvm", "-cpu", "host") if chosen == "kvm" else ("-accel", "tcg", "-cpu", "max")
    )


def _kvm_boots(kernel: Path) -> bool:
    """Whether the kernel gets as far as looking for its root file system under KVM. On
    the cloud VMs this is developed on, /dev/kvm opens but a guest stalls (or KVM's
    instruction emulator fails on the kernel's first cmpxchg16b: "KVM internal error")."""
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        return False
    command = [
        "qemu-system-x86_64", "-accel", "kvm", "-cpu", "host", "-m", "256", "-display", "none",
        "-no-reboot", "-nic", "none", "-monitor", "none", "-serial", "stdio",
        "-kernel", str(kernel), "-append", "console=ttyS0 panic=-1",
    ]  # fmt: skip
    probe = subprocess.Popen(
        command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    timer = threading.Timer(KVM_PROBE_TIMEOUT, probe.kill)
    timer.start()
    try:
        assert probe.stdout is not None
        for raw in probe.stdout:
            if b"KVM internal error" in raw:
                return False
            if b"VFS: Unable to mount root" in raw or b"Kernel panic" in raw:
                return True
        return False
    finally:
        timer.cancel()
        probe.kill()
        probe.wait()


def _rtc_base(offset_s: float) -> str:
    moment = datetime.now(UTC) + timedelta(seconds=offset_s)
    return moment.strftime("%Y-%m-%dT%H:%M:%S")


def _connect(path: Path, timeout: float = 30.0) -> socket.socket:
    deadline = time.monotonic() + timeout
    while True:
        conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            conn.connect(str(path))
            return conn
        except OSError:
            conn.close()
            if time.monotonic() > deadline:
                raise MachineError(f"QEMU did not open {path}") from None
            time.sleep(0.05)
