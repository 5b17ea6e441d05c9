"""The systemd unit of `assetfs serve` verifies (`systemd-analyze verify`, no warnings)."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

UNIT = Path(__file__).resolve().parent.parent / "scripts" / "systemd" / "assetfs-serve.service"


def test_unit_verifies(tmp_path):
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed (Debian package systemd): the unit is not checked")
    text = UNIT.read_text()
    assert "ExecStart=/opt/assetfs/.venv/bin/assetfs serve " in text
    # the path of this checkout's assetfs, so verify can check that ExecStart exists and runs
    unit = tmp_path / UNIT.name
    unit.write_text(text.replace("/opt/assetfs/.venv/bin/assetfs", str(Path(sys.executable).parent / "assetfs")))
    result = subprocess.run([analyze, "verify", str(unit)], capture_output=True, text=True, timeout=60)
    complaints = [line for line in (result.stdout + result.stderr).splitlines() if UNIT.name in line]
    assert result.returncode == 0 and complaints == [], result.stdout + result.stderr
