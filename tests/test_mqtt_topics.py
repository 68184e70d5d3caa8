"""Topic layout, topic safety, payloads and command parsing: the pure half of the MQTT bridge."""

from __future__ import annotations

import json

import pytest

from micboardd.commands import Identify, RenameChannel, RenameDevice, SetFrequency, SetGain, SetGroupChannel, SetMute
from micboardd.config import parse_config
from micboardd.hub import StateHub
from micboardd.model import Alert, AlertState, Channel, ConnState, Device, Meters, Severity, Slot, Transmitter
from micboardd.mqtt.commands import CommandRejectedError, parse_command
from micboardd.mqtt.mirror import METER_HEARTBEAT_S, _MeterTrack, meter_due
from micboardd.mqtt.stale import StaleJudge
from micboardd.mqtt.topics import (
    TopicError,
    Topics,
    alert_event,
    audio_level,
    availability,
    battery_low,
    channel_payload,
    encode,
    flat_channel_values,
    meter_payload,
    rf_level,
    slot_payload,
    tx_state,
)

T = Topics(base="micboard/main", site="main")


# ---------------------------------------------------------------------------------------------- safety


@pytest.mark.parametrize("bad", ["Rack1", "rack 1", "rack/1", "rack#", "rack+1", "", "a" * 65, "räck"])
def test_ids_outside_the_safe_alphabet_never_become_topics(bad: str) -> None:
    with pytest.raises(TopicError):
        T.device_state(bad)
    with pytest.raises(TopicError):
        T.channel_state(bad, 1)
    with pytest.raises(TopicError):
        T.channel_discovery(bad, 1)


@pytest.mark.parametrize("index", [0, -1, 1000, True])
def test_channel_numbers_outside_range_are_refused(index: int) -> None:
    with pytest.raises(TopicError):
        T.channel_state("rack1", index)


def test_layout_matches_the_design() -> None:
    cfg = parse_config({"site": "north"})
    t = Topics.from_config(cfg)
    assert t.base == "micboard/north"
    assert t.status == "micboard/north/status"
    assert t.device_state("rx-1") == "micboard/north/devices/rx-1/state"
    assert t.device_availability("rx-1") == "micboard/north/devices/rx-1/availability"
    assert t.channel_state("rx-1", 2) == "micboard/north/channels/rx-1/2/state"
    assert t.channel_meter("rx-1", 2) == "micboard/north/channels/rx-1/2/meter"
    assert t.slot_state(7) == "micboard/north/slots/7/state"
    assert (t.alerts, t.alerts_active) == ("micboard/north/alerts", "micboard/north/alerts/active")
    assert t.receiver_discovery("rx-1") == "homeassistant/device/micboardd_north/rx_rx-1/config"
    assert t.channel_discovery("rx-1", 2) == "homeassistant/device/micboardd_north/ch2_rx-1/config"
    custom_cfg = parse_config({"site": "n", "mqtt": {"base_topic": "venue/a", "discovery_prefix": "ha"}})
    custom = Topics.from_config(custom_cfg)
    assert custom.channel_state("x", 1) == "venue/a/channels/x/1/state"
    assert custom.channel_discovery("x", 1) == "ha/device/micboardd_n/ch1_x/config"


def test_discovery_object_ids_cannot_be_confused() -> None:
    # A device literally called "ch1_rack1" and channel 1 of "rack1" get different topics, and parse back.
    assert T.receiver_discovery("ch1_rack1") != T.channel_discovery("rack1", 1)
    assert T.parse_discovery(T.receiver_discovery("ch1_rack1")) == ("ch1_rack1", None)
    assert T.parse_discovery(T.channel_discovery("rack1", 1)) == ("rack1", 1)
    assert T.parse_discovery(T.channel_discovery("rx_a", 12)) == ("rx_a", 12)
    assert T.parse_discovery("homeassistant/device/micboardd_other/rx_rack1/config") is None
    assert T.parse_discovery("homeassistant/device/micboardd_main/something/config") is None
    assert T.parse_discovery("homeassistant/sensor/micboardd_main/rx_rack1/config") is None


def test_command_topics_parse_and_junk_is_refused() -> None:
    assert T.parse_command("micboard/main/devices/rack1/set") == ("rack1", None, None)
    assert T.parse_command("micboard/main/devices/rack1/identify/set") == ("rack1", None, "identify")
    assert T.parse_command("micboard/main/channels/rack1/3/set") == ("rack1", 3, None)
    assert T.parse_command("micboard/main/channels/rack1/3/name/set") == ("rack1", 3, "name")
    for bad in [
        "micboard/main/channels/Rack1/3/set",
        "micboard/main/channels/rack1/0/set",
        "micboard/main/channels/rack1/x/set",
        "micboard/main/channels/rack1/1234/set",
        "micboard/main/slots/1/set",
        "micboard/other/devices/rack1/set",
        "micboard/main/devices/rack1/state",
    ]:
        with pytest.raises(TopicError):
            T.parse_command(bad)
    # The subscriptions match commands and nothing the bridge publishes itself.
    assert all(f.endswith("/set") for f in T.command_filters)


