"""SSCv2 wire codec, I/O-free: Server-Sent-Events framing and the SSCv2 payloads carried over it.

Bytes in, frozen dataclasses out. Three layers, each a pure function of its input:

* :class:`SseDecoder` frames an ``text/event-stream`` byte stream into :class:`SseEvent` records
  (WHATWG rules: ``\\r\\n``, ``\\r`` or ``\\n`` line ends, optional space after the colon, comments,
  multi-line ``data:``), with line and event size limits;
* :func:`parse_event` turns an SSE event into an SSCv2 event: ``open`` (the session), ``message``
  (a JSON object of resource path → resource JSON, several paths per event) or ``close``;
* :func:`decode_resource` maps one resource's JSON into normalized units (dBm, dBFS, kHz, minutes,
  percent; sentinels and "no transmitter" become ``None``).

Protocol facts: reference/sennheiser-and-others.md §1 (EW-DX service API 1.7 OpenAPI, the Spectera
and EW-DX Companion clients). Where the reference marks something unverified the decoder accepts
every form seen in the sources; each such place says so.
"""

from __future__ import annotations

import enum
import json
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

MAX_LINE_BYTES: Final = 64 * 1024  # one SSCv2 notification line is a few KiB; 64 KiB is generous
MAX_EVENT_BYTES: Final = 256 * 1024  # a full EM4 snapshot after /add is ~10 KiB; cap runaway streams
EXCERPT_CHARS: Final = 80  # how much of a bad payload a log line shows

SUBSCRIPTIONS_PATH: Final = "/api/ssc/state/subscriptions"
_UUID_RE: Final = re.compile(r"^[0-9A-Za-z][0-9A-Za-z_-]{0,127}$")  # UUIDs; tolerate other opaque ids


# ============================================================================ SSE framing


class SseFramingError(ValueError):
    """The stream broke the framing limits (over-long line or event); the link must be dropped."""


@dataclass(frozen=True, slots=True)
class SseEvent:
    """One dispatched SSE event; ``event`` is ``"message"`` when the stream gave no ``event:`` line."""

    event: str = "message"
    data: str = ""
    id: str | None = None
    retry: int | None = None


class SseDecoder:
    """Incremental SSE parser: feed any split of the byte stream, get complete events back.

    Deviation from the browser algorithm, on purpose: an event that names its type (``event: close``)
    is dispatched even with no ``data:`` line, because the SSCv2 ``close`` payload is undocumented
    (reference §1.4) and a decoder that swallowed a bare ``close`` would miss the end of a session.
    An event with neither a type nor data (a lone ``id:``/``retry:``) is still not dispatched.
    """

    def __init__(self, *, max_line: int = MAX_LINE_BYTES, max_event: int = MAX_EVENT_BYTES) -> None:
        self.max_line = max_line
        self.max_event = max_event
        self._buf = bytearray()
        self._pending_cr = False  # the last chunk ended in CR: a following LF belongs to that line end
        self._first_line = True  # a UTF-8 BOM is only allowed at the very start of the stream
        self._event: str | None = None
        self._data: list[str] = []
        self._event_bytes = 0
        self._id: str | None = None
        self._retry: int | None = None

    def feed(self, chunk: bytes) -> list[SseEvent]:
        """Consume bytes; return every event completed by them (possibly none)."""
        out: list[SseEvent] = []
        start = 0
        n = len(chunk)
        if self._pending_cr and n:
            self._pending_cr = False
            if chunk[0] == 0x0A:
                start = 1
        while start < n:
            cr = chunk.find(b"\r", start)
            lf = chunk.find(b"\n", start)
            ends = [p for p in (cr, lf) if p != -1]
            if not ends:
                self._buf += chunk[start:]
                self._check_line_length()
                break
            end = min(ends)
            self._buf += chunk[start:end]
            self._check_line_length()
            line = bytes(self._buf)
            self._buf.clear()
            if chunk[end] == 0x0D:
                if end + 1 < n:
                    start = end + 2 if chunk[end + 1] == 0x0A else end + 1
                else:
                    self._pending_cr = True
                    start = n
            else:
                start = end + 1
            event = self._line(line)
            if event is not None:
                out.append(event)
        return out

    def _check_line_length(self) -> None:
        if len(self._buf) > self.max_line:
            size = len(self._buf)
            self._buf.clear()
            raise SseFramingError(f"SSE line longer than {self.max_line} bytes ({size}+ bytes without a line end)")

    def _line(self, raw: bytes) -> SseEvent | None:
        if self._first_line:
            self._first_line = False
            if raw.startswith(b"\xef\xbb\xbf"):
                raw = raw[3:]
        if not raw:
            return self._dispatch()
        if raw[:1] == b":":
            return None  # comment (keep-alive); nothing to do
        text = raw.decode("utf-8", errors="replace")
        name, colon, value = text.partition(":")
        if colon and value.startswith(" "):
            value = value[1:]  # exactly one optional space: "data:x" and "data: x" are the same
        if name == "data":
            self._event_bytes += len(raw)
            if self._event_bytes > self.max_event:
                self._reset()
                raise SseFramingError(f"SSE event larger than {self.max_event} bytes")
            self._data.append(value)
        elif name == "event":
            self._event = value
        elif name == "id":
            if "\0" not in value:
                self._id = value
        elif name == "retry" and value.isdigit():
            self._retry = int(value)
        # any other field name is ignored, as the standard says
        return None

    def _dispatch(self) -> SseEvent | None:
        if not self._data and not self._event:
            self._reset()
            return None
        event = SseEvent(
            event=self._event or "message",
            data="\n".join(self._data),
            id=self._id,
            retry=self._retry,
        )
        self._reset()
        return event

    def _reset(self) -> None:
        self._event = None
        self._data = []
        self._event_bytes = 0
        self._retry = None  # the last event id persists across events, as in the standard


