"""Sennheiser SSCv1 (JSON address trees over UDP): sans-IO codec, per-family path tables, and the adapter.

Wire facts (reference/sennheiser-and-others.md §2): one JSON object per datagram mirroring the OSC address
tree; ``null`` leaves are GETs, values are SETs and the reply echoes what the device applied; ``osc.xid``
correlates a reply with its request; errors come back inline as ``{"osc":{"error":[{<tree>:[code]}]}}``;
``/osc/state/subscribe`` takes an array of trees, each with its ``"#"`` options, and must be renewed
before ``lifetime`` runs out. EW-DX answers ``424`` on ``mates/txN/*`` when no transmitter is linked.

The families differ in paths and units (§2.3, §2.4); each is one :class:`VariantTable` below, selected by
``options.variant``. Device options (all optional, under ``[devices.options]``):

- ``variant``: ``"ewdx"`` (default), ``"speechline"``, ``"ewd"``, ``"d6000"``
- ``reply_timeout_s`` (2.0), ``heartbeat_s`` (5.0), ``silence_timeout_s`` (15.0), ``lifetime_s`` (10)
- ``battery_time_unit``: ``"min"`` or ``"s"``, overrides the variant's runtime unit (D6000 is UNVERIFIED)
- ``local_host`` ("0.0.0.0"); the local port is ``local_port`` (default 0: one shared ephemeral port)
"""

from __future__ import annotations

import asyncio
import itertools
import json
import math
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Literal

from ...commands import (
    ECHO_TIMEOUT_S,
    Command,
    CommandError,
    CommandErrorReason,
    CommandResult,
    Identify,
    RenameChannel,
    RenameDevice,
    SetFrequency,
    SetGain,
    SetMeterRate,
    SetMute,
)
from ...config import DeviceConfig
from ...model import TX_ABSENT, Manufacturer, Meters, now
from ..base import Adapter, DeviceError, DeviceLink, RetryableError, TerminalError
from .udp import EndpointError, MalformedLog, PeerInUseError, SharedUdpEndpoint, resolve_ipv4, shared_endpoint

Path = tuple[str, ...]

MAX_MESSAGE_BYTES: Final = 32_768  # a full EM4 tree is ~2 KB; anything this large is not an SSC reply
MAX_DEPTH: Final = 16  # the deepest EW-DX address is 5 levels; deeper nesting is garbage
MAX_CHANNELS: Final = 4  # EM4 / SL MCR 4 DW: the most receive channels one SSCv1 device has

REPLY_TIMEOUT_S: Final = 2.0  # EWDX-V1 calls a device offline after 2 s without a reply; a LAN answers in ms
HEARTBEAT_S: Final = 5.0  # EWDX-V1 pings /device/name every 5 s; we also re-read the transmitters then
SILENCE_TIMEOUT_S: Final = 15.0  # three heartbeats unanswered: the device is gone
LIFETIME_S: Final = 10  # the protocol's default subscription lifetime; renewed before it runs out
SETTINGS_COUNT: Final = 1000  # the protocol's default notification budget per subscription

# SSC error codes (D6000 errors.js / SLDW-SSC §12)
ERR_SUB_TERMINATED: Final = 310
ERR_NOT_FOUND: Final = 404
ERR_PARAM_NOT_FOUND: Final = 454
ERR_FAILED_DEPENDENCY: Final = 424  # EW-DX: no transmitter linked (or it sends no valid data)


# ============================================================================= codec (no I/O)


class SscDecodeError(ValueError):
    """A datagram that is not an SSCv1 message."""


@dataclass(frozen=True, slots=True)
class SscError:
    """One inline error: the address it concerns (``()`` for the whole message) and its code."""

    path: Path
    code: int


@dataclass(frozen=True, slots=True)
class SscMessage:
    """One decoded datagram: leaf values, the leaves left ``null``, inline errors and the echoed xid."""

    values: Mapping[Path, Any]
    nulls: frozenset[Path] = frozenset()
    errors: tuple[SscError, ...] = ()
    xid: int | str | None = None
    subscribe_ack: bool = False

    @property
    def paths(self) -> frozenset[Path]:
        """Every address the message mentions (values, nulls, errors)."""
        return frozenset(self.values) | self.nulls | frozenset(e.path for e in self.errors)


def flatten(tree: Any, prefix: Path = (), depth: int = 0) -> Iterator[tuple[Path, Any]]:
    """Leaves of an address tree as (path, value); lists are leaf values, ``{}`` (a container marker) none."""
    if depth > MAX_DEPTH:
        raise SscDecodeError(f"address tree deeper than {MAX_DEPTH} levels")
    if isinstance(tree, dict):
        for key, value in tree.items():
            yield from flatten(value, (*prefix, str(key)), depth + 1)
    elif prefix:
        yield prefix, tree


def tree_from_leaves(leaves: Iterable[tuple[Path, Any]]) -> dict[str, Any]:
    """Build a nested address tree from (path, value) leaves."""
    root: dict[str, Any] = {}
    for path, value in leaves:
        node = root
        for part in path[:-1]:
            nxt = node.get(part)
            if not isinstance(nxt, dict):
                nxt = node[part] = {}
            node = nxt
        node[path[-1]] = value
    return root


def _error_codes(value: Any) -> list[int]:
    items = value if isinstance(value, list) else [value]
    return [int(v) for v in items if isinstance(v, int | float) and not isinstance(v, bool)]


