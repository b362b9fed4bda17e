"""The employer's badge register: a CSV file that maps badge uids to workers.

People edit this file, often in Excel, so a bad line is reported and left out while the rest
still loads; only a file that cannot be used at all raises BadgeFileError. No message made
here ever shows a full NISS (nor a full Limosa number).

A row names a person by NISS or, for a posted foreign worker without one, by the number of
their Limosa declaration (the `limosa` column); the `declaration` column puts a worker
under one of the site's declarations (or, on a Checkinatwork site, workplace ids) instead
of its default. Given the site (`BadgeSite`), a row that does not fit it is refused.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import os
import re
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from types import MappingProxyType
from typing import NamedTuple, TypeVar

from gateway.errors import BadgeFileError, InvalidIdentifier
from gateway.identifiers import (
    mask_niss,
    normalise_limosa,
    normalise_niss,
    normalise_uid,
    normalise_workplace_id,
    parse_employer,
)
from gateway.models import Capacity, Channel, Employer, Language, Worker

REQUIRED_COLUMNS = ("badge_uid", "niss", "employer", "name", "language", "capacity")
OPTIONAL_COLUMNS = ("valid_from", "valid_until", "limosa", "declaration")
PERSONAL_COLUMNS = ("niss", "limosa")  # never shown in full

_UTF8_BOM = b"\xef\xbb\xbf"
_ISO_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_MAX_SHOWN_CHARS = 40
_SAVE_AS_UTF8_HINT = "save the file as 'CSV UTF-8'"
CP1252_NOTE = f"not UTF-8: read as Windows-1252 (Excel's 'CSV'); {_SAVE_AS_UTF8_HINT} to be sure"

_T = TypeVar("_T")


@dataclass(frozen=True)
class LineError:
    """One refused line of the badge register, in compiler style when printed."""

    path: Path
    line: int
    field: str | None
    message: str

    def __str__(self) -> str:
        where = f"{self.path}:{self.line}"
        if self.field is None:
            return f"{where}: {self.message}"
        return f"{where}: {self.field}: {self.message}"


@dataclass(frozen=True, slots=True)
class BadgeSite:
    """What a register's rows must fit: the site's channel and its declarations (the
    default one first)."""

    channel: Channel
    declarations: tuple[str, ...]


@dataclass(frozen=True)
class BadgeRegister:
    """An immutable snapshot of the badge file: the workers that loaded and the refused lines."""

    path: Path
    workers: Mapping[str, Worker]
    errors: tuple[LineError, ...]
    sha256: str
    encoding: str = "utf-8"  # or "cp1252": see _encoding

    def lookup(self, uid: str) -> Worker | None:
        try:
            return self.workers.get(normalise_uid(uid))
        except InvalidIdentifier:
            return None

    def no_worker(self) -> str | None:
        """Why this register holds no worker at all (only a header, or every line refused),
        naming the file and the first refused line; None when it holds at least one."""
        if self.workers:
            return None
        if not self.errors:
            return f"{self.path}: no worker: the file holds only its header"
        return (
            f"{self.path}: no worker: every line refused ({len(self.errors)} error(s),"
            f" the first: {self.errors[0]})"
        )


# --- Loading ----------------------------------------------------------------------------


class _Header(NamedTuple):
    line: int
    columns: tuple[str, ...]
    delimiter: str
    encoding: str


@dataclass(frozen=True)
class _LineResult:
    line: int
    uid: str | None  # kept even when another field is bad, to detect duplicates
    worker: Worker | None
    errors: tuple[LineError, ...]


def load_badge_register(path: Path, site: BadgeSite | None = None) -> BadgeRegister:
    return parse_badge_register(_read_bytes(path), path, site)


def parse_badge_register(data: bytes, source: Path, site: BadgeSite | None = None) -> BadgeRegister:
    """The register in `data`, by the rules of the file; `source` is what messages name (the
    file, or where a register that came over the network came from). Without a `site`,
    only what a row holds is checked, not whether it fits the site."""
    lines = _physical_lines(data)
    header = _parse_header(source, lines, _encoding(data))
    results = [
        result
        for number, raw in lines
        if number > header.line
        and (result := _parse_line(source, number, raw, header, site)) is not None
    ]
    results = _refuse_duplicate_uids(source, results)
    workers = {r.worker.badge_uid: r.worker for r in results if r.worker is not None}
    return BadgeRegister(
        path=source,
        workers=MappingProxyType(workers),
        errors=tuple(error for r in results for error in r.errors),
        sha256=hashlib.sha256(data).hexdigest(),
        encoding=header.encoding,
    )


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as error:
        raise BadgeFileError(f"{path}: cannot read: {error.strerror or error}") from error


def _encoding(data: bytes) -> str:
    """UTF-8, unless the file is not UTF-8 but reads whole as Windows-1252 (what Excel's
    "CSV (comma delimited)" writes on a Belgian PC: "Hélène" must not become an unknown
    badge). A file mixing UTF-8 lines with accents and other bytes stays UTF-8: its
    undecodable lines are refused, since either reading would garble some names."""
    try:
        data.decode("utf-8")
        return "utf-8"
    except UnicodeDecodeError:
        pass
    if b"\x00" in data:  # UTF-16 (Excel's "Unicode text"), not a Windows-1252 file
        return "utf-8"
    try:
        data.decode("cp1252")
    except UnicodeDecodeError:
        return "utf-8"
    return "utf-8" if any(_is_utf8_beyond_ascii(line) for line in data.splitlines()) else "cp1252"


def _is_utf8_beyond_ascii(line: bytes) -> bool:
    if line.isascii():
        return False
    try:
        line.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _physical_lines(data: bytes) -> list[tuple[int, bytes]]:
    if data.startswith(_UTF8_BOM):
        data = data[len(_UTF8_BOM) :]
    return list(enumerate(data.splitlines(), start=1))


def _is_blank_or_comment(text: str) -> bool:
    stripped = text.strip()
    return not stripped or stripped.startswith("#")


def _parse_header(path: Path, lines: Sequence[tuple[int, bytes]], encoding: str) -> _Header:
    for number, raw in lines:
        # A comment above the header may hold any bytes; the header itself must decode.
        if _is_blank_or_comment(raw.decode(encoding, errors="replace")):
            continue
        try:
            text = raw.decode(encoding)
        except UnicodeDecodeError:
            raise BadgeFileError(
                f"{path}:{number}: header line is not UTF-8 ({_SAVE_AS_UTF8_HINT})"
            ) from None
        return _header_from_text(path, number, text, encoding)
    raise BadgeFileError(f"{path}: no header line")


def _header_from_text(path: Path, number: int, text: str, encoding: str) -> _Header:
    # Belgian Excel exports use ';' because ',' is the decimal separator there.
    delimiter = ";" if text.count(";") > text.count(",") else ","
    try:
        columns = tuple(cell.strip().lower() for cell in _split_cells(text, delimiter))
    except csv.Error as error:
        raise BadgeFileError(f"{path}:{number}: header line has bad quoting: {error}") from None
    _check_columns(path, number, columns)
    return _Header(number, columns, delimiter, encoding)


def _split_cells(text: str, delimiter: str) -> list[str]:
    return next(csv.reader([text], delimiter=delimiter, strict=True), [])


def _check_columns(path: Path, number: int, columns: tuple[str, ...]) -> None:
    named = [column for column in columns if column]
    duplicated = sorted({column for column in named if named.count(column) > 1})
    if duplicated:
        raise BadgeFileError(f"{path}:{number}: column named twice: {', '.join(duplicated)}")
    # a register of posted workers only may name a limosa column instead of a niss one
    given = {*columns, "niss"} if "limosa" in columns else set(columns)
    missing = [column for column in REQUIRED_COLUMNS if column not in given]
    if missing:
        raise BadgeFileError(
            f"{path}:{number}: missing required column(s) {', '.join(missing)}"
            f" (the first line must name: {', '.join(REQUIRED_COLUMNS)})"
        )


def _parse_line(
    path: Path, number: int, raw: bytes, header: _Header, site: BadgeSite | None
) -> _LineResult | None:
    """The worker on one physical line, its errors, or None for a line that holds nothing."""

    def refused(message: str) -> _LineResult:
        return _LineResult(number, None, None, (LineError(path, number, None, message),))

    try:
        text = raw.decode(header.encoding)
    except UnicodeDecodeError as error:
        bad_byte = raw[error.start]
        return refused(
            f"not UTF-8 (byte 0x{bad_byte:02x} at column {error.start + 1}; {_SAVE_AS_UTF8_HINT})"
        )
    if _is_blank_or_comment(text):
        return None
    try:
        cells = _split_cells(text, header.delimiter)
    except csv.Error as error:
        return refused(f"bad quoting: {error}")
    if not any(cell.strip() for cell in cells):
        return None  # Excel writes ';;;;;' for an empty row
    if len(cells) != len(header.columns):
        return refused(f"expected {len(header.columns)} fields, got {len(cells)}")
    values = {column: cell.strip() for column, cell in zip(header.columns, cells, strict=True)}
    return _worker_from_values(path, number, values, site)


class _FieldReader:
    """Parses the fields of one line, collecting every bad field rather than stopping at one."""

    def __init__(self, path: Path, number: int, values: Mapping[str, str]) -> None:
        self._path, self._number, self._values = path, number, values
        self.errors: list[LineError] = []

    def required(self, field: str, parse: Callable[[str], _T]) -> _T | None:
        if not self._values[field]:
            self.report(field, "is empty")
            return None
        return self.optional(field, parse)

    def optional(self, field: str, parse: Callable[[str], _T]) -> _T | None:
        raw = self._values.get(field, "")
        try:
            return parse(raw)
        except ValueError as error:  # InvalidIdentifier is a ValueError
            self.report(field, f"{error} (got {_shown(field, raw)!r})")
            return None

    def report(self, field: str, message: str) -> None:
        self.errors.append(LineError(self._path, self._number, field, message))


def _worker_from_values(
    path: Path, number: int, values: Mapping[str, str], site: BadgeSite | None
) -> _LineResult:
    fields = _FieldReader(path, number, values)
    uid = fields.required("badge_uid", normalise_uid)
    niss, limosa = _person(fields, site)
    declaration = fields.optional("declaration", lambda raw: _declaration(raw, site))
    employer = fields.required("employer", parse_employer)
    name = fields.required("name", str)
    language = fields.required("language", _parse_language)
    capacity = fields.required("capacity", _parse_capacity)
    valid_from = fields.optional("valid_from", _parse_optional_date)
    valid_until = fields.optional("valid_until", _parse_optional_date)
    if valid_from is not None and valid_until is not None and valid_until < valid_from:
        fields.report("valid_until", f"{valid_until} is before valid_from {valid_from}")
    worker = _complete_worker(uid, (niss, limosa), employer, name, language, capacity)
    if worker is None or fields.errors:
        return _LineResult(number, uid, None, tuple(fields.errors))
    worker = dataclasses.replace(
        worker, valid_from=valid_from, valid_until=valid_until, declaration=declaration
    )
    return _LineResult(number, uid, worker, ())


def _person(fields: _FieldReader, site: BadgeSite | None) -> tuple[str | None, str | None]:
    """The row's NISS or Limosa number: exactly one (a bad one is reported by its field)."""
    errors_before = len(fields.errors)
    niss = fields.optional("niss", lambda raw: normalise_niss(raw) if raw else None)
    limosa = fields.optional("limosa", lambda raw: normalise_limosa(raw) if raw else None)
    if len(fields.errors) > errors_before:
        return None, None
    if niss is not None and limosa is not None:
        fields.report("limosa", "give a NISS or a Limosa number, not both")
    elif niss is None and limosa is None:
        fields.report("niss", "is empty (a posted worker without one: the limosa column)")
    elif limosa is not None and site is not None and site.channel is Channel.CIAO:
        fields.report("limosa", "CIaO registers a person by NISS: give this worker's NISS")
    return niss, limosa


