"""Decides what the store writes and when: coalesced hub changes in, one write plan per transaction out.

Pure bookkeeping on the event loop, no I/O: the writer thread only executes the plans. This is where
``last_seen``-only device changes are throttled, where transmitter/battery history rows are chosen,
where a failed write's rows wait for the retry, and where meter summaries are held to one per minute.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from ..hub import Change
from ..model import Alert, AlertState, Channel, Device, Kind
from .schema import HISTORY_FIELDS, tx_history_values

log = logging.getLogger(__name__)

LAST_SEEN_WRITE_INTERVAL_S: Final = 30.0  # a device whose only news is last_seen is written this often, no more
HISTORY_SLOW_INTERVAL_S: Final = 300.0  # battery % and runtime tick every minute; one row per 5 min is plenty
METER_SUMMARY_INTERVAL_S: Final = 60.0  # meters reach SQLite as a per-channel summary at most once a minute
MAX_PENDING_HISTORY: Final = 200_000  # rows held while SQLite fails (~a day of a busy site); oldest go first

# History columns whose change is always worth a row (the rest are the slow-ticking numbers).
_SLOW_FIELDS: Final = frozenset({"battery_percent", "runtime_minutes"})
_SIGNIFICANT: Final = tuple(i for i, name in enumerate(HISTORY_FIELDS) if name not in _SLOW_FIELDS)

EntityKey = tuple[Kind, str]


@dataclass(slots=True)
class WritePlan:
    """What one transaction writes: the latest value per entity (None deletes) and new history rows."""

    entries: dict[EntityKey, Any] = field(default_factory=dict)
    history: list[tuple[Any, ...]] = field(default_factory=list)

    @property
    def rows(self) -> int:
        return len(self.entries) + len(self.history)


class BatchPlanner:
    """Accumulates coalesced hub changes into the next :class:`WritePlan`."""

    def __init__(self, *, clock: Callable[[], float], monotonic: Callable[[], float]) -> None:
        self._clock = clock
        self._mono = monotonic
        self._pending: dict[EntityKey, Any] = {}
        self._history: list[tuple[Any, ...]] = []
        self._deferred: dict[str, tuple[float, Device]] = {}  # device_id → (due, latest device)
        self._written: dict[str, Device] = {}  # the device value last handed to a plan
        self._written_at: dict[str, float] = {}
        self._hist_last: dict[str, tuple[float, tuple[Any, ...]]] = {}  # key → (when, values) of last history row
        self.changes_seen = 0
        self.last_seen_deferred = 0  # how many last_seen-only writes the throttle saved
        self.history_dropped = 0

    # ------------------------------------------------------------------ state

    @property
    def pending(self) -> int:
        return len(self._pending) + len(self._history) + len(self._deferred)

    def has_work(self) -> bool:
        return bool(self._pending or self._history)

    def next_deadline(self) -> float | None:
        """The monotonic time the earliest throttled device write falls due, if any is held."""
        if not self._deferred:
            return None
        return min(due for due, _ in self._deferred.values())

    # ------------------------------------------------------------------ input

    def ingest(self, changes: Iterable[Change]) -> None:
        now_mono = self._mono()  # one batch, one instant: thousands of clock calls add up on the event loop
        now = self._clock()
        pending = self._pending
        for change in changes:
            self.changes_seen += 1
            kind = change.kind
            if kind is Kind.CHANNEL:
                pending[(kind, change.key)] = change.after
                self._ingest_history(change.key, change.before, change.after, now, now_mono)
            elif kind is Kind.DEVICE:
                self._ingest_device(change.key, change.after, now_mono)
            elif kind is Kind.ALERT and change.after is None:
                self._ingest_alert_removal(change.key, change.before, now)
            else:
                pending[(kind, change.key)] = change.after

    def ingest_snapshot(self, entities: Mapping[Kind, Iterable[Any]]) -> None:
        """Queue whole entities (the hub's state when the writer starts); no history rows."""
        for kind, items in entities.items():
            for entity in items:
                if kind is Kind.DEVICE:
                    self._queue_device(entity)
                else:
                    self._pending[(kind, entity.key)] = entity

    def _ingest_alert_removal(self, alert_id: str, before: Alert | None, now: float) -> None:
        # Alerts leave the hub a while after they clear; the store keeps them as the show's alert history
        # (pruned after history_days). One removed while still live is recorded as cleared so it stays gone.
        if before is None:
            return
        if before.state is not AlertState.CLEARED:
            cleared_at = before.cleared_at if before.cleared_at is not None else now
            before = dataclasses.replace(before, state=AlertState.CLEARED, cleared_at=cleared_at)
        self._pending[(Kind.ALERT, alert_id)] = before

    def _ingest_device(self, device_id: str, after: Device | None, now_mono: float) -> None:
        if after is None:
            self._pending[(Kind.DEVICE, device_id)] = None
            self._written.pop(device_id, None)
            self._written_at.pop(device_id, None)
            self._deferred.pop(device_id, None)
            return
        last = self._written.get(device_id)
        if last is not None:
            if after == last:
                self._deferred.pop(device_id, None)  # changed and changed back: nothing new to write
                return
            if dataclasses.replace(after, last_seen=last.last_seen) == last:
                due = self._written_at[device_id] + LAST_SEEN_WRITE_INTERVAL_S
                if now_mono < due:
                    if device_id not in self._deferred:
                        self.last_seen_deferred += 1
                    self._deferred[device_id] = (due, after)
                    return
        self._queue_device(after)

    def _queue_device(self, device: Device) -> None:
        self._pending[(Kind.DEVICE, device.device_id)] = device
        self._written[device.device_id] = device
        self._written_at[device.device_id] = self._mono()
        self._deferred.pop(device.device_id, None)

    def _ingest_history(
        self, key: str, before: Channel | None, after: Channel | None, now: float, now_mono: float
    ) -> None:
        if after is None:
            self._hist_last.pop(key, None)
            return
        values = tx_history_values(after.tx)
        last = self._hist_last.get(key)
        if last is None:
            base = tx_history_values(before.tx) if before is not None else None
            last_at = -math.inf
        else:
            last_at, base = last
        if base == values:
            return
        if base is None:
            if all(v is None for v in values):
                return
        elif not any(values[i] != base[i] for i in _SIGNIFICANT) and now_mono - last_at < HISTORY_SLOW_INTERVAL_S:
            self._hist_last[key] = (last_at, base)  # keep comparing against the last row written
            return
        self._history.append((now, key, *values))
        self._hist_last[key] = (now_mono, values)
        if len(self._history) > MAX_PENDING_HISTORY:
            drop = len(self._history) - MAX_PENDING_HISTORY
            del self._history[:drop]
            self.history_dropped += drop
            log.warning("store: %d channel history rows dropped while SQLite cannot be written", drop)

    def promote_due(self, *, force: bool = False) -> None:
        """Move throttled device writes that fell due (or all of them, when flushing) into the plan."""
        if not self._deferred:
            return
        now = self._mono()
        for _device_id, (due, device) in list(self._deferred.items()):
            if force or due <= now:
                self._queue_device(device)

    # ------------------------------------------------------------------ output

    def take(self) -> WritePlan | None:
        if not self.has_work():
            return None
        plan = WritePlan(self._pending, self._history)
        self._pending = {}
        self._history = []
        return plan

    def give_back(self, plan: WritePlan) -> None:
        """Return a plan whose transaction failed; anything newer that arrived since wins."""
        for key, value in plan.entries.items():
            self._pending.setdefault(key, value)
        self._history[:0] = plan.history
        if len(self._history) > MAX_PENDING_HISTORY:
            drop = len(self._history) - MAX_PENDING_HISTORY
            del self._history[:drop]
            self.history_dropped += drop


# ----------------------------------------------------------------------------- meter summaries


def _fold(a: Any, b: Any, op: Callable[[Any, Any], Any]) -> Any:
    if a is None:
        return b
    if b is None:
        return a
    return op(a, b)


def _add(a: Any, b: Any) -> Any:
    return a + b


_FOLD: Final[dict[str, Callable[[Any, Any], Any]]] = {
    "at": max,
    "window_s": _add,
    "rf_dbm_min": min,
    "rf_dbm_max": max,
    "audio_dbfs_min": min,
    "audio_dbfs_max": max,
    "link_quality_min": min,
    "clips": _add,
    "samples": _add,
}


def merge_summaries(a: Mapping[str, Any], b: Mapping[str, Any]) -> dict[str, Any]:
    """One summary covering both windows: min of minima, max of maxima, sums of counts."""
    out = dict(a)
    for name, op in _FOLD.items():
        out[name] = _fold(a.get(name), b.get(name), op)
    return out


class MeterSummaryGate:
    """Lets at most one summary per channel per minute through; earlier ones fold into the next."""

    def __init__(self, *, monotonic: Callable[[], float], interval_s: float = METER_SUMMARY_INTERVAL_S) -> None:
        self._mono = monotonic
        self._interval = interval_s
        self._last_write: dict[str, float] = {}
        self._held: dict[str, dict[str, Any]] = {}
        self.folded = 0

    @property
    def held(self) -> int:
        return len(self._held)

    def next_deadline(self) -> float | None:
        """The monotonic time the earliest held row falls due, if any is held."""
        if not self._held:
            return None
        return min(self._last_write.get(k, -math.inf) + self._interval for k in self._held)

    def offer(self, rows: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
        """The rows to write now: new ones whose channel is due, plus held ones that fell due."""
        for row in rows:
            key = row["key"]
            held = self._held.get(key)
            if held is not None:
                self.folded += 1
            self._held[key] = merge_summaries(held, row) if held is not None else row
        return self.due()

    def due(self) -> list[dict[str, Any]]:
        """Take the held rows whose channel has not had a row written for a minute."""
        now = self._mono()
        out: list[dict[str, Any]] = []
        for key in [k for k in self._held if now - self._last_write.get(k, -math.inf) >= self._interval]:
            out.append(self._held.pop(key))
            self._last_write[key] = now
        return out

    def take_all(self) -> list[dict[str, Any]]:
        """Everything held (flush and close): a partial minute beats a lost one."""
        now = self._mono()
        out = list(self._held.values())
        for key in self._held:
            self._last_write[key] = now
        self._held = {}
        return out

    def give_back(self, rows: Iterable[dict[str, Any]]) -> None:
        """Hold rows whose write failed so the next offer or flush carries them."""
        for row in rows:
            key = row["key"]
            held = self._held.get(key)
            self._held[key] = merge_summaries(row, held) if held is not None else row
