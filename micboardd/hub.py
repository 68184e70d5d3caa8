"""StateHub: the one owner of current state, its revisions, its history and its fan-out to sinks.

Adapters, the alert engine, the store's restore and the config API hand the hub *updates*; the hub
turns each one that really changes something into a :class:`Change` stamped with the next global
revision, keeps the last ``history_size`` changes for ``Watch(start_revision)`` resumes, and pushes
them to every :class:`Subscription`. A subscription holds at most one pending change per entity
(later changes to the same key coalesce into it), so a slow sink costs memory bounded by the number
of entities and never blocks ingest. Meters take a separate, lossy, unrevisioned path.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import AsyncIterator, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from .model import (
    Alert,
    Channel,
    Device,
    Entity,
    Kind,
    Meters,
    Slot,
    Transmitter,
    channel_key,
    replace_fields,
)

log = logging.getLogger(__name__)

DEFAULT_HISTORY: Final = 50_000  # ≈ a few minutes of a 400-channel site's non-meter changes
MAX_CHANNEL_INDEX: Final = 999  # as MQTT topics allow; receivers have 1..16, so more is an adapter's parse slip


@dataclass(frozen=True, slots=True)
class DeviceUpdate:
    """Set some fields of a device (created on first mention)."""

    device_id: str
    fields: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class ChannelUpdate:
    """Set some fields of a channel and/or its transmitter (created on first mention).

    ``tx_replace`` swaps the whole transmitter record first (e.g. ``TX_ABSENT`` when it switched off),
    then ``tx`` fields apply on top.
    """

    device_id: str
    index: int
    fields: Mapping[str, Any] = field(default_factory=dict)
    tx: Mapping[str, Any] = field(default_factory=dict)
    tx_replace: Transmitter | None = None


@dataclass(frozen=True, slots=True)
class Put:
    """Store a whole entity (slots, alerts, restored state)."""

    entity: Entity


@dataclass(frozen=True, slots=True)
class Remove:
    """Delete an entity; removing a device removes its channels too."""

    kind: Kind
    key: str


Update = DeviceUpdate | ChannelUpdate | Put | Remove


@dataclass(frozen=True, slots=True)
class Change:
    """One accepted change: ``before`` is None for a creation, ``after`` is None for a removal."""

    revision: int
    kind: Kind
    key: str
    before: Any
    after: Any


class RevisionCompactedError(Exception):
    """The requested start revision is older than the history ring holds; the client must re-list."""

    def __init__(self, requested: int, oldest: int) -> None:
        super().__init__(f"revision {requested} is compacted; oldest available is {oldest}")
        self.requested = requested
        self.oldest = oldest


def _kind_of(entity: Entity) -> Kind:
    if isinstance(entity, Device):
        return Kind.DEVICE
    if isinstance(entity, Channel):
        return Kind.CHANNEL
    if isinstance(entity, Slot):
        return Kind.SLOT
    if isinstance(entity, Alert):
        return Kind.ALERT
    raise TypeError(f"not an entity: {entity!r}")


class Subscription:
    """A sink's view of the change stream: coalesced per key, bounded by the number of entities."""

    def __init__(self, hub: StateHub, name: str, kinds: frozenset[Kind]) -> None:
        self._hub = hub
        self.name = name
        self.kinds = kinds
        self._pending: dict[tuple[Kind, str], Change] = {}
        self._event = asyncio.Event()
        self.closed = False
        self.coalesced = 0  # how many changes were merged into a pending one (slow-sink indicator)

    def _push(self, change: Change) -> None:
        if change.kind not in self.kinds:
            return
        k = (change.kind, change.key)
        prev = self._pending.get(k)
        if prev is not None:
            self.coalesced += 1
            change = Change(change.revision, change.kind, change.key, prev.before, change.after)
        self._pending[k] = change
        self._event.set()

    @property
    def pending(self) -> int:
        return len(self._pending)

    def get_nowait(self) -> list[Change]:
        """Everything pending, oldest revision first; empty if nothing is."""
        if not self._pending:
            return []
        batch = sorted(self._pending.values(), key=lambda c: c.revision)
        self._pending = {}
        self._event.clear()
        return batch

    async def get(self) -> list[Change]:
        """Wait for at least one change, then return everything pending as one batch."""
        while not self._pending:
            if self.closed:
                raise asyncio.CancelledError(f"subscription {self.name} closed")
            self._event.clear()
            await self._event.wait()
        return self.get_nowait()

    def close(self) -> None:
        self.closed = True
        self._event.set()
        self._hub._unsubscribe(self)

    async def __aiter__(self) -> AsyncIterator[list[Change]]:
        while not self.closed:
            batch = await self.get()
            yield batch