def test_classify_knows_our_retained_topics() -> None:
    assert T.classify("micboard/main/devices/rack1/state") == ("device", "rack1", None, "state")
    assert T.classify("micboard/main/channels/rack1/2/battery_bars") == ("channel", "rack1", 2, "battery_bars")
    assert T.classify("micboard/main/slots/4/state") == ("slot", None, 4, "state")
    assert T.classify("micboard/main/status")[0] == "bridge"
    assert T.classify("micboard/main/channels/rack1/2/unknownleaf")[0] == "other"
    assert T.classify("elsewhere/devices/rack1/state")[0] == "other"


# ---------------------------------------------------------------------------------------------- payloads


def test_unknown_is_null_and_json_is_deterministic() -> None:
    ch = Channel("rack1", 1)
    p = channel_payload(ch, 1, 30)
    assert p["tx_state"] == "unknown" and p["battery_low"] is None and p["frequency_mhz"] is None
    assert p["tx"]["battery_percent"] is None
    assert encode(p) == encode(channel_payload(Channel("rack1", 1), 1, 30))
    assert b"NaN" not in encode({"x": float("nan")})
    assert json.loads(encode({"x": float("inf")})) == {"x": None}
    flat = flat_channel_values(p)
    assert flat["battery_percent"] == b"null" and flat["tx_state"] == b"unknown"


def test_transmitter_states_and_low_battery() -> None:
    def ch(**tx: object) -> Channel:
        return Channel("r", 1, tx=Transmitter(**tx))  # type: ignore[arg-type]

    assert tx_state(ch(present=True)) == "on"
    assert tx_state(ch(present=True, muted=True)) == "muted"
    assert tx_state(ch(present=False)) == "off"
    assert tx_state(ch(present=False, charging=True)) == "charging"
    assert battery_low(ch(present=True, battery_bars=1), 1, 30) is True
    assert battery_low(ch(present=True, battery_bars=3, runtime_minutes=20), 1, 30) is True
    assert battery_low(ch(present=True, battery_bars=3, runtime_minutes=200), 1, 30) is False
    assert battery_low(ch(present=True), 1, 30) is None
    assert battery_low(ch(present=False), 1, 30) is False
    assert battery_low(ch(), 1, 30) is None


def test_availability_is_offline_for_stale_or_disconnected_devices() -> None:
    assert availability(Device("r", state=ConnState.ONLINE)) == b"online"
    assert availability(Device("r", state=ConnState.DEGRADED)) == b"online"
    assert availability(Device("r", state=ConnState.ONLINE, stale=True)) == b"offline"
    assert availability(Device("r", state=ConnState.OFFLINE)) == b"offline"


def test_meter_payload_and_summary_levels() -> None:
    m = Meters("r", 1, rf_dbm=(-60.0, None), audio_rms_dbfs=-30.0, audio_peak_dbfs=-20.0, at=5.0)
    p = meter_payload(m)
    assert p["rf_best_dbm"] == -60.0 and p["audio_dbfs"] == -20.0 and p["rf_dbm"] == [-60.0, None]
    assert rf_level(m) == "ok" and audio_level(m) == "active"
    assert rf_level(Meters("r", 1, rf_dbm=(-90.0,))) == "weak"
    assert rf_level(Meters("r", 1)) == "none"
    assert audio_level(Meters("r", 1, audio_peak_dbfs=-70.0)) == "silent"
    assert audio_level(Meters("r", 1, audio_peak_dbfs=-30.0, clip=True)) == "clip"
    assert rf_level(None) is None and audio_level(None) is None


def test_slot_view_combines_channel_alerts_and_levels() -> None:
    ch = Channel("rack1", 2, name="VOX", tx=Transmitter(present=True, battery_bars=1))
    alerts = [
        Alert("low_battery:rack1/2", "low_battery", "rack1/2", Severity.CRITICAL, message="VOX: battery 1/5"),
        Alert("tx_off:rack1/2", "tx_off", "rack1/2", Severity.WARNING, AlertState.CLEARED),
    ]
    p = slot_payload(Slot(3, "rack1/2", performer="Ana"), ch, Device("rack1", state=ConnState.ONLINE),
                     ("ok", "active"), alerts, 1, 30)
    assert p["performer"] == "Ana" and p["channel_name"] == "VOX" and p["online"] is True
    assert p["battery_low"] is True and p["alert"] == "critical" and len(p["alerts"]) == 1
    assert (p["rf"], p["audio"]) == ("ok", "active")
    empty = slot_payload(Slot(4), None, None, (None, None), [], 1, 30)
    assert empty["channel"] is None and empty["tx_state"] is None and empty["alert"] is None


