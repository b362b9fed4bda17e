"""`badge-gateway uplink check` through the real command line, against the ONSS simulator
(a real process, real TLS, real tokens): each step named with its time, the first failure
named with its cause, the later steps skipped, exit 0 or 1, never a traceback, nothing
created at the ONSS."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from onss_sim.pki import ensure_pki, make_client_identity
from onss_sim.testing import SimulatorProcess
from tests.support import uplink_section, write_config

STEPS = ["dns", "tcp", "tls", "token", "registerInBulk", "type values"]
TIMEOUT_S = 60  # each command, at most (its own timeouts are a few seconds here)


@pytest.fixture(scope="module")
def simulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimulatorProcess]:
    with SimulatorProcess(tmp_path_factory.mktemp("onss")) as sim:
        yield sim


@pytest.fixture(autouse=True)
def clean_simulator(simulator: SimulatorProcess) -> None:
    simulator.clear_faults()
    simulator.reset()


def check(state: Path, sim: SimulatorProcess, **uplink: Any) -> subprocess.CompletedProcess[str]:
    """`uplink check --json` with the simulator's [uplink], these settings overriding it."""
    section = {**uplink_section(sim), "connect_timeout_seconds": 3.0, **uplink}
    config = write_config(state, uplink=section)
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "gateway", "uplink", "check", "--config", str(config), "--json"],
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        check=False,
    )
    assert time.monotonic() - started < TIMEOUT_S
    assert "Traceback" not in result.stderr + result.stdout
    return result


def steps(result: subprocess.CompletedProcess[str]) -> dict[str, dict[str, Any]]:
    report = json.loads(result.stdout)
    assert [step["step"] for step in report["steps"]] == STEPS
    assert report["passed"] is (result.returncode == 0)
    return {step["step"]: step for step in report["steps"]}


def assert_fails_at(result: subprocess.CompletedProcess[str], name: str, *causes: str) -> None:
    assert result.returncode == 1, result.stdout + result.stderr
    found = steps(result)
    at = STEPS.index(name)
    assert [found[s]["status"] for s in STEPS[:at]] == ["passed"] * at
    assert found[name]["status"] == "failed"
    assert found[name]["ms"] >= 0
    assert "\n" not in found[name]["detail"]
    for cause in causes:
        assert cause in found[name]["detail"], found[name]["detail"]
    assert [found[s]["status"] for s in STEPS[at + 1 :]] == ["skipped"] * (len(STEPS) - at - 1)


def free_port() -> int:
    """A port nobody listens on (bound once to find it, then closed)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_every_step_passes_against_the_simulator_and_nothing_is_created(
    simulator: SimulatorProcess, state: Path
) -> None:
    result = check(state, simulator)
    assert result.returncode == 0, result.stdout + result.stderr
    found = steps(result)
    assert all(step["status"] == "passed" and step["ms"] >= 0 for step in found.values())
    assert "TLSv1" in found["tls"]["detail"]
    assert "400 for an empty list" in found["registerInBulk"]["detail"]
    assert "'in' accepted and 'IN' refused" in found["type values"]["detail"]
    assert simulator.registrations() == []
    posts = [r for r in simulator.requests() if r["path"].endswith("/registerInBulk")]
    assert [(r["status"], r["items"]) for r in posts] == [(400, 0), (400, 2)]


def test_the_text_output_names_each_step_with_its_time(
    simulator: SimulatorProcess, state: Path
) -> None:
    config = write_config(state, uplink=uplink_section(simulator))
    result = subprocess.run(
        [sys.executable, "-m", "gateway", "--config", str(config), "uplink", "check"],
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    for name in STEPS:
        [line] = [line for line in lines if line[11:26].rstrip() == name]
        assert line.split()[0] == "ok"
        assert " ms " in line
    assert lines[-1] == "result: ready"


def test_a_wrong_ca_fails_the_tls_step_naming_the_certificate_problem(
    simulator: SimulatorProcess, state: Path, tmp_path: Path
) -> None:
    (tmp_path / "other-pki").mkdir()
    other_ca = ensure_pki(tmp_path / "other-pki").ca_cert
    result = check(state, simulator, ca_file=str(other_ca))
    assert_fails_at(result, "tls", "certificate refused", "unable to get local issuer", "ca_file")


def test_a_port_nobody_listens_on_fails_the_tcp_step(
    simulator: SimulatorProcess, state: Path
) -> None:
    port = free_port()
    result = check(
        state,
        simulator,
        token_url=f"https://127.0.0.1:{port}/REST/oauth/v5/token",
        base_url=f"https://127.0.0.1:{port}/REST/presenceRegistration/v1",
    )
    assert_fails_at(result, "tcp", f"127.0.0.1:{port}", "connection refused")


def test_a_host_that_does_not_resolve_fails_the_dns_step(
    simulator: SimulatorProcess, state: Path
) -> None:
    result = check(state, simulator, token_url="https://onss-token.invalid/REST/oauth/v5/token")
    assert_fails_at(result, "dns", "onss-token.invalid does not resolve")


def test_a_key_the_onss_does_not_know_fails_the_token_step(
    simulator: SimulatorProcess, state: Path
) -> None:
    key = state / "unknown-key.pem"
    key.write_bytes(make_client_identity("a stranger").key_pem)
    key.chmod(0o600)
    result = check(state, simulator, private_key=str(key))
    assert_fails_at(result, "token", "HTTP 401", "signature", simulator.client_id)
    assert not [r for r in simulator.requests() if r["path"].endswith("/registerInBulk")]


def test_a_key_file_others_may_read_fails_the_token_step_clearly(
    simulator: SimulatorProcess, state: Path
) -> None:
    key = state / "exposed-key.pem"
    key.write_bytes(simulator.client_key_file.read_bytes())
    key.chmod(0o644)
    result = check(state, simulator, private_key=str(key))
    assert_fails_at(result, "token", str(key), "readable by others")


def test_a_wrong_base_url_fails_the_register_step(simulator: SimulatorProcess, state: Path) -> None:
    result = check(state, simulator, base_url=simulator.base_url + "/v9")
    assert_fails_at(result, "registerInBulk", "HTTP 404", "check base_url")


def test_the_other_case_of_type_fails_naming_the_setting_to_use(
    simulator: SimulatorProcess, state: Path
) -> None:
    result = check(state, simulator, type_values="upper")
    assert_fails_at(result, "type values", "refuses type 'IN'", 'type_values = "lower"')
    assert simulator.registrations() == []
