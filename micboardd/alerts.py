"""Alert rules over hub changes, and each alert's life: active → acknowledged → cleared.

The engine is a hub subscriber like any sink; what it concludes goes back into the hub as ``Alert``
entities (so gRPC watchers and MQTT see alerts like any other state) and into the store before the
next batch is read. Rules look at transitions, so a channel that was never used raises nothing.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable
from dataclasses import replace
from typing import TYPE_CHECKING, Final

from .config import AlertDefaults
from .hub import Change, Put, Remove, StateHub
from .model import Alert, AlertState, Channel, ConnState, Device, ErrorKind, Kind, Severity, Slot
from .store.engine import StoreError

if TYPE_CHECKING:
    from .store import Store

log = logging.getLogger(__name__)

CLEARED_KEEP_S: Final = 600.0  # cleared alerts stay visible ten minutes, then leave the hub (not the store)


def alert_id(rule: str, subject: str) -> str:
    return f"{rule}:{subject}"


class AlertEngine:
    """Evaluates rules on every change batch and keeps the hub's alert entities current."""

    def __init__(self, hub: StateHub, store: Store | None, defaults: AlertDefaults) -> None:
        self.hub = hub
        self.store = store
        self.defaults = defaults
        self.raised = 0
        # Evaluating and committing read the current alert, await the store, then put the new one: one at a
        # time, or an acknowledgement and a clear that overlap would each overwrite what the other wrote.
        self._lock = asyncio.Lock()
        self._slot_index: dict[str, Slot] | None = None  # channel key → its slot, during one evaluate()

    # ------------------------------------------------------------------ rules

    def _slot_for(self, channel_key: str) -> Slot | None:
        """The lowest-numbered slot on a channel; the index is built once per batch, not per channel."""
        if self._slot_index is None:
            index: dict[str, Slot] = {}
            for slot in self.hub.all(Kind.SLOT):  # slot order: the lowest number wins
                if slot.channel and slot.channel not in index:
                    index[slot.channel] = slot
            self._slot_index = index
        return self._slot_index.get(channel_key)

    def _channel_conditions(self, before: Channel | None, ch: Channel) -> dict[str, tuple[Severity, str] | None]:
        """rule → (severity, message) when the condition holds, None when it does not."""
        slot = self._slot_for(ch.key)
        if slot is not None and not slot.alerts.enabled:
            return {"low_battery": None, "tx_off": None}
        bars_limit, mins_limit = self.defaults.limits(slot.alerts if slot is not None else None)
        who = (slot.performer if slot and slot.performer else None) or ch.name or ch.key
        out: dict[str, tuple[Severity, str] | None] = {}
        tx = ch.tx
        low: tuple[Severity, str] | None = None
        if tx.present and not ch.stale:
            if tx.battery_bars is not None and tx.battery_bars <= bars_limit:
                low = (Severity.CRITICAL, f"{who}: battery {tx.battery_bars}/5 bars")
            elif tx.runtime_minutes is not None and tx.runtime_minutes <= mins_limit:
                low = (Severity.WARNING, f"{who}: {tx.runtime_minutes} min of battery left")
            elif tx.battery_bars is not None and tx.battery_bars == bars_limit + 1:
                low = (Severity.WARNING, f"{who}: battery {tx.battery_bars}/5 bars")
        out["low_battery"] = low
        # Transmitter switched off or lost: only on the transition from present, or while it stays off.
        was_on = before is not None and before.tx.present is True
        existing = self.hub.get(Kind.ALERT, alert_id("tx_off", ch.key))
        still_off = existing is not None and existing.state is not AlertState.CLEARED
        if tx.present is False and not ch.stale and (was_on or still_off):
            out["tx_off"] = (Severity.WARNING, f"{who}: transmitter off or out of range")
        elif tx.present is True:
            out["tx_off"] = None
        return out

    def _device_conditions(self, dev: Device) -> dict[str, tuple[Severity, str] | None]:
        label = dev.name or dev.device_id
        out: dict[str, tuple[Severity, str] | None] = {"device_offline": None, "auth_failed": None}
        if dev.state is ConnState.OFFLINE and not dev.stale:
            if dev.error_kind is ErrorKind.AUTH:
                out["auth_failed"] = (Severity.CRITICAL, f"{label}: credentials rejected ({dev.last_error})")
            else:
                out["device_offline"] = (Severity.CRITICAL, f"{label}: offline ({dev.last_error or 'no answer'})")
        return out

    # ------------------------------------------------------------------ lifecycle

    def evaluate(self, changes: Iterable[Change]) -> list[Alert]:
        """Alerts to write (raised, updated or cleared) for a batch of changes."""
        out: list[Alert] = []
        now = time.time()
        self._slot_index = None
        try:
            for change in changes:
                try:
                    out.extend(self._evaluate_one(change, now))
                except Exception:  # one entity's odd data must not stop the rules for every other one
                    log.exception("%s: could not evaluate alert rules for this %s", change.key, change.kind.value)
        finally:
            self._slot_index = None
        return out

    def _evaluate_one(self, change: Change, now: float) -> list[Alert]:
        conds: dict[str, tuple[Severity, str] | None]
        if change.kind is Kind.CHANNEL and change.after is not None:
            conds = self._channel_conditions(change.before, change.after)
            subject = change.key
        elif change.kind is Kind.DEVICE and change.after is not None:
            conds = self._device_conditions(change.after)
            subject = change.key
        elif change.kind is Kind.SLOT and change.after is not None and change.after.channel:
            ch = self.hub.get(Kind.CHANNEL, change.after.channel)
            if ch is None:
                return []
            conds = self._channel_conditions(ch, ch)
            subject = ch.key
        else:
            return []
        out: list[Alert] = []
        for rule, cond in conds.items():
            out.extend(self._transition(rule, subject, cond, now))
        return out

    def _transition(self, rule: str, subject: str, cond: tuple[Severity, str] | None, now: float) -> list[Alert]:
        aid = alert_id(rule, subject)
        current: Alert | None = self.hub.get(Kind.ALERT, aid)
        live = current is not None and current.state is not AlertState.CLEARED
        if cond is None:
            if live and current is not None:
                return [replace(current, state=AlertState.CLEARED, cleared_at=now)]
            return []
        severity, message = cond
        if live and current is not None:
            if current.severity == severity and current.message == message:
                return []
            # Worse than what was acknowledged: ask for attention again.
            state = current.state
            if severity.rank > current.severity.rank:
                state = AlertState.ACTIVE
            return [replace(current, severity=severity, message=message, state=state)]
        self.raised += 1
        return [Alert(aid, rule, subject, severity, AlertState.ACTIVE, message, raised_at=now)]

    async def _commit(self, alerts: list[Alert], *, strict: bool = True) -> None:
        """Save, then publish; ``strict=False`` (the rules' own verdicts) publishes even when saving fails."""
        if not alerts:
            return
        if self.store is not None:
            try:
                for alert in alerts:
                    await self.store.save_alert(alert)
            except StoreError as exc:
                if strict:
                    raise
                # The store writer also writes every alert the hub holds, and retries: show it now.
                log.error("alerts not saved yet (the store writer retries them): %s", exc)
        self.hub.apply([Put(a) for a in alerts])
        for a in alerts:
            log.log(
                logging.INFO if a.state is AlertState.CLEARED else logging.WARNING,
                "%s alert %s: %s",
                a.state.value,
                a.alert_id,
                a.message,
            )

    async def acknowledge(self, alert_id_: str, actor: str) -> Alert:
        """Mark an active alert as seen; KeyError if there is no such live alert."""
        async with self._lock:
            current: Alert | None = self.hub.get(Kind.ALERT, alert_id_)
            if current is None or current.state is AlertState.CLEARED:
                raise KeyError(alert_id_)
            acked = replace(current, state=AlertState.ACKNOWLEDGED, acknowledged_by=actor)
            await self._commit([acked])
        return acked

    def active(self) -> list[Alert]:
        return [a for a in self.hub.all(Kind.ALERT) if a.state is not AlertState.CLEARED]

    def _expired(self, now: float) -> list[Remove]:
        return [
            Remove(Kind.ALERT, a.alert_id)
            for a in self.hub.all(Kind.ALERT)
            if a.state is AlertState.CLEARED and a.cleared_at is not None and now - a.cleared_at > CLEARED_KEEP_S
        ]

    async def run(self) -> None:
        """Evaluate every change batch until cancelled."""
        sub = self.hub.subscribe("alerts", (Kind.DEVICE, Kind.CHANNEL, Kind.SLOT))
        # Evaluate what was restored so alerts that held before a restart hold again.
        async with self._lock:
            await self._commit(self.evaluate(_as_changes(self.hub)), strict=False)
        try:
            while True:
                batch = await sub.get()
                async with self._lock:
                    await self._commit(self.evaluate(batch), strict=False)
                expired = self._expired(time.time())
                if expired:
                    self.hub.apply(expired)
                await asyncio.sleep(0)  # let other sinks run between large batches
        finally:
            sub.close()


def _as_changes(hub: StateHub) -> list[Change]:
    rev = hub.revision
    out: list[Change] = []
    for kind in (Kind.DEVICE, Kind.CHANNEL):
        out += [Change(rev, kind, e.key, e, e) for e in hub.all(kind)]
    return out
