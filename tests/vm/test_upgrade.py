"""An upgrade in the field: a box running the previous commit's build, with registrations
waiting for the ONSS, is upgraded by `install.sh --upgrade` from a wheelhouse (no
internet); every waiting registration is kept and delivered by the new release. Then an
upgrade to a release whose journal migration fails: refused, the journal as it was, the
running release untouched and running.

BADGE_GATEWAY_UPGRADE_FROM names the commit to upgrade from; by default the release before
this one: the newest commit install.sh makes another release of.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from tests.vm import box as guest
from tests.vm.conftest import record
from tests.vm.image import REPO, WORKERS, Image, build_image, source_tree, wheelhouse
from tests.vm.machine import Machine


def previous_release(most: int = 50) -> str:
    """The newest commit whose tree install.sh makes a different release of than this
    checkout's (a commit that changed only tests makes the same one: nothing to upgrade)."""
    if os.environ.get("BADGE_GATEWAY_UPGRADE_FROM"):
        return os.environ["BADGE_GATEWAY_UPGRADE_FROM"]
    current = release_id(REPO)
    for back in range(most):
        ref = commit_of(f"HEAD~{back}")  # not relative to HEAD: a commit made meanwhile
        with tempfile.TemporaryDirectory() as directory:
            if release_id(source_tree(ref, Path(directory) / "tree")) != current:
                return ref
    raise AssertionError(f"no other release in the last {most} commits")


def commit_of(ref: str) -> str:
    return subprocess.run(
        ["git", "rev-parse", "--verify", ref], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout.strip()


def release_id(tree: Path) -> str:
    if not (tree / "install.sh").exists():  # a release from before install.sh
        shutil.copy2(REPO / "install.sh", tree / "install.sh")
    return subprocess.run(
        ["./install.sh", "--release-id"], cwd=tree, capture_output=True, text=True, check=True
    ).stdout.strip()


PREVIOUS = previous_release()  # at collection, when the image's tree is read too


@pytest.mark.timeout(1800)
def test_an_upgrade_keeps_waiting_registrations_and_delivers_them(
    image: Image, vm_workdir: Path
) -> None:
    broken = release_whose_migration_fails(vm_workdir / "broken")
    old = build_image(
        vm_workdir / "previous",
        ref=PREVIOUS,
        extra={
            "new-release": image.source,
            "new-wheels": image.wheels,
            "broken-release": broken,
            "broken-wheels": wheelhouse(broken, vm_workdir / "broken-wheels"),
        },
    )
    box = Machine(old, vm_workdir, name="upgrade")
    box.boot()
    try:
        guest.wait_ready(box)
        uids = [worker.uid for worker in WORKERS[20:25]]
        outcomes = guest.tap_over_socket(box, uids)
        assert [outcome["kind"] for outcome in outcomes] == ["registered"] * len(uids)
        waiting = guest.registrations(box)
        assert {row["delivery"] for row in waiting} == {"pending"}  # the clock is not synced

        started = time.monotonic()
        result = box.call(
            "run",
            argv=["./install.sh", "--upgrade", "--wheels", "/root/new-wheels"],
            cwd="/root/new-release",
            timeout=900,
        )
        took = time.monotonic() - started
        assert result["rc"] == 0, result["stderr"][-3000:]
        record(f"upgrade in the VM (TCG) with install.sh --upgrade --wheels: {took:.0f} s")
        release = box.sh("readlink", "/opt/badge-gateway/venv").strip()
        assert release != old.release
        guest.wait_ready(box)
        backups = box.sh("ls", "/var/lib/badge-gateway/backups").split()
        assert backups, "no backup of the journal before its migration"

        kept = guest.registrations(box)
        assert [row["id"] for row in kept] == [row["id"] for row in waiting]
        box.call("ntp")
        box.sh("systemctl", "restart", "systemd-timesyncd")
        delivered = box.wait_for(
            "every kept registration delivered by the new release",
            lambda: all(row["delivery"] == "delivered" for row in guest.registrations(box)),
            timeout=180,
            every=3,
        )
        assert delivered
        assert len(guest.sim_registrations(box)) == len(waiting)
        assert guest.evidence_verifies(box)

        refused_upgrade_leaves_the_box_as_it_was(box, release, release_id(broken))
    finally:
        box.shutdown()


def refused_upgrade_leaves_the_box_as_it_was(box: Machine, release: str, broken: str) -> None:
    before = guest.registrations(box)
    schema = guest.journal_rows(box, "PRAGMA user_version")
    result = box.call(
        "run",
        argv=["./install.sh", "--upgrade", "--wheels", "/root/broken-wheels"],
        cwd="/root/broken-release",
        timeout=900,
    )
    assert result["rc"] == 3, result  # failed and rolled back
    assert "migrat" in result["stderr"], result["stderr"][-3000:]
    assert box.sh("readlink", "/opt/badge-gateway/venv").strip() == release
    assert broken not in box.sh("ls", "/opt/badge-gateway/releases").split()
    guest.wait_ready(box)
    assert guest.journal_rows(box, "PRAGMA user_version") == schema
    assert guest.registrations(box) == before
    (outcome,) = guest.tap_over_socket(box, [WORKERS[30].uid])
    assert outcome["kind"] == "registered"
    assert guest.evidence_verifies(box)


def release_whose_migration_fails(into: Path) -> Path:
    """This checkout plus one journal migration that cannot apply (its table exists)."""
    tree = source_tree(None, into)
    module = tree / "gateway/journal/file.py"
    module.write_text(
        module.read_text()
        + '\nMIGRATIONS = (*MIGRATIONS, "CREATE TABLE evidence (seq INTEGER PRIMARY KEY)")\n'
    )
    return tree
