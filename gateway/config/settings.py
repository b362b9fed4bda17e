"""`GatewayConfig`, the whole configuration: its sections, the checks that span them, and
the sources its values come from (a file or a dict, with BADGE_GATEWAY_* variables over it).

Build it with `load_config` or `config_from_dict` (gateway.config.loading), which lay their
file under the environment for the duration of one build.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from pydantic import (
    ValidationError,
    ValidationInfo,
    ValidatorFunctionWrapHandler,
    field_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from gateway.config.outputs import Acr122uOutputConfig, FeedbackConfig, LogOutputConfig
from gateway.config.readers import ReaderConfig
from gateway.config.sections import (
    AttendanceConfig,
    BadgesConfig,
    ClockConfig,
    ControlConfig,
    EvidenceConfig,
    LoggingConfig,
    MqttConfig,
    SiteConfig,
    StorageConfig,
    UplinkConfig,
)

ENV_PREFIX = "BADGE_GATEWAY_"
ENV_NESTED_DELIMITER = "__"

FileSource = Callable[[type[BaseSettings]], PydanticBaseSettingsSource]

# The file (or dict) being loaded by the current load_config/config_from_dict call. A
# context variable rather than class state: it is reset when the call returns, so nothing
# carries over from one load to the next, and concurrent loads do not see each other's.
_layer: ContextVar[FileSource | None] = ContextVar("_layer", default=None)


class GatewayConfig(BaseSettings):
    """The whole configuration; build it with load_config or config_from_dict."""

    model_config = SettingsConfigDict(
        frozen=True,
        extra="forbid",
        env_prefix=ENV_PREFIX,
        env_nested_delimiter=ENV_NESTED_DELIMITER,
    )

    site: SiteConfig
    badges: BadgesConfig
    attendance: AttendanceConfig = AttendanceConfig()
    storage: StorageConfig = StorageConfig()
    control: ControlConfig = ControlConfig()
    clock: ClockConfig = ClockConfig()
    logging: LoggingConfig = LoggingConfig()
    readers: list[ReaderConfig] = []
    feedback: list[FeedbackConfig] = [LogOutputConfig(output="log")]
    uplink: UplinkConfig = UplinkConfig()
    mqtt: MqttConfig = MqttConfig()
    evidence: EvidenceConfig = EvidenceConfig()

    @field_validator("readers", mode="wrap")
    @classmethod
    def _unique_reader_names(
        cls, value: Any, handler: ValidatorFunctionWrapHandler
    ) -> list[ReaderConfig]:
        # Checked on the raw entries, so that a duplicate is reported even when some reader
        # has another error: a ValidationError raised here joins the others.
        duplicates = _duplicate_names(value)
        try:
            readers: list[ReaderConfig] = handler(value)
        except ValidationError as exc:
            if not duplicates:
                raise
            raise ValidationError.from_exception_data(
                exc.title, [*_as_init_errors(exc), *duplicates]
            ) from None
        if duplicates:
            raise ValidationError.from_exception_data("readers", duplicates)
        return readers

    @field_validator("feedback", mode="wrap")
    @classmethod
    def _signalling_readers_exist(
        cls, entries: Any, handler: ValidatorFunctionWrapHandler, info: ValidationInfo
    ) -> list[FeedbackConfig]:
        value: list[FeedbackConfig] = handler(entries)
        nfc_readers = {r.name for r in info.data.get("readers", []) if r.driver == "nfc"}
        errors = [
            InitErrorDetails(
                type=PydanticCustomError(
                    "unknown_reader",
                    "no nfc reader named {name} in [[readers]] (only nfc readers signal)",
                    {"name": repr(entry.reader)},
                ),
                loc=(index, "reader"),
                input=entry.reader,
            )
            for index, entry in enumerate(value)
            if isinstance(entry, Acr122uOutputConfig) and entry.reader not in nfc_readers
        ]
        if errors:
            raise ValidationError.from_exception_data("feedback", errors)
        return value

    @field_validator("uplink")
    @classmethod
    def _what_the_channel_needs(cls, uplink: UplinkConfig, info: ValidationInfo) -> UplinkConfig:
        site = info.data.get("site")
        missing = uplink.missing_for(site.channel) if site is not None else None
        if missing is not None:
            error = PydanticCustomError(
                "required_for_channel",
                "required when the uplink is enabled for channel {channel}",
                {"channel": repr(site.channel.value) if site else ""},
            )
            details = InitErrorDetails(type=error, loc=(missing,), input=None)
            raise ValidationError.from_exception_data("uplink", [details])
        return uplink

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Highest priority first: the environment wins over the file.
        file_source = _layer.get()
        if file_source is None:  # built directly, as GatewayConfig(**values)
            return init_settings, env_settings
        return env_settings, file_source(settings_cls)


@contextmanager
def file_layer(file_source: FileSource) -> Iterator[None]:
    """While it lasts, `GatewayConfig()` reads the file `file_source` makes, env over it."""
    token = _layer.set(file_source)
    try:
        yield
    finally:
        _layer.reset(token)


def _duplicate_names(entries: Any) -> list[InitErrorDetails]:
    first_index: dict[str, int] = {}
    errors: list[InitErrorDetails] = []
    for index, entry in enumerate(entries if isinstance(entries, list) else []):
        name = entry.get("name") if isinstance(entry, Mapping) else getattr(entry, "name", None)
        if not isinstance(name, str):
            continue
        first = first_index.setdefault(name.strip(), index)
        if first != index:
            message = "duplicate reader name, already used by readers[{first}]"
            error = PydanticCustomError("duplicate_reader_name", message, {"first": first})
            errors.append(InitErrorDetails(type=error, loc=(index, "name"), input=name))
    return errors


def _as_init_errors(exc: ValidationError) -> list[InitErrorDetails]:
    return [
        InitErrorDetails(
            type=PydanticCustomError(e["type"], e["msg"], e.get("ctx")),
            loc=e["loc"],
            input=e["input"],
        )
        for e in exc.errors(include_url=False)
    ]
