"""State of one simulated Shure receiver, in normalized terms, and its realistic seeded initial values.

:class:`SimChannel` and :class:`SimDevice` hold plain attributes (dB, kHz, bool, lock words) that tests
compare with what a client decoded; the ``m_*`` and ``slot_*`` properties are the raw one-shot values
a ``GET`` of a metered or slot property reports. Wire encoding lives in the vocabulary tables.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from typing import Any, Final

from .meters import (
    Levels,
    SentMeter,
    ad_antenna_status,
    ad_level,
    audio_led_bitmap,
    psm_level,
    rf_led_bitmap,
    ulx_antenna,
    ulx_audio,
    ulx_rf,
)
from .models import ModelSpec
from .vocab import Family

SLOTS: Final = 8  # AD transmitter slots per channel (§2.4)
MINUTES_PER_PERCENT: Final = 4.8  # a Shure Li-ion pack lasts about 8 h
FULL_CHARGE: Final = 100.0

# Every transmitter-side attribute; all go back to None (the family's sentinel) when it switches off.
TX_ATTRS: Final = (
    "tx_model",
    "tx_device_id",
    "tx_offset_db",
    "tx_input_pad_db",
    "tx_rf_power",
    "tx_power_mw",
    "tx_muted",
    "tx_lock",
    "tx_button_pressed",
    "tx_power_source",
    "tx_polarity",
    "battery_bars",
    "battery_percent",
    "runtime_minutes",
    "battery_type",
    "battery_health",
    "battery_cycles",
    "battery_temp_c",
)

_SHORT_NAMES: Final = ("Bob", "Ana", "Max", "Kim", "Joe", "Liv", "Sam", "Eva", "Tom", "Ian", "Zoe", "Raj", "Mia")
_LONG_NAMES: Final = (
    "Lead",
    "Lead Vox",
    "Pastor Mike",
    "Keys",
    "Choir L",
    "Choir R",
    "Host",
    "Guest",
    "Sax",
    "Acoustic",
    "Presenter",
    "Panel 1",
    "Panel 2",
    "Lectern",
)


def bars_for(percent: float) -> int:
    """Battery bars a receiver shows for a charge: 1 bar per started 20 %, 0 when empty."""
    return 0 if percent <= 0 else min(5, math.ceil(percent / 20))


@dataclass(eq=False)
class SimDevice:
    """Device-level state."""

    device_id: str
    fw_ver: str
    model_label: str
    rf_band: str
    encryption: str = "OFF"
    audio_summing: str = "OFF"
    frequency_diversity: str = "OFF"
    high_density: bool = False
    flash: bool = False
    quadversity: bool = False
    transmission_mode: str = "STANDARD"
    lock_status: str = "none"


@dataclass(eq=False)
class SimChannel:
    """One receiver channel (1-based ``index``) and its transmitter, in normalized terms."""

    index: int
    name: str
    frequency_khz: int
    group: int | None
    chan: int | None
    gain_db: int
    muted: bool | None
    tx_present: bool
    tx_model: str | None
    battery_bars: int | None
    battery_percent: int | None  # None where the family reports no percentage (SLX-D, UHF-R)
    runtime_minutes: int | None  # None where the family reports no runtime (UHF-R)
    meter_rate_ms: int = 0
    antennas: int = 2  # antennas reported per SAMPLE (4 with AD quadversity)
    flash: bool = False
    encryption_warning: bool | None = False  # ULX ENCRYPTION_WARNING ON / AD ENCRYPTION_STATUS ERROR
    interference: bool | None = False
    unregistered_tx: bool | None = False
    fd_mode: str = "OFF"
    group2: int | None = None
    chan2: int | None = None
    frequency2_khz: int = 0
    interference2: bool | None = False
    audio_out_level: str = "MIC"
    psm_rf_tx_level: str = "50"
    psm_audio_tx_mode: str = "3"
    psm_line_level: str = "1"
    tx_device_id: str | None = None
    tx_offset_db: int | None = None
    tx_input_pad_db: int | None = None
    tx_rf_power: str | None = None
    tx_power_mw: int | None = None
    tx_muted: bool | None = None
    tx_lock: str | None = None  # "none", "power", "menu", "all"
    tx_button_pressed: bool | None = None
    tx_power_source: str | None = None
    tx_polarity: str | None = None
    battery_type: str | None = None
    battery_health: int | None = None
    battery_cycles: int | None = None
    battery_temp_c: int | None = None
    charge: float = FULL_CHARGE  # the true charge behind bars/percent/minutes (kept while switched off)
    last_meter: SentMeter | None = None  # the last SAMPLE (or PSM1000 level REPORT) sent, decoded
    levels: Levels | None = None  # the true levels the next one-shot GET reports
    saved_tx: dict[str, Any] = field(default_factory=dict)  # the transmitter while it is switched off

    # ---------------------------------------------------------------- composite values for the codecs

    @property
    def group_chan(self) -> tuple[int, int] | None:
        return None if self.group is None or self.chan is None else (self.group, self.chan)

    @group_chan.setter
    def group_chan(self, value: tuple[int, int] | None) -> None:
        self.group, self.chan = value if value is not None else (None, None)

    @property
    def group_chan2(self) -> tuple[int, int] | None:
        return None if self.group2 is None or self.chan2 is None else (self.group2, self.chan2)

    # ------------------------------------------------------------------ one-shot metered raw values

    def _levels(self) -> Levels:
        if self.levels is None:
            raise RuntimeError("levels are set when the receiver is built")
        return self.levels

    @property
    def m_ulx_rf(self) -> int:
        return ulx_rf(max(self._levels().rf_dbm))

    @property
    def m_ulx_audio(self) -> int:
        return ulx_audio(self._levels().rms_dbfs)

    @property
    def m_ulx_antenna(self) -> str:
        return ulx_antenna(self._levels())

    @property
    def m_quality(self) -> int | None:
        return self._levels().quality

    @property
    def m_rssi(self) -> list[int]:
        return [ad_level(v) for v in self._levels().rf_dbm[: self.antennas]]

    @property
    def m_rssi_bitmap(self) -> list[int]:
        levels = self._levels()
        return [rf_led_bitmap(v) if levels.present else 0 for v in levels.rf_dbm[: self.antennas]]

    @property
    def m_antenna_status(self) -> str:
        return ad_antenna_status(self._levels(), self.antennas)

    @property
    def m_rms(self) -> int:
        return ad_level(self._levels().rms_dbfs)

    @property
    def m_peak(self) -> int:
        return ad_level(self._levels().peak_dbfs)

    @property
    def m_audio_bitmap(self) -> int:
        return audio_led_bitmap(self._levels())

    @property
    def m_psm_left(self) -> int:
        return psm_level(self._levels().left_dbfs)

    @property
    def m_psm_right(self) -> int:
        return psm_level(self._levels().right_dbfs)

    # ------------------------------------------------- AD slots: slot 1 carries a linked ADX transmitter

    def _adx(self) -> bool:
        model = self.tx_model or self.saved_tx.get("tx_model") or ""
        return str(model).startswith("ADX")

    @property
    def slot_status(self) -> list[str]:
        first = ("LINKED.ACTIVE" if self.tx_present else "LINKED.INACTIVE") if self._adx() else "EMPTY"
        return [first] + ["EMPTY"] * (SLOTS - 1)

    @property
    def slot_tx_model(self) -> list[str | None]:
        return [self.tx_model if self._adx() else None] + [None] * (SLOTS - 1)

    @property
    def slot_batt_bars(self) -> list[int | None]:
        return [self.battery_bars if self._adx() else None] + [None] * (SLOTS - 1)

    @property
    def slot_batt_mins(self) -> list[int | None]:
        return [self.runtime_minutes if self._adx() else None] + [None] * (SLOTS - 1)

    # ------------------------------------------------------------------------------------ battery

    def battery_values(self, family: Family) -> dict[str, Any]:
        """bars/percent/minutes for the current charge, None where ``family`` does not report them."""
        attrs = family.channel_attrs()
        bars = max(bars_for(self.charge), family.min_bars)
        percent = round(self.charge)
        minutes = round(self.charge * MINUTES_PER_PERCENT)
        return {
            "battery_bars": bars if "battery_bars" in attrs else None,
            "battery_percent": percent if "battery_percent" in attrs else None,
            "runtime_minutes": minutes if "runtime_minutes" in attrs else None,
        }


def default_device_id(spec: ModelSpec, seed: int) -> str:
    width = spec.family.device_id_width
    stem = spec.name.rstrip("+")[:5]
    return f"{stem}-{seed + 1:02d}"[:width]


def default_name(family: Family, slot: int, handheld: bool, rng: random.Random) -> str:
    """A realistic channel name that fits the family's width: ``HH01 Bob`` (8) or ``HH01 Lead Vox``."""
    prefix = "HH" if handheld else "BP"
    words = _SHORT_NAMES if family.name_width <= 8 else _LONG_NAMES
    name = f"{prefix}{slot:02d} {rng.choice(words)}"
    if family.key == "psm1000":
        name = f"IEM{slot} {rng.choice(_SHORT_NAMES)}"
    if family.framing.udp or family.key == "psm1000":
        name = name.replace(" ", "_")  # bare strings: a space would split the value into two tokens
    return name[: family.name_width]


