"""The daemon's configuration: one TOML file, overridden by BADGE_GATEWAY_* variables.

`load_config` reads the file given at load time (DEFAULT_CONFIG_PATH for the daemon) and
lays the environment over it: `BADGE_GATEWAY_ATTENDANCE__DEBOUNCE_SECONDS=5` sets
`[attendance] debounce_seconds`. Every section refuses unknown keys, and a bad file is
refused whole with every problem named by its dotted path (DESIGN.md, principle 7).
"""

from __future__ import annotations

import json
import os
import re
import stat
import tomllib
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Annotated, Any, Literal, get_args
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    ValidationInfo,
    ValidatorFunctionWrapHandler,
    field_validator,
    model_validator,
)
from pydantic_core import ErrorDetails, InitErrorDetails, PydanticCustomError
from pydantic_settings import (
    BaseSettings,
    InitSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
    TomlConfigSettingsSource,
)

from gateway.identifiers import normalise_declaration
from gateway.models import Language, PlaceOfWork

DEFAULT_CONFIG_PATH = Path("/etc/badge-gateway/gateway.toml")
ENV_PREFIX = "BADGE_GATEWAY_"
ENV_NESTED_DELIMITER = "__"

NonEmptyStr = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)]


def _absolute(path: Path) -> Path:
    if not path.is_absolute():  # it would depend on the directory the daemon starts in
        raise ValueError("must be an absolute path (starting with /)")
    return path


AbsolutePath = Annotated[Path, AfterValidator(_absolute)]


class ConfigError(Exception):
    """A configuration that cannot be used, with every problem found in it."""

    def __init__(self, path: Path | str, errors: Sequence[str]) -> None:
        super().__init__(path, list(errors))
        self.path = path
        self.errors = list(errors)

    def __str__(self) -> str:
        return "\n".join([f"invalid configuration {self.path}:", *(f"  {e}" for e in self.errors)])


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)


class SiteConfig(_Section):
    """The building this box stands in, as declared to the ONSS."""

    name: NonEmptyStr
    declaration: str
    place_of_work: PlaceOfWork
    timezone: str = "Europe/Brussels"
    language: Language = Language.FR

    @field_validator("declaration")
    @classmethod
    def _valid_declaration(cls, value: str) -> str:
        return normalise_declaration(value)

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        # A missing zone is a KeyError, which pydantic would not turn into a field error.
        except (ZoneInfoNotFoundError, ValueError, OSError) as exc:
            raise ValueError("unknown time zone (expected a name like 'Europe/Brussels')") from exc
        return value

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)


class BadgesConfig(_Section):
    file: AbsolutePath
    poll_seconds: float = Field(default=2.0, gt=0)


class AttendanceConfig(_Section):
    mode: Literal["toggle", "explicit"] = "toggle"
    debounce_seconds: float = Field(default=10.0, ge=0, le=3600)


class StorageConfig(_Section):
    journal: AbsolutePath = Path("/var/lib/badge-gateway/journal.db")
    max_size_mb: int | None = Field(default=None, ge=1)


class ControlConfig(_Section):
    socket: AbsolutePath = Path("/run/badge-gateway/control.sock")


class ClockConfig(_Section):
    """How the box tells whether its wall clock is synchronised; no source means never."""

    sources: list[Literal["timesyncd", "kernel"]] = ["timesyncd", "kernel"]
    timesyncd_flag: AbsolutePath = Path("/run/systemd/timesync/synchronized")


class LoggingConfig(_Section):
    format: Literal["auto", "json", "console"] = "auto"
    level: Literal["debug", "info", "warning", "error"] = "info"


class SimulatedTap(_Section):
    uid: NonEmptyStr
    after_seconds: float = Field(default=1.0, ge=0)
    direction: Literal["IN", "OUT"] | None = None


class _ReaderBase(_Section):
    name: NonEmptyStr


class SimulatedReaderConfig(_ReaderBase):
    """Replays a fixed list of taps, each after_seconds after the previous one."""

    driver: Literal["simulated"]
    taps: list[SimulatedTap] = []
    start_delay_seconds: float = Field(default=1.0, ge=0)


