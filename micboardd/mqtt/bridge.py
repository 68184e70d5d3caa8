"""The MQTT bridge: keeps the broker's retained topics equal to the hub's state, through any outage.

Its :class:`~micboardd.mqtt.mirror.TopicMirror` turns hub changes into the retained topics wanted on
the broker and knows which the broker already has; the bridge owns the connection and publishes the
difference. On every (re)connect it reads the broker's retained topics under the base and this site's discovery configs
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
import json
import logging
import ssl
import time
import uuid
from collections.abc import Callable
from typing import Any, Final, Protocol

import aiomqtt
import tenacity
from aiomqtt.exceptions import MqttConnectError
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from ..config import Config
from ..hub import MeterSubscription, StateHub, Subscription
from ..model import Kind
from .commands import ActionsLike, CommandIntake
from .discovery import DiscoveryContext, components_removed
from .mirror import PUBLISH_WINDOW, BridgeStats, TopicMirror
from .topics import SCHEMA, Topics, encode

log = logging.getLogger(__name__)

CONNECT_TIMEOUT_S: Final = 10.0  # TCP + TLS + CONNACK on a LAN broker; longer means it is not answering
OPERATION_TIMEOUT_S: Final = 10.0  # a PUBACK/SUBACK slower than this means the session is dead
STOP_TIMEOUT_S: Final = 3.0  # the last "offline" and a clean DISCONNECT must not hold up shutdown
SCAN_TIMEOUT_S: Final = 3.0  # longest wait for the broker's retained replay (our marker normally ends it at once)
HA_BIRTH_DELAY_S: Final = 5.0  # give Home Assistant time to process discovery before states are replayed
KEEPALIVE_S: Final = 30  # the broker fires our will ~45 s after the host vanishes without closing TCP
BACKOFF_BASE_S: Final = 1.0  # a broker restart is usually back within seconds
BACKOFF_CAP_S: Final = 30.0  # keep trying twice a minute for as long as it takes
METER_TICK_S: Final = 0.1  # how often held-back meters are looked at again; well under the 1 s interval
METER_EXPIRY_S: Final = 5  # MQTT v5 message expiry on meters: a level older than this is misleading
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
        self.stats = BridgeStats()
        self._wake = asyncio.Event()
        self.mirror = TopicMirror(daemon.hub, config, self.topics, self.ctx, stats=self.stats, wake=self._wake.set)
        self.intake = CommandIntake(self.topics, config.mqtt.commands, daemon.actions, self.mirror.emit)
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
        self._stop = asyncio.Event()
        self._stopping = False
        self._client: aiomqtt.Client | None = None
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
            self.mirror.load_all()
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
            self.mirror.online
            and (self._sub is None or self._sub.pending == 0)
            and self._inflight == 0
            and self.mirror.settled()
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
            self.mirror.online = False
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
            self.mirror.online = False
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
        self.mirror.reconcile(retained, self._inventory())
        await self._flush(client)
        await client.publish(self.topics.status, b"online", qos=1, retain=True)
        for flt in self.topics.command_filters:
            await client.subscribe(flt, qos=1)
        self.mirror.online = True
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

    def _inventory(self) -> set[str]:
        ids = {d.device_id for d in self._hub.all(Kind.DEVICE)}
        configs = getattr(self.daemon, "device_configs", None)
        if callable(configs):
            with contextlib.suppress(Exception):
                ids |= {c.id for c in configs()}
        return ids

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

    # ================================================================== publishing

    async def _publisher(self, client: aiomqtt.Client) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            await self._flush(client)

    async def _flush(self, client: aiomqtt.Client) -> None:
        """Publish what the mirror has queued: events and changed retained topics first, then meters.

        State changes are checked again between meter windows, so a battery or transmitter change
        never waits behind a whole site's worth of meter readings.
        """
        while jobs := self.mirror.next_jobs():
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
        old = self.mirror.sending(topic, payload)
        rev = self.mirror.revision.get(topic)
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
        self.mirror.sent_ok(topic, payload)

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

    # ------------------------------------------------------------------ hub → desired

    async def _ingest(self, sub: Subscription) -> None:
        while True:
            batch = await sub.get()
            self.mirror.guarded("a batch of changes", functools.partial(self.mirror.apply_changes, batch))
            await asyncio.sleep(0)  # let the publisher run between large batches

    # ------------------------------------------------------------------ meters

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
