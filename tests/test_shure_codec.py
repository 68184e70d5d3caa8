"""Shure codec: framing under any chunking, parsing, sentinels, SAMPLE layouts, encoding, vocab tables."""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

from micboardd import commands as cmds
from micboardd.adapters.shure import vocab as V
from micboardd.adapters.shure.codec import (
    MAX_FRAME_BYTES,
    DecodeContext,
    Err,
    FieldChange,
    Framer,
    Garbage,
    Message,
    ParseError,
    Rep,
    Sample,
    check_text,
    combine_encryption,
    combine_lock,
    decode_value,
    encode_get,
    encode_set,
    encode_uhfr_meter,
    format_frequency,
    format_group_channel,
    format_text,
    interpret,
    meters_uhfr,
    parse_frame,
    parse_group_channel,
    sample_meters,
    uhfr_sample_bars,
)
from micboardd.model import TX_ABSENT, Transmitter

FIXTURES = Path(__file__).parent / "fixtures" / "shure"

FAMILY_OF = {
    "ULXD4D": V.ULXD,
    "QLXD4": V.QLXD,
    "AD4D": V.AXIENT,
    "AD4Q": V.AXIENT,
    "SLXD4D": V.SLXD,
    "P10T": V.PSM1000,
    "UR4D": V.UHFR,
}


def load(path: Path) -> bytes:
    """Fixture → wire bytes: '#' lines are notes, line breaks are not wire, \\r \\n escapes are CR LF."""
    out = []
    for line in path.read_text("utf-8").splitlines():
        if line.startswith("#") or not line:
            continue
        out.append(line.replace("\\r", "\r").replace("\\n", "\n"))
    return "".join(out).encode("ascii")


def fixture_files() -> list[Path]:
    files = sorted(FIXTURES.glob("*.txt"))
    assert files, "no Shure fixtures found"
    return files


def vocab_of(path: Path) -> V.Vocab:
    return FAMILY_OF[path.name.split("_")[0]]


def parse_stream(vocab: V.Vocab, chunks: list[bytes]) -> tuple[list[Message], list[Garbage]]:
    framer = Framer(vocab.framing)
    items: list[bytes | Garbage] = []
    for chunk in chunks:
        items += framer.feed(chunk)
    items += framer.flush()
    messages = [parse_frame(i) for i in items if isinstance(i, bytes)]
    return messages, [i for i in items if isinstance(i, Garbage)]


def chunkings(data: bytes) -> dict[str, list[bytes]]:
    frames_per_read = []
    step = 97  # several frames per read, cut at offsets that fall mid-frame
    for i in range(0, len(data), step):
        frames_per_read.append(data[i : i + step])
    return {
        "whole": [data],
        "byte_at_a_time": [data[i : i + 1] for i in range(len(data))],
        "several_frames_per_read": frames_per_read,
    }


@pytest.mark.parametrize("path", fixture_files(), ids=lambda p: p.stem)
def test_fixture_parses_identically_however_it_is_chunked(path: Path) -> None:
    vocab = vocab_of(path)
    data = load(path)
    results = {name: parse_stream(vocab, chunks) for name, chunks in chunkings(data).items()}
    whole, garbage = results["whole"]
    assert not garbage, f"{path.name}: garbage {garbage}"
    assert len(whole) > 5
    for name, (messages, bad) in results.items():
        assert messages == whole, name
        assert not bad, name


class Folded:
    """The normalized state a stream of messages leaves behind (what the adapter would publish)."""

    def __init__(self) -> None:
        self.device: dict[str, Any] = {}
        self.device_session: dict[str, Any] = {}
        self.channels: dict[int, dict[str, Any]] = defaultdict(lambda: {"tx": Transmitter()})
        self.session: dict[int, dict[str, Any]] = defaultdict(dict)
        self.meters: dict[int, list[Any]] = defaultdict(list)
        self.unknown: list[str] = []
        self.metered = 0


def fold(vocab: V.Vocab, messages: list[Message]) -> Folded:
    ctx = DecodeContext(vocab)
    st = Folded()
    for msg in messages:
        if isinstance(msg, Sample):
            st.meters[msg.channel].append(sample_meters(vocab.sample, "dev", msg, 1.5))
            continue
        assert isinstance(msg, Rep), msg
        change = interpret(ctx, msg)
        if change is None:
            st.unknown.append(msg.prop)
            continue
        if change.metered:
            st.metered += 1
            continue
        if change.channel is None:
            st.device.update(change.fields)
            st.device_session.update(change.session)
            continue
        ch = st.channels[change.channel]
        ch.update(change.fields)
        st.session[change.channel].update(change.session)
        if change.present is False:
            ch["tx"] = TX_ABSENT  # as the adapter does: the whole record becomes unknown
        else:
            tx = dict(change.tx)
            if change.present:
                tx["present"] = True
            ch["tx"] = dataclasses.replace(ch["tx"], **tx)
    return st


