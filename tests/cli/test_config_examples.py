"""The Checkinatwork examples in config/ (issue 16) are valid as shipped, their register
fits their site, and the commented keys load once filled in."""

from __future__ import annotations

import re
from pathlib import Path

from gateway.config import load_config
from gateway.models import Channel
from tests.support import REPO
from tests.test_process import cli

EXAMPLE = REPO / "config" / "gateway.checkinatwork.example.toml"
REGISTER = EXAMPLE.with_name("badges.checkinatwork.example.csv")


def test_the_checkinatwork_example_and_its_register_are_valid() -> None:
    checked = cli("config", "check", str(EXAMPLE))
    register = cli("badges", "check", str(REGISTER), config=EXAMPLE)
    assert checked.returncode == 0, checked.stderr
    assert register.returncode == 0, register.stderr
    assert "checked against the site of" in register.stdout
    assert "3 badge(s) loaded, 0 refused" in register.stdout
    config = load_config(EXAMPLE)
    assert config.site.channel is Channel.CHECKINATWORK and config.site.place_of_work is None
    assert config.site.all_declarations == ("1Y1000NF9KCQZ", "1Y1002V9KLZ6Z")


def test_enabled_it_needs_the_certificate_and_loads_with_it(tmp_path: Path) -> None:
    enabled = EXAMPLE.read_text().replace("enabled = false", "enabled = true")
    without = tmp_path / "without.toml"
    without.write_text(enabled, encoding="utf-8")
    refused = cli("config", "check", str(without))
    assert refused.returncode == 1
    assert "uplink.certificate" in refused.stderr and "checkinatwork" in refused.stderr
    with_certificate = tmp_path / "with.toml"
    with_certificate.write_text(re.sub(r"(?m)^# (certificate = )", r"\1", enabled))
    config = load_config(with_certificate)
    assert config.uplink.certificate == Path("/etc/badge-gateway/onss-presence-cert.pem")


def test_the_main_example_names_the_channel_keys_with_their_defaults() -> None:
    config = load_config(REPO / "config" / "gateway.example.toml")
    assert config.site.channel is Channel.CIAO and config.site.declarations == ()
    assert config.uplink.presence_url.endswith("/PresenceRegistration/v1")
