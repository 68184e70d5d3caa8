"""A small typed asyncio client of the micboard.v1 API, plus a blocking wrapper for scripts."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, TypeVar

import grpc
from google.protobuf import duration_pb2, field_mask_pb2, timestamp_pb2
from google.rpc import error_details_pb2, status_pb2
from grpc import aio

from .gen.micboard.v1 import micboard_pb2 as pb
from .gen.micboard.v1 import micboard_pb2_grpc as pb_grpc
from .gen.micboard.v1 import resources_pb2 as rpb

DEFAULT_SOCKET: Final = "/run/micboardd/api.sock"
DEFAULT_TIMEOUT_S: Final = 10.0  # unary calls; a dry run or a bulk action on a big rack answers well within it
ACTION_TIMEOUT_S: Final = 30.0  # bulk actions wait for every device's echo (3 s each, 16 in parallel)
HISTORY_KINDS: Final = {"tx": pb.HISTORY_KIND_TRANSMITTER, "meters": pb.HISTORY_KIND_METERS}
T = TypeVar("T")
# A point in time: an aware datetime, a naive one (local time) or unix seconds.
When = dt.datetime | float


@dataclass
class MicboardError(Exception):
    """An RPC that failed, with the daemon's rich details decoded."""

    code: grpc.StatusCode
    message: str
    reason: str = ""  # google.rpc.ErrorInfo.reason, e.g. "REVISION_COMPACTED", "CONFIRM_REQUIRED"
    metadata: dict[str, str] = field(default_factory=dict)
    field_violations: list[tuple[str, str]] = field(default_factory=list)

    def __str__(self) -> str:
        text = f"{self.code.name}: {self.message}"
        extra = [f"{f}: {d}" for f, d in self.field_violations if f"{f}: {d}" not in self.message]
        if extra:
            text += "".join(f"\n  {line}" for line in extra)
        return text

    @classmethod
    def from_rpc(cls, exc: grpc.RpcError) -> MicboardError:
        code = exc.code() if hasattr(exc, "code") else grpc.StatusCode.UNKNOWN
        message = (exc.details() if hasattr(exc, "details") else None) or str(exc)
        err = cls(code, message)
        trailing: Any = exc.trailing_metadata() if hasattr(exc, "trailing_metadata") else None
        for key, value in trailing or ():
            if key != "grpc-status-details-bin":
                continue
            status = status_pb2.Status.FromString(value)
            for detail in status.details:
                info = error_details_pb2.ErrorInfo()
                bad = error_details_pb2.BadRequest()
                if detail.Unpack(info):
                    err.reason = info.reason
                    err.metadata = dict(info.metadata)
                elif detail.Unpack(bad):
                    err.field_violations = [(v.field, v.description) for v in bad.field_violations]
        return err


def _duration(seconds: float | None) -> duration_pb2.Duration | None:
    if seconds is None:
        return None
    d = duration_pb2.Duration()
    d.FromNanoseconds(int(seconds * 1e9))
    return d


def _timestamp(when: When | None) -> timestamp_pb2.Timestamp | None:
    if when is None:
        return None
    seconds = when.timestamp() if isinstance(when, dt.datetime) else float(when)
    ts = timestamp_pb2.Timestamp()
    ts.FromNanoseconds(round(seconds * 1e9))
    return ts


def resolve_target(
    target: str | None = None, socket: str | None = None
) -> tuple[str, bool]:
    """The gRPC address to dial and whether it is TCP (TLS + token) rather than the Unix socket."""
    target = target or os.environ.get("MICBOARD_TARGET") or None
    if target:
        if target.startswith(("unix:", "unix-abstract:")):
            return target, False
        return target, True
    return f"unix:{socket or os.environ.get('MICBOARD_SOCKET') or DEFAULT_SOCKET}", False


