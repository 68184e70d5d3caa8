"""The micboard.v1.Micboard servicer: daemon status and the revisioned queries; the rest comes from mixins."""

from __future__ import annotations

import asyncio
import logging
import secrets
from typing import TYPE_CHECKING, Any

from google.protobuf import duration_pb2

from ..hub import StateHub
from ..model import Kind, split_channel_key
from .action_rpc import ActionMixin
from .board import BoardIndex, fingerprint, paginate
from .config_rpc import ConfigMixin
from .convert import (
    CONN_STATE,
    ERROR_KIND,
    SEVERITY,
    alert_pb,
    channel_pb,
    device_pb,
    slot_pb,
    timestamp,
)
from .errors import bad_request, not_found
from .gen.micboard.v1 import micboard_pb2 as pb
from .gen.micboard.v1 import micboard_pb2_grpc as pb_grpc
from .gen.micboard.v1 import resources_pb2 as rpb
from .history_rpc import HistoryMixin
from .watch import WatchMixin

if TYPE_CHECKING:
    from grpc import aio

    from ..daemon import Daemon

    Ctx = aio.ServicerContext[Any, Any]

log = logging.getLogger(__name__)


class MicboardServicer(WatchMixin, ConfigMixin, ActionMixin, HistoryMixin, pb_grpc.MicboardServicer):  # type: ignore[misc]
    """Answers from the hub (current state) and the daemon (configuration, sessions, store)."""

    def __init__(self, daemon: Daemon) -> None:
        self.daemon = daemon
        # Names this daemon run: revisions restart at 1 after a restart, so a resume must match it.
        self.epoch = secrets.token_hex(6)
        self._closing = asyncio.Event()
        self._streams: set[Any] = set()
        self._event_cache: dict[tuple[int, str], pb.Event] = {}
        self._config_lock = asyncio.Lock()  # config-changing RPCs take turns (see config_rpc._one_at_a_time)

    @property
    def hub(self) -> StateHub:
        return self.daemon.hub

    def board(self) -> BoardIndex:
        return BoardIndex(self.hub, self.daemon.config.alerts)

    # ------------------------------------------------------------------ daemon

    async def GetStatus(self, request: pb.GetStatusRequest, context: Ctx) -> pb.GetStatusResponse:
        d = self.daemon
        uptime = duration_pb2.Duration()
        uptime.FromNanoseconds(int(d.uptime_s * 1e9))
        resp = pb.GetStatusResponse(
            version=d.version,
            uptime=uptime,
            revision=self.hub.revision,
            epoch=self.epoch,
            oldest_revision=self.hub.oldest_revision,
            show_lock=d.show_lock,
            summary=d.status_line(),
            site=d.config.site,
        )
        for name, sub in sorted(d.subsystems.items()):
            state = (
                pb.SUBSYSTEM_STATE_DISABLED if sub.ok is None
                else pb.SUBSYSTEM_STATE_OK if sub.ok else pb.SUBSYSTEM_STATE_DOWN
            )
            resp.subsystems.append(pb.Subsystem(name=name, state=state, detail=sub.detail))
        for cfg in d.device_configs():
            dev = self.hub.device(cfg.id)
            sup = d.supervisors.get(cfg.id)
            conn = pb.DeviceConnection(
                device_id=cfg.id,
                source=d.device_source(cfg.id) or "",
                enabled=cfg.enabled,
                family=cfg.family,
                host=cfg.host,
                port=cfg.port,
                sessions=sup.sessions if sup else 0,
                failures=sup.failures if sup else 0,
            )
            if dev is not None:
                conn.state = CONN_STATE.get(dev.state, 0)  # type: ignore[assignment]
                conn.error_kind = ERROR_KIND.get(dev.error_kind, 0)  # type: ignore[assignment]
                if dev.last_error:
                    conn.last_error = dev.last_error
                seen = timestamp(dev.last_seen)
                if seen is not None:
                    conn.last_seen.CopyFrom(seen)
            resp.devices.append(conn)
        store = d.store
        resp.store.CopyFrom(
            pb.StoreStatus(
                path=str(store.path), writer_alive=bool(store.writer_alive),
                batches_committed=int(store.batches_committed),
            )
        )
        return resp

    # ------------------------------------------------------------------ queries

    async def ListDevices(self, request: pb.ListDevicesRequest, context: Ctx) -> pb.ListDevicesResponse:
        board = self.board()
        rev = self.hub.revision
        devices = [dev for dev in board.devices.values() if board.device_matches(dev, request.filter)]
        devices.sort(key=lambda dv: dv.device_id)
        page = paginate(devices, lambda dv: dv.device_id, request.page_size, request.page_token,
                        fingerprint("devices", request.filter))
        return pb.ListDevicesResponse(
            devices=[device_pb(dv) for dv in page.items], revision=rev, epoch=self.epoch,
            next_page_token=page.next_token, total_size=page.total,
        )

    async def GetDevice(self, request: pb.GetDeviceRequest, context: Ctx) -> pb.GetDeviceResponse:
        if not request.device_id:
            raise bad_request([("device_id", "required")])
        dev = self.hub.device(request.device_id)
        if dev is None:
            raise not_found("device", request.device_id)
        board = self.board()
        return pb.GetDeviceResponse(
            device=device_pb(dev),
            channels=[channel_pb(ch, board.context(ch)) for ch in self.hub.channels_of(dev.device_id)],
            revision=self.hub.revision,
            epoch=self.epoch,
        )

    async def ListChannels(self, request: pb.ListChannelsRequest, context: Ctx) -> pb.ListChannelsResponse:
        board = self.board()
        rev = self.hub.revision
        f = request.filter
        channels = [ch for ch in self.hub.all(Kind.CHANNEL) if board.channel_matches(ch, f)]
        page = paginate(channels, lambda ch: (ch.device_id, ch.index), request.page_size, request.page_token,
                        fingerprint("channels", f, request.include_meters))
        return pb.ListChannelsResponse(
            channels=[channel_pb(ch, board.context(ch, include_meters=request.include_meters)) for ch in page.items],
            revision=rev,
            epoch=self.epoch,
            next_page_token=page.next_token,
            total_size=page.total,
        )

    def resolve_channel_key(self, text: str, field: str) -> str:
        """"<device_id>/<n>" or "slot:<n>" → a channel key; INVALID_ARGUMENT / NOT_FOUND otherwise."""
        if text.startswith("slot:"):
            num = text[5:]
            if not num.isdigit():
                raise bad_request([(field, f"{text!r}: slot targets look like 'slot:12'")])
            slot = self.hub.get(Kind.SLOT, str(int(num)))
            if slot is None or not slot.channel:
                raise not_found("slot", num, f"slot {num} does not exist or points at no channel")
            key: str = slot.channel
            return key
        try:
            device_id, index = split_channel_key(text)
        except ValueError as exc:
            raise bad_request([(field, str(exc))]) from None
        return f"{device_id}/{index}"

    async def GetChannel(self, request: pb.GetChannelRequest, context: Ctx) -> pb.GetChannelResponse:
        if not request.channel:
            raise bad_request([("channel", "required: '<device_id>/<n>' or 'slot:<n>'")])
        key = self.resolve_channel_key(request.channel, "channel")
        ch = self.hub.get(Kind.CHANNEL, key)
        if ch is None:
            raise not_found("channel", key)
        return pb.GetChannelResponse(
            channel=channel_pb(ch, self.board().context(ch, include_meters=request.include_meters)),
            revision=self.hub.revision,
            epoch=self.epoch,
        )

    async def ListSlots(self, request: pb.ListSlotsRequest, context: Ctx) -> pb.ListSlotsResponse:
        board = self.board()
        rev = self.hub.revision
        slots = [s for s in board.slots if board.slot_matches(s, request.filter)]
        page = paginate(slots, lambda s: s.slot, request.page_size, request.page_token,
                        fingerprint("slots", request.filter))
        return pb.ListSlotsResponse(
            slots=[slot_pb(s) for s in page.items], revision=rev, epoch=self.epoch,
            next_page_token=page.next_token, total_size=page.total,
        )

    async def GetSlot(self, request: pb.GetSlotRequest, context: Ctx) -> rpb.Slot:
        if request.slot < 1:
            raise bad_request([("slot", "required: a slot number ≥ 1")])
        slot = self.hub.get(Kind.SLOT, str(request.slot))
        if slot is None:
            raise not_found("slot", str(request.slot))
        return slot_pb(slot)

    async def ListAlerts(self, request: pb.ListAlertsRequest, context: Ctx) -> pb.ListAlertsResponse:
        rev = self.hub.revision
        alerts = self.hub.all(Kind.ALERT) if request.include_cleared else self.daemon.alerts.active()
        alerts = sorted(alerts, key=lambda a: (-SEVERITY.get(a.severity, 0), a.raised_at, a.alert_id))
        return pb.ListAlertsResponse(alerts=[alert_pb(a) for a in alerts], revision=rev, epoch=self.epoch)
