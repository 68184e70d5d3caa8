"""Normalized domain types shared by every adapter, the hub and every sink; no I/O here.

Units: RF in dBm, audio in dBFS, frequency in kHz, runtime in minutes, battery in percent and
bars (0-5). ``None`` always means "unknown": adapters turn protocol sentinels (255, 65535, ``UNKN``,
``U``, HTTP 422 "no transmitter") into ``None`` before anything reaches the hub.
"""

from __future__ import annotations

import dataclasses
import enum
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

ID_RE: Final = re.compile(r"^[a-z0-9_-]{1,64}$")


def slugify(text: str) -> str:
    """Turn free text (a serial, MAC or host) into an id safe for topics and keys."""
    slug = re.sub(r"[^a-z0-9_-]+", "-", text.strip().lower()).strip("-")
    return slug[:64] or "device"


def valid_id(text: str) -> bool:
    """True for ids that may appear in MQTT topics and keys: ``[a-z0-9_-]{1,64}``."""
    return bool(ID_RE.match(text))


class TolerantEnum(enum.StrEnum):
    """A string enum that maps values it does not know to ``UNKNOWN`` instead of raising."""

    @classmethod
    def _missing_(cls, value: object) -> TolerantEnum:
        return cls("unknown")


class ConnState(TolerantEnum):
    """Where a device's connection stands, as the supervisor sees it."""

    UNKNOWN = "unknown"
    CONNECTING = "connecting"
    ONLINE = "online"
    DEGRADED = "degraded"  # connected, but something is off (silent channel access, partial data)
    OFFLINE = "offline"


class ErrorKind(TolerantEnum):
    """How a connection failure is treated: retried soon, retried at the cap, or a config problem."""

    UNKNOWN = "unknown"
    NONE = "none"
    RETRYABLE = "retryable"  # timeouts, resets, refused: back off and try again
    AUTH = "auth"  # wrong password / key: straight to the maximum backoff, clear log line
    TERMINAL = "terminal"  # the device is not what the config says; retried only at the cap
    PROTOCOL = "protocol"  # garbage or over-long frames; link dropped and retried


class Manufacturer(TolerantEnum):
    UNKNOWN = "unknown"
    SHURE = "shure"
    SENNHEISER = "sennheiser"


@dataclass(frozen=True, slots=True)
class Device:
    """A receiver, IEM transmitter, charger or access point, as the hub holds it."""

    device_id: str
    manufacturer: Manufacturer = Manufacturer.UNKNOWN
    family: str = ""  # adapter family key, e.g. "ulxd", "axient", "sscv2"
    model: str | None = None
    host: str = ""
    port: int = 0
    name: str | None = None
    firmware: str | None = None
    serial: str | None = None
    rf_band: str | None = None  # tuning band as the device names it (Shure RF_BAND, e.g. "G50")
    channel_count: int = 0
    state: ConnState = ConnState.CONNECTING
    error_kind: ErrorKind = ErrorKind.NONE
    last_error: str | None = None
    last_seen: float | None = None  # unix seconds of the last byte received
    stale: bool = False  # restored from the store; not yet confirmed by the device
    parent: str | None = None  # reached through this device (e.g. a Shure System API server), not directly

    @property
    def online(self) -> bool:
        return self.state in (ConnState.ONLINE, ConnState.DEGRADED)

    @property
    def key(self) -> str:
        return self.device_id


@dataclass(frozen=True, slots=True)
class Transmitter:
    """The body-pack or handheld linked to a channel; every field ``None`` while unknown."""

    present: bool | None = None
    model: str | None = None
    device_name: str | None = None  # the name stored in the transmitter itself, where reported
    battery_bars: int | None = None  # 0..5
    battery_percent: int | None = None  # 0..100
    runtime_minutes: int | None = None
    battery_type: str | None = None  # e.g. "LION", "ALKA", "NIMH", "BA70"
    battery_health_percent: int | None = None
    battery_cycles: int | None = None
    battery_temp_c: float | None = None
    charging: bool | None = None
    muted: bool | None = None
    lock: str | None = None  # "none", "power", "menu", "all"
    rf_power: str | None = None  # "low"/"normal"/"high" or "<n>mW"


