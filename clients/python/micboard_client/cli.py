"""``micboardctl``: the board and the safe controls of micboardd from a terminal.

Exit status: 0 done, 1 some targets failed or the user declined, 2 usage, 3 the daemon refused or
could not be reached (the message names the gRPC status and, for bad input, every bad field).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final, TextIO

from google.protobuf.json_format import MessageToDict
from google.protobuf.message import Message

from . import __version__
from .board import (
    CHANNEL_HEADER,
    STATE_NAMES,
    action_table,
    alerts_table,
    channel_row,
    channels_table,
    devices_table,
    history_table,
    slots_table,
    table,
)
from .client import DEFAULT_SOCKET, Client, MicboardError
from .gen.micboard.v1 import micboard_pb2 as pb
from .gen.micboard.v1 import resources_pb2 as rpb
from .when import HELP as WHEN_HELP
from .when import parse_when

REDRAW_EVERY_S: Final = 0.25  # a live board repaints at most four times a second
SUBSYSTEM_NAMES: Final = {pb.SUBSYSTEM_STATE_OK: "ok", pb.SUBSYSTEM_STATE_DOWN: "DOWN",
                          pb.SUBSYSTEM_STATE_DISABLED: "off"}


def as_json(msg: Message | Sequence[Message] | dict[str, Any]) -> str:
    def one(m: Message) -> dict[str, Any]:
        return MessageToDict(m, preserving_proto_field_name=True)

    if isinstance(msg, Message):
        data: Any = one(msg)
    elif isinstance(msg, dict):
        data = {k: (one(v) if isinstance(v, Message) else [one(x) for x in v] if isinstance(v, list) else v)
                for k, v in msg.items()}
    else:
        data = [one(m) for m in msg]
    return json.dumps(data, indent=2, ensure_ascii=False)


class Ctl:
    """One micboardctl invocation: the parsed options, an output stream and a client."""

    def __init__(self, args: argparse.Namespace, out: TextIO) -> None:
        self.args = args
        self.out = out

    def print(self, text: str = "") -> None:
        print(text, file=self.out, flush=True)

    def client(self) -> Client:
        a = self.args
        token = a.token
        if a.token_file:
            token = Path(a.token_file).read_text(encoding="utf-8").strip()
        return Client(a.grpc_target, socket=a.socket, token=token, ca_file=a.ca, timeout=a.timeout)

    # ------------------------------------------------------------------ reads

    async def status(self, mb: Client) -> int:
        st = await mb.status()
        if self.args.json:
            self.print(as_json(st))
            return 0
        up = st.uptime.ToTimedelta()
        self.print(f"micboardd {st.version} · site {st.site} · up {str(up).split('.')[0]} · revision {st.revision}")
        self.print(st.summary)
        if st.show_lock:
            self.print("SHOW LOCK is ON: mute, gain and frequency changes are refused")
        self.print("subsystems: " + ", ".join(
            f"{s.name} {SUBSYSTEM_NAMES.get(s.state, '?')}" + (f" ({s.detail})" if s.detail else "")
            for s in st.subsystems))
        rows = [
            [d.device_id, f"{d.host}:{d.port}", d.family, STATE_NAMES.get(d.state, "?"), d.source,
             d.last_error if d.HasField("last_error") else ""]
            for d in st.devices
        ]
        if rows:
            self.print()
            self.print(table(["DEVICE", "ADDRESS", "FAMILY", "STATE", "SOURCE", "LAST ERROR"], rows))
        return 0

    async def devices(self, mb: Client) -> int:
        a = self.args
        flt = pb.DeviceFilter(manufacturers=a.manufacturer or [], models=a.model or [])
        if a.online is not None:
            flt.online = a.online
        devices, _ = await mb.devices(flt)
        self.print(as_json(devices) if a.json else devices_table(devices))
        return 0

    def channel_filter(self) -> pb.ChannelFilter:
        a = self.args
        flt = pb.ChannelFilter(device_ids=a.device or [], groups=a.group or [], low_battery=a.low_battery,
                               alerting=a.alerting)
        if a.online is not None:
            flt.online = a.online
        return flt

    async def channels(self, mb: Client) -> int:
        chans, rev = await mb.channels(self.channel_filter(), include_meters=True)
        if self.args.json:
            self.print(as_json({"revision": rev, "channels": chans}))
        else:
            self.print(channels_table(chans))
        return 0

    async def slots(self, mb: Client) -> int:
        slots, _ = await mb.slots()
        self.print(as_json(slots) if self.args.json else slots_table(slots))
        return 0

    async def alerts(self, mb: Client) -> int:
        alerts = await mb.alerts(include_cleared=self.args.all)
        self.print(as_json(alerts) if self.args.json else (alerts_table(alerts) if alerts else "no alerts"))
        return 0

    async def audit(self, mb: Client) -> int:
        entries = await mb.audit(limit=self.args.limit, target=self.args.target_filter or "")
        if self.args.json:
            self.print(as_json(entries))
            return 0
        rows = [[e.at.ToDatetime().strftime("%Y-%m-%d %H:%M:%S"), e.actor, e.action, e.target,
                 json.dumps(MessageToDict(e.before)) if e.HasField("before") else "",
                 json.dumps(MessageToDict(e.after)) if e.HasField("after") else "", e.result] for e in entries]
        self.print(table(["WHEN (UTC)", "WHO", "ACTION", "TARGET", "BEFORE", "AFTER", "RESULT"], rows))
        return 0

    async def history(self, mb: Client) -> int:
        a = self.args
        kinds = () if a.kind == "both" else (a.kind,)
        resp = await mb.history(a.channel, since=a.since, until=a.until, limit=a.limit, kinds=kinds)
        self.print(as_json(resp) if a.json else history_table(resp))
        return 0

    async def meters(self, mb: Client) -> int:
        count = 0
        async for msg in mb.meters(self.args.channels, min_interval=self.args.interval):
            if self.args.json:
                for m in msg.meters:
                    self.print(json.dumps(MessageToDict(m, preserving_proto_field_name=True)))
            else:
                for m in msg.meters:
                    rf = f"{m.rf_best_dbm:.0f} dBm" if m.HasField("rf_best_dbm") else "-"
                    au = f"{m.audio_peak_dbfs:.0f} dBFS" if m.HasField("audio_peak_dbfs") else "-"
                    self.print(f"{m.channel:<16} RF {rf:>9}  audio {au:>9}{'  CLIP' if m.clip else ''}")
            count += 1
            if self.args.count and count >= self.args.count:
                return 0
        return 0

    # ------------------------------------------------------------------ watch

    async def watch(self, mb: Client) -> int:
        a = self.args
        state = WatchState()
        live = self.out.isatty() and not a.json
        meters_task: asyncio.Task[None] | None = None
        if not a.no_meters and not a.json:
            meters_task = asyncio.create_task(self._meters_into(mb, state))
        deadline = time.monotonic() + a.seconds if a.seconds else None
        batches = 0
        last_draw = 0.0
        try:
            async with contextlib.AsyncExitStack() as stack:
                if deadline is not None:
                    await stack.enter_async_context(asyncio.timeout(max(0.0, deadline - time.monotonic())))
                async for msg in mb.watch(device_ids=a.device or [], include_context=True):
                    changed = state.apply(msg)
                    if a.json:
                        self.print(json.dumps(MessageToDict(msg, preserving_proto_field_name=True)))
                    elif live:
                        if msg.fragment or time.monotonic() - last_draw < REDRAW_EVERY_S:
                            continue
                        self.out.write("\x1b[H\x1b[2J")
                        self.print(f"micboardd · revision {state.revision} · {time.strftime('%H:%M:%S')}"
                                   "   (Ctrl-C to quit)")
                        self.print(state.render())
                        last_draw = time.monotonic()
                    elif msg.HasField("snapshot"):
                        if not msg.fragment:
                            self.print(state.render())
                    else:
                        for key in changed:
                            row = state.row(key)
                            if row is not None:
                                self.print(f"[{state.revision}] " + "  ".join(c for c in row if c))
                    if msg.HasField("changes") and not msg.fragment:
                        batches += 1
                        if a.updates and batches >= a.updates:
                            return 0
        except TimeoutError:
            return 0
        finally:
            if meters_task is not None:
                meters_task.cancel()
                with contextlib.suppress(asyncio.CancelledError, MicboardError):
                    await meters_task
        return 0

    async def _meters_into(self, mb: Client, state: WatchState) -> None:
        async for msg in mb.meters(min_interval=1.0):
            for m in msg.meters:
                state.meters[m.channel] = m

    # ------------------------------------------------------------------ actions

    def report(self, resp: pb.ActionResponse) -> int:
        self.print(as_json(resp) if self.args.json else action_table(resp))
        return 0 if resp.failed == 0 else 1

    async def identify(self, mb: Client) -> int:
        return self.report(await mb.identify(self.args.targets, dry_run=self.args.dry_run))

    async def rename(self, mb: Client) -> int:
        return self.report(await mb.rename({self.args.target: self.args.name}, dry_run=self.args.dry_run))

    async def meter(self, mb: Client) -> int:
        return self.report(await mb.meter_rate(self.args.targets, self.args.rate, dry_run=self.args.dry_run))

    async def assign(self, mb: Client) -> int:
        a = self.args
        channel = None if a.clear else a.channel
        if not a.clear and not channel:
            self.print("assign: give a channel (<device_id>/<n>) or --clear")
            return 2
        slot = await mb.assign(a.slot, channel, performer=a.performer, group=a.group)
        self.print(as_json(slot) if a.json else slots_table([slot]))
        return 0

    async def mute(self, mb: Client) -> int:
        a = self.args
        muted = a.command == "mute"
        verb = "Mute" if muted else "Unmute"
        if not a.dry_run and not a.yes:
            plan = await mb.mute(a.targets, muted, dry_run=True)
            self.print(action_table(plan))
            if not sys.stdin.isatty():
                self.print(f"{verb} is audible: not asking on a non-interactive terminal; repeat with --yes")
                return 1
            question = f"{verb} {len(a.targets)} target(s) now? This is audible. [y/N] "
            answer = (await asyncio.to_thread(input, question)).strip().lower()
            if answer not in ("y", "yes"):
                self.print("nothing changed")
                return 1
        return self.report(await mb.mute(a.targets, muted, confirm=True, dry_run=a.dry_run))

    async def show_lock(self, mb: Client) -> int:
        if self.args.state is None:
            st = await mb.status()
            self.print("show lock is " + ("ON" if st.show_lock else "off"))
            return 0
        resp = await mb.set_show_lock(self.args.state == "on")
        self.print(f"show lock {'ON' if resp.on else 'off'}" + ("" if resp.changed else " (unchanged)"))
        return 0

    async def ack(self, mb: Client) -> int:
        alert = await mb.ack(self.args.alert_id)
        self.print(as_json(alert) if self.args.json else f"acknowledged {alert.alert_id}: {alert.message}")
        return 0


class WatchState:
    """The client-side board a Watch stream maintains: resources by key, plus meters on the side."""

    def __init__(self) -> None:
        self.revision = 0
        self.channels: dict[str, rpb.Channel] = {}
        self.devices: dict[str, rpb.Device] = {}
        self.slots: dict[str, rpb.Slot] = {}
        self.alerts: dict[str, rpb.Alert] = {}
        self.meters: dict[str, rpb.Meters] = {}
        self._pending_snapshot: list[pb.Event] | None = None

    def apply(self, msg: pb.WatchResponse) -> list[str]:
        """Apply one message; return the channel keys whose row may have changed."""
        self.revision = msg.revision
        if msg.HasField("snapshot"):
            if self._pending_snapshot is None:
                for held in (self.channels, self.devices, self.slots, self.alerts):
                    held.clear()
                self._pending_snapshot = []
            events = list(msg.snapshot.events)
            if not msg.fragment:
                self._pending_snapshot = None
        elif msg.HasField("changes"):
            events = list(msg.changes.events)
        else:
            return []
        touched: list[str] = []
        for ev in events:
            tables: dict[int, dict[str, Any]] = {
                pb.RESOURCE_KIND_CHANNEL: self.channels, pb.RESOURCE_KIND_DEVICE: self.devices,
                pb.RESOURCE_KIND_SLOT: self.slots, pb.RESOURCE_KIND_ALERT: self.alerts,
            }
            table_ = tables[ev.kind]
            if ev.type == pb.EVENT_TYPE_DELETE:
                table_.pop(ev.key, None)
            else:
                table_[ev.key] = getattr(ev, ev.WhichOneof("resource") or "channel")
            if ev.kind == pb.RESOURCE_KIND_CHANNEL:
                touched.append(ev.key)
            elif ev.kind == pb.RESOURCE_KIND_DEVICE:
                touched += [k for k, c in self.channels.items() if c.device_id == ev.key]
            elif ev.kind == pb.RESOURCE_KIND_SLOT:
                slot = self.slots.get(ev.key)
                if slot is not None and slot.HasField("channel"):
                    touched.append(slot.channel)
        return touched

    def _patched(self, ch: rpb.Channel) -> rpb.Channel:
        out = rpb.Channel()
        out.CopyFrom(ch)
        dev = self.devices.get(ch.device_id)
        if dev is not None:
            out.context.device_online = dev.online
        slots = sorted((s for s in self.slots.values() if s.HasField("channel") and s.channel == ch.key),
                       key=lambda s: s.slot)
        out.context.ClearField("slot")
        out.context.ClearField("performer")
        if slots:
            out.context.slot = slots[0].slot
            if slots[0].HasField("performer"):
                out.context.performer = slots[0].performer
        del out.context.alert_ids[:]
        out.context.alert_ids.extend(
            a.alert_id for a in self.alerts.values()
            if a.subject in (ch.key, ch.device_id) and a.state != rpb.ALERT_STATE_CLEARED
        )
        return out

    def row(self, key: str) -> list[str] | None:
        ch = self.channels.get(key)
        return None if ch is None else channel_row(self._patched(ch), self.meters.get(key))

    def render(self) -> str:
        keys = sorted(self.channels, key=lambda k: (self.channels[k].device_id, self.channels[k].index))
        return table(CHANNEL_HEADER, [r for k in keys if (r := self.row(k)) is not None])


# ----------------------------------------------------------------------------- argument parsing


def _online(value: str) -> bool:
    return value.lower() in ("yes", "true", "1", "online", "on")


def _when(value: str) -> float:
    try:
        return parse_when(value).timestamp()
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="micboardctl", description="Look at and control micboardd.")
    p.add_argument("--version", action="version", version=f"micboardctl {__version__}")
    conn = p.add_argument_group("connection")
    conn.add_argument("--socket", help=f"the daemon's Unix socket (default {DEFAULT_SOCKET}, or $MICBOARD_SOCKET)")
    conn.add_argument("--target", dest="grpc_target", help="host:port of the TLS listener (or $MICBOARD_TARGET)")
    conn.add_argument("--token", help="bearer token (or $MICBOARD_TOKEN); prefer --token-file")
    conn.add_argument("--token-file", help="read the bearer token from this file")
    conn.add_argument("--ca", help="CA certificate (PEM) that signed the daemon's TLS certificate")
    conn.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for an answer (default 10)")
    p.add_argument("--json", action="store_true", help="machine-readable output (read commands and results)")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    sub.add_parser("status", help="version, uptime, subsystems, device connections")
    d = sub.add_parser("devices", help="receivers and their connection state")
    d.add_argument("--manufacturer", action="append", help="shure, sennheiser (repeatable)")
    d.add_argument("--model", action="append", help="e.g. ULXD4Q (repeatable)")
    d.add_argument("--online", type=_online, default=None, metavar="yes|no")

    def channel_filters(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--device", action="append", help="only this device (repeatable)")
        sp.add_argument("--group", action="append", help="only slots of this group (repeatable)")
        sp.add_argument("--online", type=_online, default=None, metavar="yes|no")
        sp.add_argument("--low-battery", action="store_true", help="only low batteries")
        sp.add_argument("--alerting", action="store_true", help="only channels with a live alert")

    c = sub.add_parser("channels", help="the board: slot, performer, battery, RF, audio, TX, online")
    channel_filters(c)
    sub.add_parser("slots", help="board slots and their assignments")
    w = sub.add_parser("watch", help="the board, live")
    w.add_argument("--device", action="append", help="only this device (repeatable)")
    w.add_argument("--no-meters", action="store_true", help="do not stream RF/audio levels")
    w.add_argument("--updates", type=int, default=0, help="stop after this many change batches")
    w.add_argument("--seconds", type=float, default=0, help="stop after this long")
    m = sub.add_parser("meters", help="live RF and audio levels")
    m.add_argument("channels", nargs="*", help="channel keys (default: all)")
    m.add_argument("--interval", type=float, default=1.0, help="seconds between readings per channel")
    m.add_argument("--count", type=int, default=0, help="stop after this many messages")
    al = sub.add_parser("alerts", help="live alerts")
    al.add_argument("--all", action="store_true", help="include recently cleared alerts")
    ack = sub.add_parser("ack", help="acknowledge an alert")
    ack.add_argument("alert_id")
    au = sub.add_parser("audit", help="who changed what")
    au.add_argument("--limit", type=int, default=50)
    au.add_argument("--target", dest="target_filter", help="only entries about this target")
    h = sub.add_parser("history", help="what a channel's transmitter, battery, RF and audio did, oldest first")
    h.add_argument("channel", help="<device_id>/<n> or slot:<n> (the channel the slot points at now)")
    h.add_argument("--since", type=_when, help=f"from: {WHEN_HELP}")
    h.add_argument("--until", type=_when, help="up to (not including); same forms as --since")
    h.add_argument("--limit", type=int, default=500, help="at most this many entries, the newest (default 500, "
                                                          "at most 5000)")
    h.add_argument("--kind", choices=["tx", "meters", "both"], default="both",
                   help="transmitter/battery samples, per-minute RF/audio summaries, or both (default)")

    i = sub.add_parser("identify", help="flash front panels (devices, channels or slot:<n>)")
    i.add_argument("targets", nargs="+")
    i.add_argument("--dry-run", action="store_true")
    r = sub.add_parser("rename", help="rename a channel or device on the device itself")
    r.add_argument("target", help="<device_id>/<n>, slot:<n> or <device_id>")
    r.add_argument("name")
    r.add_argument("--dry-run", action="store_true", help="show the planned change; send nothing")
    a = sub.add_parser("assign", help="point a board slot at a channel and name the performer")
    a.add_argument("slot", type=int)
    a.add_argument("channel", nargs="?", help="<device_id>/<n>")
    a.add_argument("--performer", help='performer name ("" clears it)')
    a.add_argument("--group", help='slot group ("" clears it)')
    a.add_argument("--clear", action="store_true", help="unassign the slot's channel")
    mt = sub.add_parser("meter", help="set how often receivers send meters")
    mt.add_argument("targets", nargs="+")
    mt.add_argument("--rate", type=int, required=True, help="milliseconds (100..65535), 0 = off")
    mt.add_argument("--dry-run", action="store_true")
    for name in ("mute", "unmute"):
        mu = sub.add_parser(name, help=f"{name} receiver outputs (audible: asks first; admin)")
        mu.add_argument("targets", nargs="+", help="<device_id>/<n> or slot:<n>")
        mu.add_argument("--yes", "-y", action="store_true", help="do not ask")
        mu.add_argument("--dry-run", action="store_true")
    sl = sub.add_parser("show-lock", help="show or set the show lock (refuses dangerous actions while on)")
    sl.add_argument("state", nargs="?", choices=["on", "off"])
    for sp in sub.choices.values():  # also after the command: `micboardctl history rack1/2 --json`
        sp.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="machine-readable output")
    return p


COMMANDS: Final = {
    "status": Ctl.status, "devices": Ctl.devices, "channels": Ctl.channels, "slots": Ctl.slots,
    "watch": Ctl.watch, "meters": Ctl.meters, "alerts": Ctl.alerts, "ack": Ctl.ack, "audit": Ctl.audit,
    "history": Ctl.history, "identify": Ctl.identify, "rename": Ctl.rename, "assign": Ctl.assign, "meter": Ctl.meter,
    "mute": Ctl.mute, "unmute": Ctl.mute, "show-lock": Ctl.show_lock,
}


async def run(argv: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    """Parse ``argv`` and run the command; returns the exit status (used by tests in-process)."""
    args = build_parser().parse_args(argv)
    ctl = Ctl(args, out or sys.stdout)
    try:
        async with ctl.client() as mb:
            return await COMMANDS[args.command](ctl, mb)
    except MicboardError as exc:
        print(f"micboardctl: {exc}", file=sys.stderr)
        return 3
    except OSError as exc:
        print(f"micboardctl: {exc}", file=sys.stderr)
        return 3


def main(argv: Sequence[str] | None = None) -> int:
    try:
        return asyncio.run(run(argv))
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
