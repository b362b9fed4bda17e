"""The narrow views of the journal: the one `Journal` satisfies each, and each holds exactly
what its user calls (a call added to a user fails here until its view says so)."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import pytest

from gateway.journal import (
    EvidenceSink,
    FleetLog,
    Journal,
    JournalReader,
    RegistrationReads,
    StatusReads,
    TapJournal,
    UplinkQueue,
)
from tests.support import REPO

VIEWS: list[type] = [
    TapJournal,
    UplinkQueue,
    EvidenceSink,
    RegistrationReads,
    StatusReads,
    FleetLog,
]

# Each view, and the modules whose journal is that view (what they call on it, found below).
USERS: dict[type, tuple[str, ...]] = {
    TapJournal: ("gateway/tap.py",),
    UplinkQueue: ("gateway/uplink/sender.py",),
    EvidenceSink: ("gateway/watch.py",),
    FleetLog: ("gateway/fleet/link.py", "gateway/fleet/stream.py", "gateway/fleet/registers.py"),
}


def as_views(journal: Journal, reader: JournalReader) -> None:
    """Type-checked by mypy, never run: the concrete classes satisfy each view."""
    tap: TapJournal = journal
    queue: UplinkQueue = journal
    sink: EvidenceSink = journal
    reads: RegistrationReads = journal
    offline: RegistrationReads = reader
    status: StatusReads = journal
    fleet: FleetLog = journal
    del tap, queue, sink, reads, offline, status, fleet


def members(view: type) -> set[str]:
    return {name for name in vars(view) if not name.startswith("_")}


def called_on_journal(path: Path) -> set[str]:
    """The attributes a module reads on `journal` or `self._journal`."""
    return {
        node.attr
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.Attribute) and _names_the_journal(node.value)
    }


def _names_the_journal(node: ast.expr) -> bool:
    if isinstance(node, ast.Name):
        return node.id == "journal"
    return isinstance(node, ast.Attribute) and node.attr == "_journal"


@pytest.mark.parametrize("view", VIEWS, ids=lambda view: view.__name__)
def test_the_journal_satisfies_each_view_with_the_same_signatures(
    view: type, tmp_path: Path
) -> None:
    journal = Journal(tmp_path / "j.db")
    try:
        assert isinstance(journal, view)
    finally:
        journal.close()
    for name in members(view):
        wanted = inspect.getattr_static(view, name)
        found = inspect.getattr_static(Journal, name, None)  # None: an instance attribute
        if isinstance(wanted, property):
            assert found is None or isinstance(found, property), name
        else:
            assert _parameters(found) == _parameters(wanted), name


def test_the_cli_reader_satisfies_the_registration_reads(tmp_path: Path) -> None:
    Journal(tmp_path / "j.db").close()
    reader = JournalReader(tmp_path / "j.db")
    try:
        assert isinstance(reader, RegistrationReads)
    finally:
        reader.close()
    for name in members(RegistrationReads):
        wanted = _parameters(getattr(RegistrationReads, name))
        assert _parameters(getattr(JournalReader, name)) == wanted, name


@pytest.mark.parametrize("view", list(USERS), ids=lambda view: view.__name__)
def test_each_view_holds_exactly_what_its_user_calls(view: type) -> None:
    called = set().union(*(called_on_journal(REPO / user) for user in USERS[view]))
    assert called == members(view)


def _parameters(function: object) -> list[tuple[str, object, object]]:
    """Names, kinds and defaults: annotations are strings here, spelled per module."""
    assert callable(function)
    return [
        (parameter.name, parameter.kind, parameter.default)
        for parameter in inspect.signature(function).parameters.values()
    ]
