"""The configuration: one TOML file (/etc/badge-gateway/gateway.toml), overridden by
BADGE_GATEWAY_* environment variables, validated by pydantic-settings into `GatewayConfig`.
Every problem is reported at once, naming the file, the field and the value.

`sections` holds the one-table sections ([site], [uplink], ...), `readers` the [[readers]]
tables, `outputs` the [[feedback]] tables, `settings` the whole `GatewayConfig` and where its
values come from, `loading` the two ways to build it, `problems` how a refused one is explained.

May import: models, identifiers, errors. Nothing above it.
"""

from gateway.config.loading import DEFAULT_CONFIG_PATH, config_from_dict, load_config
from gateway.config.outputs import (
    Acr122uOutputConfig,
    DisplayOutputConfig,
    FeedbackConfig,
    GpioLineConfig,
    GpioOutputConfig,
    LogOutputConfig,
)
from gateway.config.readers import (
    KeyboardReaderConfig,
    NfcReaderConfig,
    Rdm6300ReaderConfig,
    ReaderConfig,
    SerialLineReaderConfig,
    SimulatedReaderConfig,
    SimulatedTap,
)
from gateway.config.sections import (
    DEFAULT_CONTROL_SOCKET,
    DEFAULT_TIMEZONE,
    AttendanceConfig,
    BadgesConfig,
    ClockConfig,
    ControlConfig,
    EvidenceConfig,
    MqttConfig,
    SiteConfig,
    StorageConfig,
    UplinkConfig,
)
from gateway.config.settings import GatewayConfig
from gateway.errors import ConfigError

__all__ = [
    "DEFAULT_CONFIG_PATH",
    "DEFAULT_CONTROL_SOCKET",
    "DEFAULT_TIMEZONE",
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
    "MqttConfig",
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