def folded(name: str) -> Folded:
    path = FIXTURES / name
    vocab = vocab_of(path)
    messages, garbage = parse_stream(vocab, [load(path)])
    assert not garbage
    return fold(vocab, messages)


# ----------------------------------------------------------------------------- per-model fixtures


def test_ulxd4d_fixture_normalizes() -> None:
    st = folded("ULXD4D_2.7.6.0.txt")
    assert st.device == {"name": "RACK1", "firmware": "2.7.6.0"}
    assert st.device_session == {"encryption_mode": "auto"}
    ch1, ch2 = st.channels[1], st.channels[2]
    assert ch1["name"] == "HH01 Bob"
    assert ch1["frequency_khz"] == 578350
    assert ch1["group_channel"] == "01,01"
    assert ch1["gain_db"] == 0
    assert ch1["muted"] is False
    assert ch1["interference"] is False
    assert ch1["tx"] == Transmitter(
        present=True,
        model="ULXD2",
        device_name="Bob HH",
        rf_power="normal",
        muted=False,
        battery_bars=4,
        battery_percent=71,
        battery_cycles=42,
        runtime_minutes=312,
        battery_temp_c=30.0,  # raw 070 with the -40 offset
        battery_type="LION",
        battery_health_percent=98,
    )
    assert st.session[1] == {
        "meter_rate_ms": 100,
        "encryption_warning": False,
        "tx_power_lock": True,
        "tx_menu_lock": False,
    }
    assert ch2["name"] == "GTR 2"
    assert ch2["gain_db"] == 12
    assert ch2["muted"] is True
    assert ch2["group_channel"] is None  # "--,--"
    assert ch2["interference"] is True
    # ch2 started without a transmitter, then a ULXD1 switched on with its runtime still calculating.
    assert ch2["tx"] == Transmitter(
        present=True, model="ULXD1", muted=True, battery_bars=5, runtime_minutes=None, battery_type="ALKA"
    )
    assert st.session[2]["encryption_warning"] is True
    assert set(st.unknown) == {"TX_OFFSET", "TX_POWER_SOURCE", "BATT_TEMP_F"}
    m = st.meters[1]
    assert [(x.rf_dbm, x.active_antenna, x.audio_rms_dbfs) for x in m] == [((-41,), "A", -19), ((-42,), "B", -21)]
    assert st.meters[2][0].rf_dbm == (-128,)
    assert st.meters[2][0].active_antenna is None
    assert st.meters[2][1].audio_rms_dbfs == -6


def test_qlxd4_fixture_transmitter_switches_off() -> None:
    st = folded("QLXD4_2.1.5.txt")
    assert st.device == {"firmware": "2.1.5", "name": "QLX-A"}
    assert st.device_session["encryption_mode"] == "on"
    ch = st.channels[1]
    assert ch["name"] == "Podium"
    assert ch["gain_db"] == -18
    assert ch["group_channel"] == "12,03"
    assert ch["frequency_khz"] == 614075
    assert ch["tx"] == TX_ABSENT  # the last word: TX_TYPE UNKN / BATT_BARS 255
    meters = st.meters[1]
    assert meters[0].rf_dbm == (-13,)
    assert meters[0].audio_rms_dbfs == 0
    assert meters[1].active_antenna == "A"  # "RX": antenna A red (interference), still the active one
    assert meters[2].active_antenna is None


def test_qlxd4_sentinels_before_switch_off() -> None:
    path = FIXTURES / "QLXD4_2.1.5.txt"
    messages, _ = parse_stream(V.QLXD, [load(path)])
    cut = next(i for i, m in enumerate(messages) if isinstance(m, Rep) and m.prop == "TX_TYPE" and m.value == "UNKN")
    st = fold(V.QLXD, messages[:cut])
    assert st.channels[1]["tx"] == Transmitter(
        present=True,
        model="QLXD2",
        rf_power="low",
        muted=None,  # UNKN
        battery_bars=2,
        battery_percent=None,  # 255: alkaline cells report no percentage
        runtime_minutes=None,  # 65533: battery communication warning, not 65533 minutes
        battery_type="ALKA",
    )


