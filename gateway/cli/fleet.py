"""`badge-gateway fleet ...`: the employer's tools for a fleet of boxes over MQTT
(docs/fleet.md). Each group of actions is a module of its own; they share the broker
options of gateway.cli.fleet_options.

    fleet publish-badges FILE --site S --key KEY   a signed badge register for a site
    fleet command reload|publish-status --site S   a signed command for a site or one box
    fleet status                                   every box: online, queue, alerts
    fleet archive --dir DIR                        every box's evidence, kept off the boxes
    fleet acl BOXES.csv                            the broker's ACL for a list of boxes
"""

from __future__ import annotations

from typing import Any

from gateway.cli.fleet_acl import add_acl_command
from gateway.cli.fleet_publish import add_publish_commands
from gateway.cli.fleet_tools import add_tool_commands


def add_fleet_commands(commands: Any) -> None:
    fleet = commands.add_parser("fleet", help="the employer's tools for a fleet of boxes (MQTT)")
    actions = fleet.add_subparsers(required=True, metavar="ACTION")
    add_publish_commands(actions)
    add_tool_commands(actions)
    add_acl_command(actions)
