"""Shure System API JSON → typed values: device nodes, list shapes, audio channels, battery, events, problems.

I/O-free: every function takes parsed JSON (or text) and returns frozen dataclasses or raises
:class:`CodecError` naming what was wrong. Shapes follow reference/shure.md §5 (JB's real-server probe
and mock, DM's real-deployment log). Where the reference is unsure, the parser is tolerant and says so:

* ``GET /devices`` is Relay pagination ``{pageInfo, edges:[{cursor,node}]}`` in the v1.8 spec, a bare
  array in the Getting Started guide and ``{items}`` in one mock mode: all three are accepted.
* The audio channel id is opaque base64 of JSON; the index inside (``i`` on Axient PSM, ``index`` on
  others per JB) is only a hint for ordering, never required.
* The API carries no RF, frequency or battery-bar data (JB README): nothing here produces them.
"""

from __future__ import annotations

import base64
import binascii
import enum
import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from ....model import TolerantEnum

MAX_EXCERPT: Final = 120  # characters of bad input quoted in a log line
MAX_CHANNELS: Final = 64  # more audio channels than any Shure device has: a parser problem, not a device
MAX_NAME: Final = 128  # names longer than this are cut; device names are ≤ 31 characters on the hardware

# ISO-8601 duration as the server writes timeToTargetState (``PT853M``); days, hours, minutes, seconds.
_DURATION_RE: Final = re.compile(
    r"^P(?:(?P<d>\d+(?:\.\d+)?)D)?(?:T(?:(?P<h>\d+(?:\.\d+)?)H)?(?:(?P<m>\d+(?:\.\d+)?)M)?(?:(?P<s>\d+(?:\.\d+)?)S)?)?$"
)


class CodecError(ValueError):
    """JSON that does not have the shape the System API documents; the message names the part."""


def excerpt(value: Any, limit: int = MAX_EXCERPT) -> str:
    """A short, printable rendering of bad input for a log line (never a whole payload)."""
    text = value if isinstance(value, str) else json.dumps(value, default=str)[: limit * 2]
    text = text.replace("\r", "\\r").replace("\n", "\\n")
    return text if len(text) <= limit else text[:limit] + "…"


# ----------------------------------------------------------------------------- vocabularies


class NodeState(TolerantEnum):
    """``deviceState`` of a device node."""

    UNKNOWN = "unknown"
    ONLINE = "ONLINE"
    OFFLINE = "OFFLINE"
    DISCOVERED = "DISCOVERED"  # seen on the network, not (yet) under the server's control; reduced identity


class Compatibility(TolerantEnum):
    """``compatibility`` of a device node (DM also names INCOMPATIBLE_TOO_NEW)."""

    UNKNOWN = "unknown"
    COMPATIBLE_LATEST = "COMPATIBLE_LATEST"
    COMPATIBLE_OLD = "COMPATIBLE_OLD"
    COMPATIBLE = "COMPATIBLE"
    INCOMPATIBLE_TOO_OLD = "INCOMPATIBLE_TOO_OLD"
    INCOMPATIBLE_TOO_NEW = "INCOMPATIBLE_TOO_NEW"

    @property
    def incompatible(self) -> bool:
        return self in (Compatibility.INCOMPATIBLE_TOO_OLD, Compatibility.INCOMPATIBLE_TOO_NEW)


class BatteryState(TolerantEnum):
    """``status.currentState`` / ``targetState`` of ``battery-level`` (DeviceBatteryState)."""

    UNKNOWN = "unknown"
    CHARGING = "CHARGING"
    DISCHARGING = "DISCHARGING"
    FULL = "FULL"
    EMPTY = "EMPTY"
    CALCULATING = "CALCULATING"
    OPTIMAL_STORAGE = "OPTIMAL_STORAGE"


