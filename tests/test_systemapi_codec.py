"""Shure System API codec against JSON fixtures: the three device-list shapes, channels, battery, events, problems."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from micboardd.adapters.shure.systemapi import (
    Activity,
    AudioChannelInfo,
    Cap,
    CodecError,
    Event,
    EventName,
    Hello,
    NodeState,
    decode_channel_id,
    number_channels,
    parse_activity,
    parse_audio_channels,
    parse_battery_health,
    parse_battery_level,
    parse_device_list,
    parse_device_node,
    parse_duration_minutes,
    parse_flag,
    parse_gain,
    parse_gain_description,
    parse_message,
    parse_name,
    parse_problem,
)
from micboardd.adapters.shure.systemapi.inventory import shorten
from micboardd.model import valid_id

FIXTURES = Path(__file__).parent / "fixtures" / "shure"


def fixture(name: str) -> Any:
    return json.loads((FIXTURES / f"systemapi_v1.8-constructed_{name}.json").read_text(encoding="utf-8"))


@pytest.mark.parametrize("name", ["devices-relay", "devices-array", "devices-items"])
def test_device_list_shapes(name: str) -> None:
    data = fixture(name)
    page = parse_device_list(data["payload"])
    want = data["expected"]
    assert page.shape == want["shape"]
    assert page.has_next is want["has_next"]
    assert page.end_cursor == want["end_cursor"]
    assert len(page.rejected) == want["rejected"]
    assert len(page.nodes) == len(want["nodes"])
    for node, exp in zip(page.nodes, want["nodes"], strict=True):
        assert node.device_id == exp["device_id"]
        assert node.serial == exp["serial"]
        assert node.model == exp["model"]
        assert node.firmware == exp["firmware"]
        assert node.state.value == exp["state"]
        assert node.compatibility.value == exp["compatibility"]
        assert node.address == exp["address"]
        assert len(node.capabilities) == exp["capabilities"]
        assert node.has(Cap.NAME) is exp["has_name"]
        assert node.has(Cap.AUDIO_CHANNELS) is exp["has_audio_channels"]
        assert node.has(Cap.BATTERY_LEVEL) is exp["has_battery"]


def test_rejected_nodes_say_what_was_wrong() -> None:
    page = parse_device_list(fixture("devices-relay")["payload"])
    assert "hardwareIdentity.deviceId" in page.rejected[0]
    page = parse_device_list(fixture("devices-array")["payload"])
    assert "capabilities" in page.rejected[0] and "dd000009" in page.rejected[0]


def test_node_identity_prefers_serial_and_knows_incompatible() -> None:
    nodes = parse_device_list(fixture("devices-array")["payload"]).nodes
    assert nodes[0].identity == "2TK63967760"
    assert nodes[2].compatibility.incompatible
    assert not nodes[0].compatibility.incompatible
    discovered = parse_device_list(fixture("devices-relay")["payload"]).nodes[2]
    assert discovered.state is NodeState.DISCOVERED
    assert discovered.identity == discovered.device_id  # no serial: the server's id is all there is


@pytest.mark.parametrize(
    "raw",
    [{"pageInfo": {}, "nodes": []}, "devices", 42, None, {"edges": "x"}],
)
def test_unknown_list_shapes_are_errors(raw: Any) -> None:
    with pytest.raises(CodecError, match="device list"):
        parse_device_list(raw)


def test_relay_page_without_page_info_takes_the_last_cursor() -> None:
    payload = fixture("devices-relay")["payload"]
    raw = {"edges": payload["edges"][:2]}
    page = parse_device_list(raw)
    assert page.has_next is False
    assert page.end_cursor == payload["edges"][1]["cursor"]


def test_device_node_rejects_non_objects() -> None:
    with pytest.raises(CodecError):
        parse_device_node(["x"])
    with pytest.raises(CodecError, match="hardwareIdentity must be an object"):
        parse_device_node({"hardwareIdentity": "dd"})


def test_audio_channels_are_numbered_by_their_decoded_index() -> None:
    data = fixture("audio-channels_ADTQ")
    channels = parse_audio_channels(data["payload"])
    numbered = [[n, c.channel_id] for n, c in number_channels(channels)]
    assert numbered == data["expected"]["numbered"]
    assert sorted(channels[0].capabilities) == data["expected"]["capabilities"]
    assert not channels[0].has(Cap.MUTE)
    assert parse_audio_channels({"items": data["payload"]}) == channels  # the {items} wrapper too
    decoded = decode_channel_id(channels[1].channel_id)
    assert decoded is not None and decoded["t"] == "AudioChannel" and decoded["i"] == 0


def test_channel_numbering_falls_back_to_list_order() -> None:
    opaque = [AudioChannelInfo(cid, None, None, frozenset(), None) for cid in ("zz", "aa", "mm")]
    assert [c.channel_id for _, c in number_channels(opaque)] == ["zz", "aa", "mm"]
    duplicate = [AudioChannelInfo("a", None, None, frozenset(), 0), AudioChannelInfo("b", None, None, frozenset(), 0)]
    assert [c.channel_id for _, c in number_channels(duplicate)] == ["a", "b"]
    # the longer "index" form decodes too (JB: devices other than Axient PSM)
    anx = "eyJ0IjoiQXVkaW9DaGFubmVsIiwiYyI6IkFOWDQiLCJ2Ijo2NTU1MiwicyI6IkNIIiwiaW5kZXgiOjJ9"
    assert parse_audio_channels([{"id": anx, "capabilities": ["mute"]}])[0].index_hint == 2


@pytest.mark.parametrize(
    "raw", [{"id": "x"}, [{"role": "SOURCE"}], [{"id": ""}], "x", [{"id": str(i)} for i in range(65)]]
)
def test_bad_channel_lists_are_errors(raw: Any) -> None:
    with pytest.raises(CodecError):
        parse_audio_channels(raw)


def test_gain_description() -> None:
    desc = fixture("audio-channels_ADTQ")["expected"]["gain_description"]
    rng = parse_gain_description(desc["payload"])
    assert (rng.min_db, rng.max_db, rng.step_db) == (desc["min"], desc["max"], desc["step"])
    assert rng.contains(16) and not rng.contains(16.5) and rng.contains(-20)
    assert rng.on_step(3) and not rng.on_step(3.5)
    for bad in ({}, {"constraints": {"gain": {"range": {"min": 5, "max": -5}}}},
                {"constraints": {"gain": {"range": {"min": "a", "max": 1}}}}):
        with pytest.raises(CodecError):
            parse_gain_description(bad)


def test_battery_level_cases() -> None:
    data = fixture("battery_ULXD6")
    for case in data["cases"]:
        level = parse_battery_level(case["payload"])
        exp = case["expected"]
        assert (level.percent, level.state.value, level.runtime_minutes, level.charging) == (
            exp["percent"], exp["state"], exp["runtime_minutes"], exp["charging"]), case
    for bad in data["invalid"]:
        with pytest.raises(CodecError):
            parse_battery_level(bad)
    health = parse_battery_health(data["health"]["payload"])
    assert (health.percent, health.cycles) == (data["health"]["expected"]["percent"],
                                               data["health"]["expected"]["cycles"])
    assert parse_battery_health({"percentage": -1, "cycleCount": "many"}).percent is None


@pytest.mark.parametrize(
    ("text", "minutes"),
    [("PT853M", 853), ("PT14H13M", 853), ("P1D", 1440), ("PT30S", 0), ("PT90S", 2), ("pt5m", 5),
     ("PT", None), ("P", None), ("853", None), ("", None), (None, None), (12, None),
     ("PT" + "9" * 400 + "M", None)],  # a float-infinite duration is no reading (and no OverflowError)
)
def test_iso_durations(text: Any, minutes: int | None) -> None:
    assert parse_duration_minutes(text) == minutes


def test_property_bodies() -> None:
    assert parse_name({"name": "Lead Vox"}) == "Lead Vox"
    assert parse_flag({"muted": True}, "muted") is True
    assert parse_gain({"gain": -3}) == -3.0
    assert parse_activity({"audioLevel": "CLIPPING"}) is Activity.CLIPPING
    assert parse_activity({"audioLevel": "LOUD"}) is Activity.UNKNOWN
    for call in (lambda: parse_name({"name": 5}), lambda: parse_flag({"muted": "yes"}, "muted"),
                 lambda: parse_gain({"gain": True}), lambda: parse_gain({"gain": float("nan")}),
                 lambda: parse_activity({})):
        with pytest.raises(CodecError):
            call()


def test_event_messages() -> None:
    data = fixture("events")
    for msg in data["messages"]:
        parsed = parse_message(msg["text"])
        exp = msg["expected"]
        if "hello" in exp:
            assert isinstance(parsed, Hello) and parsed.transport_id == exp["hello"]
            continue
        assert isinstance(parsed, Event)
        assert parsed.name.value == exp["event"]
        assert parsed.device_id == exp["device_id"]
        assert parsed.channel_id == exp["channel_id"]
        if "raw_name" in exp:
            assert parsed.raw_name == exp["raw_name"]
        if "node_state" in exp:
            assert parse_device_node(parsed.body).state.value == exp["node_state"]
        else:
            assert parsed.body == exp["body"]
    from_bytes = parse_message(data["messages"][1]["text"].encode())  # binary frames parse too
    assert isinstance(from_bytes, Event) and from_bytes.name is EventName.DEVICE_NAME


def test_malformed_messages_raise_with_an_excerpt() -> None:
    for text in fixture("events")["malformed"]:
        with pytest.raises(CodecError) as info:
            parse_message(text)
        assert len(str(info.value)) < 300
    with pytest.raises(CodecError, match="not JSON"):
        parse_message(b"\xff\xfe garbage")
    with pytest.raises(CodecError) as info:
        parse_message("{" + "x" * 5000)
    assert len(str(info.value)) < 300  # never a whole payload in a log line


def test_problem_json() -> None:
    for case in fixture("problem-401")["cases"]:
        problem = parse_problem(case["payload"])
        exp = case["expected"]
        assert (problem.status, problem.title, problem.detail) == (exp["status"], exp["title"], exp["detail"])
        assert problem.text() == exp["text"]
    assert parse_problem("upstream timeout").text() == "upstream timeout"


def test_long_child_ids_stay_valid_and_distinct() -> None:
    base = "a-very-long-server-id-" + "x" * 40
    one = shorten(f"{base}-dd4c009a-0000-11dd-a000-000eddcccccc")
    two = shorten(f"{base}-dd4c009b-0000-11dd-a000-000eddcccccc")
    assert valid_id(one) and valid_id(two) and one != two
    assert shorten("sysapi-2tk12345678") == "sysapi-2tk12345678"
