"""The board view of the hub for one answer: channel context, list filters and page tokens."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final, TypeVar

from google.protobuf.json_format import MessageToDict
from google.protobuf.message import Message

from ..config import AlertDefaults
from ..hub import StateHub
from ..model import Alert, AlertState, Channel, Device, Kind, Slot, battery_low
from .convert import etag_of, meters_pb
from .errors import bad_request
from .gen.micboard.v1 import micboard_pb2 as pb
from .gen.micboard.v1 import resources_pb2 as rpb

DEFAULT_PAGE_SIZE: Final = 1000  # a whole large venue's board in one answer
MAX_PAGE_SIZE: Final = 5000  # keeps one answer well under gRPC's 4 MiB message limit

T = TypeVar("T")


class BoardIndex:
    """Lookups built once per answer so 1,000 channels cost one pass over slots and alerts, not 1,000."""

    def __init__(self, hub: StateHub, defaults: AlertDefaults) -> None:
        self.hub = hub
        self.defaults = defaults
        self.devices: dict[str, Device] = {d.device_id: d for d in hub.all(Kind.DEVICE)}
        self.slot_of: dict[str, Slot] = {}
        self.slots: list[Slot] = hub.all(Kind.SLOT)
        for slot in self.slots:  # slot order: the lowest slot number wins
            if slot.channel and slot.channel not in self.slot_of:
                self.slot_of[slot.channel] = slot
        self.alerts_of: dict[str, list[str]] = {}
        alert: Alert
        for alert in hub.all(Kind.ALERT):
            if alert.state is not AlertState.CLEARED:
                self.alerts_of.setdefault(alert.subject, []).append(alert.alert_id)

    def alert_ids(self, ch: Channel) -> list[str]:
        return self.alerts_of.get(ch.key, []) + self.alerts_of.get(ch.device_id, [])

    def low_battery(self, ch: Channel) -> bool:
        """At or below the slot's (else the site's) thresholds, with a transmitter on."""
        slot = self.slot_of.get(ch.key)
        return battery_low(ch, *self.defaults.limits(slot.alerts if slot is not None else None)) is True

    def context(self, ch: Channel, *, include_meters: bool = False) -> rpb.ChannelContext:
        slot = self.slot_of.get(ch.key)
        dev = self.devices.get(ch.device_id)
        fields: dict[str, Any] = {"alert_ids": self.alert_ids(ch)}
        if slot is not None:
            fields["slot"] = slot.slot
            fields["performer"] = slot.performer
            fields["group"] = slot.group
        if dev is not None:
            fields.update(device_online=dev.online, manufacturer=dev.manufacturer.value, device_model=dev.model,
                          device_name=dev.name)
        if include_meters:
            m = self.hub.meters(ch.key)
            fields["meters"] = meters_pb(m) if m is not None else None
        return rpb.ChannelContext(**{k: v for k, v in fields.items() if v is not None})

    # ------------------------------------------------------------------ filters

    def device_matches(self, dev: Device, f: pb.DeviceFilter) -> bool:
        return (
            (not f.device_ids or dev.device_id in f.device_ids)
            and (not f.manufacturers or dev.manufacturer.value in _lower(f.manufacturers))
            and (not f.models or _model_matches(dev.model, f.models))
            and (not f.families or dev.family in _lower(f.families))
            and (not f.HasField("online") or dev.online == f.online)
        )

    def channel_matches(self, ch: Channel, f: pb.ChannelFilter) -> bool:
        if f.device_ids and ch.device_id not in f.device_ids:
            return False
        dev = self.devices.get(ch.device_id)
        if f.manufacturers and (dev is None or dev.manufacturer.value not in _lower(f.manufacturers)):
            return False
        if f.models and (dev is None or not _model_matches(dev.model, f.models)):
            return False
        if f.HasField("online") and (dev is not None and dev.online) != f.online:
            return False
        slot = self.slot_of.get(ch.key)
        if f.groups and (slot is None or slot.group not in f.groups):
            return False
        if f.slots and not any(s.slot in f.slots and s.channel == ch.key for s in self.slots):
            return False
        if f.HasField("tx_present") and bool(ch.tx.present) != f.tx_present:
            return False
        if f.low_battery and not self.low_battery(ch):
            return False
        return not (f.alerting and not self.alert_ids(ch))

    def slot_matches(self, slot: Slot, f: pb.SlotFilter) -> bool:
        if f.groups and slot.group not in f.groups:
            return False
        if f.HasField("assigned") and bool(slot.channel) != f.assigned:
            return False
        if f.alerting:
            ch = self.hub.get(Kind.CHANNEL, slot.channel) if slot.channel else None
            if ch is None or not self.alert_ids(ch):
                return False
        return True


def _lower(values: Sequence[str]) -> set[str]:
    return {v.lower() for v in values}


def _model_matches(model: str | None, wanted: Sequence[str]) -> bool:
    """Case-insensitive; "AD4D" also matches the band variants the device reports ("AD4D-A")."""
    m = (model or "").lower()
    return any(m == w or m.startswith(w + "-") for w in _lower(wanted))


# ----------------------------------------------------------------------------- pagination


@dataclass(frozen=True, slots=True)
class Page:
    items: list[Any]
    next_token: str
    total: int


def fingerprint(*parts: Message | Any) -> str:
    """Identifies the query a page token belongs to, so a token is not reused with another filter."""
    plain = [MessageToDict(p) if isinstance(p, Message) else p for p in parts]
    return etag_of(plain)


def paginate(items: Sequence[T], sort_key: Callable[[T], Any], size: int, token: str, query: str) -> Page:
    """Keyset pagination over items already in ``sort_key`` order; stable while entities come and go."""
    if size < 0:
        raise bad_request([("page_size", f"{size} must not be negative")])
    size = min(size or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)
    start = 0
    if token:
        try:
            data = json.loads(base64.urlsafe_b64decode(token.encode("ascii")))
            after, q = data["after"], data["q"]
        except (ValueError, KeyError, TypeError, RecursionError) as exc:
            raise bad_request([("page_token", f"not a token this daemon issued ({type(exc).__name__})")]) from None
        if q != query:
            raise bad_request([("page_token", "belongs to a different filter; start again without a token")])
        after_key = tuple(after) if isinstance(after, list) else after
        try:
            start = next((i for i, it in enumerate(items) if _cmp_key(sort_key(it)) > after_key), len(items))
        except TypeError:  # an edited token whose position has another shape than this list's keys
            raise bad_request([("page_token", "not a token this daemon issued (position)")]) from None
    page = list(items[start : start + size])
    next_token = ""
    if start + size < len(items) and page:
        last = _cmp_key(sort_key(page[-1]))
        raw = json.dumps({"after": list(last) if isinstance(last, tuple) else last, "q": query})
        next_token = base64.urlsafe_b64encode(raw.encode("utf-8")).decode("ascii")
    return Page(page, next_token, len(items))


def _cmp_key(key: Any) -> Any:
    return tuple(key) if isinstance(key, list | tuple) else key
