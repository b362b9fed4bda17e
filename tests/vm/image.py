"""The box's disk image: Debian 12 from Debian's packages, the product installed by install.sh.

Two layers. The base (debootstrap, a trimmed initramfs, the kernel as an ELF that QEMU boots
directly) is slow to build and changes only with its package list: it is cached under
`CACHE`, keyed by what goes in. The product layer is made for each test session from a copy
of the base: the checkout's wheels, `./install.sh --wheels` in a chroot (as an image builder
such as pi-gen runs it), and the test fixtures (the guest agent, the ONSS simulator's unit,
a configuration whose reader is the VM's second UART). Then `mkfs.ext4 -d` turns the tree
into a raw disk image, without a loop mount.
"""

from __future__ import annotations

import hashlib
import lzma
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.support import DECLARATION, EMPLOYER, Badge, badges, write_badge_file

CACHE = Path(os.environ.get("BADGE_GATEWAY_VM_CACHE", "/var/cache/badge-gateway-tests"))
SUITE = "bookworm"
MIRROR = os.environ.get("BADGE_GATEWAY_DEBIAN_MIRROR", "http://deb.debian.org/debian")
# What a Raspberry Pi OS Lite image has that matters here, plus a kernel for QEMU. The
# product's own Debian packages (python3-venv, libusb, ca-certificates) are in it too, so
# that install.sh --wheels needs no network; install.sh still checks and would install them.
BASE_PACKAGES = (
    "systemd",
    "systemd-sysv",
    "systemd-timesyncd",
    "udev",
    "kmod",
    "linux-image-amd64",
    "initramfs-tools",
    "python3",
    "python3-venv",
    "libusb-1.0-0",
    "ca-certificates",
)
# Only what the VM's disk and console need: a smaller initramfs unpacks faster under TCG.
INITRAMFS_MODULES = ("virtio_pci", "virtio_blk", "virtio_console", "ext4")
BASE_RECIPE_VERSION = "1"
IMAGE_SIZE = "3G"

REPO = Path(__file__).resolve().parents[2]
GUEST = Path(__file__).with_name("guest")
SIM_PORT = 8443
SIM_DIR = "/var/lib/onss-sim"
WORKERS: tuple[Badge, ...] = tuple(badges(200))
READER_NAME = "door-uart"


@dataclass(frozen=True)
class BootFiles:
    kernel: Path  # an uncompressed vmlinux: QEMU boots it through its PVH entry point
    initrd: Path


@dataclass(frozen=True)
class Image:
    disk: Path  # raw ext4, the root file system
    boot: BootFiles
    release: str  # where install.sh's /opt/badge-gateway/venv points
    source: Path  # the tree that was installed, and its wheels
    wheels: Path


def log(message: str) -> None:
    print(f"[system image] {message}", file=sys.stderr, flush=True)


# The base layer -------------------------------------------------------------------------


def base_key() -> str:
    recipe = "\n".join([SUITE, *BASE_PACKAGES, *INITRAMFS_MODULES, BASE_RECIPE_VERSION])
    return hashlib.sha256(recipe.encode()).hexdigest()[:16]


