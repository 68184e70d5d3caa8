"""The MQTT topic layout and the JSON payloads published on it: pure functions, no I/O.

Only ids from ``[a-z0-9_-]`` ever become topic levels; names and performers travel in payloads only.
Every builder refuses an id that does not match with :class:`TopicError`, so a bad id costs one log
line in the bridge and never a topic with a wildcard, a slash or someone's name in it.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from ..config import Config
from ..model import Alert, AlertState, Channel, Device, Meters, Slot, battery_low, to_dict, valid_id

SCHEMA: Final = "micboardd/1"  # MQTT v5 user property on every state message; bump on breaking payload changes
MAX_CHANNEL_INDEX: Final = 999  # receivers have 1..16 channels; anything longer in a topic is not ours
MAX_SLOT: Final = 99_999  # a board of a few hundred slots; bigger numbers in a topic are junk

# RF/audio summary bands for the slot view (the board's "is this mic alive" glance, not a meter).
RF_WEAK_DBM: Final = -85.0  # Shure/Sennheiser squelch sits around -90..-95 dBm; below -85 dropouts start
AUDIO_SILENT_DBFS: Final = -60.0  # quieter than this is a muted or idle mic on every family we read
AUDIO_CLIP_DBFS: Final = -1.0  # peaks this close to full scale are clipping in practice

TX_STATES: Final = ("on", "off", "muted", "charging", "unknown")

# Channel attributes published as flat topics (``<base>/channels/<id>/<n>/<attr>``) when enabled.
FLAT_CHANNEL_ATTRS: Final = (
    "name",
    "frequency_mhz",
    "tx_state",
    "battery_percent",
    "battery_bars",
    "runtime_minutes",
    "battery_low",
    "tx_model",
    "tx_muted",
    "muted",
)
# Leaves under a channel that are not flat attributes.
_CHANNEL_LEAVES: Final = frozenset({"state", "meter"})


class TopicError(ValueError):
    """An id or topic that must not be published or accepted (not ``[a-z0-9_-]{1,64}``, bad index)."""


def check_id(value: str, what: str = "device id") -> str:
    if not isinstance(value, str) or not valid_id(value):
        raise TopicError(f"{what} {value!r} is not [a-z0-9_-]{{1,64}}; refusing to put it in a topic")
    return value


def check_index(index: int) -> int:
    if isinstance(index, bool) or not isinstance(index, int) or not 1 <= index <= MAX_CHANNEL_INDEX:
        raise TopicError(f"channel index {index!r} is not 1..{MAX_CHANNEL_INDEX}")
    return index


def _small_number(text: str) -> bool:
    """Digits ``int()`` takes and that could be an index: ``isdigit()`` alone passes "²" and 5000-digit runs."""
    return text.isascii() and text.isdigit() and len(text) <= 9


@dataclass(frozen=True, slots=True)
class Topics:
    """Every topic the bridge publishes or subscribes to, for one site."""

    base: str
    site: str
    discovery_prefix: str = "homeassistant"

    @classmethod
    def from_config(cls, config: Config) -> Topics:
        base = config.mqtt.base_topic or f"micboard/{config.site}"
        return cls(base=base, site=check_id(config.site, "site"), discovery_prefix=config.mqtt.discovery_prefix)

    # ------------------------------------------------------------------ bridge-wide

    @property
    def status(self) -> str:
        return f"{self.base}/status"

    @property
    def alerts(self) -> str:
        return f"{self.base}/alerts"

    @property
    def alerts_active(self) -> str:
        return f"{self.base}/alerts/active"

    @property
    def errors(self) -> str:
        return f"{self.base}/errors"

    @property
    def results(self) -> str:
        return f"{self.base}/results"

    @property
    def sync(self) -> str:
        """Where the bridge publishes its own marker to learn that the broker's retained replay is over."""
        return f"{self.base}/bridge/sync"

    @property
    def all_under_base(self) -> str:
        return f"{self.base}/#"

    # ------------------------------------------------------------------ entities

    def device_state(self, device_id: str) -> str:
        return f"{self.base}/devices/{check_id(device_id)}/state"

    def device_availability(self, device_id: str) -> str:
        return f"{self.base}/devices/{check_id(device_id)}/availability"

    def channel_state(self, device_id: str, index: int) -> str:
        return f"{self.base}/channels/{check_id(device_id)}/{check_index(index)}/state"

    def channel_meter(self, device_id: str, index: int) -> str:
        return f"{self.base}/channels/{check_id(device_id)}/{check_index(index)}/meter"

    def channel_attr(self, device_id: str, index: int, attr: str) -> str:
        if attr not in FLAT_CHANNEL_ATTRS:
            raise TopicError(f"{attr!r} is not a flat channel attribute")
        return f"{self.base}/channels/{check_id(device_id)}/{check_index(index)}/{attr}"

    def slot_state(self, slot: int) -> str:
        if isinstance(slot, bool) or not isinstance(slot, int) or not 0 <= slot <= MAX_SLOT:
            raise TopicError(f"slot {slot!r} is not 0..{MAX_SLOT}")
        return f"{self.base}/slots/{slot}/state"

    # ------------------------------------------------------------------ commands

    def device_command(self, device_id: str, attr: str | None = None) -> str:
        mid = f"/{attr}" if attr else ""
        return f"{self.base}/devices/{check_id(device_id)}{mid}/set"

    def channel_command(self, device_id: str, index: int, attr: str | None = None) -> str:
        mid = f"/{attr}" if attr else ""
        return f"{self.base}/channels/{check_id(device_id)}/{check_index(index)}{mid}/set"

    @property
    def command_filters(self) -> tuple[str, ...]:
        """Subscriptions that match every command topic and nothing the bridge itself publishes."""
        b = self.base
        return (f"{b}/devices/+/set", f"{b}/devices/+/+/set", f"{b}/channels/+/+/set", f"{b}/channels/+/+/+/set")

    def parse_command(self, topic: str) -> tuple[str, int | None, str | None]:
        """``(device_id, channel or None, attr or None)`` of a command topic; TopicError if malformed."""
        prefix = self.base + "/"
        if not topic.startswith(prefix) or not topic.endswith("/set"):
            raise TopicError(f"{topic!r} is not a command topic under {self.base}")
        parts = topic[len(prefix):].split("/")[:-1]
        if len(parts) in (2, 3) and parts[0] == "devices":
            return check_id(parts[1]), None, (parts[2] if len(parts) == 3 else None)
        if len(parts) in (3, 4) and parts[0] == "channels":
            device_id = check_id(parts[1])
            if not (parts[2].isascii() and parts[2].isdigit()) or len(parts[2]) > 3:
                raise TopicError(f"channel {parts[2]!r} in {topic!r} is not a channel number")
            return device_id, check_index(int(parts[2])), (parts[3] if len(parts) == 4 else None)
        raise TopicError(f"{topic!r} is not <base>/devices/<id>[/<attr>]/set or <base>/channels/<id>/<n>[/<attr>]/set")

    # ------------------------------------------------------------------ Home Assistant

    @property
    def ha_status(self) -> str:
        return f"{self.discovery_prefix}/status"

    @property
    def discovery_node(self) -> str:
        """The node_id level: one per site, so two daemons on one broker never touch each other's configs."""
        return f"micboardd_{self.site}"

    @property
    def discovery_filter(self) -> str:
        return f"{self.discovery_prefix}/device/{self.discovery_node}/+/config"

    def receiver_discovery(self, device_id: str) -> str:
        return f"{self.discovery_prefix}/device/{self.discovery_node}/rx_{check_id(device_id)}/config"

    def channel_discovery(self, device_id: str, index: int) -> str:
        obj = f"ch{check_index(index)}_{check_id(device_id)}"
        return f"{self.discovery_prefix}/device/{self.discovery_node}/{obj}/config"

    def parse_discovery(self, topic: str) -> tuple[str, int | None] | None:
        """``(device_id, channel or None)`` for one of this site's discovery topics, else None.

        Object ids are ``rx_<id>`` or ``ch<n>_<id>``: the prefix says which, so no device id can
        ever be mistaken for another device's channel.
        """
        prefix = f"{self.discovery_prefix}/device/{self.discovery_node}/"
        if not topic.startswith(prefix) or not topic.endswith("/config"):
            return None
        obj = topic[len(prefix):-len("/config")]
        if "/" in obj:
            return None
        if obj.startswith("rx_") and valid_id(obj[3:]):
            return obj[3:], None
        head, sep, rest = obj.partition("_")
        if sep and head.startswith("ch") and _small_number(head[2:]) and valid_id(rest):
            n = int(head[2:])
            if 1 <= n <= MAX_CHANNEL_INDEX:
                return rest, n
        return None

    # ------------------------------------------------------------------ retained inventory

    def classify(self, topic: str) -> tuple[str, str | None, int | None, str | None]:
        """What a retained topic under the base is: ``(kind, device_id, index or slot, leaf)``.

        kind is one of device, channel, slot, bridge (status, alerts), or other (not ours to judge).
        """
        prefix = self.base + "/"
        if not topic.startswith(prefix):
            return "other", None, None, None
        parts = topic[len(prefix):].split("/")
        if parts in (["status"], ["alerts"], ["alerts", "active"], ["errors"], ["results"]) or parts[0] == "bridge":
            return "bridge", None, None, parts[-1]
        if len(parts) == 3 and parts[0] == "devices" and valid_id(parts[1]) and parts[2] in ("state", "availability"):
            return "device", parts[1], None, parts[2]
        if (
            len(parts) == 4
            and parts[0] == "channels"
            and valid_id(parts[1])
            and _small_number(parts[2])
            and 1 <= int(parts[2]) <= MAX_CHANNEL_INDEX
            and (parts[3] in _CHANNEL_LEAVES or parts[3] in FLAT_CHANNEL_ATTRS)
        ):
            return "channel", parts[1], int(parts[2]), parts[3]
        if len(parts) == 3 and parts[0] == "slots" and _small_number(parts[1]) and parts[2] == "state":
            return "slot", None, int(parts[1]), "state"
        return "other", None, None, None