# ============================================================================ SSCv2 events


class EventDataError(ValueError):
    """An SSCv2 event whose payload is not what the protocol says (bad JSON, wrong shape)."""

    def __init__(self, message: str, payload: str) -> None:
        super().__init__(message)
        self.excerpt = excerpt(payload)


def excerpt(text: str, limit: int = EXCERPT_CHARS) -> str:
    """A short, single-line, quoted piece of a payload for a log line."""
    cut = text if len(text) <= limit else text[:limit] + "…"
    return repr(cut)


@dataclass(frozen=True, slots=True)
class OpenEvent:
    """The first event of a subscription stream: the session to manage with PUT …/add."""

    session: str
    path: str


@dataclass(frozen=True, slots=True)
class DataEvent:
    """A notification: resource path → that resource's JSON (``None`` means the item is gone)."""

    resources: tuple[tuple[str, Any], ...]


@dataclass(frozen=True, slots=True)
class CloseEvent:
    """The device ended the session (lifetime, too many sessions, restart); payload undocumented."""

    detail: str


@dataclass(frozen=True, slots=True)
class OtherEvent:
    """An event type SSCv2 does not define; ignored by the adapter."""

    name: str


SscEvent = OpenEvent | DataEvent | CloseEvent | OtherEvent


def normalize_path(path: str) -> str:
    """``/device/site`` → ``/api/device/site``: the OAS examples spell paths both ways (reference §1.4)."""
    p = path.strip()
    if len(p) > 1:
        p = p.rstrip("/")
    if not p.startswith("/"):
        p = "/" + p
    if p != "/api" and not p.startswith("/api/"):
        p = "/api" + p
    return p


def session_from_location(value: str | None) -> str | None:
    """The session id in a ``Content-Location`` header: a bare UUID (OAS) or a full path (other clients)."""
    if not value:
        return None
    tail = value.strip().rstrip("/").rsplit("/", 1)[-1]
    return tail if _UUID_RE.match(tail) else None


def parse_event(event: SseEvent) -> SscEvent:
    """Classify one SSE event; raises EventDataError for a payload that is not valid SSCv2."""
    name = event.event
    if name == "open":
        return _parse_open(event.data)
    if name == "close":
        return CloseEvent(detail=event.data)
    if name != "message":
        return OtherEvent(name=name)
    try:
        payload = json.loads(event.data)
    except json.JSONDecodeError as exc:
        raise EventDataError(f"notification is not JSON ({exc.msg} at {exc.pos})", event.data) from None
    if not isinstance(payload, dict):
        raise EventDataError(f"notification is a JSON {type(payload).__name__}, not an object", event.data)
    resources: list[tuple[str, Any]] = []
    for key, value in payload.items():
        if not isinstance(key, str) or not key.strip():
            raise EventDataError("notification has an empty resource path", event.data)
        resources.append((normalize_path(key), value))
    return DataEvent(resources=tuple(resources))


def _parse_open(data: str) -> OpenEvent:
    text = data.strip()
    try:
        payload = json.loads(text) if text else None
    except ValueError:
        payload = None
    if isinstance(payload, dict):
        session = payload.get("sessionUUID")
        path = payload.get("path")
        if isinstance(session, str) and _UUID_RE.match(session):
            return OpenEvent(session=session, path=path if isinstance(path, str) else f"{SUBSCRIPTIONS_PATH}/{session}")
        if isinstance(path, str):
            tail = session_from_location(path)
            if tail:
                return OpenEvent(session=tail, path=path)
    elif text and _UUID_RE.match(text):  # a bare id as the payload: tolerated, not seen in any source
        return OpenEvent(session=text, path=f"{SUBSCRIPTIONS_PATH}/{text}")
    raise EventDataError("open event carries no session id", data)


