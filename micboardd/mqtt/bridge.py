"""The MQTT bridge: keeps the broker's retained topics equal to the hub's state, through any outage.

The bridge holds the retained topics it wants on the broker (``desired``) and what it knows the
broker has (``sent``); hub changes update ``desired``, the publisher sends the difference. On every
(re)connect it reads the broker's retained topics under the base and this site's discovery configs
(cut short by a marker it publishes to itself), so identical messages are not sent again, stale ones
of ours are cleared, and after a broker restart everything is republished. Meters go out lossy and
non-retained at most once per ``meter_interval_s`` per channel, only past a deadband. Broker trouble
never raises out of :meth:`MqttBridge.run`; it reconnects with tenacity backoff and says so in the
daemon's ``mqtt`` subsystem.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import logging
import ssl
import time
import uuid
import zlib
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Final, Protocol

import aiomqtt
import tenacity
from aiomqtt.exceptions import MqttConnectError
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from ..config import Config
from ..hub import Change, MeterSubscription, StateHub, Subscription
from ..model import Alert, Channel, Device, Kind, Meters, Slot
from .commands import ActionsLike, CommandIntake
from .discovery import DiscoveryContext, channel_config, channel_inputs, components_removed, receiver_config
from .topics import (
    SCHEMA,
    TopicError,
    Topics,
    active_alerts_payload,
    alert_event,
    audio_level,
    availability,
    channel_payload,
    device_payload,
    encode,
    flat_channel_values,
    meter_payload,
    rf_level,
    slot_payload,
)

log = logging.getLogger(__name__)

CONNECT_TIMEOUT_S: Final = 10.0  # TCP + TLS + CONNACK on a LAN broker; longer means it is not answering
OPERATION_TIMEOUT_S: Final = 10.0  # a PUBACK/SUBACK slower than this means the session is dead
STOP_TIMEOUT_S: Final = 3.0  # the last "offline" and a clean DISCONNECT must not hold up shutdown
SCAN_TIMEOUT_S: Final = 3.0  # longest wait for the broker's retained replay (our marker normally ends it at once)
HA_BIRTH_DELAY_S: Final = 5.0  # give Home Assistant time to process discovery before states are replayed
KEEPALIVE_S: Final = 30  # the broker fires our will ~45 s after the host vanishes without closing TCP
BACKOFF_BASE_S: Final = 1.0  # a broker restart is usually back within seconds
BACKOFF_CAP_S: Final = 30.0  # keep trying twice a minute for as long as it takes
PUBLISH_WINDOW: Final = 100  # QoS 1 messages in flight at once: one round trip per 100 topics on replay
METER_TICK_S: Final = 0.1  # how often held-back meters are looked at again; well under the 1 s interval
METER_EXPIRY_S: Final = 5  # MQTT v5 message expiry on meters: a level older than this is misleading
METER_HEARTBEAT_S: Final = 30.0  # meters inside the deadband still go out this often so late subscribers see one
LINK_QUALITY_DEADBAND: Final = 5  # percent points; finer changes are noise on every family that reports it
EVENT_BACKLOG: Final = 500  # alert events and command results kept for the broker while it is down
STABLE_SESSION_S: Final = 10.0  # a connection that lived this long was not flapping
FLAP_LIMIT: Final = 3  # this many short-lived sessions in a row get an explanation in the status
MAX_PENDING_COMMANDS: Final = 32  # commands waiting for a device echo at once; more is a flood, refused

_V5_PROTOCOL_REFUSED: Final = frozenset({1, 132})  # 3.1.1 "unacceptable protocol" / v5 "unsupported protocol"
_AUTH_REFUSED: Final = frozenset({4, 5, 134, 135})  # bad user name or password / not authorized
_SESSION_TAKEN_OVER: Final = 142  # v5 DISCONNECT: another connection used our client id


class BridgeHost(Protocol):
    """What the bridge needs from the daemon (the real Daemon, or a small stand-in in benches)."""

    config: Config
    hub: StateHub
    version: str

    @property
    def actions(self) -> ActionsLike: ...

    def set_subsystem(self, name: str, ok: bool | None, detail: str = "") -> None: ...


@dataclass
class BridgeStats:
    """Counters for status, tests and the bench."""

    connects: int = 0
    connect_failures: int = 0
    published: int = 0
    published_bytes: int = 0
    retained_published: int = 0
    meters_published: int = 0
    events_published: int = 0
    stale_cleared: int = 0
    skipped_identical: int = 0
    refused_ids: int = 0
    protocol: str = ""
    last_error: str = ""
    last_connected_at: float | None = None
    kinds: dict[str, int] = field(default_factory=dict)


@dataclass(slots=True)
class _MeterTrack:
    at: float
    rf: float | None
    audio: float | None
    link: int | None
    clip: bool
    antenna: str | None


class _SessionEnded(Exception):
    """The broker connection ended; carries the first real error out of the session's task group."""