def test_ad4d_fixture_with_real_no_transmitter_dump() -> None:
    st = folded("AD4D_2.1.14.txt")
    assert st.device == {"model": "AD4D-A", "rf_band": "G57", "firmware": "2.1.14", "name": "Stage Left AD"}
    ch1, ch2 = st.channels[1], st.channels[2]
    assert ch1["name"] == "Lead Vox"
    assert ch1["frequency_khz"] == 614650
    assert ch1["group_channel"] == "6,6"
    assert ch1["gain_db"] == 6
    assert ch1["tx"] == Transmitter(
        present=True,
        model="AD2",
        device_name="Vox HH",
        rf_power="10mW",
        muted=False,  # TX_MUTE_MODE_STATUS ON means live
        lock="power",
        battery_bars=5,
        battery_percent=93,
        runtime_minutes=425,
        battery_health_percent=100,
        battery_cycles=7,
        battery_temp_c=22.0,
        battery_type="LION",
    )
    assert st.session[1]["encryption_status"] == "ok"
    assert ch2["name"] is None  # 31 spaces
    assert ch2["muted"] is True
    assert ch2["interference"] is True
    assert ch2["group_channel"] is None
    assert ch2["frequency_khz"] == 594075
    assert ch2["tx"] == TX_ABSENT
    assert st.session[2]["encryption_status"] == "error"
    assert set(st.unknown) == {"QUADVERSITY_MODE", "TRANSMISSION_MODE", "SLOT_STATUS", "SLOT_BATT_BARS"}
    assert st.metered == 6  # CHAN_QUALITY x2, RSSI x3, ANTENNA_STATUS: liveness only
    live, clip = st.meters[1]
    assert live.link_quality == 100
    assert live.audio_peak_dbfs == -18
    assert live.audio_rms_dbfs == -18
    assert live.rf_dbm == (-34, -55)
    assert live.active_antenna == "AB"
    assert live.clip is False
    assert clip.clip is True  # bitmap 159 has bit 7 set
    assert clip.active_antenna == "A"
    (none,) = st.meters[2]  # MB's real no-transmitter sample
    assert none.link_quality is None  # 255
    assert none.audio_peak_dbfs == -115
    assert none.audio_rms_dbfs == -87
    assert none.rf_dbm == (-109, -108)
    assert none.active_antenna is None


def test_ad4q_fixture_quadversity() -> None:
    st = folded("AD4Q_2.1.14.txt")
    assert st.device["model"] == "AD4Q-A"
    assert V.channels_for_model(V.AXIENT, st.device["model"]) == 4
    assert st.channels[1]["tx"] == Transmitter(
        present=True, model="ADX1", muted=True, lock="all", battery_bars=3, runtime_minutes=95
    )
    assert st.channels[3]["tx"] == TX_ABSENT
    assert st.channels[4]["group_channel"] == "12,40"
    assert st.channels[4]["frequency_khz"] == 941125
    (q1,), (q2,), (q3,) = st.meters[1], st.meters[2], st.meters[3]
    assert q1.rf_dbm == (-34, -55, -76, -109)
    assert q1.active_antenna == "123"  # "BBRX": antennas 1 and 2 blue, 3 red, 4 off
    assert q2.rf_dbm == (-108, -40, -42, -110)
    assert q2.active_antenna == "23"
    assert q2.link_quality == 60
    assert q3.rf_dbm == (-110, -109, -108, -107)
    assert q3.link_quality is None
    assert q3.active_antenna is None


def test_slxd4d_fixture() -> None:
    st = folded("SLXD4D_1.0.7.2.txt")
    assert st.device == {"model": "SLXD4D", "firmware": "1.0.7.2", "rf_band": "G58", "name": "SLXRACK"}
    assert st.device_session == {"self_test_failed": True, "lock_status": "off"}
    ch1, ch2 = st.channels[1], st.channels[2]
    assert ch1["name"] == "Keys"
    assert ch1["gain_db"] == 22
    # SET FREQUENCY reported the linked GROUP_CHANNEL "--,--" first, then the new frequency.
    assert ch1["group_channel"] is None
    assert ch1["frequency_khz"] == 602125
    assert ch1["tx"] == Transmitter(present=True, model="SLXD2", battery_bars=4, runtime_minutes=265)
    assert ch2["tx"] == Transmitter(present=True, model="SLXD1", battery_bars=4, runtime_minutes=480)
    assert st.metered == 4
    (m1,), (m2,) = st.meters[1], st.meters[2]
    assert (m1.audio_peak_dbfs, m1.audio_rms_dbfs, m1.rf_dbm) == (-18, -25, (-34,))
    assert (m2.audio_peak_dbfs, m2.audio_rms_dbfs, m2.rf_dbm) == (-120, -120, (-110,))
    assert m1.active_antenna is None
    assert m1.link_quality is None


