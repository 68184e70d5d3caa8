"""Applies decoded SSCv2 resources to the model through the DeviceLink.

Notifications may be partial and arrive in any order, so the mapper keeps what later ones depend on:
the channel count, which channels have a transmitter, receiver and transmitter warnings (published
merged), the RF ranges, and the meters waiting for the next publish tick.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Mapping
from typing import Any, ClassVar

from ....config import DeviceConfig
from ....model import TX_ABSENT, Meters
from ...base import DeviceLink
from ..udp import MalformedLog
from .decode import PRODUCTS, Decoded, ResourceError, decode_resource, decode_tx_object
from .resources import Res


class ResourceMapper:
    """What the adapter knows of one receiver between notifications, and the handler for each resource."""

    def __init__(self, config: DeviceConfig, link: DeviceLink) -> None:
        self.config = config
        self.link = link
        self.log = link.log
        self.n = 0  # channel count: from the product table, a probe, or the config
        self.ranges: tuple[tuple[int, int, int], ...] = ()
        self.tx_present: dict[int, bool] = {}
        self.recheck: set[int] = set()  # channels whose transmitter must be confirmed by GET
        self.wake = asyncio.Event()  # set when ``recheck`` gained a channel
        self.meter_off: set[int] = set()  # channels whose metering was switched off by SetMeterRate
        self.meter_rate_s = config.meter_rate_ms / 1000.0
        self._rx_warn: dict[int, tuple[str, ...]] = {}
        self._tx_warn: dict[int, tuple[str, ...]] = {}
        self._meters: dict[int, dict[str, Any]] = {}
        self._meters_dirty: set[int] = set()
        self._degraded = False
        self._device_warnings: tuple[str, ...] = ()
        self._malformed = MalformedLog(self.log, "SSCv2 resource")  # meters can repeat it 10 times a second

    def apply(self, path: str, value: Any) -> None:
        try:
            d = decode_resource(path, value)
        except ResourceError as exc:
            self._malformed(json.dumps(value).encode(), f"{path}: {exc}")
            return
        if d is None:
            return
        if d.index is not None and self.n and not 1 <= d.index <= self.n:
            self.log.debug("%s: channel %d beyond %d ignored", path, d.index, self.n)
            return
        handler = self._HANDLERS.get(d.res)
        if handler is not None:
            handler(self, d)

    def _on_identity(self, d: Decoded) -> None:
        fields_ = dict(d.device)
        product = d.extra.get("product")
        if product and product not in PRODUCTS:
            self.log.info("unknown product %r; treating it as an SSCv2 receiver", product)
        count = fields_.pop("channel_count", 0)
        if count and not self.n:
            self.n = count
        self.link.device(**fields_)

    def _on_site(self, d: Decoded) -> None:
        name = d.extra.get("device_name")
        if name and not self.config.name:
            self.link.device(name=name)

    def _on_state(self, d: Decoded) -> None:
        state = d.extra.get("state")
        warnings = d.warnings or ()
        if warnings != self._device_warnings:
            self._device_warnings = warnings
            self.log.info("device warnings: %s", ", ".join(warnings) or "none")
        if state in ("Busy", "FirmwareUpdate"):
            if not self._degraded:
                self._degraded = True
                self.link.degraded(f"device is {'updating firmware' if state == 'FirmwareUpdate' else 'busy'}")
        elif state in ("Normal", "Identifying") and self._degraded:
            self._degraded = False
            self.link.online()

    def _on_device_fields(self, d: Decoded) -> None:
        if d.device:
            self.link.device(**d.device)

    def _on_rf(self, d: Decoded) -> None:
        self.ranges = tuple(d.extra.get("ranges", ()))

    def _on_encryption(self, d: Decoded) -> None:
        for i in range(1, self.n + 1):
            self.link.channel(i, encryption=d.extra.get("encryption"))

    def _on_tx_list(self, d: Decoded) -> None:
        linked: Mapping[int, Mapping[str, Any]] = d.extra.get("linked", {})
        for i in range(1, self.n + 1):
            if i in linked:
                was = self.tx_present.get(i)
                self.tx_present[i] = True
                self.link.channel(i, tx=decode_tx_object(linked[i]))
                if was is False:
                    self._schedule_recheck(i)  # newly linked: read its battery and warnings
            elif self.tx_present.get(i):
                # A list-shaped notification might be partial (UNVERIFIED): confirm by GET before
                # dropping a transmitter we believe is there.
                self._schedule_recheck(i)
            else:
                self.set_tx_absent(i)

    def _on_tx(self, d: Decoded) -> None:
        assert d.index is not None
        if d.tx_absent:
            if self.tx_present.get(d.index, True):
                self._schedule_recheck(d.index)  # confirm by GET (422) rather than trust a null alone
            self.set_tx_absent(d.index)
            return
        was = self.tx_present.get(d.index)
        self.tx_present[d.index] = True
        self.link.channel(d.index, tx=d.tx)
        if was is False:
            self._schedule_recheck(d.index)  # newly linked: read its battery and warnings

    def _on_channel(self, d: Decoded) -> None:
        assert d.index is not None
        if d.channel:
            self.link.channel(d.index, **d.channel)

    def _on_battery(self, d: Decoded) -> None:
        assert d.index is not None
        tx = dict(d.tx)
        if tx.get("battery_percent") is not None or tx.get("runtime_minutes") is not None:
            tx["present"] = True  # a battery reading means a transmitter is there
            self.tx_present[d.index] = True
        if tx:
            self.link.channel(d.index, tx=tx)

    def _on_channel_warnings(self, d: Decoded) -> None:
        assert d.index is not None
        old = self._rx_warn.get(d.index)
        new = d.warnings or ()
        self._rx_warn[d.index] = new
        if old is not None and ("no_link" in old) != ("no_link" in new):
            self._schedule_recheck(d.index)  # the transmitter came or went
        self._publish_warnings(d.index)
        if self.metering(d.index):
            meters = self._meters.setdefault(d.index, {})
            clip = "af_peak" in new
            if meters.get("clip") != clip:
                meters["clip"] = clip
                self._meters_dirty.add(d.index)

    def _on_tx_warnings(self, d: Decoded) -> None:
        assert d.index is not None
        self._tx_warn[d.index] = d.warnings or ()
        self._publish_warnings(d.index)

    def metering(self, i: int) -> bool:
        return self.meter_rate_s > 0 and i not in self.meter_off

    def _on_meter(self, d: Decoded) -> None:
        assert d.index is not None
        if not self.metering(d.index):
            return
        self._meters.setdefault(d.index, {}).update(d.meters)
        self._meters_dirty.add(d.index)

    def _on_ignore(self, d: Decoded) -> None:
        return

    _HANDLERS: ClassVar[dict[Res, Callable[[ResourceMapper, Decoded], None]]] = {
        Res.VERSION: _on_ignore,
        Res.IDENTITY: _on_identity,
        Res.SITE: _on_site,
        Res.STATE: _on_state,
        Res.IDENTIFICATION: _on_ignore,
        Res.CHANNEL_IDENTIFY: _on_ignore,
        Res.FIRMWARE: _on_device_fields,
        Res.RF: _on_rf,
        Res.ENCRYPTION: _on_encryption,
        Res.TX_LIST: _on_tx_list,
        Res.TX: _on_tx,
        Res.CHANNEL: _on_channel,
        Res.FREQUENCY: _on_channel,
        Res.BATTERY: _on_battery,
        Res.CHANNEL_WARNINGS: _on_channel_warnings,
        Res.TX_WARNINGS: _on_tx_warnings,
        Res.RSSI: _on_meter,
        Res.RSQI: _on_meter,
        Res.DIVERSITY: _on_meter,
        Res.LEVEL: _on_meter,
    }

    def set_tx_absent(self, i: int) -> None:
        self.tx_present[i] = False
        self._tx_warn[i] = ()
        self.link.channel(i, tx_replace=TX_ABSENT)
        self._publish_warnings(i)

    def _publish_warnings(self, i: int) -> None:
        merged = tuple(dict.fromkeys(self._rx_warn.get(i, ()) + self._tx_warn.get(i, ())))
        self.link.channel(i, warnings=merged)

    def _schedule_recheck(self, i: int) -> None:
        self.recheck.add(i)
        self.wake.set()

    def flush_meters(self) -> None:
        now = time.time()
        for i in sorted(self._meters_dirty):
            if not self.metering(i):
                continue
            m = self._meters.get(i, {})
            self.link.meters(
                Meters(
                    device_id=self.link.device_id,
                    index=i,
                    rf_dbm=m.get("rf_dbm", ()),
                    active_antenna=m.get("active_antenna"),
                    link_quality=m.get("link_quality"),
                    audio_peak_dbfs=m.get("audio_peak_dbfs"),
                    clip=bool(m.get("clip", False)),
                    at=now,
                )
            )
        self._meters_dirty.clear()
