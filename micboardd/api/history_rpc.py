"""GetChannelHistory: a channel's recorded transmitter/battery changes and meter summaries, read from the store."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Final

import grpc
from google.protobuf import timestamp_pb2

from ..hub import StateHub
from ..model import Kind, split_channel_key
from ..store import StoreError
from .errors import ApiError, bad_request, not_found
from .gen.micboard.v1 import micboard_pb2 as pb
from .gen.micboard.v1 import resources_pb2 as rpb

if TYPE_CHECKING:
    from grpc import aio

    from ..daemon import Daemon

    Ctx = aio.ServicerContext[Any, Any]

log = logging.getLogger(__name__)

DEFAULT_HISTORY_LIMIT: Final = 500
MAX_HISTORY_LIMIT: Final = 5000  # one answer; read further back with `until`
# HistoryKind → the store's row ``type``.
HISTORY_KINDS: Final[Mapping[int, str]] = {pb.HISTORY_KIND_TRANSMITTER: "tx", pb.HISTORY_KIND_METERS: "meters"}
_NANOS_PER_S: Final = 1_000_000_000
# Row times are float seconds (about 0.24 µs apart at today's dates) and travel as Timestamps rounded to
# the microsecond, so a round trip moves them by under a microsecond. Bounds are moved earlier by a few
# microseconds: an entry's own time given back as `since` includes it and as `until` excludes it (how a
# client pages further back), and nothing a person could type notices.
TIME_SLACK_S: Final = 5e-6
_INT32_MAX: Final = 2**31 - 1

# Store row field → how it is put into the message (the message field has the same name).
_TX_FIELDS: Final[Mapping[str, type]] = {
    "present": bool, "model": str, "battery_bars": int, "battery_percent": int, "runtime_minutes": int,
    "battery_type": str, "charging": bool, "muted": bool,
}
_METER_FIELDS: Final[Mapping[str, type]] = {
    "window_s": float, "samples": int, "rf_dbm_min": float, "rf_dbm_max": float, "audio_dbfs_min": float,
    "audio_dbfs_max": float, "link_quality_min": int, "clips": int,
}


def _seconds(ts: timestamp_pb2.Timestamp) -> float:
    return ts.seconds + ts.nanos / _NANOS_PER_S


def _fill(msg: Any, row: Mapping[str, Any], fields: Mapping[str, type], key: str) -> None:
    """Set each known value of ``row`` on ``msg``; unknown (None) stays unset, a value of the wrong shape too."""
    for name, typ in fields.items():
        value = row.get(name)
        if value is None:
            continue
        try:
            coerced = typ(value)
            if typ is int and not -_INT32_MAX - 1 <= coerced <= _INT32_MAX:
                raise ValueError("out of int32 range")
            setattr(msg, name, coerced)
        except (TypeError, ValueError) as exc:
            log.warning("%s: history row at %s: %s=%r left unset (%s)", key, row.get("at"), name, value, exc)


def _timestamp_us(seconds: float) -> timestamp_pb2.Timestamp:
    ts = timestamp_pb2.Timestamp()
    ts.FromMicroseconds(round(seconds * 1e6))
    return ts


def history_entry_pb(row: Mapping[str, Any]) -> rpb.HistoryEntry | None:
    """One store history row as an entry; None for a row type this API does not know."""
    key = str(row.get("key", "?"))
    at = _timestamp_us(float(row["at"]))
    if row.get("type") == "tx":
        sample = rpb.TransmitterSample(at=at)
        _fill(sample, row, _TX_FIELDS, key)
        return rpb.HistoryEntry(transmitter=sample)
    if row.get("type") == "meters":
        summary = rpb.MeterSummary(at=at)
        _fill(summary, row, _METER_FIELDS, key)
        return rpb.HistoryEntry(meters=summary)
    log.warning("%s: history row of unknown type %r skipped", key, row.get("type"))
    return None


def _channel_problem(text: str) -> str | None:
    if not text:
        return "required: '<device_id>/<n>' or 'slot:<n>'"
    if text.startswith("slot:"):
        return None if text[5:].isdigit() else f"{text!r}: slot targets look like 'slot:12'"
    try:
        split_channel_key(text)
    except ValueError as exc:
        return str(exc)
    return None


def _timestamp_problem(request: pb.GetChannelHistoryRequest, name: str) -> str | None:
    has: Any = request.HasField  # the stub's Literal field names do not accept a variable
    if not has(name):
        return None
    ts: timestamp_pb2.Timestamp = getattr(request, name)
    if not 0 <= ts.nanos < _NANOS_PER_S:
        return f"nanos must be in 0..999999999, got {ts.nanos}"
    return None


def check_history_request(request: pb.GetChannelHistoryRequest) -> list[tuple[str, str]]:
    """Every problem of the request as (field, description); empty when it can be answered."""
    problems: list[tuple[str, str]] = []
    channel_problem = _channel_problem(request.channel)
    if channel_problem:
        problems.append(("channel", channel_problem))
    if not 0 <= request.limit <= MAX_HISTORY_LIMIT:
        problems.append(("limit", f"must be 0 (= {DEFAULT_HISTORY_LIMIT}) .. {MAX_HISTORY_LIMIT}, got {request.limit}; "
                                  "read further back with 'until'"))
    for name in ("since", "until"):
        ts_problem = _timestamp_problem(request, name)
        if ts_problem:
            problems.append((name, ts_problem))
    if (request.HasField("since") and request.HasField("until") and not problems
            and _seconds(request.until) <= _seconds(request.since)):
        problems.append(("until", "must be later than since"))
    for i, kind in enumerate(request.kinds):
        if kind not in HISTORY_KINDS:
            problems.append((f"kinds[{i}]", f"{kind} is not a history kind; use TRANSMITTER or METERS "
                                            "(or no kinds for both)"))
    return problems


class HistoryMixin:
    """The history RPC; expects ``daemon``, ``hub`` and ``resolve_channel_key`` from the servicer."""

    daemon: Daemon

    @property
    def hub(self) -> StateHub:
        raise NotImplementedError

    def resolve_channel_key(self, text: str, field: str) -> str:
        raise NotImplementedError

    async def GetChannelHistory(
        self, request: pb.GetChannelHistoryRequest, context: Ctx
    ) -> pb.GetChannelHistoryResponse:
        problems = check_history_request(request)
        if problems:
            raise bad_request(problems)
        key = self.resolve_channel_key(request.channel, "channel")
        limit = request.limit or DEFAULT_HISTORY_LIMIT
        kinds = tuple(sorted({HISTORY_KINDS[k] for k in request.kinds})) or tuple(HISTORY_KINDS.values())
        store = self.daemon.store
        try:
            # One more than asked tells whether older entries were left out.
            rows = await store.channel_history(
                key,
                since=_seconds(request.since) - TIME_SLACK_S if request.HasField("since") else None,
                until=_seconds(request.until) - TIME_SLACK_S if request.HasField("until") else None,
                limit=limit + 1,
                kinds=kinds,
            )
            if not rows and self.hub.get(Kind.CHANNEL, key) is None and not await store.channel_history(key, limit=1):
                raise not_found("channel", key, f"no channel {key!r}: the daemon does not know it and has "
                                                "nothing recorded for it")
        except StoreError as exc:
            log.error("%s: channel history could not be read: %s", key, exc)
            raise ApiError(grpc.StatusCode.UNAVAILABLE, f"the history store cannot be read right now: {exc}") from None
        truncated = len(rows) > limit
        entries = [e for e in (history_entry_pb(r) for r in rows[-limit:]) if e is not None]
        return pb.GetChannelHistoryResponse(channel=key, entries=entries, truncated=truncated)
