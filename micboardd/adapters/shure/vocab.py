"""Per-family vocabulary of the Shure command-string protocol, as declarative tables.

Each family's table is built from the one before it (``ULXD`` from ``BASE``, ``QLXD`` from ``ULXD`` …),
the way bellows builds each EZSP version's command table on the last. Nothing here does I/O or parsing:
``codec`` reads these tables. Facts and their sources are in ``reference/shure.md`` (§ numbers below).
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

from ...commands import (
    Command,
    Identify,
    RenameChannel,
    RenameDevice,
    SetFrequency,
    SetGain,
    SetGroupChannel,
    SetMeterRate,
    SetMute,
)


class Decode(enum.Enum):
    """How a property's value text becomes a normalized value (implemented in ``codec``)."""

    TEXT = "text"  # braced or bare string, padding trimmed; "" → None
    FIRMWARE = "firmware"  # text; SLX-D appends "*" when the self-test failed (§1.2)
    FREQUENCY = "frequency"  # 6 (ULX/QLX) or 7 (AD/SLX) digits of kHz → int kHz
    GROUP_CHANNEL = "group_channel"  # "gg,cc" → "gg,cc"; "--,--" → None
    GAIN = "gain"  # raw 000-060 → dB = raw - gain_offset
    ON_OFF = "on_off"  # ON → True, OFF → False, anything else → None
    TX_MODEL = "tx_model"  # UNKN/UNKNOWN → transmitter absent; else present with that model
    BARS = "bars"  # 000-005; 255 → transmitter absent (§2.2, CW feedback.js)
    UHFR_BARS = "uhfr_bars"  # 1-5, "U" → unknown (not "absent": UHF-R semantics UNVERIFIED)
    PERCENT = "percent"  # 000-100; 255 → None
    MINUTES = "minutes"  # 0-65532; 65533 warning, 65534 calculating, 65535 unknown → None
    COUNT = "count"  # 0-65534; 65535 → None
    TEMP_C = "temp_c"  # 255 → None; otherwise raw + temp offset (sign UNVERIFIED, see codec)
    BATTERY_TYPE = "battery_type"  # ALKA/LION/LITH/NIMH …; UNKN/UNKNOWN → None
    WORD = "word"  # an enum word, lower-cased; UNKN/UNKNOWN → None
    TX_MUTE_STATUS = "tx_mute_status"  # ULX TX_MUTE_STATUS: ON = muted, OFF = live
    TX_MUTE_MODE = "tx_mute_mode"  # AD TX_MUTE_MODE_STATUS: ON = live, MUTE = muted (§2.1)
    TX_LOCK = "tx_lock"  # AD TX_LOCK ALL/POWER/MENU/NONE (LOCKED → all)
    POWER_MW = "power_mw"  # AD TX_POWER_LEVEL in mW; 255 → None → "<n>mW"
    INTERFERENCE = "interference"  # NONE → False; CRITICAL/DETECTED → True
    ENCRYPTION_STATUS = "encryption_status"  # AD channel OK/ERROR → "ok"/"error"
    INT = "int"  # a plain number kept for the session (METER_RATE)
    INPUT_DB = "input_db"  # PSM1000 AUDIO_IN_LVL: signed dB -67..0 (CP; wire format UNVERIFIED) else None


class Scope(enum.Enum):
    """Where a decoded value goes."""

    DEVICE = "device"  # a Device field
    CHANNEL = "channel"  # a Channel field
    TX = "tx"  # a Transmitter field of the channel
    SESSION = "session"  # adapter bookkeeping (meter rate, flash, inputs of combined fields)
    METERED = "metered"  # a metered value reported as REP: liveness only, never a state change


@dataclass(frozen=True, slots=True)
class Prop:
    """One wire property: how to decode it and which normalized field it feeds."""

    decode: Decode
    scope: Scope
    field: str = ""  # normalized field (or session key) name
    width: int | None = None  # reported width of padded strings (§1.2), for simulators and checks
    indexed: bool = False  # a sub-index (antenna, slot) follows the property name (§1.2)


class SampleLayout(enum.Enum):
    """Which SAMPLE token layout a family sends (§2.3)."""

    NONE = "none"
    ULX = "ulx"  # ULX-D/QLX-D: nn aaa eee
    AD = "ad"  # Axient Digital: qual bitmap peak rms antStat (bm rssi) per antenna
    SLX = "slx"  # SLX-D: peak rms rssi
    UHFR = "uhfr"  # UHF-R: nn rfA rfB bat audio


