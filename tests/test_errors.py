"""One error hierarchy: what gateway raises on purpose is a GatewayError, from gateway.errors."""

from __future__ import annotations

import ast
import builtins
import sqlite3

from gateway import errors
from gateway.errors import (
    EXIT_FAILURE,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_TAP_REFUSED,
    EXIT_USAGE,
    GatewayError,
    StartupError,
    UplinkError,
)
from tests.support import REPO

BUILTIN_EXCEPTIONS = {
    name
    for name, value in vars(builtins).items()
    if isinstance(value, type) and issubclass(value, BaseException)
}


def _looks_like_an_exception(base: ast.expr) -> bool:
    name = ast.unparse(base).rpartition(".")[2]
    return name in BUILTIN_EXCEPTIONS or name.endswith(("Error", "Exception"))


def test_every_exception_class_of_gateway_is_defined_in_gateway_errors() -> None:
    elsewhere = [
        f"{path.relative_to(REPO)}:{node.lineno}: class {node.name}"
        for path in sorted((REPO / "gateway").rglob("*.py"))
        if path != REPO / "gateway" / "errors.py"
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        if isinstance(node, ast.ClassDef) and any(map(_looks_like_an_exception, node.bases))
    ]
    assert not elsewhere, "define exceptions in gateway/errors.py:\n" + "\n".join(elsewhere)


def test_each_class_is_in_the_tree_and_the_tree_is_in_the_docstring() -> None:
    classes = [
        value
        for value in vars(errors).values()
        if isinstance(value, type) and issubclass(value, BaseException)
    ]
    assert len(classes) == 29
    assert errors.__doc__ is not None
    for cls in classes:
        assert issubclass(cls, GatewayError), cls
        assert cls.__name__ in errors.__doc__, f"{cls.__name__} is not in the docstring's tree"


def test_the_daemon_catches_its_start_up_failures_as_one_family() -> None:
    for cls in (
        errors.ConfigError,
        errors.BadgeFileError,
        errors.CredentialError,
        errors.BootIdError,
        errors.AlreadyRunningError,
        errors.JournalLockedError,
        errors.JournalVersionError,
        errors.JournalMigrationError,
    ):
        assert issubclass(cls, StartupError), cls
    others: tuple[type[GatewayError], ...] = (
        errors.StorageError,
        errors.ControlError,
        errors.InvalidIdentifier,
        UplinkError,
    )
    for other in others:
        assert not issubclass(other, StartupError), other


def test_the_bases_code_relies_on_are_kept() -> None:
    assert issubclass(errors.BootIdError, OSError)  # reading /proc failed
    assert issubclass(errors.JournalMigrationError, sqlite3.DatabaseError)
    assert issubclass(errors.InvalidIdentifier, ValueError)  # pydantic's validators
    assert issubclass(errors.AmbiguousError, errors.RetryableError)
    retry = errors.RetryableError("http 503", "busy", retry_after=2.0)
    assert (str(retry), retry.cause, retry.retry_after) == ("http 503: busy", "http 503", 2.0)
    assert str(errors.ConfigError("gateway.toml", ["site.name: required"])) == (
        "invalid configuration gateway.toml:\n  site.name: required"
    )


def test_exit_statuses_leave_2_to_argparse() -> None:
    statuses = [EXIT_OK, EXIT_FAILURE, EXIT_USAGE, EXIT_TAP_REFUSED, EXIT_INTERRUPTED]
    assert len(set(statuses)) == len(statuses)
    assert EXIT_USAGE == 2 and EXIT_TAP_REFUSED != 2
