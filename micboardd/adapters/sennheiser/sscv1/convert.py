"""SSCv1 value converters: one raw leaf value (with the family's units) → normalized model fields, or None.

A converter returns ``None`` for a value it cannot use (logged as unusable) and a field set to ``None`` for
a sentinel that means "unknown"; the per-family tables in :mod:`.tables` say which converter each address uses.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal


def _num(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        f = float(value)
    except OverflowError:  # an integer beyond any float: no reading
        return None
    return f if math.isfinite(f) else None


def battery_bars(percent: int | None) -> int | None:
    """Percent → 0..5 bars, rounding up so any charge left shows at least one bar (0 % → 0 bars)."""
    if percent is None:
        return None
    return max(0, min(5, math.ceil(percent / 20)))


def _battery_percent(value: Any) -> dict[str, Any]:
    n = _num(value)
    pct = int(n) if n is not None and 0 <= n <= 100 else None  # 255 & co. are sentinels, not charge
    return {"battery_percent": pct, "battery_bars": battery_bars(pct)}


_WORD_RE: Final = re.compile(r"[^a-z0-9]+")
WARNING_WORDS: Final[Mapping[str, str]] = {
    # EW-DX (§2.3) / D6000 (§2.4) / SpeechLine DW (§2.4): vendor word → stable lower-case word
    "LowSignal": "low_signal", "NoLink": "no_link", "RfPeak": "rf_peak", "RFPeak": "rf_peak",
    "AfPeak": "af_peak", "AFPeak": "af_peak", "Aes256Error": "aes256_error", "LowBattery": "low_battery",
    "BadClock": "bad_clock", "NoClock": "no_clock", "Bad Link": "bad_link", "No Link": "no_link",
    "HW Failure": "hw_failure", "Low Bat": "low_battery",
}


def warning_word(text: str) -> str:
    """A vendor warning as a stable lower-case word; unknown ones are slugged (CamelCase → snake_case)."""
    known = WARNING_WORDS.get(text)
    if known:
        return known
    snake = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", text).lower()
    return _WORD_RE.sub("_", snake).strip("_") or "unknown"


@dataclass(frozen=True, slots=True)
class ConvCtx:
    """What a converter needs beyond the value: the unit the family reports battery runtime in."""

    runtime_unit_s: float = 60.0


Converter = Callable[[Any, ConvCtx], Mapping[Any, Any] | None]


def ignore(_value: Any, _ctx: ConvCtx) -> Mapping[str, Any] | None:
    return None


def text(name: str) -> Converter:
    def conv(value: Any, _ctx: ConvCtx) -> Mapping[str, Any] | None:
        if not isinstance(value, str):
            return None
        return {name: value.strip() or None}

    return conv


def flag(name: str) -> Converter:
    def conv(value: Any, _ctx: ConvCtx) -> Mapping[str, Any] | None:
        if isinstance(value, bool):
            return {name: value}
        if isinstance(value, int) and value in (0, 1):
            return {name: bool(value)}
        return None

    return conv


def number(name: str, lo: float, hi: float, cast: Callable[[float], Any] = float) -> Converter:
    def conv(value: Any, _ctx: ConvCtx) -> Mapping[str, Any] | None:
        n = _num(value)
        return {name: cast(n) if n is not None and lo <= n <= hi else None}

    return conv


MAX_FREQUENCY_KHZ: Final = 6_000_000  # no wireless microphone band lies above 6 GHz; more is a bad value


def frequency(value: Any, _ctx: ConvCtx) -> Mapping[str, Any] | None:
    n = _num(value)
    if n is None or n <= 0:
        return {"frequency_khz": None}
    if n < 10_000:  # tolerate MHz (the D6000 unit is only known from a Companion limits table)
        n *= 1000
    khz = round(n)
    return {"frequency_khz": khz if 0 < khz <= MAX_FREQUENCY_KHZ else None}


def runtime(value: Any, ctx: ConvCtx) -> Mapping[str, Any] | None:
    n = _num(value)
    if n is None or n < 0 or n >= 65_535:
        return {"runtime_minutes": None}
    return {"runtime_minutes": int(n * ctx.runtime_unit_s // 60)}


def battery(value: Any, _ctx: ConvCtx) -> Mapping[str, Any] | None:
    return _battery_percent(value)


BATTERY_TYPES: Final[Mapping[Any, str | None]] = {
    # EW-DX / SSCv2 words and ew D1's bat_type index; "Battery" is the BA 70 rechargeable pack
    "Battery": "BA70", "Primary Cell": "AA", "PrimaryCell": "AA", "NoBattery": None, 0: "AA", 1: "BA70",
}


def battery_type(value: Any, _ctx: ConvCtx) -> Mapping[str, Any] | None:
    if isinstance(value, bool) or not isinstance(value, str | int):
        return None
    return {"battery_type": BATTERY_TYPES.get(value, str(value))}


EWD_DEVICE_TYPES: Final[Mapping[int, str]] = {0: "handheld", 1: "bodypack", 2: "tablestand", 3: "boundary"}


def ewd_device_type(value: Any, _ctx: ConvCtx) -> Mapping[str, Any] | None:
    if isinstance(value, bool) or not isinstance(value, int):
        return None
    return {"model": EWD_DEVICE_TYPES.get(value, f"type {value}")}


def warnings(kind: Literal["rx_warnings", "tx_warnings"]) -> Converter:
    def conv(value: Any, _ctx: ConvCtx) -> Mapping[str, Any] | None:
        if isinstance(value, str):
            value = [value] if value else []
        if not isinstance(value, list):
            return None
        return {kind: tuple(dict.fromkeys(warning_word(str(w)) for w in value if isinstance(w, str) and w))}

    return conv


def rssi(value: Any, _ctx: ConvCtx) -> Mapping[str, Any] | None:
    n = _num(value)
    return {"rf_dbm": (n if n is not None and -150 <= n <= 20 else None,)}


def rsqi(value: Any, _ctx: ConvCtx) -> Mapping[str, Any] | None:
    n = _num(value)
    return {"link_quality": round(n) if n is not None and 0 <= n <= 100 else None}


DIVERSITY: Final[Mapping[int, str | None]] = {0: None, 1: "A", 2: "B"}


def divi(value: Any, _ctx: ConvCtx) -> Mapping[str, Any] | None:
    if isinstance(value, bool) or not isinstance(value, int):
        return None
    return {"active_antenna": DIVERSITY.get(value)}


def af(value: Any, _ctx: ConvCtx) -> Mapping[str, Any] | None:
    n = _num(value)
    # UNVERIFIED whether /m/rxN/af is peak or RMS; a receiver's front-panel meter is a peak meter.
    return {"audio_peak_dbfs": n if n is not None and -200 <= n <= 20 else None}


def d6000_type(value: Any, _ctx: ConvCtx) -> Mapping[str, Any] | None:
    if not isinstance(value, str):
        return None
    return {"model": value.strip() or None}


def d6000_battery(value: Any, ctx: ConvCtx) -> Mapping[str, Any] | None:
    """``[percent, time]``; an empty array means no transmitter (§2.4)."""
    if not isinstance(value, list):
        return None
    if not value:
        return {"present": False}
    out = dict(_battery_percent(value[0]))
    if len(value) > 1:
        out.update(runtime(value[1], ctx) or {})
    return out


MM_FIELDS: Final = ("rf1", "rf1peak", "rf2", "rf2peak", "div1", "div2", "lqi", "af", "afpeak")


def d6000_mm(value: Any, _ctx: ConvCtx) -> Mapping[Any, Any] | None:
    """``/mm``: per channel 9 raw bytes → per channel meter fields (conversions from the D6000 module)."""
    rows: list[tuple[int, Any]] = []
    if isinstance(value, list):
        rows = list(enumerate(value, start=1))
    elif isinstance(value, dict):  # tolerated: {"ch1": [...]} / {"rx1": [...]}
        for key, row in value.items():
            m = re.fullmatch(r"(?:ch|rx)(\d)", str(key))
            if m:
                rows.append((int(m.group(1)), row))
    out: dict[int, dict[str, Any]] = {}
    for ch, row in rows:
        if not isinstance(row, list) or len(row) < len(MM_FIELDS):
            continue
        raw = dict(zip(MM_FIELDS, (_num(v) for v in row), strict=False))

        def dbm(v: float | None) -> float | None:
            return (v - 255) / 2 if v is not None else None

        div1, div2 = raw["div1"], raw["div2"]
        antenna = "AB" if div1 and div2 else "A" if div1 else "B" if div2 else None
        lqi, af, afpeak = raw["lqi"], raw["af"], raw["afpeak"]
        out[ch] = {
            "rf_dbm": (dbm(raw["rf1"]), dbm(raw["rf2"])),
            "active_antenna": antenna,
            # not the module's precedence bug; a raw value outside the byte range is no reading
            "link_quality": round(lqi / 255 * 100) if lqi is not None and 0 <= lqi <= 255 else None,
            "audio_rms_dbfs": (af + 1) / 2 - 128 if af is not None else None,
            "audio_peak_dbfs": (afpeak + 1) / 2 - 128 if afpeak is not None else None,
        }
    return out
