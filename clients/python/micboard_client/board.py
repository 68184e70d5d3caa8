"""Board tables for people: channels as a show runs them (slot, performer, battery, RF, audio, TX, online)."""

from __future__ import annotations

import datetime as dt
import math
import sys
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from .gen.micboard.v1 import micboard_pb2 as pb
from .gen.micboard.v1 import resources_pb2 as rpb


def _unicode_ok() -> bool:
    enc = (getattr(sys.stdout, "encoding", None) or "").lower()
    return "utf" in enc


def battery_text(tx: rpb.Transmitter | rpb.TransmitterSample, *, unicode: bool | None = None) -> str:
    """``▮▮▮▯▯ 60% 2h05`` — bars, percent and runtime, each only when the receiver reported it."""
    if not tx.present:
        return "-"
    parts: list[str] = []
    use_uni = _unicode_ok() if unicode is None else unicode
    if tx.HasField("battery_bars"):
        on, off = ("▮", "▯") if use_uni else ("#", ".")
        bars = max(0, min(5, tx.battery_bars))
        parts.append(on * bars + off * (5 - bars))
    if tx.HasField("battery_percent"):
        parts.append(f"{tx.battery_percent}%")
    if tx.HasField("runtime_minutes"):
        parts.append(f"{tx.runtime_minutes // 60}h{tx.runtime_minutes % 60:02d}")
    return " ".join(parts) or "?"


def rf_text(m: rpb.Meters | None) -> str:
    if m is None or not m.HasField("rf_best_dbm"):
        return "-"
    ant = f" {m.active_antenna}" if m.HasField("active_antenna") else ""
    return f"{m.rf_best_dbm:.0f} dBm{ant}"


def audio_text(m: rpb.Meters | None) -> str:
    if m is None:
        return "-"
    value = m.audio_peak_dbfs if m.HasField("audio_peak_dbfs") else (
        m.audio_rms_dbfs if m.HasField("audio_rms_dbfs") else math.nan
    )
    if math.isnan(value):
        return "-"
    return f"{value:.0f} dBFS" + (" CLIP" if m.clip else "")


def channel_row(ch: rpb.Channel, meters: rpb.Meters | None = None, slot: rpb.Slot | None = None) -> list[str]:
    """One board line. ``meters``/``slot`` override the channel's own context (live watch state)."""
    ctx = ch.context
    m = meters if meters is not None else (ctx.meters if ctx.HasField("meters") else None)
    slot_no = str(slot.slot) if slot is not None else (str(ctx.slot) if ctx.HasField("slot") else "")
    performer = (slot.performer if slot is not None and slot.HasField("performer") else
                 (ctx.performer if ctx.HasField("performer") else ""))
    name = ch.name if ch.HasField("name") else ""
    online = "stale" if ch.stale else ("yes" if ctx.device_online else "no")
    freq = f"{ch.frequency_khz / 1000:.3f}" if ch.HasField("frequency_khz") else "-"
    tx_model = (ch.tx.model if ch.tx.HasField("model") else "on") if ch.tx.present else ("off" if ch.tx.HasField(
        "present") else "?")
    flags = []
    if ch.HasField("muted") and ch.muted:
        flags.append("MUTED")
    if ch.tx.HasField("muted") and ch.tx.muted:
        flags.append("TX-MUTE")
    if ctx.alert_ids:
        flags.append("ALERT")
    return [slot_no, performer, name, ch.key, battery_text(ch.tx), rf_text(m), audio_text(m), tx_model, freq,
            online, " ".join(flags)]


CHANNEL_HEADER = ["SLOT", "PERFORMER", "NAME", "CHANNEL", "BATTERY", "RF", "AUDIO", "TX", "MHZ", "ONLINE", ""]


