"""A simulated Shure System API server: HTTPS REST and the event WebSocket on one TLS port, many devices.

Written from reference/shure.md §5 on its own (it never imports micboardd's adapters). It serves what
JB's real-server probe and mock show: ``x-api-key`` with a problem-JSON 401, Relay pagination of
``GET /devices`` (or the bare-array / ``{items}`` shapes), per-capability subscriptions bound to a
WebSocket transport id, event envelopes, channel activity re-emitted every 5 s, and the empty-JSON-body
gotcha (a bodyless request that says ``Content-Type: application/json`` gets a 400). It has no RF data,
because the real API has none.

Controls (``add_device``, ``remove_device``, ``set_state``, ``rename`` …) change a device the way the
server would see it change and push the matching events; fault modes (:class:`SimFault`) exercise the
client's liveness and error paths.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import json
import logging
import random
import uuid
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from .._https import HttpRequest
from .api import API_PREFIX, Router, problem, unauthorized
from .state import ACTIVITY_LEVELS, BATTERY_STATES, NODE_STATES, SimDevice, make_device
from .wire import HttpReply, WireServer, WsPeer

log = logging.getLogger(__name__)

WS_PATH: Final = API_PREFIX + "/subscriptions/websocket/create"
ACTIVITY_S: Final = 5.0  # the real server re-emits channel activity every 5 s (JB mock README)
LIVELY_S: Final = 1.0  # how often a lively simulator drains batteries and moves activity
IDENTIFY_S: Final = 30.0  # the sim's devices stop flashing by themselves after this (UNVERIFIED on hardware)
REBOOT_S: Final = 4.0  # JB's mock brings a rebooted device back after 4 s
MAX_REQUESTS: Final = 5000  # the request log keeps the latest ones so a long demo does not grow without end
DEFAULT_FLEET: Final[tuple[tuple[str, dict[str, Any]], ...]] = (
    ("ULXD4D", {"name": "Rack A"}),
    ("AD4Q", {"name": "Rack B"}),
    ("ULXD6", {"name": "Lead Vox"}),
    ("ULXD4", {"compatibility": "INCOMPATIBLE_TOO_OLD"}),
    ("ULXD4Q", {"state": "OFFLINE"}),
)


class SimFault(enum.StrEnum):
    SILENT = "silent"  # REST requests hang, the socket neither sends nor reads (no pong)
    RESET = "reset"  # every connection is reset, now and on every new attempt
    GARBAGE = "garbage"  # events go out as malformed JSON
    SLOW = "slow"  # every REST answer is delivered slow_s late (events pushed meanwhile overtake it)
    WRONG_KEY = "wrong_key"  # the shared key was regenerated: every key is wrong


@dataclass(frozen=True, slots=True)
class SimRequest:
    """One request as the server saw it (for tests: what was asked, with which headers)."""

    method: str
    path: str
    query: str
    has_key: bool
    content_type: str | None
    body: bytes


@dataclass(eq=False)
class SimTransport:
    transport_id: str
    peer: WsPeer
    subs: set[str] = field(default_factory=set)


class SystemApiSim:
    """A Shure System API server on ``host:port`` fronting simulated devices."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        api_key: str = "secret",
        seed: int = 0,
        lively: bool = False,
        page_size: int = 50,
        list_shape: str = "relay",
        activity_s: float = ACTIVITY_S,
        slow_s: float = 2.0,
        devices: Sequence[str | tuple[str, dict[str, Any]]] | None = None,
    ) -> None:
        if list_shape not in ("relay", "array", "items"):
            raise ValueError("list_shape must be relay, array or items")
        if page_size < 1:
            raise ValueError("page_size must be at least 1")
        self.host = host
        self.api_key = api_key
        self.seed = seed
        self.lively = lively
        self.page_size = page_size
        self.list_shape = list_shape
        self.activity_s = activity_s
        self.slow_s = slow_s
        self.fault: SimFault | None = None
        self.requests: deque[SimRequest] = deque(maxlen=MAX_REQUESTS)
        self.events_sent = 0
        self._rng = random.Random(seed)
        self._count = 0
        self._devices: dict[str, SimDevice] = {}
        self._transports: dict[str, SimTransport] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._loops: list[asyncio.Task[None]] = []
        self._not_silent = asyncio.Event()
        self._not_silent.set()
        self._router = Router(self)
        self._wire = WireServer(
            host, port, rest=self._rest, ws_path=WS_PATH, ws_gate=self._ws_gate, ws=self._ws,
            reset=lambda: self.fault is SimFault.RESET,
        )
        fleet = DEFAULT_FLEET if devices is None else devices
        for entry in fleet:
            model, kwargs = (entry, {}) if isinstance(entry, str) else entry
            self._add(model, **kwargs)

    # ------------------------------------------------------------------ lifecycle

    @property
    def port(self) -> int:
        return self._wire.port

    @property
    def ca_file(self) -> str:
        return self._wire.ca_file

    @property
    def cert_file(self) -> str:
        return self._wire.cert_file

    @property
    def running(self) -> bool:
        return self._wire.running

    async def start(self) -> None:
        """Listen (the same port again after a stop) and start the activity and lively loops."""
        await self._wire.listen()
        self.set_fault(self.fault)  # a hang set before a stop holds again after the restart
        if self.activity_s > 0:
            self._loops.append(asyncio.create_task(self._activity_loop(), name="sysapi-sim activity"))
        if self.lively:
            self._loops.append(asyncio.create_task(self._lively_loop(), name="sysapi-sim lively"))

    async def stop(self) -> None:
        """Stop listening and drop every connection (the service going down)."""
        self._not_silent.set()  # release requests held by the silent fault; their connections are dropped next
        for task in [*self._loops, *self._tasks]:
            task.cancel()
        await asyncio.gather(*self._loops, *self._tasks, return_exceptions=True)
        self._loops.clear()
        self._tasks.clear()
        self._transports.clear()
        await self._wire.stop()

    def cleanup(self) -> None:
        """Remove the certificate files."""
        self._wire.cleanup()

    # ------------------------------------------------------------------ faults

    def set_fault(self, fault: SimFault | str | None) -> None:
        self.fault = SimFault(fault) if fault is not None else None
        if self.fault is SimFault.SILENT:
            self._not_silent.clear()
        else:
            self._not_silent.set()
        if self.fault is SimFault.RESET:
            self._wire.drop_connections()

    def send_garbage(self, text: str = '{"envelope": {"eventName": "DEVICE_NAME", ') -> None:
        """One malformed message to every open event socket."""
        for t in list(self._transports.values()):
            t.peer.send_text(text)

    # ------------------------------------------------------------------ reading state

    @property
    def devices(self) -> list[SimDevice]:
        return list(self._devices.values())

    def device(self, device_id: str) -> SimDevice | None:
        return self._devices.get(device_id.lower())

    def by_model(self, model: str) -> SimDevice:
        """The first device of a model (tests address the default fleet this way)."""
        return next(d for d in self._devices.values() if d.model == model)

    @property
    def transports(self) -> list[str]:
        return list(self._transports)

    def transport_subs(self, transport_id: str) -> set[str] | None:
        t = self._transports.get(transport_id)
        return None if t is None else t.subs

    # ------------------------------------------------------------------ controls

    def _add(self, model: str, **kwargs: Any) -> SimDevice:
        self._count += 1
        dev = make_device(self._rng, self._count, model, seed=self.seed, **kwargs)
        self._devices[dev.device_id] = dev
        return dev

    def add_device(self, model: str, **kwargs: Any) -> str:
        """Add a device (kwargs as :func:`.state.make_device`); announces it with DEVICE_STATE_CHANGE."""
        dev = self._add(model, **kwargs)
        self._state_change(dev)
        return dev.device_id

    def remove_device(self, device_id: str) -> None:
        """Forget a device; like JB's mock, nothing is pushed (clients notice at their next list)."""
        self._devices.pop(device_id, None)

    def set_state(self, device_id: str, state: str) -> None:
        if state not in NODE_STATES:
            raise ValueError(f"state must be one of {', '.join(NODE_STATES)}")
        dev = self._require(device_id)
        if dev.state != state:
            dev.state = state
            self._state_change(dev)

    def set_capabilities(self, device_id: str, caps: Sequence[str]) -> None:
        """Capabilities change without an event (reference §5: they are not pushed)."""
        self._require(device_id).caps = list(caps)

    def rename(self, device_id: str, name: str) -> None:
        dev = self._require(device_id)
        dev.name = name
        self._device_event(dev, "DEVICE_NAME", {"name": name})

    def set_identify(self, device_id: str, on: bool) -> None:
        dev = self._require(device_id)
        dev.identifying = on
        self._device_event(dev, "DEVICE_IDENTIFY", {"identifying": on})
        if on:
            self._later(IDENTIFY_S, lambda: self.set_identify(device_id, False) if dev.identifying else None)

    def set_device_mute(self, device_id: str, muted: bool) -> None:
        dev = self._require(device_id)
        dev.audio_mute = muted
        self._device_event(dev, "DEVICE_AUDIO_MUTE", {"muted": muted})

    def set_battery(
        self, device_id: str, *, percent: float | None = None, state: str | None = None, minutes: int | None = None,
        health: int | None = None, cycles: int | None = None,
    ) -> None:
        dev = self._require(device_id)
        if dev.battery is None:
            raise ValueError(f"{dev.model} {device_id} has no battery")
        b = dev.battery
        if state is not None:
            if state not in BATTERY_STATES:
                raise ValueError(f"battery state must be one of {', '.join(BATTERY_STATES)}")
            b.state = state
        if percent is not None:
            b.percent = max(0.0, min(100.0, percent))
        if minutes is not None:
            b.minutes = minutes
        if percent is not None or state is not None or minutes is not None:
            self._device_event(dev, "DEVICE_BATTERY_LEVEL", b.level_body())
        if health is not None or cycles is not None:
            b.health = b.health if health is None else health
            b.cycles = b.cycles if cycles is None else cycles
            self._device_event(dev, "DEVICE_BATTERY_HEALTH", b.health_body())

    def rename_channel(self, device_id: str, number: int, name: str) -> None:
        dev, ch = self._channel(device_id, number)
        ch.name = name
        self._channel_event(dev, ch.channel_id, "AUDIO_CHANNEL_NAME", {"name": name})

    def set_mute(self, device_id: str, number: int, muted: bool) -> None:
        dev, ch = self._channel(device_id, number)
        ch.muted = muted
        self._channel_event(dev, ch.channel_id, "AUDIO_CHANNEL_MUTE", {"muted": muted})

    def set_gain(self, device_id: str, number: int, gain: float) -> None:
        dev, ch = self._channel(device_id, number)
        ch.gain = gain
        self._channel_event(dev, ch.channel_id, "AUDIO_CHANNEL_GAIN", {"gain": gain})

    def set_activity(self, device_id: str, number: int, level: str) -> None:
        if level not in ACTIVITY_LEVELS:
            raise ValueError(f"activity must be one of {', '.join(ACTIVITY_LEVELS)}")
        dev, ch = self._channel(device_id, number)
        ch.activity = level
        self._channel_event(dev, ch.channel_id, "AUDIO_CHANNEL_ACTIVITY", {"audioLevel": level})

    def reboot(self, device_id: str) -> None:
        self.set_state(device_id, "OFFLINE")
        self._later(REBOOT_S, lambda: self.set_state(device_id, "ONLINE") if device_id in self._devices else None)

    def _require(self, device_id: str) -> SimDevice:
        dev = self.device(device_id)
        if dev is None:
            raise KeyError(f"no device {device_id}")
        return dev

    def _channel(self, device_id: str, number: int) -> tuple[SimDevice, Any]:
        dev = self._require(device_id)
        if not 1 <= number <= len(dev.channels):
            raise KeyError(f"{dev.model} {device_id} has no channel {number}")
        return dev, dev.channels[number - 1]

    def _later(self, delay: float, action: Any) -> None:
        async def run() -> None:
            await asyncio.sleep(delay)
            action()

        with contextlib.suppress(RuntimeError):  # no loop (controls used before start): nothing to schedule
            task = asyncio.get_running_loop().create_task(run())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    # ------------------------------------------------------------------ events

    def _publish(self, key: str, envelope: dict[str, Any], body: Any) -> None:
        if not self._not_silent.is_set():
            return
        text = json.dumps({"envelope": envelope, "body": body}, separators=(",", ":"))
        if self.fault is SimFault.GARBAGE:
            text = text[: len(text) // 2]
        for t in list(self._transports.values()):
            if key in t.subs:
                t.peer.send_text(text)
                self.events_sent += 1

    def _state_change(self, dev: SimDevice) -> None:
        self._publish("DEVICE_STATE_CHANGE", {"eventName": "DEVICE_STATE_CHANGE", "deviceId": dev.device_id},
                      dev.node())

    def _device_event(self, dev: SimDevice, name: str, body: Any) -> None:
        self._publish(f"{dev.device_id}:{name}", {"eventName": name, "deviceId": dev.device_id}, body)

    def _channel_event(self, dev: SimDevice, channel_id: str, name: str, body: Any) -> None:
        envelope = {"eventName": name, "deviceId": dev.device_id, "audioChannelId": channel_id}
        self._publish(f"{dev.device_id}:{channel_id}:{name}", envelope, body)

    async def _activity_loop(self) -> None:
        while True:
            await asyncio.sleep(self.activity_s)
            for dev in list(self._devices.values()):
                if dev.state != "ONLINE":
                    continue
                for ch in dev.channels:
                    if "activity" in ch.caps:
                        self._channel_event(dev, ch.channel_id, "AUDIO_CHANNEL_ACTIVITY", {"audioLevel": ch.activity})

    async def _lively_loop(self) -> None:
        while True:
            await asyncio.sleep(LIVELY_S)
            for dev in list(self._devices.values()):
                if dev.state != "ONLINE":
                    continue
                for ch in dev.channels:
                    ch.activity = self._rng.choices(ACTIVITY_LEVELS, weights=(30, 68, 2))[0]
                b = dev.battery
                if b is not None and b.state in ("DISCHARGING", "CHARGING"):
                    before = round(b.percent)
                    b.percent = max(0.0, min(100.0, b.percent + (0.2 if b.state == "CHARGING" else -0.1)))
                    b.minutes = round((100 - b.percent) * 1.5 if b.state == "CHARGING" else b.percent * 4.5)
                    if b.percent <= 0:
                        b.state = "EMPTY"
                    elif b.percent >= 100:
                        b.state = "FULL"
                    if round(b.percent) != before:
                        self._device_event(dev, "DEVICE_BATTERY_LEVEL", b.level_body())

    # ------------------------------------------------------------------ wire handlers

    def _key_ok(self, headers: dict[str, str]) -> bool:
        return self.fault is not SimFault.WRONG_KEY and headers.get("x-api-key") == self.api_key

    async def _rest(self, req: HttpRequest) -> HttpReply:
        self.requests.append(SimRequest(req.method, req.path, req.query, "x-api-key" in req.headers,
                                        req.headers.get("content-type"), req.body))
        await self._not_silent.wait()
        if not req.path.startswith(API_PREFIX + "/"):
            reply = problem(404, "Not Found", "no such resource", req.path)
        elif not self._key_ok(req.headers):
            reply = unauthorized(req.path)
        else:
            reply = self._router.route(req)
        if self.fault is SimFault.SLOW:  # the answer is taken now and delivered late, so it can be overtaken
            await asyncio.sleep(self.slow_s)
        return reply

    def _ws_gate(self, req: HttpRequest) -> HttpReply | None:
        self.requests.append(SimRequest(req.method, req.path, req.query, "x-api-key" in req.headers,
                                        req.headers.get("content-type"), b""))
        # JB's real-server probe opens the socket without a key and is accepted; a key that is sent
        # must be right (the simulator's own choice: never accept a wrong secret anywhere).
        if "x-api-key" in req.headers or self.fault is SimFault.WRONG_KEY:
            return None if self._key_ok(req.headers) else unauthorized(req.path)
        return None

    async def _ws(self, peer: WsPeer) -> None:
        transport = SimTransport(str(uuid.uuid4()), peer)
        self._transports[transport.transport_id] = transport
        try:
            await self._not_silent.wait()
            peer.send_text(json.dumps({"transportId": transport.transport_id}))
            await peer.serve(self._not_silent.wait)
        finally:
            self._transports.pop(transport.transport_id, None)


__all__ = ["DEFAULT_FLEET", "WS_PATH", "SimFault", "SimRequest", "SimTransport", "SystemApiSim"]
