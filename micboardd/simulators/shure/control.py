"""What happens to a simulated receiver from outside the protocol: transmitters, batteries, front panel.

Tests call these to make the receiver send unsolicited REPs (§1.2, §2.2); the demo's lively mode
calls :meth:`ReceiverControls.lively_step` so batteries drain and transmitters come and go, the same
way every time for a given seed.
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from typing import Any, Final

from .engine import ShureProtocol
from .models import ModelSpec
from .state import TX_ATTRS, SimChannel, SimDevice, fresh_transmitter

LOCK_WORDS: Final = frozenset({"none", "power", "menu", "all"})
_BAR_MIDPOINTS: Final = {0: 0.0, 1: 10.0, 2: 30.0, 3: 50.0, 4: 70.0, 5: 90.0}  # charge % shown as n bars


class ReceiverControls:
    """Mixin of :class:`ShureReceiverSim`: state changes that the receiver reports by itself."""

    model: str
    seed: int
    spec: ModelSpec
    device: SimDevice
    channels: list[SimChannel]
    engine: ShureProtocol
    _lively_rng: random.Random
    _returning: dict[int, int]  # lively: channel → ticks until its transmitter is back

    def channel(self, n: int) -> SimChannel:
        raise NotImplementedError

    def _broadcast(self, bodies: Iterable[str]) -> int:
        raise NotImplementedError

    def lively_step(self) -> None:
        """One tick of the demo's life: batteries drain, a transmitter now and then goes off and back."""
        if not self.spec.family.tx_handheld:
            return  # PSM1000 is itself the transmitter
        rng = self._lively_rng
        for index, ticks in list(self._returning.items()):
            if ticks > 1:
                self._returning[index] = ticks - 1
                continue
            del self._returning[index]
            ch = self.channel(index)
            if ch.charge < 10:
                ch.charge = 100.0  # a fresh battery went in
                ch.saved_tx.update(ch.battery_values(self.spec.family))
            self.tx_on(index)
        present = [ch for ch in self.channels if ch.tx_present]
        if not present:
            return
        roll = rng.random()
        if roll < 0.7:
            ch = rng.choice(present)
            ch.charge = max(ch.charge - rng.uniform(0.5, 2.5), 0.0)
            if ch.charge <= 0:
                self.tx_off(ch.index)
                self._returning[ch.index] = rng.randint(3, 8)
            else:
                self.update_channel(ch.index, **ch.battery_values(self.spec.family))
        elif roll < 0.75 and len(present) > len(self.channels) // 2:
            ch = rng.choice(present)
            self.tx_off(ch.index)
            self._returning[ch.index] = rng.randint(3, 10)

    def update_channel(self, ch: int, **attrs: Any) -> None:
        """Change channel attributes as the front panel or a transmitter would; REPs what changed."""
        channel = self.channel(ch)
        changed = set()
        for key, value in attrs.items():
            if not hasattr(channel, key):
                raise AttributeError(f"SimChannel has no attribute {key!r}")
            if getattr(channel, key) != value:
                setattr(channel, key, value)
                changed.add(key)
        if changed:
            self._broadcast(self.engine.reps_for_attrs(channel, changed))

    def update_device(self, **attrs: Any) -> None:
        """Change device attributes (name, lock, encryption …); REPs what changed."""
        changed = set()
        for key, value in attrs.items():
            if not hasattr(self.device, key):
                raise AttributeError(f"SimDevice has no attribute {key!r}")
            if getattr(self.device, key) != value:
                setattr(self.device, key, value)
                changed.add(key)
        if changed:
            self._broadcast(self.engine.reps_for_attrs(None, changed))

    def _require_tx(self) -> None:
        if not self.spec.family.tx_handheld:
            raise ValueError(f"{self.model} has no transmitter side (it is the transmitter)")

    def tx_off(self, ch: int) -> None:
        """The transmitter on ``ch`` switches off: its properties go back to their sentinels (§2.2)."""
        self._require_tx()
        channel = self.channel(ch)
        if not channel.tx_present:
            return
        channel.saved_tx = {key: getattr(channel, key) for key in TX_ATTRS}
        for key in TX_ATTRS:
            setattr(channel, key, None)
        channel.tx_present = False
        self._broadcast(self.engine.tx_reps(channel))

    def tx_on(self, ch: int, model: str | None = None) -> None:
        """A transmitter (the one switched off, or ``model``) comes on and reports itself."""
        self._require_tx()
        channel = self.channel(ch)
        family = self.spec.family
        values = fresh_transmitter(family, family.tx_handheld[0], random.Random(f"tx/{self.seed}/{ch}"), channel.name)
        values.update(channel.battery_values(family))
        values.update({k: v for k, v in channel.saved_tx.items() if v is not None})
        if model is not None:
            values["tx_model"] = model
        for key, value in values.items():
            setattr(channel, key, value)
        channel.saved_tx = {}
        channel.tx_present = True
        self._broadcast(self.engine.tx_reps(channel))

    def set_battery(self, ch: int, bars: int, *, percent: int | None = None, minutes: int | None = None) -> None:
        """Set the battery as the transmitter reports it; percent/minutes follow bars unless given."""
        self._require_tx()
        if not 0 <= bars <= 5:
            raise ValueError(f"battery bars are 0..5, not {bars}")
        channel = self.channel(ch)
        family = self.spec.family
        channel.charge = float(percent) if percent is not None else _BAR_MIDPOINTS[bars]
        values = channel.battery_values(family)
        values["battery_bars"] = max(bars, family.min_bars)
        if percent is not None and values["battery_percent"] is not None:
            values["battery_percent"] = percent
        if minutes is not None and values["runtime_minutes"] is not None:
            values["runtime_minutes"] = minutes
        if not channel.tx_present:  # nothing to report until it is switched on
            channel.saved_tx.update(values)
            return
        self.update_channel(ch, **values)

    def rename_channel(self, ch: int, name: str) -> None:
        """A new channel name entered on the front panel (or in WWB): unsolicited REP CHAN_NAME."""
        width = self.spec.family.name_width
        if not name or len(name) > width:
            raise ValueError(f"{self.model} channel names are 1..{width} characters")
        self.update_channel(ch, name=name)

    def rename_device(self, name: str) -> None:
        width = self.spec.family.device_id_width
        if not name or len(name) > width:
            raise ValueError(f"{self.model} device names are 1..{width} characters")
        self.update_device(device_id=name)

    def set_lock(self, ch: int | None, lock: str) -> None:
        """Transmitter lock of ``ch`` ("none"/"power"/"menu"/"all"), or SLX-D's device LOCK_STATUS (ch None)."""
        if lock not in LOCK_WORDS:
            raise ValueError(f"lock is one of {sorted(LOCK_WORDS)}, not {lock!r}")
        if ch is None:
            if self.spec.family.device_prop("LOCK_STATUS") is None or lock == "power":
                raise ValueError(f"{self.model} has no device lock {lock!r}")
            self.update_device(lock_status=lock)
            return
        if "tx_lock" not in self.spec.family.channel_attrs():
            raise ValueError(f"{self.model} reports no transmitter lock")
        if not self.channel(ch).tx_present:
            raise ValueError(f"no transmitter on channel {ch}")
        self.update_channel(ch, tx_lock=lock)
