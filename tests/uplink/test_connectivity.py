"""Where delivery stands, as the worker's display and `badge-gateway status` read it."""

from __future__ import annotations

import json

from gateway.models import UplinkState
from gateway.uplink import Connectivity


def test_the_display_is_told_online_offline_or_nothing_yet() -> None:
    connectivity = Connectivity()
    assert connectivity.state is UplinkState.UNKNOWN and connectivity.online is None
    expected = {
        UplinkState.ONLINE: True,
        UplinkState.OFFLINE: False,
        UplinkState.FORBIDDEN: False,
        UplinkState.UNKNOWN: None,
    }
    for state, online in expected.items():
        connectivity.state = state
        assert connectivity.online is online, state


def test_status_shows_the_states_as_the_strings_it_always_showed() -> None:
    assert [state.value for state in UplinkState] == [
        "unknown",
        "online",
        "offline",
        "forbidden",
        "misconfigured",
        "unauthorized",
    ]
    shown = Connectivity(UplinkState.OFFLINE, "dns").as_json()
    assert type(shown["state"]) is str
    assert json.loads(json.dumps(shown))["state"] == "offline"
    assert Connectivity().changes_to(UplinkState.OFFLINE, "dns")
    assert not Connectivity(UplinkState.OFFLINE, "dns").changes_to(UplinkState.OFFLINE, "dns")
