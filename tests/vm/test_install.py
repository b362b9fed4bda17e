"""install.sh on a Debian 12 tree, in a chroot as an image builder runs it: a second run
changes nothing; a broken configuration already in /etc is refused with nothing
installed; --uninstall keeps the site's files and journal, --purge removes them."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.vm.conftest import record
from tests.vm.image import Image, base_root, chroot, chroot_mounts, copy_tree

# What install.sh may touch; /proc, /sys, /dev are the host's (bind mounts).
WATCHED = (
    "/opt", "/usr/local", "/etc/badge-gateway", "/etc/systemd", "/etc/passwd", "/etc/group",
    "/etc/shadow", "/var/lib/badge-gateway",
)  # fmt: skip
INSTALL = ["./install.sh", "--wheels", "/root/wheels"]


@pytest.fixture
def tree(image: Image, tmp_path: Path) -> Iterator[Path]:
    """A fresh Debian 12 tree with the checkout and its wheelhouse in /root."""
    root = tmp_path / "root"
    root.mkdir()
    copy_tree(base_root(), root)
    copy_tree(image.source, _mkdir(root / "root/badge-gateway"))
    copy_tree(image.wheels, _mkdir(root / "root/wheels"))
    with chroot_mounts(root):
        yield root
    subprocess.run(["rm", "-rf", "--one-file-system", str(root)], check=False)


def _mkdir(path: Path) -> Path:
    path.mkdir(parents=True)
    return path


def install(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return chroot(root, [*INSTALL, *args], cwd="/root/badge-gateway", check=False)


def listing(root: Path, *, directory_times: bool = True) -> str:
    """Every watched path with its type, mode, owner, size and modification time (of
    directories too, unless `directory_times` is false: creating and removing a file in a
    directory leaves nothing behind but its time)."""
    files = chroot(
        root, ["find", *WATCHED, "-printf", r"%p %y %m %u:%g %s %T@ %l\n"], check=False
    ).stdout.splitlines()
    if not directory_times:
        files = [line.rsplit(" ", 2)[0] if line.split()[1] == "d" else line for line in files]
    return "\n".join(files)


def test_install_keeps_a_register_in_place_private_and_a_second_run_changes_nothing(
    tree: Path,
) -> None:
    register = tree / "etc/badge-gateway/badges.csv"
    register.parent.mkdir()
    register.write_text("badge_uid,niss,employer,name\n")  # as an image builder left it
    register.chmod(0o644)
    started = time.monotonic()
    first = install(tree)
    took = time.monotonic() - started
    assert first.returncode == 0, first.stderr
    assert register.read_text() == "badge_uid,niss,employer,name\n"
    owner = chroot(tree, ["stat", "-c", "%a %U", "/etc/badge-gateway/badges.csv"]).stdout
    assert owner.split() == ["600", "badge-gateway"]
    before = listing(tree)
    started = time.monotonic()
    second = install(tree)
    again = time.monotonic() - started
    assert second.returncode == 0, second.stderr
    assert "nothing to do" in second.stdout + second.stderr
    assert listing(tree) == before
    # the unit is enabled, as an image builder needs, and not started (no systemd here)
    wants = tree / "etc/systemd/system/multi-user.target.wants/badge-gateway.service"
    assert wants.is_symlink()
    record(f"install.sh --wheels in a chroot: {took:.0f} s; the same again: {again:.1f} s")


def test_a_broken_configuration_already_in_etc_is_refused_and_nothing_is_installed(
    tree: Path,
) -> None:
    etc = tree / "etc/badge-gateway"
    etc.mkdir()
    broken = '[site]\nname = "Site"\ndeclaration = "not a declaration"\n'
    (etc / "gateway.toml").write_text(broken)
    before = listing(tree, directory_times=False)
    result = install(tree)
    assert result.returncode == 1, result
    assert "/etc/badge-gateway/gateway.toml" in result.stderr, result.stderr
    assert "declaration" in result.stderr, result.stderr
    assert "nothing was changed" in result.stderr, result.stderr
    assert listing(tree, directory_times=False) == before
    assert (etc / "gateway.toml").read_text() == broken


def test_uninstall_keeps_the_site_and_the_journal_and_purge_removes_them(tree: Path) -> None:
    assert install(tree).returncode == 0
    journal = tree / "var/lib/badge-gateway/journal.db"
    journal.parent.mkdir(exist_ok=True)
    journal.write_bytes(b"the journal")
    result = chroot(tree, ["./install.sh", "--uninstall"], cwd="/root/badge-gateway", check=False)
    assert result.returncode == 0, result.stderr
    assert not (tree / "opt/badge-gateway").exists()
    assert not (tree / "usr/local/bin/badge-gateway").exists()
    assert not list((tree / "etc/systemd/system").rglob("badge-gateway.service"))
    assert not list((tree / "usr/local/lib").rglob("*badge-gateway*"))  # unit, rules, blacklist
    assert (tree / "etc/badge-gateway/gateway.toml").exists()
    assert journal.read_bytes() == b"the journal"
    result = chroot(tree, ["./install.sh", "--purge"], cwd="/root/badge-gateway", check=False)
    assert result.returncode == 0, result.stderr
    assert not (tree / "etc/badge-gateway").exists()
    assert not journal.exists()
    assert "badge-gateway:" not in (tree / "etc/passwd").read_text()
    assert "badge-gateway:" not in (tree / "etc/group").read_text()