def test_p10t_fixture_bare_strings_and_crlf() -> None:
    st = folded("P10T_fw-unreported.txt")
    assert st.device == {"name": "P10T-A"}
    assert st.channels[1]["name"] == "IEM_1"
    assert st.channels[1]["frequency_khz"] == 518200
    assert st.channels[1]["gain_db"] == -10  # AUDIO_IN_LVL, read-only
    assert st.channels[1]["group_channel"] == "01,05"
    assert st.channels[2]["name"] == "MON 2"  # a bare value keeps its inner space
    assert st.channels[2]["group_channel"] is None
    assert st.channels[1]["tx"] == Transmitter()  # an IEM transmitter has no body-pack on the channel
    assert st.session[1]["meter_rate_ms"] == 100
    assert st.session[2] == {"rf_mute": "0", "rf_tx_level": "50"}  # known, deliberately not mapped
    assert st.metered == 2
    assert not st.meters


def test_ur4d_fixture_star_framing() -> None:
    st = folded("UR4D_fw-unreported.txt")
    assert st.channels[1]["name"] == "VOX1"
    assert st.channels[1]["group_channel"] == "01,05"  # two tokens joined
    assert st.channels[1]["frequency_khz"] == 578350
    assert st.channels[1]["tx"] == Transmitter(battery_bars=4, present=True)
    assert st.channels[2]["name"] == "VOX2"  # REP accepted as well as REPORT
    assert st.channels[2]["tx"] == Transmitter(battery_bars=None, present=True, model="UR2")
    (m1,), (m2,) = st.meters[1], st.meters[2]
    assert m1.active_antenna == "A"
    assert m1.rf_dbm == (-105.0, -82.5)  # UR4D client's (v-255)/2, UNVERIFIED
    assert m1.audio_rms_dbfs == -112.0
    assert m2.rf_dbm == (0.0, 0.0)


# ----------------------------------------------------------------------------- framing


def test_padding_and_braces_are_stripped_but_spaces_inside_kept() -> None:
    rep = parse_frame(b" REP 1 CHAN_NAME {Lead Vox                       } ")
    assert rep == Rep(1, "CHAN_NAME", "Lead Vox")
    assert parse_frame(b" REP DEVICE_ID {        } ") == Rep(None, "DEVICE_ID", "")
    assert parse_frame(b" REP 1 SLOT_TX_DEVICE_ID 8 {My TX     } ") == Rep(1, "SLOT_TX_DEVICE_ID", "8 My TX")
    assert parse_frame(b"REPORT 2 CHAN_NAME MON 2") == Rep(2, "CHAN_NAME", "MON 2")


def test_gt_inside_a_braced_name_does_not_end_the_frame() -> None:
    data = b"< REP 1 CHAN_NAME {A>B     } >< REP 1 BATT_BARS 004 >"
    for chunks in chunkings(data).values():
        messages, garbage = parse_stream(V.ULXD, chunks)
        assert messages == [Rep(1, "CHAN_NAME", "A>B"), Rep(1, "BATT_BARS", "004")]
        assert not garbage


def test_stray_open_brace_does_not_swallow_the_next_frame() -> None:
    data = b"< REP 1 CHAN_NAME {oops >< REP 1 BATT_BARS 004 >"
    for chunks in chunkings(data).values():
        framer = Framer()
        bodies = [i for chunk in chunks for i in framer.feed(chunk)]
        assert len(bodies) == 2
        assert isinstance(bodies[0], bytes)
        assert isinstance(bodies[1], bytes)
        with pytest.raises(ParseError, match="unclosed brace"):
            parse_frame(bodies[0])
        assert parse_frame(bodies[1]) == Rep(1, "BATT_BARS", "004")


def test_partial_tail_is_kept_until_completed() -> None:
    framer = Framer()
    assert framer.feed(b"< REP 1 BATT_BA") == []
    assert framer.pending == len(b"< REP 1 BATT_BA")
    assert framer.feed(b"RS 003 >< SAMPLE 1") == [b" REP 1 BATT_BARS 003 "]
    assert framer.feed(b" ALL AX 087 031 >") == [b" SAMPLE 1 ALL AX 087 031 "]
    assert framer.pending == 0


