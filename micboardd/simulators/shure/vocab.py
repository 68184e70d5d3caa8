"""Per-family vocabularies of the simulated Shure receivers, as declarative tables.

One :class:`Family` per protocol family: how messages are framed, which device- and channel-level
properties exist (with the family's own names: ``BATT_BARS`` vs ``TX_BATT_BARS``, ``TX_TYPE`` vs
``TX_MODEL`` …), how each value is encoded, and what a SET of it does. A property not in the table
does not exist on that family: the simulator stays silent about it, exactly as the devices do.
Source: ``reference/shure.md`` §1-§2 (CW ``internalAPI.js`` comments for widths and ranges, the SLX-D
PDF via SX, the PSM1000 page via CP, MB/S6 for UHF-R).
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Final

from .values import Choice, Codec, Flag, GroupChan, LockPart, Mapped, Num, TempF, Text


class SetKind(enum.Enum):
    """What a SET of a property does beyond storing the value (linked REPs, timers, metering)."""

    VALUE = "value"  # store and echo
    NAME = "name"  # a Text value with the family's SET length limit
    GAIN = "gain"  # absolute, or INC n / DEC n reported as the absolute result
    MUTE = "mute"  # ON/OFF/TOGGLE
    FREQUENCY = "frequency"  # in band and on the tuning step; reports group/channel --,-- first
    GROUP = "group"  # group/channel from the band plan; reports FREQUENCY first
    METER = "meter"  # 0 stops, 100..65535 ms, below 100 is an error
    FLASH = "flash"  # ON reverts to OFF by itself


class Sub(enum.Enum):
    """A further index written after the property name (``RSSI 2``, ``SLOT_STATUS 8``)."""

    ANTENNA = "antenna"
    SLOT = "slot"


class SampleLayout(enum.Enum):
    """Which metering format a family speaks (§2.3)."""

    ULX = "ulx"  # < SAMPLE ch ALL nn aaa eee >
    AXIENT = "axient"  # < SAMPLE ch ALL qual audBitmap peak rms antStat (bm rssi) x N >
    SLX = "slx"  # < SAMPLE ch ALL peak rms rssi >
    UHFR = "uhfr"  # * SAMPLE ch ALL nn aaa bbb d eee *
    PSM = "psm"  # < REPORT ch AUDIO_IN_LVL_L v11 >< REPORT ch AUDIO_IN_LVL_R v11 >


@dataclass(frozen=True, slots=True)
class Prop:
    """One property: wire name, the state attribute it shows, its codec and what a SET does."""

    name: str
    attr: str
    codec: Codec
    set: SetKind | None = None  # None: read-only (a SET gets REP ERR)
    tx: bool = False  # transmitter side: reported back to its sentinel when the transmitter goes off
    sub: Sub | None = None
    metered: bool = False  # a one-shot meter value (GET and GET ALL only; SAMPLE carries it live)


@dataclass(frozen=True, slots=True)
class Framing:
    """How one family frames messages on the wire (§1.2, §1.3)."""

    open: str = "<"
    close: str = ">"
    terminator: str = ""  # the devices send none; PSM1000 ends every message with CRLF
    reply: str = "REP"  # PSM1000 and UHF-R answer REPORT
    udp: bool = False  # UHF-R


@dataclass(frozen=True, slots=True)
class Family:
    """A protocol family's whole vocabulary."""

    key: str  # "ulxd", "qlxd", "slxd", "axient", "psm1000", "uhfr"
    framing: Framing
    device: tuple[Prop, ...]
    channel: tuple[Prop, ...]
    layout: SampleLayout
    tx_handheld: tuple[str, ...] = ()  # transmitter models used for the default state
    tx_bodypack: tuple[str, ...] = ()
    has_get_all: bool = True
    name_width: int = 8  # the longest default channel name
    device_id_width: int = 8
    min_bars: int = 0  # UHF-R reports 1..5 or U: no zero
    _device_by_name: dict[str, Prop] = field(init=False, repr=False, compare=False)
    _channel_by_name: dict[str, Prop] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_device_by_name", {p.name: p for p in self.device})
        object.__setattr__(self, "_channel_by_name", {p.name: p for p in self.channel})

    def device_prop(self, name: str) -> Prop | None:
        return self._device_by_name.get(name)

    def channel_prop(self, name: str) -> Prop | None:
        return self._channel_by_name.get(name)

    def channel_attrs(self) -> frozenset[str]:
        return frozenset(p.attr for p in self.channel)

    def without(self, names: Iterable[str]) -> Family:
        """This vocabulary minus some properties (a single-channel model has no summing mode)."""
        drop = frozenset(names)
        if not drop:
            return self
        return Family(
            key=self.key,
            framing=self.framing,
            device=tuple(p for p in self.device if p.name not in drop),
            channel=tuple(p for p in self.channel if p.name not in drop),
            layout=self.layout,
            tx_handheld=self.tx_handheld,
            tx_bodypack=self.tx_bodypack,
            has_get_all=self.has_get_all,
            name_width=self.name_width,
            device_id_width=self.device_id_width,
            min_bars=self.min_bars,
        )


