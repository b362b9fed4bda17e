"""The fleet's MQTT topics, under one prefix, per site and per box (docs/fleet.md).

    {prefix}/{site}/{box}/availability   "online" / "offline" (the last will), retained
    {prefix}/{site}/{box}/status         the box's status, JSON, retained
    {prefix}/{site}/{box}/events         outages, failed readers, refusals: JSON, QoS 1
    {prefix}/{site}/{box}/evidence       every evidence entry, in order: JSON, QoS 1
    {prefix}/{site}/badges               the site's signed badge register, retained
    {prefix}/{site}/commands             signed commands for every box of the site
    {prefix}/{site}/commands/{box}       signed commands for one box

A box writes only under its own `{site}/{box}/` and reads only its site's register and
commands: the broker's ACL says so (config/mosquitto/), not the box's good will.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from gateway.errors import InvalidIdentifier
from gateway.identifiers import (
    BOX_TOPICS,
    SITE_TOPICS,
    check_box_id,
    check_fleet_name,
    check_topic_prefix,
)

AVAILABILITY, STATUS, EVENTS, EVIDENCE = BOX_TOPICS
BADGES, COMMANDS = SITE_TOPICS
ONLINE, OFFLINE = b"online", b"offline"


def check_name(value: str, what: str) -> str:
    """A site or box id fit for one topic level; ValueError saying what is wrong."""
    return _checked(check_fleet_name, value, what)


def check_box(value: str) -> str:
    """A box id: a name, and not one of the site's own topics (a box named "badges" would
    publish where its register is)."""
    return _checked(check_box_id, value, "box id")


def check_prefix(value: str) -> str:
    return _checked(check_topic_prefix, value, "topic prefix")


def _checked(check: Callable[[str], str], value: str, what: str) -> str:
    try:
        return check(value)
    except InvalidIdentifier as error:
        raise ValueError(f"{what} {value!r}: {error}") from error


@dataclass(frozen=True, slots=True)
class SiteTopics:
    """What the fleet's tools publish for a site, and where its boxes' topics are."""

    prefix: str
    site: str

    def __post_init__(self) -> None:
        check_prefix(self.prefix)
        check_name(self.site, "site id")

    @property
    def badges(self) -> str:
        return f"{self.prefix}/{self.site}/{BADGES}"

    @property
    def commands(self) -> str:
        return f"{self.prefix}/{self.site}/{COMMANDS}"

    def box_commands(self, box: str) -> str:
        return f"{self.commands}/{check_box(box)}"

    def box(self, box: str) -> BoxTopics:
        return BoxTopics(self.prefix, self.site, box)


@dataclass(frozen=True, slots=True)
class BoxTopics:
    """One box's own topics, and the site topics it listens to."""

    prefix: str
    site: str
    box: str

    def __post_init__(self) -> None:
        check_prefix(self.prefix)
        check_name(self.site, "site id")
        check_box(self.box)

    @property
    def root(self) -> str:
        return f"{self.prefix}/{self.site}/{self.box}"

    @property
    def availability(self) -> str:
        return f"{self.root}/{AVAILABILITY}"

    @property
    def status(self) -> str:
        return f"{self.root}/{STATUS}"

    @property
    def events(self) -> str:
        return f"{self.root}/{EVENTS}"

    @property
    def evidence(self) -> str:
        return f"{self.root}/{EVIDENCE}"

    @property
    def site_topics(self) -> SiteTopics:
        return SiteTopics(self.prefix, self.site)


@dataclass(frozen=True, slots=True)
class Parsed:
    """A box topic read back by the fleet's tools: whose, and which."""

    site: str
    box: str
    leaf: str


def parse_box_topic(prefix: str, topic: str) -> Parsed | None:
    """`{prefix}/{site}/{box}/{leaf}` split up; None for any other topic."""
    if not topic.startswith(prefix + "/"):
        return None
    parts = topic[len(prefix) + 1 :].split("/")
    if len(parts) != 3 or not all(_is_name(part) for part in parts):
        return None
    site, box, leaf = parts
    return Parsed(site, box, leaf)


def _is_name(text: str) -> bool:
    try:
        check_fleet_name(text)
    except InvalidIdentifier:
        return False
    return True


def all_boxes(prefix: str, leaf: str) -> str:
    """The subscription for one leaf of every box of every site."""
    return f"{check_prefix(prefix)}/+/+/{leaf}"
