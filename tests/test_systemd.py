"""The systemd side: the unit file is valid and hardened, the notify protocol is spoken."""

from __future__ import annotations

import functools
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import nfc.clf.device

from tests.support import DaemonProcess, badges, write_badge_file, write_config

UNIT = Path(__file__).parent.parent / "systemd" / "badge-gateway.service"
NFC_RULES = UNIT.with_name("60-badge-gateway-nfc.rules")


def installed_unit(tmp_path: Path) -> Path:
    """The unit as installed, pointing at the badge-gateway of this environment."""
    entry_point = Path(sys.executable).with_name("badge-gateway")
    assert entry_point.exists(), entry_point
    unit = tmp_path / "badge-gateway.service"
    unit.write_text(
        UNIT.read_text().replace("/opt/badge-gateway/venv/bin/badge-gateway", str(entry_point))
    )
    return unit


def test_unit_file_verifies(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    assert analyze, "systemd-analyze is installed by ./dev test"
    result = subprocess.run(
        [analyze, "verify", str(installed_unit(tmp_path))],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "badge-gateway.service" not in result.stderr, result.stderr


def test_unit_is_hardened(tmp_path: Path) -> None:
    result = subprocess.run(
        [
            "systemd-analyze",
            "security",
            "--offline=yes",
            "--threshold=30",
            str(installed_unit(tmp_path)),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-2000:]
    assert "Overall exposure level" in result.stdout


def test_the_unit_lets_the_uplink_lower_its_own_priority() -> None:
    """systemd kills a service (SIGSYS) that makes a system call its filter leaves out: the
    uplink's setpriority must be allowed once the unit's filter lines are applied in order,
    and the rest of @resources must stay out."""
    allowed = allowed_syscalls(UNIT.read_text())
    assert {"setpriority", "getpriority"} <= allowed
    assert not {"sched_setscheduler", "setrlimit", "ioprio_set"} & allowed
    assert "read" in allowed and "reboot" not in allowed


def allowed_syscalls(unit: str) -> set[str]:
    """The system calls a unit's SystemCallFilter= lines allow, read as systemd does when the
    first line is an allow list: each later line adds its calls, or removes them after ~."""
    lines = [
        line.split("=", 1)[1] for line in unit.splitlines() if line.startswith("SystemCallFilter=")
    ]
    assert lines and not lines[0].startswith("~"), "the unit starts with an allow list"
    allowed: set[str] = set()
    for line in lines:
        names = set().union(*(syscall_group(token) for token in line.lstrip("~").split()))
        allowed = allowed - names if line.startswith("~") else allowed | names
    return allowed


@functools.cache
def syscall_group(token: str) -> frozenset[str]:
    """A system call, or a group's calls as this machine's systemd-analyze lists them."""
    if not token.startswith("@"):
        return frozenset({token})
    listed = subprocess.run(
        ["systemd-analyze", "syscall-filter", token], capture_output=True, text=True, check=True
    ).stdout.splitlines()[1:]  # the first line names the group
    names = [line.strip() for line in listed if line.strip() and not line.strip().startswith("#")]
    return frozenset().union(*(syscall_group(name) for name in names))


def test_daemon_speaks_the_notify_protocol(state: Path, tmp_path: Path) -> None:
    write_badge_file(state / "badges.csv", badges(1))
    notify_path = tmp_path / "notify.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as notify:
        notify.bind(str(notify_path))
        notify.settimeout(10)
        daemon = DaemonProcess(write_config(state), state / "control.sock", state / "daemon.log")
        os.environ.update(NOTIFY_SOCKET=str(notify_path), WATCHDOG_USEC="200000")
        try:
            daemon.start()
        finally:
            del os.environ["NOTIFY_SOCKET"], os.environ["WATCHDOG_USEC"]
        try:
            messages: list[bytes] = []
            deadline = time.monotonic() + 10
            while messages.count(b"WATCHDOG=1") < 3 and time.monotonic() < deadline:
                messages.append(notify.recv(4096))
            assert b"READY=1" in messages
            assert messages.count(b"WATCHDOG=1") >= 3
            daemon.signal(signal.SIGTERM)
            while b"STOPPING=1" not in messages and time.monotonic() < deadline:
                messages.append(notify.recv(4096))
            assert b"STOPPING=1" in messages
            assert daemon.stop() == 0
        finally:
            if daemon.process is not None and daemon.process.poll() is None:
                daemon.kill()


def test_the_udev_rules_let_the_service_open_every_usb_reader_nfcpy_supports() -> None:
    rules = [line for line in NFC_RULES.read_text().splitlines() if line and line[0] != "#"]
    granted = set()
    for rule in rules:
        match = re.fullmatch(
            r'SUBSYSTEM=="usb", ATTRS\{idVendor\}=="([0-9a-f]{4})",'
            r' ATTRS\{idProduct\}=="([0-9a-f]{4})", GROUP="plugdev", MODE="0660"',
            rule,
        )
        assert match, rule
        granted.add((int(match[1], 16), int(match[2], 16)))
    assert granted == set(nfc.clf.device.usb_device_map)
    assert "plugdev" in UNIT.read_text().split("SupplementaryGroups=")[1].splitlines()[0]