# ---------------------------------------------------------------------------------------------- payloads


def encode(obj: Any) -> bytes:
    """Compact, deterministic UTF-8 JSON (identical state → identical bytes, so the cache can compare)."""
    try:
        text = json.dumps(obj, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except ValueError:  # a NaN or infinity somewhere: rare, so only then walk the whole object
        text = json.dumps(_finite(obj), separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    return text.encode("utf-8")


def _finite(obj: Any) -> Any:
    if isinstance(obj, float) and not math.isfinite(obj):
        return None  # a NaN from a device is "unknown", and JSON has no NaN
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_finite(v) for v in obj]
    return obj


def flat_value(value: Any) -> bytes:
    """A flat topic's payload: strings as they are, everything else as JSON (``null`` for unknown)."""
    if isinstance(value, str):
        return value.encode("utf-8")
    return encode(value)


def availability(dev: Device) -> bytes:
    return b"online" if dev.online and not dev.stale else b"offline"


def device_payload(dev: Device) -> dict[str, Any]:
    out = to_dict(dev)
    out["online"] = dev.online and not dev.stale
    return out


def tx_state(ch: Channel) -> str:
    """One word for the transmitter, as Home Assistant's enum sensor and show-control flows want it."""
    tx = ch.tx
    if tx.charging:
        return "charging"
    if tx.present is None:
        return "unknown"
    if not tx.present:
        return "off"
    if tx.muted:
        return "muted"
    return "on"


def channel_payload(ch: Channel, bars_limit: int, minutes_limit: int) -> dict[str, Any]:
    """Channel + transmitter, normalized units, ``null`` for unknown; no meters (they change too often)."""
    return {
        "device_id": ch.device_id,
        "channel": ch.index,
        "name": ch.name,
        "frequency_khz": ch.frequency_khz,
        "frequency_mhz": None if ch.frequency_khz is None else ch.frequency_khz / 1000,
        "group_channel": ch.group_channel,
        "gain_db": ch.gain_db,
        "muted": ch.muted,
        "encryption": ch.encryption,
        "interference": ch.interference,
        "warnings": list(ch.warnings),
        "stale": ch.stale,
        "tx_state": tx_state(ch),
        "battery_low": battery_low(ch, bars_limit, minutes_limit),
        "tx": to_dict(ch.tx),
    }


def flat_channel_values(payload: Mapping[str, Any]) -> dict[str, bytes]:
    tx = payload["tx"]
    values = {
        "name": payload["name"],
        "frequency_mhz": payload["frequency_mhz"],
        "tx_state": payload["tx_state"],
        "battery_percent": tx["battery_percent"],
        "battery_bars": tx["battery_bars"],
        "runtime_minutes": tx["runtime_minutes"],
        "battery_low": payload["battery_low"],
        "tx_model": tx["model"],
        "tx_muted": tx["muted"],
        "muted": payload["muted"],
    }
    return {k: flat_value(v) for k, v in values.items()}


def meter_payload(m: Meters) -> dict[str, Any]:
    return {
        "rf_dbm": list(m.rf_dbm),
        "rf_best_dbm": m.rf_best_dbm,
        "active_antenna": m.active_antenna,
        "link_quality": m.link_quality,
        "audio_rms_dbfs": m.audio_rms_dbfs,
        "audio_peak_dbfs": m.audio_peak_dbfs,
        "audio_dbfs": m.audio_dbfs,
        "clip": m.clip,
        "at": round(m.at, 3),
    }


def rf_level(m: Meters | None) -> str | None:
    if m is None:
        return None
    best = m.rf_best_dbm
    if best is None:
        return "none"
    return "weak" if best < RF_WEAK_DBM else "ok"


def audio_level(m: Meters | None) -> str | None:
    if m is None:
        return None
    level = m.audio_dbfs
    if m.clip or (level is not None and level >= AUDIO_CLIP_DBFS):
        return "clip"
    if level is None:
        return None
    return "silent" if level < AUDIO_SILENT_DBFS else "active"


def slot_payload(  # noqa: PLR0917 - one argument per source of the slot's view
    slot: Slot,
    ch: Channel | None,
    dev: Device | None,
    levels: tuple[str | None, str | None],
    alerts: Iterable[Alert],
    bars_limit: int,
    minutes_limit: int,
) -> dict[str, Any]:
    """The board's view of one slot: who, on which channel, and whether anything is wrong."""
    live = sorted(
        (a for a in alerts if a.state is not AlertState.CLEARED),
        key=lambda a: (-a.severity.rank, a.alert_id),
    )
    tx = ch.tx if ch is not None else None
    return {
        "slot": slot.slot,
        "performer": slot.performer,
        "extended_name": slot.extended_name,
        "group": slot.group,
        "channel": slot.channel,
        "channel_name": ch.name if ch is not None else None,
        "online": (dev.online and not dev.stale) if dev is not None else None,
        "tx_state": tx_state(ch) if ch is not None else None,
        "battery_percent": tx.battery_percent if tx is not None else None,
        "battery_bars": tx.battery_bars if tx is not None else None,
        "runtime_minutes": tx.runtime_minutes if tx is not None else None,
        "battery_low": battery_low(ch, bars_limit, minutes_limit) if ch is not None else None,
        "frequency_mhz": None if ch is None or ch.frequency_khz is None else ch.frequency_khz / 1000,
        "rf": levels[0],
        "audio": levels[1],
        "alert": live[0].severity.value if live else None,
        "alerts": [
            {"rule": a.rule, "severity": a.severity.value, "state": a.state.value, "message": a.message} for a in live
        ],
    }


def active_alerts_payload(alerts: Iterable[Alert]) -> list[dict[str, Any]]:
    live = [a for a in alerts if a.state is not AlertState.CLEARED]
    return [to_dict(a) for a in sorted(live, key=lambda a: a.alert_id)]


def alert_event(before: Alert | None, after: Alert | None, revision: int) -> dict[str, Any]:
    """``raised`` / ``updated`` / ``acknowledged`` / ``cleared`` / ``removed`` with the alert itself.

    ``previous`` is the severity and state the alert had before an ``updated``, ``acknowledged`` or
    ``cleared`` event (null for ``raised``, and for ``removed``, whose ``alert`` is already the last
    one); ``escalated`` says whether this event raised the severity, so a consumer can tell an
    escalation from a change of text (runtime counting down, a performer assigned).
    """
    if after is None:
        event = "removed"
    elif before is None or (before.state is AlertState.CLEARED and after.state is not AlertState.CLEARED):
        event = "raised"
    elif after.state is AlertState.CLEARED:
        event = "cleared"
    elif after.state is AlertState.ACKNOWLEDGED and before.state is not AlertState.ACKNOWLEDGED:
        event = "acknowledged"
    else:
        event = "updated"
    shown = after if after is not None else before
    previous = None
    escalated = False
    if event in ("updated", "acknowledged", "cleared") and before is not None and after is not None:
        previous = {"severity": before.severity.value, "state": before.state.value}
        escalated = after.severity.rank > before.severity.rank  # by rank: as strings "critical" < "warning"
    return {"event": event, "revision": revision, "escalated": escalated, "previous": previous,
            "alert": to_dict(shown) if shown is not None else None}
