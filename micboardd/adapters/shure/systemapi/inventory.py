"""The devices behind one System API server, as child devices: identity, state, channels, battery, events.

Each device node becomes a child ``<server id>-<slug of serial or deviceId>`` (stable across restarts;
the first id given to a server ``deviceId`` is kept for the adapter's life). What maps where:

* ``deviceState`` ONLINE → child ONLINE; INCOMPATIBLE_TOO_OLD/NEW → DEGRADED with the reason (the server
  will not control it); OFFLINE → child OFFLINE ("the System API reports it offline"), channels stale.
* DISCOVERED nodes carry a reduced identity (JB mock: no serial, firmware or capabilities). A child id
  from the bare ``deviceId`` would change once the serial appears, so such a node is only *logged*
  unless it already maps to a child (then DEGRADED) or carries a serial (then a DEGRADED child).
* A device missing from ``forget_after`` consecutive device lists is removed (the first miss marks it
  OFFLINE): one odd answer, such as a freshly restarted service that has not rediscovered its devices
  yet, never wipes the board.
* Audio channels → channels 1..n (name, mute, gain). Battery (``battery-level``/``-health``) → the
  transmitter fields of channel 1; a battery device without audio channels (ULXD6/8 bodypack or
  handheld, docked per Shure's notes) gets one synthetic channel named like the device, so its battery
  shows and alerts like any transmitter's. Runtime is ``timeToTargetState`` only while DISCHARGING.
* Channel ``activity`` CLIPPING → the meters' clip flag; LOW/GOOD are not levels and are not invented
  into dBFS. No RF, frequency or battery bars: the API has none (reference §5).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Awaitable, Iterable
from dataclasses import dataclass, field
from typing import Any, Final

from ....config import DeviceConfig
from ....model import ConnState, ErrorKind, Manufacturer, Meters, now, slugify
from ...base import DeviceLink
from .client import ApiClient, ApiStatusError, seg
from .codec import (
    CHANNEL_SUBSCRIPTIONS,
    DEVICE_SUBSCRIPTIONS,
    Activity,
    AudioChannelInfo,
    Cap,
    CodecError,
    DeviceNode,
    Event,
    EventName,
    GainRange,
    NodeState,
    excerpt,
    number_channels,
    parse_activity,
    parse_audio_channels,
    parse_battery_health,
    parse_battery_level,
    parse_device_node,
    parse_flag,
    parse_gain,
    parse_gain_description,
    parse_name,
)
from .options import SystemApiOptions

OFFLINE_REASON: Final = "the System API reports it offline"
UNLISTED_REASON: Final = "no longer listed by the System API"
MAX_ID: Final = 64  # model.valid_id

Key = tuple[str, int | None, str]  # (child id, channel index or None for the device, field)


async def run_all(aws: Iterable[Awaitable[Any]]) -> None:
    """Run awaitables concurrently; the first failure cancels the rest and is raised as itself (no group)."""
    tasks = [asyncio.ensure_future(a) for a in aws]
    if not tasks:
        return
    try:
        done, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
    except asyncio.CancelledError:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise
    for t in pending:
        t.cancel()
    if pending:
        await asyncio.gather(*pending, return_exceptions=True)
    for t in done:
        exc = t.exception()
        if exc is not None:
            raise exc


@dataclass(eq=False)
class Child:
    """What the adapter knows about one device behind the server."""

    device_id: str  # the server's hardwareIdentity.deviceId
    child_id: str
    link: DeviceLink
    node: DeviceNode
    infos: dict[int, AudioChannelInfo] = field(default_factory=dict)  # channel number → listing
    numbers: dict[str, int] = field(default_factory=dict)  # opaque channel id → channel number
    gain_ranges: dict[int, GainRange] = field(default_factory=dict)
    own_mute: dict[int, bool] = field(default_factory=dict)
    device_muted: bool | None = None
    name: str | None = None
    synced: bool = False  # channels listed, subscribed and read since it last came online
    subscribed: set[str] = field(default_factory=set)  # subscription paths on the current transport
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)  # one sync at a time per device

    @property
    def battery(self) -> bool:
        return self.node.has(Cap.BATTERY_LEVEL) or self.node.has(Cap.BATTERY_HEALTH)

    @property
    def synthetic(self) -> bool:
        """A battery device with no audio channel: channel 1 stands for the transmitter itself."""
        return self.battery and not self.infos

    @property
    def channel_count(self) -> int:
        return len(self.infos) or (1 if self.battery else 0)

    def path(self, *parts: str) -> str:
        return "/devices/" + "/".join((seg(self.device_id), *parts))

    def channel_path(self, number: int, *parts: str) -> str:
        return self.path("audio-channels", seg(self.infos[number].channel_id), *parts)

    def muted(self, number: int) -> bool | None:
        """What a channel's output is: muted by its own mute or by the device's audio-mute."""
        own = self.own_mute.get(number)
        dev = self.device_muted if self.node.has(Cap.AUDIO_MUTE) else None
        if own is None and dev is None:
            return None
        return bool(own) or bool(dev)


class Inventory:
    """Children of one server: maps device lists, reads and events onto their DeviceLinks."""

    def __init__(self, config: DeviceConfig, opt: SystemApiOptions, client: ApiClient, link: DeviceLink) -> None:
        self.config = config
        self.opt = opt
        self.client = client
        self.link = link
        self.log = link.log
        self.children: dict[str, Child] = {}  # by server deviceId
        self.ids: dict[str, str] = {}  # server deviceId → child id, kept for the adapter's life
        self.transport: str | None = None
        self._unlisted: dict[str, int] = {}  # child id → consecutive device lists without it
        self._logged_skips: set[str] = set()
        self._warned: set[str] = set()  # per session: (child, path) reads that failed, warned once
        self._watch: dict[Key, asyncio.Event] = {}
        self.reported: dict[Key, Any] = {}  # last value the server reported per key (for command echoes)
        self._generation: dict[Key, int] = {}  # bumped per report; reads in flight compare against it

    # ------------------------------------------------------------------ lookups

    def by_child_id(self, child_id: str) -> Child | None:
        return next((c for c in self.children.values() if c.child_id == child_id), None)

    def watch(self, key: Key) -> asyncio.Event:
        """An event set whenever the server reports ``key``; commands wait on it for their echo."""
        ev = self._watch.get(key)
        if ev is None:
            ev = self._watch[key] = asyncio.Event()
        return ev

    def report(self, child: Child, number: int | None, name: str, value: Any) -> None:
        """The server reported ``value`` (event, read or command echo): newer than any read still in flight."""
        key = (child.child_id, number, name)
        self.reported[key] = value
        self._generation[key] = self._generation.get(key, 0) + 1
        ev = self._watch.get(key)
        if ev is not None:
            ev.set()

    def _stamp(self, child: Child, number: int | None, name: str) -> int:
        return self._generation.get((child.child_id, number, name), 0)

    def _fresh(self, child: Child, number: int | None, name: str, stamp: int) -> bool:
        """True when nothing was reported for the key since ``stamp`` (a read must not undo a newer event)."""
        if self._stamp(child, number, name) == stamp:
            return True
        self.log.debug("%s: %s read back older than a pushed value; kept the pushed one", child.child_id, name)
        return False

    def session_started(self, transport: str | None) -> None:
        self.transport = transport
        self._warned.clear()
        for child in self.children.values():
            child.synced = False
            child.subscribed.clear()

    # ------------------------------------------------------------------ device lists

    def apply_list(self, nodes: Iterable[DeviceNode]) -> list[str]:
        """Apply a complete device list; returns the deviceIds whose details need (re)reading."""
        need: list[str] = []
        listed: set[str] = set()
        for node in nodes:
            child = self._admit(node)
            if child is None:
                continue
            if child.child_id in listed:
                self.log.warning("the device list names %s twice; the later node wins", child.device_id)
            listed.add(child.child_id)
            if self._update(child, node):
                need.append(node.device_id)
        known = set(self.link.known_children()) | {c.child_id for c in self.children.values()}
        for child_id in sorted(known - listed):
            misses = self._unlisted.get(child_id, 0) + 1
            self._unlisted[child_id] = misses
            if misses >= self.opt.forget_after:
                self.log.info("%s is no longer listed by the System API; removing it", child_id)
                self._forget(child_id)
            else:
                self.link.child(child_id).device(
                    state=ConnState.OFFLINE, error_kind=ErrorKind.RETRYABLE, last_error=UNLISTED_REASON
                )
                self._mark_stale(self.by_child_id(child_id))
        for child_id in listed:
            self._unlisted.pop(child_id, None)
        return need

    def _forget(self, child_id: str) -> None:
        self._unlisted.pop(child_id, None)
        for dev_id, child in list(self.children.items()):
            if child.child_id == child_id:
                del self.children[dev_id]
        self.link.remove_child(child_id)

    def _admit(self, node: DeviceNode) -> Child | None:
        """The child for a node (created on first sight); None for a DISCOVERED node with no stable id yet."""
        child = self.children.get(node.device_id)
        if child is not None:
            return child
        child_id = self.ids.get(node.device_id)
        if child_id is None:
            if node.state is NodeState.DISCOVERED and node.serial is None:
                if node.device_id not in self._logged_skips:
                    self._logged_skips.add(node.device_id)
                    self.log.info(
                        "the System API has discovered %s %s at %s but does not control it yet; shown once it "
                        "reports a serial number", node.model or "a device", node.device_id, node.address or "?",
                    )
                return None
            child_id = self._new_child_id(node)
            self.ids[node.device_id] = child_id
        child = Child(node.device_id, child_id, self.link.child(child_id), node)
        self.children[node.device_id] = child
        return child

    def _new_child_id(self, node: DeviceNode) -> str:
        taken = set(self.ids.values())
        for identity in (node.identity, node.device_id):
            child_id = shorten(f"{self.config.id}-{slugify(identity)}")
            if child_id not in taken:
                return child_id
        self.log.warning("%s: serial %s is already used by another device; id from its deviceId",
                         node.device_id, node.serial)
        return shorten(f"{self.config.id}-{slugify(node.device_id)}-{len(taken)}")

    def _update(self, child: Child, node: DeviceNode) -> bool:
        """Publish a node's identity and state; True when the child's details need (re)reading."""
        old = child.node
        child.node = node
        fields: dict[str, Any] = {"manufacturer": Manufacturer.SHURE, "family": "systemapi"}
        for key, value in (("model", node.model), ("firmware", node.firmware), ("serial", node.serial),
                           ("host", node.address)):
            if value is not None:
                fields[key] = value
        if node.name and not node.has(Cap.NAME):
            fields["name"] = child.name = node.name
        child.link.device(**fields)
        if node.state is NodeState.ONLINE:
            if node.compatibility.incompatible:
                too = "old" if node.compatibility.value.endswith("OLD") else "new"
                child.link.device(
                    state=ConnState.DEGRADED, error_kind=ErrorKind.NONE, stale=False,
                    last_error=f"firmware {node.firmware or '?'} is too {too} for the System API "
                    f"({node.compatibility.value}); it is listed but cannot be controlled until updated",
                )
            else:
                child.link.online()
            became = old.state is not NodeState.ONLINE or old.capabilities != node.capabilities
            if became and child.synced:
                self.log.debug("%s: %s; re-reading", child.child_id,
                               "capabilities changed" if old.state is NodeState.ONLINE else "back online")
            return (not child.synced and not child.lock.locked()) or became
        child.synced = False
        child.subscribed.clear()
        if node.state is NodeState.OFFLINE:
            child.link.device(state=ConnState.OFFLINE, error_kind=ErrorKind.RETRYABLE, last_error=OFFLINE_REASON)
        elif node.state is NodeState.DISCOVERED:
            child.link.device(
                state=ConnState.DEGRADED, error_kind=ErrorKind.NONE,
                last_error="discovered by the System API but not under its control (check its network interface)",
            )
        else:
            child.link.device(state=ConnState.DEGRADED, error_kind=ErrorKind.NONE,
                              last_error="the System API reports an unknown device state")
        self._mark_stale(child)
        return False

    def _mark_stale(self, child: Child | None) -> None:
        if child is None:
            return
        for number in range(1, child.channel_count + 1):
            child.link.channel(number, stale=True)

    # ------------------------------------------------------------------ details

    async def sync(self, device_id: str) -> None:
        """List channels, subscribe, then read every property the capabilities promise (in that order,
        so no change between the read and the subscription is missed)."""
        child = self.children.get(device_id)
        if child is None:
            return
        async with child.lock:
            if child.node.state is NodeState.ONLINE:
                await self._sync(child)

    async def _sync(self, child: Child) -> None:
        infos: list[AudioChannelInfo] = []
        if child.node.has(Cap.AUDIO_CHANNELS):
            raw = await self._get(child, child.path("audio-channels"))
            if raw is not None:
                try:
                    infos = parse_audio_channels(raw)
                except CodecError as exc:
                    self._warn(child, "audio-channels", f"unreadable audio channel list: {exc}")
        before = child.channel_count
        child.infos = dict(number_channels(infos))
        child.numbers = {info.channel_id: n for n, info in child.infos.items()}
        count = child.channel_count
        child.link.device(channel_count=count)
        for number in range(count + 1, before + 1):  # channels the device no longer lists keep their values, stale
            child.link.channel(number, stale=True)
        if self.transport is not None:
            await self._subscribe(child, self.transport)
        await run_all([self._read_device(child), *(self._read_channel(child, n) for n in child.infos)])
        child.synced = True

    async def _subscribe(self, child: Child, transport: str) -> None:
        t = seg(transport)
        paths = [child.path(str(cap), "subscription", t) for cap in DEVICE_SUBSCRIPTIONS if child.node.has(cap)]
        for number, info in child.infos.items():
            paths += [child.channel_path(number, str(cap), "subscription", t)
                      for cap in CHANNEL_SUBSCRIPTIONS if info.has(cap)]
        await run_all(self._subscribe_one(child, p) for p in paths if p not in child.subscribed)

    async def _subscribe_one(self, child: Child, path: str) -> None:
        try:
            await self.client.post(path)
        except (ApiStatusError, CodecError) as exc:
            # JB logs these at debug: a capability whose events the server does not offer
            self.log.info("%s: subscription refused (%s); that property is only re-read", child.child_id, exc)
            return
        child.subscribed.add(path)

    async def _get(self, child: Child, path: str) -> Any:
        """A GET for one child's property; None (warned once per session) when it fails for that child only."""
        try:
            return await self.client.get(path)
        except ApiStatusError as exc:
            self._warn(child, path, str(exc))
        except CodecError as exc:
            self._warn(child, path, str(exc))
        return None

    def _warn(self, child: Child, what: str, text: str) -> None:
        key = f"{child.child_id} {what}"
        level = logging.DEBUG if key in self._warned else logging.WARNING
        self._warned.add(key)
        self.log.log(level, "%s: %s", child.child_id, text)

    async def _read(self, child: Child, number: int | None, key: str, path: str) -> Any:
        """GET one property for a sync; None when it failed or an event reported a newer value meanwhile."""
        stamp = self._stamp(child, number, key)
        raw = await self._get(child, path)
        return raw if raw is not None and self._fresh(child, number, key, stamp) else None

    async def _read_device(self, child: Child) -> None:
        node = child.node
        if node.has(Cap.NAME) and (raw := await self._read(child, None, "name", child.path("name"))) is not None:
            self._parsed(child, "name", raw, lambda: self._apply_name(child, parse_name(raw)))
        if node.has(Cap.AUDIO_MUTE) and (
            raw := await self._read(child, None, "muted", child.path("audio-mute"))
        ) is not None:
            self._parsed(child, "audio-mute", raw, lambda: self._apply_device_mute(child, parse_flag(raw, "muted")))
        if node.has(Cap.BATTERY_LEVEL) and (
            raw := await self._read(child, None, "battery", child.path("battery-level"))
        ) is not None:
            self._parsed(child, "battery-level", raw, lambda: self._apply_battery(child, raw))
        if node.has(Cap.BATTERY_HEALTH) and (
            raw := await self._read(child, None, "health", child.path("battery-health"))
        ) is not None:
            self._parsed(child, "battery-health", raw, lambda: self._apply_health(child, raw))
        if child.synthetic and not node.has(Cap.BATTERY_LEVEL):
            child.link.channel(1, name=child.name, tx={"present": True, "model": node.model})

    async def _read_channel(self, child: Child, number: int) -> None:
        info = child.infos[number]
        fields: dict[str, Any] = {}

        async def read(cap: Cap, *tail: str) -> Any:
            return await self._get(child, child.channel_path(number, str(cap), *tail)) if info.has(cap) else None

        stamps = {key: self._stamp(child, number, key) for key in ("name", "muted", "gain_db", "activity")}
        name, mute, gain, desc, activity = await asyncio.gather(
            read(Cap.NAME), read(Cap.MUTE), read(Cap.GAIN), read(Cap.GAIN, "description"), read(Cap.ACTIVITY)
        )

        def fresh(raw: Any, key: str) -> bool:  # checked now, after every read of the channel has returned
            return raw is not None and self._fresh(child, number, key, stamps[key])

        try:
            if fresh(name, "name"):
                fields["name"] = parse_name(name)
                self.report(child, number, "name", fields["name"])
            if fresh(mute, "muted"):
                child.own_mute[number] = parse_flag(mute, "muted")
                self.report(child, number, "muted", child.own_mute[number])
            if fresh(gain, "gain_db"):
                fields["gain_db"] = parse_gain(gain)
                self.report(child, number, "gain_db", fields["gain_db"])
            if desc is not None:
                child.gain_ranges[number] = parse_gain_description(desc)
        except CodecError as exc:
            self._warn(child, f"channel {number}", f"channel {number}: {exc}")
        fields["muted"] = child.muted(number)
        child.link.channel(number, **fields)
        if fresh(activity, "activity"):
            self._parsed(child, "activity", activity,
                         lambda: self._apply_activity(child, number, parse_activity(activity)))

    def _parsed(self, child: Child, what: str, raw: Any, apply: Any) -> None:
        try:
            apply()
        except CodecError as exc:
            self._warn(child, what, f"{what}: {exc} ({excerpt(raw)})")

    # ------------------------------------------------------------------ applying values

    def _apply_name(self, child: Child, name: str) -> None:
        child.name = name
        child.link.device(name=name)
        self.report(child, None, "name", name)
        if child.synthetic:
            child.link.channel(1, name=name, tx={"device_name": name})
        elif child.battery and child.infos:
            child.link.channel(1, tx={"device_name": name})

    def _apply_device_mute(self, child: Child, muted: bool) -> None:
        child.device_muted = muted
        self.report(child, None, "muted", muted)
        for number in range(1, child.channel_count + 1):
            child.link.channel(number, muted=child.muted(number) if child.infos else muted)

    def _apply_battery(self, child: Child, raw: Any) -> None:
        level = parse_battery_level(raw)
        self.report(child, None, "battery", level)
        tx: dict[str, Any] = {
            "present": True,
            "battery_percent": level.percent,
            "runtime_minutes": level.runtime_minutes,
            "charging": level.charging,
        }
        fields: dict[str, Any] = {}
        if child.synthetic:
            tx.update(model=child.node.model, device_name=child.name)
            fields["name"] = child.name
        child.link.channel(1, tx=tx, **fields)

    def _apply_health(self, child: Child, raw: Any) -> None:
        health = parse_battery_health(raw)
        self.report(child, None, "health", health)
        child.link.channel(1, tx={"battery_health_percent": health.percent, "battery_cycles": health.cycles})

    def _apply_activity(self, child: Child, number: int, activity: Activity) -> None:
        self.report(child, number, "activity", activity)
        child.link.meters(Meters(child.child_id, number, clip=activity is Activity.CLIPPING, at=now()))

    # ------------------------------------------------------------------ events

    def handle(self, event: Event) -> tuple[list[str], bool]:
        """Apply one event; returns (deviceIds to re-read, whether the device list wants re-reading)."""
        if event.name is EventName.DEVICE_STATE_CHANGE:
            return self._state_change(event)
        child = self.children.get(event.device_id or "")
        if child is None:
            self.log.debug("%s for unknown device %s; re-reading the device list", event.raw_name, event.device_id)
            return [], True
        child.link.received()
        number: int | None = None
        if event.name.value.startswith("AUDIO_CHANNEL_"):
            number = child.numbers.get(event.channel_id or "")
            if number is None:
                self.log.debug("%s: %s for an unknown channel; re-reading it", child.child_id, event.raw_name)
                return [child.device_id], False
        try:
            self._apply_event(child, event, number)
        except CodecError as exc:
            # WARNING once per device and event kind, then DEBUG: activity events can repeat it many times a second
            self._warn(child, f"{event.raw_name} event", f"{event.raw_name} event ignored: {exc}")
        return [], False

    def _apply_event(self, child: Child, event: Event, number: int | None) -> None:
        body = event.body
        match event.name:
            case EventName.DEVICE_NAME:
                self._apply_name(child, parse_name(body))
            case EventName.DEVICE_IDENTIFY:
                self.report(child, None, "identifying", parse_flag(body, "identifying"))
            case EventName.DEVICE_AUDIO_MUTE:
                self._apply_device_mute(child, parse_flag(body, "muted"))
            case EventName.DEVICE_BATTERY_LEVEL:
                self._apply_battery(child, body)
            case EventName.DEVICE_BATTERY_HEALTH:
                self._apply_health(child, body)
            case EventName.AUDIO_CHANNEL_NAME if number is not None:
                name = parse_name(body)
                child.link.channel(number, name=name)
                self.report(child, number, "name", name)
            case EventName.AUDIO_CHANNEL_MUTE if number is not None:
                child.own_mute[number] = parse_flag(body, "muted")
                child.link.channel(number, muted=child.muted(number))
                self.report(child, number, "muted", child.own_mute[number])
            case EventName.AUDIO_CHANNEL_GAIN if number is not None:
                gain = parse_gain(body)
                child.link.channel(number, gain_db=gain)
                self.report(child, number, "gain_db", gain)
            case EventName.AUDIO_CHANNEL_ACTIVITY if number is not None:
                self._apply_activity(child, number, parse_activity(body))
            case _:
                self.log.debug("%s: event %s not used", child.child_id, event.raw_name)

    def _state_change(self, event: Event) -> tuple[list[str], bool]:
        try:
            node = parse_device_node(event.body)
        except CodecError as exc:
            self.log.warning("DEVICE_STATE_CHANGE for %s ignored: %s", event.device_id, exc)
            return [], True
        child = self._admit(node)
        if child is None:
            return [], False
        self._unlisted.pop(child.child_id, None)
        child.link.received()
        return ([node.device_id] if self._update(child, node) else []), False


def shorten(child_id: str) -> str:
    """A child id within 64 characters: over-long ones keep a stable hash suffix instead of colliding."""
    if len(child_id) <= MAX_ID:
        return child_id
    digest = hashlib.sha1(child_id.encode(), usedforsecurity=False).hexdigest()[:8]
    return f"{child_id[:MAX_ID - 9].rstrip('-')}-{digest}"