def _leaf_error(exc: BaseException) -> BaseException:
    """The first non-cancellation error inside (nested) exception groups."""
    if isinstance(exc, BaseExceptionGroup):
        for sub in exc.exceptions:
            leaf = _leaf_error(sub)
            if not isinstance(leaf, asyncio.CancelledError):
                return leaf
        return exc.exceptions[0]
    return exc


def _rc_value(exc: BaseException) -> int | None:
    """The MQTT return/reason code of an error or of what caused it (a lost connection's DISCONNECT code)."""
    seen: BaseException | None = exc
    while seen is not None:
        rc = getattr(seen, "rc", None)
        if isinstance(rc, ReasonCode):
            return int(rc.value)
        if isinstance(rc, int):
            return rc
        seen = seen.__cause__
    return None


def _describe(exc: BaseException) -> str:
    """A short reason for logs and ``STATUS=``: the broker's own words where it gave any."""
    if isinstance(exc, TimeoutError):
        return "timed out"
    cause = exc.__cause__
    if isinstance(exc, aiomqtt.MqttError) and cause is not None and str(cause):
        exc = cause
    text = str(exc) or type(exc).__name__
    return text.replace("[Errno 111] ", "")


class MqttBridge:
    """Publishes the hub to an MQTT broker (state, meters, alerts, HA discovery) and takes commands."""

    def __init__(self, daemon: BridgeHost) -> None:
        self.daemon = daemon
        config = daemon.config
        self.config = config.mqtt
        self.topics = Topics.from_config(config)
        self.client_id = config.mqtt.client_id or f"micboardd-{config.site}"
        self.ctx = DiscoveryContext(self.topics, daemon.version, config.mqtt.commands)
        self.intake = CommandIntake(self.topics, config.mqtt.commands, daemon.actions, self._emit)
        self.stats = BridgeStats()
        # Tunables that tests and benches shorten; the defaults are the named constants above.
        self.scan_timeout_s = SCAN_TIMEOUT_S
        self.connect_timeout_s = CONNECT_TIMEOUT_S
        self.ha_birth_delay_s = HA_BIRTH_DELAY_S
        self.backoff_base_s = BACKOFF_BASE_S
        self.backoff_cap_s = BACKOFF_CAP_S
        self.protocol = aiomqtt.ProtocolVersion.V5
        self.connected = asyncio.Event()
        self.on_published: Callable[[str, bytes], None] | None = None  # bench hook: every confirmed publish

        self._hub = daemon.hub
        self._desired: dict[str, bytes] = {}  # retained topic → payload it should have (b"" = clear it)
        self._revision: dict[str, int] = {}
        self._sent: dict[str, bytes] = {}  # retained topic → payload the broker has (as far as we know)
        self._dirty: dict[str, None] = {}  # ordered set of topics where desired != sent
        self._owned: dict[tuple[str, str], set[str]] = {}  # entity → its retained topics
        self._disc_inputs: dict[str, tuple[Any, ...]] = {}
        self._events: deque[tuple[str, bytes, bool]] = deque(maxlen=EVENT_BACKLOG)  # (topic, payload, retain)
        self._meter_out: dict[str, bytes] = {}
        self._meter_pending: dict[str, Meters] = {}
        self._meter_tracks: dict[str, _MeterTrack] = {}
        self._levels: dict[str, tuple[str | None, str | None]] = {}
        self._slots_by_channel: dict[str, set[int]] = {}
        self._refused: set[str] = set()
        self._wake = asyncio.Event()
        self._stop = asyncio.Event()
        self._stopping = False
        self._client: aiomqtt.Client | None = None
        self._online = False  # connected and past the initial sync: meters may flow
        self._conn_task: asyncio.Task[None] | None = None
        self._scan: dict[str, bytes] | None = None
        self._scan_token = ""
        self._scan_done = asyncio.Event()
        self._ha_replay: asyncio.Task[None] | None = None
        self._command_tasks: set[asyncio.Task[Any]] = set()
        self._sub: Subscription | None = None
        self._session_started = 0.0
        self._inflight = 0  # retained publishes sent but not yet acknowledged

    # ================================================================== lifecycle

    async def run(self) -> None:
        """Mirror the hub onto the broker until :meth:`stop` (or cancellation); never raises for the broker."""
        sub = self._sub = self._hub.subscribe("mqtt", list(Kind))
        msub = self._hub.subscribe_meters("mqtt")
        try:
            self._load_all()
            async with asyncio.TaskGroup() as tg:
                tasks = [
                    tg.create_task(self._ingest(sub), name="mqtt-ingest"),
                    tg.create_task(self._meter_ingest(msub), name="mqtt-meters"),
                ]
                self._conn_task = tg.create_task(self._connection_loop(), name="mqtt-connection")
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
            self._online
            and (self._sub is None or self._sub.pending == 0)
            and not self._dirty
            and not self._events
            and self._inflight == 0
            and all(self._sent.get(t) == p for t, p in self._desired.items())
        )

    async def stop(self) -> None:
        """Publish ``offline`` on the status topic, disconnect cleanly and let :meth:`run` return."""
        self._stopping = True
        task = self._conn_task
        if task is not None and not task.done():
            task.cancel()  # the session's cleanup publishes "offline" and sends DISCONNECT
            await asyncio.wait({task}, timeout=STOP_TIMEOUT_S + 1.0)
        self._stop.set()
        self.daemon.set_subsystem("mqtt", False, "stopped")

    # ================================================================== connection

    def _make_client(self) -> aiomqtt.Client:
        cfg = self.config
        tls: ssl.SSLContext | None = None
        if cfg.tls:
            tls = ssl.create_default_context(cafile=cfg.tls_ca_file)
        v5 = self.protocol is aiomqtt.ProtocolVersion.V5
        client = aiomqtt.Client(
            cfg.host,
            cfg.port,
            username=cfg.username,
            password=cfg.password.reveal() if cfg.password is not None else None,
            identifier=self.client_id,
            protocol=self.protocol,
            will=aiomqtt.Will(self.topics.status, b"offline", qos=1, retain=True),
            clean_session=None if v5 else True,
            clean_start=True if v5 else 3,
            keepalive=KEEPALIVE_S,
            timeout=OPERATION_TIMEOUT_S,
            max_inflight_messages=PUBLISH_WINDOW,
            tls_context=tls,
            logger=logging.getLogger("micboardd.mqtt.paho"),
        )
        # We pipeline up to PUBLISH_WINDOW QoS 1 publishes on purpose; aiomqtt would warn from 10 on.
        client.pending_calls_threshold = PUBLISH_WINDOW + MAX_PENDING_COMMANDS
        return client

    def _where(self) -> str:
        return f"{self.config.host}:{self.config.port}"

    async def _connection_loop(self) -> None:
        failures = flaps = 0
        while not self._stopping:
            was_connected = False
            try:
                was_connected = await self._session()
                return  # only returns when stopping
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # every broker problem ends here; bugs are logged loudly below
                err = _leaf_error(exc)
                if isinstance(err, _SessionEnded) and err.__cause__ is not None:
                    err = err.__cause__
                was_connected = was_connected or self.connected.is_set()
            self.connected.clear()
            self._online = False
            self._client = None
            if self._stopping:
                return
            rc = _rc_value(err)
            if (
                isinstance(err, MqttConnectError)
                and rc in _V5_PROTOCOL_REFUSED
                and self.protocol is aiomqtt.ProtocolVersion.V5
            ):
                log.warning("broker %s refuses MQTT v5; falling back to 3.1.1 (no message expiry, no user properties)",
                            self._where())
                self.protocol = aiomqtt.ProtocolVersion.V311
                continue
            if was_connected:
                # A session that lasted is a fresh start; one dropped right after connecting is a flap.
                if time.monotonic() - self._session_started >= STABLE_SESSION_S:
                    failures, flaps = 0, 0
                else:
                    flaps += 1
            failures += 1
            self.stats.connect_failures += 1
            self.stats.last_error = _describe(err)
            auth = isinstance(err, MqttConnectError) and rc in _AUTH_REFUSED
            delay = self.backoff_cap_s if auth else self._delay(failures)
            known = isinstance(err, aiomqtt.MqttError | OSError | TimeoutError | _SessionEnded)
            if not known:
                log.error("MQTT bridge error (a bug); reconnecting in %.1f s", delay, exc_info=err)
            else:
                level = logging.WARNING if failures == 1 or auth else logging.DEBUG
                what = "lost" if was_connected else "unreachable"
                log.log(level, "MQTT broker %s %s (%s); retrying in %.1f s", self._where(), what,
                        self.stats.last_error, delay)
            hint = " — check mqtt.username and the password" if auth else ""
            if rc == _SESSION_TAKEN_OVER or flaps >= FLAP_LIMIT:
                # Mosquitto 2.0 just closes the older of two connections with one client id, without a reason.
                hint = (f" — the broker keeps closing the connection; is another client using the id "
                        f"{self.client_id!r} (two daemons with the same site)?")
                if rc == _SESSION_TAKEN_OVER or flaps == FLAP_LIMIT:
                    log.error("MQTT connection to %s keeps being closed right after it is made%s", self._where(),
                              hint)
            self.daemon.set_subsystem(
                "mqtt", False, f"broker {self._where()} {self.stats.last_error}{hint}; retrying in {delay:.0f} s"
            )
            await asyncio.sleep(delay)

    def _delay(self, attempt: int) -> float:
        """min(base·1.8ⁿ, cap) plus up to half a base of jitter, as the device supervisors back off."""
        wait = tenacity.wait_exponential_jitter(
            multiplier=self.backoff_base_s, max=self.backoff_cap_s, exp_base=1.8, jitter=self.backoff_base_s / 2
        )
        state = tenacity.RetryCallState(retry_object=None, fn=None, args=(), kwargs={})  # type: ignore[arg-type]
        state.attempt_number = attempt
        return min(float(wait(state)), self.backoff_cap_s)

    async def _session(self) -> bool:
        """One broker connection, from CONNECT to its end; raises when it ends (returns only when stopping)."""
        client = self._make_client()
        try:
            async with asyncio.timeout(self.connect_timeout_s):
                await client.__aenter__()
        except (TimeoutError, asyncio.CancelledError):
            _abandon(client)
            raise
        self._client = client
        self._session_started = time.monotonic()
        self.stats.connects += 1
        self.stats.last_connected_at = time.time()
        self.stats.protocol = "5" if self.protocol is aiomqtt.ProtocolVersion.V5 else "3.1.1"
        log.info("MQTT connected to %s as %s (MQTT %s), base topic %s", self._where(), self.client_id,
                 self.stats.protocol, self.topics.base)
        self.daemon.set_subsystem("mqtt", True, f"connected to {self._where()} (MQTT {self.stats.protocol})")
        self.connected.set()
        ended: BaseException | None = None
        try:
            async with asyncio.TaskGroup() as tg:
                tg.create_task(self._reader(client), name="mqtt-reader")
                await self._after_connect(client)
                tg.create_task(self._publisher(client), name="mqtt-publisher")
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            ended = _leaf_error(exc)
            raise _SessionEnded(str(ended)) from ended
        finally:
            self._online = False
            await self._close(client, broken=ended is not None)
        return True

    async def _close(self, client: aiomqtt.Client, *, broken: bool) -> None:
        """Say ``offline`` ourselves (a clean DISCONNECT suppresses the will) and disconnect."""
        with contextlib.suppress(Exception, asyncio.CancelledError):
            async with asyncio.timeout(STOP_TIMEOUT_S):
                if not broken:
                    await client.publish(self.topics.status, b"offline", qos=1, retain=True)
                await client.__aexit__(None, None, None)

    async def _after_connect(self, client: aiomqtt.Client) -> None:
        """Learn what the broker holds, fix what differs, then say ``online`` and accept commands."""
        if self.config.discovery:
            await client.subscribe(self.topics.ha_status, qos=1)
        retained = await self._read_retained(client)
        published, cleared = self.stats.retained_published, self.stats.stale_cleared
        self._reconcile(retained)
        await self._flush(client)
        await client.publish(self.topics.status, b"online", qos=1, retain=True)
        for flt in self.topics.command_filters:
            await client.subscribe(flt, qos=1)
        self._online = True
        log.info("MQTT in sync: the broker held %d of our retained topics; %d published, %d stale cleared",
                 len(retained), self.stats.retained_published - published, self.stats.stale_cleared - cleared)

    async def _read_retained(self, client: aiomqtt.Client) -> dict[str, bytes]:
        """Retained messages under our base and this site's discovery node, as the broker holds them now."""
        self._scan = {}
        self._scan_token = uuid.uuid4().hex
        self._scan_done.clear()
        filters = [self.topics.discovery_filter, self.topics.all_under_base]
        try:
            for flt in filters:
                await client.subscribe(flt, qos=1)
            # The broker replays retained messages as it handles each SUBSCRIBE, before it routes our marker.
            await client.publish(self.topics.sync, self._scan_token.encode(), qos=1)
            try:
                async with asyncio.timeout(self.scan_timeout_s):
                    await self._scan_done.wait()
            except TimeoutError:
                log.debug("no sync marker within %.1f s; using the %d retained messages that arrived",
                          self.scan_timeout_s, len(self._scan))
            for flt in filters:
                await client.unsubscribe(flt)
            return self._scan
        finally:
            self._scan = None

    def _reconcile(self, retained: dict[str, bytes]) -> None:
        inventory = self._inventory()
        self._sent = {}
        for topic, payload in retained.items():
            if topic == self.topics.status or not payload:
                continue
            self._sent[topic] = payload
            if topic not in self._desired and self._is_stale(topic, inventory):
                log.info("clearing stale retained topic %s", topic)
                self.stats.stale_cleared += 1
                self._desired[topic] = b""
        for topic in [t for t, p in self._desired.items() if not p and t not in self._sent]:
            del self._desired[topic]  # a removal the broker no longer needs (it lost the topic already)
        self._dirty = {t: None for t, p in self._desired.items() if self._sent.get(t) != p}
        self.stats.skipped_identical += sum(1 for t, p in self._desired.items() if p and self._sent.get(t) == p)

    def _inventory(self) -> set[str]:
        ids = {d.device_id for d in self._hub.all(Kind.DEVICE)}
        configs = getattr(self.daemon, "device_configs", None)
        if callable(configs):
            with contextlib.suppress(Exception):
                ids |= {c.id for c in configs()}
        return ids

    def _is_stale(self, topic: str, inventory: set[str]) -> bool:
        """Whether a retained topic of ours describes something that no longer exists."""
        disc = self.topics.parse_discovery(topic)
        if disc is not None:
            disc_id, index = disc
            if not self.config.discovery or disc_id not in inventory:
                return True
            return index is not None and self._channel_gone(disc_id, index)
        kind, device_id, number, leaf = self.topics.classify(topic)
        if kind == "device":
            return device_id not in inventory
        if kind == "channel" and device_id is not None and number is not None:
            if device_id not in inventory or leaf == "meter":
                return True
            if leaf != "state" and not self.config.flat_topics:
                return True
            return self._channel_gone(device_id, number)
        if kind == "slot" and number is not None:
            return self._hub.get(Kind.SLOT, str(number)) is None
        return False

    def _channel_gone(self, device_id: str, index: int) -> bool:
        """Only a connected device can tell us a channel no longer exists; until then keep its topics."""
        dev = self._hub.device(device_id)
        return dev is not None and dev.online and self._hub.channel(device_id, index) is None

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
        if self._scan is not None:
            if topic == self.topics.sync:
                if payload == self._scan_token.encode():
                    self._scan_done.set()
                return
            if msg.retain:
                self._scan[topic] = payload
                return
        if topic == self.topics.ha_status:
            if payload.strip().lower() == b"online" and not msg.retain:
                self._schedule_ha_replay()
            return
        if topic.endswith("/set") and topic.startswith(self.topics.base + "/") and self._online:
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
        self.replay_states()

    def replay_states(self) -> None:
        """Send every retained state and availability again (discovery stays, it is retained)."""
        prefix = self.topics.discovery_prefix + "/"
        for topic, payload in self._desired.items():
            if payload and not topic.startswith(prefix):
                self._sent.pop(topic, None)
                self._dirty[topic] = None
        self._events.append((self.topics.status, b"online", True))
        self._wake.set()

    # ================================================================== publishing

    async def _publisher(self, client: aiomqtt.Client) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            await self._flush(client)

    async def _flush(self, client: aiomqtt.Client) -> None:
        """Publish queued events and dirty retained topics first, then meters, a window at a time.

        State changes are checked again between meter windows, so a battery or transmitter change
        never waits behind a whole site's worth of meter readings.
        """
        while True:
            jobs: list[tuple[str, str, bytes]] = [("status" if r else "event", t, p) for t, p, r in self._events]
            self._events.clear()
            dirty, self._dirty = list(self._dirty), {}
            for topic in dirty:
                payload = self._desired.get(topic)
                if payload is None or self._sent.get(topic) == payload:
                    continue
                if not payload and topic not in self._sent:
                    # A removal of something the broker does not hold: nothing to clear.
                    del self._desired[topic]
                    self._revision.pop(topic, None)
                    continue
                jobs.append(("retained", topic, payload))
            if not jobs and self._meter_out:
                topics = list(itertools.islice(self._meter_out, PUBLISH_WINDOW))
                jobs = [("meter", t, self._meter_out.pop(t)) for t in topics]
            if not jobs:
                return
            for i in range(0, len(jobs), PUBLISH_WINDOW):
                chunk = jobs[i:i + PUBLISH_WINDOW]
                results = await asyncio.gather(
                    *(self._send(client, kind, t, p) for kind, t, p in chunk), return_exceptions=True
                )
                for r in results:
                    if isinstance(r, BaseException):
                        raise r

    async def _send(self, client: aiomqtt.Client, kind: str, topic: str, payload: bytes) -> None:
        v5 = self.protocol is aiomqtt.ProtocolVersion.V5
        if kind == "meter":
            props = _EXPIRY_PROPS if v5 else None
            await self._publish(client, topic, payload, qos=0, retain=False, props=props, kind="meter")
            return
        if kind in ("event", "status"):
            await self._publish(client, topic, payload, qos=1, retain=kind == "status", props=None, kind=kind)
            return
        # Retained: mark as sent before awaiting, so a change arriving meanwhile is seen as different.
        old = self._sent.get(topic)
        self._sent[topic] = payload
        rev = self._revision.get(topic)
        props = _state_props(rev) if v5 and rev is not None and payload else None
        self._inflight += 1
        try:
            if payload and old and topic.startswith(self.topics.discovery_prefix + "/"):
                interim = components_removed(old, _loads(payload))
                if interim is not None:
                    await self._publish(client, topic, encode(interim), qos=1, retain=True, props=None,
                                        kind="discovery")
            await self._publish(client, topic, payload, qos=1, retain=True, props=props, kind="retained")
        finally:
            self._inflight -= 1
        if not payload and self._desired.get(topic) == b"":
            self._desired.pop(topic, None)
            self._sent.pop(topic, None)
            self._revision.pop(topic, None)

    async def _publish(
        self, client: aiomqtt.Client, topic: str, payload: bytes, *, qos: int, retain: bool,
        props: Properties | None, kind: str,
    ) -> None:
        await client.publish(topic, payload, qos=qos, retain=retain, properties=props)
        st = self.stats
        st.published += 1
        st.published_bytes += len(payload)
        st.kinds[kind] = st.kinds.get(kind, 0) + 1
        if kind == "meter":
            st.meters_published += 1
        elif kind in ("event", "status"):
            st.events_published += 1
        else:
            st.retained_published += 1
        if self.on_published is not None:
            self.on_published(topic, payload)

    # ================================================================== desired state

    def _put(self, owner: tuple[str, str], topic: str, payload: bytes, revision: int | None = None) -> None:
        self._owned.setdefault(owner, set()).add(topic)
        if revision is not None:
            self._revision[topic] = revision
        if self._desired.get(topic) == payload:
            return
        self._desired[topic] = payload
        if self._sent.get(topic) != payload:
            self._dirty[topic] = None
            self._wake.set()
        else:
            self._dirty.pop(topic, None)

    def _drop(self, owner: tuple[str, str]) -> None:
        """Clear every retained topic an entity owned (discovery first, so HA drops entities before state)."""
        topics = sorted(self._owned.pop(owner, set()), key=lambda t: not t.startswith(self.topics.discovery_prefix))
        for topic in topics:
            self._disc_inputs.pop(topic, None)
            self._desired[topic] = b""
            self._dirty[topic] = None
        if topics:
            self._wake.set()

    def _emit(self, topic: str, obj: dict[str, Any] | list[Any]) -> None:
        self._events.append((topic, encode(obj), False))
        self._wake.set()

    def _refuse(self, what: str, exc: TopicError) -> None:
        if what not in self._refused:
            self._refused.add(what)
            self.stats.refused_ids += 1
            log.warning("%s: not published on MQTT: %s", what, exc)

    # ------------------------------------------------------------------ hub → desired

    def _load_all(self) -> None:
        """Everything the hub holds now, as if each entity had just been created."""
        rev = self._hub.revision
        self.apply_changes(Change(rev, kind, e.key, None, e) for kind in Kind for e in self._hub.all(kind)
                           if kind is not Kind.ALERT)
        self._guarded("the active alert list", self._alerts_active)

    def _guarded(self, what: str, fn: Callable[[], None]) -> None:
        try:
            fn()
        except Exception:  # a bug for one entity must not stop the bridge (or take the daemon down)
            log.exception("could not publish %s", what)

    async def _ingest(self, sub: Subscription) -> None:
        while True:
            batch = await sub.get()
            self._guarded("a batch of changes", functools.partial(self.apply_changes, batch))
            await asyncio.sleep(0)  # let the publisher run between large batches

    def apply_changes(self, batch: Iterable[Change]) -> None:
        """Turn a batch of hub changes into desired retained topics and events."""
        alerts_changed = False
        slots_touched: set[int] = set()
        for change in batch:
            try:
                if change.kind is Kind.ALERT:
                    alerts_changed = True
                    self._alert_change(change, slots_touched)
                elif change.kind is Kind.DEVICE:
                    self._device_change(change, slots_touched)
                elif change.kind is Kind.CHANNEL:
                    self._channel_change(change, slots_touched)
                elif change.kind is Kind.SLOT:
                    self._slot_change(change, slots_touched)
            except Exception:  # one entity's bad data must not stop the others being published
                log.exception("%s: could not publish a %s change", change.key, change.kind.value)
        if alerts_changed:
            self._guarded("the active alert list", self._alerts_active)
        for n in sorted(slots_touched):
            slot = self._hub.get(Kind.SLOT, str(n))
            if slot is not None:
                self._guarded(f"slot {n}", functools.partial(self._slot, slot, self._hub.revision))

    def _device_change(self, change: Change, slots: set[int]) -> None:
        if change.after is None:
            self._drop(("device", change.key))
            return
        dev: Device = change.after
        self._device(dev, change.revision)
        for ch in self._hub.channels_of(dev.device_id):
            self._channel_discovery(dev, ch)
            slots |= self._slots_by_channel.get(ch.key, set())

    def _channel_change(self, change: Change, slots: set[int]) -> None:
        slots |= self._slots_by_channel.get(change.key, set())
        if change.after is None:
            self._drop(("channel", change.key))
            self._levels.pop(change.key, None)
            self._meter_tracks.pop(change.key, None)
            self._meter_pending.pop(change.key, None)
            return
        self._channel(change.after, change.revision)

    def _slot_change(self, change: Change, slots: set[int]) -> None:
        before: Slot | None = change.before
        after: Slot | None = change.after
        self._rebuild_slot_index()
        if after is None:
            self._drop(("slot", change.key))
        else:
            slots.add(after.slot)
        # The channels this slot points at (before and after) may change their battery thresholds.
        for s in (before, after):
            if s is not None and s.channel:
                ch = self._hub.get(Kind.CHANNEL, s.channel)
                if ch is not None:
                    self._channel(ch, change.revision)

    def _alert_change(self, change: Change, slots: set[int]) -> None:
        self._emit(self.topics.alerts, alert_event(change.before, change.after, change.revision))
        alert: Alert = change.after if change.after is not None else change.before
        subject = alert.subject
        for key, nums in self._slots_by_channel.items():
            if key == subject or key.startswith(subject + "/"):
                slots |= nums

    def _device(self, dev: Device, revision: int) -> None:
        owner = ("device", dev.device_id)
        try:
            t_state = self.topics.device_state(dev.device_id)
            t_avail = self.topics.device_availability(dev.device_id)
        except TopicError as exc:
            self._refuse(dev.device_id, exc)
            return
        self._put(owner, t_state, encode(device_payload(dev)), revision)
        self._put(owner, t_avail, availability(dev))
        if self.config.discovery:
            topic = self.topics.receiver_discovery(dev.device_id)
            inputs = (dev.name, dev.model, dev.manufacturer, dev.firmware, dev.serial)
            if self._disc_inputs.get(topic) != inputs or topic not in self._desired:
                self._disc_inputs[topic] = inputs
                self._put(owner, topic, encode(receiver_config(self.ctx, dev)))

    def _thresholds(self, channel_key: str) -> tuple[int, int]:
        defaults = self.daemon.config.alerts
        bars, mins = defaults.low_battery_bars, defaults.low_runtime_minutes
        nums = self._slots_by_channel.get(channel_key)
        if nums:
            slot: Slot | None = self._hub.get(Kind.SLOT, str(min(nums)))
            if slot is not None:
                bars = slot.alerts.low_battery_bars if slot.alerts.low_battery_bars is not None else bars
                mins = slot.alerts.low_runtime_minutes if slot.alerts.low_runtime_minutes is not None else mins
        return bars, mins

    def _channel(self, ch: Channel, revision: int) -> None:
        owner = ("channel", ch.key)
        try:
            t_state = self.topics.channel_state(ch.device_id, ch.index)
        except TopicError as exc:
            self._refuse(ch.key, exc)
            return
        if ch.stale:
            self._levels.pop(ch.key, None)
        payload = channel_payload(ch, *self._thresholds(ch.key))
        self._put(owner, t_state, encode(payload), revision)
        if self.config.flat_topics:
            for attr, value in flat_channel_values(payload).items():
                self._put(owner, self.topics.channel_attr(ch.device_id, ch.index, attr), value)
        self._channel_discovery(self._hub.device(ch.device_id), ch)

    def _channel_discovery(self, dev: Device | None, ch: Channel) -> None:
        if not self.config.discovery:
            return
        try:
            topic = self.topics.channel_discovery(ch.device_id, ch.index)
        except TopicError as exc:
            self._refuse(ch.key, exc)
            return
        inputs = channel_inputs(dev, ch)
        if self._disc_inputs.get(topic) == inputs and topic in self._desired:
            return
        self._disc_inputs[topic] = inputs
        self._put(("channel", ch.key), topic, encode(channel_config(self.ctx, dev, ch)))

    def _rebuild_slot_index(self) -> None:
        by_channel: dict[str, set[int]] = {}
        for slot in self._hub.all(Kind.SLOT):
            if slot.channel:
                by_channel.setdefault(slot.channel, set()).add(slot.slot)
        self._slots_by_channel = by_channel

    def _slot(self, slot: Slot, revision: int) -> None:
        try:
            topic = self.topics.slot_state(slot.slot)
        except TopicError as exc:
            self._refuse(f"slot {slot.slot}", exc)
            return
        ch: Channel | None = self._hub.get(Kind.CHANNEL, slot.channel) if slot.channel else None
        dev = self._hub.device(ch.device_id) if ch is not None else None
        alerts = []
        if slot.channel:
            device_id = slot.channel.rpartition("/")[0]
            alerts = [a for a in self._hub.all(Kind.ALERT) if a.subject in (slot.channel, device_id)]
        levels = self._levels.get(slot.channel or "", (None, None))
        bars, mins = self._thresholds(slot.channel) if slot.channel else self._thresholds("")
        self._put(("slot", slot.key), topic, encode(slot_payload(slot, ch, dev, levels, alerts, bars, mins)), revision)

    def _alerts_active(self) -> None:
        self._put(("bridge", "alerts"), self.topics.alerts_active, encode(active_alerts_payload(
            self._hub.all(Kind.ALERT))), self._hub.revision)

    # ------------------------------------------------------------------ meters

    async def _meter_ingest(self, msub: MeterSubscription) -> None:
        interval = self.config.meter_interval_s
        while True:
            if self._meter_pending:  # held-back meters are due soon even if no new ones arrive
                try:
                    async with asyncio.timeout(METER_TICK_S):
                        batch = await msub.get()
                except TimeoutError:
                    batch = []
            else:
                batch = await msub.get()
            try:
                self._meter_batch(batch, interval, time.monotonic())
            except Exception:
                log.exception("could not process a meter batch")
            # One pass per tick: meanwhile the subscription keeps only the latest reading per channel,
            # so 400 channels metering at 10 Hz cost 10 passes a second, not 4000.
            await asyncio.sleep(METER_TICK_S)

    def _meter_batch(self, batch: list[Meters], interval: float, now: float) -> None:
        slots: set[int] = set()
        for m in batch:
            self._meter_pending[m.key] = m
            levels = (rf_level(m), audio_level(m))
            if self._levels.get(m.key) != levels:
                self._levels[m.key] = levels
                slots |= self._slots_by_channel.get(m.key, set())
        for n in sorted(slots):
            slot = self._hub.get(Kind.SLOT, str(n))
            if slot is not None:
                self._slot(slot, self._hub.revision)
        deadband = self.config.meter_deadband_db
        for key, m in list(self._meter_pending.items()):
            track = self._meter_tracks.get(key)
            if track is not None and now - track.at < interval:
                continue  # hold the latest until this channel's interval has passed
            del self._meter_pending[key]
            if not self._online or not _meter_due(track, m, now, deadband):
                continue
            try:
                topic = self.topics.channel_meter(m.device_id, m.index)
            except TopicError as exc:
                self._refuse(key, exc)
                continue
            payload = meter_payload(m)
            self._meter_out[topic] = encode(payload)
            # A channel's first reading is followed by its next one a little later than the interval,
            # by a fixed per-channel amount: 400 channels then spread over the second, not one burst.
            phase = 0.0 if track is not None else (zlib.crc32(key.encode()) % 1000) / 1000 * interval / 2
            self._meter_tracks[key] = _MeterTrack(
                now + phase, m.rf_best_dbm, payload["audio_dbfs"], m.link_quality, m.clip, m.active_antenna
            )
            self._wake.set()