def base_root() -> Path:
    """The cached base tree, built on first use (debootstrap: a few minutes, ~900 MB)."""
    root = CACHE / f"base-{base_key()}"
    if (root / ".complete").exists():
        return root
    CACHE.mkdir(parents=True, exist_ok=True)
    building = root.with_name(root.name + ".building")
    # an interrupted build may have left the host's /dev, /proc, /sys mounted in it
    subprocess.run(["umount", "-R", "-l", str(building)], capture_output=True, check=False)
    subprocess.run(["rm", "-rf", "--one-file-system", str(building)], check=True)
    log(f"building the Debian base in {root} (debootstrap; cached for later runs)")
    subprocess.run(
        [
            "debootstrap",
            "--variant=minbase",
            f"--include={','.join(BASE_PACKAGES)}",
            SUITE,
            str(building),
            MIRROR,
        ],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    _trim_initramfs(building)
    _extract_vmlinux(building)
    (building / ".complete").touch()
    building.rename(root)
    return root


def _trim_initramfs(root: Path) -> None:
    conf = root / "etc/initramfs-tools"
    (conf / "conf.d/badge-gateway-vm").write_text("MODULES=list\n")
    (conf / "modules").write_text("\n".join(INITRAMFS_MODULES) + "\n")
    with chroot_mounts(root):
        chroot(root, ["update-initramfs", "-u", "-k", "all"])


def _extract_vmlinux(root: Path) -> None:
    """The bzImage's xz payload is the kernel's ELF image, whose PVH entry QEMU jumps to:
    no real-mode setup and no decompression under emulation (about 4 s a boot)."""
    (vmlinuz,) = sorted((root / "boot").glob("vmlinuz-*"))
    packed = vmlinuz.read_bytes()
    start = packed.index(b"\xfd7zXZ\x00")
    elf = lzma.LZMADecompressor().decompress(packed[start:])
    assert elf[:4] == b"\x7fELF", "the kernel's payload is not an ELF image"
    (root / "boot/vmlinux").write_bytes(elf)


def boot_files(root: Path) -> BootFiles:
    (initrd,) = sorted((root / "boot").glob("initrd.img-*"))
    return BootFiles(kernel=root / "boot/vmlinux", initrd=initrd)


# Chroots --------------------------------------------------------------------------------


@contextmanager
def chroot_mounts(root: Path) -> Iterator[None]:
    mounted: list[Path] = []
    try:
        for name in ("proc", "sys", "dev"):
            target = root / name
            subprocess.run(["mount", "--bind", f"/{name}", str(target)], check=True)
            mounted.append(target)
        yield
    finally:
        for target in reversed(mounted):
            subprocess.run(["umount", "-l", str(target)], check=False)


def chroot(
    root: Path, argv: Sequence[str], *, cwd: str = "/", check: bool = True
) -> subprocess.CompletedProcess[str]:
    """A command in the chroot with a clean environment: the host's PIP_*, SSL_* and
    VIRTUAL_ENV variables point at host paths."""
    env = {
        "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "HOME": "/root",
        "LANG": "C.UTF-8",
        "DEBIAN_FRONTEND": "noninteractive",
    }
    script = f'cd {cwd} && exec "$@"'
    result = subprocess.run(
        ["chroot", str(root), "/bin/sh", "-c", script, "sh", *argv],
        env=env,
        check=False,
        capture_output=True,
        text=True,
    )
    return _check(result) if check else result


def copy_tree(source: Path, target: Path) -> None:
    subprocess.run(["cp", "-a", "--reflink=auto", f"{source}/.", str(target)], check=True)


# The product layer ----------------------------------------------------------------------


def source_tree(ref: str | None, into: Path) -> Path:
    """The checkout as git knows it (tracked files, with uncommitted changes) or a commit."""
    into.mkdir(parents=True)
    if ref is None:
        files = subprocess.run(
            ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            cwd=REPO,
            check=True,
            capture_output=True,
        ).stdout.split(b"\0")
        for name in filter(None, files):
            source = REPO / os.fsdecode(name)
            if source.is_file():
                (into / os.fsdecode(name)).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(source, into / os.fsdecode(name))
    else:
        archive = subprocess.run(
            ["git", "archive", "--format=tar", ref], cwd=REPO, check=True, capture_output=True
        ).stdout
        subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into


def wheelhouse(tree: Path, into: Path) -> Path:
    """The wheels of `tree` and its dependencies, made by its `./dev wheels` as for a fleet
    without internet (pip's cache makes a second build quick)."""
    if "wheels)" not in (tree / "dev").read_text():
        shutil.copy2(REPO / "dev", tree / "dev")  # a release from before `./dev wheels`
    _check(subprocess.run(["./dev", "wheels", str(into)], cwd=tree, capture_output=True, text=True))
    return into


def _check(result: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    if result.returncode != 0:
        raise RuntimeError(
            f"{result.args} exited {result.returncode}:\n{result.stdout[-3000:]}"
            f"\n{result.stderr[-3000:]}"
        )
    return result


def build_image(
    workdir: Path, *, ref: str | None = None, extra: Mapping[str, Path] | None = None
) -> Image:
    """A disk image with the product of `ref` (default: this checkout) installed and
    enabled, as it would leave an image builder; `extra` trees are copied to /root/NAME."""
    root = workdir / "root"
    root.mkdir(parents=True)
    base = base_root()
    copy_tree(base, root)
    tree = source_tree(ref, workdir / "src")
    wheels = wheelhouse(tree, workdir / "wheels")
    shutil.copytree(tree, root / "root/badge-gateway")
    shutil.copytree(wheels, root / "root/wheels")
    if not (tree / "install.sh").exists():
        # A release from before install.sh: installed the way the current script does it.
        shutil.copy2(REPO / "install.sh", root / "root/badge-gateway/install.sh")
    for name, path in (extra or {}).items():
        shutil.copytree(path, root / "root" / name)
    _prepare_site(root)
    with chroot_mounts(root):
        started = time.monotonic()
        chroot(root, ["./install.sh", "--wheels", "/root/wheels"], cwd="/root/badge-gateway")
        log(f"install.sh --wheels in a chroot: {time.monotonic() - started:.0f} s")
        release = chroot(root, ["readlink", "/opt/badge-gateway/venv"]).stdout.strip()
    _install_fixtures(root)
    disk = workdir / "disk.img"
    subprocess.run(
        ["mkfs.ext4", "-q", "-L", "badge-box", "-d", str(root), str(disk), IMAGE_SIZE], check=True
    )
    boot = BootFiles(*(_keep(path, workdir) for path in boot_files(root).__dict__.values()))
    shutil.rmtree(root)
    return Image(disk=disk, boot=boot, release=release, source=tree, wheels=wheels)


def _keep(path: Path, workdir: Path) -> Path:
    kept = workdir / path.name
    shutil.copy2(path, kept)
    return kept


def _prepare_site(root: Path) -> None:
    """What the technician puts in place before installing: the configuration, the badge
    register, the ONSS key as a credential. The ONSS here is the simulator, inside the VM."""
    from onss_sim.__main__ import client_id_in
    from onss_sim.pki import ensure_pki

    sim = root / SIM_DIR.lstrip("/")
    sim.mkdir(parents=True)
    pki = ensure_pki(sim)
    client_id = client_id_in(sim)
    sim.chmod(0o755)
    pki.ca_cert.chmod(0o644)
    etc = root / "etc/badge-gateway"
    (etc / "credentials").mkdir(parents=True, mode=0o700)
    shutil.copy2(pki.client_key, etc / "credentials/onss-client-key.pem")
    (etc / "credentials/onss-client-key.pem").chmod(0o600)
    write_badge_file(etc / "badges.csv", WORKERS)
    (etc / "gateway.toml").write_text(
        (GUEST / "gateway.toml")
        .read_text()
        .format(
            declaration=DECLARATION,
            client_id=client_id,
            port=SIM_PORT,
            sim_dir=SIM_DIR,
            reader=READER_NAME,
        )
    )
    assert EMPLOYER in (etc / "badges.csv").read_text()


def _install_fixtures(root: Path) -> None:
    """The test's own parts: the guest agent, the simulator's unit, the journal's log on
    the serial console, timesyncd pointed at the NTP server the agent can start."""
    lib = root / "usr/local/lib/bgtest"
    lib.mkdir(parents=True)
    shutil.copy2(GUEST / "agent.py", lib / "agent.py")
    units = root / "etc/systemd/system"
    wants = units / "multi-user.target.wants"
    wants.mkdir(exist_ok=True)
    for unit in ("bgtest-agent.service", "onss-sim.service"):
        shutil.copy2(GUEST / unit, units / unit)
        (wants / unit).unlink(missing_ok=True)
        (wants / unit).symlink_to(f"/etc/systemd/system/{unit}")
    for name, directory in (
        ("journald-console.conf", "etc/systemd/journald.conf.d"),
        ("timesyncd-local.conf", "etc/systemd/timesyncd.conf.d"),
    ):
        (root / directory).mkdir(parents=True, exist_ok=True)
        shutil.copy2(GUEST / name, root / directory / name)
    # the console is the host's log; a login prompt on it would only add noise
    (units / "serial-getty@ttyS0.service").symlink_to("/dev/null")
    (root / "etc/hostname").write_text("badge-box\n")
