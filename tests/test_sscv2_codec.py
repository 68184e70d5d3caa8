"""SSCv2 codec: SSE framing (whole, split at every byte, byte by byte, coalesced), events and resources."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest

from micboardd.adapters.sennheiser.sscv2 import (
    Res,
    ResourceError,
    battery_bars,
    classify,
    decode_resource,
    resource_path,
    warning_word,
)
from micboardd.adapters.sennheiser.sse import (
    CloseEvent,
    DataEvent,
    EventDataError,
    OpenEvent,
    OtherEvent,
    SseDecoder,
    SseEvent,
    SseFramingError,
    normalize_path,
    parse_event,
    session_from_location,
)

FIXTURES = Path(__file__).parent / "fixtures" / "sennheiser"
SESSION = FIXTURES / "sscv2_EW-DX-EM4_fw4.0-constructed_session.sse"
EXPECTED = FIXTURES / "sscv2_EW-DX-EM4_fw4.0-constructed_session.expected.json"
OAS_OPEN = FIXTURES / "sscv2_oas-1.7_open-event.sse"
UUID = "31875a94-29e6-4fb0-ab4d-7f0bbd6e1bc8"


def feed_all(chunks: list[bytes]) -> list[SseEvent]:
    decoder = SseDecoder()
    out: list[SseEvent] = []
    for chunk in chunks:
        out += decoder.feed(chunk)
    return out


def as_plain(events: list[SseEvent]) -> list[dict[str, Any]]:
    return [{"event": e.event, "data": json.loads(e.data) if e.data else None} for e in events]


@pytest.fixture(scope="module")
def stream() -> bytes:
    return SESSION.read_bytes()


@pytest.fixture(scope="module")
def expected() -> list[dict[str, Any]]:
    data: list[dict[str, Any]] = json.loads(EXPECTED.read_text())
    return data


# ----------------------------------------------------------------------------- framing


def test_fixture_keeps_its_mixed_line_ends(stream: bytes) -> None:
    # guards against an editor or git normalizing the wire sample
    assert b"\r\n\r\n" in stream
    assert b"\r\r" in stream
    assert b"}\n\n" in stream


def test_whole_stream(stream: bytes, expected: list[dict[str, Any]]) -> None:
    assert as_plain(feed_all([stream])) == expected


def test_split_at_every_byte(stream: bytes, expected: list[dict[str, Any]]) -> None:
    for cut in range(1, len(stream)):
        assert as_plain(feed_all([stream[:cut], stream[cut:]])) == expected, f"split at byte {cut}"


def test_one_byte_at_a_time(stream: bytes, expected: list[dict[str, Any]]) -> None:
    assert as_plain(feed_all([stream[i : i + 1] for i in range(len(stream))])) == expected


def test_random_chunks_and_coalesced_streams(stream: bytes, expected: list[dict[str, Any]]) -> None:
    rng = random.Random(1)
    doubled = stream + OAS_OPEN.read_bytes() + stream  # several sessions' worth per read
    want = [*expected, expected[0], *expected]
    for _ in range(200):
        cuts = sorted(rng.sample(range(1, len(doubled)), k=rng.randint(1, 40)))
        chunks = [doubled[a:b] for a, b in zip([0, *cuts], [*cuts, len(doubled)], strict=True)]
        assert as_plain(feed_all(chunks)) == want


def test_oas_open_example_verbatim() -> None:
    events = feed_all([OAS_OPEN.read_bytes()])
    assert len(events) == 1
    assert parse_event(events[0]) == OpenEvent(session=UUID, path=f"/api/ssc/state/subscriptions/{UUID}")


@pytest.mark.parametrize(
    "wire",
    [
        b"data:{\"a\":1}\n\n",
        b"data: {\"a\":1}\n\n",
        b"data: {\"a\":1}\r\n\r\n",
        b"data:{\"a\":1}\r\r",
        b"event:message\ndata:{\"a\":1}\n\n",
        b"event: message\r\ndata: {\"a\":1}\r\n\r\n",
        b": comment\ndata:{\"a\":1}\n\n",
        b"\xef\xbb\xbfdata:{\"a\":1}\n\n",
        b"retry: 3000\nfoo: bar\ndata:{\"a\":1}\n\n",
    ],
)
def test_spelling_variants_give_the_same_event(wire: bytes) -> None:
    (event,) = feed_all([wire])
    assert event.event == "message"
    assert event.data == '{"a":1}'


def test_only_one_space_is_stripped() -> None:
    (event,) = feed_all([b"data:  x\n\n"])
    assert event.data == " x"


def test_multi_line_data_joined_with_newline() -> None:
    (event,) = feed_all([b"data:{\ndata: \"a\": 1\ndata:}\n\n"])
    assert json.loads(event.data) == {"a": 1}


def test_close_without_data_is_dispatched_but_empty_blocks_are_not() -> None:
    events = feed_all([b"\n\n: only a comment\n\nid: 5\n\nevent: close\n\n"])
    assert [e.event for e in events] == ["close"]
    assert events[0].id == "5"  # the last event id persists


def test_incomplete_event_at_end_is_not_dispatched() -> None:
    assert feed_all([b"data: {\"a\":1}\n"]) == []


def test_line_limit() -> None:
    decoder = SseDecoder(max_line=100)
    decoder.feed(b"data:" + b"x" * 90)
    with pytest.raises(SseFramingError, match="longer than 100"):
        decoder.feed(b"y" * 20)


def test_event_limit() -> None:
    decoder = SseDecoder(max_line=100, max_event=250)
    with pytest.raises(SseFramingError, match="larger than 250"):
        decoder.feed(b"data:" + b"x" * 90 + b"\n" + b"data:" + b"x" * 90 + b"\n" + b"data:" + b"x" * 90 + b"\n")


def test_decoder_survives_invalid_utf8() -> None:
    (event,) = feed_all([b"data:\xff\xfe\n\n"])
    assert event.data == "\ufffd\ufffd"


# ----------------------------------------------------------------------------- SSCv2 events


def test_session_events_parse(stream: bytes) -> None:
    parsed = [parse_event(e) for e in feed_all([stream])]
    assert isinstance(parsed[0], OpenEvent) and parsed[0].session == UUID
    snapshot = parsed[1]
    assert isinstance(snapshot, DataEvent)
    assert [p for p, _ in snapshot.resources][:2] == ["/api/channel/0", "/api/rf/channels/0"]
    site = parsed[4]
    assert isinstance(site, DataEvent) and site.resources[0][0] == "/api/device/site"  # short spelling normalized
    deleted = parsed[5]
    assert isinstance(deleted, DataEvent) and deleted.resources[0] == ("/api/transmitters/1", None)
    assert isinstance(parsed[-1], CloseEvent) and parsed[-1].detail == ""


@pytest.mark.parametrize(
    ("data", "session"),
    [
        (f'{{"path":"/api/ssc/state/subscriptions/{UUID}","sessionUUID":"{UUID}"}}', UUID),
        (f'{{"path":"/api/ssc/state/subscriptions/{UUID}"}}', UUID),
        (UUID, UUID),
    ],
)
def test_open_event_forms(data: str, session: str) -> None:
    parsed = parse_event(SseEvent(event="open", data=data))
    assert isinstance(parsed, OpenEvent) and parsed.session == session


def test_open_event_without_session_is_an_error() -> None:
    with pytest.raises(EventDataError, match="no session id"):
        parse_event(SseEvent(event="open", data='{"hello":1}'))


def test_malformed_json_gives_short_excerpt() -> None:
    bad = '{"/api/channel/0":{"name":"VOX1",' + "x" * 300
    with pytest.raises(EventDataError) as info:
        parse_event(SseEvent(data=bad))
    assert "not JSON" in str(info.value)
    assert info.value.excerpt.startswith("'{\"/api/channel/0\"")
    assert len(info.value.excerpt) < 100


@pytest.mark.parametrize("data", ["[1,2]", '"text"', "42", '{"": 1}'])
def test_non_object_notifications_are_errors(data: str) -> None:
    with pytest.raises(EventDataError):
        parse_event(SseEvent(data=data))


def test_unknown_event_type_is_other() -> None:
    assert parse_event(SseEvent(event="ping", data="")) == OtherEvent(name="ping")


@pytest.mark.parametrize(
    ("header", "session"),
    [
        (UUID, UUID),  # OAS example: bare UUID
        (f"/api/ssc/state/subscriptions/{UUID}", UUID),  # full path (DJM)
        (f"https://10.0.0.5/api/ssc/state/subscriptions/{UUID}/", UUID),  # absolute URL, trailing slash
        ("", None),
        (None, None),
        ("/api/ssc/state/subscriptions/ bad id", None),
    ],
)
def test_session_from_content_location(header: str | None, session: str | None) -> None:
    assert session_from_location(header) == session


@pytest.mark.parametrize(
    ("raw", "norm"),
    [("/device/site", "/api/device/site"), ("/api/device/site", "/api/device/site"),
     ("device/site/", "/api/device/site"), ("/api/channel/0 ", "/api/channel/0")],
)
def test_normalize_path(raw: str, norm: str) -> None:
    assert normalize_path(raw) == norm


# ----------------------------------------------------------------------------- resources


def test_paths_round_trip_with_one_based_channels() -> None:
    for res in (Res.CHANNEL, Res.RSSI, Res.FREQUENCY, Res.TX, Res.BATTERY, Res.TX_WARNINGS, Res.LEVEL):
        path = resource_path(res, 4)
        assert "/3" in path  # wire ids are 0-based
        assert classify(path) == (res, 4)
    assert classify("/device/state") == (Res.STATE, None)
    assert classify("/api/rf/transmission") is None


def test_identity_maps_product_to_model_and_channels() -> None:
    d = decode_resource("/api/device/identity", {"product": "EWDX4CHDS", "hardwareRevision": "0596715-06",
                                                 "serial": "1023456789", "vendor": "Sennheiser electronic SE & Co. KG"})
    assert d is not None
    assert d.device == {"model": "EW-DX EM4 Dante", "channel_count": 4, "serial": "1023456789"}
    unknown = decode_resource("/api/device/identity", {"product": "TCCM", "serial": "1"})
    assert unknown is not None and unknown.device == {"model": "TCCM", "serial": "1"}


def test_channel_partial_objects_set_only_what_they_carry() -> None:
    d = decode_resource("/api/channel/1", {"mute": True})
    assert d is not None and d.index == 2 and d.channel == {"muted": True}
    full = decode_resource("/api/channel/0", {"name": "VOX1", "mute": False, "gain": 18, "mates": ["TX1"]})
    assert full is not None and full.channel == {"name": "VOX1", "muted": False, "gain_db": 18.0}
    off_range = decode_resource("/api/channel/0", {"gain": 99})
    assert off_range is not None and off_range.channel == {"gain_db": None}


def test_frequency_and_presets() -> None:
    d = decode_resource("/api/rf/channels/0", {"frequency": 518200, "presets": {"type": "Factory", "bank": 0,
                                                                                 "channel": 5}})
    assert d is not None and d.channel == {"frequency_khz": 518200, "group_channel": "0,5"}
    manual = decode_resource("/api/rf/channels/0", {"frequency": 518225, "presets": {"type": "None"}})
    assert manual is not None and manual.channel == {"frequency_khz": 518225, "group_channel": None}


def test_rf_ranges_accept_both_step_spellings() -> None:
    d = decode_resource("/api/rf", {"code": "Q1-9", "ranges": [{"start": 470200, "end": 550000, "stepsize": 25},
                                                               {"start": 600000, "end": 608000, "stepSize": 50}]})
    assert d is not None and d.extra["ranges"] == ((470200, 550000, 25), (600000, 608000, 50))


def test_battery_units_and_type() -> None:
    d = decode_resource("/api/transmitters/0/battery", {"gauge": 71, "lifetime": 245, "type": "Battery"})
    assert d is not None and d.index == 1
    assert d.tx == {"battery_percent": 71, "battery_bars": 4, "runtime_minutes": 245, "battery_type": "BA70"}
    primary = decode_resource("/api/transmitters/0/battery", {"type": "PrimaryCell"})
    assert primary is not None and primary.tx == {"battery_type": "PRIMARY"}
    none = decode_resource("/api/transmitters/0/battery", {"type": "NoBattery", "gauge": -1, "lifetime": 65535})
    assert none is not None
    assert none.tx == {"battery_type": None, "battery_percent": None, "battery_bars": None, "runtime_minutes": None}


def test_battery_bars_boundaries() -> None:
    assert [battery_bars(p) for p in (None, 0, 1, 20, 21, 80, 81, 100)] == [None, 0, 1, 1, 2, 4, 5, 5]


def test_null_transmitter_item_means_absent() -> None:
    d = decode_resource("/api/transmitters/1", None)
    assert d is not None and d.tx_absent and d.index == 2
    b = decode_resource("/api/transmitters/1/battery", None)
    assert b is not None and b.tx["battery_percent"] is None
    assert decode_resource("/api/channel/1", None) is None  # null elsewhere carries nothing


@pytest.mark.parametrize(
    ("typ", "model"),
    [("EW_DX_SKM", "EW-DX SKM"), ("EW_DX_SK_3_PIN", "EW-DX SK 3-PIN"), ("EW_D_SKP", "EW-D SKP"),
     ("EW_DX_TS_5_PIN", "EW-DX TS 5-PIN"), ("SOMETHING_NEW", "SOMETHING_NEW")],
)
def test_transmitter_types(typ: str, model: str) -> None:
    d = decode_resource("/api/transmitters/0", {"type": typ, "name": "LEAD", "mute": True, "lock": True})
    assert d is not None
    assert d.tx == {"present": True, "model": model, "device_name": "LEAD", "muted": True, "lock": "all"}


def test_meters_and_sentinels() -> None:
    def meter(path: str, value: Any) -> dict[str, Any]:
        d = decode_resource(path, {"value": value})
        assert d is not None
        return dict(d.meters)

    assert meter("/api/channel/0/signalStrengthIndicator", -52.5) == {"rf_dbm": (-52.5,)}
    assert meter("/api/channel/0/signalStrengthIndicator", 12) == {"rf_dbm": ()}  # out of -107..0
    assert meter("/api/channel/0/signalQualityIndicator", 88) == {"link_quality": 88}
    assert meter("/api/channel/0/signalQualityIndicator", 255) == {"link_quality": None}
    assert meter("/api/channel/0/diversityIndicator", 2) == {"active_antenna": "B"}
    assert meter("/api/channel/0/diversityIndicator", 0) == {"active_antenna": None}
    assert meter("/api/channel/0/level", -18.3) == {"audio_peak_dbfs": -18.3}
    assert meter("/api/channel/0/level", "loud") == {"audio_peak_dbfs": None}
    assert meter("/api/channel/0/level", True) == {"audio_peak_dbfs": None}


def test_warnings_map_to_stable_words() -> None:
    d = decode_resource("/api/channel/0/warnings", ["Aes256Error", "LowSignal", "NoLink", "RfPeak", "AfPeak",
                                                    "AfPeak", "NewThingHappened"])
    assert d is not None
    assert d.warnings == ("encryption_error", "low_signal", "no_link", "rf_peak", "af_peak", "new_thing_happened")
    tx = decode_resource("/api/transmitters/0/warnings", ["LowBattery"])
    assert tx is not None and tx.warnings == ("low_battery",)
    assert warning_word("") == "unknown"


def test_device_state_and_firmware() -> None:
    s = decode_resource("/api/device/state", {"state": "Busy", "warnings": ["FanFailure"]})
    assert s is not None and s.extra["state"] == "Busy" and s.warnings == ("fan_failure",)
    f = decode_resource("/api/firmware/update/state", {"deviceVersion": "4.0.1", "state": "Idle", "progress": 0})
    assert f is not None and f.device == {"firmware": "4.0.1"}


@pytest.mark.parametrize(
    ("path", "value"),
    [
        ("/api/channel/0", ["not", "an", "object"]),
        ("/api/channel/0/warnings", "NoLink"),
        ("/api/channel/0/warnings", [1, 2]),
        ("/api/transmitters/0/battery", 71),
        ("/api/channel/0/level", -3.0),
        ("/api/transmitters", {"id": 0}),
        ("/api/device/identity", "EWDX4CHDS"),
    ],
)
def test_wrong_shapes_raise_resource_error(path: str, value: Any) -> None:
    with pytest.raises(ResourceError):
        decode_resource(path, value)


def test_transmitter_list() -> None:
    d = decode_resource("/api/transmitters", [{"id": 0, "transmitter": {"type": "EW_DX_SKM"}}, {"id": 2},
                                              {"id": True}, "junk"])
    assert d is not None
    assert dict(d.extra["linked"]) == {1: {"type": "EW_DX_SKM"}, 3: {}}


def test_unknown_paths_decode_to_none() -> None:
    assert decode_resource("/api/syncSettings/0", {"lock": True}) is None
