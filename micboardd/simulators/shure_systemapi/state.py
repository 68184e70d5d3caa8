"""The devices a simulated Shure System API server fronts, and the JSON the server shows for them.

Written from reference/shure.md §5 (JB's real-server probe and mock, DM's real-deployment node) on its
own; it never imports micboardd's adapters. Capability sets: receivers as DM's real ULXD4D log and JB's
real ADTQ scan show them (no battery, no RF of any kind); ULXD6/ULXD8 transmitters with
``battery-level``/``battery-health`` as JB infers them (UNVERIFIED on hardware). Channel capabilities
per model are this simulator's own choice (the reference has ADTQ without mute, ANX4 with mute).
"""

from __future__ import annotations

import base64
import json
import random
from dataclasses import dataclass, field
from typing import Any, Final

RX_CAPS: Final = (
    "audio-channels", "audio-channels-v2", "audio-network", "control-network", "dante-audio-network",
    "factory-reset", "hosted-firmware", "identify", "name", "reboot", "uptime",
)
TX_CAPS: Final = ("battery-level", "battery-health", "control-network", "name", "identify", "uptime")
OLD_CAPS: Final = ("control-network", "uptime")  # listed but not controllable: too old for the server
BATTERY_STATES: Final = ("CHARGING", "DISCHARGING", "FULL", "EMPTY", "CALCULATING", "OPTIMAL_STORAGE")
ACTIVITY_LEVELS: Final = ("LOW", "GOOD", "CLIPPING")
NODE_STATES: Final = ("ONLINE", "OFFLINE", "DISCOVERED")
COMPATIBILITIES: Final = ("COMPATIBLE_LATEST", "COMPATIBLE_OLD", "INCOMPATIBLE_TOO_OLD")
MAX_NAME: Final = 31  # names longer than this are refused with a 400 problem (the sim's own limit)


@dataclass(frozen=True, slots=True)
class ModelSpec:
    channels: int
    caps: tuple[str, ...]
    channel_caps: tuple[str, ...]
    firmware: str
    battery: bool = False
    gain_range: tuple[float, float, float] = (-18.0, 42.0, 1.0)


MODELS: Final[dict[str, ModelSpec]] = {
    "ULXD4D": ModelSpec(2, RX_CAPS, ("activity", "gain", "mute", "name"), "2.7.6.0"),
    "ULXD4Q": ModelSpec(4, RX_CAPS, ("activity", "gain", "mute", "name"), "2.7.6.0"),
    "ULXD4": ModelSpec(1, RX_CAPS, ("activity", "gain", "mute", "name"), "2.7.6.0"),
    "AD4Q": ModelSpec(4, RX_CAPS, ("activity", "gain", "name"), "1.2.6.0", gain_range=(-18.0, 42.0, 1.0)),
    "AD4D": ModelSpec(2, RX_CAPS, ("activity", "gain", "name"), "1.2.6.0"),
    "ADTQ": ModelSpec(4, RX_CAPS, ("activity", "gain", "name"), "1.2.1.1", gain_range=(-20.0, 16.0, 1.0)),
    "ULXD6": ModelSpec(0, TX_CAPS, (), "2.5.2.0", battery=True),
    "ULXD8": ModelSpec(0, TX_CAPS, (), "2.5.2.0", battery=True),
}


@dataclass
class SimBattery:
    percent: float = 87.0
    state: str = "DISCHARGING"
    minutes: int = 385  # time to the target state
    health: int = 96
    cycles: int = 42

    def level_body(self) -> dict[str, Any]:
        """``battery-level`` as the server answers it (timeToTargetState only while heading somewhere)."""
        target = {"CHARGING": "FULL", "DISCHARGING": "EMPTY"}.get(self.state)
        return {
            "percentage": round(self.percent),
            "status": {
                "currentState": self.state,
                "targetState": target,
                "timeToTargetState": f"PT{max(0, self.minutes)}M" if target else None,
            },
        }

    def health_body(self) -> dict[str, Any]:
        return {"percentage": self.health, "cycleCount": self.cycles}


@dataclass
class SimChannel:
    index: int  # 0-based, as inside the id
    channel_id: str
    name: str
    caps: tuple[str, ...]
    muted: bool = False
    gain: float = 0.0
    gain_range: tuple[float, float, float] = (-18.0, 42.0, 1.0)
    activity: str = "LOW"
    role: str = "SOURCE"
    group: str = "GENERIC"

    def listing(self) -> dict[str, Any]:
        return {"id": self.channel_id, "role": self.role, "group": self.group, "capabilities": list(self.caps)}

    def gain_description(self) -> dict[str, Any]:
        lo, hi, step = self.gain_range
        return {"constraints": {"gain": {"range": {"min": lo, "max": hi, "step": step}}}}


