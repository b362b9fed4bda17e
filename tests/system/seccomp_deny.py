"""Run a command with some system calls refused by the kernel with EPERM, as a unit's
SystemCallFilter= refuses them with SystemCallErrorNumber=EPERM: a real seccomp filter,
no mock. `python tests/seccomp_deny.py NAME[,NAME...] -- COMMAND [ARG...]`

Names this machine has no number for (clock_adjtime64 on a 64-bit one) are left out.
"""

from __future__ import annotations

import ctypes
import os
import platform
import sys

# uname -m: (AUDIT_ARCH_*, the system calls' numbers)
MACHINES: dict[str, tuple[int, dict[str, int]]] = {
    "x86_64": (0xC000003E, {"adjtimex": 159, "clock_adjtime": 305}),
    "aarch64": (0xC00000B7, {"adjtimex": 171, "clock_adjtime": 266}),
    "armv7l": (0x40000028, {"adjtimex": 124, "clock_adjtime": 372, "clock_adjtime64": 405}),
}
_LD_W_ABS, _JEQ_K, _RET_K = 0x20, 0x15, 0x06
_ALLOW, _ERRNO_EPERM = 0x7FFF0000, 0x00050000 | 1
_PR_SET_NO_NEW_PRIVS, _PR_SET_SECCOMP, _SECCOMP_MODE_FILTER = 38, 22, 2


class _Filter(ctypes.Structure):
    _fields_ = [
        ("code", ctypes.c_ushort),
        ("jt", ctypes.c_ubyte),
        ("jf", ctypes.c_ubyte),
        ("k", ctypes.c_uint32),
    ]


class _Program(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.POINTER(_Filter))]


def program(arch: int, numbers: list[int]) -> list[tuple[int, int, int, int]]:
    """Another architecture: allowed; one of `numbers`: EPERM; anything else: allowed."""
    count = len(numbers)
    return [
        (_LD_W_ABS, 0, 0, 4),  # seccomp_data.arch
        (_JEQ_K, 0, count + 1, arch),
        (_LD_W_ABS, 0, 0, 0),  # seccomp_data.nr
        *((_JEQ_K, count - index, 0, number) for index, number in enumerate(numbers)),
        (_RET_K, 0, 0, _ALLOW),
        (_RET_K, 0, 0, _ERRNO_EPERM),
    ]


def deny(names: list[str]) -> None:
    """Install the filter on this process (and what it executes), for good."""
    machine = platform.machine()
    if machine not in MACHINES:
        raise SystemExit(f"seccomp_deny: no system call numbers for {machine}")
    arch, known = MACHINES[machine]
    steps = program(arch, [known[name] for name in names if name in known])
    filters = (_Filter * len(steps))(*(_Filter(*step) for step in steps))
    prog = _Program(len(steps), filters)
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_NO_NEW_PRIVS)")
    if libc.prctl(_PR_SET_SECCOMP, _SECCOMP_MODE_FILTER, ctypes.byref(prog), 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_SECCOMP)")


def main(argv: list[str]) -> None:
    names, separator, *command = argv
    if separator != "--" or not command:
        raise SystemExit(__doc__)
    deny(names.split(","))
    os.execvp(command[0], command)


if __name__ == "__main__":
    main(sys.argv[1:])
