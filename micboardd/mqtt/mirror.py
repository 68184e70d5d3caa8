"""What the broker should hold, derived from the hub: the bridge's bookkeeping, with no I/O.

``desired`` is every retained topic the bridge wants on the broker (``b""`` = clear it), ``sent`` what
the broker holds as far as the bridge knows, ``dirty`` the topics where the two differ, ``held`` the
broker's topics of known devices' channels, left alone until those devices report their channels.
Hub changes become ``desired`` payloads (only when the bytes change), alert changes and command
outcomes become queued events, and meter readings become at most one pending message per channel,
throttled to the meter interval and a deadband. :class:`~micboardd.mqtt.bridge.MqttBridge` drains it onto the broker.
"""

from __future__ import annotations

import functools
import itertools
import logging
import zlib
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Final

from ..config import Config
from ..hub import Change, StateHub
from ..model import Alert, Channel, Device, Kind, Meters, Slot
from .discovery import DiscoveryContext, channel_config, channel_inputs, receiver_config
from .stale import StaleJudge, Verdict
from .topics import (
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

PUBLISH_WINDOW: Final = 100  # QoS 1 messages in flight at once: one round trip per 100 topics on replay
METER_HEARTBEAT_S: Final = 30.0  # meters inside the deadband still go out this often so late subscribers see one
LINK_QUALITY_DEADBAND: Final = 5  # percent points; finer changes are noise on every family that reports it
EVENT_BACKLOG: Final = 500  # alert events and command results kept for the broker while it is down


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


Job = tuple[str, str, bytes]  # (kind: event | status | retained | meter, topic, payload)


class TopicMirror:
    """The hub as retained topics, events and meter messages, with what the broker has already got."""

    def __init__(
        self, hub: StateHub, config: Config, topics: Topics, ctx: DiscoveryContext, *, stats: BridgeStats,
        wake: Callable[[], None], held_changed: Callable[[], None] = lambda: None,
    ) -> None:
        self.config = config.mqtt
        self.alert_defaults = config.alerts
        self.topics = topics
        self.ctx = ctx
        self.stats = stats
        self._hub = hub
        self._wake = wake  # the publisher has something to do
        self._held_changed = held_changed  # held topics, or the devices they belong to, changed: judge them again
        self.judge = StaleJudge(hub, config.mqtt, topics)
        self.held: dict[str, str] = {}  # retained topic on the broker, kept until its device says → device id
        self._held_watch: set[str] = set()  # devices whose changes may decide a held topic (and their parents)
        self.online = False  # connected and in sync: meters are only worth queueing then
        self.desired: dict[str, bytes] = {}
        self.revision: dict[str, int] = {}
        self.sent: dict[str, bytes] = {}
        self.dirty: dict[str, None] = {}  # ordered set: first changed, first published
        self.events: deque[tuple[str, bytes, bool]] = deque(maxlen=EVENT_BACKLOG)  # (topic, payload, retain)
        self.meter_out: dict[str, bytes] = {}
        self.meter_pending: dict[str, Meters] = {}
        self._meter_tracks: dict[str, _MeterTrack] = {}
        self._owned: dict[tuple[str, str], set[str]] = {}  # entity → its retained topics
        self._disc_inputs: dict[str, tuple[Any, ...]] = {}
        self._levels: dict[str, tuple[str | None, str | None]] = {}
        self._slots_by_channel: dict[str, set[int]] = {}
        self._refused: set[str] = set()

    # ------------------------------------------------------------------ publisher side

    def settled(self) -> bool:
        """Nothing queued and the broker holds every desired topic (as far as we know)."""
        return not self.dirty and not self.events and all(self.sent.get(t) == p for t, p in self.desired.items())

    def next_jobs(self) -> list[Job]:
        """Events and changed retained topics first; only when there are none, one window of meters."""
        jobs: list[Job] = [("status" if r else "event", t, p) for t, p, r in self.events]
        self.events.clear()
        dirty, self.dirty = list(self.dirty), {}
        for topic in dirty:
            payload = self.desired.get(topic)
            if payload is None or self.sent.get(topic) == payload:
                continue
            if not payload and topic not in self.sent:
                # A removal of something the broker does not hold: nothing to clear.
                del self.desired[topic]
                self.revision.pop(topic, None)
                continue
            jobs.append(("retained", topic, payload))
        if not jobs and self.meter_out:
            topics = list(itertools.islice(self.meter_out, PUBLISH_WINDOW))
            jobs = [("meter", t, self.meter_out.pop(t)) for t in topics]
        return jobs

    def sending(self, topic: str, payload: bytes) -> bytes | None:
        """Mark a retained payload as sent before it is awaited (a change meanwhile then counts as new)."""
        old = self.sent.get(topic)
        self.sent[topic] = payload
        return old

    def sent_ok(self, topic: str, payload: bytes) -> None:
        if not payload and self.desired.get(topic) == b"":
            self.desired.pop(topic, None)
            self.sent.pop(topic, None)
            self.revision.pop(topic, None)

    # ------------------------------------------------------------------ desired state

    def put(self, owner: tuple[str, str], topic: str, payload: bytes, revision: int | None = None) -> None:
        self._owned.setdefault(owner, set()).add(topic)
        self.held.pop(topic, None)
        if revision is not None:
            self.revision[topic] = revision
        if self.desired.get(topic) == payload:
            return
        self.desired[topic] = payload
        if self.sent.get(topic) != payload:
            self.dirty[topic] = None
            self._wake()
        else:
            self.dirty.pop(topic, None)

    def drop(self, owner: tuple[str, str]) -> None:
        """Clear every retained topic an entity owned (discovery first, so HA drops entities before state)."""
        topics = sorted(self._owned.pop(owner, set()), key=lambda t: not self._is_discovery(t))
        for topic in topics:
            self._disc_inputs.pop(topic, None)
            self.desired[topic] = b""
            self.dirty[topic] = None
        if topics:
            self._wake()

    def emit(self, topic: str, obj: dict[str, Any] | list[Any]) -> None:
        self.events.append((topic, encode(obj), False))
        self._wake()

    def refuse(self, what: str, exc: TopicError) -> None:
        if what not in self._refused:
            self._refused.add(what)
            self.stats.refused_ids += 1
            log.warning("%s: not published on MQTT: %s", what, exc)

    def load_all(self) -> None:
        """Everything the hub holds now, as if each entity had just been created."""
        rev = self._hub.revision
        self.apply_changes(Change(rev, kind, e.key, None, e) for kind in Kind for e in self._hub.all(kind)
                           if kind is not Kind.ALERT)
        self.guarded("the active alert list", self._alerts_active)

    def guarded(self, what: str, fn: Callable[[], None]) -> None:
        try:
            fn()
        except Exception:  # a bug for one entity must not stop the bridge (or take the daemon down)
            log.exception("could not publish %s", what)

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
            self.guarded("the active alert list", self._alerts_active)
        alerts = self._alerts_by_subject() if slots_touched else {}
        for n in sorted(slots_touched):
            slot = self._hub.get(Kind.SLOT, str(n))
            if slot is not None:
                self.guarded(f"slot {n}", functools.partial(self._slot, slot, self._hub.revision, alerts))

    def _device_change(self, change: Change, slots: set[int]) -> None:
        self.judge.note_device(change.key, change.after)
        if self.held and change.key in self._held_watch:
            self._held_changed()
        if change.after is None:
            self.drop(("device", change.key))
            return
        dev: Device = change.after
        self._device(dev, change.revision)
        for ch in self._hub.channels_of(dev.device_id):
            self._channel_discovery(dev, ch)
            slots |= self._slots_by_channel.get(ch.key, set())

    def _channel_change(self, change: Change, slots: set[int]) -> None:
        slots |= self._slots_by_channel.get(change.key, set())
        if change.after is None:
            self.drop(("channel", change.key))
            self._levels.pop(change.key, None)
            self._meter_tracks.pop(change.key, None)
            self.meter_pending.pop(change.key, None)
            return
        self._channel(change.after, change.revision)

    def _slot_change(self, change: Change, slots: set[int]) -> None:
        before: Slot | None = change.before
        after: Slot | None = change.after
        self._rebuild_slot_index()
        if after is None:
            self.drop(("slot", change.key))
        else:
            slots.add(after.slot)
        # The channels this slot points at (before and after) may change their battery thresholds.
        for s in (before, after):
            if s is not None and s.channel:
                ch = self._hub.get(Kind.CHANNEL, s.channel)
                if ch is not None:
                    self._channel(ch, change.revision)

    def _alert_change(self, change: Change, slots: set[int]) -> None:
        self.emit(self.topics.alerts, alert_event(change.before, change.after, change.revision))
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
            self.refuse(dev.device_id, exc)
            return
        self.put(owner, t_state, encode(device_payload(dev)), revision)
        self.put(owner, t_avail, availability(dev))
        if self.config.discovery:
            topic = self.topics.receiver_discovery(dev.device_id)
            inputs = (dev.name, dev.model, dev.manufacturer, dev.firmware, dev.serial)
            if self._disc_inputs.get(topic) != inputs or topic not in self.desired:
                self._disc_inputs[topic] = inputs
                self.put(owner, topic, encode(receiver_config(self.ctx, dev)))

    def _thresholds(self, channel_key: str) -> tuple[int, int]:
        nums = self._slots_by_channel.get(channel_key)
        slot: Slot | None = self._hub.get(Kind.SLOT, str(min(nums))) if nums else None
        return self.alert_defaults.limits(slot.alerts if slot is not None else None)

    def _channel(self, ch: Channel, revision: int) -> None:
        owner = ("channel", ch.key)
        try:
            t_state = self.topics.channel_state(ch.device_id, ch.index)
        except TopicError as exc:
            self.refuse(ch.key, exc)
            return
        if ch.stale:
            self._levels.pop(ch.key, None)
        payload = channel_payload(ch, *self._thresholds(ch.key))
        self.put(owner, t_state, encode(payload), revision)
        if self.config.flat_topics:
            for attr, value in flat_channel_values(payload).items():
                self.put(owner, self.topics.channel_attr(ch.device_id, ch.index, attr), value)
        self._channel_discovery(self._hub.device(ch.device_id), ch)

    def _channel_discovery(self, dev: Device | None, ch: Channel) -> None:
        if not self.config.discovery:
            return
        try:
            topic = self.topics.channel_discovery(ch.device_id, ch.index)
        except TopicError as exc:
            self.refuse(ch.key, exc)
            return
        inputs = channel_inputs(dev, ch)
        if self._disc_inputs.get(topic) == inputs and topic in self.desired:
            return
        self._disc_inputs[topic] = inputs
        self.put(("channel", ch.key), topic, encode(channel_config(self.ctx, dev, ch)))

    def _rebuild_slot_index(self) -> None:
        by_channel: dict[str, set[int]] = {}
        for slot in self._hub.all(Kind.SLOT):
            if slot.channel:
                by_channel.setdefault(slot.channel, set()).add(slot.slot)
        self._slots_by_channel = by_channel

    def _alerts_by_subject(self) -> dict[str, list[Alert]]:
        """The hub's alerts by subject, built once per batch: every slot drawn in it then looks its own up."""
        index: dict[str, list[Alert]] = {}
        for alert in self._hub.all(Kind.ALERT):
            index.setdefault(alert.subject, []).append(alert)
        return index

    def _slot(self, slot: Slot, revision: int, alerts_by_subject: dict[str, list[Alert]] | None = None) -> None:
        try:
            topic = self.topics.slot_state(slot.slot)
        except TopicError as exc:
            self.refuse(f"slot {slot.slot}", exc)
            return
        ch: Channel | None = self._hub.get(Kind.CHANNEL, slot.channel) if slot.channel else None
        dev = self._hub.device(ch.device_id) if ch is not None else None
        alerts: list[Alert] = []
        if slot.channel:
            index = alerts_by_subject if alerts_by_subject is not None else self._alerts_by_subject()
            alerts = [*index.get(slot.channel, ()), *index.get(slot.channel.rpartition("/")[0], ())]
        levels = self._levels.get(slot.channel or "", (None, None))
        bars, mins = self._thresholds(slot.channel) if slot.channel else self._thresholds("")
        self.put(("slot", slot.key), topic, encode(slot_payload(slot, ch, dev, levels, alerts, bars, mins)), revision)

    def _alerts_active(self) -> None:
        self.put(("bridge", "alerts"), self.topics.alerts_active, encode(active_alerts_payload(
            self._hub.all(Kind.ALERT))), self._hub.revision)

    def meter_batch(self, batch: list[Meters], interval: float, now: float) -> None:
        slots: set[int] = set()
        for m in batch:
            self.meter_pending[m.key] = m
            levels = (rf_level(m), audio_level(m))
            if self._levels.get(m.key) != levels:
                self._levels[m.key] = levels
                slots |= self._slots_by_channel.get(m.key, set())
        alerts = self._alerts_by_subject() if slots else {}
        for n in sorted(slots):
            slot = self._hub.get(Kind.SLOT, str(n))
            if slot is not None:
                self._slot(slot, self._hub.revision, alerts)
        deadband = self.config.meter_deadband_db
        for key, m in list(self.meter_pending.items()):
            track = self._meter_tracks.get(key)
            if track is not None and now - track.at < interval:
                continue  # hold the latest until this channel's interval has passed
            del self.meter_pending[key]
            if not self.online or not meter_due(track, m, now, deadband):
                continue
            try:
                topic = self.topics.channel_meter(m.device_id, m.index)
            except TopicError as exc:
                self.refuse(key, exc)
                continue
            payload = meter_payload(m)
            self.meter_out[topic] = encode(payload)
            # A channel's first reading is followed by its next one a little later than the interval,
            # by a fixed per-channel amount: 400 channels then spread over the second, not one burst.
            phase = 0.0 if track is not None else (zlib.crc32(key.encode()) % 1000) / 1000 * interval / 2
            self._meter_tracks[key] = _MeterTrack(
                now + phase, m.rf_best_dbm, payload["audio_dbfs"], m.link_quality, m.clip, m.active_antenna
            )
            self._wake()

    def reconcile(self, retained: dict[str, bytes], inventory: set[str]) -> None:
        """After a (re)connect: what the broker holds becomes ``sent``; our stale topics are set to clear.

        Topics of a known device's channels that the hub does not hold yet are *held* (left as they
        are) until the device reports its channel set: see :mod:`micboardd.mqtt.stale`.
        """
        self.sent = {}
        self.held = {}
        self.judge.learn_parents(retained)
        for topic, payload in sorted(retained.items(), key=lambda tp: not self._is_discovery(tp[0])):
            if topic == self.topics.status or not payload:
                continue
            self.sent[topic] = payload
            if topic not in self.desired:
                self._judge(topic, inventory)
        for topic in [t for t, p in self.desired.items() if not p and t not in self.sent]:
            del self.desired[topic]  # a removal the broker no longer needs (it lost the topic already)
        self.dirty = {t: None for t, p in self.desired.items() if self.sent.get(t) != p}
        self.stats.skipped_identical += sum(1 for t, p in self.desired.items() if p and self.sent.get(t) == p)
        self._watch_held()
        if self.held:
            log.info("keeping %d retained topics of %d devices until they report themselves and their channels",
                     len(self.held), len(set(self.held.values())))
            self._held_changed()

    def rejudge_held(self, inventory: set[str]) -> float | None:
        """Judge the held topics again: clear those now known stale; seconds until a verdict may change."""
        due: float | None = None
        for topic in sorted(self.held, key=lambda t: not self._is_discovery(t)):
            if topic not in self.sent or self.desired.get(topic):
                del self.held[topic]  # the broker lost it, or the hub publishes it again
                continue
            wait = self._judge(topic, inventory)
            if wait is not None:
                due = wait if due is None else min(due, wait)
        self._watch_held()
        return due

    def _watch_held(self) -> None:
        devices = set(self.held.values())
        self._held_watch = devices | {p for d in devices if (p := self.judge.parent_of(d)) is not None}

    def _is_discovery(self, topic: str) -> bool:
        """Discovery goes first, so Home Assistant drops entities before the state they read."""
        return topic.startswith(self.topics.discovery_prefix + "/")

    def _judge(self, topic: str, inventory: set[str]) -> float | None:
        """Clear, hold or keep one retained topic the hub does not publish; for a hold, when to look again."""
        verdict, wait = self.judge.verdict(topic, inventory)
        device_id = self.judge.device_of(topic)
        if verdict is Verdict.HOLD and device_id is not None:
            self.held[topic] = device_id
            return wait
        self.held.pop(topic, None)
        if verdict is Verdict.CLEAR:
            log.info("clearing stale retained topic %s", topic)
            self.stats.stale_cleared += 1
            self.desired[topic] = b""
            self.dirty[topic] = None
            self._wake()
        return None

    def replay_states(self) -> None:
        """Send every retained state and availability again (discovery stays, it is retained)."""
        prefix = self.topics.discovery_prefix + "/"
        for topic, payload in self.desired.items():
            if payload and not topic.startswith(prefix):
                self.sent.pop(topic, None)
                self.dirty[topic] = None
        self.events.append((self.topics.status, b"online", True))
        self._wake()


def meter_due(track: _MeterTrack | None, m: Meters, now: float, deadband: float) -> bool:
    """Publish a meter only when it moved past the deadband, changed category, or is due a heartbeat."""
    if track is None or now - track.at >= METER_HEARTBEAT_S:
        return True
    if m.clip != track.clip or m.active_antenna != track.antenna:
        return True
    for new, old in ((m.rf_best_dbm, track.rf), (m.audio_dbfs, track.audio)):
        if (new is None) != (old is None):
            return True
        if new is not None and old is not None and abs(new - old) >= deadband:
            return True
    if (m.link_quality is None) != (track.link is None):
        return True
    return m.link_quality is not None and track.link is not None and abs(m.link_quality - track.link) >= \
        LINK_QUALITY_DEADBAND