def _declaration(raw: str, site: BadgeSite | None) -> str | None:
    """The row's own declaration (WorkPlaceId on a Checkinatwork site), one of the site's."""
    if not raw:
        return None
    value = normalise_workplace_id(raw)  # the looser of the two formats; the site is exact
    if site is not None and value not in site.declarations:
        raise ValueError(f"not one of this site's: {', '.join(site.declarations)}")
    return value


def _complete_worker(
    uid: str | None,
    person: tuple[str | None, str | None],
    employer: Employer | None,
    name: str | None,
    language: Language | None,
    capacity: Capacity | None,
) -> Worker | None:
    niss, limosa = person
    if uid is None or (niss is None) == (limosa is None) or employer is None or name is None:
        return None
    if language is None or capacity is None:
        return None
    return Worker(uid, niss, employer, name, language, capacity, limosa=limosa)


def _parse_language(raw: str) -> Language:
    try:
        return Language(raw.lower())
    except ValueError:
        raise ValueError(f"must be one of {', '.join(Language)}") from None


def _parse_capacity(raw: str) -> Capacity:
    try:
        return Capacity(raw.lower().replace("_", "-"))
    except ValueError:
        raise ValueError(f"must be one of {', '.join(Capacity)}") from None


def _parse_optional_date(raw: str) -> date | None:
    if not raw:
        return None
    try:
        if _ISO_DATE.fullmatch(raw):
            return date.fromisoformat(raw)
    except ValueError:
        pass
    raise ValueError("must be a date YYYY-MM-DD")


