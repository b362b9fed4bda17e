"""The fleet's brokers: a real Mosquitto with the standard test fleet's users, and a bridged
pair (a site broker A, where the boxes are, bridging to a central broker B, where the
employer's tools are)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.fleet.broker import MosquittoBroker, wait_for_bridge

# (site, box): the boxes of the standard test fleet, each a broker user named after its id.
BOXES = (("site-a", "box-a1"), ("site-a", "box-a2"), ("site-b", "box-b1"))
PREFIX = "badge-gateway"


@dataclass(frozen=True)
class BridgedBrokers:
    site: MosquittoBroker  # A: the boxes connect here
    central: MosquittoBroker  # B: the fleet's tools connect here


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[MosquittoBroker]:
    """A running broker; users `fleet`, `box-a1`, `box-a2`, `box-b1` (passwords)."""
    with MosquittoBroker(tmp_path / "broker", BOXES, prefix=PREFIX) as running:
        yield running


@pytest.fixture
def bridged_brokers(tmp_path: Path) -> Iterator[BridgedBrokers]:
    """A bridging to B over TLS as `bridge` (a client certificate B's bridge listener
    takes as the login): box topics out, site topics in, QoS 1, retained kept."""
    with MosquittoBroker(
        tmp_path / "central", BOXES, prefix=PREFIX, accept_bridges=True
    ) as central:
        bridge = central.bridge_to_me()
        with MosquittoBroker(tmp_path / "site", BOXES, prefix=PREFIX, bridge=bridge) as site:
            wait_for_bridge(central)
            yield BridgedBrokers(site=site, central=central)