# ------------------------------------------------------------------------------------- shared parts

BARS: Final = Num(3, 0, 5, unknown=255)
PERCENT: Final = Num(3, 0, 100, unknown=255)
MINUTES: Final = Num(5, 0, 65532, unknown=65535)  # 65534 calculating, 65533 comm warning (§2.2)
CYCLES: Final = Num(5, 0, 65534, unknown=65535)
TEMP_C: Final = Num(3, 0, 254, unknown=255, offset=40)  # +40 offset; sign UNVERIFIED (§2.2)
GAIN: Final = Num(3, 0, 60, offset=18)  # dB = raw - 18 (§2.1)
METER_RATE: Final = Num(5, 0, 65535)
LEVEL3: Final = Num(3, 0, 255)  # one-shot metered values, already raw
ON_OFF: Final = Flag()

_ULX_QLX_TX: Final = (
    Prop("TX_DEVICE_ID", "tx_device_id", Text(8), tx=True),
    Prop("TX_OFFSET", "tx_offset_db", Num(3, 0, 21, unknown=255), tx=True),
    Prop("TX_RF_PWR", "tx_rf_power", Choice(("LOW", "NORMAL", "HIGH"), "UNKN"), tx=True),
    Prop("TX_MUTE_STATUS", "tx_muted", Flag(unknown="UNKN"), tx=True),
    Prop("TX_PWR_LOCK", "tx_lock", LockPart("power"), tx=True),
    Prop("TX_MENU_LOCK", "tx_lock", LockPart("menu"), tx=True),
    Prop("TX_MUTE_BUTTON_STATUS", "tx_button_pressed", Flag("PRESSED", "RELEASED", "UNKN"), tx=True),
    Prop("TX_POWER_SOURCE", "tx_power_source", Choice(("BATTERY", "EXTERNAL"), "UNKN"), tx=True),
    Prop("BATT_BARS", "battery_bars", BARS, tx=True),
    Prop("BATT_CHARGE", "battery_percent", PERCENT, tx=True),
    Prop("BATT_CYCLE", "battery_cycles", CYCLES, tx=True),
    Prop("BATT_RUN_TIME", "runtime_minutes", MINUTES, tx=True),
    Prop("BATT_TEMP_F", "battery_temp_c", TempF(), tx=True),
    Prop("BATT_TEMP_C", "battery_temp_c", TEMP_C, tx=True),
    Prop("BATT_TYPE", "battery_type", Choice(("ALKA", "LION", "LITH", "NIMH"), "UNKN"), tx=True),
    Prop("BATT_HEALTH", "battery_health", PERCENT, tx=True),
)