def decode(data: bytes) -> SscMessage:
    """Parse one datagram; raises SscDecodeError for anything but a JSON object within the limits."""
    if len(data) > MAX_MESSAGE_BYTES:
        raise SscDecodeError(f"{len(data)} bytes exceeds the {MAX_MESSAGE_BYTES}-byte limit")
    text = data.rstrip(b"\r\n\t \x00")  # FIELD terminates datagrams with CRLF; some stacks pad with NUL
    try:
        doc = json.loads(text.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise SscDecodeError(f"not UTF-8 ({exc.reason} at byte {exc.start})") from exc
    except json.JSONDecodeError as exc:
        raise SscDecodeError(f"invalid JSON: {exc.msg} at char {exc.pos}") from exc
    except RecursionError as exc:
        raise SscDecodeError("JSON nested too deeply") from exc
    if not isinstance(doc, dict):
        raise SscDecodeError(f"top level is {type(doc).__name__}, not an object")

    values: dict[Path, Any] = {}
    nulls: set[Path] = set()
    errors: list[SscError] = []
    xid: int | str | None = None
    ack = False

    def take(leaves: Iterable[tuple[Path, Any]]) -> None:
        for path, value in leaves:
            if value is None:
                nulls.add(path)
            else:
                values[path] = value

    for key, sub in doc.items():
        if key != "osc" or not isinstance(sub, dict):
            take(flatten({key: sub}))
            continue
        for okey, ovalue in sub.items():
            if okey == "xid":
                if isinstance(ovalue, int | str) and not isinstance(ovalue, bool):
                    xid = ovalue
            elif okey == "error":
                for element in ovalue if isinstance(ovalue, list) else [ovalue]:
                    if isinstance(element, dict):
                        errors.extend(SscError(p, c) for p, v in flatten(element) for c in _error_codes(v))
                    else:
                        errors.extend(SscError((), c) for c in _error_codes(element))
            elif okey == "state" and isinstance(ovalue, dict) and "subscribe" in ovalue:
                ack = True
                subs = ovalue["subscribe"]
                for element in subs if isinstance(subs, list) else [subs]:
                    if isinstance(element, dict):  # an ack may bundle the initial values (SLDW-SSC p.16)
                        take(flatten({k: v for k, v in element.items() if k != "#"}))
                    else:
                        errors.extend(SscError(("osc", "state", "subscribe"), c) for c in _error_codes(element))
            else:
                take(flatten({"osc": {okey: ovalue}}))
    return SscMessage(values, frozenset(nulls), tuple(errors), xid, ack)


def encode(tree: Mapping[str, Any], *, xid: int | None = None) -> bytes:
    """One request datagram: the tree plus ``osc.xid`` when given (bare JSON, as EWDX-V1 sends)."""
    doc = dict(tree)
    if xid is not None:
        osc = dict(doc.get("osc") or {})
        osc["xid"] = xid
        doc["osc"] = osc
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def get_tree(paths: Iterable[Path]) -> dict[str, Any]:
    """A GET for every path (``null`` leaves)."""
    return tree_from_leaves((p, None) for p in paths)


def subscribe_tree(elements: Sequence[tuple[Mapping[str, Any], Iterable[Path]]]) -> dict[str, Any]:
    """``/osc/state/subscribe`` with one array element per (options, paths); renewal re-sends it unchanged."""
    array = [{"#": dict(opts), **get_tree(paths)} for opts, paths in elements]
    return {"osc": {"state": {"subscribe": array}}}


# ============================================================================= normalization helpers


def _num(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


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


def _ignore(_value: Any, _ctx: ConvCtx) -> Mapping[str, Any] | None:
    return None


def _text(name: str) -> Converter:
    def conv(value: Any, _ctx: ConvCtx) -> Mapping[str, Any] | None:
        if not isinstance(value, str):
            return None
        return {name: value.strip() or None}

    return conv


def _flag(name: str) -> Converter:
    def conv(value: Any, _ctx: ConvCtx) -> Mapping[str, Any] | None:
        if isinstance(value, bool):
            return {name: value}
        if isinstance(value, int) and value in (0, 1):
            return {name: bool(value)}
        return None

    return conv


def _number(name: str, lo: float, hi: float, cast: Callable[[float], Any] = float) -> Converter:
    def conv(value: Any, _ctx: ConvCtx) -> Mapping[str, Any] | None:
        n = _num(value)
        return {name: cast(n) if n is not None and lo <= n <= hi else None}

    return conv


def _frequency(value: Any, _ctx: ConvCtx) -> Mapping[str, Any] | None:
    n = _num(value)
    if n is None or n <= 0:
        return {"frequency_khz": None}
    if n < 10_000:  # tolerate MHz (the D6000 unit is only known from a Companion limits table)
        n *= 1000
    return {"frequency_khz": round(n)}


def _runtime(value: Any, ctx: ConvCtx) -> Mapping[str, Any] | None:
    n = _num(value)
    if n is None or n < 0 or n >= 65_535:
        return {"runtime_minutes": None}
    return {"runtime_minutes": int(n * ctx.runtime_unit_s // 60)}


def _battery(value: Any, _ctx: ConvCtx) -> Mapping[str, Any] | None:
    return _battery_percent(value)


BATTERY_TYPES: Final[Mapping[Any, str | None]] = {
    # EW-DX / SSCv2 words and ew D1's bat_type index; "Battery" is the BA 70 rechargeable pack
    "Battery": "BA70", "Primary Cell": "AA", "PrimaryCell": "AA", "NoBattery": None, 0: "AA", 1: "BA70",
}


def _battery_type(value: Any, _ctx: ConvCtx) -> Mapping[str, Any] | None:
    if isinstance(value, bool) or not isinstance(value, str | int):
        return None
    return {"battery_type": BATTERY_TYPES.get(value, str(value))}


EWD_DEVICE_TYPES: Final[Mapping[int, str]] = {0: "handheld", 1: "bodypack", 2: "tablestand", 3: "boundary"}


def _ewd_device_type(value: Any, _ctx: ConvCtx) -> Mapping[str, Any] | None:
    if isinstance(value, bool) or not isinstance(value, int):
        return None
    return {"model": EWD_DEVICE_TYPES.get(value, f"type {value}")}


def _warnings(kind: Literal["rx_warnings", "tx_warnings"]) -> Converter:
    def conv(value: Any, _ctx: ConvCtx) -> Mapping[str, Any] | None:
        if isinstance(value, str):
            value = [value] if value else []
        if not isinstance(value, list):
            return None
        return {kind: tuple(dict.fromkeys(warning_word(str(w)) for w in value if isinstance(w, str) and w))}

    return conv


def _rssi(value: Any, _ctx: ConvCtx) -> Mapping[str, Any] | None:
    n = _num(value)
    return {"rf_dbm": (n if n is not None and -150 <= n <= 20 else None,)}


def _rsqi(value: Any, _ctx: ConvCtx) -> Mapping[str, Any] | None:
    n = _num(value)
    return {"link_quality": round(n) if n is not None and 0 <= n <= 100 else None}


DIVERSITY: Final[Mapping[int, str | None]] = {0: None, 1: "A", 2: "B"}


def _divi(value: Any, _ctx: ConvCtx) -> Mapping[str, Any] | None:
    if isinstance(value, bool) or not isinstance(value, int):
        return None
    return {"active_antenna": DIVERSITY.get(value)}


def _af(value: Any, _ctx: ConvCtx) -> Mapping[str, Any] | None:
    n = _num(value)
    # UNVERIFIED whether /m/rxN/af is peak or RMS; a receiver's front-panel meter is a peak meter.
    return {"audio_peak_dbfs": n if n is not None and -200 <= n <= 20 else None}


def _d6000_type(value: Any, _ctx: ConvCtx) -> Mapping[str, Any] | None:
    if not isinstance(value, str):
        return None
    return {"model": value.strip() or None}


def _d6000_battery(value: Any, ctx: ConvCtx) -> Mapping[str, Any] | None:
    """``[percent, time]``; an empty array means no transmitter (§2.4)."""
    if not isinstance(value, list):
        return None
    if not value:
        return {"present": False}
    out = dict(_battery_percent(value[0]))
    if len(value) > 1:
        out.update(_runtime(value[1], ctx) or {})
    return out


MM_FIELDS: Final = ("rf1", "rf1peak", "rf2", "rf2peak", "div1", "div2", "lqi", "af", "afpeak")


def _d6000_mm(value: Any, _ctx: ConvCtx) -> Mapping[Any, Any] | None:
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
            "link_quality": round(lqi / 255 * 100) if lqi is not None else None,  # not the module's precedence bug
            "audio_rms_dbfs": (af + 1) / 2 - 128 if af is not None else None,
            "audio_peak_dbfs": (afpeak + 1) / 2 - 128 if afpeak is not None else None,
        }
    return out


# ============================================================================= per-family tables

Group = Literal["identity", "settings", "tx", "meter", "reply"]  # reply: appears only in answers
Target = Literal["device", "channel", "tx", "meter"]


@dataclass(frozen=True, slots=True)
class PathSpec:
    """One address of a family: where it lives, which normalized fields it feeds, how it is read."""

    path: Path  # "{n}" in an element is the 1-based channel number
    group: Group
    target: Target
    convert: Converter
    fanout: bool = False  # the value carries every channel ({ch: fields}), e.g. D6000 /mm

    @property
    def per_channel(self) -> bool:
        return any("{n}" in part for part in self.path)

    def at(self, n: int) -> Path:
        return tuple(part.replace("{n}", str(n)) for part in self.path)


@dataclass(frozen=True, slots=True)
class Control:
    """A settable address and the rules its value must follow."""

    path: Path
    max_len: int | None = None
    upper: bool = False  # the device (or its sibling API) accepts upper case only
    lo: float | None = None
    hi: float | None = None
    step: float | None = None

    def at(self, n: int) -> Path:
        return tuple(part.replace("{n}", str(n)) for part in self.path)


@dataclass(frozen=True, slots=True)
class VariantTable:
    """Everything that differs between SSCv1 families, as data."""

    name: str
    specs: tuple[PathSpec, ...]
    default_channels: int
    runtime_unit_s: float  # 60: minutes, 1: seconds
    no_link_means_absent: bool  # a "no_link" receiver warning means the transmitter is gone
    rename: Control | None = None
    rename_device: Control | None = None
    mute: Control | None = None
    identify: Control | None = None
    frequency: Control | None = None
    gain: Control | None = None
    channels_from_product: tuple[tuple[str, int], ...] = ()

    def group(self, group: Group) -> tuple[PathSpec, ...]:
        return tuple(s for s in self.specs if s.group == group)


_IDENTITY: Final = (
    PathSpec(("device", "identity", "product"), "identity", "device", _text("model")),
    PathSpec(("device", "identity", "serial"), "identity", "device", _text("serial")),
    PathSpec(("device", "identity", "version"), "identity", "device", _text("firmware")),
    PathSpec(("device", "name"), "identity", "device", _text("name")),
)
_M_TREE: Final = (  # EW-DX /m; assumed (UNVERIFIED) on SpeechLine and EW-D, dropped on 404
    PathSpec(("m", "rx{n}", "rssi"), "meter", "meter", _rssi),
    PathSpec(("m", "rx{n}", "rsqi"), "meter", "meter", _rsqi),
    PathSpec(("m", "rx{n}", "divi"), "meter", "meter", _divi),
    PathSpec(("m", "rx{n}", "af"), "meter", "meter", _af),
)
_NAME: Final = Control(("rx{n}", "name"), max_len=8)
_DEVICE_NAME: Final = Control(("device", "name"), max_len=18)

EWDX: Final = VariantTable(
    name="ewdx",
    specs=(
        *_IDENTITY,
        PathSpec(("rx{n}", "name"), "settings", "channel", _text("name")),
        PathSpec(("rx{n}", "frequency"), "settings", "channel", _frequency),
        PathSpec(("rx{n}", "mute"), "settings", "channel", _flag("muted")),
        PathSpec(("rx{n}", "gain"), "settings", "channel", _number("gain_db", -20, 60)),
        PathSpec(("rx{n}", "warnings"), "settings", "channel", _warnings("rx_warnings")),
        PathSpec(("mates", "tx{n}", "battery", "gauge"), "tx", "tx", _battery),
        PathSpec(("mates", "tx{n}", "battery", "lifetime"), "tx", "tx", _runtime),
        PathSpec(("mates", "tx{n}", "battery", "type"), "tx", "tx", _battery_type),
        PathSpec(("mates", "tx{n}", "type"), "tx", "tx", _text("model")),
        PathSpec(("mates", "tx{n}", "name"), "tx", "tx", _text("device_name")),
        PathSpec(("mates", "tx{n}", "mute"), "tx", "tx", _flag("muted")),
        PathSpec(("mates", "tx{n}", "warnings"), "tx", "channel", _warnings("tx_warnings")),
        *_M_TREE,
    ),
    default_channels=2,
    runtime_unit_s=60.0,
    no_link_means_absent=False,  # EW-DX says so with 424; NoLink can also mean a TX out of range for a moment
    rename=Control(("rx{n}", "name"), max_len=8, upper=True),
    rename_device=_DEVICE_NAME,
    mute=Control(("rx{n}", "mute")),
    identify=Control(("rx{n}", "identification", "visual")),
    frequency=Control(("rx{n}", "frequency"), lo=470_200, hi=1_999_000, step=25),
    gain=Control(("rx{n}", "gain"), lo=-3, hi=42, step=3),
    channels_from_product=(("4CH", 4), ("2CH", 2)),
)

SPEECHLINE: Final = VariantTable(
    name="speechline",
    specs=(
        *_IDENTITY,
        PathSpec(("rx{n}", "name"), "settings", "channel", _text("name")),
        PathSpec(("rx{n}", "mute"), "settings", "channel", _flag("muted")),  # UNVERIFIED path
        PathSpec(("rx{n}", "warnings"), "settings", "channel", _warnings("rx_warnings")),
        PathSpec(("mates", "tx{n}", "bat_gauge"), "tx", "tx", _battery),
        PathSpec(("mates", "tx{n}", "bat_lifetime"), "tx", "tx", _runtime),  # seconds (SLDW-SSC)
        PathSpec(("mates", "tx{n}", "bat_health"), "tx", "tx", _number("battery_health_percent", 0, 100, int)),
        PathSpec(("mates", "tx{n}", "bat_cycles"), "tx", "tx", _number("battery_cycles", 0, 1e6, int)),
        PathSpec(("mates", "tx{n}", "bat_charging"), "tx", "tx", _flag("charging")),
        PathSpec(("mates", "tx{n}", "warnings"), "tx", "channel", _warnings("tx_warnings")),
        *_M_TREE,
    ),
    default_channels=1,
    runtime_unit_s=1.0,
    no_link_means_absent=True,
    rename=_NAME,
    rename_device=_DEVICE_NAME,
    mute=Control(("rx{n}", "mute")),
)

EWD: Final = VariantTable(
    name="ewd",
    specs=(
        *_IDENTITY,
        PathSpec(("rx{n}", "name"), "settings", "channel", _text("name")),
        PathSpec(("rx{n}", "frequency"), "settings", "channel", _frequency),
        PathSpec(("rx{n}", "mute"), "settings", "channel", _flag("muted")),
        PathSpec(("rx{n}", "warnings"), "settings", "channel", _warnings("rx_warnings")),
        # bat_state answers with either bat_gauge (%) or bat_lifetime (s); nested or flat, both tolerated
        PathSpec(("mates", "tx{n}", "bat_state"), "tx", "tx", _ignore),
        PathSpec(("mates", "tx{n}", "bat_state", "bat_gauge"), "reply", "tx", _battery),
        PathSpec(("mates", "tx{n}", "bat_state", "bat_lifetime"), "reply", "tx", _runtime),
        PathSpec(("mates", "tx{n}", "bat_gauge"), "reply", "tx", _battery),
        PathSpec(("mates", "tx{n}", "bat_lifetime"), "reply", "tx", _runtime),
        PathSpec(("mates", "tx{n}", "bat_type"), "tx", "tx", _battery_type),
        PathSpec(("mates", "tx{n}", "device_type"), "tx", "tx", _ewd_device_type),
        *_M_TREE,
        # /audio/out1/level_db (-80..0) is deliberately not read as an AF meter: it looks like the output
        # level setting, and a setting shown as a live meter would be a number that looks real and is not.
    ),
    default_channels=1,
    runtime_unit_s=1.0,
    no_link_means_absent=True,
    rename=_NAME,
    rename_device=_DEVICE_NAME,
    mute=Control(("rx{n}", "mute")),
    frequency=Control(("rx{n}", "frequency"), lo=470_200, hi=1_999_000, step=25),
)

D6000: Final = VariantTable(
    name="d6000",
    specs=(
        *_IDENTITY,
        PathSpec(("rx{n}", "name"), "settings", "channel", _text("name")),
        PathSpec(("rx{n}", "carrier"), "settings", "channel", _frequency),
        PathSpec(("rx{n}", "audio_mute"), "settings", "channel", _flag("muted")),
        PathSpec(("rx{n}", "active_warnings"), "settings", "channel", _warnings("rx_warnings")),
        PathSpec(("rx{n}", "skx", "type"), "tx", "tx", _d6000_type),
        PathSpec(("rx{n}", "skx", "name"), "tx", "tx", _text("device_name")),
        PathSpec(("rx{n}", "skx", "battery"), "tx", "tx", _d6000_battery),
        # an older Companion build reads skx.type.type and skx.battery.{percent,time}: tolerated as replies
        PathSpec(("rx{n}", "skx", "type", "type"), "reply", "tx", _d6000_type),
        PathSpec(("rx{n}", "skx", "battery", "percent"), "reply", "tx", _battery),
        PathSpec(("rx{n}", "skx", "battery", "time"), "reply", "tx", _runtime),
        PathSpec(("mm",), "meter", "meter", _d6000_mm, fanout=True),
    ),
    default_channels=2,
    runtime_unit_s=60.0,  # UNVERIFIED (§6 "unit not checked"); options.battery_time_unit overrides
    no_link_means_absent=True,
    rename=_NAME,
    rename_device=_DEVICE_NAME,
    mute=Control(("rx{n}", "audio_mute")),
    frequency=Control(("rx{n}", "carrier"), lo=470_100, hi=713_900, step=25),
)

VARIANTS: Final[Mapping[str, VariantTable]] = {t.name: t for t in (EWDX, SPEECHLINE, EWD, D6000)}

# command → the VariantTable field holding its Control (None there: the family has no such control)
CONTROL_OF: Final[Mapping[type, str]] = {
    RenameChannel: "rename", RenameDevice: "rename_device", SetMute: "mute", Identify: "identify",
    SetFrequency: "frequency", SetGain: "gain",
}


Lookup = Mapping[Path, tuple[PathSpec, int]]
Element = tuple[Mapping[str, Any], list[Path]]  # one subscription array element: ("#" options, addresses)


def build_lookup(table: VariantTable, channels: int) -> dict[Path, tuple[PathSpec, int]]:
    """Concrete address → (spec, channel) for a device with ``channels`` channels (0 for device-wide)."""
    out: dict[Path, tuple[PathSpec, int]] = {}
    for spec in table.specs:
        if spec.per_channel:
            for n in range(1, channels + 1):
                out[spec.at(n)] = (spec, n)
        else:
            out[spec.path] = (spec, 0)
    return out


@dataclass(slots=True)
class Interpretation:
    """One message in normalized terms: fields per target, absent transmitters, and what the errors mean."""

    device: dict[str, Any] = field(default_factory=dict)
    channels: dict[int, dict[str, Any]] = field(default_factory=dict)  # incl. rx_warnings / tx_warnings
    tx: dict[int, dict[str, Any]] = field(default_factory=dict)
    meters: dict[int, dict[str, Any]] = field(default_factory=dict)
    absent: set[int] = field(default_factory=set)
    terminated: bool = False  # a subscription ran out (310)
    unsupported: list[Path] = field(default_factory=list)  # 404/454 on an address we use
    other_errors: list[SscError] = field(default_factory=list)
    unusable: list[tuple[Path, Any]] = field(default_factory=list)


def interpret(msg: SscMessage, lookup: Lookup, table: VariantTable, ctx: ConvCtx, channels: int) -> Interpretation:
    """Map a decoded message onto normalized fields through a family's table (pure; no state)."""
    r = Interpretation()
    for err in msg.errors:
        hit = lookup.get(err.path)
        if err.code == ERR_SUB_TERMINATED:
            r.terminated = True
        elif hit is not None and hit[0].target == "tx" and err.code == ERR_FAILED_DEPENDENCY:
            r.absent.add(hit[1])  # EW-DX: no transmitter linked
        elif hit is not None and err.code in (ERR_NOT_FOUND, ERR_PARAM_NOT_FOUND):
            r.unsupported.append(err.path)
        else:
            r.other_errors.append(err)
    for path, value in msg.values.items():
        hit = lookup.get(path)
        if hit is None:
            continue
        spec, n = hit
        out = spec.convert(value, ctx)
        if out is None:
            r.unusable.append((path, value))
        elif spec.fanout:
            for ch, fields in out.items():
                if isinstance(ch, int) and 1 <= ch <= channels:
                    r.meters.setdefault(ch, {}).update(fields)
        elif spec.target == "device":
            r.device.update(out)
        elif spec.target == "meter":
            r.meters.setdefault(n, {}).update(out)
        elif spec.target == "tx":
            if out.get("present") is False:
                r.absent.add(n)
            else:
                r.tx.setdefault(n, {}).update(out)
        else:
            r.channels.setdefault(n, {}).update(out)
            if table.no_link_means_absent and "no_link" in out.get("rx_warnings", ()):
                r.absent.add(n)
    for n in r.absent:
        r.tx.pop(n, None)  # a 424 or an empty battery outranks stray transmitter values in the same message
    return r


# ============================================================================= adapter


@dataclass(frozen=True, slots=True)
class SscOptions:
    """``[devices.options]`` of an SSCv1 device, validated."""

    variant: VariantTable = EWDX
    reply_timeout_s: float = REPLY_TIMEOUT_S
    heartbeat_s: float = HEARTBEAT_S
    silence_timeout_s: float = SILENCE_TIMEOUT_S
    lifetime_s: float = LIFETIME_S
    runtime_unit_s: float = 60.0
    local_host: str = "0.0.0.0"

    @classmethod
    def from_config(cls, config: DeviceConfig) -> SscOptions:
        opts = dict(config.options)
        name = opts.pop("variant", "ewdx")
        if name not in VARIANTS:
            raise TerminalError(f"options.variant {name!r} is not one of {', '.join(VARIANTS)}")
        variant = VARIANTS[name]

        def seconds(key: str, default: float) -> float:
            value = opts.pop(key, default)
            if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= 3600:
                raise TerminalError(f"options.{key} must be a number of seconds in (0, 3600], got {value!r}")
            return float(value)

        unit = opts.pop("battery_time_unit", None)
        if unit not in (None, "min", "s"):
            raise TerminalError(f"options.battery_time_unit must be \"min\" or \"s\", got {unit!r}")
        local_host = opts.pop("local_host", "0.0.0.0")
        if not isinstance(local_host, str):
            raise TerminalError("options.local_host must be an IPv4 address string")
        out = cls(
            variant=variant,
            reply_timeout_s=seconds("reply_timeout_s", REPLY_TIMEOUT_S),
            heartbeat_s=seconds("heartbeat_s", HEARTBEAT_S),
            silence_timeout_s=seconds("silence_timeout_s", SILENCE_TIMEOUT_S),
            lifetime_s=seconds("lifetime_s", LIFETIME_S),
            runtime_unit_s=variant.runtime_unit_s if unit is None else (60.0 if unit == "min" else 1.0),
            local_host=local_host,
        )
        if opts:
            raise TerminalError(f"unknown options for sscv1: {', '.join(sorted(opts))}")
        return out


@dataclass(slots=True)
class _Pending:
    future: asyncio.Future[SscMessage]
    paths: frozenset[Path]


@dataclass(slots=True)
class _Session:
    """One connected stretch with a device: socket, peer, pending requests, what it turned out to support."""

    endpoint: SharedUdpEndpoint
    peer: tuple[str, int]
    channels: int = 0
    lookup: Lookup = field(default_factory=dict)
    pending: dict[int, _Pending] = field(default_factory=dict)
    unsupported: set[Path] = field(default_factory=set)
    renew_now: asyncio.Event = field(default_factory=asyncio.Event)
    subscribed: bool = False
    last_meter: float = 0.0  # loop time of the last meter value received


class SSCv1Adapter(Adapter):
    """EW-DX (legacy mode), EW-D, SpeechLine DW and Digital 6000 receivers over SSCv1."""

    family = "sscv1"
    manufacturer = Manufacturer.SENNHEISER

    def __init__(self, config: DeviceConfig, link: DeviceLink) -> None:
        super().__init__(config, link)
        self._session: _Session | None = None
        self._xids = itertools.count(1)
        self._malformed = MalformedLog(self.log, "SSCv1 datagram")
        self._meter_rate: dict[int, int] = {}  # per channel, survives reconnects; default config.meter_rate_ms
        self._meters: dict[int, dict[str, Any]] = {}
        self._rx_warnings: dict[int, tuple[str, ...]] = {}
        self._tx_warnings: dict[int, tuple[str, ...]] = {}
        self._opts: SscOptions | None = None

    @property
    def options(self) -> SscOptions:
        if self._opts is None:
            self._opts = SscOptions.from_config(self.config)
        return self._opts

    # ----------------------------------------------------------------- session

    async def run(self) -> None:
        opts = self.options
        peer = await resolve_ipv4(self.config.host, self.config.port)
        try:
            async with shared_endpoint(opts.local_host, self.config.local_port or 0) as endpoint:
                with endpoint.register(peer, self._on_datagram):
                    session = self._session = _Session(endpoint, peer)
                    try:
                        await self._serve(session)
                    except asyncio.CancelledError:
                        self._cancel_subscriptions(session)  # a clean stop leaves the receiver unburdened
                        raise
                    finally:
                        self._session = None
                        for pending in session.pending.values():
                            if not pending.future.done():
                                pending.future.set_exception(RetryableError("session ended"))
        except EndpointError as exc:
            raise RetryableError(exc.strerror or str(exc)) from exc
        except PeerInUseError as exc:
            raise TerminalError(str(exc)) from exc

    async def _serve(self, s: _Session) -> None:
        opts = self.options
        table = opts.variant
        identity = [spec.path for spec in table.group("identity")]
        name_probe = [(f"rx{n}", "name") for n in range(1, MAX_CHANNELS + 1)]  # which channels exist
        try:
            first = await self._request(s, get_tree([*identity, *name_probe]), opts.reply_timeout_s)
        except TimeoutError:
            raise RetryableError(f"no SSCv1 reply within {opts.reply_timeout_s:g} s") from None
        self.link.online()

        s.channels = self._channel_count(first)
        s.lookup = build_lookup(table, s.channels)
        self.link.device(channel_count=s.channels)
        self._apply(first)
        for n in range(1, s.channels + 1):
            self.link.channel(n)  # make every channel exist even before its first value

        try:
            await self._request(s, get_tree(self._paths(s, "settings", "tx")), opts.reply_timeout_s)
        except TimeoutError:
            self.log.info("full read not answered within %g s; relying on subscriptions", opts.reply_timeout_s)
        await self._subscribe(s, wait=True)
        try:
            async with asyncio.TaskGroup() as tg:
                tg.create_task(self._renew_loop(s))
                tg.create_task(self._heartbeat_loop(s))
                tg.create_task(self._watchdog())
        except* (DeviceError, OSError) as group:
            raise group.exceptions[0] from None  # the supervisor classifies the error, not its group

    def _channel_count(self, first: SscMessage) -> int:
        if self.config.channels:
            return self.config.channels
        product = first.values.get(("device", "identity", "product"))
        if isinstance(product, str):
            for marker, count in self.options.variant.channels_from_product:
                if marker in product.upper():
                    return count
        answered = [n for n in range(1, MAX_CHANNELS + 1) if (f"rx{n}", "name") in first.values]
        return max(answered) if answered else self.options.variant.default_channels

    def _paths(self, s: _Session, *groups: Group) -> list[Path]:
        return [p for p, (spec, _n) in s.lookup.items() if spec.group in groups and p not in s.unsupported]

    def _rate(self, n: int) -> int:
        return self._meter_rate.get(n, self.config.meter_rate_ms)

    def _elements(self, s: _Session) -> tuple[list[Element], list[Element]]:
        """The subscription as (on-change elements, periodic meter elements), each (options, addresses)."""
        lifetime = self.options.lifetime_s
        life = int(lifetime) if float(lifetime).is_integer() else lifetime
        settings: list[Element] = []
        on_change = self._paths(s, "settings", "tx")
        if on_change:
            settings.append(({"min": 0, "max": 0, "count": SETTINGS_COUNT, "lifetime": life}, on_change))
        # A device-wide meter address (D6000 /mm) runs at the fastest rate any channel asked for.
        fastest = min((r for r in map(self._rate, range(1, s.channels + 1)) if r), default=0)
        by_rate: dict[int, list[Path]] = {}
        for path in self._paths(s, "meter"):
            spec, n = s.lookup[path]
            rate = fastest if spec.fanout else self._rate(n)
            if rate:
                by_rate.setdefault(rate, []).append(path)
        meters: list[Element] = []
        for rate, paths in sorted(by_rate.items()):
            count = int(lifetime * 1000 / rate) + 100  # never the count that ends it, only the lifetime
            meters.append(({"min": rate, "max": rate, "count": count, "lifetime": life}, paths))
        return settings, meters

    def _subscription(self, s: _Session) -> dict[str, Any]:
        settings, meters = self._elements(s)
        return subscribe_tree(settings + meters)

    async def _subscribe(self, s: _Session, *, wait: bool) -> None:
        request = self._subscription(s)
        if not request["osc"]["state"]["subscribe"]:
            return
        if not wait:
            self._send(s, request)
            return
        try:
            await self._request(s, request, self.options.reply_timeout_s)
            if not s.subscribed:
                s.last_meter = asyncio.get_running_loop().time()  # meters are due from now on
            s.subscribed = True
        except TimeoutError:
            self.log.warning("subscription not acknowledged within %g s; retrying", self.options.reply_timeout_s)
            s.renew_now.set()

    async def _renew_loop(self, s: _Session) -> None:
        lifetime = self.options.lifetime_s
        renew_after = lifetime - min(2.0, lifetime / 3)  # D6000 renews 1 s early; a lost datagram needs slack
        while True:
            try:
                async with asyncio.timeout(renew_after):
                    await s.renew_now.wait()
            except TimeoutError:
                pass
            s.renew_now.clear()
            await self._subscribe(s, wait=True)

    async def _heartbeat_loop(self, s: _Session) -> None:
        """Ask for the name and the transmitters: proves the device is there and catches TX link changes.

        When meters are subscribed but none came for a while although the device answers, it has lost the
        subscription (a quick reboot, a lost datagram): subscribe again now rather than at the next renewal.
        """
        beat = self.options.heartbeat_s
        while True:
            await asyncio.sleep(beat)
            paths = [("device", "name"), *self._paths(s, "tx")]
            self._send(s, get_tree(p for p in paths if p not in s.unsupported))
            _settings, meters = self._elements(s)
            if meters and s.subscribed:
                slowest_s = max(float(opts["max"]) for opts, _paths in meters) / 1000
                if asyncio.get_running_loop().time() - s.last_meter > max(beat, 3 * slowest_s):
                    self.log.debug("meter notifications stopped; subscribing again")
                    s.renew_now.set()

    def _cancel_subscriptions(self, s: _Session) -> None:
        settings, meters = self._elements(s)
        if not (settings or meters) or s.endpoint.transport is None or s.endpoint.transport.is_closing():
            return
        self._send(s, subscribe_tree([({"cancel": True}, paths) for _opts, paths in settings + meters]))

    async def _watchdog(self) -> None:
        limit = self.options.silence_timeout_s
        while True:
            quiet = self.link.seconds_since_rx()
            if quiet >= limit:
                raise RetryableError(f"no datagram for {quiet:.1f} s (silence timeout {limit:g} s)")
            await asyncio.sleep(min(limit - quiet, limit / 4) + 0.01)

    # ----------------------------------------------------------------- wire

    def _next_xid(self) -> int:
        return next(self._xids) % 65_535 + 1

    def _send(self, s: _Session, tree: Mapping[str, Any], xid: int | None = None) -> int:
        xid = xid if xid is not None else self._next_xid()
        data = encode(tree, xid=xid)
        self.log.debug("→ %s", data[:300])
        s.endpoint.sendto(data, s.peer)
        return xid

    async def _request(self, s: _Session, tree: Mapping[str, Any], timeout: float) -> SscMessage:
        xid = self._next_xid()
        future: asyncio.Future[SscMessage] = asyncio.get_running_loop().create_future()
        s.pending[xid] = _Pending(future, frozenset(p for p, _v in flatten(tree) if p[0] != "osc"))
        try:
            self._send(s, tree, xid)
            async with asyncio.timeout(timeout):
                return await future
        finally:
            s.pending.pop(xid, None)

    def _on_datagram(self, data: bytes) -> None:
        self.link.received(len(data))
        try:
            msg = decode(data)
        except SscDecodeError as exc:
            self._malformed(data, str(exc))
            return
        self.log.debug("← %s", data[:300])
        s = self._session
        try:
            self._apply(msg)
        except Exception as exc:  # a value our tables cannot take must not end the session
            self._malformed(data, f"unusable values: {exc!r}")
        if s is None:
            return
        pending = s.pending.get(msg.xid) if isinstance(msg.xid, int) else None
        if pending is None and msg.xid is None:  # tolerate devices that do not echo xid: match by address
            pending = next((p for p in s.pending.values() if p.paths & msg.paths), None)
        if pending is not None and not pending.future.done():
            pending.future.set_result(msg)

    # ----------------------------------------------------------------- state

    def _apply(self, msg: SscMessage) -> None:
        s = self._session
        if s is None or not s.lookup:
            return
        r = interpret(msg, s.lookup, self.options.variant, ConvCtx(self.options.runtime_unit_s), s.channels)
        if r.meters:
            s.last_meter = asyncio.get_running_loop().time()
        if r.terminated:
            self.log.info("device ended a subscription (310); renewing")
            s.renew_now.set()
        for path in r.unsupported:
            if path not in s.unsupported:
                s.unsupported.add(path)
                self.log.info("device has no /%s; no longer asked for it", "/".join(path))
                if s.subscribed:
                    s.renew_now.set()  # re-subscribe without the address the device refused
        for err in r.other_errors:
            self.log.debug("device error %d at /%s", err.code, "/".join(err.path))
        for path, value in r.unusable:
            self.log.debug("unusable value at /%s: %r", "/".join(path), value)

        device = dict(r.device)
        if self.config.name:
            device.pop("name", None)  # the configured name wins over the device's own
        if device:
            self.link.device(**device)
        for n in sorted(set(r.channels) | set(r.tx) | r.absent):
            fields = dict(r.channels.get(n, {}))
            rx_w = fields.pop("rx_warnings", None)
            tx_w = fields.pop("tx_warnings", None)
            if rx_w is not None:
                self._rx_warnings[n] = rx_w
            if tx_w is not None:
                self._tx_warnings[n] = tx_w
            if n in r.absent:
                self._tx_warnings.pop(n, None)
            if rx_w is not None or tx_w is not None or n in r.absent:
                fields["warnings"] = tuple(dict.fromkeys(self._rx_warnings.get(n, ()) + self._tx_warnings.get(n, ())))
            if n in r.absent:
                self.link.channel(n, tx_replace=TX_ABSENT, **fields)
            elif n in r.tx:
                self.link.channel(n, tx={**r.tx[n], "present": True}, **fields)
            elif fields:
                self.link.channel(n, **fields)
        for n, fields in r.meters.items():
            acc = self._meters.setdefault(n, {})
            acc.update(fields)
            self.link.meters(
                Meters(
                    self.config.id,
                    n,
                    rf_dbm=acc.get("rf_dbm", ()),
                    active_antenna=acc.get("active_antenna"),
                    link_quality=acc.get("link_quality"),
                    audio_rms_dbfs=acc.get("audio_rms_dbfs"),
                    audio_peak_dbfs=acc.get("audio_peak_dbfs"),
                    clip="af_peak" in self._rx_warnings.get(n, ()),
                    at=now(),
                )
            )

    # ----------------------------------------------------------------- commands

    def supports(self, command: Command) -> bool:
        if isinstance(command, SetMeterRate):
            return True
        try:
            table = self.options.variant
        except TerminalError:  # a bad options table supports nothing; run() reports it
            return False
        control = CONTROL_OF.get(type(command))
        return control is not None and getattr(table, control) is not None

    async def execute(self, command: Command) -> CommandResult:
        s = self._session
        if s is None:
            raise CommandError(CommandErrorReason.OFFLINE, f"{self.config.id} has no live SSCv1 session")
        if not self.supports(command):
            raise CommandError(
                CommandErrorReason.UNSUPPORTED, f"{self.options.variant.name} has no {type(command).__name__}"
            )
        t = self.options.variant
        if isinstance(command, SetMeterRate):
            return await self._set_meter_rate(s, command)
        if isinstance(command, RenameDevice):
            assert t.rename_device is not None
            name = _checked_name(command.name, t.rename_device)
            return await self._set_verified(s, {t.rename_device.path: name})
        if isinstance(command, Identify):
            assert t.identify is not None
            chans = [command.channel] if command.channel else list(range(1, s.channels + 1))
            for n in chans:
                self._check_channel(s, n)
            return await self._set_verified(s, {t.identify.at(n): True for n in chans})
        self._check_channel(s, command.channel)
        n = command.channel
        if isinstance(command, RenameChannel):
            assert t.rename is not None
            return await self._set_verified(s, {t.rename.at(n): _checked_name(command.name, t.rename)})
        if isinstance(command, SetMute):
            assert t.mute is not None
            return await self._set_verified(s, {t.mute.at(n): command.muted})
        if isinstance(command, SetFrequency):
            assert t.frequency is not None
            khz = _checked_number(command.frequency_khz, t.frequency, "frequency (kHz)")
            return await self._set_verified(s, {t.frequency.at(n): int(khz)})
        if isinstance(command, SetGain):
            assert t.gain is not None
            gain = _checked_number(command.gain_db, t.gain, "gain (dB)")
            return await self._set_verified(s, {t.gain.at(n): int(gain) if float(gain).is_integer() else gain})
        raise CommandError(CommandErrorReason.UNSUPPORTED, type(command).__name__)

    def _check_channel(self, s: _Session, n: int) -> None:
        if not 1 <= n <= s.channels:
            raise CommandError(CommandErrorReason.INVALID, f"channel {n} does not exist (1..{s.channels})")

    async def _set_verified(self, s: _Session, values: Mapping[Path, Any]) -> CommandResult:
        tree = tree_from_leaves(values.items())
        try:
            reply = await self._request(s, tree, ECHO_TIMEOUT_S)
        except TimeoutError:
            raise CommandError(CommandErrorReason.TIMEOUT, f"no echo within {ECHO_TIMEOUT_S:g} s") from None
        except RetryableError as exc:
            raise CommandError(CommandErrorReason.OFFLINE, str(exc)) from None
        errors = [e for e in reply.errors if e.path in values or not e.path]
        if errors:
            detail = ", ".join(f"/{'/'.join(e.path)} error {e.code}" for e in errors)
            raise CommandError(CommandErrorReason.REJECTED, detail)
        echoed: dict[Path, Any] = {}
        for path, wanted in values.items():
            if path not in reply.values:
                raise CommandError(CommandErrorReason.MISMATCH, f"/{'/'.join(path)} not echoed")
            got = reply.values[path]
            if got != wanted and not (isinstance(wanted, bool) and got in (0, 1) and bool(got) is wanted):
                raise CommandError(CommandErrorReason.MISMATCH, f"/{'/'.join(path)} echoed {got!r}, asked {wanted!r}")
            echoed[path] = got
        value = next(iter(echoed.values())) if len(echoed) == 1 else {"/".join(p): v for p, v in echoed.items()}
        return CommandResult(value=value, detail="echoed by the device")

    async def _set_meter_rate(self, s: _Session, command: SetMeterRate) -> CommandResult:
        rate = command.rate_ms
        if rate != 0 and not 100 <= rate <= 65_535:
            raise CommandError(CommandErrorReason.INVALID, "rate must be 0 (off) or 100..65535 ms")
        chans = [command.channel] if command.channel else list(range(1, s.channels + 1))
        for n in chans:
            self._check_channel(s, n)
        # A subscription is identified by its addresses: cancel the old meter ones, or they would run on at
        # the old rate until their lifetime ends.
        _settings, old = self._elements(s)
        for n in chans:
            self._meter_rate[n] = rate
        if old:
            self._send(s, subscribe_tree([({"cancel": True}, paths) for _opts, paths in old]))
        try:
            reply = await self._request(s, self._subscription(s), ECHO_TIMEOUT_S)
        except TimeoutError:
            raise CommandError(CommandErrorReason.TIMEOUT, "subscription not acknowledged") from None
        if any(e.code not in (ERR_FAILED_DEPENDENCY,) for e in reply.errors):
            raise CommandError(CommandErrorReason.REJECTED, f"subscription errors: {reply.errors}")
        return CommandResult(value=rate, detail="subscription renewed")


def _checked_name(name: str, control: Control) -> str:
    text = name.upper() if control.upper else name
    if not text.strip():
        raise CommandError(CommandErrorReason.INVALID, "name must not be empty")
    if control.max_len is not None and len(text) > control.max_len:
        raise CommandError(CommandErrorReason.INVALID, f"name longer than {control.max_len} characters")
    if not text.isprintable():
        raise CommandError(CommandErrorReason.INVALID, "name contains control characters")
    return text


def _checked_number(value: float, control: Control, what: str) -> float:
    if control.lo is not None and control.hi is not None and not control.lo <= value <= control.hi:
        raise CommandError(CommandErrorReason.INVALID, f"{what} {value:g} outside {control.lo:g}..{control.hi:g}")
    if control.step and control.lo is not None and not float((value - control.lo) / control.step).is_integer():
        raise CommandError(CommandErrorReason.INVALID, f"{what} {value:g} is not on the {control.step:g} grid")
    return value
