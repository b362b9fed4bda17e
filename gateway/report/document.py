"""The employer's evidence report: one self-contained HTML page (inline CSS and SVG, no
script, no external asset) that an employer prints to PDF and hands to a labour inspector
(docs/evidence.md, "The report").

Every string that comes from the entries (worker names, reader names, causes, ONSS errors)
is user or network input and is escaped; the texts are data (gateway.report.texts), one
table per language, filled with string.Template.
"""

from __future__ import annotations

import html
import itertools
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from string import Template
from zoneinfo import ZoneInfo

from gateway.evidence import ChainCheck, Entry
from gateway.models import Channel, Language
from gateway.report.outages import (
    Analysis,
    Duplicate,
    Episode,
    Outage,
    OutageKind,
    RegistrationRecord,
    Resolution,
    analyse,
)
from gateway.report.texts import TEXTS

_NBSP = "\u00a0"  # keeps a date, or a duration, on one line in a narrow column
_KNOWN_CAUSES = frozenset({"dns", "tcp", "tls", "timeout", "token", "forbidden"})


@dataclass(frozen=True, slots=True)
class ReportContext:
    site_name: str
    declaration: str
    language: Language
    tz: ZoneInfo
    period_from_ns: int
    period_to_ns: int
    check: ChainCheck  # of the exported entries
    head: Entry | None  # the chain head when exporting (may lie after the period)
    created_ns: int | None = None
    channel: Channel = Channel.CIAO


def render_report(
    entries: Iterable[Entry],
    context: ReportContext,
    *,
    full_niss: Mapping[str, str] | None = None,
    declarations: Mapping[str, str] | None = None,
) -> str:
    """The whole report as one HTML document. `full_niss` (registration id -> NISS or
    Limosa number) is the employer's explicit choice to show them in full; `declarations`
    (registration id -> declaration, from the journal: the entries do not carry it) names
    each force-majeure presence's workplace."""
    ordered = list(entries)
    analysis = analyse(ordered)
    last_ns = ordered[-1].wall_ns if ordered else context.period_to_ns
    out = _Writer(context, full_niss, last_ns, declarations or {})
    numbered = list(enumerate(analysis.outages, start=1))
    sections = [
        _header(out),
        _summary(out, analysis),
        _timeline(out, analysis, numbered),
        _outage_table(out, numbered),
        *(_held_table(out, number, outage) for number, outage in numbered if outage.held),
        _force_majeure_table(out, analysis, numbered),
        _late_table(out, analysis),
        _duplicated_table(out, analysis),
        _unconfirmed_table(out, analysis),
        _rejected_table(out, analysis),
        _clock_table(out, analysis),
        _per_day_table(out, analysis),
        _verification(out, ordered),
        _notes(out, analysis),
        f"<footer>{out.t('footer')}</footer>",
    ]
    return _page(out, "\n".join(section for section in sections if section))


