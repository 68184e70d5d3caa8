"""The MQTT bridge: keeps the broker's retained topics equal to the hub's state, through any outage.

:class:`MqttBridge` composes the parts and routes what the broker sends. Its
:class:`~micboardd.mqtt.mirror.TopicMirror` turns hub changes into the retained topics, events and
throttled meters wanted on the broker; :class:`~micboardd.mqtt.connection.BrokerConnection` keeps one
session up (fallback, TLS, backoff); at each (re)connect :class:`~micboardd.mqtt.sync.RetainedSync`
reads back what the broker holds and publishes only the difference; then
:class:`~micboardd.mqtt.publisher.Publisher` drains the mirror as it changes. Home Assistant's birth
message replays states after a delay, and ``…/set`` commands go to the action layer.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import Callable
from typing import Any, Final, Protocol

import aiomqtt

from ..config import Config
from ..hub import MeterSubscription, StateHub, Subscription
from ..model import Kind
from .commands import ActionsLike, CommandIntake
from .connection import STOP_TIMEOUT_S, BrokerConnection
from .discovery import DiscoveryContext
from .mirror import PUBLISH_WINDOW, BridgeStats, TopicMirror
from .publisher import Publisher
from .sync import RetainedSync
from .topics import Topics

log = logging.getLogger(__name__)

HELD_RECHECK_S: Final = 30.0  # held topics are judged again at least this often (their device may leave the config)
HA_BIRTH_DELAY_S: Final = 5.0  # give Home Assistant time to process discovery before states are replayed
METER_TICK_S: Final = 0.1  # how often held-back meters are looked at again; well under the 1 s interval
MAX_PENDING_COMMANDS: Final = 32  # commands waiting for a device echo at once; more is a flood, refused


class BridgeHost(Protocol):
    """What the bridge needs from the daemon (the real Daemon, or a small stand-in in benches)."""

    config: Config
    hub: StateHub
    version: str

    @property
    def actions(self) -> ActionsLike: ...

    def set_subsystem(self, name: str, ok: bool | None, detail: str = "") -> None: ...


class MqttBridge:
    """Publishes the hub to an MQTT broker (state, meters, alerts, HA discovery) and takes commands."""

    def __init__(self, daemon: BridgeHost) -> None:
        self.daemon = daemon
        config = daemon.config
        self.config = config.mqtt
        self.topics = Topics.from_config(config)
        self.client_id = config.mqtt.client_id or f"micboardd-{config.site}"
        self.ctx = DiscoveryContext(self.topics, daemon.version, config.mqtt.commands)
        self.stats = BridgeStats()
        wake = asyncio.Event()
        self._held_wake = asyncio.Event()
        self.mirror = TopicMirror(daemon.hub, config, self.topics, self.ctx, stats=self.stats, wake=wake.set,
                                  held_changed=self._held_wake.set)
        self.intake = CommandIntake(self.topics, config.mqtt.commands, daemon.actions, self.mirror.emit)
        self.connection = BrokerConnection(
            daemon, self.config, self.topics, self.stats, client_id=self.client_id,
            concurrent_calls=PUBLISH_WINDOW + MAX_PENDING_COMMANDS, serve=self._serve, on_down=self._went_offline,
        )
        self.publisher = Publisher(self.topics, self.mirror, self.stats, wake=wake, v5=lambda: self.connection.v5)
        self.sync = RetainedSync(daemon, daemon.hub, self.config, self.topics, mirror=self.mirror, stats=self.stats,
                                 flush=self.publisher.flush)
        self.connected = self.connection.connected  # set while a broker session is up
        # Tunable that tests and benches shorten; the others live on the part that uses them (see below).
        self.ha_birth_delay_s = HA_BIRTH_DELAY_S

        self._hub = daemon.hub
        self._stop = asyncio.Event()
        self._conn_task: asyncio.Task[None] | None = None
        self._ha_replay: asyncio.Task[None] | None = None
        self._command_tasks: set[asyncio.Task[Any]] = set()
        self._sub: Subscription | None = None

    # ================================================================== tunables and hooks, kept on their parts

    @property
    def scan_timeout_s(self) -> float:
        return self.sync.scan_timeout_s

    @scan_timeout_s.setter
    def scan_timeout_s(self, value: float) -> None:
        self.sync.scan_timeout_s = value

    @property
    def connect_timeout_s(self) -> float:
        return self.connection.connect_timeout_s

    @connect_timeout_s.setter
    def connect_timeout_s(self, value: float) -> None:
        self.connection.connect_timeout_s = value

    @property
    def backoff_base_s(self) -> float:
        return self.connection.backoff_base_s

    @backoff_base_s.setter
    def backoff_base_s(self, value: float) -> None:
        self.connection.backoff_base_s = value

    @property
    def backoff_cap_s(self) -> float:
        return self.connection.backoff_cap_s

    @backoff_cap_s.setter
    def backoff_cap_s(self, value: float) -> None:
        self.connection.backoff_cap_s = value

    @property
    def protocol(self) -> aiomqtt.ProtocolVersion:
        return self.connection.protocol

    @protocol.setter
    def protocol(self, value: aiomqtt.ProtocolVersion) -> None:
        self.connection.protocol = value

    @property
    def on_published(self) -> Callable[[str, bytes], None] | None:
        """Bench hook: called with every confirmed publish."""
        return self.publisher.on_published

    @on_published.setter
    def on_published(self, hook: Callable[[str, bytes], None] | None) -> None:
        self.publisher.on_published = hook

    # ================================================================== lifecycle

    async def run(self) -> None:
        """Mirror the hub onto the broker until :meth:`stop` (or cancellation); never raises for the broker."""
        sub = self._sub = self._hub.subscribe("mqtt", list(Kind))
        msub = self._hub.subscribe_meters("mqtt")
        try:
            self.mirror.load_all()
            async with asyncio.TaskGroup() as tg:
                tasks = [
                    tg.create_task(self._ingest(sub), name="mqtt-ingest"),
                    tg.create_task(self._meter_ingest(msub), name="mqtt-meters"),
                    tg.create_task(self._judge_held(), name="mqtt-held"),
                ]
                self._conn_task = tg.create_task(self.connection.run(), name="mqtt-connection")
                await self._stop.wait()
                for t in [*tasks, self._conn_task]:
                    t.cancel()
        finally:
            sub.close()
            msub.close()
            for t in [*self._command_tasks, *([self._ha_replay] if self._ha_replay else [])]:
                t.cancel()

    def in_sync(self) -> bool:
        """True when the broker holds exactly what the hub says (connected, nothing pending or in flight)."""
        return (
            self.mirror.online
            and (self._sub is None or self._sub.pending == 0)
            and self.publisher.inflight == 0
            and self.mirror.settled()
        )

    async def stop(self) -> None:
        """Publish ``offline`` on the status topic, disconnect cleanly and let :meth:`run` return."""
        self.connection.stopping = True
        task = self._conn_task
        if task is not None and not task.done():
            task.cancel()  # the session's cleanup publishes "offline" and sends DISCONNECT
            await asyncio.wait({task}, timeout=STOP_TIMEOUT_S + 1.0)
        self._stop.set()
        self.daemon.set_subsystem("mqtt", False, "stopped")

    # ================================================================== one broker session

    async def _serve(self, client: aiomqtt.Client) -> None:
        """A connected session: read what the broker sends, catch it up, then publish changes as they come."""
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self._reader(client), name="mqtt-reader")
            await self.sync.resync(client)
            tg.create_task(self.publisher.run(client), name="mqtt-publisher")

    def _went_offline(self) -> None:
        self.mirror.online = False

    # ================================================================== reading

    async def _reader(self, client: aiomqtt.Client) -> None:
        async for msg in client.messages:
            try:
                self._dispatch(msg)
            except Exception:
                log.exception("could not handle an MQTT message on %s", msg.topic.value)

    def _dispatch(self, msg: aiomqtt.Message) -> None:
        topic = msg.topic.value
        payload = msg.payload if isinstance(msg.payload, bytes) else str(msg.payload or "").encode()
        if self.sync.offer(topic, payload, retain=msg.retain):
            return
        if topic == self.topics.ha_status:
            if payload.strip().lower() == b"online" and not msg.retain:
                self._schedule_ha_replay()
            return
        if topic.endswith("/set") and topic.startswith(self.topics.base + "/") and self.mirror.online:
            if len(self._command_tasks) >= MAX_PENDING_COMMANDS:
                self.intake._error(topic, "busy", f"{MAX_PENDING_COMMANDS} commands already waiting", payload)
                return
            task = asyncio.create_task(self.intake.handle(topic, payload, retained=msg.retain), name="mqtt-command")
            self._command_tasks.add(task)
            task.add_done_callback(self._command_tasks.discard)

    def _schedule_ha_replay(self) -> None:
        if self._ha_replay is not None and not self._ha_replay.done():
            self._ha_replay.cancel()
        self._ha_replay = asyncio.create_task(self._ha_replay_after_delay(), name="mqtt-ha-replay")

    async def _ha_replay_after_delay(self) -> None:
        await asyncio.sleep(self.ha_birth_delay_s)
        log.info("Home Assistant came online: republishing availability and state")
        self.mirror.replay_states()

    # ================================================================== hub → mirror

    async def _ingest(self, sub: Subscription) -> None:
        while True:
            batch = await sub.get()
            self.mirror.guarded("a batch of changes", functools.partial(self.mirror.apply_changes, batch))
            await asyncio.sleep(0)  # let the publisher run between large batches

    async def _judge_held(self) -> None:
        """Clear held channel topics once their device reports a channel set without them (see ``stale``)."""
        while True:
            self._held_wake.clear()
            due: float | None = None
            try:
                due = self.mirror.rejudge_held(self.sync.inventory()) if self.mirror.held else None
            except Exception:  # a bug judging one topic must not end the bridge (its TaskGroup is the daemon's)
                log.exception("could not judge the held retained topics; trying again later")
            timeout = None if not self.mirror.held else HELD_RECHECK_S if due is None else min(due, HELD_RECHECK_S)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await self._held_wake.wait()

    async def _meter_ingest(self, msub: MeterSubscription) -> None:
        interval = self.config.meter_interval_s
        while True:
            if self.mirror.meter_pending:  # held-back meters are due soon even if no new ones arrive
                try:
                    async with asyncio.timeout(METER_TICK_S):
                        batch = await msub.get()
                except TimeoutError:
                    batch = []
            else:
                batch = await msub.get()
            try:
                self.mirror.meter_batch(batch, interval, time.monotonic())
            except Exception:
                log.exception("could not process a meter batch")
            # One pass per tick: meanwhile the subscription keeps only the latest reading per channel,
            # so 400 channels metering at 10 Hz cost 10 passes a second, not 4000.
            await asyncio.sleep(METER_TICK_S)