def test_frame_over_the_cap_is_garbage_and_the_stream_recovers() -> None:
    framer = Framer(max_frame=64)
    items = framer.feed(b"< REP 1 CHAN_NAME " + b"x" * 100)
    assert len(items) == 1
    assert isinstance(items[0], Garbage)
    assert "64 bytes" in items[0].reason
    assert len(items[0].data) <= 64  # a log line shows a short excerpt, never the whole flood
    # the rest of the over-long frame is dropped up to the next frame start
    assert framer.feed(b"y" * 500 + b" >< REP 1 BATT_BARS 004 >") == [b" REP 1 BATT_BARS 004 "]
    assert framer.pending == 0


def test_endless_bytes_without_delimiter_never_buffer_beyond_the_cap() -> None:
    framer = Framer()
    garbage = 0
    for _ in range(100):
        for item in framer.feed(b"z" * 1000):
            assert isinstance(item, Garbage)
            garbage += 1
        assert framer.pending <= MAX_FRAME_BYTES
    assert garbage >= 1


def test_junk_between_frames_is_reported_and_frames_survive() -> None:
    messages, garbage = parse_stream(V.ULXD, [b"\x00\xffjunk< REP 1 BATT_BARS 004 >more junk>< REP ERR >"])
    assert messages == [Rep(1, "BATT_BARS", "004"), Err(None)]
    assert [g.reason for g in garbage] == ["bytes outside a frame", "bytes outside a frame"]


def test_crlf_between_frames_is_not_garbage() -> None:
    messages, garbage = parse_stream(V.PSM1000, [b"< REPORT 1 CHAN_NAME IEM_1 >\r\n< REPORT 2 CHAN_NAME X >\r\n"])
    assert len(messages) == 2
    assert not garbage


def test_star_framer_unfinished_datagram_is_garbage_on_flush() -> None:
    framer = Framer(V.Framing.STAR)
    assert framer.feed(b"* REPORT 1 CHAN_NAME VOX1 ** REPORT 1 TX_B") == [b" REPORT 1 CHAN_NAME VOX1 "]
    (bad,) = framer.flush()
    assert isinstance(bad, Garbage)
    assert framer.flush() == []


# ----------------------------------------------------------------------------- parsing


def test_rep_err_with_and_without_channel() -> None:
    assert parse_frame(b" REP ERR ") == Err(None)
    assert parse_frame(b" REP 2 ERR ") == Err(2)


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"   ",
        b" HELLO 1 X 2 ",
        b" GET 1 ALL ",  # our own verbs never come back
        b" REP ",
        b" REP 1 ",
        b" REP 1 CHAN\x00NAME {x} ",
        b" REP 1 CHAN_NAME {x\x07} ",
        b" REP 1\xb2 CHAN_NAME {x} ",
        b" REP 1234 CHAN_NAME {x} ",
        b" REP 1 CHAN-NAME x ",
        b" SAMPLE ",
        b" SAMPLE X ALL 1 2 3 ",
    ],
)
def test_garbage_bodies_raise_parse_error(body: bytes) -> None:
    with pytest.raises(ParseError):
        parse_frame(body)


def test_verbs_rep_and_report_are_equivalent() -> None:
    assert parse_frame(b"REP 1 TX_BAT 4") == parse_frame(b"REPORT 1 TX_BAT 4")


def test_sample_without_all_token_is_tolerated() -> None:
    assert parse_frame(b" SAMPLE 3 087 031 ") == Sample(3, ("087", "031"))


# ----------------------------------------------------------------------------- values and sentinels


