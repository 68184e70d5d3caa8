"""Home Assistant discovery payloads, checked by a validator written from what a real HA accepts.

``validate_ha_device_config`` encodes ``reference/integrations.md`` §1 and §8 (checked against Home
Assistant 2026.11 and 2025.4): no unknown top-level keys, ``o.name``, ``dev.ids`` (or connections),
``unique_id`` and ``qos`` on every component, device classes only with the units they allow, enum
sensors with options and without unit or state class, read-only entities never in the ``config``
category, a ``default_entity_id`` that is a valid entity id of the component's own platform and no
``object_id`` (ignored from 2026.4 on). The validator is tested on bad payloads first, so a pass
means something.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from micboardd.config import MqttCommandsConfig
from micboardd.model import Channel, ConnState, Device, Manufacturer, Transmitter
from micboardd.mqtt.discovery import (
    DiscoveryContext,
    channel_config,
    components_removed,
    receiver_config,
)
from micboardd.mqtt.topics import Topics

ABBREV = {
    "dev": "device", "o": "origin", "cmps": "components", "avty": "availability", "avty_mode": "availability_mode",
    "avty_t": "availability_topic", "avty_tpl": "availability_template", "pl_avail": "payload_available",
    "pl_not_avail": "payload_not_available", "stat_t": "state_topic", "cmd_t": "command_topic", "e": "encoding",
    "p": "platform", "uniq_id": "unique_id", "dev_cla": "device_class", "unit_of_meas": "unit_of_measurement",
    "stat_cla": "state_class", "ent_cat": "entity_category", "en": "enabled_by_default", "val_tpl": "value_template",
    "ops": "options", "cmd_tpl": "command_template", "pl_prs": "payload_press", "pl_on": "payload_on",
    "pl_off": "payload_off", "stat_on": "state_on", "stat_off": "state_off",
    "sug_dsp_prc": "suggested_display_precision",
    "ic": "icon", "exp_aft": "expire_after", "frc_upd": "force_update", "json_attr_t": "json_attributes_topic",
    "json_attr_tpl": "json_attributes_template", "obj_id": "object_id", "def_ent_id": "default_entity_id",
    "ret": "retain", "opt": "optimistic", "t": "topic",
}
DEVICE_ABBREV = {
    "ids": "identifiers", "cns": "connections", "mf": "manufacturer", "mdl": "model", "mdl_id": "model_id",
    "sw": "sw_version", "hw": "hw_version", "sn": "serial_number", "sa": "suggested_area", "cu": "configuration_url",
}
ORIGIN_ABBREV = {"sw": "sw_version", "url": "support_url"}

TOP_LEVEL = {
    "device", "origin", "components", "availability", "availability_mode", "availability_topic",
    "availability_template", "payload_available", "payload_not_available", "state_topic", "command_topic", "qos",
    "encoding", "~",
}
DEVICE_KEYS = {
    "identifiers", "connections", "manufacturer", "model", "model_id", "name", "hw_version", "serial_number",
    "sw_version", "via_device", "suggested_area", "configuration_url",
}
ORIGIN_KEYS = {"name", "sw_version", "support_url"}
ENTITY_COMMON = {
    "platform", "unique_id", "name", "device_class", "entity_category", "enabled_by_default", "icon", "qos",
    "availability", "availability_mode", "availability_topic", "availability_template", "payload_available",
    "payload_not_available", "json_attributes_topic", "json_attributes_template", "default_entity_id", "object_id",
    "encoding", "entity_picture",
}
PLATFORM_KEYS = {
    "sensor": {"state_topic", "value_template", "unit_of_measurement", "state_class", "suggested_display_precision",
               "options", "expire_after", "force_update", "last_reset_value_template"},
    "binary_sensor": {"state_topic", "value_template", "payload_on", "payload_off", "off_delay", "expire_after",
                      "force_update"},
    "button": {"command_topic", "command_template", "payload_press", "retain"},
    "text": {"command_topic", "command_template", "state_topic", "value_template", "min", "max", "mode", "pattern",
             "retain"},
    "switch": {"command_topic", "command_template", "state_topic", "value_template", "payload_on", "payload_off",
               "state_on", "state_off", "optimistic", "retain"},
}
READ_ONLY = {"sensor", "binary_sensor"}
# Sensor device classes we could plausibly use and the units HA allows with them.
SENSOR_UNITS: dict[str, set[str | None]] = {
    "battery": {"%"},
    "duration": {"d", "h", "min", "s", "ms", "µs"},
    "signal_strength": {"dB", "dBm"},
    "frequency": {"Hz", "kHz", "MHz", "GHz"},
    "sound_pressure": {"dB", "dBA"},
    "voltage": {"V", "mV", "µV", "kV", "MV"},
    "temperature": {"°C", "°F", "K"},
}
BINARY_CLASSES = {"battery", "problem", "connectivity", "running", "power", "safety", "sound", "update"}
BUTTON_CLASSES = {"identify", "restart", "update"}
STATE_CLASSES = {"measurement", "total", "total_increasing", "measurement_angle"}
ID_CHARS = re.compile(r"^[a-zA-Z0-9_-]+$")
# homeassistant.core.valid_entity_id: slugs of [a-z0-9_], no "__" anywhere, no "_" at either end of a part.
_HA_OBJECT_ID = r"(?!_)[\da-z_]+(?<!_)"
HA_ENTITY_ID = re.compile(r"^(?!.+__)" + _HA_OBJECT_ID + r"\." + _HA_OBJECT_ID + r"$")


def _expand(d: dict[str, Any], table: dict[str, str]) -> dict[str, Any]:
    return {table.get(k, k): v for k, v in d.items()}


def validate_ha_device_config(topic: str, raw: bytes | str, prefix: str = "homeassistant") -> list[str]:
    """Every reason a real Home Assistant would reject (part of) this device-based discovery message."""
    problems: list[str] = []
    parts = topic.split("/")
    if not (topic.startswith(prefix + "/device/") and parts[-1] == "config" and len(parts) in (4, 5)):
        problems.append(f"topic {topic!r} is not {prefix}/device/[<node_id>/]<object_id>/config")
    elif not all(ID_CHARS.match(p) for p in parts[2:-1]):
        problems.append(f"topic {topic!r}: node_id/object_id must be [a-zA-Z0-9_-]")
    try:
        payload = json.loads(raw)
    except ValueError as exc:
        return [*problems, f"not JSON: {exc}"]
    if not isinstance(payload, dict):
        return [*problems, "payload is not a JSON object"]
    top = _expand(payload, ABBREV)
    problems += [f"unknown top-level key {k!r} (rejects the whole device)" for k in top if k not in TOP_LEVEL]
    origin = top.get("origin")
    if not isinstance(origin, dict) or not isinstance(_expand(origin, ORIGIN_ABBREV).get("name"), str):
        problems.append("origin.name (o.name) is required")
    else:
        problems += [f"unknown origin key {k!r}" for k in _expand(origin, ORIGIN_ABBREV) if k not in ORIGIN_KEYS]
    device = top.get("device")
    if not isinstance(device, dict):
        problems.append("device (dev) is required")
    else:
        dev = _expand(device, DEVICE_ABBREV)
        problems += [f"unknown device key {k!r}" for k in dev if k not in DEVICE_KEYS]
        ids = dev.get("identifiers")
        if not (isinstance(ids, list) and ids and all(isinstance(i, str) and i for i in ids)) and not dev.get(
            "connections"
        ):
            problems.append("device needs identifiers (dev.ids) or connections")
    for name, avty in (("availability", top.get("availability")),):
        if avty is None:
            continue
        if not isinstance(avty, list) or not avty:
            problems.append(f"{name} must be a non-empty list")
            continue
        for entry in avty:
            e = _expand(entry, ABBREV) if isinstance(entry, dict) else {}
            if not isinstance(e.get("topic"), str) or any(c in e["topic"] for c in "#+"):
                problems.append(f"{name} entry {entry!r} needs a plain topic (t)")
    if top.get("availability_mode", "latest") not in ("all", "any", "latest"):
        problems.append("availability_mode must be all, any or latest")
    cmps = top.get("components")
    if not isinstance(cmps, dict):
        return [*problems, "components (cmps) must be an object"]
    for key, comp in cmps.items():
        problems += [f"{key}: {p}" for p in _validate_component(key, comp)]
    return problems


def _validate_component(key: str, comp: Any) -> list[str]:
    if not ID_CHARS.match(key):
        return [f"component id {key!r} must be [a-zA-Z0-9_-]"]
    if not isinstance(comp, dict):
        return ["not an object"]
    c = _expand(comp, ABBREV)
    platform = c.get("platform")
    if platform not in PLATFORM_KEYS:
        return [f"platform (p) {platform!r} is not one we validate / HA supports"]
    out: list[str] = []
    if len(c) == 1:
        return out  # {"p": …} alone: the documented way to remove a component
    allowed = ENTITY_COMMON | PLATFORM_KEYS[platform]
    out += [f"unknown option {k!r} for a {platform}" for k in c if k not in allowed]
    if not isinstance(c.get("unique_id"), str) or not c["unique_id"]:
        out.append("unique_id (uniq_id) is required")
    if "object_id" in c:
        out.append("object_id is deprecated and ignored from Home Assistant 2026.4 on: use default_entity_id")
    entity_id = c.get("default_entity_id")
    if entity_id is not None:
        if not isinstance(entity_id, str) or not HA_ENTITY_ID.match(entity_id):
            out.append(f"default_entity_id {entity_id!r} is not a valid entity id ([a-z0-9_], no '__')")
        elif entity_id.partition(".")[0] != platform:
            out.append(f"default_entity_id {entity_id!r} is not a {platform} entity id")
    if c.get("qos") not in (0, 1, 2):
        out.append("qos must be set per component (a top-level qos is not passed down)")
    if "enabled_by_default" in c and not isinstance(c["enabled_by_default"], bool):
        out.append("enabled_by_default (en) must be a boolean")
    cat = c.get("entity_category")
    if cat is not None and cat not in ("config", "diagnostic"):
        out.append(f"entity_category {cat!r} must be config or diagnostic")
    if cat == "config" and platform in READ_ONLY:
        out.append("a read-only entity cannot be in the config category")
    cls, unit, state_class = c.get("device_class"), c.get("unit_of_measurement"), c.get("state_class")
    if state_class is not None and state_class not in STATE_CLASSES:
        out.append(f"state_class {state_class!r} is not valid")
    if platform == "sensor":
        if cls == "enum" or "options" in c:
            if cls != "enum":
                out.append("options need device_class enum")
            if not (isinstance(c.get("options"), list) and c["options"] and all(isinstance(o, str) for o in
                                                                                c["options"])):
                out.append("an enum sensor needs a non-empty list of string options")
            if unit is not None or state_class is not None:
                out.append("an enum sensor cannot have a unit or a state class")
        elif cls is not None:
            if cls not in SENSOR_UNITS:
                out.append(f"device_class {cls!r} is not a sensor class this validator knows")
            elif unit not in SENSOR_UNITS[cls]:
                out.append(f"device_class {cls} does not allow unit {unit!r}")
        if "state_topic" not in c:
            out.append("a sensor needs a state_topic")
    elif platform == "binary_sensor" and cls is not None and cls not in BINARY_CLASSES:
        out.append(f"binary_sensor device_class {cls!r} is not valid")
    elif platform == "button" and cls is not None and cls not in BUTTON_CLASSES:
        out.append(f"button device_class {cls!r} is not valid")
    if platform in ("button", "text", "switch"):
        t = c.get("command_topic")
        if not isinstance(t, str) or any(ch in t for ch in "#+"):
            out.append("a command entity needs a plain command_topic")
    return out


# ---------------------------------------------------------------------------------------------- fixtures

TOPICS = Topics(base="micboard/main", site="main")
ALL_COMMANDS = MqttCommandsConfig(enabled=True, rename=True, dangerous=True)


def _dev(**kw: Any) -> Device:
    base: dict[str, Any] = {"device_id": "rack1", "manufacturer": Manufacturer.SHURE, "model": "AD4Q",
                            "name": "Rack 1", "firmware": "1.2.3", "serial": "3A1B2C", "state": ConnState.ONLINE}
    base.update(kw)
    return Device(**base)


def _ch(index: int = 1, **kw: Any) -> Channel:
    return Channel("rack1", index, name=kw.pop("name", "Lead Vox"), frequency_khz=594075,
                   tx=Transmitter(present=True, battery_bars=4, battery_percent=80), **kw)


def _payloads(commands: MqttCommandsConfig) -> dict[str, bytes]:
    ctx = DiscoveryContext(TOPICS, "0.1.0", commands)
    dev = _dev()
    out = {TOPICS.receiver_discovery("rack1"): json.dumps(receiver_config(ctx, dev)).encode()}
    for n in (1, 2):
        out[TOPICS.channel_discovery("rack1", n)] = json.dumps(channel_config(ctx, dev, _ch(n))).encode()
    return out


# ---------------------------------------------------------------------------------------------- the validator


@pytest.mark.parametrize(
    ("mutate", "expect"),
    [
        (lambda p: p.__setitem__("value_template", "{{ x }}"), "unknown top-level key 'value_template'"),
        (lambda p: p["o"].pop("name"), "origin.name"),
        (lambda p: p["dev"].pop("ids"), "identifiers"),
        (lambda p: p["cmps"]["battery"].pop("uniq_id"), "battery: unique_id"),
        (lambda p: p["cmps"]["battery"].pop("qos"), "battery: qos"),
        (lambda p: p["cmps"]["battery"].__setitem__("unit_of_meas", "V"), "battery does not allow unit 'V'"),
        (lambda p: p["cmps"]["runtime"].__setitem__("unit_of_meas", "minutes"), "duration does not allow"),
        (lambda p: p["cmps"]["rf"].__setitem__("unit_of_meas", "%"), "signal_strength does not allow"),
        (lambda p: p["cmps"]["tx_state"].__setitem__("unit_of_meas", "x"), "enum sensor cannot have a unit"),
        (lambda p: p["cmps"]["tx_state"].__setitem__("stat_cla", "measurement"), "enum sensor cannot have"),
        (lambda p: p["cmps"]["name"].__setitem__("ent_cat", "config"), "read-only entity"),
        (lambda p: p["cmps"]["battery"].__setitem__("bogus", 1), "unknown option 'bogus'"),
        (lambda p: p["cmps"]["battery"].__setitem__("obj_id", "lead_vox_battery"), "object_id is deprecated"),
        (lambda p: p["cmps"]["battery"].__setitem__("default_entity_id", "sensor.Lead_Vox"), "not a valid entity"),
        (lambda p: p["cmps"]["battery"].__setitem__("default_entity_id", "sensor.rack__1"), "not a valid entity"),
        (lambda p: p["cmps"]["battery"].__setitem__("default_entity_id", "sensor.rack1_"), "not a valid entity"),
        (lambda p: p["cmps"]["battery"].__setitem__("default_entity_id", "rack1_battery"), "not a valid entity"),
        (lambda p: p["cmps"]["battery"].__setitem__("default_entity_id", "binary_sensor.x"), "not a sensor entity"),
    ],
)
def test_validator_rejects_what_home_assistant_rejects(mutate: Any, expect: str) -> None:
    topic, raw = next((t, p) for t, p in _payloads(ALL_COMMANDS).items() if "/ch1_" in t)
    payload = json.loads(raw)
    assert validate_ha_device_config(topic, raw) == []
    mutate(payload)
    problems = validate_ha_device_config(topic, json.dumps(payload))
    assert any(expect in p for p in problems), problems


# ---------------------------------------------------------------------------------------------- payloads


@pytest.mark.parametrize("commands", [MqttCommandsConfig(), MqttCommandsConfig(enabled=True), ALL_COMMANDS])
def test_every_discovery_payload_is_accepted(commands: MqttCommandsConfig) -> None:
    payloads = _payloads(commands)
    unique_ids: list[str] = []
    for topic, raw in payloads.items():
        assert validate_ha_device_config(topic, raw) == [], topic
        unique_ids += [c["uniq_id"] for c in json.loads(raw)["cmps"].values()]
    assert len(unique_ids) == len(set(unique_ids)), "unique_id collision inside one site"


def test_every_entity_gets_a_stable_default_entity_id() -> None:
    payloads = _payloads(ALL_COMMANDS)
    ids: list[str] = []
    for topic, raw in payloads.items():
        for key, comp in json.loads(raw)["cmps"].items():
            assert "object_id" not in comp and "obj_id" not in comp
            ids.append(comp["default_entity_id"])
            n = TOPICS.parse_discovery(topic)[1]  # type: ignore[index]
            where = "rack1" if n is None else f"rack1_{n}"
            assert comp["default_entity_id"] == f"{comp['p']}.micboard_main_{where}_{key}"
    assert len(ids) == len(set(ids))
    assert "sensor.micboard_main_rack1_2_battery" in ids and "button.micboard_main_rack1_identify" in ids
    # Never from a name: a renamed channel or receiver keeps every id.
    ctx = DiscoveryContext(TOPICS, "0.1.0", ALL_COMMANDS)
    renamed = channel_config(ctx, _dev(name="Stage Left"), _ch(2, name="Choir + Brass"))
    original = channel_config(ctx, _dev(), _ch(2))
    assert [c["default_entity_id"] for c in renamed["cmps"].values()] == [
        c["default_entity_id"] for c in original["cmps"].values()]


@pytest.mark.parametrize(
    ("site", "device_id", "index", "expect"),
    [
        ("main", "ulxd4q-1", 3, "sensor.micboard_main_ulxd4q_1_3_battery"),
        ("north-wing", "ewdx-em4-1", 1, "sensor.micboard_north_wing_ewdx_em4_1_1_battery"),
        ("main", "rack--1-", 2, "sensor.micboard_main_rack_1_2_battery"),  # no "__", no trailing "_"
        ("main", "-_-", 12, "sensor.micboard_main_12_battery"),
    ],
)
def test_entity_ids_map_every_id_character_ha_refuses(site: str, device_id: str, index: int, expect: str) -> None:
    topics = Topics(base=f"micboard/{site}", site=site)
    ctx = DiscoveryContext(topics, "0.1.0", ALL_COMMANDS)
    cfg = channel_config(ctx, _dev(device_id=device_id), Channel(device_id, index, name="X"))
    assert cfg["cmps"]["battery"]["default_entity_id"] == expect
    assert validate_ha_device_config(topics.channel_discovery(device_id, index), json.dumps(cfg)) == []
    rx = receiver_config(ctx, _dev(device_id=device_id))
    assert validate_ha_device_config(topics.receiver_discovery(device_id), json.dumps(rx)) == []


def test_channel_entities_carry_the_classes_units_and_categories_the_issue_lists() -> None:
    cfg = json.loads(_payloads(MqttCommandsConfig())[TOPICS.channel_discovery("rack1", 1)])
    cmps = cfg["cmps"]
    assert set(cmps) == {"battery", "battery_bars", "runtime", "battery_low", "tx_state", "rf", "audio", "frequency",
                         "name"}
    assert (cmps["battery"]["dev_cla"], cmps["battery"]["unit_of_meas"]) == ("battery", "%")
    assert (cmps["runtime"]["dev_cla"], cmps["runtime"]["unit_of_meas"]) == ("duration", "min")
    assert (cmps["battery_low"]["p"], cmps["battery_low"]["dev_cla"]) == ("binary_sensor", "battery")
    assert cmps["tx_state"]["dev_cla"] == "enum" and "off" in cmps["tx_state"]["ops"]
    rf = cmps["rf"]
    assert (rf["dev_cla"], rf["unit_of_meas"], rf["ent_cat"], rf["en"]) == ("signal_strength", "dBm", "diagnostic",
                                                                            False)
    assert rf["stat_t"] == TOPICS.channel_meter("rack1", 1) and rf["qos"] == 0
    assert (cmps["audio"]["unit_of_meas"], cmps["audio"]["en"]) == ("dBFS", False) and "dev_cla" not in cmps["audio"]
    freq = cmps["frequency"]
    assert (freq["dev_cla"], freq["unit_of_meas"], freq["ent_cat"]) == ("frequency", "MHz", "diagnostic")
    # One HA device per channel, hanging off its receiver; availability = bridge status AND the receiver.
    assert cfg["dev"]["via_device"] == json.loads(_payloads(MqttCommandsConfig())[TOPICS.receiver_discovery(
        "rack1")])["dev"]["ids"][0]
    assert cfg["avty_mode"] == "all"
    assert [a["t"] for a in cfg["avty"]] == ["micboard/main/status", "micboard/main/devices/rack1/availability"]
    assert cfg["o"]["name"] == "micboardd"


def test_controls_appear_only_for_the_enabled_command_classes() -> None:
    def cmps(cfg: MqttCommandsConfig) -> set[str]:
        return set(json.loads(_payloads(cfg)[TOPICS.channel_discovery("rack1", 1)])["cmps"])

    base = cmps(MqttCommandsConfig())
    assert not base & {"identify", "rename", "mute"}
    assert cmps(MqttCommandsConfig(enabled=True)) - base == {"identify"}
    assert cmps(MqttCommandsConfig(enabled=True, rename=True)) - base == {"identify", "rename"}
    assert cmps(ALL_COMMANDS) - base == {"identify", "rename", "mute"}
    assert cmps(MqttCommandsConfig(enabled=False, rename=True, dangerous=True)) == base


def test_two_sites_never_share_a_topic_identifier_or_unique_id() -> None:
    other = Topics(base="micboard/annex", site="annex")
    a = _payloads(ALL_COMMANDS)
    ctx_b = DiscoveryContext(other, "0.1.0", ALL_COMMANDS)
    b = {other.receiver_discovery("rack1"): json.dumps(receiver_config(ctx_b, _dev())).encode()}
    b |= {other.channel_discovery("rack1", n): json.dumps(channel_config(ctx_b, _dev(), _ch(n))).encode()
          for n in (1, 2)}
    assert not set(a) & set(b)

    def ids(payloads: dict[str, bytes]) -> set[str]:
        out: set[str] = set()
        for raw in payloads.values():
            p = json.loads(raw)
            out |= set(p["dev"]["ids"]) | {c["uniq_id"] for c in p["cmps"].values()}
        return out

    assert not ids(a) & ids(b)


def test_device_names_never_reach_a_topic() -> None:
    ctx = DiscoveryContext(TOPICS, "0.1.0", ALL_COMMANDS)
    cfg = channel_config(ctx, _dev(name="Stage/Left #1"), _ch(1, name="Lead + Vox #2"))
    topics = [cfg["avty"][0]["t"], cfg["avty"][1]["t"]]
    topics += [v for c in cfg["cmps"].values() for k, v in c.items() if k in ("stat_t", "cmd_t")]
    assert all(t.startswith("micboard/main/") and "#" not in t and "+" not in t and " " not in t for t in topics)
    assert cfg["dev"]["name"] == "Lead + Vox #2"


def test_unnamed_channel_gets_a_readable_device_name() -> None:
    ctx = DiscoveryContext(TOPICS, "0.1.0", MqttCommandsConfig())
    cfg = channel_config(ctx, _dev(), Channel("rack1", 3))
    assert cfg["dev"]["name"] == "Rack 1 ch3"
    assert validate_ha_device_config(TOPICS.channel_discovery("rack1", 3), json.dumps(cfg)) == []


def test_removed_components_are_first_reduced_to_their_platform() -> None:
    ctx_on = DiscoveryContext(TOPICS, "0.1.0", ALL_COMMANDS)
    ctx_off = DiscoveryContext(TOPICS, "0.1.0", MqttCommandsConfig())
    old = json.dumps(channel_config(ctx_on, _dev(), _ch(1))).encode()
    new = channel_config(ctx_off, _dev(), _ch(1))
    interim = components_removed(old, new)
    assert interim is not None
    assert interim["cmps"]["mute"] == {"p": "switch"}
    assert interim["cmps"]["identify"] == {"p": "button"}
    assert interim["cmps"]["rename"] == {"p": "text"}
    assert interim["cmps"]["battery"] == new["cmps"]["battery"]
    assert validate_ha_device_config(TOPICS.channel_discovery("rack1", 1), json.dumps(interim)) == []
    assert components_removed(json.dumps(new).encode(), new) is None
    assert components_removed(None, new) is None
    assert components_removed(b"not json", new) is None
    assert components_removed(b"[" * 100_000, new) is None  # a retained config of anyone's making: no RecursionError