# CONFLICT (§2.1): MB maps RX_RF_LVL / AUDIO_LVL / RF_ANTENNA on ULX-D/QLX-D, RD says they are SAMPLE
# fields only. The simulator includes them in GET ALL and answers GET for them unless the receiver is
# built with ulx_meter_props=False; clients must not rely on them.
ULX_METERED: Final = frozenset({"RX_RF_LVL", "AUDIO_LVL", "RF_ANTENNA"})


def _ulx_like(key: str, *, ulx: bool) -> Family:
    unkn = "UNKN"
    device: list[Prop] = [
        Prop("FW_VER", "fw_ver", Text(18)),
        Prop("DEVICE_ID", "device_id", Text(8, set_max=8), SetKind.NAME),
    ]
    if ulx:
        device += [
            Prop("ENCRYPTION", "encryption", Choice(("OFF", "MANUAL", "AUTO"))),
            Prop("AUDIO_SUMMING_MODE", "audio_summing", Choice(("OFF", "1+2", "3+4", "1+2/3+4", "1+2+3+4"))),
            Prop("FREQUENCY_DIVERSITY_MODE", "frequency_diversity", Choice(("OFF", "1+2", "3+4", "1+2/3+4"))),
            Prop("HIGH_DENSITY", "high_density", ON_OFF),
            Prop("FLASH", "flash", ON_OFF, SetKind.FLASH),
        ]
    else:
        device.append(Prop("ENCRYPTION", "encryption", Choice(("ON", "OFF"))))
    channel: list[Prop] = [
        Prop("CHAN_NAME", "name", Text(8, set_max=8), SetKind.NAME),
        Prop("METER_RATE", "meter_rate_ms", METER_RATE, SetKind.METER),
        Prop("AUDIO_GAIN", "gain_db", GAIN, SetKind.GAIN),
    ]
    if ulx:
        channel.append(Prop("AUDIO_MUTE", "muted", Flag(toggle=True), SetKind.MUTE))
    channel += [
        Prop("GROUP_CHAN", "group_chan", GroupChan(width=5), SetKind.GROUP),
        Prop("FREQUENCY", "frequency_khz", Num(6, 0, 999999), SetKind.FREQUENCY),
        Prop("ENCRYPTION_WARNING", "encryption_warning", ON_OFF),
    ]
    if ulx:
        channel.append(Prop("RF_INT_DET", "interference", Flag("CRITICAL", "NONE")))
    channel += [
        Prop("RX_RF_LVL", "m_ulx_rf", LEVEL3, metered=True),
        Prop("AUDIO_LVL", "m_ulx_audio", LEVEL3, metered=True),
        Prop("RF_ANTENNA", "m_ulx_antenna", Choice(("AX", "XB", "XX")), metered=True),
        Prop("TX_TYPE", "tx_model", Choice(("ULXD1", "ULXD2", "ULXD6", "ULXD8", "QLXD1", "QLXD2"), unkn), tx=True),
        *_ULX_QLX_TX,
    ]
    prefix = "ULXD" if ulx else "QLXD"
    return Family(
        key=key,
        framing=Framing(),
        device=tuple(device),
        channel=tuple(channel),
        layout=SampleLayout.ULX,
        tx_handheld=(f"{prefix}2",),
        tx_bodypack=(f"{prefix}1",),
        name_width=8,
        device_id_width=8,
    )


ULXD: Final = _ulx_like("ulxd", ulx=True)
QLXD: Final = _ulx_like("qlxd", ulx=False)

_AD_TX_MODELS: Final = ("AD1", "AD2", "ADX1", "ADX1M", "ADX2", "ADX2FD")
_SLOT_STATUS: Final = Choice(("EMPTY", "STANDARD", "LINKED.INACTIVE", "LINKED.ACTIVE"))