@pytest.mark.parametrize(
    ("vocab", "prop", "text", "expected"),
    [
        (V.ULXD, "BATT_BARS", "255", None),
        (V.ULXD, "BATT_BARS", "000", 0),
        (V.ULXD, "BATT_CHARGE", "255", None),
        (V.ULXD, "BATT_CHARGE", "100", 100),
        (V.ULXD, "BATT_RUN_TIME", "65535", None),
        (V.ULXD, "BATT_RUN_TIME", "65534", None),  # calculating
        (V.ULXD, "BATT_RUN_TIME", "65533", None),  # battery communication warning
        (V.ULXD, "BATT_RUN_TIME", "65532", 65532),
        (V.ULXD, "BATT_RUN_TIME", "00000", 0),
        (V.ULXD, "BATT_CYCLE", "65535", None),
        (V.ULXD, "BATT_TEMP_C", "255", None),
        (V.ULXD, "BATT_TYPE", "UNKN", None),
        (V.ULXD, "TX_TYPE", "UNKN", None),
        (V.ULXD, "TX_RF_PWR", "UNKN", None),
        (V.ULXD, "TX_RF_PWR", "HIGH", "high"),
        (V.ULXD, "TX_MUTE_STATUS", "ON", True),
        (V.ULXD, "TX_MUTE_STATUS", "UNKN", None),
        (V.ULXD, "AUDIO_GAIN", "000", -18),
        (V.ULXD, "AUDIO_GAIN", "060", 42),
        (V.ULXD, "GROUP_CHAN", "--,--", None),
        (V.ULXD, "FREQUENCY", "578350", 578350),
        (V.AXIENT, "FREQUENCY", "0594075", 594075),
        (V.AXIENT, "FREQUENCY", "0000000", None),
        (V.AXIENT, "TX_MODEL", "UNKNOWN", None),
        (V.AXIENT, "TX_MUTE_MODE_STATUS", "ON", False),
        (V.AXIENT, "TX_MUTE_MODE_STATUS", "MUTE", True),
        (V.AXIENT, "TX_LOCK", "UNKNOWN", None),
        (V.AXIENT, "TX_LOCK", "NONE", "none"),
        (V.AXIENT, "TX_POWER_LEVEL", "255", None),
        (V.AXIENT, "TX_POWER_LEVEL", "020", "20mW"),
        (V.AXIENT, "TX_BATT_MINS", "65535", None),
        (V.AXIENT, "INTERFERENCE_STATUS", "DETECTED", True),
        (V.AXIENT, "RSSI", "2 012", 12),
        (V.SLXD, "GROUP_CHANNEL", "6,6", "6,6"),
        (V.UHFR, "TX_BAT", "U", None),
        (V.UHFR, "TX_BAT", "3", 3),
        (V.UHFR, "FREQUENCY", "578.350", 578350),
        (V.PSM1000, "AUDIO_IN_LVL", "-67", -67),
        (V.PSM1000, "AUDIO_IN_LVL", "0", 0),
        (V.PSM1000, "AUDIO_IN_LVL", "12", None),  # outside CP's range: unknown, not a real-looking number
        (V.PSM1000, "AUDIO_IN_LVL", "x", None),
    ],
)
def test_decode_values_and_sentinels(vocab: V.Vocab, prop: str, text: str, expected: Any) -> None:
    assert decode_value(DecodeContext(vocab), vocab.props[prop], text) == expected


@pytest.mark.parametrize(
    ("vocab", "prop", "text"),
    [
        (V.ULXD, "BATT_BARS", "006"),
        (V.ULXD, "BATT_BARS", "abc"),
        (V.ULXD, "BATT_CHARGE", "101"),
        (V.ULXD, "AUDIO_GAIN", "061"),
        (V.ULXD, "FREQUENCY", "999"),
        (V.ULXD, "FREQUENCY", "57x350"),
        (V.UHFR, "FREQUENCY", "9" * 320 + ".5"),  # MHz form so long a float is infinite: no OverflowError
        (V.UHFR, "TX_BAT", "9"),
    ],
)
def test_impossible_values_raise(vocab: V.Vocab, prop: str, text: str) -> None:
    with pytest.raises(ValueError):  # the adapter treats any ValueError as a bad frame
        decode_value(DecodeContext(vocab), vocab.props[prop], text)


def test_temperature_offset_is_configurable_and_implausible_values_are_unknown() -> None:
    prop = V.ULXD.props["BATT_TEMP_C"]
    assert decode_value(DecodeContext(V.ULXD, temp_offset_c=40.0), prop, "010") == 50.0
    assert decode_value(DecodeContext(V.ULXD), prop, "200") is None  # 160 °C is a wrong offset, not a battery


def test_presence_rules() -> None:
    ctx = DecodeContext(V.ULXD)
    assert interpret(ctx, Rep(1, "TX_TYPE", "UNKN")) == FieldChange(1, "TX_TYPE", tx={"model": None}, present=False)
    assert interpret(ctx, Rep(1, "BATT_BARS", "255")) == FieldChange(
        1, "BATT_BARS", tx={"battery_bars": None}, present=False
    )
    change = interpret(ctx, Rep(1, "BATT_BARS", "000"))
    assert change is not None
    assert change.present is True  # 0 bars is a flat battery in a live transmitter, not "absent"
    rt = interpret(ctx, Rep(1, "BATT_RUN_TIME", "65535"))
    assert rt is not None
    assert rt.present is None  # runtime says nothing about presence
    u = interpret(DecodeContext(V.UHFR), Rep(1, "TX_BAT", "U"))
    assert u is not None
    assert u.present is None  # UHF-R "U" is unknown, not "absent"


