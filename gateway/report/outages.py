"""What an inspector asks of the evidence log: which outages, from when to when, and what
became of the registrations they held back (docs/evidence.md, "The report").

Pure: a sequence of entries (in seq order) in, typed periods and lists out. The entries
may be any slice of the chain, so an outage may have begun before the first entry or still
be going on after the last. A malformed entry is skipped with a note, never raised, so that
one bad entry cannot hide the rest of the evidence.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from gateway.evidence import Entry, Kind

DAY_PASSED = "day-passed"  # gateway.checkinatwork.service's code (no import: the layers)


class OutageKind(enum.StrEnum):
    UPLINK = "uplink"  # the internet or the ONSS service
    POWER_CUT = "power-cut"  # unclean stop with a new boot id: the whole box was off
    CRASH = "crash"  # unclean stop within the same boot: the daemon died
    READER = "reader"
    CLOCK = "clock"  # the wall clock was not synchronised


@dataclass(frozen=True, slots=True)
class Captured:
    """A `registration` entry: a tap the box stored."""

    direction: str  # IN, OUT (CIaO) or PRESENCE (Checkinatwork)
    wall_ns: int
    worker: str
    niss: str  # masked; "" for a posted worker
    reader: str
    limosa: str = ""  # a posted worker's Limosa number, masked


@dataclass(frozen=True, slots=True)
class Acknowledged:
    """An `acknowledged` entry, for one registration: the ONSS created it.

    When the employer confirmed it (an answer that could not be read, checked at the
    ONSS), `wall_ns` is when that answer came, the moment the ONSS held it, and
    `confirmed_ns` when the employer confirmed it.
    """

    wall_ns: int
    onss_id: str
    late: bool
    confirmed_ns: int | None = None

    @property
    def by_employer(self) -> bool:
        return self.confirmed_ns is not None


@dataclass(frozen=True, slots=True)
class Rejected:
    """A `rejected` entry: the ONSS (or the box, "local") refused the registration."""

    wall_ns: int
    source: str
    errors: tuple[str, ...]
    codes: tuple[str, ...] = ()  # each error's code, where it has one

    @property
    def day_passed(self) -> bool:
        """A Checkinatwork presence the box could not deliver on its day (an outage kept it):
        a case of force majeure, not a refusal."""
        return self.source == "local" and DAY_PASSED in self.codes


@dataclass(frozen=True, slots=True)
class RegistrationRecord:
    """One registration and what became of it, as far as the entries tell."""

    id: str
    captured: Captured | None  # None: its registration entry lies outside the entries
    acknowledgement: Acknowledged | None
    rejection: Rejected | None
    unconfirmed: bool = False  # still unconfirmed at the last entry: the employer must act


@dataclass(frozen=True, slots=True)
class Outage:
    kind: OutageKind
    start_ns: int
    end_ns: int | None  # None: still going on at the last entry
    cause: str = ""  # uplink cause, reader error, clock source
    detail: str = ""
    subject: str = ""  # the reader, for a reader failure
    began_before: bool = False  # its start is not in the entries: start_ns is a bound
    held: tuple[RegistrationRecord, ...] = ()
    pending_at_start: int | None = None  # taps already waiting when the uplink went down

    @property
    def ongoing(self) -> bool:
        return self.end_ns is None


@dataclass(frozen=True, slots=True)
class ClockJump:
    wall_ns: int
    correction_ns: int


@dataclass(frozen=True, slots=True)
class Duplicate:
    """A registration flagged "possibly duplicated", once however often it was flagged.

    Each flag is one send that may have reached the ONSS without an answer, so the sends
    it took are those, plus the one the ONSS answered (when the entries hold the answer).
    """

    record: RegistrationRecord
    flagged_ns: int  # the first flag
    unanswered_sends: int  # its flags
    causes: tuple[str, ...]  # distinct, in the order first given

    @property
    def answered(self) -> bool:
        """The ONSS answered a later send: it created the registration or refused it."""
        rejection = self.record.rejection
        onss_refused = rejection is not None and rejection.source != "local"
        return self.record.acknowledgement is not None or onss_refused

    @property
    def sends(self) -> int:
        return self.unanswered_sends + self.answered


class Resolution(enum.StrEnum):
    """How the employer resolved an unconfirmed registration."""

    CONFIRMED = "confirmed"  # found at the ONSS: `queue confirm ID ONSS_ID`
    SENT_AGAIN = "sent-again"  # sent again, flagged possibly duplicated: `queue retry ID`
    ACKNOWLEDGED = "acknowledged"  # an acknowledgement without the employer (not expected)


@dataclass(frozen=True, slots=True)
class Episode:
    """One time a registration was unconfirmed, and how that ended."""

    since_ns: int  # when the answer that could not be read came
    cause: str  # why it could not be read (from the network: escape it)
    resolution: Resolution | None = None  # None: not resolved at the last entry
    resolved_ns: int | None = None
    onss_id: str = ""  # the id the employer confirmed, or the ONSS acknowledged
    # Its `unconfirmed` entry lies before the entries (only its confirmation is in them).
    began_before: bool = False


@dataclass(frozen=True, slots=True)
class Unconfirmed:
    """A registration whose send the ONSS answered with a 2xx that could not be read, once
    however often that happened (each time an episode, in order)."""

    record: RegistrationRecord
    episodes: tuple[Episode, ...]

    @property
    def since_ns(self) -> int:
        return self.episodes[0].since_ns

    @property
    def resolved(self) -> bool:
        return self.episodes[-1].resolution is not None


@dataclass(frozen=True, slots=True)
class Note:
    """An entry the analysis could not read."""

    seq: int
    kind: str
    problem: str


@dataclass(frozen=True, slots=True)
class Analysis:
    outages: tuple[Outage, ...]  # ordered by start
    clock_jumps: tuple[ClockJump, ...]
    records: tuple[RegistrationRecord, ...]  # every registration mentioned, captured first
    late: tuple[RegistrationRecord, ...]
    duplicated: tuple[Duplicate, ...]  # one per registration, in capture order
    unconfirmed: tuple[Unconfirmed, ...]  # one per registration, in capture order
    rejected: tuple[RegistrationRecord, ...]  # refused, not counting force majeure
    force_majeure: tuple[RegistrationRecord, ...]  # presences not delivered on their day
    readers: tuple[str, ...]  # every reader named, in order of appearance
    notes: tuple[Note, ...]

    @property
    def captured(self) -> int:
        return sum(record.captured is not None for record in self.records)

    @property
    def acknowledged(self) -> int:
        return sum(record.acknowledgement is not None for record in self.records)

    @property
    def still_unconfirmed(self) -> int:
        """Registrations unconfirmed at the end of the entries: the employer must act."""
        return sum(not unconfirmed.resolved for unconfirmed in self.unconfirmed)


class _Fields:
    """An entry's details, read with the types docs/evidence.md gives them."""

    def __init__(self, entry: Entry) -> None:
        if not isinstance(entry.details, Mapping):
            raise ValueError("details is not an object")
        self._details = entry.details

    def _get(self, key: str, kind: type | tuple[type, ...], what: str) -> Any:
        value = self._details.get(key)
        if isinstance(value, bool) and bool not in _as_tuple(kind):
            raise ValueError(f"{key} is not {what}")
        if not isinstance(value, kind):
            raise ValueError(f"{key} is not {what}")
        return value

    def text(self, key: str) -> str:
        value: str = self._get(key, str, "a text")
        return value

    def optional_text(self, key: str) -> str:
        return "" if self._details.get(key) is None else self.text(key)

    def integer(self, key: str) -> int:
        value: int = self._get(key, int, "an integer")
        return value

    def optional_integer(self, key: str) -> int | None:
        return None if self._details.get(key) is None else self.integer(key)

    def optional_seconds_ns(self, key: str) -> int | None:
        if self._details.get(key) is None:
            return None
        seconds: float = self._get(key, (int, float), "a number of seconds")
        return round(seconds * 1e9)

    def flag(self, key: str) -> bool:
        value: bool = self._get(key, bool, "true or false")
        return value

    def texts(self, key: str) -> tuple[str, ...]:
        values: list[Any] = self._get(key, list, "a list")
        if not all(isinstance(value, str) for value in values):
            raise ValueError(f"{key} is not a list of texts")
        return tuple(values)

    def optional_texts(self, key: str) -> tuple[str, ...]:
        return () if self._details.get(key) is None else self.texts(key)

    def text_mapping(self, key: str) -> dict[str, str]:
        values: dict[Any, Any] = self._get(key, dict, "an object")
        return {str(k): str(v) for k, v in values.items()}

    def items(self, key: str) -> list[Any]:
        values: list[Any] = self._get(key, list, "a list")
        return values


