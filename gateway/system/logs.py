"""Logging: structlog, JSON lines for journald, key=value on a terminal, NISS masked.

The masking processor runs last before rendering, on every value of every event, so a
NISS cannot reach a log line however it got into the event (docs/design.md, "Principles":
privacy).
Standard-library loggers (third-party packages) go through the same pipeline.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Mapping
from typing import Any, Literal, TextIO

import structlog
from structlog.typing import EventDict, Processor

# An 11-digit national number, bare or written 85.07.30-033.28 / 850730 033 28, standing
# as a word of its own: eleven digits inside a hex token (a registration's UUID, a badge
# uid, an evidence hash) are not one, and masking them would corrupt the id in the log.
_NISS = re.compile(
    r"(?<![0-9A-Za-z])(\d{2})[.\s]?(\d{2})[.\s]?(\d{2})[-.\s]?(\d{3})[.\s]?(\d{2})(?![0-9A-Za-z])"
)


def mask_text(text: str) -> str:
    return _NISS.sub(lambda m: "********" + "".join(m.groups())[-3:], text)


def masked(value: Any) -> Any:
    """`value` with every NISS-shaped number in its strings masked, at any depth."""
    if isinstance(value, str):
        return mask_text(value)
    if isinstance(value, Mapping):
        return {key: masked(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [masked(item) for item in value]
    return value


def mask_niss_in_event(_: Any, __: str, event_dict: EventDict) -> EventDict:
    for key, value in event_dict.items():
        event_dict[key] = masked(value)
    return event_dict


def _drop_none(_: Any, __: str, event_dict: EventDict) -> EventDict:
    return {key: value for key, value in event_dict.items() if value is not None}


def configure(
    *,
    fmt: Literal["auto", "json", "console"] = "auto",
    level: str = "info",
    stream: TextIO | None = None,
) -> None:
    stream = stream or sys.stderr
    json_output = fmt == "json" or (fmt == "auto" and not stream.isatty())
    renderer: Processor = (
        structlog.processors.JSONRenderer()
        if json_output
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.format_exc_info,
        _drop_none,
        mask_niss_in_event,
    ]
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )
    handler = logging.StreamHandler(stream)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
            foreign_pre_chain=shared,
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # One line per HTTP request is noise next to the uplink's own account of each batch.
    logging.getLogger("httpx").setLevel(max(logging.WARNING, root.level))
    # nfcpy logs every open at INFO and every failed reopen at ERROR; the reader's own
    # health lines (drivers.device) say the same once per change, not once per retry.
    logging.getLogger("nfc").setLevel(
        root.level if root.level <= logging.DEBUG else logging.CRITICAL + 1
    )
