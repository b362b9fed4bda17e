"""Small parts with sharp edges: NISS masking in logs, UUIDv7 ids, the clock's sources."""

from __future__ import annotations

import io
import json
import logging
import time
import uuid
from pathlib import Path

import structlog

from gateway.clock import Clock, boot_id, boottime_ns
from gateway.system import logs
from gateway.uuid7 import uuid7


def test_mask_text_hides_every_written_form_of_a_niss() -> None:
    for written in ("85073003328", "85.07.30-033.28", "850730 033 28", "85 07 30 033 28"):
        assert logs.mask_text(f"niss={written}!") == "niss=********328!", written
    assert logs.mask_text("seq 123456789012 and 1234") == "seq 123456789012 and 1234"
    assert logs.mask_text('{"niss": "85073003328"}') == '{"niss": "********328"}'


def test_mask_text_leaves_hex_ids_whole() -> None:
    """Found in the VM's power-cut test: a registration id in a feedback line was masked,
    so the log no longer named the registration it announced."""
    for token in (
        "01a24b45-f690-7026-a121-c85073003328",  # a UUID whose last group ends in 11 digits
        "eedde8dbf0da153ea85073003328be722452924c26dc4885126f80ec429723f7",  # a hash
        "04AB85073003328F",  # a badge uid
    ):
        assert logs.mask_text(f"registration {token}.") == f"registration {token}.", token


def test_log_lines_mask_nested_values_and_stdlib_records() -> None:
    stream = io.StringIO()
    logs.configure(fmt="json", stream=stream)
    try:
        structlog.get_logger("t").info("tap 85073003328", worker={"niss": "85.07.30-033.28"})
        logging.getLogger("thirdparty").warning("saw %s", "85073003328")
    finally:
        logs.configure(fmt="json")
    first, second = (json.loads(line) for line in stream.getvalue().splitlines())
    assert first["event"] == "tap ********328"
    assert first["worker"] == {"niss": "********328"}
    assert second["event"] == "saw ********328"
    assert "85073003328" not in stream.getvalue()


def test_uuid7_ids_are_version_7_increasing_and_carry_the_time() -> None:
    before = time.time_ns() // 1_000_000
    ids = [uuid7() for _ in range(10_000)]
    after = time.time_ns() // 1_000_000
    assert all(isinstance(i, uuid.UUID) and i.version == 7 for i in ids)
    assert all(i.variant == uuid.RFC_4122 for i in ids)
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    assert before <= ids[0].int >> 80 <= ids[-1].int >> 80 <= after + 1


def test_clock_synced_from_the_timesyncd_flag(tmp_path: Path) -> None:
    flag = tmp_path / "synchronized"
    clock = Clock(["timesyncd"], flag)
    assert clock.sample().synced is False
    flag.touch()
    assert clock.sample().synced is True
    assert Clock([], flag).synced() is False


def test_clock_sample_is_wall_boottime_and_this_boot() -> None:
    sample = Clock([], Path("/nonexistent")).sample()
    assert sample.boot_id == Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    assert sample.boot_id == boot_id()
    assert abs(sample.wall_ns - time.time_ns()) < 1_000_000_000
    assert 0 <= boottime_ns() - sample.monotonic_ns < 1_000_000_000
