"""Normalized model ↔ micboard.v1 messages; ``None`` (unknown) becomes an unset field, never a number."""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from typing import Any, Final

from google.protobuf import struct_pb2, timestamp_pb2
from google.protobuf.json_format import MessageToDict, ParseDict

from ..config import DeviceConfig, device_to_dict
from ..model import (
    Alert,
    AlertState,
    Channel,
    ConnState,
    Device,
    ErrorKind,
    Kind,
    Meters,
    Severity,
    Slot,
    SlotAlerts,
    Transmitter,
    to_dict,
)
from .gen.micboard.v1 import micboard_pb2 as pb
from .gen.micboard.v1 import resources_pb2 as rpb

CONN_STATE: Final[Mapping[ConnState, int]] = {
    ConnState.UNKNOWN: rpb.CONNECTION_STATE_UNSPECIFIED,
    ConnState.CONNECTING: rpb.CONNECTION_STATE_CONNECTING,
    ConnState.ONLINE: rpb.CONNECTION_STATE_ONLINE,
    ConnState.DEGRADED: rpb.CONNECTION_STATE_DEGRADED,
    ConnState.OFFLINE: rpb.CONNECTION_STATE_OFFLINE,
}
ERROR_KIND: Final[Mapping[ErrorKind, int]] = {
    ErrorKind.UNKNOWN: rpb.ERROR_KIND_UNSPECIFIED,
    ErrorKind.NONE: rpb.ERROR_KIND_NONE,
    ErrorKind.RETRYABLE: rpb.ERROR_KIND_RETRYABLE,
    ErrorKind.AUTH: rpb.ERROR_KIND_AUTH,
    ErrorKind.TERMINAL: rpb.ERROR_KIND_TERMINAL,
    ErrorKind.PROTOCOL: rpb.ERROR_KIND_PROTOCOL,
}
ALERT_STATE: Final[Mapping[AlertState, int]] = {
    AlertState.UNKNOWN: rpb.ALERT_STATE_UNSPECIFIED,
    AlertState.ACTIVE: rpb.ALERT_STATE_ACTIVE,
    AlertState.ACKNOWLEDGED: rpb.ALERT_STATE_ACKNOWLEDGED,
    AlertState.CLEARED: rpb.ALERT_STATE_CLEARED,
}
SEVERITY: Final[Mapping[Severity, int]] = {
    Severity.UNKNOWN: rpb.SEVERITY_UNSPECIFIED,
    Severity.INFO: rpb.SEVERITY_INFO,
    Severity.WARNING: rpb.SEVERITY_WARNING,
    Severity.CRITICAL: rpb.SEVERITY_CRITICAL,
}
KIND_TO_PB: Final[Mapping[Kind, int]] = {
    Kind.DEVICE: pb.RESOURCE_KIND_DEVICE,
    Kind.CHANNEL: pb.RESOURCE_KIND_CHANNEL,
    Kind.SLOT: pb.RESOURCE_KIND_SLOT,
    Kind.ALERT: pb.RESOURCE_KIND_ALERT,
}
PB_TO_KIND: Final[Mapping[int, Kind]] = {v: k for k, v in KIND_TO_PB.items()}


def timestamp(seconds: float | None) -> timestamp_pb2.Timestamp | None:
    if seconds is None:
        return None
    ts = timestamp_pb2.Timestamp()
    ts.FromNanoseconds(int(seconds * 1e9))
    return ts


def _set_optional(msg: Any, values: Mapping[str, Any]) -> None:
    """Set each field whose value is known; leave unknown (None) ones unset."""
    for name, value in values.items():
        if value is not None:
            setattr(msg, name, value)