def _shown(field: str, raw: str) -> str:
    """The bad value as it may appear in a message: never a full NISS, never very long."""
    if field in PERSONAL_COLUMNS or _is_valid_niss(raw):
        return mask_niss(raw)
    if len(raw) > _MAX_SHOWN_CHARS:
        return raw[: _MAX_SHOWN_CHARS - 1] + "…"
    return raw


def _is_valid_niss(raw: str) -> bool:
    try:
        normalise_niss(raw)
    except InvalidIdentifier:
        return False
    return True


def _refuse_duplicate_uids(path: Path, results: list[_LineResult]) -> list[_LineResult]:
    """Refuse every line whose uid is on another line too: we cannot know which one is right."""
    lines_by_uid: dict[str, list[int]] = {}
    for result in results:
        if result.uid is not None:
            lines_by_uid.setdefault(result.uid, []).append(result.line)
    return [_refused_if_duplicate(path, r, lines_by_uid) for r in results]


def _refused_if_duplicate(
    path: Path, result: _LineResult, lines_by_uid: Mapping[str, list[int]]
) -> _LineResult:
    if result.uid is None:
        return result
    others = [line for line in lines_by_uid[result.uid] if line != result.line]
    if not others:
        return result
    plural = "s" if len(others) > 1 else ""
    listed = ", ".join(str(line) for line in others)
    error = LineError(
        path, result.line, "badge_uid", f"uid also on line{plural} {listed} (got {result.uid!r})"
    )
    return dataclasses.replace(result, worker=None, errors=(*result.errors, error))


