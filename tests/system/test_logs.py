"""Structured logs with NISS numbers masked, in every written form, nested values and
third-party records included; hex ids that happen to hold eleven digits stay whole."""

from __future__ import annotations

import io
import json
import logging

import structlog

from gateway.system import logs


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