class _DeviceReaderBase(_ReaderBase):
    """What every hardware reader shares: how it reconnects and when it counts as failed."""

    # Down (unplugged, not answering) for this long: reported as failed, an outage cause.
    failed_after_seconds: float = Field(default=60.0, gt=0, le=86_400)
    reconnect_max_seconds: float = Field(default=5.0, gt=0, le=300)


class _CardPresenceReaderBase(_DeviceReaderBase):
    """A reader that keeps reporting a card while it lies there (NFC polls, serial modules
    repeating their frame): one read per presentation, however long the card stays."""

    # Unseen for this long, the card counts as removed, and seen again it is a new
    # presentation (arduino12/rdm6300 uses 300 ms; 0.5 s leaves margin for a busy Pi and
    # a poll missing a card at the edge of the field). A quicker re-tap meets the
    # attendance debounce anyway.
    presence_gap_seconds: float = Field(default=0.5, gt=0, le=10)


class NfcReaderConfig(_CardPresenceReaderBase):
    """An nfcpy device: PN532, PN533, ACR122U (../shared/reference: nfcpy quirks)."""

    driver: Literal["nfc"]
    # nfcpy's device path: "usb", "usb:072f:2200", "tty:AMA0:pn532", "tty:USB0", "udp:host:port"
    path: NonEmptyStr = "usb"
    # The card technologies each poll looks for, in this order (nfcpy's names): ISO 14443A
    # (MIFARE, DESFire: most badges), ISO 14443B, FeliCa. Fewer make each poll quicker.
    technologies: list[Literal["106A", "106B", "212F"]] = Field(
        default=["106A", "106B", "212F"], min_length=1
    )


class Rdm6300ReaderConfig(_CardPresenceReaderBase):
    """A 125 kHz EM4100 module speaking RDM6300 frames (STX, 10 hex, 2 hex checksum, ETX)."""

    driver: Literal["rdm6300"]
    port: NonEmptyStr  # a device path (/dev/serial0) or a pyserial URL
    baudrate: int = Field(default=9600, gt=0)
    # "hex": all 5 bytes as 10 upper-case hex digits; "decimal": the 4-byte card id as the
    # 10-digit decimal number printed on most cards.
    uid_format: Literal["hex", "decimal"] = "hex"


class SerialLineReaderConfig(_CardPresenceReaderBase):
    """A reader that sends one badge per line; `pattern` extracts the uid (group "uid")."""

    driver: Literal["serial-line"]
    port: NonEmptyStr
    baudrate: int = Field(default=9600, gt=0)
    pattern: NonEmptyStr = r"(?P<uid>[0-9A-Fa-f]{4,32})"

    @field_validator("pattern")
    @classmethod
    def _compiles(cls, pattern: str) -> str:
        try:
            re.compile(pattern)
        except re.error as exc:
            raise ValueError(f"not a regular expression: {exc}") from None
        return pattern


class KeyboardReaderConfig(_DeviceReaderBase):
    """A USB reader that types the badge number and Enter (keyboard wedge), via evdev."""

    driver: Literal["keyboard"]
    device: AbsolutePath  # a stable path: /dev/input/by-id/usb-...-event-kbd
    uid_format: Literal["decimal", "hex"] = "decimal"
    # The keyboard layout the reader is set to type for: only hex uids care ("azerty": A is
    # the key QWERTY calls Q; digits need no setting).
    layout: Literal["qwerty", "azerty"] = "qwerty"
    # Keys further apart than this end the badge as bad: a reader types every 2-20 ms, a
    # person much slower, so typing on a keyboard never becomes a badge. Raise it only for
    # a slow reader (Bluetooth, or one set to an inter-character delay).
    max_key_gap_seconds: float = Field(default=0.1, gt=0, le=2)


ReaderConfig = Annotated[
    SimulatedReaderConfig
    | NfcReaderConfig
    | Rdm6300ReaderConfig
    | SerialLineReaderConfig
    | KeyboardReaderConfig,
    Field(discriminator="driver"),
]


class LogOutputConfig(_Section):
    """One log line per tap, with the worker's message (the console; journald under systemd)."""

    output: Literal["log"]


