"""Home Assistant device-based discovery payloads: one HA device per receiver, one per channel.

Shaped by what a real Home Assistant accepts (``reference/integrations.md`` §1 and §8): only the
documented keys at the top level (device, origin, availability, components); ``origin.name``,
``device.identifiers`` and a ``unique_id`` + ``qos`` on every component; device classes only with
the units they allow; ``enum`` sensors with options and no unit or state class. Identifiers and
unique ids carry the site, and ``:``/``/`` (never part of an id) separate their parts, so two
daemons or two devices can never produce the same one. Every component suggests a stable
``default_entity_id`` built from the site, device id, channel and component key, never from a
name (Home Assistant 2025.10+ uses it when it first registers the entity; ``object_id``, which it
replaced, is ignored from 2026.4 on and is not sent).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from ..config import MqttCommandsConfig
from ..model import Channel, ConnState, Device, Manufacturer
from .topics import TX_STATES, Topics

ORIGIN_NAME: Final = "micboardd"
STATE_QOS: Final = 1  # retained state is published at QoS 1; HA subscribes at the same level
METER_QOS: Final = 0  # meters are lossy by design
NAME_MAX: Final = 64  # what the action layer accepts; each model's own limit is checked by its adapter

_MANUFACTURER_LABEL: Final = {Manufacturer.SHURE: "Shure", Manufacturer.SENNHEISER: "Sennheiser"}


@dataclass(frozen=True, slots=True)
class DiscoveryContext:
    """What every discovery payload of one bridge shares."""

    topics: Topics
    version: str
    commands: MqttCommandsConfig

    @property
    def site(self) -> str:
        return self.topics.site


def receiver_identifier(site: str, device_id: str) -> str:
    return f"micboardd:{site}:{device_id}"


def channel_identifier(site: str, device_id: str, index: int) -> str:
    return f"micboardd:{site}:{device_id}/{index}"


_NOT_OBJECT_ID: Final = re.compile(r"[^a-z0-9_]+")


def entity_object_id(*parts: str) -> str:
    """An entity object id Home Assistant accepts: ``[a-z0-9_]``, no ``__``, no ``_`` at either end.

    Those are the rules of ``homeassistant.core.valid_entity_id``; our ids allow ``-``, which becomes ``_``.
    """
    return re.sub("_+", "_", _NOT_OBJECT_ID.sub("_", "_".join(parts).lower())).strip("_")


def receiver_entity_id(platform: str, site: str, device_id: str, component: str) -> str:
    """``<platform>.micboard_<site>_<device_id>_<component>``, e.g. ``sensor.micboard_main_rack1_connection``."""
    return f"{platform}.{entity_object_id('micboard', site, device_id, component)}"


def channel_entity_id(platform: str, site: str, device_id: str, index: int, component: str) -> str:
    """``<platform>.micboard_<site>_<device_id>_<n>_<component>``, e.g. ``sensor.micboard_main_rack1_2_battery``."""
    return f"{platform}.{entity_object_id('micboard', site, device_id, str(index), component)}"


def _with_entity_ids(cmps: dict[str, Any], entity_id: Callable[[str, str], str]) -> None:
    """Add each component's ``default_entity_id`` (``entity_id(platform, component key)``)."""
    for key, comp in cmps.items():
        comp["default_entity_id"] = entity_id(comp["p"], key)


def _origin(ctx: DiscoveryContext) -> dict[str, Any]:
    # No support URL until the project has a public home: HA would show a dead link in its logs.
    return {"name": ORIGIN_NAME, "sw": ctx.version}


def _availability(ctx: DiscoveryContext, device_id: str) -> list[dict[str, Any]]:
    return [{"t": ctx.topics.status}, {"t": ctx.topics.device_availability(device_id)}]


def _component(platform: str, unique_id: str, name: str, **options: Any) -> dict[str, Any]:
    comp: dict[str, Any] = {"p": platform, "uniq_id": unique_id, "name": name}
    comp.update({k: v for k, v in options.items() if v is not None})
    comp.setdefault("qos", STATE_QOS)
    return comp