def test_unknown_property_and_channelless_channel_property() -> None:
    ctx = DecodeContext(V.SLXD)
    assert interpret(ctx, Rep(1, "AUDIO_MUTE", "ON")) is None  # SLX-D has no mute
    with pytest.raises(ValueError, match="without a channel"):
        interpret(ctx, Rep(None, "CHAN_NAME", "x"))


def test_combine_lock_and_encryption() -> None:
    assert combine_lock(None, True) is None
    assert combine_lock(True, True) == "all"
    assert combine_lock(True, False) == "power"
    assert combine_lock(False, True) == "menu"
    assert combine_lock(False, False) == "none"
    assert combine_encryption("auto", False, None) == "auto"
    assert combine_encryption("auto", True, None) == "error"
    assert combine_encryption(None, None, "ok") == "ok"
    assert combine_encryption("off", None, "ok") == "off"
    assert combine_encryption("auto", None, "error") == "error"


def test_parse_group_channel() -> None:
    assert parse_group_channel("06,06") == (6, 6)
    assert parse_group_channel("6,6") == (6, 6)
    assert parse_group_channel(None) is None
    assert parse_group_channel("x,1") is None


# ----------------------------------------------------------------------------- meters


def test_meters_layout_errors_raise() -> None:
    with pytest.raises((ValueError, IndexError)):
        sample_meters(V.SampleLayout.ULX, "d", Sample(1, ("AX", "087")), 0.0)
    with pytest.raises(ValueError, match="RF tokens"):
        sample_meters(V.SampleLayout.AD, "d", Sample(1, ("005", "031", "102", "102", "BBBB", "31", "086")), 0.0)
    with pytest.raises(ValueError):
        sample_meters(V.SampleLayout.SLX, "d", Sample(1, ("1x2", "095", "086")), 0.0)


def test_ad_fd_combining_second_rf_section_is_tolerated() -> None:
    # FD-C appends a second RF section (reference §2.3, layout UNVERIFIED): the first section still decodes.
    msg = parse_frame(b" SAMPLE 1 ALL 005 031 102 102 BB 31 086 31 065 BX 15 080 00 010 ")
    assert isinstance(msg, Sample)
    m = sample_meters(V.SampleLayout.AD, "d", msg, 0.0)
    assert m.rf_dbm == (-34, -55)
    assert m.active_antenna == "AB"


def test_uhfr_meter_scale_none_reports_no_fake_units() -> None:
    m = meters_uhfr("d", Sample(1, ("XB", "045", "090", "4", "031")), 0.0, scale="none")
    assert m.rf_dbm == (None, None)
    assert m.audio_rms_dbfs is None
    assert m.active_antenna == "B"
    assert uhfr_sample_bars(Sample(1, ("XB", "045", "090", "U", "031"))) is None
    assert uhfr_sample_bars(Sample(1, ("XB", "045", "090", "2", "031"))) == 2


# ----------------------------------------------------------------------------- encoding


def test_encode_per_family() -> None:
    assert encode_get(V.ULXD, "ALL", 0) == b"< GET 0 ALL >"
    assert encode_get(V.SLXD, "MODEL") == b"< GET MODEL >"
    assert encode_set(V.ULXD, "METER_RATE", "00100", 0) == b"< SET 0 METER_RATE 00100 >"
    assert encode_set(V.AXIENT, "FLASH", "ON") == b"< SET FLASH ON >"
    assert encode_get(V.PSM1000, "CHAN_NAME", 1) == b"< GET 1 CHAN_NAME >\r\n"
    assert encode_set(V.PSM1000, "CHAN_NAME", format_text(V.PSM1000, "IEM 2"), 2) == b"< SET 2 CHAN_NAME IEM 2 >\r\n"
    assert encode_get(V.UHFR, "TX_BAT", 1) == b"* GET 1 TX_BAT *"
    assert encode_uhfr_meter(1, 100) == b"* METER 1 ALL 003 *"
    assert encode_uhfr_meter(2, 0) == b"* METER 2 ALL STOP *"
    assert format_text(V.AXIENT, "Lead Vox") == "{Lead Vox}"
    assert format_group_channel(V.ULXD, 6, 6) == "{6,6}"
    assert format_group_channel(V.PSM1000, 1, 5) == "01,05"
    assert format_frequency(V.SLXD, 602125) == "602125"
    assert format_frequency(V.ULXD, 1492125) == "1492125"