class Framing(enum.Enum):
    ANGLE = "angle"  # "< … >" over TCP (ULX/QLX/AD/SLX/PSM1000)
    STAR = "star"  # "* … *" over UDP (UHF-R)


@dataclass(frozen=True, slots=True)
class Vocab:
    """Everything that differs between Shure families, in one table per family."""

    family: str
    props: Mapping[str, Prop]
    framing: Framing = Framing.ANGLE
    terminator: str = ""  # appended to what we send (PSM1000: CRLF, §1.3)
    braces: bool = True  # string values travel in braces (PSM1000/UHF-R: bare)
    sample: SampleLayout = SampleLayout.NONE
    get_all: bool = True  # "< GET 0 ALL >" on connect; otherwise per-property GETs below
    initial_device_gets: tuple[str, ...] = ()
    initial_channel_gets: tuple[str, ...] = ()
    heartbeat: tuple[int | None, str] = (1, "METER_RATE")  # (channel, property) of the cheap liveness GET
    meter_all_channels: bool = True  # "SET 0 METER_RATE" fans out; PSM1000 needs one SET per channel
    # Wire names of the controls (differ per family: GROUP_CHAN vs GROUP_CHANNEL).
    chan_name: str = "CHAN_NAME"
    device_name: str = "DEVICE_ID"
    group_channel: str = "GROUP_CHAN"
    frequency: str = "FREQUENCY"
    gain: str = "AUDIO_GAIN"
    mute: str = "AUDIO_MUTE"
    meter_rate: str = "METER_RATE"
    flash: str = "FLASH"
    chan_name_set_max: int = 8  # what SET accepts (SLX-D reports 31 but takes 8, §1.2)
    device_name_set_max: int = 8
    freq_set_digits: int = 6  # SET FREQUENCY 578350 (§6)
    group_channel_padded: bool = False  # PSM1000 "gg,cc" bare; others "{g,c}"
    gain_offset: int = 18  # dB = raw - 18 (§2.1)
    gain_raw_range: tuple[int, int] = (0, 60)
    identify_device: bool = True
    identify_channel: bool = False
    supports: frozenset[type[Command]] = frozenset()
    channel_counts: Mapping[str, int] = field(default_factory=dict)  # model prefix → channels
    default_channels: int | None = None  # when neither config nor model says (None: learn from replies)
    hint_when_mute: str = "check that the configured family matches the receiver"


def derive(
    base: Vocab, *, add: Mapping[str, Prop] | None = None, drop: tuple[str, ...] = (), **changes: object
) -> Vocab:
    """A new family table: ``base`` with properties added/replaced/dropped and fields changed."""
    props = {k: v for k, v in base.props.items() if k not in drop}
    props.update(add or {})
    return dataclasses.replace(base, props=props, **changes)  # type: ignore[arg-type]


_D, _C, _T, _S, _M = Scope.DEVICE, Scope.CHANNEL, Scope.TX, Scope.SESSION, Scope.METERED

# Properties every 2202 family shares, in the ULX-D spelling (§2.1, §2.4).
BASE: Final = Vocab(
    family="base",
    props={
        "DEVICE_ID": Prop(Decode.TEXT, _D, "name", width=8),
        "MODEL": Prop(Decode.TEXT, _D, "model", width=32),  # RD: ULX/QLX do not answer; harmless if they do
        "FW_VER": Prop(Decode.FIRMWARE, _D, "firmware", width=24),
        "RF_BAND": Prop(Decode.TEXT, _D, "rf_band", width=8),
        "FLASH": Prop(Decode.ON_OFF, _S, "flash"),
        "CHAN_NAME": Prop(Decode.TEXT, _C, "name", width=8),
        "FREQUENCY": Prop(Decode.FREQUENCY, _C, "frequency_khz"),
        "GROUP_CHAN": Prop(Decode.GROUP_CHANNEL, _C, "group_channel", width=5),
        "AUDIO_GAIN": Prop(Decode.GAIN, _C, "gain_db"),
        "METER_RATE": Prop(Decode.INT, _S, "meter_rate_ms"),
    },
)

