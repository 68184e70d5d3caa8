"""Config: every problem named by key path with a hint; secrets from files; never shown."""

from __future__ import annotations

from pathlib import Path

import pytest

from micboardd.config import ConfigError, device_to_dict, load_config, parse_config, parse_device

GOOD = """
site = "arena"
[store]
path = "{tmp}/m.db"
[mqtt]
host = "127.0.0.1"
password_file = "broker.pw"
[[devices]]
id = "rack1"
model = "ULXD4Q"
host = "127.0.10.1"
meter_rate_ms = 500
[[devices]]
family = "sscv2"
host = "127.0.11.1"
password_file = "ewdx.pw"
tls_ca_file = "/etc/micboardd/ewdx.pem"
"""


def test_good_config_parses_and_hides_secrets(tmp_path: Path) -> None:
    (tmp_path / "broker.pw").write_text("hunter2\n")
    (tmp_path / "ewdx.pw").write_text("devicepw")
    f = tmp_path / "micboardd.toml"
    f.write_text(GOOD.format(tmp=tmp_path))
    cfg = load_config(f)
    assert cfg.site == "arena"
    rack, ewdx = cfg.devices
    assert (rack.id, rack.family, rack.port, rack.meter_rate_ms) == ("rack1", "ulxd", 2202, 500)
    assert ewdx.id == "sennheiser-127-0-11-1" and ewdx.port == 443
    assert ewdx.password is not None and ewdx.password.reveal() == "devicepw"
    assert cfg.mqtt.password is not None and cfg.mqtt.password.reveal() == "hunter2"
    assert "devicepw" not in repr(cfg) and "hunter2" not in repr(cfg)
    stored = device_to_dict(ewdx)
    assert "devicepw" not in repr(stored) and stored["password_file"] == "ewdx.pw"


def test_every_problem_is_reported_with_its_path() -> None:
    data = {
        "site": "Main Hall",
        "colour": "red",
        "mqtt": {"port": 70000, "meter_interval_s": 0.1},
        "devices": [
            {"family": "ulxd"},
            {"family": "nope", "host": "a"},
            {"model": "ULXD4", "host": "10.0.0.1", "meter_rate_ms": 20},
            {"id": "Bad Id", "family": "qlxd", "host": "10.0.0.2"},
            {"id": "dup", "family": "qlxd", "host": "10.0.0.3"},
            {"id": "dup", "family": "qlxd", "host": "10.0.0.4"},
            {"family": "sscv2", "host": "10.0.0.5", "password_file": "/nonexistent/pw"},
        ],
    }
    with pytest.raises(ConfigError) as info:
        parse_config(data)
    paths = {p for p, _ in info.value.problems}
    assert {
        "site", "colour", "mqtt.port", "mqtt.meter_interval_s", "devices[0].host", "devices[1].family",
        "devices[2].meter_rate_ms", "devices[3].id", "devices[5].id", "devices[6].password_file",
    } <= paths
    text = str(info.value)
    assert "allowed here" in text and "cannot read /nonexistent/pw" in text


def test_syntax_error_and_missing_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[devices\nhost=1")
    with pytest.raises(ConfigError, match="syntax"):
        load_config(bad)
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "missing.toml")


def test_tcp_listener_requires_tls_and_tokens() -> None:
    with pytest.raises(ConfigError) as info:
        parse_config({"api": {"tcp_listen": "0.0.0.0:50051"}})
    msgs = " ".join(m for _, m in info.value.problems)
    assert "TLS" in msgs and "tokens" in msgs


def test_credential_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "mqtt-pw").write_text("s3cret")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path))
    cfg = parse_config({"mqtt": {"password_credential": "mqtt-pw"}})
    assert cfg.mqtt.password is not None and cfg.mqtt.password.reveal() == "s3cret"


def test_parse_device_round_trip() -> None:
    dev = parse_device({"id": "rx9", "model": "AD4Q", "host": "10.1.1.9", "name": "Stage left"})
    assert dev.family == "axient"
    assert parse_device(device_to_dict(dev)) == dev
    with pytest.raises(ConfigError) as info:
        parse_device({"id": "rx9", "family": "axient"})
    assert info.value.problems[0][0] == "device.host"


def test_non_finite_numbers_are_refused() -> None:
    with pytest.raises(ConfigError) as info:
        parse_config({"mqtt": {"meter_interval_s": float("nan"), "meter_deadband_db": float("inf")}})
    paths = {p for p, _ in info.value.problems}
    assert paths == {"mqtt.meter_interval_s", "mqtt.meter_deadband_db"}