class Activity(TolerantEnum):
    """``audioLevel`` of a channel's ``activity`` (the only audio signal the API has)."""

    UNKNOWN = "unknown"
    LOW = "LOW"
    GOOD = "GOOD"
    CLIPPING = "CLIPPING"


class EventName(TolerantEnum):
    """``envelope.eventName`` of a WebSocket event (reference §5, step 4)."""

    UNKNOWN = "unknown"
    DEVICE_STATE_CHANGE = "DEVICE_STATE_CHANGE"
    DEVICE_NAME = "DEVICE_NAME"
    DEVICE_IDENTIFY = "DEVICE_IDENTIFY"
    DEVICE_AUDIO_MUTE = "DEVICE_AUDIO_MUTE"
    DEVICE_BATTERY_LEVEL = "DEVICE_BATTERY_LEVEL"
    DEVICE_BATTERY_HEALTH = "DEVICE_BATTERY_HEALTH"
    AUDIO_CHANNEL_MUTE = "AUDIO_CHANNEL_MUTE"
    AUDIO_CHANNEL_GAIN = "AUDIO_CHANNEL_GAIN"
    AUDIO_CHANNEL_NAME = "AUDIO_CHANNEL_NAME"
    AUDIO_CHANNEL_ACTIVITY = "AUDIO_CHANNEL_ACTIVITY"


class Cap(enum.StrEnum):
    """Capability strings this adapter acts on (device list ``capabilities``, channel ``capabilities``)."""

    NAME = "name"
    IDENTIFY = "identify"
    AUDIO_MUTE = "audio-mute"
    BATTERY_LEVEL = "battery-level"  # inferred from the endpoint path by JB, not seen on hardware (UNVERIFIED)
    BATTERY_HEALTH = "battery-health"  # same
    AUDIO_CHANNELS = "audio-channels"
    MUTE = "mute"  # channel capabilities from here on
    GAIN = "gain"
    ACTIVITY = "activity"


# Device-level property → (subscription path segment, event it produces); channel-level likewise.
DEVICE_SUBSCRIPTIONS: Final[Mapping[Cap, EventName]] = {
    Cap.NAME: EventName.DEVICE_NAME,
    Cap.IDENTIFY: EventName.DEVICE_IDENTIFY,
    Cap.AUDIO_MUTE: EventName.DEVICE_AUDIO_MUTE,
    Cap.BATTERY_LEVEL: EventName.DEVICE_BATTERY_LEVEL,
    Cap.BATTERY_HEALTH: EventName.DEVICE_BATTERY_HEALTH,
}
CHANNEL_SUBSCRIPTIONS: Final[Mapping[Cap, EventName]] = {
    Cap.MUTE: EventName.AUDIO_CHANNEL_MUTE,
    Cap.GAIN: EventName.AUDIO_CHANNEL_GAIN,
    Cap.NAME: EventName.AUDIO_CHANNEL_NAME,
    Cap.ACTIVITY: EventName.AUDIO_CHANNEL_ACTIVITY,
}


# ----------------------------------------------------------------------------- device nodes


@dataclass(frozen=True, slots=True)
class DeviceNode:
    """One device as ``GET /devices`` (or a DEVICE_STATE_CHANGE body) describes it."""

    device_id: str  # hardwareIdentity.deviceId: the server's handle, used in every URL
    serial: str | None
    model: str | None
    firmware: str | None
    firmware_valid: bool | None
    state: NodeState
    compatibility: Compatibility
    address: str | None
    protocol: str | None
    capabilities: frozenset[str]
    name: str | None = None  # only if the node itself carries one (not in the documented shape)

    def has(self, cap: Cap | str) -> bool:
        return str(cap) in self.capabilities

    @property
    def identity(self) -> str:
        """What makes a stable child id: the serial when known, else the server's device id."""
        return self.serial or self.device_id


def _str(value: Any) -> str | None:
    if isinstance(value, str) and value.strip():
        return value.strip()
    return None


def _obj(value: Any, what: str) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise CodecError(f"{what} must be an object, got {type(value).__name__}")
    return value


