"""`badge-gateway journal path|backup|migrate`: the journal file itself, for upgrades.

install.sh runs them with the new release, as the service's user, with the daemon stopped:
a consistent backup first, then every pending schema migration in one transaction.
"""

from __future__ import annotations

import argparse
import sqlite3
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from gateway.cli.options import journal_path
from gateway.journal import (
    MIGRATIONS,
    JournalLockedError,
    JournalMigrationError,
    JournalVersionError,
    backup,
    migrate_file,
)


def add_journal_commands(commands: Any) -> None:
    journal = commands.add_parser("journal", help="the journal file: path, backup, migrate")
    actions = journal.add_subparsers(required=True, metavar="ACTION")

    path = actions.add_parser("path", help="print the journal's path ([storage] journal)")
    _add_journal(path)
    path.set_defaults(command=_path)

    copy = actions.add_parser(
        "backup", help="a consistent copy (SQLite's backup API), 0600, never over a file"
    )
    copy.add_argument(
        "destination",
        type=Path,
        metavar="DEST",
        help="the copy's file name, or a directory to write journal-<UTC time>.db in",
    )
    _add_journal(copy)
    copy.set_defaults(command=_backup)

    migrate = actions.add_parser(
        "migrate",
        help="bring the journal to this release's schema, all or nothing (daemon stopped);"
        " creates a missing journal",
    )
    _add_journal(migrate)
    migrate.set_defaults(command=_migrate)


def _add_journal(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--journal", type=Path, help="journal file (default: [storage] journal of the config)"
    )


def _path(args: argparse.Namespace) -> int:
    print(journal_path(args))
    return 0


def _backup(args: argparse.Namespace) -> int:
    source = journal_path(args)
    if not source.exists():
        print(f"badge-gateway: {source}: no journal here, nothing to back up", file=sys.stderr)
        return 1
    destination: Path = args.destination
    if destination.is_dir():
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        destination = destination / f"journal-{stamp}.db"
    if destination.exists():
        print(f"badge-gateway: {destination} exists; a backup never overwrites", file=sys.stderr)
        return 1
    try:
        version = backup(source, destination)
        size = destination.stat().st_size
    except (sqlite3.Error, OSError) as error:
        print(f"badge-gateway: cannot back {source} up to {destination}: {error}", file=sys.stderr)
        return 1
    print(f"{destination}: backup of {source} (schema version {version}, {size} bytes)")
    return 0


def _migrate(args: argparse.Namespace) -> int:
    path = journal_path(args)
    try:
        found = migrate_file(path)
    except (JournalMigrationError, JournalVersionError, JournalLockedError) as error:
        print(f"badge-gateway: {path}: {error}", file=sys.stderr)
        return 1
    except (sqlite3.Error, OSError) as error:
        print(f"badge-gateway: {path}: cannot migrate: {error}", file=sys.stderr)
        return 1
    latest = len(MIGRATIONS)
    if found == latest:
        print(f"{path}: schema version {latest}, up to date")
    elif found == 0:
        print(f"{path}: new journal, schema version {latest}")
    else:
        print(f"{path}: schema version {found} -> {latest}, migrated")
    return 0