def _meter_due(track: _MeterTrack | None, m: Meters, now: float, deadband: float) -> bool:
    """Publish a meter only when it moved past the deadband, changed category, or is due a heartbeat."""
    if track is None or now - track.at >= METER_HEARTBEAT_S:
        return True
    audio = m.audio_peak_dbfs if m.audio_peak_dbfs is not None else m.audio_rms_dbfs
    if m.clip != track.clip or m.active_antenna != track.antenna:
        return True
    for new, old in ((m.rf_best_dbm, track.rf), (audio, track.audio)):
        if (new is None) != (old is None):
            return True
        if new is not None and old is not None and abs(new - old) >= deadband:
            return True
    if (m.link_quality is None) != (track.link is None):
        return True
    return m.link_quality is not None and track.link is not None and abs(m.link_quality - track.link) >= \
        LINK_QUALITY_DEADBAND


def _abandon(client: aiomqtt.Client) -> None:
    """Close a connection attempt that timed out before CONNACK.

    aiomqtt 2.5 leaves that socket open (its connect future is cancelled, so its disconnect path
    stops early): a broker that answers late would then hold a second session of ours, with our
    will, and every hung attempt would leak a socket. paho's own close is the only way in.
    """
    paho = getattr(client, "_client", None)
    close = getattr(paho, "_sock_close", None)
    if callable(close):
        with contextlib.suppress(Exception):
            close()


def _loads(payload: bytes) -> dict[str, Any]:
    import json  # noqa: PLC0415 - only discovery updates need it

    obj = json.loads(payload)
    return obj if isinstance(obj, dict) else {}


def _expiry_props() -> Properties:
    props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
    props.MessageExpiryInterval = METER_EXPIRY_S
    return props


_EXPIRY_PROPS: Final = _expiry_props()  # never mutated: paho only packs it, so every meter shares one


def _state_props(revision: int) -> Properties:
    props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
    props.PayloadFormatIndicator = 1
    props.ContentType = "application/json"
    props.UserProperty = [("schema", SCHEMA), ("revision", str(revision))]
    return props