# --- Reloading on change ------------------------------------------------------------------


class _FileSignature(NamedTuple):
    mtime_ns: int
    size: int
    inode: int


def _file_signature(path: Path) -> _FileSignature:
    stat = os.stat(path)
    return _FileSignature(stat.st_mtime_ns, stat.st_size, stat.st_ino)


class BadgeRegisterWatcher:
    """Holds the current register and swaps in a new one when the file changes.

    The swap is one attribute assignment of an immutable register: a tap that already took
    `current` keeps using its snapshot. A file that yields no worker (a header alone, every
    line refused: a save gone wrong) never replaces a register that has workers; at start,
    with nothing to keep, it is loaded as it is (every badge then unknown), and `last_error`
    says why.
    """

    def __init__(self, path: Path, site: BadgeSite | None = None) -> None:
        self.path = path
        self.site = site
        self.last_error: str | None = None
        self._lock = threading.Lock()
        # Stat before loading: a write during the load then shows as a change next time.
        try:
            self._signature: _FileSignature | None = _file_signature(path)
        except OSError as error:
            raise BadgeFileError(f"{path}: cannot read: {error.strerror or error}") from error
        self._current = load_badge_register(path, site)
        self.last_error = self._current.no_worker()  # shown in status; the daemon still starts

    @property
    def current(self) -> BadgeRegister:
        return self._current

    def follow(self, path: Path) -> None:
        """Watch another file from now on (the fleet's register); the next refresh loads it."""
        with self._lock:
            self.path, self._signature = path, None

    def refresh(self, *, force: bool = False) -> BadgeRegister | None:
        """Reload if the file changed (or if forced, e.g. on SIGHUP).

        Returns the new register when its content differs from the current one, else None.
        An unusable file keeps the current register and sets last_error instead of raising.
        """
        with self._lock:
            try:
                signature = _file_signature(self.path)
            except OSError as error:
                self._keep_current(f"{self.path}: {error.strerror or error}", None)
                return None
            if signature == self._signature and not force:
                return None
            return self._reload(signature)

    def _reload(self, signature: _FileSignature) -> BadgeRegister | None:
        try:
            register = load_badge_register(self.path, self.site)
        except BadgeFileError as error:
            self._keep_current(str(error), signature)
            return None
        empty = register.no_worker()
        if empty is not None and self._current.workers:  # a save gone wrong: keep the workers
            self._keep_current(f"{empty}; keeping the previous register", signature)
            return None
        self._signature, self.last_error = signature, empty
        if register.sha256 == self._current.sha256:
            return None
        self._current = register
        return register

    def _keep_current(self, error: str, signature: _FileSignature | None) -> None:
        # A None signature makes the file's return count as a change, whatever its stat says.
        self._signature, self.last_error = signature, error