def _as_tuple(kind: type | tuple[type, ...]) -> tuple[type, ...]:
    return kind if isinstance(kind, tuple) else (kind,)


def analyse(entries: Iterable[Entry]) -> Analysis:
    """Every outage, clock correction and registration problem the entries record."""
    ordered = list(entries)
    index = _Index()
    tracks = _Tracks(ordered[0] if ordered else None)
    for entry in ordered:
        _read(entry, index.handlers, index.notes)
        tracks.follow_clock(entry)
        _read(entry, tracks.handlers, index.notes)
    tracks.finish()
    records = index.all_records()
    return Analysis(
        outages=tuple(sorted(tracks.outages(index), key=lambda o: (o.start_ns, o.kind))),
        clock_jumps=tuple(index.clock_jumps),
        records=tuple(records),
        late=tuple(r for r in records if r.acknowledgement and r.acknowledgement.late),
        duplicated=tuple(index.duplicates()),
        unconfirmed=tuple(index.unconfirmed_records()),
        rejected=tuple(r for r in records if r.rejection and not r.rejection.day_passed),
        force_majeure=tuple(r for r in records if r.rejection and r.rejection.day_passed),
        readers=tuple(index.readers),
        notes=tuple(index.notes),
    )


_Handler = Callable[[Entry, _Fields], None]