def test_alert_events_name_the_transition() -> None:
    a = Alert("tx_off:r/1", "tx_off", "r/1")
    assert alert_event(None, a, 5)["event"] == "raised"
    acked = Alert("tx_off:r/1", "tx_off", "r/1", state=AlertState.ACKNOWLEDGED)
    assert alert_event(a, acked, 6)["event"] == "acknowledged"
    cleared = Alert("tx_off:r/1", "tx_off", "r/1", state=AlertState.CLEARED)
    assert alert_event(acked, cleared, 7)["event"] == "cleared"
    assert alert_event(cleared, a, 8)["event"] == "raised"
    assert alert_event(cleared, None, 9)["event"] == "removed"


def test_alert_events_say_what_changed_and_whether_it_escalated() -> None:
    def low(severity: Severity, state: AlertState = AlertState.ACTIVE, message: str = "VOX: 2/5") -> Alert:
        return Alert("low_battery:r/1", "low_battery", "r/1", severity, state, message)

    raised = alert_event(None, low(Severity.WARNING), 1)
    assert (raised["previous"], raised["escalated"]) == (None, False)
    # Warning → critical is an escalation, although "critical" < "warning" as strings.
    up = alert_event(low(Severity.WARNING), low(Severity.CRITICAL, message="VOX: 1/5"), 2)
    assert up["event"] == "updated" and up["escalated"] is True
    assert up["previous"] == {"severity": "warning", "state": "active"}
    assert alert_event(low(Severity.INFO), low(Severity.WARNING), 3)["escalated"] is True
    # Text only (runtime counting down) and a step down are not.
    text = alert_event(low(Severity.CRITICAL), low(Severity.CRITICAL, message="VOX: 0/5"), 4)
    assert (text["event"], text["escalated"]) == ("updated", False)
    assert text["previous"] == {"severity": "critical", "state": "active"}
    assert alert_event(low(Severity.CRITICAL), low(Severity.WARNING), 5)["escalated"] is False
    # Worse than what was acknowledged: the engine makes it active again, and it is an escalation.
    acked = low(Severity.WARNING, AlertState.ACKNOWLEDGED)
    again = alert_event(acked, low(Severity.CRITICAL), 6)
    assert (again["event"], again["escalated"]) == ("updated", True)
    assert again["previous"] == {"severity": "warning", "state": "acknowledged"}
    ack = alert_event(low(Severity.WARNING), acked, 7)
    assert ack["event"] == "acknowledged" and ack["previous"] == {"severity": "warning", "state": "active"}
    cleared = alert_event(acked, low(Severity.WARNING, AlertState.CLEARED), 8)
    assert cleared["event"] == "cleared" and cleared["previous"] == {"severity": "warning", "state": "acknowledged"}
    assert cleared["escalated"] is False
    # A re-raise after clearing is new, and a removal's alert is already the last one.
    assert alert_event(low(Severity.WARNING, AlertState.CLEARED), low(Severity.CRITICAL), 9)["previous"] is None
    removed = alert_event(low(Severity.CRITICAL, AlertState.CLEARED), None, 10)
    assert (removed["event"], removed["previous"], removed["escalated"]) == ("removed", None, False)
    assert json.loads(encode(up)) == up, "plain JSON"


# ---------------------------------------------------------------------------------------------- meters


def test_meters_go_out_only_past_the_deadband_or_on_heartbeat() -> None:
    m = Meters("r", 1, rf_dbm=(-60.0,), audio_peak_dbfs=-20.0, link_quality=90)
    assert meter_due(None, m, 0.0, 3.0)
    track = _MeterTrack(0.0, -60.0, -20.0, 90, False, None)
    assert not meter_due(track, Meters("r", 1, rf_dbm=(-61.0,), audio_peak_dbfs=-21.0, link_quality=92), 2.0, 3.0)
    assert meter_due(track, Meters("r", 1, rf_dbm=(-64.0,), audio_peak_dbfs=-20.0, link_quality=90), 2.0, 3.0)
    assert meter_due(track, Meters("r", 1, rf_dbm=(-60.0,), audio_peak_dbfs=-10.0, link_quality=90), 2.0, 3.0)
    assert meter_due(track, Meters("r", 1, rf_dbm=(), audio_peak_dbfs=-20.0, link_quality=90), 2.0, 3.0)
    assert meter_due(track, Meters("r", 1, rf_dbm=(-60.0,), audio_peak_dbfs=-20.0, link_quality=90, clip=True),
                      2.0, 3.0)
    assert meter_due(track, Meters("r", 1, rf_dbm=(-60.0,), audio_peak_dbfs=-20.0, link_quality=70), 2.0, 3.0)
    assert meter_due(track, m, METER_HEARTBEAT_S + 0.1, 3.0)


