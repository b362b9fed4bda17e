"""Fixtures shared by every test module (helpers live in tests/support.py), and the `vm`
marker on every test of the QEMU tier, so that `./dev test --fast` can leave it out."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.journal import Journal

VM_TIER = Path(__file__).resolve().parent / "vm"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if VM_TIER in item.path.resolve().parents:
            item.add_marker(pytest.mark.vm)


@pytest.fixture
def state(tmp_path: Path) -> Path:
    state = tmp_path / "state"
    state.mkdir()
    return state


@pytest.fixture
def journal(tmp_path: Path) -> Iterator[Journal]:
    """A journal of its own for the test, closed after it."""
    opened = Journal(tmp_path / "journal.db")
    try:
        yield opened
    finally:
        opened.close()