# ULX-D (ULXD4 / ULXD4D / ULXD4Q), §2.4.
ULXD: Final = derive(
    BASE,
    family="ulxd",
    add={
        "ENCRYPTION": Prop(Decode.WORD, _S, "encryption_mode"),  # OFF/MANUAL/AUTO (QLX: ON/OFF)
        "AUDIO_MUTE": Prop(Decode.ON_OFF, _C, "muted"),
        "ENCRYPTION_WARNING": Prop(Decode.ON_OFF, _S, "encryption_warning"),
        "RF_INT_DET": Prop(Decode.INTERFERENCE, _C, "interference"),
        "TX_TYPE": Prop(Decode.TX_MODEL, _T, "model"),
        "TX_DEVICE_ID": Prop(Decode.TEXT, _T, "device_name", width=8),
        "TX_RF_PWR": Prop(Decode.WORD, _T, "rf_power"),  # LOW/NORMAL/HIGH/UNKN
        "TX_MUTE_STATUS": Prop(Decode.TX_MUTE_STATUS, _T, "muted"),
        "TX_PWR_LOCK": Prop(Decode.ON_OFF, _S, "tx_power_lock"),
        "TX_MENU_LOCK": Prop(Decode.ON_OFF, _S, "tx_menu_lock"),
        "BATT_BARS": Prop(Decode.BARS, _T, "battery_bars"),
        "BATT_CHARGE": Prop(Decode.PERCENT, _T, "battery_percent"),
        "BATT_RUN_TIME": Prop(Decode.MINUTES, _T, "runtime_minutes"),
        "BATT_HEALTH": Prop(Decode.PERCENT, _T, "battery_health_percent"),
        "BATT_CYCLE": Prop(Decode.COUNT, _T, "battery_cycles"),
        "BATT_TEMP_C": Prop(Decode.TEMP_C, _T, "battery_temp_c"),
        "BATT_TYPE": Prop(Decode.BATTERY_TYPE, _T, "battery_type"),
        # CONFLICT (§2.1): MB maps these as REPs, RD says SAMPLE-only; accept them as liveness only.
        "RX_RF_LVL": Prop(Decode.INT, _M),
        "AUDIO_LVL": Prop(Decode.INT, _M),
        "RF_ANTENNA": Prop(Decode.TEXT, _M),
    },
    sample=SampleLayout.ULX,
    supports=frozenset(
        {Identify, SetMeterRate, RenameChannel, RenameDevice, SetMute, SetGain, SetFrequency, SetGroupChannel}
    ),
    channel_counts={"ULXD4": 1, "ULXD4D": 2, "ULXD4Q": 4},
)

# QLX-D (QLXD4): ULX-D without receiver mute, interference detection or identify (CW actions.js).
QLXD: Final = derive(
    ULXD,
    family="qlxd",
    drop=("AUDIO_MUTE", "RF_INT_DET"),
    identify_device=False,
    supports=frozenset({SetMeterRate, RenameChannel, RenameDevice, SetGain, SetFrequency, SetGroupChannel}),
    channel_counts={"QLXD4": 1},
    default_channels=1,
)

