"""The registry of reader drivers: configuration entry -> driver instance."""

from __future__ import annotations

from collections.abc import Sequence

from drivers.base import Reader
from drivers.simulated import ScriptedTap, SimulatedReader
from gateway.config import ReaderConfig, SimulatedReaderConfig


def build_reader(config: ReaderConfig) -> Reader:
    match config:
        case SimulatedReaderConfig():
            taps = [ScriptedTap(t.uid, t.after_seconds, t.direction) for t in config.taps]
            return SimulatedReader(config.name, taps, config.start_delay_seconds)
    raise ValueError(f"no driver for {config!r}")  # unreachable while the union is matched


def build_readers(configs: Sequence[ReaderConfig]) -> list[Reader]:
    return [build_reader(config) for config in configs]