def etag_of(data: Any) -> str:
    """A short content hash: changes whenever the resource does, equal for equal content."""
    raw = json.dumps(data, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(raw.encode("utf-8")).hexdigest()[:16]


def device_pb(dev: Device) -> rpb.Device:
    msg = rpb.Device(
        device_id=dev.device_id,
        manufacturer=dev.manufacturer.value,
        family=dev.family,
        host=dev.host,
        port=dev.port,
        channel_count=dev.channel_count,
        state=CONN_STATE.get(dev.state, rpb.CONNECTION_STATE_UNSPECIFIED),  # type: ignore[arg-type]
        online=dev.online,
        error_kind=ERROR_KIND.get(dev.error_kind, rpb.ERROR_KIND_UNSPECIFIED),  # type: ignore[arg-type]
        stale=dev.stale,
    )
    _set_optional(
        msg,
        {"model": dev.model, "name": dev.name, "firmware": dev.firmware, "serial": dev.serial,
         "last_error": dev.last_error},
    )
    ts = timestamp(dev.last_seen)
    if ts is not None:
        msg.last_seen.CopyFrom(ts)
    return msg


def _known(values: Mapping[str, Any]) -> dict[str, Any]:
    """Keyword arguments for a message constructor: unknown (None) values stay unset."""
    return {k: v for k, v in values.items() if v is not None}


def transmitter_pb(tx: Transmitter) -> rpb.Transmitter:
    return rpb.Transmitter(
        **_known({
            "present": tx.present, "model": tx.model, "device_name": tx.device_name,
            "battery_bars": tx.battery_bars, "battery_percent": tx.battery_percent,
            "runtime_minutes": tx.runtime_minutes, "battery_type": tx.battery_type,
            "battery_health_percent": tx.battery_health_percent, "battery_cycles": tx.battery_cycles,
            "battery_temp_c": tx.battery_temp_c, "charging": tx.charging, "muted": tx.muted, "lock": tx.lock,
            "rf_power": tx.rf_power,
        })
    )


def meters_pb(m: Meters) -> rpb.Meters:
    msg = rpb.Meters(
        channel=m.key,
        rf_dbm=[math.nan if v is None else float(v) for v in m.rf_dbm],
        clip=m.clip,
    )
    _set_optional(
        msg,
        {"active_antenna": m.active_antenna, "link_quality": m.link_quality, "audio_rms_dbfs": m.audio_rms_dbfs,
         "audio_peak_dbfs": m.audio_peak_dbfs, "rf_best_dbm": m.rf_best_dbm},
    )
    ts = timestamp(m.at)
    if ts is not None and m.at:
        msg.at.CopyFrom(ts)
    return msg


def channel_pb(ch: Channel, context: rpb.ChannelContext | None = None) -> rpb.Channel:
    return rpb.Channel(
        device_id=ch.device_id,
        index=ch.index,
        key=ch.key,
        warnings=ch.warnings,
        tx=transmitter_pb(ch.tx),
        stale=ch.stale,
        context=context,
        **_known({"name": ch.name, "frequency_khz": ch.frequency_khz, "group_channel": ch.group_channel,
                  "gain_db": ch.gain_db, "muted": ch.muted, "encryption": ch.encryption,
                  "interference": ch.interference}),
    )


def slot_data(slot: Slot) -> dict[str, Any]:
    return to_dict(slot)


def slot_pb(slot: Slot) -> rpb.Slot:
    msg = rpb.Slot(
        slot=slot.slot,
        alerts=rpb.SlotAlerts(enabled=slot.alerts.enabled),
        etag=etag_of(slot_data(slot)),
    )
    _set_optional(
        msg,
        {"channel": slot.channel, "performer": slot.performer, "extended_name": slot.extended_name,
         "group": slot.group},
    )
    _set_optional(
        msg.alerts,
        {"low_battery_bars": slot.alerts.low_battery_bars, "low_runtime_minutes": slot.alerts.low_runtime_minutes},
    )
    return msg


def slot_from_pb(msg: rpb.Slot) -> Slot:
    """The model slot a message describes (unset optional fields → None)."""
    alerts = SlotAlerts(
        low_battery_bars=msg.alerts.low_battery_bars if msg.alerts.HasField("low_battery_bars") else None,
        low_runtime_minutes=msg.alerts.low_runtime_minutes if msg.alerts.HasField("low_runtime_minutes") else None,
        enabled=msg.alerts.enabled if msg.HasField("alerts") else True,
    )
    return Slot(
        slot=msg.slot,
        channel=msg.channel if msg.HasField("channel") else None,
        performer=msg.performer if msg.HasField("performer") else None,
        extended_name=msg.extended_name if msg.HasField("extended_name") else None,
        group=msg.group if msg.HasField("group") else None,
        alerts=alerts,
    )


def alert_pb(alert: Alert) -> rpb.Alert:
    msg = rpb.Alert(
        alert_id=alert.alert_id,
        rule=alert.rule,
        subject=alert.subject,
        severity=SEVERITY.get(alert.severity, rpb.SEVERITY_UNSPECIFIED),  # type: ignore[arg-type]
        state=ALERT_STATE.get(alert.state, rpb.ALERT_STATE_UNSPECIFIED),  # type: ignore[arg-type]
        message=alert.message,
    )
    _set_optional(msg, {"acknowledged_by": alert.acknowledged_by})
    raised = timestamp(alert.raised_at) if alert.raised_at else None
    if raised is not None:
        msg.raised_at.CopyFrom(raised)
    cleared = timestamp(alert.cleared_at)
    if cleared is not None:
        msg.cleared_at.CopyFrom(cleared)
    return msg


def group_pb(name: str, data: Mapping[str, Any]) -> rpb.Group:
    return rpb.Group(
        name=name,
        title=str(data.get("title") or ""),
        description=str(data.get("description") or ""),
        color=str(data.get("color") or ""),
        etag=etag_of({"name": name, **dict(data)}),
    )


def group_data(msg: rpb.Group) -> dict[str, Any]:
    return {"title": msg.title, "description": msg.description, "color": msg.color}


def struct_of(data: Mapping[str, Any] | None) -> struct_pb2.Struct:
    st = struct_pb2.Struct()
    if data:
        st.update(json.loads(json.dumps(dict(data), default=str)))
    return st


def value_of(value: Any) -> struct_pb2.Value:
    """Any JSON-able value as a google.protobuf.Value (unknown → null)."""
    v = struct_pb2.Value()
    if value is None:
        v.null_value = struct_pb2.NULL_VALUE
    elif isinstance(value, bool):
        v.bool_value = value
    elif isinstance(value, int | float):
        v.number_value = float(value)
    elif isinstance(value, str):
        v.string_value = value
    else:
        ParseDict(json.loads(json.dumps(value, default=str)), v)
    return v


# ----------------------------------------------------------------------------- device configs

# DeviceConfig message fields ↔ the keys ``parse_device`` reads; output-only fields are absent here.
CONFIG_FIELDS: Final = (
    "id", "family", "host", "port", "model", "name", "enabled", "meter_rate_ms", "channels", "username",
    "password_file", "password_credential", "tls_ca_file", "tls_insecure", "local_port", "options",
)


def device_config_dict(cfg: DeviceConfig) -> dict[str, Any]:
    """The stored table of a device config (no secrets), as used for etags and merges."""
    return device_to_dict(cfg)


def device_config_pb(cfg: DeviceConfig, source: str) -> rpb.DeviceConfig:
    data = device_config_dict(cfg)
    msg = rpb.DeviceConfig(
        id=cfg.id,
        family=cfg.family,
        host=cfg.host,
        port=cfg.port,
        enabled=cfg.enabled,
        meter_rate_ms=cfg.meter_rate_ms,
        source=source,
        etag=etag_of(data),
    )
    _set_optional(
        msg,
        {"model": cfg.model, "name": cfg.name, "channels": cfg.channels, "username": cfg.username,
         "tls_ca_file": cfg.tls_ca_file, "local_port": cfg.local_port,
         "password_file": cfg.password_ref.get("password_file"),
         "password_credential": cfg.password_ref.get("password_credential"),
         "tls_insecure": cfg.tls_insecure or None},
    )
    if cfg.options:
        msg.options.CopyFrom(struct_of(cfg.options))
    return msg


def device_config_raw(msg: rpb.DeviceConfig, paths: set[str] | None = None) -> dict[str, Any]:
    """The ``parse_device`` table for the fields of ``msg`` that are set (or named in ``paths``).

    A field named in ``paths`` but unset in ``msg`` maps to None, which the caller drops (back to the
    default). Plain proto3 scalars (id, family, host, port) count as set when not empty/zero.
    """
    out: dict[str, Any] = {}
    for name in CONFIG_FIELDS:
        field = msg.DESCRIPTOR.fields_by_name[name]
        has: Any = msg.HasField  # the stub's Literal field names do not accept a loop variable
        present = has(name) if field.has_presence else getattr(msg, name) != field.default_value
        if present:
            out[name] = MessageToDict(msg.options) if name == "options" else getattr(msg, name)
        elif paths is not None and name in paths:
            out[name] = None
    return out