# Axient Digital (AD4D / AD4Q), §2.4: TX_ prefixed battery names, 31-wide names, 7-digit frequency.
AXIENT: Final = derive(
    BASE,
    family="axient",
    add={
        "DEVICE_ID": Prop(Decode.TEXT, _D, "name", width=31),
        "CHAN_NAME": Prop(Decode.TEXT, _C, "name", width=31),
        "ENCRYPTION_MODE": Prop(Decode.WORD, _S, "encryption_mode"),
        "GROUP_CHANNEL": Prop(Decode.GROUP_CHANNEL, _C, "group_channel", width=10),
        "AUDIO_MUTE": Prop(Decode.ON_OFF, _C, "muted"),
        "ENCRYPTION_STATUS": Prop(Decode.ENCRYPTION_STATUS, _S, "encryption_status"),
        "INTERFERENCE_STATUS": Prop(Decode.INTERFERENCE, _C, "interference"),
        "TX_MODEL": Prop(Decode.TX_MODEL, _T, "model"),
        "TX_DEVICE_ID": Prop(Decode.TEXT, _T, "device_name", width=31),
        "TX_POWER_LEVEL": Prop(Decode.POWER_MW, _T, "rf_power"),
        "TX_MUTE_MODE_STATUS": Prop(Decode.TX_MUTE_MODE, _T, "muted"),
        "TX_LOCK": Prop(Decode.TX_LOCK, _T, "lock"),
        "TX_BATT_BARS": Prop(Decode.BARS, _T, "battery_bars"),
        "TX_BATT_CHARGE_PERCENT": Prop(Decode.PERCENT, _T, "battery_percent"),
        "TX_BATT_MINS": Prop(Decode.MINUTES, _T, "runtime_minutes"),
        "TX_BATT_HEALTH_PERCENT": Prop(Decode.PERCENT, _T, "battery_health_percent"),
        "TX_BATT_CYCLE_COUNT": Prop(Decode.COUNT, _T, "battery_cycles"),
        "TX_BATT_TEMP_C": Prop(Decode.TEMP_C, _T, "battery_temp_c"),
        "TX_BATT_TYPE": Prop(Decode.BATTERY_TYPE, _T, "battery_type"),
        # Metered values that a GET ALL also reports once (§1.2): liveness only, meters come from SAMPLE.
        "CHAN_QUALITY": Prop(Decode.INT, _M),
        "RSSI": Prop(Decode.INT, _M, indexed=True),
        "RSSI_LED_BITMAP": Prop(Decode.INT, _M, indexed=True),
        "ANTENNA_STATUS": Prop(Decode.TEXT, _M),
        "AUDIO_LEVEL_RMS": Prop(Decode.INT, _M),
        "AUDIO_LEVEL_PEAK": Prop(Decode.INT, _M),
        "AUDIO_LED_BITMAP": Prop(Decode.INT, _M),
    },
    drop=("GROUP_CHAN",),
    sample=SampleLayout.AD,
    group_channel="GROUP_CHANNEL",
    chan_name_set_max=31,
    device_name_set_max=31,
    identify_channel=True,
    supports=ULXD.supports,
    channel_counts={"AD4D": 2, "AD4Q": 4},
)

# SLX-D (SLXD4 / SLXD4D / SLXD4Q+), Shure's own PDF (SX): the complete list, no mute, no battery %.
SLXD: Final = derive(
    BASE,
    family="slxd",
    add={
        "CHAN_NAME": Prop(Decode.TEXT, _C, "name", width=31),
        "GROUP_CHANNEL": Prop(Decode.GROUP_CHANNEL, _C, "group_channel", width=10),
        "TX_MODEL": Prop(Decode.TX_MODEL, _T, "model"),
        "TX_BATT_BARS": Prop(Decode.BARS, _T, "battery_bars"),
        "TX_BATT_MINS": Prop(Decode.MINUTES, _T, "runtime_minutes"),
        "AUDIO_LEVEL_PEAK": Prop(Decode.INT, _M),
        "AUDIO_LEVEL_RMS": Prop(Decode.INT, _M),
        "RSSI": Prop(Decode.INT, _M, indexed=True),
        # Known but not mapped: LOCK_STATUS is ambiguous (receiver panel or transmitter, §2.1);
        # AUDIO_OUT_LVL_SWITCH (MIC/LINE) has no normalized field.
        "LOCK_STATUS": Prop(Decode.WORD, _S, "lock_status"),
        "AUDIO_OUT_LVL_SWITCH": Prop(Decode.WORD, _S, "audio_out_level"),
    },
    drop=("GROUP_CHAN",),
    sample=SampleLayout.SLX,
    group_channel="GROUP_CHANNEL",
    identify_channel=True,
    supports=frozenset({Identify, SetMeterRate, RenameChannel, RenameDevice, SetGain, SetFrequency, SetGroupChannel}),
    channel_counts={"SLXD4": 1, "SLXD4D": 2, "SLXD4Q": 4, "SLXD4Q+": 4},
    hint_when_mute="on SLX-D enable Advanced Settings → Controller Access",
)

