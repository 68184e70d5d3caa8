"""The unit file passes `systemd-analyze verify` (where the tool exists) and keeps its promises."""

from __future__ import annotations

import configparser
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

UNIT = Path(__file__).resolve().parent.parent / "systemd" / "micboardd.service"


def _unit_lines() -> dict[str, list[str]]:
    keys: dict[str, list[str]] = {}
    for line in UNIT.read_text().splitlines():
        if "=" in line and not line.lstrip().startswith(("#", ";", "[")):
            k, _, v = line.partition("=")
            keys.setdefault(k.strip(), []).append(v.strip())
    return keys


def test_unit_has_the_contract_settings() -> None:
    keys = _unit_lines()
    assert keys["Type"] == ["notify"]
    assert keys["WatchdogSec"] and keys["DynamicUser"] == ["yes"]
    for d in ("StateDirectory", "RuntimeDirectory", "ConfigurationDirectory"):
        assert keys[d] == ["micboardd"], d
    assert keys["ProtectSystem"] == ["strict"]
    assert any("micboardd run --config" in v for v in keys["ExecStart"])
    # systemd does not allow trailing comments on a value line: they would become part of the value.
    for k, values in keys.items():
        for v in values:
            assert " #" not in v, f"{k}={v} carries an inline comment"


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed")
def test_systemd_analyze_verify_is_clean(tmp_path: Path) -> None:
    exe = shutil.which("micboardd") or sys.executable
    unit = tmp_path / "micboardd.service"
    unit.write_text(UNIT.read_text().replace("/opt/micboardd/venv/bin/micboardd", exe))
    proc = subprocess.run(
        ["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60, check=False
    )
    ours = [ln for ln in (proc.stdout + proc.stderr).splitlines() if "micboardd.service" in ln]
    assert proc.returncode == 0 and not ours, proc.stdout + proc.stderr


def test_example_config_is_valid(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from micboardd.config import load_config

    (tmp_path / "ewdx-password").write_text("pw")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path))
    cfg = load_config(UNIT.parent / "micboardd.toml.example")
    assert cfg.site == "main-hall" and len(cfg.devices) == 3
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.read_string(UNIT.read_text())
    assert parser.has_section("Install")
