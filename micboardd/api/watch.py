"""Watch (revisioned list-then-watch with resume) and StreamMeters (lossy, rate-limited live levels).

Each Watch owns a hub Subscription, which keeps at most one pending change per resource: a watcher
whose client reads slowly is held back by gRPC flow control while its pending changes coalesce to
the latest value per key, so it costs bounded memory and never delays ingest or other watchers.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Iterable
from typing import TYPE_CHECKING, Any, Final

import grpc
from google.protobuf import duration_pb2

from ..hub import Change, MeterSubscription, RevisionCompactedError, StateHub
from ..model import Kind, split_channel_key
from .board import BoardIndex
from .convert import KIND_TO_PB, PB_TO_KIND, alert_pb, channel_pb, device_pb, meters_pb, slot_pb
from .errors import REVISION_COMPACTED, ApiError, bad_request, error_info
from .gen.micboard.v1 import micboard_pb2 as pb

if TYPE_CHECKING:
    from grpc import aio

    from ..daemon import Daemon

    Ctx = aio.ServicerContext[Any, Any]

log = logging.getLogger(__name__)

DEFAULT_PROGRESS_S: Final = 10.0  # keeps NAT/proxy state alive and lets idle clients advance their revision
MIN_PROGRESS_S: Final = 0.1
DEFAULT_METER_INTERVAL_S: Final = 1.0  # a board repaints levels about once a second
MIN_METER_INTERVAL_S: Final = 0.1  # no receiver meters faster than 100 ms anyway
MAX_EVENTS_PER_MESSAGE: Final = 1000  # ~300 KiB per message, far below gRPC's 4 MiB limit
EVENT_CACHE_SIZE: Final = 20_000  # converted events shared by watchers; a few board-wide changes' worth
SHUTDOWN_MESSAGE: Final = "the daemon is shutting down; reconnect and resume from your last revision"


def _seconds(d: duration_pb2.Duration, default: float, minimum: float, field: str) -> float:
    if d.seconds == 0 and d.nanos == 0:
        return default
    value = d.ToNanoseconds() / 1e9
    if value < minimum:
        raise bad_request([(field, f"{value:g} s is below the minimum of {minimum:g} s")])
    return value


def compacted(requested: int, oldest: int, current: int, why: str) -> ApiError:
    return ApiError(
        grpc.StatusCode.OUT_OF_RANGE,
        f"cannot resume from revision {requested}: {why}; list again and watch from the listed revision",
        [error_info(REVISION_COMPACTED, {"oldest_revision": str(oldest), "requested_revision": str(requested),
                                         "current_revision": str(current)})],
    )


class WatchMixin:
    """Watch and StreamMeters; expects ``daemon``, ``hub``, ``epoch``, ``board()`` and the stream registry."""

    daemon: Daemon
    epoch: str
    _closing: asyncio.Event
    _streams: set[Any]
    _event_cache: dict[tuple[int, str], pb.Event]

    @property
    def hub(self) -> StateHub:
        raise NotImplementedError

    def board(self) -> BoardIndex:
        raise NotImplementedError

    def close_streams(self) -> None:
        """End every open Watch/StreamMeters with UNAVAILABLE (daemon stopping) instead of a hang."""
        self._closing.set()
        for sub in list(self._streams):
            sub.close()

    # ------------------------------------------------------------------ events

    def _event(self, change_kind: Kind, key: str, entity: Any, revision: int, board: BoardIndex | None) -> pb.Event:
        ev = pb.Event(kind=KIND_TO_PB[change_kind], key=key, revision=revision)  # type: ignore[arg-type]
        if entity is None:
            ev.type = pb.EVENT_TYPE_DELETE
            return ev
        ev.type = pb.EVENT_TYPE_PUT
        if change_kind is Kind.DEVICE:
            ev.device.CopyFrom(device_pb(entity))
        elif change_kind is Kind.CHANNEL:
            ev.channel.CopyFrom(channel_pb(entity, board.context(entity) if board is not None else None))
        elif change_kind is Kind.SLOT:
            ev.slot.CopyFrom(slot_pb(entity))
        else:
            ev.alert.CopyFrom(alert_pb(entity))
        return ev

    def _messages(
        self, events: list[pb.Event], revision: int, kind: str, coalesced: int = 0
    ) -> list[pb.WatchResponse]:
        """Split events into messages of at most MAX_EVENTS_PER_MESSAGE; all but the last are fragments."""
        chunks = [events[i : i + MAX_EVENTS_PER_MESSAGE] for i in range(0, len(events), MAX_EVENTS_PER_MESSAGE)]
        out: list[pb.WatchResponse] = []
        for i, chunk in enumerate(chunks or [[]]):
            last = i == len(chunks) - 1 or not chunks
            # A fragment's revision is the newest change it holds: resuming from it is safe because
            # events go out in revision order. The last message carries the watcher's full revision.
            rev = revision if last or kind == "snapshot" else max(e.revision for e in chunk)
            msg = pb.WatchResponse(revision=rev, epoch=self.epoch, fragment=not last)
            if kind == "snapshot":
                msg.snapshot.events.extend(chunk)
            else:
                msg.changes.events.extend(chunk)
                msg.changes.coalesced = coalesced
            out.append(msg)
        return out

    # ------------------------------------------------------------------ Watch

    async def Watch(self, request: pb.WatchRequest, context: Ctx) -> AsyncIterator[pb.WatchResponse]:
        kinds: list[Kind] = []
        for i, k in enumerate(request.kinds):
            if k not in PB_TO_KIND:
                raise bad_request([(f"kinds[{i}]", f"unknown resource kind {k}")])
            kinds.append(PB_TO_KIND[k])
        kinds = kinds or list(Kind)
        device_ids = frozenset(request.device_ids)
        interval = _seconds(request.progress_interval, DEFAULT_PROGRESS_S, MIN_PROGRESS_S, "progress_interval")
        start = request.start_revision
        if start < 0:
            raise bad_request([("start_revision", "must be 0 (snapshot first) or a revision from a List or Watch")])
        hub = self.hub
        if start and request.epoch and request.epoch != self.epoch:
            raise compacted(start, hub.oldest_revision, hub.revision, "it belongs to an earlier run of the daemon")
        if start > hub.revision:
            raise compacted(start, hub.oldest_revision, hub.revision, f"it is newer than the current {hub.revision}")
        if self._closing.is_set():
            raise ApiError(grpc.StatusCode.UNAVAILABLE, SHUTDOWN_MESSAGE)

        def wanted(kind: Kind, key: str) -> bool:
            if not device_ids:
                return True
            if kind is Kind.DEVICE:
                return key in device_ids
            if kind is Kind.CHANNEL:
                return split_channel_key(key)[0] in device_ids
            return True

        context_board: Any = self.board if request.include_context else (lambda: None)
        # Subscribing and reading the snapshot/history happen with no await in between, so the
        # subscription holds exactly the changes after `revision`: nothing lost, nothing twice.
        sub = hub.subscribe(f"grpc-watch:{context.peer()}", kinds)
        self._streams.add(sub)
        try:
            first: list[pb.WatchResponse]
            if start == 0:
                revision = hub.revision
                board = context_board()
                events = [
                    self._event(kind, e.key, e, revision, board)
                    for kind in kinds
                    for e in hub.all(kind)
                    if wanted(kind, e.key)
                ]
                first = self._messages(events, revision, "snapshot")
            else:
                try:
                    history = hub.changes_since(start, kinds)
                except RevisionCompactedError as exc:
                    why = "the daemon's history no longer holds it"
                    raise compacted(start, exc.oldest, hub.revision, why) from None
                revision = hub.revision
                events = self._change_events(history, wanted, context_board())
                first = (
                    self._messages(events, revision, "changes")
                    if events
                    else [pb.WatchResponse(revision=revision, epoch=self.epoch, progress=pb.Progress())]
                )
            for msg in first:
                yield msg
            last_sent = time.monotonic()
            while True:
                try:
                    async with asyncio.timeout(max(0.0, last_sent + interval - time.monotonic())):
                        batch = await sub.get()
                except TimeoutError:
                    yield pb.WatchResponse(revision=hub.revision, epoch=self.epoch, progress=pb.Progress())
                    last_sent = time.monotonic()
                    continue
                except asyncio.CancelledError:
                    if self._closing.is_set() and sub.closed:
                        raise ApiError(grpc.StatusCode.UNAVAILABLE, SHUTDOWN_MESSAGE) from None
                    raise
                revision = hub.revision
                events = self._change_events(batch, wanted, context_board())
                if not events:
                    continue  # changes outside the filter; progress will advance the revision
                for msg in self._messages(events, revision, "changes", sub.coalesced):
                    yield msg
                last_sent = time.monotonic()
        finally:
            self._streams.discard(sub)
            sub.close()

    def _change_events(self, changes: Iterable[Change], wanted: Any, board: BoardIndex | None) -> list[pb.Event]:
        if board is not None:  # context is built for this watcher at this moment: not shareable
            return [self._event(c.kind, c.key, c.after, c.revision, board) for c in changes if wanted(c.kind, c.key)]
        # Every watcher sees the same changes: convert each once and share the (read-only) message.
        cache = self._event_cache
        out: list[pb.Event] = []
        for c in changes:
            if not wanted(c.kind, c.key):
                continue
            ident = (c.revision, c.key)
            ev = cache.get(ident)
            if ev is None:
                ev = self._event(c.kind, c.key, c.after, c.revision, None)
                cache[ident] = ev
                if len(cache) > EVENT_CACHE_SIZE:
                    del cache[next(iter(cache))]  # oldest first: dicts keep insertion order
            out.append(ev)
        return out

    # ------------------------------------------------------------------ StreamMeters

    async def StreamMeters(
        self, request: pb.StreamMetersRequest, context: Ctx
    ) -> AsyncIterator[pb.StreamMetersResponse]:
        interval = _seconds(request.min_interval, DEFAULT_METER_INTERVAL_S, MIN_METER_INTERVAL_S, "min_interval")
        problems: list[tuple[str, str]] = []
        for i, key in enumerate(request.channels):
            try:
                split_channel_key(key)
            except ValueError as exc:
                problems.append((f"channels[{i}]", str(exc)))
        if problems:
            raise bad_request(problems)
        keys = frozenset(request.channels)
        devices = frozenset(request.device_ids)
        if self._closing.is_set():
            raise ApiError(grpc.StatusCode.UNAVAILABLE, SHUTDOWN_MESSAGE)

        def wanted(key: str) -> bool:
            return (not keys or key in keys) and (not devices or key.rpartition("/")[0] in devices)

        sub: MeterSubscription = self.hub.subscribe_meters(f"grpc-meters:{context.peer()}")
        self._streams.add(sub)
        try:
            current = [m for m in self.hub.all_meters() if wanted(m.key)]
            if current:
                yield pb.StreamMetersResponse(meters=[meters_pb(m) for m in current])
                await asyncio.sleep(interval)
            while True:
                try:
                    batch = await sub.get()  # the latest reading per channel since the last send
                except asyncio.CancelledError:
                    if self._closing.is_set() and sub.closed:
                        raise ApiError(grpc.StatusCode.UNAVAILABLE, SHUTDOWN_MESSAGE) from None
                    raise
                out = [meters_pb(m) for m in batch if wanted(m.key)]
                if not out:
                    continue
                yield pb.StreamMetersResponse(meters=out)
                # Sleeping after a send is the rate limit: each channel goes out at most once per interval.
                await asyncio.sleep(interval)
        finally:
            self._streams.discard(sub)
            sub.close()