def parse_device_node(raw: Any) -> DeviceNode:
    """One device node; CodecError when it has no usable ``hardwareIdentity.deviceId``."""
    if not isinstance(raw, Mapping):
        raise CodecError(f"device node must be an object, got {type(raw).__name__}: {excerpt(raw)}")
    hw = _obj(raw.get("hardwareIdentity"), "hardwareIdentity")
    sw = _obj(raw.get("softwareIdentity"), "softwareIdentity")
    comm = _obj(raw.get("communicationProtocol"), "communicationProtocol")
    device_id = _str(hw.get("deviceId"))
    if device_id is None:
        raise CodecError(f"device node without hardwareIdentity.deviceId: {excerpt(raw)}")
    caps_raw = raw.get("capabilities")
    caps: frozenset[str] = frozenset()
    if isinstance(caps_raw, list):
        caps = frozenset(c for c in caps_raw if isinstance(c, str))
    elif caps_raw is not None:
        raise CodecError(f"capabilities of {device_id} must be a list, got {excerpt(caps_raw)}")
    valid = sw.get("firmwareValid")
    name = _str(raw.get("name"))
    return DeviceNode(
        device_id=device_id,
        serial=_str(hw.get("serialNumber")),
        model=_str(sw.get("model")),
        firmware=_str(sw.get("firmwareVersion")),
        firmware_valid=valid if isinstance(valid, bool) else None,
        state=NodeState(str(raw.get("deviceState", "unknown"))),
        compatibility=Compatibility(str(raw.get("compatibility", "unknown"))),
        address=_str(comm.get("address")),
        protocol=_str(comm.get("name")),
        capabilities=caps,
        name=name[:MAX_NAME] if name else None,
    )


@dataclass(frozen=True, slots=True)
class DevicePage:
    """One answer of ``GET /devices``: its nodes, the nodes that could not be read, and where the next page is."""

    nodes: tuple[DeviceNode, ...]
    rejected: tuple[str, ...]  # one text per node that could not be parsed (for a log line)
    shape: str  # "relay", "array" or "items"
    has_next: bool = False
    end_cursor: str | None = None


def parse_device_list(raw: Any) -> DevicePage:
    """A device list in any of the three shapes; one bad node is reported, never fatal to the page."""
    shape: str
    items: Sequence[Any]
    has_next = False
    end_cursor: str | None = None
    if isinstance(raw, list):
        shape, items = "array", raw
    elif isinstance(raw, Mapping) and isinstance(raw.get("edges"), list):
        shape = "relay"
        items = []
        for edge in raw["edges"]:
            items.append(edge.get("node") if isinstance(edge, Mapping) else edge)
        info = raw.get("pageInfo")
        if isinstance(info, Mapping):
            has_next = info.get("hasNextPage") is True
            end_cursor = _str(info.get("endCursor"))
        if end_cursor is None and raw["edges"]:
            last = raw["edges"][-1]
            end_cursor = _str(last.get("cursor")) if isinstance(last, Mapping) else None
    elif isinstance(raw, Mapping) and isinstance(raw.get("items"), list):
        shape, items = "items", raw["items"]
    else:
        raise CodecError(f"device list is neither an array, {{edges}} nor {{items}}: {excerpt(raw)}")
    nodes: list[DeviceNode] = []
    rejected: list[str] = []
    for item in items:
        try:
            nodes.append(parse_device_node(item))
        except CodecError as exc:
            rejected.append(str(exc))
    return DevicePage(tuple(nodes), tuple(rejected), shape, has_next, end_cursor)


# ----------------------------------------------------------------------------- audio channels


@dataclass(frozen=True, slots=True)
class AudioChannelInfo:
    """One entry of ``GET /devices/{id}/audio-channels``; ``channel_id`` is opaque and goes URL-encoded."""

    channel_id: str
    role: str | None
    group: str | None
    capabilities: frozenset[str]
    index_hint: int | None  # 0-based index decoded from the id, when it decodes

    def has(self, cap: Cap | str) -> bool:
        return str(cap) in self.capabilities


