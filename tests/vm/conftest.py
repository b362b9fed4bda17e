"""Fixtures of the system tests: the box's image, built once a session, and machines."""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.vm.image import Image, build_image, log
from tests.vm.machine import Machine

TOOLS = ("debootstrap", "qemu-system-x86_64", "qemu-img", "mkfs.ext4")
FIGURES = Path(os.environ.get("BADGE_GATEWAY_VM_FIGURES", "/tmp/badge-gateway-vm-figures.txt"))


def record(figure: str) -> None:
    """A measured figure for docs/benchmarks.md, printed and kept in FIGURES."""
    log(figure)
    with FIGURES.open("a") as file:
        file.write(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} {figure}\n")


@pytest.fixture(scope="session")
def vm_workdir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="badge-gateway-vm-", dir=os.environ.get("TMPDIR")))
    yield path
    if os.environ.get("BADGE_GATEWAY_VM_KEEP"):
        log(f"kept {path}")
    else:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def image(vm_workdir: Path) -> Image:
    """This checkout, installed by its install.sh into Debian 12, on a disk image."""
    if os.geteuid() != 0:
        pytest.fail("the system tests need root: debootstrap, chroot and mount build the image")
    missing = [tool for tool in TOOLS if shutil.which(tool) is None]
    if missing:
        pytest.fail(f"missing {', '.join(missing)}: `./dev test` installs them (as root)")
    started = time.monotonic()
    built = build_image(vm_workdir / "image")
    record(f"image with this checkout installed: {time.monotonic() - started:.0f} s to build")
    return built


@pytest.fixture
def machine(image: Image, vm_workdir: Path, request: pytest.FixtureRequest) -> Iterator[Machine]:
    box = Machine(image, vm_workdir, name=request.node.name[:48])  # its sockets: 108 bytes
    try:
        yield box
    finally:
        if box.running:
            box.power_cut()