def _read(entry: Entry, handlers: Mapping[str, _Handler], notes: list[Note]) -> None:
    read = handlers.get(entry.kind)
    if read is None:
        return
    try:
        read(entry, _Fields(entry))
    except (KeyError, TypeError, ValueError) as exc:
        # Both passes may trip on the same entry: one note is enough.
        note = Note(entry.seq, entry.kind, str(exc) or type(exc).__name__)
        if note not in notes:
            notes.append(note)


class _Index:
    """First pass: each registration, its acknowledgement, rejection or duplication."""

    def __init__(self) -> None:
        self.captured: dict[str, Captured] = {}
        self.acknowledgements: dict[str, Acknowledged] = {}
        self.rejections: dict[str, Rejected] = {}
        self.flagged: dict[str, _Flags] = {}  # registration id -> its flags, first flag first
        self.episodes: dict[str, list[Episode]] = {}  # registration id -> unconfirmed, in order
        self.clock_jumps: list[ClockJump] = []
        self.readers: dict[str, None] = {}  # an ordered set
        self.notes: list[Note] = []
        self.handlers: dict[str, _Handler] = {
            Kind.READER_CONNECTED: self._reader_named,
            Kind.READER_FAILED: self._reader_named,
            Kind.REGISTRATION: self._registration,
            Kind.ACKNOWLEDGED: self._acknowledged,
            Kind.REJECTED: self._rejected,
            Kind.POSSIBLY_DUPLICATED: self._possibly_duplicated,
            Kind.UNCONFIRMED: self._unconfirmed,
            Kind.CLOCK_JUMPED: self._clock_jumped,
        }

    def _reader_named(self, entry: Entry, fields: _Fields) -> None:
        self.readers[fields.text("reader")] = None

    def _registration(self, entry: Entry, fields: _Fields) -> None:
        captured = Captured(
            direction=fields.text("type"),
            wall_ns=fields.integer("registration_wall_ns"),
            worker=fields.optional_text("worker"),
            niss=fields.optional_text("niss"),
            reader=fields.optional_text("reader"),
            limosa=fields.optional_text("limosa"),
        )
        self.captured[fields.text("id")] = captured
        if captured.reader:
            self.readers[captured.reader] = None

    def _acknowledged(self, entry: Entry, fields: _Fields) -> None:
        late = set(fields.optional_texts("late"))
        by_employer = fields.optional_text("confirmed_by") == "employer"
        answered_ns = fields.optional_integer("answered_wall_ns")
        ids = fields.text_mapping("ids")
        for reg_id, onss_id in ids.items():
            if by_employer:
                at_onss = entry.wall_ns if answered_ns is None else answered_ns
                ack = Acknowledged(at_onss, onss_id, reg_id in late, confirmed_ns=entry.wall_ns)
            else:
                ack = Acknowledged(entry.wall_ns, onss_id, reg_id in late)
            self.acknowledgements[reg_id] = ack
            self._acknowledged_unconfirmed(reg_id, ack, entry.wall_ns)

    def _acknowledged_unconfirmed(self, reg_id: str, ack: Acknowledged, at_ns: int) -> None:
        """Ends an unconfirmed episode; an employer's confirmation of one that became
        unconfirmed before the entries is an episode of its own."""
        how = Resolution.CONFIRMED if ack.by_employer else Resolution.ACKNOWLEDGED
        if self._resolve(reg_id, how, at_ns, ack.onss_id) or not ack.by_employer:
            return
        episode = Episode(ack.wall_ns, "", how, at_ns, ack.onss_id, began_before=True)
        self.episodes.setdefault(reg_id, []).append(episode)

    def _unconfirmed(self, entry: Entry, fields: _Fields) -> None:
        cause = fields.optional_text("cause")
        for reg_id in dict.fromkeys(fields.texts("ids")):
            episodes = self.episodes.setdefault(reg_id, [])
            if not episodes or episodes[-1].resolution is not None:  # else: still unconfirmed
                episodes.append(Episode(entry.wall_ns, cause))

    def _resolve(self, reg_id: str, how: Resolution, at_ns: int, onss_id: str = "") -> bool:
        """Ends the registration's open unconfirmed episode, if it has one."""
        episodes = self.episodes.get(reg_id)
        if not episodes or episodes[-1].resolution is not None:
            return False
        episodes[-1] = replace(episodes[-1], resolution=how, resolved_ns=at_ns, onss_id=onss_id)
        return True

    def _rejected(self, entry: Entry, fields: _Fields) -> None:
        items = fields.items("errors")
        errors = tuple(_error_text(error) for error in items)
        codes = tuple(str(e["code"]) for e in items if isinstance(e, Mapping) and e.get("code"))
        source = fields.optional_text("source")
        self.rejections[fields.text("id")] = Rejected(entry.wall_ns, source, errors, codes)

    def _possibly_duplicated(self, entry: Entry, fields: _Fields) -> None:
        cause = fields.optional_text("cause")
        for reg_id in dict.fromkeys(fields.texts("ids")):  # an id listed twice: one send
            flags = self.flagged.setdefault(reg_id, _Flags(entry.wall_ns))
            flags.count += 1
            flags.causes.setdefault(cause, None)
            # An unconfirmed registration is never sent by itself: the employer resent it.
            self._resolve(reg_id, Resolution.SENT_AGAIN, entry.wall_ns)

    def _clock_jumped(self, entry: Entry, fields: _Fields) -> None:
        self.clock_jumps.append(ClockJump(entry.wall_ns, fields.integer("correction_ns")))

    def record(self, reg_id: str) -> RegistrationRecord:
        return RegistrationRecord(
            id=reg_id,
            captured=self.captured.get(reg_id),
            acknowledgement=self.acknowledgements.get(reg_id),
            rejection=self.rejections.get(reg_id),
            unconfirmed=self._still_unconfirmed(reg_id),
        )

    def _still_unconfirmed(self, reg_id: str) -> bool:
        episodes = self.episodes.get(reg_id)
        return episodes is not None and episodes[-1].resolution is None

    def all_records(self) -> list[RegistrationRecord]:
        """Every registration the entries mention, the captured ones first, in order."""
        ids = dict.fromkeys(
            [*self.captured, *self.acknowledgements, *self.rejections, *self.episodes]
        )
        return sorted(map(self.record, ids), key=_capture_order)

    def duplicates(self) -> list[Duplicate]:
        """Each flagged registration once, in capture order (then in order first flagged)."""
        duplicates = [
            Duplicate(self.record(reg_id), flags.first_ns, flags.count, flags.cause_list())
            for reg_id, flags in self.flagged.items()
        ]
        return sorted(duplicates, key=lambda duplicate: _capture_order(duplicate.record))

    def unconfirmed_records(self) -> list[Unconfirmed]:
        """Each registration that was unconfirmed once, in capture order."""
        unconfirmed = [
            Unconfirmed(self.record(reg_id), tuple(episodes))
            for reg_id, episodes in self.episodes.items()
        ]
        return sorted(unconfirmed, key=lambda item: _capture_order(item.record))