def decode_channel_id(channel_id: str) -> Mapping[str, Any] | None:
    """The JSON inside an audio channel id (``{"t":"AudioChannel",…,"i":0}``), or None when it is not that."""
    text = channel_id.strip()
    padded = text + "=" * (-len(text) % 4)
    for decoder in (base64.b64decode, base64.urlsafe_b64decode):
        try:
            value = json.loads(decoder(padded.encode("ascii")).decode("utf-8"))
        except (binascii.Error, ValueError, UnicodeError):
            continue
        if isinstance(value, Mapping):
            return value
    return None


def _index_hint(channel_id: str) -> int | None:
    decoded = decode_channel_id(channel_id)
    if decoded is None:
        return None
    for key in ("i", "index"):
        value = decoded.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < MAX_CHANNELS:
            return value
    return None


def parse_audio_channels(raw: Any) -> list[AudioChannelInfo]:
    """The channel list (bare array or ``{items}``); entries without an id are dropped with a CodecError."""
    items = raw.get("items") if isinstance(raw, Mapping) else raw
    if not isinstance(items, list):
        raise CodecError(f"audio-channels is neither an array nor {{items}}: {excerpt(raw)}")
    if len(items) > MAX_CHANNELS:
        raise CodecError(f"audio-channels lists {len(items)} channels (more than {MAX_CHANNELS})")
    out: list[AudioChannelInfo] = []
    for item in items:
        if not isinstance(item, Mapping) or _str(item.get("id")) is None:
            raise CodecError(f"audio channel without an id: {excerpt(item)}")
        caps = item.get("capabilities")
        caps_set = frozenset(c for c in caps if isinstance(c, str)) if isinstance(caps, list) else frozenset()
        channel_id = str(item["id"]).strip()
        out.append(
            AudioChannelInfo(
                channel_id=channel_id,
                role=_str(item.get("role")),
                group=_str(item.get("group")),
                capabilities=caps_set,
                index_hint=_index_hint(channel_id),
            )
        )
    return out


def number_channels(channels: Sequence[AudioChannelInfo]) -> list[tuple[int, AudioChannelInfo]]:
    """Front-panel numbers (1-based) for the channels.

    By the index decoded from each id when every id decodes to a distinct index (the server's own
    numbering), otherwise by list order: the listing is then the only order there is.
    """
    hints = [c.index_hint for c in channels]
    if channels and all(h is not None for h in hints) and len(set(hints)) == len(hints):
        ordered = sorted(channels, key=lambda c: c.index_hint or 0)
        return [(n + 1, c) for n, c in enumerate(ordered)]
    return [(n + 1, c) for n, c in enumerate(channels)]


# ----------------------------------------------------------------------------- property bodies


def parse_name(raw: Any) -> str:
    """``{name}`` (device or channel)."""
    if isinstance(raw, Mapping) and isinstance(raw.get("name"), str):
        return str(raw["name"])[:MAX_NAME]
    raise CodecError(f"expected {{name: string}}, got {excerpt(raw)}")


def parse_flag(raw: Any, key: str) -> bool:
    """``{muted}`` / ``{identifying}``: a JSON boolean, nothing else."""
    if isinstance(raw, Mapping) and isinstance(raw.get(key), bool):
        return bool(raw[key])
    raise CodecError(f"expected {{{key}: true|false}}, got {excerpt(raw)}")


def parse_gain(raw: Any) -> float:
    """``{gain}`` in dB."""
    if isinstance(raw, Mapping):
        value = raw.get("gain")
        if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
            return float(value)
    raise CodecError(f"expected {{gain: number}}, got {excerpt(raw)}")


