"""Decodes one SSCv2 resource's JSON into normalized model units, I/O-free.

dBm, dBFS, kHz, minutes, percent; sentinels and "no transmitter" become ``None``. The EW-DX
vocabularies (products, transmitter types, battery types, warnings) are tables, not if-chains.
Protocol facts: reference/sennheiser-and-others.md §1.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from .resources import Res, classify


class ResourceError(ValueError):
    """A known resource whose JSON has the wrong shape; the message names what was wrong."""



# --- vocabularies (tables, not if-chains)

PRODUCTS: Final[Mapping[str, tuple[str, int]]] = {
    # identity.product → (model as the front panel/ordering name says it, channel count)
    "EWDX2CHS": ("EW-DX EM2", 2),
    "EWDX2CHDS": ("EW-DX EM2 Dante", 2),
    "EWDX4CHDS": ("EW-DX EM4 Dante", 4),
}

TX_MODELS: Final[Mapping[str, str]] = {
    "EW_D_SKP": "EW-D SKP",
    "EW_D_SK": "EW-D SK",
    "EW_D_SKM_S": "EW-D SKM-S",
    "EW_DX_SK": "EW-DX SK",
    "EW_DX_SK_3_PIN": "EW-DX SK 3-PIN",
    "EW_DX_SKM": "EW-DX SKM",
    "EW_DX_SKM_S": "EW-DX SKM-S",
    "EW_DX_TS_3_PIN": "EW-DX TS 3-PIN",
    "EW_DX_TS_5_PIN": "EW-DX TS 5-PIN",
}

# battery.type: "Battery" is the BA 70 rechargeable pack, "PrimaryCell" AA cells (SSCv1 spells it
# "Primary Cell"); "NoBattery" means unknown, not a value.
BATTERY_TYPES: Final[Mapping[str, str | None]] = {
    "Battery": "BA70",
    "PrimaryCell": "PRIMARY",
    "Primary Cell": "PRIMARY",
    "NoBattery": None,
}

WARNINGS: Final[Mapping[str, str]] = {
    # channel warnings
    "Aes256Error": "encryption_error",
    "LowSignal": "low_signal",
    "NoLink": "no_link",
    "RfPeak": "rf_peak",
    "AfPeak": "af_peak",
    # transmitter warnings
    "LowBattery": "low_battery",
}

DIVERSITY: Final[Mapping[int, str | None]] = {0: None, 1: "A", 2: "B"}  # AI4AV-EWDX / SSCv1 docs

RSSI_RANGE: Final = (-107.0, 0.0)  # dBm, OAS
LEVEL_RANGE: Final = (-138.5, 0.0)  # dBFS, OAS
MAX_FREQUENCY_KHZ: Final = 6_000_000  # no wireless microphone band lies above 6 GHz; more is a bad value


def warning_word(raw: str) -> str:
    """A stable lower-case word for a device warning; unknown ones become snake_case, never dropped."""
    known = WARNINGS.get(raw)
    if known:
        return known
    word = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", raw.strip())
    word = re.sub(r"[^a-z0-9_]+", "_", word.lower()).strip("_")
    return word or "unknown"


def battery_bars(percent: int | None) -> int | None:
    """Five-bar view of a battery gauge (the model's bars), derived: 0 % → 0, 1-20 % → 1 … 81-100 % → 5."""
    if percent is None:
        return None
    return min(5, math.ceil(percent / 20)) if percent > 0 else 0


# --- decoded form


@dataclass(frozen=True, slots=True)
class Decoded:
    """What one resource says, in normalized units; empty mappings mean "nothing to set"."""

    res: Res
    index: int | None = None  # 1-based channel, None for device resources
    device: Mapping[str, Any] = field(default_factory=dict)
    channel: Mapping[str, Any] = field(default_factory=dict)
    tx: Mapping[str, Any] = field(default_factory=dict)
    tx_absent: bool = False  # the item is gone (null notification): no transmitter linked
    meters: Mapping[str, Any] = field(default_factory=dict)
    warnings: tuple[str, ...] | None = None  # for *_WARNINGS resources
    extra: Mapping[str, Any] = field(default_factory=dict)  # state text, rf ranges, linked channel list


def _obj(value: Any, what: str) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        raise ResourceError(f"{what} must be a JSON object, got {type(value).__name__}")
    return value


def _num(value: Any, lo: float | None = None, hi: float | None = None) -> float | None:
    """A finite number inside [lo, hi], else None (out-of-range values are sentinels, not readings)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        v = float(value)
    except OverflowError:  # a JSON integer beyond any float: no reading
        return None
    if not math.isfinite(v) or (lo is not None and v < lo) or (hi is not None and v > hi):
        return None
    return v


def _int(value: Any, lo: float | None = None, hi: float | None = None) -> int | None:
    v = _num(value, lo, hi)
    return round(v) if v is not None else None


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _bool(value: Any) -> bool | None:
    return value if isinstance(value, bool) else None


def _value_field(value: Any, what: str) -> Any:
    return _obj(value, what).get("value")


def _warnings(value: Any, what: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(w, str) for w in value):
        raise ResourceError(f"{what} must be a JSON array of strings")
    seen: dict[str, None] = {}
    for w in value:
        seen.setdefault(warning_word(w), None)
    return tuple(seen)


def _set(out: dict[str, Any], key: str, present: bool, value: Any) -> None:
    """Only fields present in the JSON are set: notifications may be partial objects (reference §1.4)."""
    if present:
        out[key] = value


def _d_identity(v: Any, i: int | None) -> Decoded:
    o = _obj(v, "identity")
    dev: dict[str, Any] = {}
    product = _str(o.get("product"))
    if product:
        model, count = PRODUCTS.get(product, (product, 0))
        dev["model"] = model
        if count:
            dev["channel_count"] = count
    serial = _str(o.get("serial"))
    if serial:
        dev["serial"] = serial
    return Decoded(Res.IDENTITY, device=dev, extra={"product": product})


def _d_site(v: Any, i: int | None) -> Decoded:
    o = _obj(v, "site")
    name = _str(o.get("deviceName"))
    return Decoded(Res.SITE, extra={"device_name": name or None, "location": _str(o.get("location"))})


def _d_state(v: Any, i: int | None) -> Decoded:
    o = _obj(v, "device state")
    state = _str(o.get("state"))
    raw = o.get("warnings", [])
    warnings = _warnings(raw, "device warnings") if raw is not None else ()
    return Decoded(Res.STATE, warnings=warnings, extra={"state": state})


def _d_identification(v: Any, i: int | None) -> Decoded:
    return Decoded(Res.IDENTIFICATION, extra={"visual": _bool(_obj(v, "identification").get("visual"))})


def _d_firmware(v: Any, i: int | None) -> Decoded:
    o = _obj(v, "firmware state")
    version = _str(o.get("deviceVersion"))
    return Decoded(Res.FIRMWARE, device={"firmware": version} if version else {}, extra={"state": o.get("state")})


def _d_version(v: Any, i: int | None) -> Decoded:
    o = _obj(v, "ssc version")
    return Decoded(Res.VERSION, extra={"protocol": _str(o.get("protocol")), "schema": _str(o.get("schema"))})


def _d_rf(v: Any, i: int | None) -> Decoded:
    o = _obj(v, "rf")
    ranges: list[tuple[int, int, int]] = []
    raw = o.get("ranges", [])
    if isinstance(raw, list):
        for r in raw:
            if not isinstance(r, dict):
                continue
            start, end = _int(r.get("start"), 0), _int(r.get("end"), 0)
            # the OAS example spells it "stepsize", the schema "stepSize": accept both
            step = _int(r.get("stepSize", r.get("stepsize", 25)), 1) or 25
            if start is not None and end is not None and start <= end:
                ranges.append((start, end, step))
    return Decoded(Res.RF, extra={"code": _str(o.get("code")), "ranges": tuple(ranges)})


def _d_encryption(v: Any, i: int | None) -> Decoded:
    enabled = _bool(_obj(v, "encryption").get("enabled"))
    return Decoded(Res.ENCRYPTION, extra={"encryption": None if enabled is None else ("on" if enabled else "off")})


def _d_tx_list(v: Any, i: int | None) -> Decoded:
    # Either the list shape of GET /api/transmitters, or (per-item notification) handled as Res.TX.
    if not isinstance(v, list):
        raise ResourceError(f"transmitter list must be a JSON array, got {type(v).__name__}")
    linked: dict[int, Mapping[str, Any]] = {}
    for item in v:
        if isinstance(item, dict) and isinstance(item.get("id"), int) and not isinstance(item.get("id"), bool):
            tx = item.get("transmitter")
            linked[item["id"] + 1] = tx if isinstance(tx, dict) else {}
    return Decoded(Res.TX_LIST, extra={"linked": linked})


def _d_channel(v: Any, i: int | None) -> Decoded:
    o = _obj(v, "channel")
    ch: dict[str, Any] = {}
    _set(ch, "name", "name" in o, _str(o.get("name")))
    _set(ch, "muted", "mute" in o, _bool(o.get("mute")))
    _set(ch, "gain_db", "gain" in o, _num(o.get("gain"), -3, 42))
    return Decoded(Res.CHANNEL, i, channel=ch)


def _d_channel_warnings(v: Any, i: int | None) -> Decoded:
    return Decoded(Res.CHANNEL_WARNINGS, i, warnings=_warnings(v, "channel warnings"))


def _d_channel_identify(v: Any, i: int | None) -> Decoded:
    return Decoded(Res.CHANNEL_IDENTIFY, i, extra={"enabled": _bool(_obj(v, "channel identify").get("enabled"))})


def _d_frequency(v: Any, i: int | None) -> Decoded:
    o = _obj(v, "rf channel")
    ch: dict[str, Any] = {}
    _set(ch, "frequency_khz", "frequency" in o, _int(o.get("frequency"), 1, MAX_FREQUENCY_KHZ))
    presets = o.get("presets")
    if isinstance(presets, dict) and "type" in presets:
        # "Factory"/"User" with bank and channel; "None" (manual frequency) leaves bank/channel out.
        # How the EW-DX front panel prints a preset is UNVERIFIED; "bank,channel" (user: "Ubank,channel")
        # follows the model's "g,c" convention.
        kind, bank, chan = presets.get("type"), _int(presets.get("bank"), 0), _int(presets.get("channel"), 0)
        gc: str | None = None
        if kind in ("Factory", "User") and bank is not None and chan is not None:
            gc = f"{'U' if kind == 'User' else ''}{bank},{chan}"
        ch["group_channel"] = gc
    return Decoded(Res.FREQUENCY, i, channel=ch)


def _d_meter(res: Res) -> Callable[[Any, int | None], Decoded]:
    def decode(v: Any, i: int | None) -> Decoded:
        raw = _value_field(v, res.value)
        meters: dict[str, Any]
        if res is Res.RSSI:
            dbm = _num(raw, *RSSI_RANGE)
            meters = {"rf_dbm": (dbm,) if dbm is not None else ()}
        elif res is Res.RSQI:
            meters = {"link_quality": _int(raw, 0, 100)}
        elif res is Res.DIVERSITY:
            d = _int(raw, 0, 2)
            meters = {"active_antenna": DIVERSITY.get(d) if d is not None else None}
        else:
            # "level" is the channel's AF meter in dBFS; whether it is peak or RMS is not documented.
            # It is reported as the peak reading (digital receivers meter peaks; the floor is -138.5).
            meters = {"audio_peak_dbfs": _num(raw, *LEVEL_RANGE)}
        return Decoded(res, i, meters=meters)

    return decode


def decode_tx_object(o: Mapping[str, Any]) -> dict[str, Any]:
    """Transmitter fields from a ``/api/transmitters/{id}`` object (any of its shapes by ``type``)."""
    tx: dict[str, Any] = {"present": True}
    typ = _str(o.get("type"))
    if "type" in o:
        tx["model"] = TX_MODELS.get(typ, typ) if typ else None
    _set(tx, "device_name", "name" in o, _str(o.get("name")) or None)
    _set(tx, "muted", "mute" in o, _bool(o.get("mute")))
    if "lock" in o:
        lock = o.get("lock")
        tx["lock"] = {True: "all", False: "none"}.get(lock) if isinstance(lock, bool) else _str(lock)
    return tx


def _d_tx(v: Any, i: int | None) -> Decoded:
    if v is None:
        return Decoded(Res.TX, i, tx_absent=True)
    return Decoded(Res.TX, i, tx=decode_tx_object(_obj(v, "transmitter")))


def _d_battery(v: Any, i: int | None) -> Decoded:
    if v is None:  # item deleted: the transmitter went away; its battery is unknown
        return Decoded(Res.BATTERY, i, tx={"battery_percent": None, "battery_bars": None, "runtime_minutes": None})
    o = _obj(v, "battery")
    tx: dict[str, Any] = {}
    if "gauge" in o:
        pct = _int(o.get("gauge"), 0, 100)
        tx["battery_percent"] = pct
        tx["battery_bars"] = battery_bars(pct)
    _set(tx, "runtime_minutes", "lifetime" in o, _int(o.get("lifetime"), 0, 100 * 60))
    if "type" in o:
        raw = _str(o.get("type"))
        tx["battery_type"] = BATTERY_TYPES.get(raw, raw) if raw else None
    return Decoded(Res.BATTERY, i, tx=tx)


def _d_tx_warnings(v: Any, i: int | None) -> Decoded:
    if v is None:
        return Decoded(Res.TX_WARNINGS, i, warnings=())
    return Decoded(Res.TX_WARNINGS, i, warnings=_warnings(v, "transmitter warnings"))


_DECODERS: Final[Mapping[Res, Callable[[Any, int | None], Decoded]]] = {
    Res.VERSION: _d_version,
    Res.IDENTITY: _d_identity,
    Res.SITE: _d_site,
    Res.STATE: _d_state,
    Res.IDENTIFICATION: _d_identification,
    Res.FIRMWARE: _d_firmware,
    Res.RF: _d_rf,
    Res.ENCRYPTION: _d_encryption,
    Res.TX_LIST: _d_tx_list,
    Res.CHANNEL: _d_channel,
    Res.CHANNEL_WARNINGS: _d_channel_warnings,
    Res.CHANNEL_IDENTIFY: _d_channel_identify,
    Res.FREQUENCY: _d_frequency,
    Res.RSSI: _d_meter(Res.RSSI),
    Res.RSQI: _d_meter(Res.RSQI),
    Res.DIVERSITY: _d_meter(Res.DIVERSITY),
    Res.LEVEL: _d_meter(Res.LEVEL),
    Res.TX: _d_tx,
    Res.BATTERY: _d_battery,
    Res.TX_WARNINGS: _d_tx_warnings,
}
# Resources where a null value is meaningful (collection item deleted); elsewhere null is ignored.
_NULLABLE: Final = frozenset({Res.TX, Res.BATTERY, Res.TX_WARNINGS})


def decode_resource(path: str, value: Any) -> Decoded | None:
    """Decode one resource's JSON; None for paths micboardd does not read (or a meaningless null).

    Raises ResourceError when a known resource has the wrong JSON shape.
    """
    found = classify(path)
    if found is None:
        return None
    res, index = found
    if value is None and res not in _NULLABLE:
        return None
    return _DECODERS[res](value, index)
