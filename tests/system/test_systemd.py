"""The systemd side: the unit file is valid and hardened, its sandbox lets the daemon make
every system call it makes (or refuses one with EPERM, which the daemon reports and lives
with), the notify protocol is spoken."""

from __future__ import annotations

import functools
import json
import os
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import nfc.clf.device

from gateway.evidence import entries
from onss_sim.testing import SimulatorProcess
from tests.support import (
    REPO,
    DaemonProcess,
    badges,
    uplink_section,
    wait_until_delivered,
    write_badge_file,
    write_config,
)

UNIT = REPO / "systemd" / "badge-gateway.service"
NFC_RULES = UNIT.with_name("60-badge-gateway-nfc.rules")
README = REPO / "README.md"
SECCOMP_DENY = Path(__file__).with_name("seccomp_deny.py")
# What the daemon may never do to the clock: set it, step it, or adjust it by the old call.
CLOCK_SETTERS = {"adjtimex", "clock_settime", "clock_settime64", "settimeofday"}


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


def test_unit_is_hardened_as_the_readme_says(tmp_path: Path) -> None:
    """The exposure the README states is the unit's, and a threshold: a line that loosens
    the sandbox fails here until the README says what it costs."""
    stated = re.search(r"exposure (\d+)\.(\d) by `systemd-analyze security", README.read_text())
    assert stated, "the README states the unit's exposure"
    result = subprocess.run(
        [
            "systemd-analyze",
            "security",
            "--offline=yes",
            f"--threshold={stated[1]}{stated[2]}",  # tenths
            str(installed_unit(tmp_path)),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-2000:]
    measured = re.search(
        r"Overall exposure level for badge-gateway.service: (\d+\.\d)", result.stdout
    )
    assert measured and measured[1] == f"{stated[1]}.{stated[2]}", result.stdout[-300:]


def unit_settings(unit: str) -> dict[str, list[str]]:
    """Each setting's values, in order (a setting may be given several times)."""
    settings: dict[str, list[str]] = {}
    for line in unit.splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            name, value = line.split("=", 1)
            settings.setdefault(name, []).append(value)
    return settings


def test_the_unit_lets_the_kernel_clock_source_read_the_clock_and_nothing_set_it() -> None:
    """The "kernel" source reads the NTP state with clock_adjtime, modes = 0 (glibc's
    adjtimex issues the same call; clock_adjtime64 on 32-bit ARM): allowed. Nothing that
    sets the clock is, and no capability would let clock_adjtime change it."""
    unit = UNIT.read_text()
    allowed = allowed_syscalls(unit)
    assert {"clock_adjtime", "clock_adjtime64"} <= allowed
    assert not CLOCK_SETTERS & allowed
    settings = unit_settings(unit)
    assert settings["CapabilityBoundingSet"] == [""]  # no CAP_SYS_TIME: a read, or EPERM
    assert settings["NoNewPrivileges"] == ["yes"]
    assert "ProtectClock" not in settings  # its own deny of @clock would refuse the read
    assert settings["DevicePolicy"] == ["closed"]
    assert not [device for device in settings["DeviceAllow"] if "rtc" in device]


def test_the_unit_leaves_the_boot_id_readable_and_other_processes_hidden() -> None:
    settings = unit_settings(UNIT.read_text())
    assert settings.get("ProcSubset", ["all"]) == ["all"]  # pid would hide /proc/sys
    assert settings["ProtectKernelTunables"] == ["yes"]  # /proc/sys read-only
    assert settings["ProtectProc"] == ["invisible"]


def test_a_call_outside_the_units_filter_fails_with_eperm_instead_of_killing() -> None:
    assert unit_settings(UNIT.read_text())["SystemCallErrorNumber"] == ["EPERM"]


def test_the_unit_lets_the_uplink_lower_its_own_priority() -> None:
    """A system call the unit's filter leaves out is refused (EPERM): the uplink's
    setpriority must be allowed once the unit's filter lines are applied in order, and the
    rest of @resources must stay out."""
    allowed = allowed_syscalls(UNIT.read_text())
    assert {"setpriority", "getpriority"} <= allowed
    assert not {"sched_setscheduler", "setrlimit", "ioprio_set"} & allowed
    assert "read" in allowed and "reboot" not in allowed


# Settings that install a seccomp filter of their own, denying these whatever the allow list
# says (systemd.exec(5)).
IMPLIED_DENIALS = {
    "ProtectClock": "@clock",
    "ProtectKernelModules": "@module",
    "ProtectKernelLogs": "syslog",
    "ProtectHostname": "sethostname setdomainname",
    "PrivateDevices": "@raw-io",
}


def allowed_syscalls(unit: str) -> set[str]:
    """The system calls a unit's SystemCallFilter= lines allow, read as systemd does when the
    first line is an allow list: each later line adds its calls, or removes them after ~;
    then what other settings deny with filters of their own (ProtectClock=yes: @clock)."""
    lines = unit_settings(unit).get("SystemCallFilter", [])
    assert lines and not lines[0].startswith("~"), "the unit starts with an allow list"
    allowed: set[str] = set()
    for line in lines:
        names = set().union(*(syscall_group(token) for token in line.lstrip("~").split()))
        allowed = allowed - names if line.startswith("~") else allowed | names
    settings = unit_settings(unit)
    for setting, denied in IMPLIED_DENIALS.items():
        if settings.get(setting, ["no"])[-1] in ("yes", "true", "1"):
            allowed -= set().union(*(syscall_group(token) for token in denied.split()))
    return allowed


def test_protect_clock_would_deny_the_clock_read_whatever_the_allow_list_says() -> None:
    unit = UNIT.read_text() + "\n[Service]\nProtectClock=yes\n"
    assert not {"clock_adjtime", "adjtimex"} & allowed_syscalls(unit)


def test_every_system_call_the_daemon_makes_is_one_the_unit_allows(
    state: Path, tmp_path: Path
) -> None:
    """strace follows the daemon (and its threads) through a start with the default clock
    sources and no timesyncd flag (a boot without network: the kernel source is read),
    taps, `status`, then the flag and delivery to the ONSS simulator, and a clean stop; each
    call it made must pass the unit's filter. Under the unit a call outside it fails with
    EPERM; an unforeseen one is a bug to fix here or in the unit."""
    assert shutil.which("strace"), "strace is installed by ./dev test"
    workers = badges(2)
    write_badge_file(state / "badges.csv", workers)
    trace = tmp_path / "strace.txt"
    with SimulatorProcess(tmp_path / "onss") as sim:
        config = write_config(
            state, clock={"sources": ["timesyncd", "kernel"]}, uplink=uplink_section(sim)
        )
        daemon = DaemonProcess(config, state / "control.sock", state / "daemon.log")
        daemon.wrapper = ["strace", "-f", "-qq", "-o", str(trace)]
        daemon.start(timeout=90)
        try:
            assert [daemon.tap(worker.uid)["kind"] for worker in workers] == ["registered"] * 2
            status = daemon.request({"cmd": "status"})["status"]
            (state / "synchronized").touch()  # registrations wait for a synchronised clock
            wait_until_delivered(daemon, time.monotonic() + 90)
            os.kill(status["pid"], signal.SIGTERM)  # the daemon itself, not strace
            assert daemon.stop(timeout=60) == 0, daemon.log()[-2000:]
        finally:
            if daemon.process is not None and daemon.process.poll() is None:
                daemon.kill()
    made = set(re.findall(r"^\d+\s+(\w+)\(", trace.read_text(), flags=re.MULTILINE))
    assert made & {"clock_adjtime", "clock_adjtime64"}, "the kernel source was read"
    assert {"connect", "setpriority"} <= made, "the uplink ran"
    outside = made - allowed_syscalls(UNIT.read_text())
    if os.geteuid() == 0:  # SQLite gives root's new -wal/-shm files the database's owner
        outside.discard("fchown")  # with fchown; as User=badge-gateway it never calls it
    assert not outside, f"system calls the unit's filter refuses: {sorted(outside)}"
    assert status["clock"]["sources"][1]["name"] == "kernel"
    assert status["clock"]["sources"][1]["state"] in ("synced", "not synced")


def test_the_daemon_lives_with_its_clock_read_refused_by_the_kernel(state: Path) -> None:
    """What the unit's SystemCallErrorNumber=EPERM does to a call outside its filter, done
    by a real seccomp filter: the kernel source is reported unreadable (status, one
    evidence entry, one log line), counts as not synchronised, and taps are registered."""
    workers = badges(2)
    write_badge_file(state / "badges.csv", workers)
    config = write_config(state, clock={"sources": ["timesyncd", "kernel"]})
    daemon = DaemonProcess(config, state / "control.sock", state / "daemon.log")
    denied = "clock_adjtime,clock_adjtime64,adjtimex"
    daemon.wrapper = [sys.executable, str(SECCOMP_DENY), denied, "--"]
    daemon.start()
    try:
        assert [daemon.tap(worker.uid)["kind"] for worker in workers] == ["registered"] * 2
        clock = daemon.request({"cmd": "status"})["status"]["clock"]
        time.sleep(2.5)  # the evidence watch looks every second
        assert daemon.stop() == 0
    finally:
        if daemon.process is not None and daemon.process.poll() is None:
            daemon.kill()
    reason = "clock_adjtime: Operation not permitted (EPERM)"
    assert clock["synced"] is False
    assert clock["sources"] == [
        {"name": "timesyncd", "state": "not synced", "reason": None},
        {"name": "kernel", "state": "unreadable", "reason": reason},
    ]
    lines = [json.loads(line) for line in daemon.log().splitlines() if line.startswith("{")]
    said = [line for line in lines if line["event"].startswith("clock source unreadable")]
    assert len(said) == 1 and said[0]["reason"] == reason
    conn = sqlite3.connect(f"file:{state / 'journal.db'}?mode=ro", uri=True)
    try:
        found = [e for e in entries(conn) if e.kind == "clock-source-unreadable"]
        synced = conn.execute("SELECT clock_synced FROM registrations").fetchall()
    finally:
        conn.close()
    assert [entry.details for entry in found] == [{"source": "kernel", "reason": reason}]
    assert synced == [(0,), (0,)]


def test_without_the_boot_id_the_daemon_refuses_to_start_saying_why(state: Path) -> None:
    """The first fault found under systemd: ProcSubset=pid mounts a /proc without /proc/sys.
    The same mount here: one line that says what is missing and why it matters, exit 1."""
    assert shutil.which("unshare"), "unshare (util-linux) is needed"
    write_badge_file(state / "badges.csv", badges(1))
    daemon = DaemonProcess(write_config(state), state / "control.sock", state / "daemon.log")
    daemon.wrapper = [
        *("unshare", "--mount", "--propagation", "private", "sh", "-c"),
        'mount -t proc -o subset=pid proc /proc && exec "$@"',
        "--",
    ]
    daemon.spawn()
    assert daemon.process is not None
    assert daemon.process.wait(timeout=60) == 1
    log = daemon.log()
    assert "Traceback" not in log, log
    [line] = [json.loads(line) for line in log.splitlines() if '"cannot start"' in line]
    assert line["error"].startswith("the kernel's boot id cannot be read"), line
    assert "/proc/sys/kernel/random/boot_id" in line["error"]
    assert "ProcSubset=pid" in line["error"]
    assert not (state / "journal.db").exists()  # stopped before opening anything


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
            # `systemctl status` shows what a technician checks first
            (line,) = [m for m in messages if m.startswith(b"STATUS=")][:1]
            assert line.startswith(b"STATUS=0 registered, 0 waiting, uplink off"), line
            assert b"readers 0/0 up, clock NOT synced" in line, line
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
