"""The broker's security in force, against a real Mosquitto set up as config/mosquitto/ says:
TLS verified, no anonymous client, passwords checked, and the ACL of gateway.fleet.acl (a
box writes only under its own topics and reads only its site's register and commands).
Then persistence across a restart, and the bridged pair (boxes on A, tools on B)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from gateway.errors import FleetError
from gateway.fleet.connection import BrokerAccess, connected, parse_broker, publish_and_wait
from gateway.fleet.topics import BoxTopics, SiteTopics, all_boxes
from tests.fleet.broker import (
    MosquittoBroker,
    free_port,
    listening,
    make_bridge_identity,
    wait_for_bridge,
)
from tests.fleet.conftest import BOXES, PREFIX, BridgedBrokers

A1 = BoxTopics(PREFIX, "site-a", "box-a1")
A2 = BoxTopics(PREFIX, "site-a", "box-a2")
B1 = BoxTopics(PREFIX, "site-b", "box-b1")
SITE_A = SiteTopics(PREFIX, "site-a")
SITE_B = SiteTopics(PREFIX, "site-b")
# How long a test watches for a message that must never come, where no marker can tell.
NEVER_S = 1.0


# --- who may connect ------------------------------------------------------------------------


def test_an_anonymous_client_is_refused(broker: MosquittoBroker) -> None:
    with (
        pytest.raises(FleetError, match=f"{broker.url}: refused: Not authorized"),
        connected("anonymous", broker.access(None)),
    ):
        pass


def test_a_wrong_password_is_refused_with_the_brokers_reason(broker: MosquittoBroker) -> None:
    with (
        pytest.raises(FleetError, match=f"{broker.url}: refused: Not authorized"),
        connected("box-a1", broker.access("box-a1", password="not-its-password")),
    ):
        pass


def test_another_users_password_is_refused(broker: MosquittoBroker) -> None:
    with (
        pytest.raises(FleetError, match="refused: Not authorized"),
        connected("box-a1", broker.access("box-a1", password=broker.passwords["box-a2"])),
    ):
        pass


def test_a_client_that_does_not_trust_the_brokers_ca_cannot_connect(
    broker: MosquittoBroker,
) -> None:
    untrusting = dataclasses.replace(broker.access("fleet"), ca_file=None)  # system CAs only
    with (
        pytest.raises(FleetError, match=f"{broker.url}: .*CERTIFICATE_VERIFY_FAILED"),
        connected("fleet", untrusting),
    ):
        pass


# --- what a box may write -------------------------------------------------------------------


def test_a_box_publishes_under_its_own_topics(broker: MosquittoBroker) -> None:
    own = {A1.availability: b"online", A1.status: b"{}", A1.events: b"{}", A1.evidence: b"{}"}
    with listening("tools", broker.access("fleet")) as tools:
        tools.subscribe(f"{PREFIX}/#")
        with connected("box-a1", broker.access("box-a1")) as box:
            for topic, payload in own.items():
                publish_and_wait(box, topic, payload)
        received = {topic: tools.wait_for(topic).payload for topic in own}
    assert received == own


@pytest.mark.parametrize(
    "topic",
    [
        A2.status,  # another box of its site
        A2.evidence,
        B1.availability,  # a box of another site
        BoxTopics(PREFIX, "site-b", "box-a1").status,  # its own name under another site
        SITE_A.badges,  # its site's register
        SITE_A.commands,  # commands: only the fleet's tools give them
        SITE_A.box_commands("box-a1"),
        f"{PREFIX}/site-a",
        "elsewhere/site-a/box-a1/status",  # outside the prefix
    ],
)
def test_a_box_cannot_publish_anywhere_else(broker: MosquittoBroker, topic: str) -> None:
    with listening("tools", broker.access("fleet")) as tools:
        tools.subscribe("#")
        with connected("box-a1", broker.access("box-a1")) as box:
            with pytest.raises(FleetError, match=f"{topic}: .*refused.*: Not authorized"):
                publish_and_wait(box, topic, b"forged", retain=True)
            publish_and_wait(box, A1.status, b"marker")
        # The broker keeps one client's messages in order: all before the marker is all.
        assert [message.topic for message in tools.until(A1.status)] == [A1.status]
    with listening("late-tools", broker.access("fleet")) as late:
        late.subscribe(topic)
        assert late.received_on(topic, NEVER_S) == [], "the forged message was retained"


# --- what a box may read --------------------------------------------------------------------


def test_a_box_reads_only_its_sites_register_and_its_own_commands(
    broker: MosquittoBroker,
) -> None:
    with connected("fleet", broker.access("fleet")) as fleet:
        publish_and_wait(fleet, SITE_A.badges, b"register a", retain=True)
        publish_and_wait(fleet, SITE_B.badges, b"register b", retain=True)
        with connected("box-a2", broker.access("box-a2")) as other:
            publish_and_wait(other, A2.status, b"a2's status", retain=True)
        with listening("box-a1", broker.access("box-a1")) as box:
            box.subscribe(f"{PREFIX}/#")  # everything it asks for; the ACL filters
            for topic in (
                SITE_A.commands,
                SITE_A.box_commands("box-a2"),
                SITE_B.commands,
                SITE_B.box_commands("box-b1"),
                SITE_A.box_commands("box-a1"),  # the marker, last
            ):
                publish_and_wait(fleet, topic, b"command")
            received = {message.topic for message in box.until(SITE_A.box_commands("box-a1"))}
    assert received == {SITE_A.badges, SITE_A.commands, SITE_A.box_commands("box-a1")}


def test_a_box_never_receives_another_sites_register(broker: MosquittoBroker) -> None:
    with connected("fleet", broker.access("fleet")) as fleet:
        publish_and_wait(fleet, SITE_B.badges, b"register b", retain=True)
    with listening("box-a1", broker.access("box-a1")) as box:
        box.subscribe(SITE_B.badges)  # granted by the SUBACK, filtered on delivery
        assert box.received_on(SITE_B.badges, NEVER_S) == []


def test_the_bridge_user_cannot_publish_a_register(bridged_brokers: BridgedBrokers) -> None:
    central = bridged_brokers.central
    with (
        connected("bridge-impostor", central.bridge_access()) as bridge,
        pytest.raises(FleetError, match="Not authorized"),
    ):
        publish_and_wait(bridge, SITE_A.badges, b"forged", retain=True)


def test_the_bridge_listener_refuses_a_client_without_a_certificate(
    bridged_brokers: BridgedBrokers,
) -> None:
    central = bridged_brokers.central
    password_only = dataclasses.replace(
        central.bridge_access(),
        client_cert=None,
        client_key=None,
        username="fleet",
        password=central.passwords["fleet"],
    )
    # TLS 1.3 checks the client's certificate after the handshake: the broker just hangs up.
    with (
        pytest.raises(FleetError, match="cannot connect"),
        connected("x", password_only, timeout=3),
    ):
        pass
    assert "peer did not return a certificate" in central.log()


# --- persistence ----------------------------------------------------------------------------


def test_a_retained_status_survives_a_broker_restart(broker: MosquittoBroker) -> None:
    with connected("box-a1", broker.access("box-a1")) as box:
        publish_and_wait(box, A1.status, b'{"schema": 1}', retain=True)
    broker.stop()
    broker.start()
    with listening("tools", broker.access("fleet")) as tools:
        tools.subscribe(A1.status)
        message = tools.wait_for(A1.status)
    assert (message.payload, message.retain) == (b'{"schema": 1}', True)


def test_a_persistent_session_keeps_its_queue_across_a_broker_restart(
    broker: MosquittoBroker,
) -> None:
    with listening("archive", broker.access("fleet"), session_expiry=3600) as archive:
        archive.subscribe(A1.evidence)
    with connected("box-a1", broker.access("box-a1")) as box:
        for seq in range(1, 4):
            publish_and_wait(box, A1.evidence, b"entry %d" % seq)
    broker.stop()
    broker.start()
    with listening("archive", broker.access("fleet"), session_expiry=3600) as archive:
        received = [archive.wait_for(A1.evidence).payload for _ in range(3)]
    assert received == [b"entry 1", b"entry 2", b"entry 3"]


# --- the bridged pair -----------------------------------------------------------------------


def test_a_boxs_status_and_evidence_on_the_site_broker_reach_the_central_one(
    bridged_brokers: BridgedBrokers,
) -> None:
    site, central = bridged_brokers.site, bridged_brokers.central
    with listening("tools", central.access("fleet")) as tools:
        tools.subscribe(A1.evidence)
        with connected("box-a1", site.access("box-a1")) as box:
            publish_and_wait(box, A1.status, b'{"schema": 1}', retain=True)
            publish_and_wait(box, A1.evidence, b'{"seq": 1}')
        assert tools.wait_for(A1.evidence).payload == b'{"seq": 1}'
    with listening("late-tools", central.access("fleet")) as late:
        late.subscribe(A1.status)
        message = late.wait_for(A1.status)
    assert (message.payload, message.retain) == (b'{"schema": 1}', True)


def test_a_register_published_centrally_reaches_a_box_on_the_site_broker(
    bridged_brokers: BridgedBrokers,
) -> None:
    site, central = bridged_brokers.site, bridged_brokers.central
    with connected("fleet", central.access("fleet")) as fleet:
        publish_and_wait(fleet, SITE_A.badges, b"register v2", retain=True)
    with listening("box-a1", site.access("box-a1")) as box:
        box.subscribe(SITE_A.badges)
        assert box.wait_for(SITE_A.badges).payload == b"register v2"
    # Kept on the site broker as it is on the central one: a box that connects later has it.
    with listening("box-a1", site.access("box-a1")) as box:
        box.subscribe(SITE_A.badges)
        message = box.wait_for(SITE_A.badges)
    assert (message.payload, message.retain) == (b"register v2", True)


# --- the configuration that ships (config/mosquitto/) ---------------------------------------

CONFIG = Path(__file__).resolve().parents[2] / "config" / "mosquitto"


@dataclasses.dataclass(frozen=True)
class Shipped:
    """A broker running config/mosquitto/mosquitto.conf, its paths and ports made local."""

    broker: MosquittoBroker
    tools_port: int
    bridge_port: int

    def tools(self, user: str = "fleet") -> BrokerAccess:
        url = f"mqtts://127.0.0.1:{self.tools_port}"
        return dataclasses.replace(self.broker.access(user), brokers=(parse_broker(url),))


def shipped(directory: Path, bridge_ca: Path | None = None, conf_d: Path | None = None) -> Shipped:
    """The example configuration, as IT installs it, pointed at a test directory."""
    broker = MosquittoBroker(directory, BOXES, prefix=PREFIX, bridge_user="bridge-{site}")
    running = Shipped(broker, free_port(), free_port())
    text = (CONFIG / "mosquitto.conf").read_text()
    if bridge_ca is not None:
        text = text.replace("#bridges: ", "").replace(
            "/etc/mosquitto/certs/bridge-ca.pem", str(bridge_ca)
        )
    local = {
        "listener 8883": f"listener {broker.port} 127.0.0.1",
        "listener 8884": f"listener {running.tools_port} 127.0.0.1",
        "listener 8885": f"listener {running.bridge_port} 127.0.0.1",
        "/etc/mosquitto/certs/server.pem": str(broker.pki.server_cert),
        "/etc/mosquitto/certs/server.key": str(broker.pki.server_key),
        "/etc/mosquitto/passwd": str(directory / "passwd"),
        "/etc/mosquitto/acl": str(directory / "acl"),
        "/etc/mosquitto/conf.d": str(conf_d or _empty(directory / "conf.d")),
        "/var/lib/mosquitto/": f"{directory}/",
        "/var/log/mosquitto/mosquitto.log": str(broker.log_file),
        "/run/mosquitto/mosquitto.pid": str(directory / "mosquitto.pid"),
    }
    for production, test in local.items():
        assert production in text, f"config/mosquitto/mosquitto.conf: no {production!r}"
        text = text.replace(production, test)
    broker.use_config(text)
    return running


def _empty(directory: Path) -> Path:
    directory.mkdir(exist_ok=True)
    return directory


def test_the_shipped_configuration_keeps_each_box_in_its_topics(tmp_path: Path) -> None:
    central = shipped(tmp_path / "central")
    with central.broker as broker:
        with pytest.raises(FleetError, match="Not authorized"), connected("x", broker.access(None)):
            pass
        with listening("archive", central.tools()) as tools:
            tools.subscribe(f"{PREFIX}/#")
            with connected("box-a1", broker.access("box-a1")) as box:
                with pytest.raises(FleetError, match="Not authorized"):
                    publish_and_wait(box, A2.status, b"forged")
                publish_and_wait(box, A1.status, b"marker")
            assert [message.topic for message in tools.until(A1.status)] == [A1.status]


def test_on_the_shipped_configuration_a_box_cannot_take_over_the_archives_session(
    tmp_path: Path,
) -> None:
    central = shipped(tmp_path / "central")
    with central.broker as broker, listening("archive", central.tools()) as archive:
        archive.subscribe(all_boxes(PREFIX, "evidence"))
        # Same client id: were it kept, the broker would disconnect the archive.
        with connected("archive", broker.access("box-a1")) as box:
            publish_and_wait(box, A1.evidence, b'{"seq": 1}')
        assert archive.wait_for(A1.evidence).payload == b'{"seq": 1}'
        assert archive.client.is_connected()
    assert "as box-a1 (" in broker.log()  # the box's client id: its username


def test_the_shipped_bridge_brings_a_site_its_register_and_no_other(tmp_path: Path) -> None:
    identity = make_bridge_identity(tmp_path / "bridge-pki", "bridge-site-a")
    central = shipped(tmp_path / "central", bridge_ca=identity.ca_cert)
    conf_d = _empty(tmp_path / "site-conf.d")
    bridge = (CONFIG / "bridge.conf").read_text()
    for production, test in {
        "brussels-north": "site-a",
        "fleet.example.com:8885": f"127.0.0.1:{central.bridge_port}",
        "/etc/mosquitto/certs/central-ca.pem": str(central.broker.ca_file),
        "/etc/mosquitto/certs/bridge.pem": str(identity.cert),
        "/etc/mosquitto/certs/bridge.key": str(identity.key),
        "restart_timeout 5 120": "restart_timeout 1 5",
    }.items():
        assert production in bridge, f"config/mosquitto/bridge.conf: no {production!r}"
        bridge = bridge.replace(production, test)
    (conf_d / "bridge.conf").write_text(bridge)
    site = shipped(tmp_path / "site", conf_d=conf_d)
    with central.broker, site.broker:
        wait_for_bridge(central.broker, access=central.tools())
        with connected("publish-badges", central.tools()) as fleet:
            publish_and_wait(fleet, SITE_B.badges, b"register b", retain=True)
            publish_and_wait(fleet, SITE_A.badges, b"register a", retain=True)
        with listening("site-tools", site.tools()) as on_site:
            on_site.subscribe(f"{PREFIX}/+/badges")
            assert on_site.wait_for(SITE_A.badges).payload == b"register a"
            assert on_site.received_on(SITE_B.badges, NEVER_S) == []
        with listening("archive", central.tools()) as tools:
            tools.subscribe(A1.status)
            with connected("box-a1", site.broker.access("box-a1")) as box:
                publish_and_wait(box, A1.status, b"status", retain=True)
            assert tools.wait_for(A1.status).payload == b"status"