# The transmitter fields an adapter resets when a transmitter is switched off or unlinked.
TX_ABSENT: Final = Transmitter(present=False)


@dataclass(frozen=True, slots=True)
class Channel:
    """One receive path ``<device_id>/<n>`` (1-based as on the front panel) and its transmitter."""

    device_id: str
    index: int
    name: str | None = None
    frequency_khz: int | None = None
    group_channel: str | None = None  # "g,c" as the receiver shows it; None when "--,--"
    gain_db: float | None = None
    muted: bool | None = None  # receiver output mute
    encryption: str | None = None  # "off", "on", "ok", "error", "auto", "manual"
    interference: bool | None = None
    warnings: tuple[str, ...] = ()  # manufacturer warnings mapped to stable lower-case words
    tx: Transmitter = field(default_factory=Transmitter)
    stale: bool = False

    @property
    def key(self) -> str:
        return channel_key(self.device_id, self.index)


def channel_key(device_id: str, index: int) -> str:
    return f"{device_id}/{index}"


def split_channel_key(key: str) -> tuple[str, int]:
    """``"rack1/2"`` → ``("rack1", 2)``; raises ValueError for anything else."""
    device_id, sep, idx = key.rpartition("/")
    if not sep or not device_id or not idx.isdigit() or int(idx) < 1:
        raise ValueError(f"not a channel key: {key!r} (expected '<device_id>/<n>', n ≥ 1)")
    return device_id, int(idx)


def battery_low(ch: Channel, bars_limit: int, minutes_limit: int) -> bool | None:
    """At or below the thresholds with a transmitter on; None while nothing is known.

    The one low-battery rule of MQTT's ``battery_low``, the API's low-battery filter and the status line
    (the alert engine adds its early warning one bar above).
    """
    tx = ch.tx
    if not tx.present:
        return None if tx.present is None else False
    if tx.battery_bars is None and tx.runtime_minutes is None:
        return None
    if tx.battery_bars is not None and tx.battery_bars <= bars_limit:
        return True
    return tx.runtime_minutes is not None and tx.runtime_minutes <= minutes_limit


@dataclass(frozen=True, slots=True)
class Meters:
    """Volatile, high-rate readings of one channel. Never revisioned, never retained, never stored."""

    device_id: str
    index: int
    rf_dbm: tuple[float | None, ...] = ()  # per antenna, A first
    active_antenna: str | None = None  # "A", "B", "AB", "1".."4" or None
    link_quality: int | None = None  # percent
    audio_rms_dbfs: float | None = None
    audio_peak_dbfs: float | None = None
    clip: bool = False
    at: float = 0.0  # unix seconds

    @property
    def key(self) -> str:
        return channel_key(self.device_id, self.index)

    @property
    def rf_best_dbm(self) -> float | None:
        values = [v for v in self.rf_dbm if v is not None]
        return max(values) if values else None

    @property
    def audio_dbfs(self) -> float | None:
        """The one audio level boards show: the peak where the device reports it, else the RMS."""
        return self.audio_peak_dbfs if self.audio_peak_dbfs is not None else self.audio_rms_dbfs


@dataclass(frozen=True, slots=True)
class SlotAlerts:
    """Per-slot alert settings; ``None`` uses the site default."""

    low_battery_bars: int | None = None
    low_runtime_minutes: int | None = None
    enabled: bool = True


@dataclass(frozen=True, slots=True)
class Slot:
    """A place on the board: the show names a performer; the slot points at whatever channel carries them."""

    slot: int
    channel: str | None = None  # channel key "<device_id>/<n>", or None when unassigned
    performer: str | None = None
    extended_name: str | None = None
    group: str | None = None
    alerts: SlotAlerts = field(default_factory=SlotAlerts)

    @property
    def key(self) -> str:
        return str(self.slot)