def parse_activity(raw: Any) -> Activity:
    """``{audioLevel: LOW|GOOD|CLIPPING}``."""
    if isinstance(raw, Mapping) and isinstance(raw.get("audioLevel"), str):
        return Activity(raw["audioLevel"])
    raise CodecError(f"expected {{audioLevel: LOW|GOOD|CLIPPING}}, got {excerpt(raw)}")


@dataclass(frozen=True, slots=True)
class GainRange:
    """``gain/description`` → ``constraints.gain.range``."""

    min_db: float
    max_db: float
    step_db: float | None

    def contains(self, value: float) -> bool:
        return self.min_db - 1e-9 <= value <= self.max_db + 1e-9

    def on_step(self, value: float) -> bool:
        if not self.step_db:
            return True
        steps = (value - self.min_db) / self.step_db
        return abs(steps - round(steps)) < 1e-6

    @property
    def tolerance(self) -> float:
        """How close an echoed gain must be to count as the value asked for."""
        return (self.step_db or 0.02) / 2


def parse_gain_description(raw: Any) -> GainRange:
    """``{constraints:{gain:{range:{min,max,step}}}}``."""
    try:
        rng = raw["constraints"]["gain"]["range"]
        lo, hi = rng["min"], rng["max"]
        step = rng.get("step")
    except (KeyError, TypeError, AttributeError):
        raise CodecError(f"gain description without constraints.gain.range: {excerpt(raw)}") from None
    nums = (lo, hi) + ((step,) if step is not None else ())
    if not all(isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) for v in nums):
        raise CodecError(f"gain range values must be numbers: {excerpt(rng)}")
    if lo > hi or (step is not None and step < 0):
        raise CodecError(f"gain range is empty or has a negative step: {excerpt(rng)}")
    return GainRange(float(lo), float(hi), float(step) if step else None)


def parse_duration_minutes(value: Any) -> int | None:
    """ISO-8601 duration (``PT853M``, ``PT14H13M``, ``P1DT2H``) → whole minutes; None when absent or not one."""
    if not isinstance(value, str):
        return None
    m = _DURATION_RE.match(value.strip().upper())
    if m is None or value.strip().upper() in ("P", "PT"):
        return None
    total = (
        float(m["d"] or 0) * 1440 + float(m["h"] or 0) * 60 + float(m["m"] or 0) + float(m["s"] or 0) / 60
    )
    return round(total) if math.isfinite(total) else None  # 400 digits make an infinite float


@dataclass(frozen=True, slots=True)
class BatteryLevel:
    """``battery-level`` in model units: percent, charging flag and runtime while discharging."""

    percent: int | None
    state: BatteryState
    target: BatteryState
    runtime_minutes: int | None  # only while discharging: time to EMPTY is the runtime left
    charging: bool | None
    time_to_target_minutes: int | None  # whatever the server said, for the log


def parse_battery_level(raw: Any) -> BatteryLevel:
    """``{percentage, status:{currentState, targetState, timeToTargetState}}``."""
    if not isinstance(raw, Mapping):
        raise CodecError(f"battery-level must be an object, got {excerpt(raw)}")
    pct = raw.get("percentage")
    percent: int | None = None
    if isinstance(pct, int | float) and not isinstance(pct, bool) and math.isfinite(pct) and 0 <= pct <= 100:
        percent = round(pct)
    elif pct is not None:
        raise CodecError(f"battery percentage {excerpt(pct)} is not 0..100")
    status = _obj(raw.get("status"), "battery status")
    state = BatteryState(str(status.get("currentState") or "unknown"))
    target = BatteryState(str(status.get("targetState") or "unknown"))
    to_target = parse_duration_minutes(status.get("timeToTargetState"))
    discharging = state is BatteryState.DISCHARGING and target in (BatteryState.EMPTY, BatteryState.UNKNOWN)
    charging: bool | None
    if state is BatteryState.CHARGING:
        charging = True
    elif state in (BatteryState.UNKNOWN, BatteryState.CALCULATING):
        charging = None
    else:
        charging = False
    return BatteryLevel(
        percent=percent,
        state=state,
        target=target,
        runtime_minutes=to_target if discharging else None,
        charging=charging,
        time_to_target_minutes=to_target,
    )


