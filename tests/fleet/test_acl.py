"""The ACL generator (gateway.fleet.acl) and `badge-gateway fleet acl`: what each user is
granted, and every bad line of a boxes file refused as `path:line: field: reason`. That the
grants hold in a real broker is test_broker's part."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

import pytest

from gateway.cli.fleet_acl import add_acl_command
from gateway.errors import FleetError
from gateway.fleet.acl import acl_text, read_boxes

TWO_SITES = [("brussels-north", "box-0001"), ("brussels-north", "box-0002"), ("gent", "box-0100")]
BOX_IDS = {box for _, box in TWO_SITES}


def grants(text: str) -> dict[str, set[str]]:
    """user -> its `topic ...` lines; comments and blank lines left out."""
    by_user: dict[str, set[str]] = {}
    user = ""
    for line in text.splitlines():
        if line.startswith("user "):
            user = line.removeprefix("user ")
            assert user not in by_user, f"user {user} listed twice"
            by_user[user] = set()
        elif line.startswith("topic "):
            assert user, f"{line!r} before any user: it would apply to every client"
            by_user[user].add(line.removeprefix("topic "))
        else:
            assert not line or line.startswith("#"), f"unexpected line {line!r}"
    return by_user


def write(tmp_path: Path, text: str, name: str = "boxes.csv") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


# --- acl_text -------------------------------------------------------------------------------


def test_each_box_writes_its_own_topics_and_reads_its_sites() -> None:
    users = grants(acl_text(TWO_SITES, "acme/fleet"))
    assert users["box-0001"] == {
        "write acme/fleet/brussels-north/box-0001/#",
        "read acme/fleet/brussels-north/badges",
        "read acme/fleet/brussels-north/commands",
        "read acme/fleet/brussels-north/commands/box-0001",
    }
    assert users["box-0100"] == {
        "write acme/fleet/gent/box-0100/#",
        "read acme/fleet/gent/badges",
        "read acme/fleet/gent/commands",
        "read acme/fleet/gent/commands/box-0100",
    }
    assert set(users) == {"fleet", *BOX_IDS}


def test_the_fleet_reads_everything_and_writes_registers_and_commands() -> None:
    users = grants(acl_text(TWO_SITES, "badge-gateway", fleet_user="it-tools"))
    assert users["it-tools"] == {
        "read badge-gateway/#",
        "read $SYS/broker/connection/+/state",
        "write badge-gateway/+/badges",
        "write badge-gateway/+/commands",
        "write badge-gateway/+/commands/#",
    }


def test_the_bridge_carries_box_topics_out_and_site_topics_in() -> None:
    users = grants(acl_text(TWO_SITES, bridge_user="bridge"))
    assert users["bridge"] == {
        "write badge-gateway/+/+/availability",
        "write badge-gateway/+/+/status",
        "write badge-gateway/+/+/events",
        "write badge-gateway/+/+/evidence",
        "read badge-gateway/+/badges",
        "read badge-gateway/+/commands",
        "read badge-gateway/+/commands/#",
        "write $SYS/broker/connection/+/state",
    }


def test_each_sites_bridge_may_have_a_user_of_its_own() -> None:
    users = grants(acl_text(TWO_SITES, bridge_user="bridge-{site}"))
    assert users["bridge-gent"] == {
        "write badge-gateway/gent/+/availability",
        "write badge-gateway/gent/+/status",
        "write badge-gateway/gent/+/events",
        "write badge-gateway/gent/+/evidence",
        "read badge-gateway/gent/badges",
        "read badge-gateway/gent/commands",
        "read badge-gateway/gent/commands/#",
        "write $SYS/broker/connection/+/state",
    }
    assert set(users) == {"fleet", "bridge-brussels-north", "bridge-gent", *BOX_IDS}


def test_the_same_boxes_give_the_same_file() -> None:
    assert acl_text(TWO_SITES) == acl_text(list(TWO_SITES))
    assert "bridge" not in grants(acl_text(TWO_SITES))


@pytest.mark.parametrize(
    ("boxes", "options", "reason"),
    [
        ([("a", "box-1"), ("b", "box-1")], {}, "box id 'box-1': listed twice"),
        ([("a", "badges")], {}, "box id 'badges'"),
        ([("a", "status")], {}, "box id 'status': 'status' is reserved: it names a topic"),
        ([("a", "fleet")], {}, "box id 'fleet': already the broker user"),
        ([("a", "bridge")], {"bridge_user": "bridge"}, "box id 'bridge': already the broker"),
        ([("a b", "box-1")], {}, "site id 'a b'"),
        ([("a", "box/1")], {}, "box id 'box/1'"),
        ([("a", "box-1")], {"prefix": "bad/#"}, "topic prefix 'bad/#'"),
        ([("a", "box-1")], {"bridge_user": "fleet"}, "need one each"),
        ([("fleet", "box-1")], {"bridge_user": "{site}"}, "need one each"),
        ([("a", "bridge-b"), ("b", "b1")], {"bridge_user": "bridge-{site}"}, "'bridge-b'"),
        ([("a", "box-1")], {"fleet_user": "it tools"}, "broker user 'it tools'"),
    ],
)
def test_acl_text_refuses_what_would_make_a_wrong_acl(
    boxes: list[tuple[str, str]], options: dict[str, str], reason: str
) -> None:
    with pytest.raises(ValueError, match=reason):
        acl_text(boxes, **options)


# --- read_boxes -----------------------------------------------------------------------------


def test_a_boxes_file_with_comments_blank_lines_and_a_bom(tmp_path: Path) -> None:
    text = "\ufeff# kept by IT\nSite, Box\n\nbrussels-north,box-0001\n  # gent\ngent,box-0100\n"
    assert read_boxes(write(tmp_path, text)) == [
        ("brussels-north", "box-0001"),
        ("gent", "box-0100"),
    ]


def test_a_boxes_file_as_belgian_excel_writes_it(tmp_path: Path) -> None:
    text = 'site;box\r\n"brussels-north";"box-0001"\r\ngent;box-0100\r\n'
    assert read_boxes(write(tmp_path, text)) == [
        ("brussels-north", "box-0001"),
        ("gent", "box-0100"),
    ]


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        ("brussels north,box-0002", "3: site: site id 'brussels north': 1 to 64 of"),
        ("brussels-north,box 2", "3: box: box id 'box 2': 1 to 64 of"),
        ("brussels-north,", "3: box: box id ''"),
        ("brussels-north,badges", "3: box: box id 'badges'"),
        ("brussels-north,commands", "3: box: box id 'commands'"),
        (
            "brussels-north,evidence",
            "3: box: box id 'evidence': 'evidence' is reserved: it names a topic",
        ),
        ("brussels-north,fleet", "3: box: box id 'fleet': already the broker user"),
        ("brussels-north,box-0001", "3: box: 'box-0001' is already listed on line 2"),
        ("gent,box-0001", "3: box: 'box-0001' is already listed on line 2"),
        ("brussels-north,box-0002,extra", "3: line: expected 2 fields (site,box), found 3"),
        ("brussels-north", "3: line: expected 2 fields (site,box), found 1"),
        ('"brussels-north,box-0002', "3: line: bad quoting"),
    ],
)
def test_a_bad_line_is_refused_naming_file_line_and_field(
    tmp_path: Path, line: str, problem: str
) -> None:
    path = write(tmp_path, f"site,box\nbrussels-north,box-0001\n{line}\n")
    with pytest.raises(FleetError) as refused:
        read_boxes(path)
    assert str(refused.value).startswith(f"{path}:{problem}")


def test_every_bad_line_is_reported_at_once(tmp_path: Path) -> None:
    path = write(tmp_path, "site,box\nsite a,box-1\nsite-b,box-2\nsite-c,box-2\nsite-d\n")
    with pytest.raises(FleetError) as refused:
        read_boxes(path)
    lines = str(refused.value).splitlines()
    assert [line.split(": ")[0] for line in lines] == [f"{path}:2", f"{path}:4", f"{path}:5"]


def test_the_other_broker_users_are_not_box_ids(tmp_path: Path) -> None:
    path = write(tmp_path, "site,box\nsite-a,bridge\n")
    assert read_boxes(path) == [("site-a", "bridge")]
    with pytest.raises(FleetError, match=r":2: box: box id 'bridge': already the broker user"):
        read_boxes(path, other_users=("fleet", "bridge"))


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("", ": no header line (expected: site,box)"),
        ("# only a comment\n\n", ": no header line (expected: site,box)"),
        ("site,box\n# nothing yet\n", ": no box listed under the header"),
        ("box,site\nbox-1,site-a\n", ":1: header: expected 'site,box', found 'box,site'"),
        ("site-a,box-1\n", ":1: header: expected 'site,box', found 'site-a,box-1'"),
        ("site,box,comment\n", ":1: header: expected 'site,box'"),
    ],
)
def test_a_file_that_is_not_a_boxes_list(tmp_path: Path, text: str, problem: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(FleetError) as refused:
        read_boxes(path)
    assert str(refused.value).startswith(f"{path}{problem}")


def test_a_missing_file_is_named(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.csv"
    with pytest.raises(FleetError, match=f"{missing}: cannot read the boxes file: No such file"):
        read_boxes(missing)


# --- badge-gateway fleet acl ----------------------------------------------------------------


def run_acl(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog="badge-gateway fleet")
    add_acl_command(parser.add_subparsers(required=True))
    args = parser.parse_args(["acl", *argv])
    result: int = args.command(args)
    return result


def test_the_command_prints_the_acl(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    boxes = "site,box\n" + "".join(f"{site},{box}\n" for site, box in TWO_SITES)
    path = write(tmp_path, boxes)
    assert run_acl([str(path), "--prefix", "acme", "--bridge-user", "site-bridge"]) == 0
    printed = capsys.readouterr().out
    assert printed == acl_text(TWO_SITES, "acme", "fleet", "site-bridge")


def test_the_command_gives_each_sites_bridge_a_user(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, "site,box\nsite-a,box-1\nsite-b,box-2\n")
    assert run_acl([str(path), "--bridge-user", "bridge-{site}"]) == 0
    assert {"bridge-site-a", "bridge-site-b"} < set(grants(capsys.readouterr().out))


def test_the_command_refuses_a_box_named_as_the_bridge(tmp_path: Path) -> None:
    path = write(tmp_path, "site,box\nsite-a,site-bridge\n")
    with pytest.raises(FleetError, match=f"{path}:2: box: box id 'site-bridge'"):
        run_acl([str(path), "--bridge-user", "site-bridge"])


@pytest.mark.parametrize(
    ("option", "problem"),
    [
        (["--prefix", "a/+"], "--prefix: topic prefix 'a/+': up to 4 levels"),
        (["--bridge-user", "b r"], "--bridge-user: broker user 'b r': 1 to 64 of"),
        (["--fleet-user", ""], "--fleet-user: broker user '': 1 to 64 of"),
        (["--bridge-user", "{site}/x"], "--bridge-user: broker user '{site}/x': 1 to 64"),
    ],
)
def test_the_command_refuses_a_bad_option(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], option: list[str], problem: str
) -> None:
    path = write(tmp_path, "site,box\nsite-a,box-1\n")
    with pytest.raises(SystemExit) as usage:
        run_acl([str(path), *option])
    assert usage.value.code == 2
    assert f"argument {problem}" in capsys.readouterr().err