class AlertState(TolerantEnum):
    UNKNOWN = "unknown"
    ACTIVE = "active"
    ACKNOWLEDGED = "acknowledged"
    CLEARED = "cleared"


class Severity(TolerantEnum):
    UNKNOWN = "unknown"
    INFO = "info"
    WARNING = "warning"
    CRITICAL = "critical"

    @property
    def rank(self) -> int:
        """Order for escalation checks (string comparison would put 'critical' below 'warning')."""
        return ("unknown", "info", "warning", "critical").index(self.value)


@dataclass(frozen=True, slots=True)
class Alert:
    """One alert instance, keyed by rule and subject (``low_battery:rack1/2``)."""

    alert_id: str
    rule: str
    subject: str  # device id or channel key
    severity: Severity = Severity.WARNING
    state: AlertState = AlertState.ACTIVE
    message: str = ""
    raised_at: float = 0.0
    acknowledged_by: str | None = None
    cleared_at: float | None = None

    @property
    def key(self) -> str:
        return self.alert_id


class Kind(enum.StrEnum):
    """The kinds of entity the hub revisions."""

    DEVICE = "device"
    CHANNEL = "channel"
    SLOT = "slot"
    ALERT = "alert"


Entity = Device | Channel | Slot | Alert


def now() -> float:
    return time.time()


_SCALARS: Final = frozenset({str, int, float, bool, type(None)})
_FIELD_NAMES: dict[type, tuple[str, ...]] = {}  # per model class: dataclasses.fields() is slow on the hot path


def to_dict(obj: Any) -> dict[str, Any]:
    """A JSON-ready dict of a model object (enums as their values, tuples as lists).

    The store's writer, the MQTT mirror and the API all call this per change, so field names are cached
    per class and plain values return at once (about 7x faster than walking ``dataclasses.fields``).
    """
    names = _FIELD_NAMES.get(type(obj))
    if names is None:
        names = _FIELD_NAMES[type(obj)] = tuple(f.name for f in dataclasses.fields(obj))
    return {name: _plain(getattr(obj, name)) for name in names}


def _plain(value: Any) -> Any:
    typ = type(value)
    if typ in _SCALARS:
        return value
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    if typ in _FIELD_NAMES or (dataclasses.is_dataclass(value) and not isinstance(value, type)):
        return to_dict(value)
    return value


def replace_fields(obj: Any, changes: Mapping[str, Any]) -> Any:
    """``dataclasses.replace`` that names the bad key when an adapter sends a field that does not exist."""
    try:
        return dataclasses.replace(obj, **changes)
    except TypeError as exc:
        raise ValueError(f"{type(obj).__name__} has no field among {sorted(changes)}: {exc}") from exc


def from_dict(cls: type[Any], data: Mapping[str, Any]) -> Any:
    """Rebuild a model object from ``to_dict`` output (used by the store's restore)."""
    kwargs: dict[str, Any] = {}
    hints = {f.name: f for f in dataclasses.fields(cls)}
    for name, value in data.items():
        if name not in hints:
            continue  # a column from a newer schema; ignore rather than fail the restore
        kwargs[name] = value
    if cls is Channel:
        if isinstance(kwargs.get("tx"), Mapping):
            kwargs["tx"] = from_dict(Transmitter, kwargs["tx"])
        if "warnings" in kwargs and kwargs["warnings"] is not None:
            kwargs["warnings"] = tuple(kwargs["warnings"])
    if cls is Slot and isinstance(kwargs.get("alerts"), Mapping):
        kwargs["alerts"] = from_dict(SlotAlerts, kwargs["alerts"])
    enums: dict[str, type[TolerantEnum]] = {}
    if cls is Device:
        enums = {"manufacturer": Manufacturer, "state": ConnState, "error_kind": ErrorKind}
    elif cls is Alert:
        enums = {"severity": Severity, "state": AlertState}
    for key, enum_cls in enums.items():
        if kwargs.get(key) is not None:
            kwargs[key] = enum_cls(kwargs[key])
    return cls(**kwargs)