class GpioLineConfig(_Section):
    line: int = Field(ge=0)  # the line's offset on the chip (the BCM number on a Raspberry Pi)
    active_low: bool = False  # on when the pin is low (an LED wired from 3.3 V to the pin)


class GpioOutputConfig(_Section):
    """LEDs and a buzzer on GPIO lines, through libgpiod; each optional, at least one."""

    output: Literal["gpio"]
    chip: NonEmptyStr = "/dev/gpiochip0"
    green_led: GpioLineConfig | None = None
    red_led: GpioLineConfig | None = None
    buzzer: GpioLineConfig | None = None

    @model_validator(mode="after")
    def _one_line_each(self) -> GpioOutputConfig:
        roles = {"green_led": self.green_led, "red_led": self.red_led, "buzzer": self.buzzer}
        by_offset: dict[int, list[str]] = {}
        for role, line in roles.items():
            if line is not None:
                by_offset.setdefault(line.line, []).append(role)
        if not by_offset:
            raise ValueError("give at least one of green_led, red_led or buzzer")
        for offset, sharing in by_offset.items():
            if len(sharing) > 1:
                raise ValueError(f"{' and '.join(sharing)} are both line {offset}")
        return self


class DisplayOutputConfig(_Section):
    """A text display: a terminal (the console, a serial LCD's tty), or a file or FIFO."""

    output: Literal["display"]
    device: AbsolutePath = Path("/dev/tty1")
    colour: bool = True  # ANSI colours, on a terminal only
    # Cleared this long after a tap, so that the next worker does not see who came before.
    clear_after_seconds: float = Field(default=10.0, gt=0, le=3600)


class Acr122uOutputConfig(_Section):
    """An ACR122U's own LED and buzzer, played by the nfc reader that drives it.

    A green blink and one beep for a tap that counts, red blinks and three beeps otherwise.
    """

    output: Literal["acr122u"]
    reader: NonEmptyStr  # the name of an nfc reader in [[readers]] (other devices: no-op)


FeedbackConfig = Annotated[
    LogOutputConfig | GpioOutputConfig | DisplayOutputConfig | Acr122uOutputConfig,
    Field(discriminator="output"),
]


HttpsUrl = Annotated[str, StringConstraints(strip_whitespace=True, pattern=r"^https://\S+$")]


class UplinkConfig(_Section):
    """Delivery to the ONSS presence-registration web service (../shared/ONSS_API.md)."""

    enabled: bool = False
    token_url: HttpsUrl = "https://services.socialsecurity.be/REST/oauth/v5/token"  # noqa: S105 (a URL)
    base_url: HttpsUrl = "https://services-sim.socialsecurity.be/REST/presenceRegistration/v1"
    client_id: NonEmptyStr | None = None
    # A path, or a credential name under $CREDENTIALS_DIRECTORY (systemd LoadCredential=).
    private_key: NonEmptyStr = "onss-client-key.pem"
    ca_file: AbsolutePath | None = None  # an extra CA bundle, trusted besides the system's
    batch_size: int = Field(default=50, ge=1, le=200)
    connect_timeout_seconds: float = Field(default=10.0, gt=0, le=120)
    read_timeout_seconds: float = Field(default=30.0, gt=0, le=300)
    backoff_initial_seconds: float = Field(default=1.0, gt=0, le=60)
    backoff_max_seconds: float = Field(default=300.0, gt=0, le=3600)
    late_after_minutes: float = Field(default=15.0, gt=0)

    @model_validator(mode="after")
    def _client_id_when_enabled(self) -> UplinkConfig:
        if self.enabled and self.client_id is None:
            raise ValueError("client_id is required when the uplink is enabled")
        return self