@dataclass(frozen=True, slots=True)
class BatteryHealth:
    percent: int | None
    cycles: int | None


def parse_battery_health(raw: Any) -> BatteryHealth:
    """``{percentage, cycleCount}``."""
    if not isinstance(raw, Mapping):
        raise CodecError(f"battery-health must be an object, got {excerpt(raw)}")
    pct, cycles = raw.get("percentage"), raw.get("cycleCount")
    percent: int | None = None
    if isinstance(pct, int | float) and not isinstance(pct, bool) and math.isfinite(pct) and 0 <= pct <= 100:
        percent = round(pct)
    count = cycles if isinstance(cycles, int) and not isinstance(cycles, bool) and cycles >= 0 else None
    return BatteryHealth(percent, count)


# ----------------------------------------------------------------------------- WebSocket messages


@dataclass(frozen=True, slots=True)
class Hello:
    """The first WebSocket message: the transport our REST subscriptions bind to."""

    transport_id: str


@dataclass(frozen=True, slots=True)
class Event:
    """One pushed event: ``{"envelope":{eventName, deviceId, audioChannelId?}, "body":{…}}``."""

    name: EventName
    raw_name: str
    device_id: str | None
    channel_id: str | None
    body: Any


def parse_message(text: str | bytes) -> Hello | Event:
    """One WebSocket message; CodecError (with an excerpt) for anything that is not a hello or an event."""
    try:
        data = json.loads(text)
    except (ValueError, UnicodeDecodeError) as exc:
        shown = text if isinstance(text, str) else text.decode("utf-8", "replace")
        raise CodecError(f"not JSON ({exc}): {excerpt(shown)}") from None
    if not isinstance(data, Mapping):
        raise CodecError(f"message is not an object: {excerpt(data)}")
    if "envelope" not in data:
        transport = _str(data.get("transportId"))
        if transport is not None:
            return Hello(transport)
        raise CodecError(f"message has neither envelope nor transportId: {excerpt(data)}")
    envelope = data["envelope"]
    if not isinstance(envelope, Mapping) or _str(envelope.get("eventName")) is None:
        raise CodecError(f"envelope without eventName: {excerpt(data)}")
    raw_name = str(envelope["eventName"]).strip()
    return Event(
        name=EventName(raw_name),
        raw_name=raw_name,
        device_id=_str(envelope.get("deviceId")),
        channel_id=_str(envelope.get("audioChannelId")),
        body=data.get("body"),
    )


# ----------------------------------------------------------------------------- errors


@dataclass(frozen=True, slots=True)
class Problem:
    """An RFC 7807 problem body (``{type,title,status,detail,instance,traceId}``) as far as it was given."""

    status: int | None
    title: str | None
    detail: str | None

    def text(self) -> str:
        """``title: detail`` for a log line or error message; empty when the body said nothing."""
        parts = [p for p in (self.title, self.detail) if p]
        if len(parts) == 2 and parts[1].startswith(parts[0]):
            parts = parts[1:]
        return ": ".join(parts)


def parse_problem(raw: Any) -> Problem:
    """Problem JSON, or the ``{message}`` shape JB's mock uses; never raises (errors must stay reportable)."""
    if not isinstance(raw, Mapping):
        return Problem(None, None, excerpt(raw) if isinstance(raw, str) and raw else None)
    status = raw.get("status")
    title = _str(raw.get("title"))
    detail = _str(raw.get("detail")) or _str(raw.get("message"))
    return Problem(
        status if isinstance(status, int) and not isinstance(status, bool) else None,
        excerpt(title) if title else None,
        excerpt(detail) if detail else None,
    )