def test_encoded_frames_parse_back_through_our_framer() -> None:
    framer = Framer()
    (body,) = framer.feed(encode_set(V.ULXD, "CHAN_NAME", "{Lead}", 1))
    assert isinstance(body, bytes)
    assert body.split() == [b"SET", b"1", b"CHAN_NAME", b"{Lead}"]


def test_check_text() -> None:
    assert check_text("HH01 Bob", 8) is None
    assert "1..8" in (check_text("HH01 Bobby", 8) or "")
    assert "1..8" in (check_text("", 8) or "")
    assert check_text("A{B", 31) is not None
    assert check_text("A>B", 31) is not None
    assert check_text("Bühne", 31) is not None
    assert check_text(" pad", 31) is not None


# ----------------------------------------------------------------------------- vocab tables


@pytest.mark.parametrize("vocab", list(V.FAMILIES.values()), ids=lambda v: v.family)
def test_every_control_a_family_supports_is_in_its_table(vocab: V.Vocab) -> None:
    needs = {
        cmds.Identify: vocab.flash,
        cmds.SetMeterRate: vocab.meter_rate,
        cmds.RenameChannel: vocab.chan_name,
        cmds.RenameDevice: vocab.device_name,
        cmds.SetMute: vocab.mute,
        cmds.SetGain: vocab.gain,
        cmds.SetFrequency: vocab.frequency,
        cmds.SetGroupChannel: vocab.group_channel,
    }
    for command in vocab.supports:
        assert needs[command] in vocab.props, (vocab.family, command)
    if vocab.get_all is False:
        for prop in vocab.initial_device_gets + vocab.initial_channel_gets:
            assert prop in vocab.props
    assert vocab.heartbeat[1] in vocab.props


def test_family_tables_are_derived_not_copied() -> None:
    assert "AUDIO_MUTE" in V.ULXD.props
    assert "AUDIO_MUTE" not in V.QLXD.props
    assert cmds.SetMute not in V.QLXD.supports
    assert cmds.Identify not in V.QLXD.supports
    assert V.AXIENT.group_channel == "GROUP_CHANNEL"
    assert "GROUP_CHAN" not in V.AXIENT.props
    assert V.ULXD.group_channel == "GROUP_CHAN"
    assert V.AXIENT.props["CHAN_NAME"].width == 31
    assert V.ULXD.props["CHAN_NAME"].width == 8
    assert V.SLXD.chan_name_set_max == 8
    assert V.AXIENT.chan_name_set_max == 31
    assert cmds.SetMute not in V.SLXD.supports
    assert V.PSM1000.terminator == "\r\n"
    assert V.PSM1000.braces is False


@pytest.mark.parametrize(
    ("vocab", "model", "count"),
    [
        (V.ULXD, "ULXD4", 1),
        (V.ULXD, "ULXD4D", 2),
        (V.ULXD, "ULXD4Q", 4),
        (V.AXIENT, "AD4Q-A", 4),
        (V.AXIENT, "AD4D", 2),
        (V.SLXD, "SLXD4DE", 2),
        (V.SLXD, "SLXD4Q+", 4),
        (V.SLXD, "SLXD4", 1),
        (V.UHFR, "UR4S", 1),
        (V.ULXD, "XYZ", None),
        (V.ULXD, None, None),
    ],
)
def test_channels_for_model(vocab: V.Vocab, model: str | None, count: int | None) -> None:
    assert V.channels_for_model(vocab, model) == count


def test_unknown_family() -> None:
    with pytest.raises(KeyError, match="known"):
        V.for_family("mxw")


def test_a_complete_frame_over_the_cap_is_garbage_too() -> None:
    from micboardd.adapters.shure.codec import Framer, Garbage

    framer = Framer(max_frame=64)
    long_value = b"< REP 1 CHAN_NAME {" + b"x" * 100 + b"} >"
    out = framer.feed(long_value + b"< REP 1 BATT_BARS 004 >")
    assert isinstance(out[0], Garbage) and "longer than 64" in out[0].reason
    assert out[1:] == [b" REP 1 BATT_BARS 004 "]
