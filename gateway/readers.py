"""The registry of reader drivers: configuration entry -> driver instance.

Each driver is imported only when a reader uses it: a box with one serial module never
loads nfcpy and libusb.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from typing import TypedDict

from drivers.base import Reader
from drivers.device import Backoff
from drivers.simulated import ScriptedTap, SimulatedReader
from gateway.config import (
    KeyboardReaderConfig,
    NfcReaderConfig,
    Rdm6300ReaderConfig,
    ReaderConfig,
    SerialLineReaderConfig,
    SimulatedReaderConfig,
)


class _Recovery(TypedDict):
    backoff: Backoff
    failed_after: float


def build_reader(config: ReaderConfig) -> Reader:
    match config:
        case SimulatedReaderConfig():
            taps = [ScriptedTap(t.uid, t.after_seconds, t.direction) for t in config.taps]
            return SimulatedReader(config.name, taps, config.start_delay_seconds)
        case NfcReaderConfig():
            from drivers.nfc import NfcReader

            return NfcReader(
                config.name,
                config.path,
                technologies=config.technologies,
                presence_gap=config.presence_gap_seconds,
                **_recovery(config),
            )
        case KeyboardReaderConfig():
            from drivers.keyboard import KeyboardReader

            return KeyboardReader(
                config.name,
                config.device,
                config.uid_format,
                config.max_key_gap_seconds,
                layout=config.layout,
                **_recovery(config),
            )
        case Rdm6300ReaderConfig():
            from drivers.rdm6300 import Rdm6300Parser, Rdm6300Reader

            return Rdm6300Reader(
                config.name,
                port=config.port,
                parser=partial(Rdm6300Parser, config.uid_format),
                baudrate=config.baudrate,
                presence_gap=config.presence_gap_seconds,
                **_recovery(config),
            )
        case SerialLineReaderConfig():
            from drivers.serial_line import LineParser, SerialLineReader

            return SerialLineReader(
                config.name,
                port=config.port,
                parser=partial(LineParser, config.pattern),
                baudrate=config.baudrate,
                presence_gap=config.presence_gap_seconds,
                **_recovery(config),
            )
    raise ValueError(f"no driver for {config!r}")  # unreachable while the union is matched


def _recovery(
    config: NfcReaderConfig | KeyboardReaderConfig | Rdm6300ReaderConfig | SerialLineReaderConfig,
) -> _Recovery:
    return _Recovery(
        backoff=Backoff(maximum=config.reconnect_max_seconds),
        failed_after=config.failed_after_seconds,
    )


def build_readers(configs: Sequence[ReaderConfig]) -> list[Reader]:
    return [build_reader(config) for config in configs]
