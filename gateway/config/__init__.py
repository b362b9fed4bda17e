"""The configuration: one TOML file (/etc/badge-gateway/gateway.toml), overridden by
BADGE_GATEWAY_* environment variables, validated by pydantic-settings into `GatewayConfig`.
Every problem is reported at once, naming the file, the field and the value.

May import: models, identifiers. Nothing above it.
"""

from gateway.config.settings import (
    DEFAULT_CONFIG_PATH,
    Acr122uOutputConfig,
    AttendanceConfig,
    BadgesConfig,
    ClockConfig,
    ConfigError,
    ControlConfig,
    DisplayOutputConfig,
    EvidenceConfig,
    FeedbackConfig,
    GatewayConfig,
    GpioLineConfig,
    GpioOutputConfig,
    KeyboardReaderConfig,
    LogOutputConfig,
    NfcReaderConfig,
    Rdm6300ReaderConfig,
    ReaderConfig,
    SerialLineReaderConfig,
    SimulatedReaderConfig,
    SimulatedTap,
    SiteConfig,
    StorageConfig,
    UplinkConfig,
    config_from_dict,
    load_config,
)

__all__ = [
    "DEFAULT_CONFIG_PATH",
    "Acr122uOutputConfig",
    "AttendanceConfig",
    "BadgesConfig",
    "ClockConfig",
    "ConfigError",
    "ControlConfig",
    "DisplayOutputConfig",
    "EvidenceConfig",
    "FeedbackConfig",
    "GatewayConfig",
    "GpioLineConfig",
    "GpioOutputConfig",
    "KeyboardReaderConfig",
    "LogOutputConfig",
    "NfcReaderConfig",
    "Rdm6300ReaderConfig",
    "ReaderConfig",
    "SerialLineReaderConfig",
    "SimulatedReaderConfig",
    "SimulatedTap",
    "SiteConfig",
    "StorageConfig",
    "UplinkConfig",
    "config_from_dict",
    "load_config",
]