def table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    """Left-aligned columns sized to their widest cell; empty trailing columns are trimmed."""
    rows = [list(r) for r in rows]
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(header)]
    lines = []
    for r in [list(header), *rows]:
        lines.append("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(r)).rstrip())
    return "\n".join(lines)


def channels_table(
    channels: Iterable[rpb.Channel],
    meters: Mapping[str, rpb.Meters] | None = None,
    slots: Mapping[str, rpb.Slot] | None = None,
) -> str:
    rows = [channel_row(ch, (meters or {}).get(ch.key), (slots or {}).get(ch.key)) for ch in channels]
    return table(CHANNEL_HEADER, rows)


STATE_NAMES = {
    rpb.CONNECTION_STATE_CONNECTING: "connecting",
    rpb.CONNECTION_STATE_ONLINE: "online",
    rpb.CONNECTION_STATE_DEGRADED: "degraded",
    rpb.CONNECTION_STATE_OFFLINE: "offline",
}


def devices_table(devices: Iterable[rpb.Device]) -> str:
    rows = [
        [d.device_id, d.manufacturer, d.model if d.HasField("model") else "?", d.name if d.HasField("name") else "",
         f"{d.host}:{d.port}", STATE_NAMES.get(d.state, "?") + (" (stale)" if d.stale else ""),
         d.firmware if d.HasField("firmware") else "", d.last_error if d.HasField("last_error") else ""]
        for d in devices
    ]
    return table(["DEVICE", "MAKE", "MODEL", "NAME", "ADDRESS", "STATE", "FIRMWARE", "LAST ERROR"], rows)


SEVERITY_NAMES = {rpb.SEVERITY_INFO: "info", rpb.SEVERITY_WARNING: "warning", rpb.SEVERITY_CRITICAL: "CRITICAL"}
ALERT_STATE_NAMES = {rpb.ALERT_STATE_ACTIVE: "active", rpb.ALERT_STATE_ACKNOWLEDGED: "acknowledged",
                     rpb.ALERT_STATE_CLEARED: "cleared"}


def alerts_table(alerts: Iterable[rpb.Alert]) -> str:
    rows = [
        [SEVERITY_NAMES.get(a.severity, "?"), ALERT_STATE_NAMES.get(a.state, "?"), a.alert_id, a.message,
         a.acknowledged_by if a.HasField("acknowledged_by") else ""]
        for a in alerts
    ]
    return table(["SEVERITY", "STATE", "ID", "MESSAGE", "ACK BY"], rows)


def slots_table(slots: Iterable[rpb.Slot]) -> str:
    rows = [
        [str(s.slot), s.performer if s.HasField("performer") else "", s.channel if s.HasField("channel") else "-",
         s.group if s.HasField("group") else ""]
        for s in slots
    ]
    return table(["SLOT", "PERFORMER", "CHANNEL", "GROUP"], rows)


def _value(v: Any) -> str:
    kind = v.WhichOneof("kind")
    if kind in (None, "null_value"):
        return "-"
    if kind == "number_value":
        n = v.number_value
        return str(int(n)) if n == int(n) else f"{n:g}"
    if kind == "bool_value":
        return "on" if v.bool_value else "off"
    if kind == "string_value":
        return repr(v.string_value)
    return str(v)


ERROR_NAMES = {
    pb.TARGET_ERROR_OFFLINE: "offline", pb.TARGET_ERROR_UNSUPPORTED: "unsupported", pb.TARGET_ERROR_INVALID: "invalid",
    pb.TARGET_ERROR_REJECTED: "rejected", pb.TARGET_ERROR_TIMEOUT: "timeout", pb.TARGET_ERROR_MISMATCH: "mismatch",
    pb.TARGET_ERROR_NOT_FOUND: "not found",
}


def action_table(resp: pb.ActionResponse) -> str:
    rows = []
    for r in resp.results:
        if r.ok:
            outcome = "would change" if resp.dry_run else "ok (device confirmed)"
        else:
            outcome = f"FAILED: {ERROR_NAMES.get(r.error, 'error')}"
        rows.append([r.target, r.resolved, r.field, _value(r.before), _value(r.after), outcome, r.detail])
    text = table(["TARGET", "RESOLVED", "FIELD", "BEFORE", "AFTER", "RESULT", "DETAIL"], rows)
    verb = "planned (dry run)" if resp.dry_run else "done"
    return f"{text}\n{resp.succeeded} {verb}, {resp.failed} failed"


# ----------------------------------------------------------------------------- channel history

HISTORY_HEADER = ["TIME", "TX", "BATTERY", "RF MIN..MAX", "AUDIO MAX", "NOTES"]


def _dbm_span(lo: float | None, hi: float | None) -> str:
    if lo is None and hi is None:
        return "-"
    if lo is None or hi is None or round(lo) == round(hi):
        return f"{(hi if lo is None else lo):.0f} dBm"
    return f"{lo:.0f}..{hi:.0f} dBm"


def _tx_text(s: rpb.TransmitterSample) -> str:
    if not s.HasField("present"):
        return "?"
    if not s.present:
        return "off"
    return s.model if s.HasField("model") else "on"


def history_row(entry: rpb.HistoryEntry, when: str, *, unicode: bool | None = None) -> list[str]:
    """One line of a channel's history: a transmitter sample fills TX/BATTERY, a meter summary RF/AUDIO."""
    if entry.HasField("transmitter"):
        s = entry.transmitter
        notes = []
        if s.HasField("battery_type") and s.present:
            notes.append(s.battery_type)
        if s.HasField("charging") and s.charging:
            notes.append("CHARGING")
        if s.HasField("muted") and s.muted:
            notes.append("TX-MUTE")
        battery = battery_text(s, unicode=unicode) if s.present or not s.HasField("present") else "-"
        return [when, _tx_text(s), battery, "", "", " ".join(notes)]
    m = entry.meters
    rf = _dbm_span(m.rf_dbm_min if m.HasField("rf_dbm_min") else None,
                   m.rf_dbm_max if m.HasField("rf_dbm_max") else None)
    audio = f"{m.audio_dbfs_max:.0f} dBFS" if m.HasField("audio_dbfs_max") else "-"
    notes = []
    if m.HasField("clips") and m.clips:
        notes.append(f"CLIP x{m.clips}")
    if m.HasField("link_quality_min"):
        notes.append(f"link >= {m.link_quality_min}%")
    return [when, "", "", rf, audio, " ".join(notes)]


def _entry_time(entry: rpb.HistoryEntry, tz: dt.tzinfo | None) -> dt.datetime:
    ts = entry.transmitter.at if entry.HasField("transmitter") else entry.meters.at
    return dt.datetime.fromtimestamp(ts.seconds + ts.nanos / 1e9, tz=tz).astimezone(tz)


def history_table(resp: pb.GetChannelHistoryResponse, *, tz: dt.tzinfo | None = None,
                  unicode: bool | None = None) -> str:
    """A title line, then one row per entry, oldest first; times in ``tz`` (default: this machine's zone)."""
    entries = list(resp.entries)
    if not entries:
        return f"{resp.channel}: nothing recorded in that span"
    times = [_entry_time(e, tz) for e in entries]
    one_day = times[0].date() == times[-1].date()
    fmt = "%H:%M:%S" if one_day else "%Y-%m-%d %H:%M:%S"
    zone = times[0].strftime("%Z") or "local time"
    span = (f"{times[0]:%Y-%m-%d %H:%M} to {times[-1]:%H:%M}" if one_day
            else f"{times[0]:%Y-%m-%d %H:%M} to {times[-1]:%Y-%m-%d %H:%M}")
    lines = [f"{resp.channel}: {len(entries)} entries, {span} ({zone})"]
    lines.append(table(HISTORY_HEADER, [history_row(e, t.strftime(fmt), unicode=unicode)
                                        for e, t in zip(entries, times, strict=True)]))
    if resp.truncated:
        lines.append(f"older entries left out: raise --limit or add --until '{times[0].isoformat()}'")
    return "\n".join(lines)