def _tpl(expr: str) -> str:
    """A value template; JSON null renders as ``None``, which HA's MQTT entities read as unknown."""
    return "{{ " + expr + " }}"


def receiver_config(ctx: DiscoveryContext, dev: Device) -> dict[str, Any]:
    """The receiver's HA device: connection state and last error, plus identify/rename when enabled."""
    t = ctx.topics
    ident = receiver_identifier(ctx.site, dev.device_id)
    state = t.device_state(dev.device_id)
    dev_info: dict[str, Any] = {
        "ids": [ident],
        "name": dev.name or dev.device_id,
        "mf": _MANUFACTURER_LABEL.get(dev.manufacturer, "Unknown"),
    }
    if dev.model:
        dev_info["mdl"] = dev.model
    if dev.firmware:
        dev_info["sw"] = dev.firmware
    if dev.serial:
        dev_info["serial_number"] = dev.serial
    bridge_only = [{"t": t.status}]  # the connection sensor must stay readable while the receiver is offline
    cmps: dict[str, Any] = {
        "connection": _component(
            "sensor", f"{ident}:connection", "Connection",
            dev_cla="enum", ops=[s.value for s in ConnState], stat_t=state, val_tpl=_tpl("value_json.state"),
            ent_cat="diagnostic", avty=bridge_only,
        ),
        "last_error": _component(
            "sensor", f"{ident}:last_error", "Last error",
            stat_t=state, val_tpl=_tpl("value_json.last_error"), ent_cat="diagnostic", avty=bridge_only,
        ),
    }
    if ctx.commands.enabled:
        cmps["identify"] = _component(
            "button", f"{ident}:identify", "Identify",
            dev_cla="identify", cmd_t=t.device_command(dev.device_id, "identify"), pl_prs="PRESS",
            ent_cat="config",
        )
        if ctx.commands.rename:
            cmps["rename"] = _component(
                "text", f"{ident}:rename", "Device name",
                cmd_t=t.device_command(dev.device_id, "name"), stat_t=state,
                val_tpl=_tpl("value_json.name"), max=NAME_MAX, ent_cat="config",
            )
    _with_entity_ids(cmps, lambda p, key: receiver_entity_id(p, ctx.site, dev.device_id, key))
    return {"dev": dev_info, "o": _origin(ctx), "avty": _availability(ctx, dev.device_id), "avty_mode": "all",
            "cmps": cmps}


def channel_inputs(dev: Device | None, ch: Channel) -> tuple[Any, ...]:
    """Everything a channel's discovery payload depends on, to skip rebuilding it on battery ticks."""
    if dev is None:
        return (ch.name,)
    return (ch.name, dev.name, dev.model, dev.manufacturer, dev.firmware)


