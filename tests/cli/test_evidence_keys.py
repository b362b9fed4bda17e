"""Bad key files through the real command line (`python -m gateway ...`): a one-line error
naming the file and the problem, exit 1, never a traceback.

The CLI loads two keys: the evidence signing key (`evidence export`) and the ONSS key
(`run`, where a bad key stops delivery only: the daemon keeps storing taps and says why in
its log and its status). The bad files themselves are tests/system/test_credentials.py's.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import badges, daemon_process, write_badge_file, write_config
from tests.system.test_credentials import BAD_KEYS, ED25519_KEY, RSA_KEY, bad_key, pem, write_key

# Root reads a mode-000 file anyway: the "unreadable" case runs without the capabilities
# that let it (and with them, every other case runs the same).
AS_UNPRIVILEGED = (
    ["setpriv", "--bounding-set=-dac_override,-dac_read_search"] if os.geteuid() == 0 else []
)


def export(
    config: Path, out: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    command = ["--config", str(config), "evidence", "export", "--from", "2026-11-23"]
    return subprocess.run(
        [
            *AS_UNPRIVILEGED,
            sys.executable,
            "-m",
            "gateway",
            *command,
            "--to",
            "2026-11-23",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=env,
    )


def assert_refused(result: subprocess.CompletedProcess[str], *fragments: str) -> None:
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("badge-gateway: cannot sign the export: ")
    for fragment in fragments:
        assert fragment in lines[0]


@pytest.mark.parametrize("case", [*sorted(BAD_KEYS), "wrong-type"])
def test_evidence_export_with_a_bad_signing_key(state: Path, tmp_path: Path, case: str) -> None:
    if case == "wrong-type":
        key = write_key(state / "rsa.pem", pem(RSA_KEY))
        message = "signed with an Ed25519 key, not an RSA key"
    else:
        key, message = bad_key(case, state, ED25519_KEY)
    config = write_config(state, evidence={"signing_key": str(key)})
    out = tmp_path / "export"

    result = export(config, out)

    assert_refused(result, f"{key}: ", message)
    assert not out.exists()  # nothing half-written


def test_evidence_export_with_a_bare_key_name_and_no_credentials_directory(
    state: Path, tmp_path: Path
) -> None:
    config = write_config(state, evidence={"signing_key": "evidence.pem"})
    env = {k: v for k, v in os.environ.items() if k != "CREDENTIALS_DIRECTORY"}

    result = export(config, tmp_path / "export", env)

    assert_refused(result, "'evidence.pem' is not an absolute path", "LoadCredential=")


def test_evidence_export_with_an_invalid_configuration(state: Path, tmp_path: Path) -> None:
    config = state / "gateway.toml"
    config.write_text("[site]\nname = 1\n")

    result = export(config, tmp_path / "export")

    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert f"invalid configuration {config}" in result.stderr


@pytest.mark.slow
@pytest.mark.parametrize("case", ["others-readable", "directory", "not-pem", "wrong-type"])
def test_run_with_a_bad_onss_key_says_why_in_one_line_and_keeps_storing_taps(
    state: Path, case: str
) -> None:
    if case == "wrong-type":
        key = write_key(state / "ed25519.pem", pem(ED25519_KEY))
        message = "needs an RSA key (RS256), not an Ed25519 key"
    else:
        key, message = bad_key(case, state, RSA_KEY)
    [worker] = badges(1)
    write_badge_file(state / "badges.csv", [worker])
    uplink = {"enabled": True, "client_id": "test", "private_key": str(key)}
    config = write_config(state, uplink=uplink)

    with daemon_process(state, config) as daemon:
        outcome = daemon.tap(worker.uid)
        status = daemon.request({"cmd": "status"})["status"]["uplink"]
        log = daemon.log()

    assert outcome["kind"] == "registered"
    assert status["state"] == "misconfigured"
    assert f"{key}: " in status["cause"] and message in status["cause"]
    assert "Traceback" not in log
    [line] = [line for line in log.splitlines() if "uplink disabled" in line]
    assert str(key) in line and message in line


def test_evidence_export_without_a_journal_names_the_file(state: Path, tmp_path: Path) -> None:
    config = write_config(state)

    result = export(config, tmp_path / "export")

    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert result.stderr.strip() == f"badge-gateway: no journal at {state / 'journal.db'}"


def config_check(
    config: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*AS_UNPRIVILEGED, sys.executable, "-m", "gateway", "config", "check", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=env,
    )


@pytest.mark.parametrize("case", ["others-readable", "not-pem", "wrong-type"])
def test_config_check_reads_the_key_files_as_the_daemon_will(state: Path, case: str) -> None:
    if case == "wrong-type":
        onss_key = write_key(state / "ed25519.pem", pem(ED25519_KEY))
        message = "needs an RSA key (RS256), not an Ed25519 key"
    else:
        onss_key, message = bad_key(case, state, RSA_KEY)
    signing_key = write_key(state / "signing.pem", pem(ED25519_KEY))
    uplink = {"enabled": True, "client_id": "test", "private_key": str(onss_key)}
    bad = write_config(state, uplink=uplink, evidence={"signing_key": str(signing_key)})

    refused = config_check(bad)

    assert refused.returncode == 1 and "Traceback" not in refused.stderr
    [line] = refused.stderr.strip().splitlines()  # the good signing key: no complaint
    assert line.startswith(f"[uplink] private_key: {onss_key}: ") and message in line
    assert "valid" not in refused.stdout


def test_config_check_passes_good_keys_and_names_a_credential_it_cannot_see(state: Path) -> None:
    onss_key = write_key(state / "onss.pem", pem(RSA_KEY))
    uplink = {"enabled": True, "client_id": "test", "private_key": str(onss_key)}
    config = write_config(state, uplink=uplink, evidence={"signing_key": "evidence.pem"})
    env = {k: v for k, v in os.environ.items() if k != "CREDENTIALS_DIRECTORY"}

    result = config_check(config, env)

    assert result.returncode == 0, result.stderr
    assert "[evidence] signing_key 'evidence.pem': a systemd credential" in result.stdout
    assert f"{config}: valid" in result.stdout


def test_config_check_refuses_an_empty_mqtt_password_as_the_daemon_would(state: Path) -> None:
    password = state / "mqtt-password"
    password.write_text("\n")
    password.chmod(0o600)
    mqtt = {
        "enabled": True,
        "brokers": ["mqtts://fleet.example:8883"],
        "site_id": "site-a",
        "box_id": "box-a1",
        "password": str(password),
    }
    result = config_check(write_config(state, mqtt=mqtt))

    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.strip() == (
        f"[mqtt] password: {password}: empty, where the MQTT password should be"
    )