@dataclass
class SimDevice:
    device_id: str
    serial: str
    model: str
    firmware: str
    address: str
    name: str
    caps: list[str]
    state: str = "ONLINE"
    compatibility: str = "COMPATIBLE_LATEST"
    channels: list[SimChannel] = field(default_factory=list)
    battery: SimBattery | None = None
    identifying: bool = False
    audio_mute: bool = False

    def node(self) -> dict[str, Any]:
        """The device node of ``GET /devices`` and DEVICE_STATE_CHANGE (reduced while DISCOVERED)."""
        node: dict[str, Any] = {
            "compatibility": self.compatibility,
            "deviceState": self.state,
            "hardwareIdentity": {"deviceId": self.device_id, "serialNumber": self.serial},
            "softwareIdentity": {"firmwareVersion": self.firmware, "firmwareValid": True, "model": self.model},
            "communicationProtocol": {"name": "ESTA.DMP", "address": self.address},
            "capabilities": list(self.caps),
        }
        if self.state == "DISCOVERED":
            del node["hardwareIdentity"]["serialNumber"]
            del node["softwareIdentity"]["firmwareVersion"]
            del node["softwareIdentity"]["firmwareValid"]
            del node["capabilities"]
        return node

    def channel(self, channel_id: str) -> SimChannel | None:
        return next((c for c in self.channels if c.channel_id == channel_id), None)


def channel_id(model: str, index: int) -> str:
    """Opaque base64 of a JSON descriptor with the index in ``i`` (the real ADTQ form, reference §5)."""
    payload = {"t": "AudioChannel", "c": model, "v": 131088, "s": "CH", "i": index}
    return base64.b64encode(json.dumps(payload, separators=(",", ":")).encode()).decode()


def make_device(
    rng: random.Random,
    n: int,
    model: str,
    *,
    name: str | None = None,
    state: str = "ONLINE",
    compatibility: str | None = None,
    serial: str | None = None,
    capabilities: tuple[str, ...] | list[str] | None = None,
    channel_capabilities: tuple[str, ...] | list[str] | None = None,
    channels: int | None = None,
    battery: bool | None = None,
    seed: int = 0,
) -> SimDevice:
    """A device like the server would list it; ``n`` numbers it within one simulator."""
    spec = MODELS.get(model, ModelSpec(1, RX_CAPS, ("activity", "gain", "mute", "name"), "1.0.0.0"))
    if state not in NODE_STATES:
        raise ValueError(f"deviceState {state!r} is not one of {', '.join(NODE_STATES)}")
    compat = compatibility or ("COMPATIBLE_OLD" if model.startswith("ULXD4") else "COMPATIBLE_LATEST")
    if compat not in COMPATIBILITIES:
        raise ValueError(f"compatibility {compat!r} is not one of {', '.join(COMPATIBILITIES)}")
    caps = list(capabilities) if capabilities is not None else list(
        OLD_CAPS if compat == "INCOMPATIBLE_TOO_OLD" else spec.caps
    )
    has_battery = spec.battery if battery is None else battery
    if has_battery:
        caps += [c for c in ("battery-level", "battery-health") if c not in caps]
    count = spec.channels if channels is None else channels
    if "audio-channels" not in caps:
        count = 0
    device_id = f"dd{(seed * 0x1000 + n) & 0xFFFFFF:06x}-0000-11dd-a000-000eddcccccc"
    dev = SimDevice(
        device_id=device_id,
        serial=serial or f"2{rng.choice('EKLT')}{rng.choice('LKT')}{rng.randrange(10**8):08d}",
        model=model,
        firmware="1.5.8.0" if compat == "INCOMPATIBLE_TOO_OLD" else spec.firmware,
        address=f"192.168.10.{100 + n}",
        name=name or f"{model}-{n:02d}",
        caps=caps,
        state=state,
        compatibility=compat,
        battery=SimBattery() if has_battery else None,
    )
    ch_caps = tuple(channel_capabilities) if channel_capabilities is not None else spec.channel_caps
    for i in range(count):
        dev.channels.append(
            SimChannel(i, channel_id(model, i), f"CH {i + 1}", ch_caps, gain=6.0, gain_range=spec.gain_range)
        )
    return dev