def channel_config(ctx: DiscoveryContext, dev: Device | None, ch: Channel) -> dict[str, Any]:
    """A channel's HA device (``via_device`` its receiver) with the transmitter's entities."""
    t = ctx.topics
    did, n = ch.device_id, ch.index
    ident = channel_identifier(ctx.site, did, n)
    state = t.channel_state(did, n)
    meter = t.channel_meter(did, n)
    rx_name = (dev.name if dev is not None else None) or did
    dev_info: dict[str, Any] = {
        "ids": [ident],
        "name": ch.name or f"{rx_name} ch{n}",
        "mf": _MANUFACTURER_LABEL.get(dev.manufacturer, "Unknown") if dev is not None else "Unknown",
        "via_device": receiver_identifier(ctx.site, did),
    }
    if dev is not None and dev.model:
        dev_info["mdl"] = f"{dev.model} channel {n}"
    cmps: dict[str, Any] = {
        "battery": _component(
            "sensor", f"{ident}:battery", "Battery",
            dev_cla="battery", unit_of_meas="%", stat_cla="measurement", stat_t=state,
            val_tpl=_tpl("value_json.tx.battery_percent"),
        ),
        "battery_bars": _component(
            "sensor", f"{ident}:battery_bars", "Battery bars",
            stat_cla="measurement", sug_dsp_prc=0, ic="mdi:battery-medium", stat_t=state,
            val_tpl=_tpl("value_json.tx.battery_bars"),
        ),
        "runtime": _component(
            "sensor", f"{ident}:runtime", "Battery runtime",
            dev_cla="duration", unit_of_meas="min", stat_cla="measurement", stat_t=state,
            val_tpl=_tpl("value_json.tx.runtime_minutes"),
        ),
        "battery_low": _component(
            "binary_sensor", f"{ident}:battery_low", "Battery low",
            dev_cla="battery", stat_t=state,
            val_tpl=_tpl("'None' if value_json.battery_low is none else ('ON' if value_json.battery_low else 'OFF')"),
        ),
        "tx_state": _component(
            "sensor", f"{ident}:tx_state", "Transmitter",
            dev_cla="enum", ops=list(TX_STATES), stat_t=state, val_tpl=_tpl("value_json.tx_state"),
        ),
        "rf": _component(
            "sensor", f"{ident}:rf", "RF level",
            dev_cla="signal_strength", unit_of_meas="dBm", stat_cla="measurement", ent_cat="diagnostic", en=False,
            stat_t=meter, val_tpl=_tpl("value_json.rf_best_dbm"), qos=METER_QOS,
        ),
        "audio": _component(
            "sensor", f"{ident}:audio", "Audio level",
            unit_of_meas="dBFS", stat_cla="measurement", en=False, ic="mdi:waveform", stat_t=meter,
            val_tpl=_tpl("value_json.audio_dbfs"), qos=METER_QOS,
        ),
        "frequency": _component(
            "sensor", f"{ident}:frequency", "Frequency",
            dev_cla="frequency", unit_of_meas="MHz", sug_dsp_prc=3, ent_cat="diagnostic", stat_t=state,
            val_tpl=_tpl("value_json.frequency_mhz"),
        ),
        "name": _component(
            "sensor", f"{ident}:name", "Name",
            ic="mdi:microphone-variant", stat_t=state, val_tpl=_tpl("value_json.name"),
        ),
    }
    if ctx.commands.enabled:
        cmps["identify"] = _component(
            "button", f"{ident}:identify", "Identify",
            dev_cla="identify", cmd_t=t.channel_command(did, n, "identify"), pl_prs="PRESS", ent_cat="config",
        )
        if ctx.commands.rename:
            cmps["rename"] = _component(
                "text", f"{ident}:rename", "Channel name",
                cmd_t=t.channel_command(did, n, "name"), stat_t=state, val_tpl=_tpl("value_json.name"),
                max=NAME_MAX, ent_cat="config",
            )
        if ctx.commands.dangerous:
            cmps["mute"] = _component(
                "switch", f"{ident}:mute", "Output mute",
                cmd_t=t.channel_command(did, n, "muted"), stat_t=state, pl_on="ON", pl_off="OFF",
                val_tpl=_tpl("'None' if value_json.muted is none else ('ON' if value_json.muted else 'OFF')"),
                ic="mdi:volume-off", ent_cat="config",
            )
    _with_entity_ids(cmps, lambda p, key: channel_entity_id(p, ctx.site, did, n, key))
    return {"dev": dev_info, "o": _origin(ctx), "avty": _availability(ctx, did), "avty_mode": "all", "cmps": cmps}


def components_removed(old_payload: bytes | None, new: Mapping[str, Any]) -> dict[str, Any] | None:
    """The interim config HA needs before a component can disappear: the dropped ones as ``{"p": …}``.

    Home Assistant keeps an entity whose component is merely left out of a re-published device
    config (§8), so a component is first reduced to its platform, then the final config follows.
    """
    if not old_payload:
        return None
    try:
        old = json.loads(old_payload)
        old_cmps = old.get("cmps") or old.get("components") or {}
    except (ValueError, AttributeError, RecursionError):  # what the broker held may be anyone's bytes
        return None
    if not isinstance(old_cmps, dict):
        return None
    new_cmps = new.get("cmps", {})
    gone = {k: v for k, v in old_cmps.items() if k not in new_cmps and isinstance(v, dict)}
    if not gone:
        return None
    interim = dict(new)
    interim["cmps"] = {**new_cmps, **{k: {"p": v.get("p") or v.get("platform") or "sensor"} for k, v in gone.items()}}
    return interim