# ============================================================================ SSCv2 resources


class ResourceError(ValueError):
    """A known resource whose JSON has the wrong shape; the message names what was wrong."""


class Res(enum.StrEnum):
    """The SSCv2 resources micboardd reads (EW-DX service API 1.7)."""

    VERSION = "version"
    IDENTITY = "identity"
    SITE = "site"
    STATE = "state"
    IDENTIFICATION = "identification"
    FIRMWARE = "firmware"
    RF = "rf"
    ENCRYPTION = "encryption"
    TX_LIST = "tx_list"
    CHANNEL = "channel"
    CHANNEL_WARNINGS = "channel_warnings"
    CHANNEL_IDENTIFY = "channel_identify"
    FREQUENCY = "frequency"
    RSSI = "rssi"
    RSQI = "rsqi"
    DIVERSITY = "diversity"
    LEVEL = "level"
    TX = "tx"
    BATTERY = "battery"
    TX_WARNINGS = "tx_warnings"


# path patterns, 0-based ids on the wire (EM2: 0..1, EM4: 0..3)
_DEVICE_PATHS: Final[Mapping[str, Res]] = {
    "/api/ssc/version": Res.VERSION,
    "/api/device/identity": Res.IDENTITY,
    "/api/device/site": Res.SITE,
    "/api/device/state": Res.STATE,
    "/api/device/identification": Res.IDENTIFICATION,
    "/api/firmware/update/state": Res.FIRMWARE,
    "/api/rf": Res.RF,
    "/api/rf/encryption": Res.ENCRYPTION,
    "/api/transmitters": Res.TX_LIST,
}
_CHANNEL_PATHS: Final = (
    (re.compile(r"^/api/channel/(\d+)$"), Res.CHANNEL),
    (re.compile(r"^/api/channel/(\d+)/warnings$"), Res.CHANNEL_WARNINGS),
    (re.compile(r"^/api/channel/(\d+)/identify$"), Res.CHANNEL_IDENTIFY),
    (re.compile(r"^/api/channel/(\d+)/signalStrengthIndicator$"), Res.RSSI),
    (re.compile(r"^/api/channel/(\d+)/signalQualityIndicator$"), Res.RSQI),
    (re.compile(r"^/api/channel/(\d+)/diversityIndicator$"), Res.DIVERSITY),
    (re.compile(r"^/api/channel/(\d+)/level$"), Res.LEVEL),
    (re.compile(r"^/api/rf/channels/(\d+)$"), Res.FREQUENCY),
    (re.compile(r"^/api/transmitters/(\d+)$"), Res.TX),
    (re.compile(r"^/api/transmitters/(\d+)/battery$"), Res.BATTERY),
    (re.compile(r"^/api/transmitters/(\d+)/warnings$"), Res.TX_WARNINGS),
)
_CHANNEL_TEMPLATES: Final[Mapping[Res, str]] = {
    Res.CHANNEL: "/api/channel/{i}",
    Res.CHANNEL_WARNINGS: "/api/channel/{i}/warnings",
    Res.CHANNEL_IDENTIFY: "/api/channel/{i}/identify",
    Res.RSSI: "/api/channel/{i}/signalStrengthIndicator",
    Res.RSQI: "/api/channel/{i}/signalQualityIndicator",
    Res.DIVERSITY: "/api/channel/{i}/diversityIndicator",
    Res.LEVEL: "/api/channel/{i}/level",
    Res.FREQUENCY: "/api/rf/channels/{i}",
    Res.TX: "/api/transmitters/{i}",
    Res.BATTERY: "/api/transmitters/{i}/battery",
    Res.TX_WARNINGS: "/api/transmitters/{i}/warnings",
}
_DEVICE_TEMPLATES: Final[Mapping[Res, str]] = {res: path for path, res in _DEVICE_PATHS.items()}
METER_RESOURCES: Final = (Res.RSSI, Res.RSQI, Res.DIVERSITY, Res.LEVEL)


def resource_path(res: Res, index: int | None = None) -> str:
    """The wire path of a resource; ``index`` is the 1-based channel number (the wire id is index-1)."""
    if index is None:
        return _DEVICE_TEMPLATES[res]
    return _CHANNEL_TEMPLATES[res].format(i=index - 1)


def classify(path: str) -> tuple[Res, int | None] | None:
    """Which resource a path is and its 1-based channel, or None for a path we do not read."""
    p = normalize_path(path)
    res = _DEVICE_PATHS.get(p)
    if res is not None:
        return res, None
    for pattern, res in _CHANNEL_PATHS:
        m = pattern.match(p)
        if m:
            return res, int(m.group(1)) + 1
    return None


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
    v = float(value)
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
    _set(ch, "frequency_khz", "frequency" in o, _int(o.get("frequency"), 1))
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