AXIENT: Final = Family(
    key="axient",
    framing=Framing(),
    device=(
        Prop("FW_VER", "fw_ver", Text(24)),
        Prop("DEVICE_ID", "device_id", Text(31, set_max=31), SetKind.NAME),
        Prop("ENCRYPTION_MODE", "encryption", Choice(("OFF", "ON"))),
        Prop("MODEL", "model_label", Text(32)),
        Prop("QUADVERSITY_MODE", "quadversity", ON_OFF),
        Prop("RF_BAND", "rf_band", Text(8)),
        Prop("TRANSMISSION_MODE", "transmission_mode", Choice(("STANDARD", "HIGH_DENSITY"))),
        Prop("FLASH", "flash", ON_OFF, SetKind.FLASH),
    ),
    channel=(
        Prop("CHAN_NAME", "name", Text(31, set_max=31), SetKind.NAME),
        Prop("METER_RATE", "meter_rate_ms", METER_RATE, SetKind.METER),
        Prop("AUDIO_GAIN", "gain_db", GAIN, SetKind.GAIN),
        Prop("AUDIO_MUTE", "muted", Flag(toggle=True), SetKind.MUTE),
        Prop("GROUP_CHANNEL", "group_chan", GroupChan(width=10), SetKind.GROUP),
        Prop("FREQUENCY", "frequency_khz", Num(7, 0, 9999999), SetKind.FREQUENCY),
        Prop("FLASH", "flash", ON_OFF, SetKind.FLASH),
        Prop("ENCRYPTION_STATUS", "encryption_warning", Flag("ERROR", "OK")),
        Prop("INTERFERENCE_STATUS", "interference", Flag("DETECTED", "NONE")),
        Prop("UNREGISTERED_TX_STATUS", "unregistered_tx", Flag("ERROR", "OK")),
        Prop("FD_MODE", "fd_mode", Choice(("OFF", "FD-C", "FD-S"))),
        Prop("GROUP_CHANNEL2", "group_chan2", GroupChan(width=10)),
        Prop("FREQUENCY2", "frequency2_khz", Num(7, 0, 9999999)),
        Prop("INTERFERENCE_STATUS2", "interference2", Flag("DETECTED", "NONE")),
        Prop("CHAN_QUALITY", "m_quality", Num(3, 0, 5, unknown=255), metered=True),
        Prop("RSSI", "m_rssi", LEVEL3, sub=Sub.ANTENNA, metered=True),
        Prop("RSSI_LED_BITMAP", "m_rssi_bitmap", LEVEL3, sub=Sub.ANTENNA, metered=True),
        Prop("ANTENNA_STATUS", "m_antenna_status", Text(None, braces=False), metered=True),
        Prop("AUDIO_LEVEL_RMS", "m_rms", LEVEL3, metered=True),
        Prop("AUDIO_LEVEL_PEAK", "m_peak", LEVEL3, metered=True),
        Prop("AUDIO_LED_BITMAP", "m_audio_bitmap", LEVEL3, metered=True),
        Prop("TX_MODEL", "tx_model", Choice(_AD_TX_MODELS, "UNKNOWN"), tx=True),
        Prop("TX_DEVICE_ID", "tx_device_id", Text(31), tx=True),
        Prop("TX_OFFSET", "tx_offset_db", Num(3, 0, 32, unknown=255, offset=12), tx=True),
        Prop("TX_INPUT_PAD", "tx_input_pad_db", Num(3, 0, 12, unknown=255, offset=12), tx=True),
        Prop("TX_POWER_LEVEL", "tx_power_mw", Num(3, 0, 50, unknown=255), tx=True),
        Prop("TX_MUTE_MODE_STATUS", "tx_muted", Flag("MUTE", "ON", "UNKNOWN"), tx=True),
        Prop("TX_POLARITY", "tx_polarity", Choice(("POSITIVE", "NEGATIVE"), "UNKNOWN"), tx=True),
        Prop(
            "TX_LOCK",
            "tx_lock",
            Mapped({"none": "NONE", "power": "POWER", "menu": "MENU", "all": "ALL"}, "UNKNOWN"),
            tx=True,
        ),
        Prop("TX_TALK_SWITCH", "tx_button_pressed", Flag("ON", "OFF", "UNKNOWN"), tx=True),
        Prop("TX_BATT_BARS", "battery_bars", BARS, tx=True),
        Prop("TX_BATT_CHARGE_PERCENT", "battery_percent", PERCENT, tx=True),
        Prop("TX_BATT_CYCLE_COUNT", "battery_cycles", CYCLES, tx=True),
        Prop("TX_BATT_HEALTH_PERCENT", "battery_health", PERCENT, tx=True),
        Prop("TX_BATT_MINS", "runtime_minutes", MINUTES, tx=True),
        Prop("TX_BATT_TEMP_F", "battery_temp_c", TempF(), tx=True),
        Prop("TX_BATT_TEMP_C", "battery_temp_c", TEMP_C, tx=True),
        Prop("TX_BATT_TYPE", "battery_type", Choice(("ALKA", "LION", "LITH", "NIMH"), "UNKN"), tx=True),
        Prop("SLOT_STATUS", "slot_status", _SLOT_STATUS, tx=True, sub=Sub.SLOT),
        Prop("SLOT_TX_MODEL", "slot_tx_model", Choice(_AD_TX_MODELS, "UNKNOWN"), tx=True, sub=Sub.SLOT),
        Prop("SLOT_BATT_BARS", "slot_batt_bars", BARS, tx=True, sub=Sub.SLOT),
        Prop("SLOT_BATT_MINS", "slot_batt_mins", MINUTES, tx=True, sub=Sub.SLOT),
    ),
    layout=SampleLayout.AXIENT,
    tx_handheld=("AD2", "ADX2"),
    tx_bodypack=("AD1", "ADX1"),
    name_width=31,
    device_id_width=31,
)