class EvidenceConfig(_Section):
    """The evidence log (docs/evidence.md): what an employer shows a labour inspector."""

    # How often the box notes that it is alive (one small page overwritten in place): a
    # power cut is bounded by the last heartbeat before it.
    heartbeat_seconds: float = Field(default=60.0, ge=5, le=3600)
    # Delivered registrations older than this are pruned (once a day), behind a summary
    # entry that keeps the chain verifiable; pending and rejected ones never are. Also
    # pruned, oldest first, when the journal nears [storage] max_size_mb. Default: 7 years.
    retention_days: int = Field(default=2557, ge=30, le=36_500)
    # An Ed25519 private key (PEM) that signs exported manifests: a path, or a credential
    # name under $CREDENTIALS_DIRECTORY. None: manifests are not signed.
    signing_key: NonEmptyStr | None = None


# The file (or dict) being loaded by the current load_config/config_from_dict call. A
# context variable rather than class state: it is reset when the call returns, so nothing
# carries over from one load to the next, and concurrent loads do not see each other's.
_layer: ContextVar[Path | Mapping[str, Any] | None] = ContextVar("_layer", default=None)


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
        layer = _layer.get()
        if layer is None:  # built directly, as GatewayConfig(**values)
            return init_settings, env_settings
        if isinstance(layer, Path):
            return env_settings, _TomlFile(settings_cls, layer)
        return env_settings, InitSettingsSource(settings_cls, init_kwargs=dict(layer))


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


class _TomlFile(TomlConfigSettingsSource):
    """The TOML source, turning an unreadable file or a syntax error into a ConfigError."""

    def __init__(self, settings_cls: type[BaseSettings], path: Path) -> None:
        self._path = path  # before super().__init__, which reads the file
        super().__init__(settings_cls, toml_file=path)

    def _read_file(self, file_path: Path | Traversable) -> dict[str, Any]:
        try:
            return super()._read_file(file_path)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(self._path, [f"TOML syntax error: {exc}"]) from exc
        except OSError as exc:
            raise ConfigError(self._path, [f"cannot read the file: {exc.strerror}"]) from exc
        except UnicodeDecodeError as exc:
            raise ConfigError(self._path, [f"the file is not UTF-8 text: {exc}"]) from exc


def load_config(path: Path = DEFAULT_CONFIG_PATH) -> GatewayConfig:
    """The configuration in the TOML file at `path`, with the environment laid over it."""
    path = Path(path)
    _check_is_file(path)
    with _loading(path):
        return _build(path)


def _check_is_file(path: Path) -> None:
    # The TOML source silently skips a missing file; the daemon must not.
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise ConfigError(path, ["no such file"]) from None
    except OSError as exc:
        raise ConfigError(path, [f"cannot read the file: {exc.strerror}"]) from None
    if not stat.S_ISREG(mode):
        raise ConfigError(path, ["not a regular file"])


def config_from_dict(data: Mapping[str, Any], source: str) -> GatewayConfig:
    """The configuration in `data` (shaped like the TOML file), with the environment over it.

    `source` names where `data` comes from, for error messages.
    """
    with _loading(data):
        return _build(source)


@contextmanager
def _loading(layer: Path | Mapping[str, Any]) -> Iterator[None]:
    token = _layer.set(layer)
    try:
        yield
    finally:
        _layer.reset(token)


def _build(origin: Path | str) -> GatewayConfig:
    try:
        return GatewayConfig()
    except ValidationError as exc:
        overrides = _env_overrides()
        errors = [_describe(error, overrides) for error in exc.errors(include_url=False)]
        # Not chained: pydantic's own message shows every value, secrets included.
        raise ConfigError(origin, errors) from None
    except SettingsError as exc:
        raise ConfigError(origin, [_describe_env_parse_error(exc)]) from None


# --- error messages --------------------------------------------------------------------

Loc = tuple[str | int, ...]

_SECRET_WORDS = ("key", "secret", "password", "token")


_TOML_TYPES = {
    "model_type": "input should be a table",
    "model_attributes_type": "input should be a table",
    "dict_type": "input should be a table",
    "list_type": "input should be an array",
}


def _union_tags(union_type: Any, key: str) -> frozenset[str]:
    union = get_args(union_type)[0]
    members = get_args(union) or (union,)
    return frozenset(t for m in members for t in get_args(m.model_fields[key].annotation))


# pydantic puts the chosen tag (a reader's `driver`, an output's `output`) into the path of
# errors inside an entry of these lists; we drop it.
_LIST_TAGS = {
    "readers": _union_tags(ReaderConfig, "driver"),
    "feedback": _union_tags(FeedbackConfig, "output"),
}


