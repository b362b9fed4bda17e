"""The fleet link: a box reporting to its employer over MQTT, and the employer's tools.

- `topics`: the topic tree, per site and per box.
- `connection`: broker URLs, TLS (always verified), credentials, a paho-mqtt client.

docs/fleet.md tells the whole story: the topics, the messages, the broker's ACL, the signed
badge registers and commands, the off-box evidence archive.

May import: models, identifiers, errors, config, evidence, journal, badges, system. Nothing
above it.
"""

from gateway.fleet.connection import Broker, BrokerAccess, parse_broker
from gateway.fleet.topics import BoxTopics, SiteTopics

__all__ = ["BoxTopics", "Broker", "BrokerAccess", "SiteTopics", "parse_broker"]