class _Writer:
    """Texts and values of one report, as escaped HTML."""

    def __init__(
        self,
        context: ReportContext,
        full_niss: Mapping[str, str] | None,
        last_ns: int,
        declarations: Mapping[str, str],
    ) -> None:
        self.context = context
        self.texts = TEXTS[context.language]
        self.full_niss = full_niss
        self.last_ns = last_ns  # an ongoing outage lasted at least until the last entry
        self.declarations = declarations
        self.presence = context.channel is Channel.CHECKINATWORK

    def t(self, key: str, **values: object) -> str:
        template = Template(html.escape(self.texts[key]))
        return template.substitute({name: html.escape(str(v)) for name, v in values.items()})

    def local(self, wall_ns: int) -> datetime:
        """To the second, truncated (a float division would round 23:59:59.9999999999 up)."""
        return datetime.fromtimestamp(wall_ns // 1_000_000_000, tz=self.context.tz)

    def weekday(self, moment: datetime) -> str:
        return self.texts["weekdays"].split()[moment.weekday()]

    # day, when, hour and duration are made of digits and of this module's own texts: plain
    # text that needs no escaping, and can be template values.
    def day(self, wall_ns: int) -> str:
        moment = self.local(wall_ns)
        return f"{self.weekday(moment)}{_NBSP}{moment.strftime(self.texts['date'])}"

    def when(self, wall_ns: int) -> str:
        return f"{self.day(wall_ns)} {self.local(wall_ns):%H:%M:%S}"

    def hour(self, wall_ns: int) -> str:
        return f"{self.local(wall_ns):%H:%M}"

    def duration(self, span_ns: int) -> str:
        minutes = max(round(span_ns / 60e9), 0)
        days, minutes = divmod(minutes, 24 * 60)
        hours, minutes = divmod(minutes, 60)
        if days:
            text = f"{days} {self.texts['unit_day']} {hours} h {minutes:02d}"
        elif hours:
            text = f"{hours} h {minutes:02d} min"
        else:
            text = f"{minutes} min" if minutes else f"{max(round(span_ns / 1e9), 0)} s"
        return text.replace(" ", _NBSP)

    def niss(self, record: RegistrationRecord) -> str:
        """The NISS, or 'Limosa ' and a posted worker's number: masked, unless in full."""
        captured = record.captured
        number = captured.limosa or captured.niss if captured else ""
        if self.full_niss and self.full_niss.get(record.id):
            number = self.full_niss[record.id]
        if captured and captured.limosa:
            return self.t("limosa_person", number=number)
        return html.escape(number)

    def direction(self, value: str) -> str:
        key = f"dir_{value}"
        return self.t(key) if key in self.texts else html.escape(value)


# --- Page and sections ------------------------------------------------------------------


def _page(out: _Writer, body: str) -> str:
    title = f"{out.t('title')} — {html.escape(out.context.site_name)}"
    return (
        f'<!DOCTYPE html>\n<html lang="{out.context.language.value}">\n<head>\n'
        f'<meta charset="utf-8">\n<meta name="viewport" content="width=device-width">\n'
        f"<title>{title}</title>\n<style>{_CSS}</style>\n</head>\n"
        f"<body>\n<main>\n{body}\n</main>\n</body>\n</html>\n"
    )


def _section(title: str, body: str, intro: str = "", section_class: str = "") -> str:
    classes = f' class="{section_class}"' if section_class else ""
    paragraph = f'<p class="intro">{intro}</p>' if intro else ""
    return f"<section{classes}>\n<h2>{title}</h2>\n{paragraph}\n{body}\n</section>"


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]], out: _Writer, css: str) -> str:
    if not rows:
        return f'<p class="none">{out.t("none")}</p>'
    head = "".join(f"<th>{header}</th>" for header in headers)
    body = "\n".join("<tr>" + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>" for row in rows)
    return (
        f'<table class="{css}">\n<thead><tr>{head}</tr></thead>\n'
        f"<tbody>\n{body}\n</tbody>\n</table>"
    )


def _header(out: _Writer) -> str:
    context = out.context
    facts = [
        (out.t("site"), html.escape(context.site_name)),
        (
            out.t("declaration_checkinatwork" if out.presence else "declaration"),
            f"<code>{html.escape(context.declaration) or '—'}</code>",
        ),
        (out.t("service"), out.t(f"channel_{context.channel.value}")),
        (out.t("period"), _period(out)),
    ]
    if context.created_ns is not None:
        facts.append((out.t("created"), out.when(context.created_ns)))
    personal = "personal" if out.presence else "niss"  # Checkinatwork: Limosa numbers too
    niss_note = out.t(f"{personal}_full" if out.full_niss else f"{personal}_masked")
    return (
        f'<header>\n<h1>{out.t("title")}</h1>\n<p class="subtitle">{out.t("subtitle")}</p>\n'
        f"{_facts(facts)}\n"
        f'<p class="small">{out.t("times_in", zone=context.tz.key)} {niss_note}</p>\n</header>'
    )


def _period(out: _Writer) -> str:
    """Whole days (an export's --from/--to dates) as dates, the last one included."""
    start, end = out.context.period_from_ns, out.context.period_to_ns
    if _is_midnight(out, start) and _is_midnight(out, end) and end > start:
        return out.t("period_range", start=out.day(start), end=out.day(end - 1))
    return out.t("period_range", start=out.when(start), end=out.when(end))


def _is_midnight(out: _Writer, wall_ns: int) -> bool:
    moment = out.local(wall_ns)
    return (moment.hour, moment.minute, moment.second) == (0, 0, 0) and not wall_ns % 10**9


def _facts(pairs: Sequence[tuple[str, str]]) -> str:
    items = "".join(f"<dt>{name}</dt><dd>{value}</dd>" for name, value in pairs)
    return f'<dl class="facts">{items}</dl>'


def _summary(out: _Writer, analysis: Analysis) -> str:
    check = out.context.check
    chain = (
        f'<span class="ok">{out.t("chain_ok")}</span>'
        if check.ok
        else f'<span class="bad">{out.t("chain_broken", seq=_break_seq(check))}</span>'
    )
    counts = [(out.t(f"kind_{kind.value}"), _count(analysis.outages, kind)) for kind in OutageKind]
    figures = [
        (out.t("sum_captured"), analysis.captured),
        (out.t("sum_acknowledged"), analysis.acknowledged),
        *counts,
        (out.t("sum_late"), len(analysis.late)),
        (out.t("sum_duplicated"), len(analysis.duplicated)),
        (out.t("sum_unconfirmed"), analysis.still_unconfirmed),
        (out.t("sum_rejected"), len(analysis.rejected)),
    ]
    if out.presence or analysis.force_majeure:
        figures.append((out.t("sum_force_majeure"), len(analysis.force_majeure)))
    tiles = "".join(
        f'<div class="tile{" zero" if not n else ""}"><b>{n}</b><span>{name}</span></div>'
        for name, n in figures
    )
    chain_tile = f'<div class="tile chain"><span>{out.t("sum_chain")}</span>{chain}</div>'
    service = out.t(f"channel_{out.context.channel.value}")
    channel = f'<p class="small">{out.t("service")}: <b>{service}</b></p>'
    return _section(out.t("summary"), f'{channel}<div class="tiles">{tiles}{chain_tile}</div>')


def _count(outages: Sequence[Outage], kind: OutageKind) -> int:
    return sum(outage.kind == kind for outage in outages)


def _break_seq(check: ChainCheck) -> int:
    return check.broken.seq if check.broken else 0


# --- Timeline (inline SVG) --------------------------------------------------------------

_WIDTH = 1000
_LEFT = 150  # the track labels' column
_RIGHT = 992
_AXIS = 30
_ROW = 46
_BAR_TOP, _BAR_HEIGHT = 8, 16  # within a row
_LABEL_WIDTH = 70  # about, of a bar's "#n 09:10–12:14" label


@dataclass(frozen=True, slots=True)
class _Scale:
    start_ns: int
    end_ns: int

    def x(self, wall_ns: int) -> float:
        span = max(self.end_ns - self.start_ns, 1)
        fraction = min(max((wall_ns - self.start_ns) / span, 0.0), 1.0)
        return round(_LEFT + fraction * (_RIGHT - _LEFT), 1)


def _track_of(outage: Outage) -> str:
    if outage.kind in (OutageKind.POWER_CUT, OutageKind.CRASH):
        return "power"
    if outage.kind == OutageKind.READER:
        return f"reader:{outage.subject}"
    return outage.kind.value


def _tracks(out: _Writer, analysis: Analysis) -> dict[str, str]:
    """Track key -> label (escaped), top to bottom."""
    readers = {f"reader:{name}": out.t("track_reader", reader=name) for name in analysis.readers}
    readers |= {
        key: out.t("track_reader", reader=o.subject)
        for o in analysis.outages
        if (key := _track_of(o)).startswith("reader:") and key not in readers
    }
    return {
        "uplink": out.t("track_uplink"),
        "power": out.t("track_power"),
        **readers,
        "clock": out.t("track_clock"),
    }


def _timeline(out: _Writer, analysis: Analysis, numbered: Sequence[tuple[int, Outage]]) -> str:
    scale = _Scale(out.context.period_from_ns, out.context.period_to_ns)
    tracks = _tracks(out, analysis)
    row_of = {key: _AXIS + index * _ROW for index, key in enumerate(tracks)}
    height = _AXIS + _ROW * len(tracks)
    parts = [
        *_day_grid(out, scale, height),
        *(_track_row(label, row_of[key]) for key, label in tracks.items()),
        *_tap_ticks(analysis, scale, row_of),
        *(_bar(out, scale, row_of[_track_of(o)], number, o) for number, o in numbered),
        *(_jump_mark(out, scale, row_of["clock"], jump.wall_ns, jump.correction_ns)
          for jump in analysis.clock_jumps),
    ]  # fmt: skip
    svg = (
        f'<svg class="timeline" viewBox="0 0 {_WIDTH} {height}" width="{_WIDTH}"'
        f' height="{height}" role="img" aria-label="{out.t("timeline")}"'
        f' xmlns="http://www.w3.org/2000/svg">\n' + "\n".join(parts) + "\n</svg>"
    )
    return _section(out.t("timeline"), svg + _legend(out), section_class="keep")


def _day_grid(out: _Writer, scale: _Scale, height: int) -> list[str]:
    midnights = _local_midnights(out.context.tz, scale.start_ns, scale.end_ns)
    every = max(1, math.ceil(len(midnights) / 14))  # at most 14 day labels
    parts = []
    for index, (day_start, day_end) in enumerate(itertools.pairwise(midnights)):
        x1, x2 = scale.x(day_start), scale.x(day_end)
        shade = "day odd" if index % 2 else "day"
        parts.append(f'<rect class="{shade}" x="{x1}" y="{_AXIS - 4}" width="{x2 - x1}"'
                     f' height="{height - _AXIS + 4}"/>')  # fmt: skip
        if index % every == 0:
            moment = out.local(day_start)
            label = f"{out.weekday(moment)} {moment.strftime(out.texts['day_month'])}"
            parts.append(f'<text class="day" x="{(x1 + x2) / 2}" y="{_AXIS - 10}"'
                         f' text-anchor="middle">{html.escape(label)}</text>')  # fmt: skip
    parts.extend(f'<line class="midnight" x1="{scale.x(m)}" y1="{_AXIS - 4}" x2="{scale.x(m)}"'
                 f' y2="{height}"/>' for m in midnights)  # fmt: skip
    return parts


def _local_midnights(tz: ZoneInfo, start_ns: int, end_ns: int) -> list[int]:
    """The local midnights from the one at or before start to the one at or after end."""
    day = datetime.fromtimestamp(start_ns // 1_000_000_000, tz=tz).date()
    midnights: list[int] = []
    while not midnights or midnights[-1] < end_ns:
        midnight = datetime(day.year, day.month, day.day, tzinfo=tz)
        midnights.append(int(midnight.timestamp()) * 1_000_000_000)
        day += timedelta(days=1)
    return midnights


def _track_row(label: str, y: int) -> str:
    middle = y + _BAR_TOP + _BAR_HEIGHT / 2
    return (
        f'<text class="track" x="{_LEFT - 8}" y="{middle + 4}" text-anchor="end">{label}</text>'
        f'<line class="baseline" x1="{_LEFT}" y1="{middle}" x2="{_RIGHT}" y2="{middle}"/>'
    )


def _tap_ticks(analysis: Analysis, scale: _Scale, row_of: Mapping[str, int]) -> list[str]:
    ticks = []
    for record in analysis.records:
        captured = record.captured
        y = row_of.get(f"reader:{captured.reader}") if captured else None
        if captured is None or y is None:
            continue
        x = scale.x(captured.wall_ns)
        top = y + _BAR_TOP + 3
        ticks.append(f'<line class="tap" x1="{x}" y1="{top}" x2="{x}" y2="{top + 10}"/>')
    return ticks


def _bar(out: _Writer, scale: _Scale, y: int, number: int, outage: Outage) -> str:
    end_ns = outage.end_ns if outage.end_ns is not None else out.context.period_to_ns
    x1, x2 = scale.x(outage.start_ns), scale.x(end_ns)
    width = max(x2 - x1, 3.0)
    ends = out.hour(outage.end_ns) if outage.end_ns is not None else "…"
    label = f"#{number} {out.hour(outage.start_ns)}–{ends}"
    title = f"#{number} {out.t(f'kind_{outage.kind.value}')}: {_span_text(out, outage)}"
    anchor, text_x = _label_anchor((x1 + x1 + width) / 2)
    ongoing = " ongoing" if outage.ongoing else ""
    return (
        f'<g class="bar k-{outage.kind.value}{ongoing}"><title>{title}</title>'
        f'<rect x="{x1}" y="{y + _BAR_TOP}" width="{width}" height="{_BAR_HEIGHT}" rx="2"/>'
        f'<text x="{text_x}" y="{y + _BAR_TOP + _BAR_HEIGHT + 12}"'
        f' text-anchor="{anchor}">{html.escape(label)}</text></g>'
    )


def _label_anchor(middle: float) -> tuple[str, float]:
    """Keep a bar's label inside the plot near its edges."""
    if middle - _LABEL_WIDTH / 2 < _LEFT:
        return "start", _LEFT
    if middle + _LABEL_WIDTH / 2 > _RIGHT:
        return "end", _RIGHT
    return "middle", middle


def _span_text(out: _Writer, outage: Outage) -> str:
    end = out.when(outage.end_ns) if outage.end_ns is not None else out.t("ongoing")
    return f"{_start_text(out, outage)} – {end}"


def _jump_mark(out: _Writer, scale: _Scale, y: int, wall_ns: int, correction_ns: int) -> str:
    x, middle = scale.x(wall_ns), y + _BAR_TOP + _BAR_HEIGHT / 2
    title = f"{out.t('legend_jump')}: {out.when(wall_ns)}, {_correction(correction_ns)}"
    return (
        f'<g class="jump"><title>{title}</title><path d="M{x},{middle - 7} l5,7 l-5,7 l-5,-7 z"/>'
        "</g>"
    )


def _legend(out: _Writer) -> str:
    kinds = "".join(
        f"<span>{_swatch(f'k-{kind.value}')} {out.t(f'kind_{kind.value}')}</span>"
        for kind in OutageKind
    )
    tap = '<svg width="14" height="12"><line class="tap" x1="7" y1="1" x2="7" y2="11"/></svg>'
    jump = '<svg width="14" height="14" class="jump"><path d="M7,0 l5,7 l-5,7 l-5,-7 z"/></svg>'
    extras = (
        f"<span>{_swatch('k-uplink ongoing')} {out.t('legend_ongoing')}</span>"
        f"<span>{tap} {out.t('legend_taps')}</span><span>{jump} {out.t('legend_jump')}</span>"
    )
    return f'<p class="legend">{kinds}{extras}</p>'


def _swatch(css: str) -> str:
    return (
        f'<svg width="14" height="12" class="bar {css}">'
        '<rect x="1" y="1" width="12" height="10" rx="2"/></svg>'
    )


# --- Tables -----------------------------------------------------------------------------


def _outage_table(out: _Writer, numbered: Sequence[tuple[int, Outage]]) -> str:
    headers = [out.t(key) for key in _OUTAGE_COLUMNS]
    rows = [_outage_row(out, number, outage) for number, outage in numbered]
    intro = f"{out.t('outages_intro')} {out.t('power_note')}"
    return _section(out.t("outages"), _table(headers, rows, out, "outages"), intro)


_OUTAGE_COLUMNS = (
    "col_no", "col_kind", "col_cause", "col_start", "col_end", "col_duration", "col_held",
    "col_acknowledged",
)  # fmt: skip


def _outage_row(out: _Writer, number: int, outage: Outage) -> list[str]:
    kind = outage.kind.value
    return [
        f'<span id="outage-{number}">{number}</span>',
        f"{_swatch(f'k-{kind}')} {out.t(f'kind_{kind}')}",
        _cause(out, outage),
        _start_text(out, outage),
        out.when(outage.end_ns) if outage.end_ns is not None else f"<em>{out.t('ongoing')}</em>",
        _duration_text(out, outage),
        _held_text(out, outage),
        _acknowledged_text(out, outage),
    ]


def _start_text(out: _Writer, outage: Outage) -> str:
    start = out.when(outage.start_ns)
    return out.t("or_earlier", time=start) if outage.began_before else start


def _duration_text(out: _Writer, outage: Outage) -> str:
    end_ns = out.last_ns if outage.end_ns is None else outage.end_ns
    duration = out.duration(end_ns - outage.start_ns)
    bounded = outage.began_before or outage.end_ns is None
    return out.t("at_least", duration=duration) if bounded else duration


def _cause(out: _Writer, outage: Outage) -> str:
    kind = outage.kind
    if kind in (OutageKind.POWER_CUT, OutageKind.CRASH):
        return out.t(f"cause_{kind.value}")
    if kind == OutageKind.READER:
        return f"<b>{html.escape(outage.subject)}</b><br><small>{html.escape(outage.cause)}</small>"
    if kind == OutageKind.CLOCK:
        return out.t("cause_clock", source=outage.cause) if outage.cause else "—"
    detail = f"<br><small>{html.escape(outage.detail)}</small>" if outage.detail else ""
    return _uplink_cause(out, outage.cause) + detail


def _uplink_cause(out: _Writer, cause: str) -> str:
    code = f" <code>{html.escape(cause)}</code>" if cause else ""
    if cause in _KNOWN_CAUSES:
        return out.t(f"cause_{cause}") + code
    if cause.startswith("http "):
        return out.t("cause_http", status=cause.removeprefix("http ")) + code
    return html.escape(cause) or "—"


def _held_text(out: _Writer, outage: Outage) -> str:
    if outage.kind != OutageKind.UPLINK:
        return "—"
    if outage.pending_at_start:
        return out.t("held_pending", count=len(outage.held), pending=outage.pending_at_start)
    return str(len(outage.held))


def _acknowledged_text(out: _Writer, outage: Outage) -> str:
    held = outage.held
    if not held:
        return "—"
    times = [r.acknowledgement.wall_ns for r in held if r.acknowledgement]
    if len(times) == len(held):
        return out.t("ack_all", time=out.when(max(times)))
    day_passed = sum(r.acknowledgement is None and _day_passed(r) for r in held)
    rejected = sum(r.acknowledgement is None and r.rejection is not None for r in held)
    rejected -= day_passed
    unconfirmed = sum(r.acknowledgement is None and r.unconfirmed for r in held)
    waiting = len(held) - len(times) - rejected - day_passed - unconfirmed
    parts = [
        out.t("ack_some", done=len(times), total=len(held), time=out.when(max(times)))
        if times
        else out.t("ack_none")
    ]
    if day_passed:
        parts.append(out.t("n_day_passed", count=day_passed))
    if rejected:
        parts.append(out.t("n_rejected", count=rejected))
    if unconfirmed:
        parts.append(out.t("n_unconfirmed", count=unconfirmed))
    if waiting and times:
        parts.append(out.t("n_not_yet", count=waiting))
    return "; ".join(parts)


def _day_passed(record: RegistrationRecord) -> bool:
    return record.rejection is not None and record.rejection.day_passed


def _registration_columns(out: _Writer) -> tuple[str, ...]:
    if out.presence:
        return ("col_tap", "col_type_presence", "col_worker", "col_person")
    return ("col_tap", "col_type", "col_worker", "col_niss")


def _registration_cells(out: _Writer, record: RegistrationRecord) -> list[str]:
    captured = record.captured
    if captured is None:
        outside = f'<span class="muted">{out.t("outside_period")}</span>'
        return [outside, "", f'<code class="id">{html.escape(record.id)}</code>', out.niss(record)]
    return [
        out.when(captured.wall_ns),
        out.direction(captured.direction),
        html.escape(captured.worker),
        f'<span class="niss">{out.niss(record)}</span>',
    ]


def _registrations_table(
    out: _Writer,
    records: Sequence[RegistrationRecord],
    columns: Sequence[str],
    cells: Callable[[RegistrationRecord], list[str]],
) -> str:
    headers = [out.t(key) for key in (*_registration_columns(out), *columns)]
    rows = [[*_registration_cells(out, record), *cells(record)] for record in records]
    return _table(headers, rows, out, "registrations")


def _held_table(out: _Writer, number: int, outage: Outage) -> str:
    table = _registrations_table(
        out,
        outage.held,
        ("col_reader", "col_acknowledged", "col_onss_id", "col_late"),
        lambda record: _delivery_cells(out, record),
    )
    return _section(out.t("held_title", number=number), table, section_class="held")


def _delivery_cells(out: _Writer, record: RegistrationRecord) -> list[str]:
    reader = html.escape(record.captured.reader) if record.captured else ""
    ack = record.acknowledgement
    if ack is not None:
        late = f'<b class="late">{out.t("yes")}</b>' if ack.late else out.t("no")
        return [reader, out.when(ack.wall_ns), _onss_id(out, record), late]
    if _day_passed(record):
        return [reader, f'<b class="late">{out.t("day_passed_cell")}</b>', "", ""]
    if record.rejection is not None:
        return [reader, f'<span class="bad">{out.t("rejected_cell")}</span>', "", ""]
    if record.unconfirmed:
        return [reader, f'<b class="late">{out.t("unconfirmed_cell")}</b>', "", ""]
    return [reader, out.t("not_yet"), "", ""]


def _onss_id(out: _Writer, record: RegistrationRecord) -> str:
    """The ONSS id, and whether the employer confirmed it (an answer that could not be read)."""
    ack = record.acknowledgement
    if ack is None:
        return ""
    code = f'<code class="id">{html.escape(ack.onss_id)}</code>'
    if ack.by_employer:
        return f"{code}<br><small>{out.t('confirmed_note')}</small>"
    return code


def _late_table(out: _Writer, analysis: Analysis) -> str:
    table = _registrations_table(
        out,
        analysis.late,
        ("col_acknowledged", "col_delay", "col_onss_id"),
        lambda record: [*_acknowledged_and_delay(out, record), _onss_id(out, record)],
    )
    return _section(out.t("late_title"), table, out.t("late_intro"))


def _acknowledged_and_delay(out: _Writer, record: RegistrationRecord) -> list[str]:
    ack, captured = record.acknowledgement, record.captured
    if ack is None:
        return ["", ""]
    delay = out.duration(ack.wall_ns - captured.wall_ns) if captured else ""
    return [out.when(ack.wall_ns), delay]


def _duplicated_table(out: _Writer, analysis: Analysis) -> str:
    """One row per registration, however often it was flagged, with the sends it took."""
    by_id = {duplicate.record.id: duplicate for duplicate in analysis.duplicated}

    def cells(record: RegistrationRecord) -> list[str]:
        duplicate = by_id[record.id]
        causes = "<br>".join(html.escape(cause) for cause in duplicate.causes)
        sends = _sends(out, duplicate)
        return [out.when(duplicate.flagged_ns), sends, causes, _onss_id(out, record)]

    table = _registrations_table(
        out,
        [duplicate.record for duplicate in analysis.duplicated],
        ("col_flagged", "col_sends", "col_cause", "col_onss_id"),
        cells,
    )
    return _section(out.t("duplicated_title"), table, out.t("duplicated_intro"))


def _sends(out: _Writer, duplicate: Duplicate) -> str:
    if duplicate.answered:
        return str(duplicate.sends)
    return out.t("sends_unanswered", count=duplicate.sends)


def _unconfirmed_table(out: _Writer, analysis: Analysis) -> str:
    """One row per registration whose 2xx answer could not be read, with how the employer
    resolved it (each time, when it happened more than once)."""
    by_id = {unconfirmed.record.id: unconfirmed for unconfirmed in analysis.unconfirmed}

    def cells(record: RegistrationRecord) -> list[str]:
        episodes = by_id[record.id].episodes
        return [
            "<br>".join(out.when(episode.since_ns) for episode in episodes),
            "<br>".join(_unconfirmed_cause(out, episode) for episode in episodes),
            "<br>".join(_resolution(out, episode) for episode in episodes),
        ]

    table = _registrations_table(
        out,
        [unconfirmed.record for unconfirmed in analysis.unconfirmed],
        ("col_unconfirmed_since", "col_cause", "col_resolution"),
        cells,
    )
    return _section(out.t("unconfirmed_title"), table, out.t("unconfirmed_intro"))


def _unconfirmed_cause(out: _Writer, episode: Episode) -> str:
    if episode.began_before:
        return f'<span class="muted">{out.t("cause_before_period")}</span>'
    return html.escape(episode.cause) or "—"


def _resolution(out: _Writer, episode: Episode) -> str:
    if episode.resolution is None or episode.resolved_ns is None:
        return f'<b class="late">{out.t("not_resolved")}</b>'
    text = out.t(f"resolved_{episode.resolution.value}", time=out.when(episode.resolved_ns))
    if episode.resolution == Resolution.SENT_AGAIN:
        return text
    return f'{text} <code class="id">{html.escape(episode.onss_id)}</code>'


def _force_majeure_table(
    out: _Writer, analysis: Analysis, numbered: Sequence[tuple[int, Outage]]
) -> str:
    """Checkinatwork presences rejected on the box as `day-passed`, each with the outages
    that kept it there: those that held it (tapped during), or that went on between its
    tap and its rejection (tapped before, or a power cut)."""
    if not (out.presence or analysis.force_majeure):
        return ""

    def cells(record: RegistrationRecord) -> list[str]:
        declaration = out.declarations.get(record.id, "")
        outages = _keeping(record, numbered)
        links = "<br>".join(_outage_link(out, number, outage) for number, outage in outages)
        rejected_at = out.when(record.rejection.wall_ns) if record.rejection else ""
        held = links or f'<span class="muted">{out.t("held_by_none")}</span>'
        return [f"<code>{html.escape(declaration) or '—'}</code>", held, rejected_at]

    table = _registrations_table(
        out,
        analysis.force_majeure,
        ("col_declaration", "col_held_by", "col_rejected_at"),
        cells,
    )
    return _section(out.t("force_majeure_title"), table, out.t("force_majeure_intro"))


_KEEPING_KINDS = (OutageKind.UPLINK, OutageKind.POWER_CUT, OutageKind.CRASH, OutageKind.CLOCK)


def _keeping(
    record: RegistrationRecord, numbered: Sequence[tuple[int, Outage]]
) -> list[tuple[int, Outage]]:
    held = [(n, o) for n, o in numbered if any(r.id == record.id for r in o.held)]
    if held or record.captured is None or record.rejection is None:
        return held
    start, end = record.captured.wall_ns, record.rejection.wall_ns
    return [
        (n, o)
        for n, o in numbered
        if o.kind in _KEEPING_KINDS and o.start_ns <= end and (o.end_ns or end) >= start
    ]


def _outage_link(out: _Writer, number: int, outage: Outage) -> str:
    kind = out.t(f"kind_{outage.kind.value}")
    return f'<a href="#outage-{number}">#{number}</a> {kind}: {_span_text(out, outage)}'


def _per_day_table(out: _Writer, analysis: Analysis) -> str:
    """For each local day: registrations by type, how many the ONSS acknowledged, and (at
    a Checkinatwork site) how many were presences not delivered on their day."""
    days: dict[str, list[RegistrationRecord]] = {}
    for record in analysis.records:
        if record.captured is not None:
            days.setdefault(out.day(record.captured.wall_ns), []).append(record)
    if not days:
        return ""
    columns = ["col_day", "col_registrations", "col_acknowledged"]
    if out.presence or analysis.force_majeure:
        columns.append("col_force_majeure")
    rows = [_day_row(out, day, records, len(columns)) for day, records in days.items()]
    table = _table([out.t(key) for key in columns], rows, out, "per-day")
    return _section(out.t("perday_title"), table)


def _day_row(
    out: _Writer, day: str, records: Sequence[RegistrationRecord], width: int
) -> list[str]:
    types: dict[str, int] = {}
    for record in records:
        if record.captured is not None:
            types[record.captured.direction] = types.get(record.captured.direction, 0) + 1
    by_type = ", ".join(f"{count} {out.direction(kind)}" for kind, count in types.items())
    acknowledged = sum(record.acknowledgement is not None for record in records)
    row = [day, f"{len(records)} ({by_type})", str(acknowledged)]
    if width > len(row):
        row.append(str(sum(map(_day_passed, records))))
    return row


def _rejected_table(out: _Writer, analysis: Analysis) -> str:
    table = _registrations_table(
        out,
        analysis.rejected,
        ("col_rejected_at", "col_source", "col_errors"),
        lambda record: _rejection_cells(out, record),
    )
    return _section(out.t("rejected_title"), table, out.t("rejected_intro"))


def _rejection_cells(out: _Writer, record: RegistrationRecord) -> list[str]:
    rejection = record.rejection
    if rejection is None:
        return ["", "", ""]
    source_key = f"source_{rejection.source}"
    source = out.t(source_key) if source_key in out.texts else html.escape(rejection.source)
    errors = "<br>".join(html.escape(error) for error in rejection.errors)
    return [out.when(rejection.wall_ns), source, errors]


def _clock_table(out: _Writer, analysis: Analysis) -> str:
    if not analysis.clock_jumps:
        return ""
    headers = [out.t("col_when"), out.t("col_correction")]
    rows = [[out.when(j.wall_ns), _correction(j.correction_ns)] for j in analysis.clock_jumps]
    return _section(out.t("clock_title"), _table(headers, rows, out, "clock"), out.t("clock_intro"))


def _correction(correction_ns: int) -> str:
    return f"{correction_ns / 1e9:+.1f} s"


# --- Verification and notes -------------------------------------------------------------


def _verification(out: _Writer, entries: Sequence[Entry]) -> str:
    context = out.context
    facts = [(out.t("ver_entries"), str(len(entries)))]
    if entries:
        facts.append((out.t("ver_first"), _entry_ref(out, entries[0])))
        facts.append((out.t("ver_last"), _entry_ref(out, entries[-1])))
    if context.head is not None:
        facts.append((out.t("ver_head"), _entry_ref(out, context.head)))
    facts.append((out.t("ver_result"), _verdict(out, context.check)))
    command = "<pre>badge-gateway evidence verify --export DIR</pre>"
    body = f'{_facts(facts)}\n<p class="intro">{out.t("verification_intro")}</p>{command}'
    return _section(out.t("verification"), body, section_class="keep verification")


def _entry_ref(out: _Writer, entry: Entry) -> str:
    where = out.t("ver_entry", seq=entry.seq, time=out.when(entry.wall_ns))
    return f'{where}<br><code class="hash">{html.escape(entry.hash)}</code>'


def _verdict(out: _Writer, check: ChainCheck) -> str:
    broken = check.broken
    if broken is not None:
        problem_key = f"problem_{broken.problem}"
        problem = out.texts.get(problem_key, broken.problem)
        text = out.t("ver_broken", seq=broken.seq, problem=problem, detail=broken.detail)
        return f'<span class="bad">{text}</span>'
    if not check.entries:
        return out.t("ver_empty")
    return f'<span class="ok">{out.t("ver_ok", count=check.entries)}</span>'


def _notes(out: _Writer, analysis: Analysis) -> str:
    if not analysis.notes:
        return ""
    headers = ["seq", out.t("col_kind"), out.t("col_errors")]
    rows = [[str(n.seq), html.escape(n.kind), html.escape(n.problem)] for n in analysis.notes]
    return _section(out.t("notes_title"), _table(headers, rows, out, "notes"), out.t("notes_intro"))


_CSS = """
@page { size: A4; margin: 14mm 12mm 16mm; }
* { box-sizing: border-box; }
html { -webkit-print-color-adjust: exact; print-color-adjust: exact; }
body { margin: 0; color: #1d2430; background: #eceff3;
  font: 13px/1.45 "DejaVu Sans", "Segoe UI", "Helvetica Neue", Arial, sans-serif; }
main { max-width: 1080px; margin: 24px auto; padding: 36px 44px 28px; background: #fff;
  box-shadow: 0 1px 4px rgba(0, 0, 0, .18); }
h1 { font-size: 22px; margin: 0 0 4px; color: #173a63; }
h2 { font-size: 15px; margin: 26px 0 8px; padding-bottom: 3px; color: #173a63;
  border-bottom: 2px solid #173a63; break-after: avoid; page-break-after: avoid; }
header { border-bottom: 1px solid #c9d1dc; padding-bottom: 8px; }
.subtitle { color: #4a5565; margin: 0 0 12px; max-width: 62em; }
dl.facts { display: grid; grid-template-columns: max-content 1fr; gap: 3px 18px; margin: 0 0 8px; }
dl.facts dt { color: #4a5565; }
dl.facts dd { margin: 0; font-weight: 600; }
.small, .intro { color: #4a5565; font-size: 12px; margin: 0 0 6px; }
.tiles { display: grid; grid-template-columns: repeat(auto-fill, minmax(118px, 1fr)); gap: 8px; }
.tile { border: 1px solid #c9d1dc; border-radius: 4px; padding: 6px 10px; break-inside: avoid; }
.tile b { display: block; font-size: 20px; line-height: 1.2; }
.tile span { font-size: 11px; color: #4a5565; }
.tile.zero b { color: #9aa3af; }
.tile.chain { grid-column: span 2; }
.tile.chain span { display: block; }
.tile.chain .ok, .tile.chain .bad { font-size: 14px; }
.ok { color: #1d7a3a; font-weight: 700; }
.bad { color: #b3261e; font-weight: 700; }
.late { color: #a35200; }
table { width: 100%; border-collapse: collapse; font-size: 12px; margin: 4px 0 8px; }
th { text-align: left; vertical-align: bottom; font-weight: 600; padding: 5px 6px;
  background: #eef2f7; border-bottom: 1.5px solid #9aa6b6; }
td { vertical-align: top; padding: 4px 6px; border-bottom: 1px solid #dde3ea; }
tr, .keep, .tile { break-inside: avoid; page-break-inside: avoid; }
thead { display: table-header-group; }
table.outages td:first-child { font-weight: 700; }
code, pre { font-family: "DejaVu Sans Mono", Consolas, monospace; font-size: 11px; }
code.hash { word-break: break-all; color: #33404f; }
pre { background: #f4f6f9; border: 1px solid #dde3ea; padding: 6px 10px; margin: 4px 0; }
.muted, small { color: #5f6b7a; }
.none { color: #5f6b7a; font-style: italic; }
svg.timeline { width: 100%; height: auto; display: block; margin: 6px 0 2px; }
svg.timeline text { font-size: 11px; fill: #1d2430; }
svg.timeline text.track { font-weight: 600; }
svg.timeline text.day { font-size: 11px; fill: #4a5565; }
svg.timeline .bar text { font-size: 10px; }
.day { fill: #ffffff; }
.day.odd { fill: #f3f5f8; }
.midnight { stroke: #c3cad4; stroke-width: 1; }
.baseline { stroke: #9fb8a6; stroke-width: 2; }
.tap { stroke: #6b7685; stroke-width: 1; }
.jump path { fill: #173a63; }
.bar rect { stroke-width: 1; }
.k-uplink rect { fill: #f2a541; stroke: #b86a12; }
.k-power-cut rect { fill: #d6574c; stroke: #9b2c22; }
.k-crash rect { fill: #a57ad6; stroke: #6c43a0; }
.k-reader rect { fill: #4f8fd0; stroke: #245f9c; }
.k-clock rect { fill: #d9c43a; stroke: #8d7d10; }
.bar.ongoing rect { fill-opacity: .45; stroke-dasharray: 3 2; }
.legend { font-size: 11px; color: #4a5565; margin: 4px 0 0; }
.legend span { display: inline-block; margin-right: 14px; white-space: nowrap; }
.legend svg, td svg { vertical-align: -1px; }
footer { margin-top: 24px; padding-top: 6px; font-size: 11px; color: #5f6b7a;
  border-top: 1px solid #c9d1dc; }
@media print {
  body { background: #fff; font-size: 11px; }
  main { max-width: none; margin: 0; padding: 0; box-shadow: none; }
  h2 { margin-top: 18px; }
}
"""