# ---------------------------------------------------------------------------------------------- commands


@pytest.mark.parametrize(
    ("topic", "payload", "commands", "classes"),
    [
        ("channels/rack1/2/identify/set", b"PRESS", [Identify(channel=2)], {"identify"}),
        ("channels/rack1/2/identify/set", b"", [Identify(channel=2)], {"identify"}),
        ("devices/rack1/identify/set", b"", [Identify()], {"identify"}),
        ("channels/rack1/2/name/set", "Lead Vöx".encode(), [RenameChannel(2, "Lead Vöx")], {"rename"}),
        ("channels/rack1/2/name/set", b"123", [RenameChannel(2, "123")], {"rename"}),
        ("devices/rack1/name/set", b"Stage Left", [RenameDevice("Stage Left")], {"rename"}),
        ("channels/rack1/2/muted/set", b"ON", [SetMute(2, True)], {"dangerous"}),
        ("channels/rack1/2/muted/set", b"false", [SetMute(2, False)], {"dangerous"}),
        ("channels/rack1/2/gain_db/set", b"-3.5", [SetGain(2, -3.5)], {"dangerous"}),
        ("channels/rack1/2/frequency_khz/set", b"594075", [SetFrequency(2, 594075)], {"dangerous"}),
        ("channels/rack1/2/frequency_mhz/set", b"594.075", [SetFrequency(2, 594075)], {"dangerous"}),
        ("channels/rack1/2/group_channel/set", b"1,12", [SetGroupChannel(2, 1, 12)], {"dangerous"}),
        ("channels/rack1/2/set", b'{"name": "VOX", "identify": true}', [RenameChannel(2, "VOX"), Identify(channel=2)],
         {"rename", "identify"}),
        ("channels/rack1/2/set", b'{"muted": true, "identify": false}', [SetMute(2, True)], {"dangerous"}),
        ("devices/rack1/set", b'{"name": "R1"}', [RenameDevice("R1")], {"rename"}),
    ],
)
def test_command_payloads(topic: str, payload: bytes, commands: list[object], classes: set[str]) -> None:
    req = parse_command(T, f"micboard/main/{topic}", payload)
    assert list(req.commands) == commands
    assert req.classes == classes
    assert req.device_id == "rack1"


@pytest.mark.parametrize(
    ("topic", "payload", "needle"),
    [
        ("channels/rack1/2/set", b"{not json", "not valid JSON"),
        ("channels/rack1/2/set", b"[1,2]", "JSON object"),
        ("channels/rack1/2/set", b"ON", "JSON object"),
        ("channels/rack1/2/set", b"{}", "JSON object"),
        ("channels/rack1/2/set", b'{"identify": false}', "nothing to do"),
        ("channels/rack1/2/muted/set", b"maybe", "not ON/OFF"),
        ("channels/rack1/2/gain_db/set", b"loud", "not a number"),
        ("channels/rack1/2/gain_db/set", b"NaN", "not a number"),
        ("channels/rack1/2/frequency_khz/set", b"594.5", "whole number"),
        ("channels/rack1/2/group_channel/set", b"12", "g,c"),
        ("channels/rack1/2/reboot/set", b"1", "unknown channel setting"),
        ("devices/rack1/muted/set", b"ON", "unknown device setting"),
        ("channels/Rack1/2/name/set", b"x", "not [a-z0-9_-]"),
        ("channels/rack1/2/name/set", b"\xff\xfe", "not UTF-8"),
        ("channels/rack1/2/name/set", b"x" * 5000, "at most"),
        ("channels/rack1/2/set", b'{"name": 5}', "expected text"),
    ],
)
def test_bad_command_payloads_are_refused_with_a_reason(topic: str, payload: bytes, needle: str) -> None:
    with pytest.raises(CommandRejectedError) as err:
        parse_command(T, f"micboard/main/{topic}", payload)
    assert err.value.reason == "invalid"
    assert needle in err.value.message


def test_a_foreign_retained_device_state_nested_too_deeply_is_judged_without_a_parent() -> None:
    judge = StaleJudge(StateHub(), parse_config({"site": "main"}).mqtt, T)
    retained = {
        T.device_state("rx1"): b"[" * 100_000 + b"]" * 100_000,  # another client's garbage under our base
        T.device_state("rx2"): b'{"parent": "server1"}',
    }
    judge.learn_parents(retained)  # must not raise: this runs at every broker (re)connect
    assert judge.parent_of("rx1") is None and judge.parent_of("rx2") == "server1"