def _describe(error: ErrorDetails, overrides: Mapping[tuple[str, ...], str]) -> str:
    loc, message, value = _explain(error)
    line = f"{_dotted(loc)}: {message}"
    if not _is_secret(loc):
        line += _got(error["type"], value)
    env_var = _env_source(loc, overrides)
    return f"{line} (from {env_var})" if env_var else line


def _explain(error: ErrorDetails) -> tuple[Loc, str, Any]:
    loc = _without_tags(error["loc"])
    ctx = error.get("ctx", {})
    kind = error["type"]
    if kind == "missing":
        return loc, "required, but missing", None
    if kind == "extra_forbidden":
        return loc, "unknown key", None
    if kind == "union_tag_not_found":
        return (*loc, _tag_key(ctx)), "required, but missing", None
    if kind == "union_tag_invalid":
        key = _tag_key(ctx)
        return (*loc, key), f"unknown {key} (expected {ctx['expected_tags']})", ctx["tag"]
    message = _TOML_TYPES.get(kind) or _reason(error["msg"])
    return loc, message, error["input"]


def _tag_key(ctx: Mapping[str, Any]) -> str:
    return str(ctx["discriminator"]).strip("'")  # given quoted: "'driver'"


def _without_tags(loc: Loc) -> Loc:
    kept: list[str | int] = []
    for part in loc:
        in_entry = len(kept) == 2 and isinstance(kept[1], int)
        if not (in_entry and part in _LIST_TAGS.get(str(kept[0]), ())):
            kept.append(part)
    return tuple(kept)


def _reason(msg: str) -> str:
    for prefix in ("Value error, ", "Assertion failed, "):
        msg = msg.removeprefix(prefix)
    return msg[:1].lower() + msg[1:] if msg[1:2].islower() else msg


def _got(kind: str, value: Any) -> str:
    if isinstance(value, dict):
        return " (got a table)" if kind.endswith("_type") else ""
    if isinstance(value, list | tuple):
        return " (got an array)" if kind.endswith("_type") else ""
    if value is None:
        return ""
    shown = repr(value)
    return f" (got {shown[:60]}…)" if len(shown) > 60 else f" (got {shown})"


def _dotted(loc: Loc) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else f".{part}"
    return text.removeprefix(".") or "(top level)"


def _is_secret(loc: Loc) -> bool:
    return any(w in str(part).lower() for part in loc for w in _SECRET_WORDS)


def _env_overrides() -> dict[tuple[str, ...], str]:
    """The configuration paths set by environment variables, each with its variable."""
    prefix = ENV_PREFIX.lower()
    found: dict[tuple[str, ...], str] = {}
    for name in os.environ:
        if name.lower().startswith(prefix):
            path = name[len(prefix) :].lower().split(ENV_NESTED_DELIMITER)
            found[tuple(path)] = name
    return found


def _env_source(loc: Loc, overrides: Mapping[tuple[str, ...], str]) -> str | None:
    """The variable that gave the value at `loc`, if the environment gave it."""
    for size in range(len(loc), 0, -1):
        name = overrides.get(tuple(str(part) for part in loc[:size]))
        if name is not None:
            return name if _json_holds(os.environ[name], loc[size:]) else None
    return None


def _json_holds(raw: str, rest: Loc) -> bool:
    """Whether a JSON variable has a value at `rest`; parts it lacks came from the file."""
    if not rest:
        return True
    try:
        value = json.loads(raw)
    except ValueError:
        return False
    for part in rest:
        try:
            value = value[part]
        except (KeyError, IndexError, TypeError):
            return False
    return True


def _describe_env_parse_error(exc: SettingsError) -> str:
    match = re.search(r'field "([^"]+)"', str(exc))
    field = match.group(1) if match else "(top level)"
    names = sorted(name for path, name in _env_overrides().items() if path[0] == field)
    where = f" (from {', '.join(names)})" if names else ""
    return f"{field}: the environment value is not valid JSON: {exc.__cause__ or exc}{where}"
