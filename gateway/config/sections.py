"""The configuration's sections that are one table each: [site], [badges], [attendance],
[storage], [control], [clock], [logging], [uplink], [mqtt] and [evidence], and the field types they
share with the reader and output tables.

Every section is frozen and refuses unknown keys.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationInfo,
    field_validator,
    model_validator,
)

from gateway.identifiers import (
    check_box_id,
    check_fleet_name,
    check_topic_prefix,
    normalise_declaration,
    normalise_workplace_id,
)
from gateway.models import Channel, Language, PlaceOfWork

DEFAULT_TIMEZONE = "Europe/Brussels"
DEFAULT_CONTROL_SOCKET = Path("/run/badge-gateway/control.sock")

NonEmptyStr = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)]
HttpsUrl = Annotated[str, StringConstraints(strip_whitespace=True, pattern=r"^https://\S+$")]


def _absolute(path: Path) -> Path:
    if not path.is_absolute():  # it would depend on the directory the daemon starts in
        raise ValueError("must be an absolute path (starting with /)")
    return path


AbsolutePath = Annotated[Path, AfterValidator(_absolute)]


class Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)


def _fits_the_site_channel(value: str, info: ValidationInfo) -> str:
    """One of `declarations`, checked alone: an error names its index and value."""
    return _declaration_for(info.data.get("channel"), value)


class SiteConfig(Section):
    """The building this box stands in, as declared to the ONSS.

    `channel` says which service the site registers with. `declaration` is the default one
    a registration goes under, `declarations` the other contracts served at this entrance
    (a badge register's row names its own); for Checkinatwork each is a WorkPlaceId, the
    declaration of works (or contract) number that identifies the workplace. CIaO needs
    the place of work; Checkinatwork does not take one."""

    name: NonEmptyStr
    channel: Channel = Channel.CIAO
    declaration: str
    declarations: tuple[Annotated[str, AfterValidator(_fits_the_site_channel)], ...] = ()
    place_of_work: PlaceOfWork | None = Field(default=None, validate_default=True)
    timezone: str = DEFAULT_TIMEZONE
    language: Language = Language.FR

    @field_validator("declaration")
    @classmethod
    def _fits_the_channel(cls, value: str, info: ValidationInfo) -> str:
        return _declaration_for(info.data.get("channel"), value)

    @field_validator("declarations")
    @classmethod
    def _each_once(cls, values: tuple[str, ...]) -> tuple[str, ...]:
        twice = sorted({value for value in values if values.count(value) > 1})
        if twice:
            raise ValueError(f"listed twice: {', '.join(twice)}")
        return values

    @field_validator("place_of_work")
    @classmethod
    def _required_for_ciao(
        cls, value: PlaceOfWork | None, info: ValidationInfo
    ) -> PlaceOfWork | None:
        if value is None and info.data.get("channel") is Channel.CIAO:
            raise ValueError("required for channel 'ciao' (sent with every registration)")
        return value

    @property
    def all_declarations(self) -> tuple[str, ...]:
        """The default one first, then the others (without repeating it)."""
        return (self.declaration, *(d for d in self.declarations if d != self.declaration))

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


def _declaration_for(channel: Channel | None, value: str) -> str:
    """A declaration of works (CIaO) or a WorkPlaceId (Checkinatwork), normalised."""
    if channel is Channel.CHECKINATWORK:
        return normalise_workplace_id(value)
    return normalise_declaration(value)


class BadgesConfig(Section):
    file: AbsolutePath
    poll_seconds: float = Field(default=2.0, gt=0)


class AttendanceConfig(Section):
    mode: Literal["toggle", "explicit"] = "toggle"
    debounce_seconds: float = Field(default=10.0, ge=0, le=3600)


class StorageConfig(Section):
    journal: AbsolutePath = Path("/var/lib/badge-gateway/journal.db")
    max_size_mb: int | None = Field(default=None, ge=1)


class ControlConfig(Section):
    socket: AbsolutePath = DEFAULT_CONTROL_SOCKET


class ClockConfig(Section):
    """How the box tells whether its wall clock is synchronised; no source means never."""

    sources: list[Literal["timesyncd", "kernel"]] = ["timesyncd", "kernel"]
    timesyncd_flag: AbsolutePath = Path("/run/systemd/timesync/synchronized")


class LoggingConfig(Section):
    format: Literal["auto", "json", "console"] = "auto"
    level: Literal["debug", "info", "warning", "error"] = "info"


class UplinkConfig(Section):
    """Delivery to the ONSS presence-registration web service (docs/onss-api.md)."""

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
    # One deadline for a whole request, answer included (a server that drips bytes), and a
    # cap on an answer's size (an endless or huge body): 200 items' answers fit in ~40 KiB.
    request_deadline_seconds: float = Field(default=60.0, gt=0, le=600)
    max_answer_bytes: int = Field(default=256 * 1024, ge=4096, le=16 * 1024 * 1024)
    backoff_initial_seconds: float = Field(default=1.0, gt=0, le=60)
    backoff_max_seconds: float = Field(default=300.0, gt=0, le=3600)
    late_after_minutes: float = Field(default=15.0, gt=0)
    type_values: Literal["lower", "upper"] = "lower"
    """The case of `type` on the wire: "lower" sends in/out, "upper" IN/OUT.

    [seen, conflicting] (ONSS_API.md, "What a second look at a real client taught us"): an
    early version of the only public client sent IN/OUT; a later one maps to in/out, quoting
    the ONSS OpenAPI enum as lowercase, the better-supported reading, hence the default.
    `badge-gateway uplink check` settles it for an employer against the simulation
    environment (docs/onss-api.md, "Open questions")."""

    # Checkinatwork (docs/checkinatwork.md): the SOAP endpoint, and the employer's X.509
    # certificate registered at the ONSS for it (a path; `private_key` is its key).
    presence_url: HttpsUrl = "https://services.socialsecurity.be/PresenceRegistration/v1"
    certificate: AbsolutePath | None = None

    def missing_for(self, channel: Channel) -> str | None:
        """The setting this channel needs that is not set, when enabled (the daemon could not
        send anything); None when nothing is missing."""
        if not self.enabled:
            return None
        if channel is Channel.CIAO and self.client_id is None:
            return "client_id"
        if channel is Channel.CHECKINATWORK and self.certificate is None:
            return "certificate"
        return None


_MQTTS_URL = re.compile(r"mqtts://[^\s/:@]+(:[0-9]{1,5})?/?")
_KEY_HEX = re.compile(r"[0-9a-fA-F]{64}")


def _mqtts_url(value: str) -> str:
    if not _MQTTS_URL.fullmatch(value.strip()):
        raise ValueError("must be mqtts://host or mqtts://host:port (TLS is not optional)")
    return value.strip()


def _public_key_hex(value: str) -> str:
    if not _KEY_HEX.fullmatch(value.strip()):
        raise ValueError(
            "must be 64 hex digits (the public key `badge-gateway fleet keygen` prints)"
        )
    return value.strip().lower()


MqttsUrl = Annotated[str, AfterValidator(_mqtts_url)]
FleetName = Annotated[str, AfterValidator(check_fleet_name)]
PublicKeyHex = Annotated[str, AfterValidator(_public_key_hex)]


class MqttConfig(Section):
    """The fleet link (docs/fleet.md): status, events and the evidence to the employer's
    MQTT broker, signed badge registers and commands from it. TLS is always verified."""

    enabled: bool = False
    brokers: list[MqttsUrl] = Field(default_factory=list)  # tried in turn
    site_id: FleetName | None = None
    box_id: Annotated[str, AfterValidator(check_box_id)] | None = None
    username: NonEmptyStr | None = None  # default: box_id
    # A path, or a credential name under $CREDENTIALS_DIRECTORY (LoadCredential=); mode 600.
    password: NonEmptyStr | None = "mqtt-password"  # noqa: S105 (a file's name)
    ca_file: AbsolutePath | None = None  # trusted besides the system's CAs
    client_cert: AbsolutePath | None = None
    client_key: AbsolutePath | None = None
    topic_prefix: Annotated[str, AfterValidator(check_topic_prefix)] = "badge-gateway"
    keepalive_seconds: int = Field(default=30, ge=5, le=600)
    status_interval_seconds: float = Field(default=60.0, ge=5, le=3600)
    # The broker keeps the box's session (its QoS 1 messages, its subscriptions) this long.
    session_expiry_seconds: int = Field(default=7 * 86400, ge=60, le=365 * 86400)
    # The employer's Ed25519 public key (hex) that signs badge registers and commands; none:
    # neither is accepted from the broker.
    fleet_public_key: PublicKeyHex | None = None

    @model_validator(mode="after")
    def _identity_when_enabled(self) -> MqttConfig:
        if self.enabled:
            missing = [name for name in ("brokers", "site_id", "box_id") if not getattr(self, name)]
            if missing:
                raise ValueError(f"required when the fleet link is enabled: {', '.join(missing)}")
        if (self.client_cert is None) != (self.client_key is None):
            raise ValueError("client_cert and client_key go together")
        return self


class EvidenceConfig(Section):
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