class Client:
    """Async client. ``async with Client(...) as mb``; every method raises MicboardError on failure."""

    def __init__(
        self,
        target: str | None = None,
        *,
        socket: str | None = None,
        token: str | None = None,
        ca_file: str | os.PathLike[str] | None = None,
        timeout: float = DEFAULT_TIMEOUT_S,
    ) -> None:
        self.address, tcp = resolve_target(target, socket)
        self.token = token if token is not None else os.environ.get("MICBOARD_TOKEN") or None
        self.timeout = timeout
        if tcp:
            roots = Path(ca_file).read_bytes() if ca_file else None
            self.channel = aio.secure_channel(self.address, grpc.ssl_channel_credentials(root_certificates=roots))
        else:
            self.channel = aio.insecure_channel(self.address)
        self.stub = pb_grpc.MicboardStub(self.channel)  # type: ignore[no-untyped-call]

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        await self.channel.close(None)

    @property
    def metadata(self) -> tuple[tuple[str, str], ...]:
        # Sent as plain metadata (not call credentials) so it also works on the insecure Unix socket.
        return (("authorization", f"Bearer {self.token}"),) if self.token else ()

    async def call(self, method: str, request: Any, *, timeout: float | None = None) -> Any:
        """Any unary RPC by name, with the token, a deadline and decoded errors."""
        try:
            return await getattr(self.stub, method)(
                request, metadata=self.metadata, timeout=timeout or self.timeout
            )
        except grpc.RpcError as exc:
            raise MicboardError.from_rpc(exc) from None

    async def stream(self, method: str, request: Any) -> AsyncIterator[Any]:
        """Any server-streaming RPC by name (no deadline: streams live until cancelled)."""
        call = getattr(self.stub, method)(request, metadata=self.metadata)
        try:
            async for item in call:
                yield item
        except grpc.RpcError as exc:
            raise MicboardError.from_rpc(exc) from None
        finally:
            call.cancel()

    # ------------------------------------------------------------------ queries

    async def status(self) -> pb.GetStatusResponse:
        resp: pb.GetStatusResponse = await self.call("GetStatus", pb.GetStatusRequest())
        return resp

    async def devices(self, flt: pb.DeviceFilter | None = None) -> tuple[list[rpb.Device], int]:
        """Every matching device (all pages) and the revision of the first page."""
        out: list[rpb.Device] = []
        token, revision = "", 0
        while True:
            resp = await self.call("ListDevices", pb.ListDevicesRequest(filter=flt, page_token=token))
            out.extend(resp.devices)
            revision = revision or resp.revision
            token = resp.next_page_token
            if not token:
                return out, revision

    async def channels(
        self, flt: pb.ChannelFilter | None = None, *, include_meters: bool = False
    ) -> tuple[list[rpb.Channel], int]:
        out: list[rpb.Channel] = []
        token, revision = "", 0
        while True:
            req = pb.ListChannelsRequest(filter=flt, page_token=token, include_meters=include_meters)
            resp = await self.call("ListChannels", req)
            out.extend(resp.channels)
            revision = revision or resp.revision
            token = resp.next_page_token
            if not token:
                return out, revision

    async def slots(self, flt: pb.SlotFilter | None = None) -> tuple[list[rpb.Slot], int]:
        out: list[rpb.Slot] = []
        token, revision = "", 0
        while True:
            resp = await self.call("ListSlots", pb.ListSlotsRequest(filter=flt, page_token=token))
            out.extend(resp.slots)
            revision = revision or resp.revision
            token = resp.next_page_token
            if not token:
                return out, revision

    async def alerts(self, *, include_cleared: bool = False) -> list[rpb.Alert]:
        resp = await self.call("ListAlerts", pb.ListAlertsRequest(include_cleared=include_cleared))
        return list(resp.alerts)

    async def audit(self, *, limit: int = 50, target: str = "") -> list[rpb.AuditEntry]:
        resp = await self.call("ListAuditLog", pb.ListAuditLogRequest(limit=limit, target=target))
        return list(resp.entries)

    async def history(
        self,
        channel: str,
        *,
        since: When | None = None,
        until: When | None = None,
        limit: int = 500,
        kinds: Iterable[str] = (),
    ) -> pb.GetChannelHistoryResponse:
        """A channel's recorded transmitter samples and meter summaries in ``[since, until)``, oldest first.

        At most ``limit`` (≤ 5000) entries, the newest of the span; ``truncated`` on the answer says older
        ones were left out (ask again with ``until`` = the first entry's time). ``kinds``: "tx", "meters";
        empty = both.
        """
        try:
            kind_values = [HISTORY_KINDS[k] for k in kinds]
        except KeyError as exc:
            raise ValueError(f"history kinds are {', '.join(HISTORY_KINDS)}; got {exc.args[0]!r}") from None
        req = pb.GetChannelHistoryRequest(
            channel=channel, since=_timestamp(since), until=_timestamp(until), limit=limit, kinds=kind_values
        )
        resp: pb.GetChannelHistoryResponse = await self.call("GetChannelHistory", req)
        return resp

    def watch(
        self,
        *,
        kinds: Sequence[int] = (),
        device_ids: Sequence[str] = (),
        start_revision: int = 0,
        epoch: str = "",
        progress_interval: float | None = None,
        include_context: bool = False,
    ) -> AsyncIterator[pb.WatchResponse]:
        req = pb.WatchRequest(
            kinds=[pb.ResourceKind.ValueType(k) for k in kinds],
            device_ids=list(device_ids), start_revision=start_revision, epoch=epoch,
            progress_interval=_duration(progress_interval), include_context=include_context,
        )
        return self.stream("Watch", req)

    def meters(
        self, channels: Sequence[str] = (), *, device_ids: Sequence[str] = (), min_interval: float | None = None
    ) -> AsyncIterator[pb.StreamMetersResponse]:
        req = pb.StreamMetersRequest(
            channels=list(channels), device_ids=list(device_ids), min_interval=_duration(min_interval)
        )
        return self.stream("StreamMeters", req)

    # ------------------------------------------------------------------ config

    async def assign(
        self,
        slot: int,
        channel: str | None,
        *,
        performer: str | None = None,
        group: str | None = None,
        etag: str = "",
    ) -> rpb.Slot:
        """Point a slot at a channel (None unassigns) and optionally name its performer; creates the slot."""
        msg = rpb.Slot(slot=slot, etag=etag)
        paths = ["channel"]
        if channel is not None:
            msg.channel = channel
        if performer is not None:
            paths.append("performer")
            if performer:
                msg.performer = performer
        if group is not None:
            paths.append("group")
            if group:
                msg.group = group
        req = pb.UpdateSlotRequest(slot=msg, update_mask=field_mask_pb2.FieldMask(paths=paths), allow_missing=True)
        resp: rpb.Slot = await self.call("UpdateSlot", req)
        return resp

    async def set_show_lock(self, on: bool) -> pb.SetShowLockResponse:
        resp: pb.SetShowLockResponse = await self.call("SetShowLock", pb.SetShowLockRequest(on=on))
        return resp

    async def ack(self, alert_id: str) -> rpb.Alert:
        resp: rpb.Alert = await self.call("AcknowledgeAlert", pb.AcknowledgeAlertRequest(alert_id=alert_id))
        return resp

    # ------------------------------------------------------------------ actions

    async def identify(self, targets: Iterable[str], *, dry_run: bool = False) -> pb.ActionResponse:
        req = pb.IdentifyRequest(targets=list(targets), dry_run=dry_run)
        resp: pb.ActionResponse = await self.call("Identify", req, timeout=ACTION_TIMEOUT_S)
        return resp

    async def rename(self, names: Mapping[str, str], *, dry_run: bool = False) -> pb.ActionResponse:
        req = pb.RenameRequest(items=[pb.RenameItem(target=t, name=n) for t, n in names.items()], dry_run=dry_run)
        resp: pb.ActionResponse = await self.call("Rename", req, timeout=ACTION_TIMEOUT_S)
        return resp

    async def meter_rate(self, targets: Iterable[str], rate_ms: int, *, dry_run: bool = False) -> pb.ActionResponse:
        req = pb.SetMeterRateRequest(targets=list(targets), rate_ms=rate_ms, dry_run=dry_run)
        resp: pb.ActionResponse = await self.call("SetMeterRate", req, timeout=ACTION_TIMEOUT_S)
        return resp

    async def mute(
        self, targets: Iterable[str], muted: bool = True, *, confirm: bool = False, dry_run: bool = False
    ) -> pb.ActionResponse:
        req = pb.SetMuteRequest(targets=list(targets), muted=muted, confirm=confirm, dry_run=dry_run)
        resp: pb.ActionResponse = await self.call("SetMute", req, timeout=ACTION_TIMEOUT_S)
        return resp


class SyncClient:
    """The same calls, blocking: runs a private event loop. Use as a context manager or call close()."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._runner = asyncio.Runner()
        self._client: Client = self._runner.run(self._make(*args, **kwargs))

    @staticmethod
    async def _make(*args: Any, **kwargs: Any) -> Client:
        return Client(*args, **kwargs)  # the aio channel must be created inside the loop that uses it

    def __enter__(self) -> SyncClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._runner.run(self._client.close())
        self._runner.close()

    def _iterate(self, agen: AsyncIterator[T]) -> Iterator[T]:
        try:
            while True:
                try:
                    yield self._runner.run(agen.__anext__())  # type: ignore[arg-type]
                except StopAsyncIteration:
                    return
        finally:
            self._runner.run(agen.aclose())  # type: ignore[attr-defined]

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._client, name)
        if name in ("watch", "meters", "stream"):
            return lambda *a, **k: self._iterate(attr(*a, **k))
        if asyncio.iscoroutinefunction(attr):
            return lambda *a, **k: self._runner.run(attr(*a, **k))
        return attr
