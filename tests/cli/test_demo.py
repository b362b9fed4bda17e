"""`./dev demo`, the README's first command, runs to the end and shows what it promises."""

from __future__ import annotations

import subprocess
import sys

import pytest


@pytest.mark.slow
def test_the_demo_delivers_every_registration_and_verifies_its_evidence() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "gateway", "demo"],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )

    out = result.stdout + result.stderr
    assert result.returncode == 0, out[-3000:]
    assert "queue depth 0" in out  # every registration acknowledged by the simulator
    assert "acknowledged by the ONSS" in out
    assert "verified: every entry's hash and link holds" in out
    assert "unclean-stop" not in out and "daemon-stop" in out