def fresh_transmitter(family: Family, model: str, rng: random.Random, name: str) -> dict[str, Any]:
    """A switched-on transmitter's attributes; None where the family has no such property."""
    values: dict[str, Any] = {
        "tx_model": model,
        "tx_device_id": name.split(" ", maxsplit=1)[0] if family.key == "axient" else None,
        "tx_offset_db": 0,
        "tx_input_pad_db": 0,
        "tx_rf_power": "NORMAL",
        "tx_power_mw": 10,
        "tx_muted": False,
        "tx_lock": "none",
        "tx_button_pressed": False,
        "tx_power_source": "BATTERY",
        "tx_polarity": "POSITIVE",
        "battery_type": "LION",
        "battery_health": rng.randint(88, 100),
        "battery_cycles": rng.randint(12, 320),
        "battery_temp_c": rng.randint(22, 31),
    }
    attrs = family.channel_attrs()
    return {k: (v if k in attrs else None) for k, v in values.items()}


def build_state(
    spec: ModelSpec, *, seed: int, device_id: str | None, slot_base: int, quadversity: bool
) -> tuple[SimDevice, list[SimChannel]]:
    """The receiver's deterministic initial state for ``seed``."""
    rng = random.Random(f"shure-sim/{spec.name}/{seed}")
    family = spec.family
    attrs = family.channel_attrs()
    band = spec.band
    device = SimDevice(
        device_id=device_id if device_id is not None else default_device_id(spec, seed),
        fw_ver=spec.fw_ver,
        model_label=spec.model_label or spec.name,
        rf_band=band.name,
        quadversity=quadversity,
        encryption="OFF",
    )
    group = 1 + seed % band.groups
    first_chan = (seed // band.groups * spec.channels) % band.channels_per_group
    channels: list[SimChannel] = []
    for i in range(1, spec.channels + 1):
        chan = (first_chan + i - 1) % band.channels_per_group + 1
        handheld = rng.random() < 0.6
        models = (family.tx_handheld if handheld else family.tx_bodypack) or family.tx_handheld
        name = default_name(family, slot_base + i, handheld, rng)
        present = bool(models) and (i == 1 or rng.random() < 0.85)
        gain = rng.choice((0, 0, 0, 3, 6, -3, 9)) if family.key != "psm1000" else rng.choice((-10, -6, 0))
        ch = SimChannel(
            index=i,
            name=name,
            frequency_khz=band.frequency(group, chan),
            group=group,
            chan=chan,
            gain_db=gain,
            muted=False if "muted" in attrs else None,
            tx_present=False,
            tx_model=None,
            battery_bars=None,
            battery_percent=None,
            runtime_minutes=None,
            antennas=4 if quadversity else spec.antennas,
            charge=rng.uniform(45.0, 100.0),
        )
        if models:
            tx = fresh_transmitter(family, rng.choice(models), rng, name)
            if present:
                ch.tx_present = True
                for key, value in tx.items():
                    setattr(ch, key, value)
                for key, value in ch.battery_values(family).items():
                    setattr(ch, key, value)
            else:
                ch.saved_tx = tx
        channels.append(ch)
    return device, channels