# PSM1000 (P10T, 2 channels): REPORT verb, bare strings, CRLF, no GET ALL, no SAMPLE (§1.3, §2.4).
PSM1000: Final = Vocab(
    family="psm1000",
    props={
        "DEVICE_NAME": Prop(Decode.TEXT, _D, "name", width=8),
        "CHAN_NAME": Prop(Decode.TEXT, _C, "name", width=8),
        "FREQUENCY": Prop(Decode.FREQUENCY, _C, "frequency_khz"),
        "GROUP_CHAN": Prop(Decode.GROUP_CHANNEL, _C, "group_channel", width=5),
        "METER_RATE": Prop(Decode.INT, _S, "meter_rate_ms"),
        # Metering arrives as REPORT AUDIO_IN_LVL_L/_R with an undocumented 11-digit scale: liveness only.
        "AUDIO_IN_LVL_L": Prop(Decode.INT, _M),
        "AUDIO_IN_LVL_R": Prop(Decode.INT, _M),
        # The P10T's input level is its channel gain (read-only here: the SET format is not documented).
        "AUDIO_IN_LVL": Prop(Decode.INPUT_DB, _C, "gain_db"),
        # Known but not mapped: RF_MUTE mutes the RF carrier (not an audio mute: never shown as "muted"),
        # RF_TX_LVL is the P10T's own RF power.
        "RF_MUTE": Prop(Decode.WORD, _S, "rf_mute"),
        "RF_TX_LVL": Prop(Decode.WORD, _S, "rf_tx_level"),
        "AUDIO_TX_MODE": Prop(Decode.WORD, _S, "audio_tx_mode"),
        "AUDIO_IN_LINE_LVL": Prop(Decode.WORD, _S, "audio_in_line_level"),
    },
    terminator="\r\n",
    braces=False,
    get_all=False,
    initial_device_gets=("DEVICE_NAME",),
    initial_channel_gets=("CHAN_NAME", "AUDIO_IN_LVL", "FREQUENCY", "GROUP_CHAN", "METER_RATE"),
    heartbeat=(1, "CHAN_NAME"),  # MB polls CHAN_NAME on PSM1000; METER_RATE GET is not attested there
    meter_all_channels=False,
    device_name="DEVICE_NAME",
    group_channel_padded=True,
    identify_device=False,
    supports=frozenset({SetMeterRate, RenameChannel, SetFrequency, SetGroupChannel}),
    channel_counts={"P10T": 2},
    default_channels=2,
)

# UHF-R (UR4S / UR4D) over UDP with "*" delimiters: everything here is UNVERIFIED (§1.3, §2.4).
UHFR: Final = Vocab(
    family="uhfr",
    props={
        "CHAN_NAME": Prop(Decode.TEXT, _C, "name"),
        "FREQUENCY": Prop(Decode.FREQUENCY, _C, "frequency_khz"),
        "GROUP_CHAN": Prop(Decode.GROUP_CHANNEL, _C, "group_channel"),
        "TX_BAT": Prop(Decode.UHFR_BARS, _T, "battery_bars"),
        "BATT_BARS": Prop(Decode.UHFR_BARS, _T, "battery_bars"),  # MB's initial query uses this name
        "TX_TYPE": Prop(Decode.TX_MODEL, _T, "model"),
        "MUTE": Prop(Decode.ON_OFF, _C, "muted"),
        "AUDIO_GAIN": Prop(Decode.WORD, _S, "audio_gain_raw"),  # range unknown: not mapped to dB
    },
    framing=Framing.STAR,
    braces=False,
    sample=SampleLayout.UHFR,
    get_all=False,
    initial_channel_gets=("CHAN_NAME", "TX_BAT", "GROUP_CHAN", "FREQUENCY", "TX_TYPE", "MUTE"),
    heartbeat=(1, "CHAN_NAME"),
    meter_all_channels=False,
    identify_device=False,
    supports=frozenset(),  # no SET vocabulary is attested for UHF-R
    channel_counts={"UR4S": 1, "UR4D": 2},
    default_channels=2,
    hint_when_mute="check the receiver's network settings and that UDP 2202 reaches it",
)

FAMILIES: Final[Mapping[str, Vocab]] = {v.family: v for v in (ULXD, QLXD, AXIENT, SLXD, PSM1000, UHFR)}

MAX_CHANNELS: Final = 8  # no Shure 2202 receiver has more; a higher index in a reply is garbage


def for_family(family: str) -> Vocab:
    """The table of a configured family; KeyError names the Shure families."""
    try:
        return FAMILIES[family]
    except KeyError:
        raise KeyError(f"no Shure vocabulary for family {family!r}; known: {', '.join(FAMILIES)}") from None


def channels_for_model(vocab: Vocab, model: str | None) -> int | None:
    """Channel count from a model string (``AD4Q-A`` → 4, ``SLXD4DE`` → 2): the longest known prefix."""
    if not model:
        return None
    text = model.strip().upper()
    best: tuple[int, int] | None = None
    for prefix, count in vocab.channel_counts.items():
        if text.startswith(prefix) and (best is None or len(prefix) > best[0]):
            best = (len(prefix), count)
    return best[1] if best else None