@dataclass(slots=True)
class _Flags:
    """The possibly-duplicated entries naming one registration."""

    first_ns: int
    count: int = 0
    causes: dict[str, None] = field(default_factory=dict)  # an ordered set

    def cause_list(self) -> tuple[str, ...]:
        return tuple(cause for cause in self.causes if cause)


def _capture_order(record: RegistrationRecord) -> tuple[int, int]:
    if record.captured is not None:
        return (0, record.captured.wall_ns)
    return (1, record.acknowledgement.wall_ns if record.acknowledgement else 0)


def _error_text(error: Any) -> str:
    """An ONSS error ({"code", "description"}) or whatever else the entry holds, as text."""
    if isinstance(error, Mapping):
        parts = [str(error[key]) for key in ("code", "description") if error.get(key)]
        return ": ".join(parts) or json.dumps(error, ensure_ascii=False, sort_keys=True)
    return str(error)


@dataclass(slots=True)
class _Open:
    """An outage whose end has not been seen yet."""

    kind: OutageKind
    start_ns: int
    cause: str = ""
    detail: str = ""
    subject: str = ""
    began_before: bool = False
    pending_at_start: int | None = None
    held_ids: list[str] = field(default_factory=list)

    def closed(self, end_ns: int | None, index: _Index) -> Outage:
        return Outage(
            kind=self.kind,
            start_ns=self.start_ns,
            end_ns=end_ns,
            cause=self.cause,
            detail=self.detail,
            subject=self.subject,
            began_before=self.began_before,
            held=tuple(index.record(reg_id) for reg_id in self.held_ids),
            pending_at_start=self.pending_at_start,
        )