class MeterSubscription:
    """Latest meters per channel since the last read; lossy by design."""

    def __init__(self, hub: StateHub, name: str) -> None:
        self._hub = hub
        self.name = name
        self._pending: dict[str, Meters] = {}
        self._event = asyncio.Event()
        self.closed = False

    def _push(self, meters: Meters) -> None:
        self._pending[meters.key] = meters
        self._event.set()

    async def get(self) -> list[Meters]:
        while not self._pending:
            if self.closed:
                raise asyncio.CancelledError(f"meter subscription {self.name} closed")
            self._event.clear()
            await self._event.wait()
        batch = list(self._pending.values())
        self._pending = {}
        self._event.clear()
        return batch

    def close(self) -> None:
        self.closed = True
        self._event.set()
        self._hub._unsubscribe_meters(self)


class StateHub:
    """Current state of every device, channel, slot and alert, and the only thing that changes it."""

    def __init__(self, history_size: int = DEFAULT_HISTORY) -> None:
        self._state: dict[Kind, dict[str, Any]] = {k: {} for k in Kind}
        self._revision = 0
        self._history: deque[Change] = deque(maxlen=history_size)
        self._subs: list[Subscription] = []
        self._meter_subs: list[MeterSubscription] = []
        self._meters: dict[str, Meters] = {}
        self.updates_applied = 0
        self.meters_received = 0

    # ----------------------------------------------------------------- reading

    @property
    def revision(self) -> int:
        return self._revision

    @property
    def oldest_revision(self) -> int:
        """The oldest revision a watch can resume *from* (changes after it are all held)."""
        if not self._history:
            return self._revision
        return self._history[0].revision - 1

    def get(self, kind: Kind, key: str) -> Any:
        return self._state[kind].get(key)

    def device(self, device_id: str) -> Device | None:
        dev: Device | None = self._state[Kind.DEVICE].get(device_id)
        return dev

    def channel(self, device_id: str, index: int) -> Channel | None:
        ch: Channel | None = self._state[Kind.CHANNEL].get(channel_key(device_id, index))
        return ch

    def all(self, kind: Kind) -> list[Any]:
        """All entities of a kind in key order (channels by device then index)."""
        items = self._state[kind]
        if kind is Kind.CHANNEL:
            return sorted(items.values(), key=lambda c: (c.device_id, c.index))
        if kind is Kind.SLOT:
            return sorted(items.values(), key=lambda s: s.slot)
        return [items[k] for k in sorted(items)]

    def channels_of(self, device_id: str) -> list[Channel]:
        return sorted(
            (c for c in self._state[Kind.CHANNEL].values() if c.device_id == device_id),
            key=lambda c: c.index,
        )

    def snapshot(self, kind: Kind) -> tuple[int, list[Any]]:
        """The entities of a kind together with the revision they reflect."""
        return self._revision, self.all(kind)

    def meters(self, key: str) -> Meters | None:
        return self._meters.get(key)

    def all_meters(self) -> list[Meters]:
        return list(self._meters.values())

    def changes_since(self, revision: int, kinds: Iterable[Kind] | None = None) -> list[Change]:
        """Changes after ``revision``; raises RevisionCompactedError if the ring no longer holds them."""
        if revision > self._revision:
            raise ValueError(f"revision {revision} is in the future (current {self._revision})")
        if revision < self.oldest_revision:
            raise RevisionCompactedError(revision, self.oldest_revision)
        wanted = frozenset(kinds) if kinds is not None else frozenset(Kind)
        return [c for c in self._history if c.revision > revision and c.kind in wanted]

    # ----------------------------------------------------------------- writing

    def apply(self, updates: Iterable[Update]) -> list[Change]:
        """Apply updates in order; return (and fan out) the changes that really changed something."""
        changes: list[Change] = []
        try:
            for update in updates:
                self.updates_applied += 1
                for kind, key, before, after in self._resolve(update):
                    if before == after:
                        continue
                    if after is None:
                        self._state[kind].pop(key, None)
                    else:
                        self._state[kind][key] = after
                    self._revision += 1
                    change = Change(self._revision, kind, key, before, after)
                    self._history.append(change)
                    changes.append(change)
        finally:
            # A bad update (unknown field) raises after the ones before it were applied: the sinks must
            # still see those, or the store, MQTT and live watchers would miss revisions the hub holds.
            if changes:
                for sub in list(self._subs):
                    for change in changes:
                        sub._push(change)
        return changes

    def apply_one(self, update: Update) -> list[Change]:
        return self.apply((update,))

    def _resolve(self, update: Update) -> list[tuple[Kind, str, Any, Any]]:
        if isinstance(update, DeviceUpdate):
            before = self._state[Kind.DEVICE].get(update.device_id)
            base = before if before is not None else Device(device_id=update.device_id)
            fields = dict(update.fields)
            return [(Kind.DEVICE, update.device_id, before, replace_fields(base, fields))]
        if isinstance(update, ChannelUpdate):
            if not 1 <= update.index <= MAX_CHANNEL_INDEX:
                raise ValueError(
                    f"{update.device_id}: channel index {update.index} must be ≥ 1 and ≤ {MAX_CHANNEL_INDEX}"
                )
            key = channel_key(update.device_id, update.index)
            before_ch: Channel | None = self._state[Kind.CHANNEL].get(key)
            ch = before_ch if before_ch is not None else Channel(update.device_id, update.index)
            tx = update.tx_replace if update.tx_replace is not None else ch.tx
            if update.tx:
                tx = replace_fields(tx, update.tx)
            fields = dict(update.fields)
            fields.setdefault("stale", False)  # any fresh report means the channel is live again
            after = replace_fields(ch, {**fields, "tx": tx})
            return [(Kind.CHANNEL, key, before_ch, after)]
        if isinstance(update, Put):
            kind = _kind_of(update.entity)
            key = update.entity.key
            return [(kind, key, self._state[kind].get(key), update.entity)]
        if isinstance(update, Remove):
            out = [(update.kind, update.key, self._state[update.kind].get(update.key), None)]
            if update.kind is Kind.CHANNEL:
                self._meters.pop(update.key, None)  # a removed channel's levels must not outlive it
            if update.kind is Kind.DEVICE:
                for ch in self.channels_of(update.key):
                    out.append((Kind.CHANNEL, ch.key, ch, None))
                    self._meters.pop(ch.key, None)
            return out
        raise TypeError(f"not an update: {update!r}")

    def put_meters(self, meters: Meters) -> None:
        """Record the latest meters of a channel and hand them to meter subscribers (lossy)."""
        self.meters_received += 1
        self._meters[meters.key] = meters
        for sub in self._meter_subs:
            sub._push(meters)

    def clear_meters(self, device_id: str) -> None:
        """Forget the meters of a device that went offline so nobody reads stale levels as live."""
        prefix = device_id + "/"
        for key in [k for k in self._meters if k.startswith(prefix)]:
            del self._meters[key]

    # ----------------------------------------------------------------- subscribing

    def subscribe(self, name: str, kinds: Iterable[Kind] | None = None) -> Subscription:
        sub = Subscription(self, name, frozenset(kinds) if kinds is not None else frozenset(Kind))
        self._subs.append(sub)
        return sub

    def subscribe_meters(self, name: str) -> MeterSubscription:
        sub = MeterSubscription(self, name)
        self._meter_subs.append(sub)
        return sub

    def _unsubscribe(self, sub: Subscription) -> None:
        if sub in self._subs:
            self._subs.remove(sub)

    def _unsubscribe_meters(self, sub: MeterSubscription) -> None:
        if sub in self._meter_subs:
            self._meter_subs.remove(sub)

    @property
    def subscriber_count(self) -> int:
        return len(self._subs)