SLXD: Final = Family(
    key="slxd",
    framing=Framing(),
    device=(
        Prop("FW_VER", "fw_ver", Text(24)),
        Prop("DEVICE_ID", "device_id", Text(8, set_max=8), SetKind.NAME),
        Prop("MODEL", "model_label", Text(32)),
        Prop("RF_BAND", "rf_band", Text(8)),
        # SX p.5 calls it the transmitter lock, pyslxd the front-panel lock (ambiguous, §2.1).
        Prop("LOCK_STATUS", "lock_status", Mapped({"none": "OFF", "menu": "MENU", "all": "ALL"})),
        Prop("FLASH", "flash", ON_OFF, SetKind.FLASH),
    ),
    channel=(
        Prop("CHAN_NAME", "name", Text(31, set_max=8), SetKind.NAME),  # reports 31, accepts ≤ 8 (SX p.6)
        Prop("METER_RATE", "meter_rate_ms", METER_RATE, SetKind.METER),
        Prop("AUDIO_GAIN", "gain_db", GAIN, SetKind.GAIN),
        Prop("AUDIO_OUT_LVL_SWITCH", "audio_out_level", Choice(("MIC", "LINE")), SetKind.VALUE),
        Prop("GROUP_CHANNEL", "group_chan", GroupChan(width=10, zero_pad=False), SetKind.GROUP),
        Prop("FREQUENCY", "frequency_khz", Num(7, 0, 9999999), SetKind.FREQUENCY),
        Prop("FLASH", "flash", ON_OFF, SetKind.FLASH),
        Prop("AUDIO_LEVEL_PEAK", "m_peak", LEVEL3, metered=True),
        Prop("AUDIO_LEVEL_RMS", "m_rms", LEVEL3, metered=True),
        Prop("RSSI", "m_rssi", LEVEL3, sub=Sub.ANTENNA, metered=True),
        Prop("TX_MODEL", "tx_model", Choice(("SLXD1", "SLXD2"), "UNKNOWN"), tx=True),
        Prop("TX_BATT_BARS", "battery_bars", BARS, tx=True),
        Prop("TX_BATT_MINS", "runtime_minutes", MINUTES, tx=True),
    ),
    layout=SampleLayout.SLX,
    tx_handheld=("SLXD2",),
    tx_bodypack=("SLXD1",),
    name_width=31,
    device_id_width=8,
)

