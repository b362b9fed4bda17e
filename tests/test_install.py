"""install.sh's refusals and release ids, and the journal commands an upgrade runs.

What needs a root file system (installing, upgrading, uninstalling) runs in a chroot or the
VM (tests/vm/); here install.sh runs as `nobody` wherever a check could let it through,
so that it can never install anything on the machine running the tests.
"""

from __future__ import annotations

import os
import platform
import shutil
import sqlite3
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from gateway import __version__
from gateway.journal import Journal
from gateway.journal.file import MIGRATIONS, connect, statements
from tests.support import REPO, a_registration, insert_before_version_8, write_config

INSTALL = REPO / "install.sh"
# What a tarball of the project for a box holds.
TREE_PARTS = [
    "install.sh",
    "pyproject.toml",
    "README.md",
    "gateway",
    "drivers",
    "onss_sim",
    "systemd",
    "config",
]


def as_nobody() -> list[str]:
    """The prefix that runs a command as `nobody` (nothing when the tests do not run as
    root): install.sh can then never install on the test machine."""
    return (
        ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"]
        if os.getuid() == 0
        else []
    )


def install_sh(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """install.sh run as `nobody` (as this user when the tests do not run as root)."""
    command = [*as_nobody(), str(INSTALL), *args]
    return subprocess.run(
        command,
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin", **(env or {})},
        check=False,
        timeout=60,
        cwd="/",
    )


@pytest.fixture
def shared() -> Iterator[Path]:
    """A directory `nobody` can read (pytest's tmp_path is private to its user)."""
    path = Path(tempfile.mkdtemp(prefix="badge-gateway-install-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path)


def problems(result: subprocess.CompletedProcess[str]) -> list[str]:
    return [
        line.removeprefix("install.sh: cannot install: ")
        for line in result.stderr.splitlines()
        if line.startswith("install.sh: cannot install: ")
    ]


def os_release(directory: Path, text: str) -> dict[str, str]:
    path = directory / "os-release"
    path.write_text(text)
    path.chmod(0o644)
    return {"BADGE_GATEWAY_OS_RELEASE": str(path)}


def test_install_refuses_to_run_without_root() -> None:
    result = install_sh()
    assert result.returncode == 1, result.stderr
    assert "must run as root (sudo ./install.sh)" in problems(result)
    assert result.stderr.splitlines()[-1] == "install.sh: nothing was changed"


def test_uninstall_refuses_to_run_without_root() -> None:
    for option in ("--uninstall", "--purge"):
        result = install_sh(option)
        assert result.returncode == 1
        assert "cannot uninstall: must run as root" in result.stderr


@pytest.mark.parametrize(
    "text",
    [
        'ID=ubuntu\nVERSION_CODENAME=noble\nPRETTY_NAME="Ubuntu 24.04"\n',
        "ID=debian\nVERSION_CODENAME=bullseye\n",
        'ID="raspbian"\nVERSION_CODENAME="trixie"\n',
        "NAME=unknown\n",
    ],
)
def test_install_refuses_a_system_other_than_bookworm(shared: Path, text: str) -> None:
    result = install_sh(env=os_release(shared, text))
    assert result.returncode == 1
    refused = [line for line in problems(result) if "bookworm" in line]
    assert len(refused) == 1, result.stderr  # one line for the one problem
    assert str(shared / "os-release") in refused[0]


@pytest.mark.parametrize("system", ["debian", "raspbian"])
def test_debian_and_raspberry_pi_os_bookworm_pass_the_system_check(
    shared: Path, system: str
) -> None:
    result = install_sh(env=os_release(shared, f'ID={system}\nVERSION_CODENAME="bookworm"\n'))
    assert result.returncode == 1  # nobody is still not root
    assert not [line for line in problems(result) if "bookworm" in line], result.stderr


def test_every_problem_is_listed_at_once(shared: Path) -> None:
    key = shared / "not-a-key.pem"
    key.write_text("hello\n")
    key.chmod(0o644)
    result = install_sh(
        "--wheels",
        str(shared / "missing"),
        "--onss-key",
        str(key),
        "--upgrade",
        env=os_release(shared, "ID=ubuntu\nVERSION_CODENAME=noble\n"),
    )
    found = problems(result)
    assert result.returncode == 1
    assert len(found) >= 4, result.stderr
    assert any("root" in line for line in found)
    assert any("ubuntu" in line for line in found)
    assert any(f"--wheels {shared / 'missing'}: no such directory" in line for line in found)
    assert any("not a PEM private key" in line for line in found)


def test_a_wheelhouse_without_wheels_or_for_another_machine_is_refused(shared: Path) -> None:
    empty = shared / "empty"
    empty.mkdir(mode=0o755)
    assert any("no wheel (*.whl)" in line for line in problems(install_sh("--wheels", str(empty))))

    other = {"x86_64": "aarch64"}.get(platform.machine(), "x86_64")
    foreign = shared / "foreign"
    foreign.mkdir(mode=0o755)
    (foreign / f"evdev-1.7.1-cp311-cp311-linux_{other}.whl").write_bytes(b"")
    (foreign / "setuptools-80.0.0-py3-none-any.whl").write_bytes(b"")
    found = problems(install_sh("--wheels", str(foreign)))
    assert any(f"evdev-1.7.1-cp311-cp311-linux_{other}.whl is not for this box" in f for f in found)


def test_a_relative_wheelhouse_is_read_from_where_install_sh_was_started(shared: Path) -> None:
    (shared / "wheels").mkdir(mode=0o755)
    result = subprocess.run(
        [*as_nobody(), str(INSTALL), "--wheels", "wheels"],
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin"},
        cwd=shared,
        check=False,
    )
    assert any(f"--wheels {shared}/wheels: no wheel" in line for line in problems(result))


def test_unknown_options_print_the_usage_and_exit_2() -> None:
    for args in (["--frobnicate"], ["--wheels"], ["--uninstall", "--wheels", "/tmp"]):
        result = install_sh(*args)
        assert result.returncode == 2, args
        assert "usage: sudo ./install.sh" in result.stderr


def test_help_describes_every_option() -> None:
    result = install_sh("--help")
    assert result.returncode == 0
    for option in ("--upgrade", "--wheels DIR", "--onss-key FILE", "--uninstall", "--purge"):
        assert option in result.stdout
    assert "/opt/badge-gateway/releases/ID" in result.stdout
    assert "Exit status" in result.stdout


def copy_tree(into: Path) -> Path:
    into.mkdir(mode=0o755)
    for part in TREE_PARTS:
        source = REPO / part
        if source.is_dir():
            shutil.copytree(source, into / part, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(source, into / part)
    return into


def release_id(tree: Path) -> str:
    result = subprocess.run(
        [str(tree / "install.sh"), "--release-id"],
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin"},
        check=True,
    )
    return result.stdout.strip()


def test_the_release_id_is_the_version_and_a_hash_of_the_tree(tmp_path: Path) -> None:
    """The same files make the same release wherever they are (a re-run is a no-op); any
    change to what is installed makes another; bytecode and git do not count."""
    first = copy_tree(tmp_path / "first")
    second = copy_tree(tmp_path / "second")
    ident = release_id(first)
    assert ident.startswith(f"{__version__}-") and len(ident) == len(__version__) + 13
    assert release_id(second) == ident
    (second / "gateway" / "__pycache__").mkdir()
    (second / "gateway" / "__pycache__" / "cli.cpython-311.pyc").write_bytes(b"\0")
    (second / ".git").mkdir()
    assert release_id(second) == ident
    (second / "systemd" / "badge-gateway.service").write_text("[Unit]\n")
    assert release_id(second) != ident


# ---------------------------------------------------------------------------------------
# The journal commands install.sh runs with the new release, as the service's user.


def badge_gateway(*args: str, prefix: Sequence[str] = ()) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*prefix, sys.executable, "-m", "gateway", *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )


def old_journal(path: Path, version: int, *, conflict: bool = False) -> None:
    """A journal as a release of schema `version` left it, with two registrations; with
    `conflict`, a table in the way of the last migration."""
    conn = connect(path, read_only=False)
    for number, script in enumerate(MIGRATIONS[:version], start=1):
        for statement in statements(script):
            conn.execute(statement)
        conn.execute(f"PRAGMA user_version={number}")
    for _ in range(2):
        insert_before_version_8(conn, a_registration())
    if conflict:
        conn.execute("CREATE TABLE acknowledgements (conflict INTEGER)")
    conn.close()


def user_version(path: Path) -> int:
    with sqlite3.connect(path) as conn:
        return int(conn.execute("PRAGMA user_version").fetchone()[0])


def test_journal_path_is_the_configured_one(state: Path) -> None:
    config = write_config(state)
    result = badge_gateway("--config", str(config), "journal", "path")
    assert result.stdout.strip() == str(state / "journal.db")


def test_journal_migrate_brings_an_old_journal_to_the_latest_schema(state: Path) -> None:
    config = write_config(state)
    old_journal(state / "journal.db", 3)
    result = badge_gateway("--config", str(config), "journal", "migrate")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith(f"schema version 3 -> {len(MIGRATIONS)}, migrated")
    assert user_version(state / "journal.db") == len(MIGRATIONS)
    again = badge_gateway("--config", str(config), "journal", "migrate")
    assert again.stdout.strip().endswith("up to date")


def test_a_failed_journal_migrate_says_why_and_leaves_the_file_as_it_was(state: Path) -> None:
    config = write_config(state)
    journal = state / "journal.db"
    old_journal(journal, 3, conflict=True)
    before = journal.read_bytes()
    result = badge_gateway("--config", str(config), "journal", "migrate")
    assert result.returncode == 1
    assert str(journal) in result.stderr
    assert "acknowledgements already exists" in result.stderr
    assert "the journal is unchanged at version 3" in result.stderr
    assert journal.read_bytes() == before
    assert not journal.with_name("journal.db-wal").exists()


def test_journal_migrate_refuses_a_journal_the_daemon_holds(state: Path) -> None:
    config = write_config(state)
    writer = Journal(state / "journal.db")
    try:
        result = badge_gateway("--config", str(config), "journal", "migrate")
    finally:
        writer.close()
    assert result.returncode == 1
    assert "in use by another process" in result.stderr
    assert "Traceback" not in result.stderr


def test_journal_migrate_refuses_a_journal_of_a_newer_release(state: Path) -> None:
    """A downgrade across a schema change: refused, the journal left to the newer release."""
    config = write_config(state)
    Journal(state / "journal.db").close()
    with sqlite3.connect(state / "journal.db") as conn:
        conn.execute(f"PRAGMA user_version={len(MIGRATIONS) + 1}")
    result = badge_gateway("--config", str(config), "journal", "migrate")
    assert result.returncode == 1
    assert "is newer than this release knows" in result.stderr
    assert "Traceback" not in result.stderr


def test_journal_backup_is_a_private_consistent_copy(state: Path) -> None:
    """Through SQLite's backup API: what the running writer committed, its WAL included,
    in one file of its own (no -wal beside it), 0600; an existing file is never replaced."""
    config = write_config(state)
    writer = Journal(state / "journal.db")
    try:
        writer.append_registration(a_registration())
        assert (state / "journal.db-wal").stat().st_size > 0  # not checkpointed yet
        copy = state / "copy.db"
        result = badge_gateway("--config", str(config), "journal", "backup", str(copy))
        assert result.returncode == 0, result.stderr
        assert f"schema version {len(MIGRATIONS)}" in result.stdout
        assert stat.S_IMODE(copy.stat().st_mode) == 0o600
        assert not copy.with_name("copy.db-wal").exists()
        with sqlite3.connect(copy) as conn:
            assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
            assert conn.execute("SELECT count(*) FROM registrations").fetchone()[0] == 1
        again = badge_gateway("--config", str(config), "journal", "backup", str(copy))
        assert again.returncode == 1
        assert "never overwrites" in again.stderr
    finally:
        writer.close()


def test_journal_backup_into_a_directory_names_the_copy_by_its_time(state: Path) -> None:
    config = write_config(state)
    Journal(state / "journal.db").close()
    backups = state / "backups"
    backups.mkdir()
    result = badge_gateway("--config", str(config), "journal", "backup", str(backups))
    assert result.returncode == 0, result.stderr
    (made,) = backups.iterdir()
    assert made.name.startswith("journal-") and made.name.endswith("Z.db")


def test_journal_backup_without_a_journal_fails(state: Path) -> None:
    config = write_config(state)
    result = badge_gateway("--config", str(config), "journal", "backup", str(state / "x.db"))
    assert result.returncode == 1
    assert "no journal here, nothing to back up" in result.stderr
    assert not (state / "x.db").exists()


def test_journal_backup_into_a_missing_directory_says_why_in_one_line(state: Path) -> None:
    config = write_config(state)
    Journal(state / "journal.db").close()
    destination = state / "missing" / "copy.db"
    result = badge_gateway("--config", str(config), "journal", "backup", str(destination))
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    (line,) = result.stderr.splitlines()
    assert str(state / "journal.db") in line and str(destination) in line
    assert "No such file or directory" in line


def test_journal_backup_into_a_read_only_directory_says_why_in_one_line(state: Path) -> None:
    config = write_config(state)
    Journal(state / "journal.db").close()
    backups = state / "backups"
    backups.mkdir(mode=0o500)
    # root writes anywhere: take away the capabilities for it, as the unit's user lacks them
    unprivileged = ["setpriv", "--bounding-set=-dac_override,-dac_read_search", "--"]
    try:
        result = badge_gateway(
            "--config", str(config), "journal", "backup", str(backups / "c.db"),
            prefix=unprivileged if os.geteuid() == 0 else [],
        )  # fmt: skip
    finally:
        backups.chmod(0o700)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    (line,) = result.stderr.splitlines()
    assert "Permission denied" in line


def test_journal_migrate_of_a_file_that_is_not_sqlite_says_why_in_one_line(state: Path) -> None:
    config = write_config(state)
    (state / "journal.db").write_bytes(b"not a database, " * 512)
    result = badge_gateway("--config", str(config), "journal", "migrate")
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    (line,) = result.stderr.splitlines()
    assert str(state / "journal.db") in line
    assert "not a database" in line