class _Tracks:
    """Second pass: one state machine per track (uplink, each reader, clock)."""

    def __init__(self, first: Entry | None) -> None:
        self.first_seq = first.seq if first else 0
        self.first_wall_ns = first.wall_ns if first else 0
        self.uplink: _Open | None = None
        self.uplink_seen = False
        self.readers_down: dict[str, _Open] = {}
        self.clock: _Open | None = None
        self.closed: list[tuple[_Open, int | None]] = []
        self.handlers: dict[str, _Handler] = {
            Kind.UPLINK_OFFLINE: self._uplink_offline,
            Kind.UPLINK_ONLINE: self._uplink_online,
            Kind.REGISTRATION: self._registration,
            Kind.UNCLEAN_STOP: self._unclean_stop,
            Kind.READER_FAILED: self._reader_failed,
            Kind.READER_CONNECTED: self._reader_connected,
        }

    def outages(self, index: _Index) -> list[Outage]:
        return [opened.closed(end_ns, index) for opened, end_ns in self.closed]

    def finish(self) -> None:
        still_open = [self.uplink, self.clock, *self.readers_down.values()]
        self.closed.extend((opened, None) for opened in still_open if opened is not None)

    def _uplink_offline(self, entry: Entry, fields: _Fields) -> None:
        opened = _Open(
            OutageKind.UPLINK,
            entry.wall_ns,
            cause=fields.optional_text("cause"),
            detail=fields.optional_text("detail"),
            pending_at_start=fields.optional_integer("pending"),
        )
        self.uplink_seen = True
        # Said again (after a restart, or with a new cause): the outage began the first time.
        self.uplink = self.uplink or opened

    def _uplink_online(self, entry: Entry, fields: _Fields) -> None:
        offline_ns = fields.optional_seconds_ns("offline_seconds")
        opened, self.uplink = self.uplink, None
        if opened is None and not self.uplink_seen and offline_ns:
            opened = self._begun_before(OutageKind.UPLINK, entry.wall_ns - offline_ns)
        self.uplink_seen = True
        if opened is not None:
            self.closed.append((opened, entry.wall_ns))

    def _registration(self, entry: Entry, fields: _Fields) -> None:
        if self.uplink is not None:
            self.uplink.held_ids.append(fields.text("id"))

    def _unclean_stop(self, entry: Entry, fields: _Fields) -> None:
        kind = OutageKind.POWER_CUT if fields.flag("power_cut_likely") else OutageKind.CRASH
        self.closed.append((_Open(kind, fields.integer("last_seen_wall_ns")), entry.wall_ns))

    def _reader_failed(self, entry: Entry, fields: _Fields) -> None:
        reader = fields.text("reader")
        if reader in self.readers_down:
            return
        down_since = fields.optional_integer("down_since_wall_ns") or entry.wall_ns
        self.readers_down[reader] = _Open(
            OutageKind.READER, down_since, cause=fields.optional_text("error"), subject=reader
        )

    def _reader_connected(self, entry: Entry, fields: _Fields) -> None:
        reader = fields.text("reader")
        opened = self.readers_down.pop(reader, None)
        down_ns = fields.optional_seconds_ns("down_seconds")
        # Back from before the first entry: it failed before the period began. (A shorter
        # disconnection within the period is no failure: reader-failed would say so.)
        if opened is None and down_ns and entry.wall_ns - down_ns < self.first_wall_ns:
            opened = self._begun_before(OutageKind.READER, entry.wall_ns - down_ns)
            opened.subject = reader
        if opened is not None:
            self.closed.append((opened, entry.wall_ns))

    def follow_clock(self, entry: Entry) -> None:
        """The clock track follows every entry's own flag, not only clock-lost/-synced, so
        that a box that started unsynchronised (no RTC, no network) shows it too."""
        lost = entry.kind == Kind.CLOCK_LOST or (
            not entry.clock_synced and entry.kind != Kind.CLOCK_SYNCED
        )
        if self.clock is None and lost:
            self.clock = _Open(OutageKind.CLOCK, entry.wall_ns, cause=_clock_source(entry))
            self.clock.began_before = entry.seq == self.first_seq and entry.kind != Kind.CLOCK_LOST
        elif self.clock is not None and not lost:
            self.closed.append((self.clock, entry.wall_ns))
            self.clock = None

    def _begun_before(self, kind: OutageKind, start_ns: int) -> _Open:
        return _Open(kind, min(start_ns, self.first_wall_ns), began_before=True)


def _clock_source(entry: Entry) -> str:
    if entry.kind != Kind.CLOCK_LOST or not isinstance(entry.details, Mapping):
        return ""
    source = entry.details.get("source")
    return source if isinstance(source, str) else ""