# UHF-R: UNVERIFIED throughout (§1.3, §2.4): UDP, `*` delimiters, REPORT replies, bare values.
UHFR: Final = Family(
    key="uhfr",
    framing=Framing(open="*", close="*", reply="REPORT", udp=True),
    device=(),
    channel=(
        Prop("CHAN_NAME", "name", Text(None, set_max=8, braces=False), SetKind.NAME),
        Prop("AUDIO_GAIN", "gain_db", Num(3, 0, 40, scale=-1), SetKind.GAIN),  # S6: dB = -raw (UNVERIFIED)
        Prop("MUTE", "muted", Flag(), SetKind.MUTE),
        Prop("GROUP_CHAN", "group_chan", GroupChan(braces=False, sep=" "), SetKind.GROUP),
        Prop("FREQUENCY", "frequency_khz", Num(6, 0, 999999), SetKind.FREQUENCY),
        Prop("TX_TYPE", "tx_model", Choice(("UR1", "UR1M", "UR1H", "UR2"), "UNKN"), tx=True),
        Prop("TX_BAT", "battery_bars", Num(None, 1, 5, unknown="U"), tx=True),
    ),
    layout=SampleLayout.UHFR,
    tx_handheld=("UR2",),
    tx_bodypack=("UR1",),
    has_get_all=False,
    name_width=8,
    device_id_width=8,
    min_bars=1,
)

# PSM1000 P10T (§1.3, §2.4): CRLF after every message, REPORT, bare strings, no GET ALL and no SAMPLE.
PSM1000: Final = Family(
    key="psm1000",
    framing=Framing(terminator="\r\n", reply="REPORT"),
    device=(Prop("DEVICE_NAME", "device_id", Text(None, set_max=8, braces=False), SetKind.NAME),),
    channel=(
        Prop("CHAN_NAME", "name", Text(None, set_max=8, braces=False), SetKind.NAME),
        Prop("AUDIO_IN_LVL", "gain_db", Num(None, -67, 0), SetKind.GAIN),
        Prop("GROUP_CHAN", "group_chan", GroupChan(braces=False), SetKind.GROUP),
        Prop("FREQUENCY", "frequency_khz", Num(6, 0, 999999), SetKind.FREQUENCY),
        Prop("RF_TX_LVL", "psm_rf_tx_level", Choice(("10", "50", "100")), SetKind.VALUE),
        Prop("RF_MUTE", "muted", Flag("1", "0"), SetKind.MUTE),
        Prop("AUDIO_TX_MODE", "psm_audio_tx_mode", Choice(("1", "2", "3")), SetKind.VALUE),
        Prop("AUDIO_IN_LINE_LVL", "psm_line_level", Choice(("0", "1")), SetKind.VALUE),
        Prop("METER_RATE", "meter_rate_ms", METER_RATE, SetKind.METER),  # 5 digits as MB sends (UNVERIFIED)
        Prop("AUDIO_IN_LVL_L", "m_psm_left", Num(11, 0, 99999999999), metered=True),
        Prop("AUDIO_IN_LVL_R", "m_psm_right", Num(11, 0, 99999999999), metered=True),
    ),
    layout=SampleLayout.PSM,
    has_get_all=False,
    name_width=8,
    device_id_width=8,
)

FAMILIES: Final[dict[str, Family]] = {f.key: f for f in (ULXD, QLXD, SLXD, AXIENT, UHFR, PSM1000)}
