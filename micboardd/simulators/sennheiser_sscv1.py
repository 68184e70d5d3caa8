"""A Sennheiser SSCv1 receiver on a real UDP socket: EW-DX, SpeechLine DW, EW-D or Digital 6000 address trees.

Written from reference/sennheiser-and-others.md §2 on its own (never through micboardd's adapters).
What it speaks: one JSON object per datagram; ``null`` leaves are reads, values are writes echoed with the
applied value; ``osc.xid`` echoed; inline ``osc.error`` lists (404 unknown address, 406 read-only or not
acceptable, 400 bad JSON, 424 on ``mates/txN/*`` without a linked EW-DX/EW-D transmitter);
``/osc/state/subscribe`` arrays with ``"#"`` options (``lifetime`` default 10 s, ``count``, ``min``/``max``
periodic rate, ``cancel``), an acknowledgement echoing the request followed by an initial notification, change
notifications, and ``310`` when a subscription runs out. Answers go to the sender's address and port (EW-DX
answers any source port). Constructed choices where the reference is silent are marked CONSTRUCTED.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Final

from ._udp import LIVELY_EVERY_S, UdpDeviceSim

log = logging.getLogger(__name__)

Path = tuple[str, ...]

DEFAULT_LIFETIME_S: Final = 10.0  # SSC default (D6000-SSC p.14)
DEFAULT_COUNT: Final = 1000

VARIANTS: Final = ("ewdx", "speechline", "ewd", "d6000")
PRODUCTS: Final = {"ewdx": "EWDX{n}CH", "speechline": "SLRXDW", "ewd": "EWD-EM-D1", "d6000": "EM6000"}
NAMES: Final = ("LEAD", "BV 1", "BV 2", "PASTOR", "KEYS", "GTR", "HOST", "SAX", "DRUMS", "VOX 1", "MC", "CHOIR")


class _Err(Exception):
    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


@dataclass(slots=True)
class _Channel:
    name: str
    freq_khz: int
    mute: bool = False
    gain_db: int = 0
    identify: bool = False
    linked: bool = True
    tx_type: str = "SKM"
    tx_name: str = "SKM"
    tx_mute: bool = False
    gauge: int = 100  # percent
    lifetime_min: float = 480.0
    rechargeable: bool = True
    health: int = 98
    cycles: int = 12
    rssi: float = -52.0
    rsqi: int = 92
    divi: int = 1
    af: float = -24.0


@dataclass(frozen=True, slots=True)
class SimChannel:
    """A channel as the simulator knows it, in micboardd's normalized units (for assertions and the demo)."""

    index: int
    name: str
    frequency_khz: int | None
    muted: bool
    gain_db: int
    tx_present: bool
    tx_model: str | None
    tx_name: str | None
    tx_muted: bool | None
    battery_percent: int | None
    runtime_minutes: int | None
    rssi_dbm: float | None
    link_quality: int | None
    af_dbfs: float | None
    active_antenna: str | None


@dataclass(slots=True)
class SimRequest:
    """One datagram the simulator received: when, from whom, and what (decoded JSON, or the raw bytes)."""

    at: float
    peer: tuple[str, int]
    message: Any
    answered: bool = True

    @property
    def is_subscribe(self) -> bool:
        osc = self.message.get("osc") if isinstance(self.message, dict) else None
        return isinstance(osc, dict) and isinstance(osc.get("state"), dict) and "subscribe" in osc["state"]


@dataclass(slots=True)
class _Subscription:
    peer: tuple[str, int]
    paths: frozenset[Path]
    lifetime_s: float
    count: int
    period_s: float  # 0: on change only
    expires: float
    next_due: float
    sent: int = 0


def _leaves(tree: Any, prefix: Path = ()) -> Iterator[tuple[Path, Any]]:
    if isinstance(tree, dict) and tree:
        for key, value in tree.items():
            yield from _leaves(value, (*prefix, str(key)))
    elif prefix:
        yield prefix, tree


def _nest(items: list[tuple[Path, Any]]) -> dict[str, Any]:
    root: dict[str, Any] = {}
    for path, value in items:
        node = root
        for part in path[:-1]:
            node = node.setdefault(part, {})
        node[path[-1]] = value
    return root


class SSCv1Sim(UdpDeviceSim):
    """An SSCv1 device on ``host:port`` (port 0 picks one; a restart keeps it)."""

    log = log
    LABEL = "sscv1 sim"
    GARBAGE = (
        b'{"rx1":{"name":"VOX',  # truncated JSON
        b"\xff\xfe\x00garbage\x81",  # not UTF-8
        b"[1,2,3]",  # JSON, but not an object
        b'{"m":' * 40 + b"1" + b"}" * 40,  # nesting deeper than any SSC address
    )

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        variant: str = "ewdx",
        channels: int = 2,
        seed: int = 0,
        lively: bool = False,
    ) -> None:
        if variant not in VARIANTS:
            raise ValueError(f"variant must be one of {VARIANTS}")
        super().__init__(host, port, seed=seed, lively=lively)
        self.variant = variant
        self.bundle_ack = False  # CONSTRUCTED: False sends the ack, then the initial notification separately
        self.locked = False  # a locked device refuses every write with 423
        self.received: list[SimRequest] = []
        rng = self._rng
        self.device_name = f"{variant.upper()}-{seed}"[:18]
        self.serial = f"{1_000_000_000 + seed * 7919 % 99_999_999}"
        self.version = {"ewdx": "3.1.2", "speechline": "1.7.0", "ewd": "2.3.1", "d6000": "3.2.0"}[variant]
        base = 470_200 + rng.randrange(0, 4000) * 25
        self._ch: dict[int, _Channel] = {}
        for n in range(1, channels + 1):
            gauge = rng.randrange(40, 101)
            self._ch[n] = _Channel(
                name=NAMES[(seed + n - 1) % len(NAMES)],
                freq_khz=base + (n - 1) * 1_225,
                gain_db=3 * rng.randrange(0, 8),
                tx_type=rng.choice(("SKM", "SK")),
                tx_name=f"TX{n}",
                gauge=gauge,
                lifetime_min=float(gauge * 5),
                rechargeable=rng.random() < 0.7,
                rssi=round(rng.uniform(-65, -40), 1),
                rsqi=rng.randrange(80, 101),
                divi=rng.choice((1, 2)),
                af=round(rng.uniform(-40, -18), 1),
            )
        self._subs: dict[tuple[tuple[str, int], frozenset[Path]], _Subscription] = {}
        self._table = self._build_table()

    # ================================================================= lifecycle

    def describe(self) -> str:
        return self.variant

    async def stop(self) -> None:
        """Close the socket and forget subscriptions, as a power cycle would."""
        await super().stop()
        self._subs.clear()

    # ================================================================= controls

    def channel(self, n: int) -> SimChannel:
        c = self._ch[n]
        return SimChannel(
            index=n,
            name=c.name,
            frequency_khz=c.freq_khz if self.variant != "speechline" else None,
            muted=c.mute,
            gain_db=c.gain_db,
            tx_present=c.linked,
            tx_model=c.tx_type if c.linked else None,
            tx_name=c.tx_name if c.linked else None,
            tx_muted=c.tx_mute if c.linked else None,
            battery_percent=c.gauge if c.linked else None,
            runtime_minutes=int(c.lifetime_min) if c.linked else None,
            rssi_dbm=c.rssi if c.linked else None,
            link_quality=c.rsqi if c.linked else 0,
            af_dbfs=c.af if c.linked else None,
            active_antenna={1: "A", 2: "B"}.get(c.divi) if c.linked else None,
        )

    def tx_link(self, n: int) -> None:
        c = self._ch[n]
        c.linked = True
        c.rsqi = max(c.rsqi, 80)
        c.divi = c.divi or 1
        c.rssi = -50.0
        self._changed(n)

    def tx_unlink(self, n: int) -> None:
        c = self._ch[n]
        c.linked = False
        c.rsqi, c.divi, c.rssi, c.af = 0, 0, -107.0, -138.5
        self._changed(n)

    def set_battery(self, n: int, percent: int, runtime_minutes: float | None = None) -> None:
        c = self._ch[n]
        c.gauge = max(0, min(100, percent))
        c.lifetime_min = float(runtime_minutes if runtime_minutes is not None else c.gauge * 5)
        self._changed(n)

    def rename(self, n: int, name: str) -> None:
        """A name change made on the device's front panel."""
        self._ch[n].name = name[:8]
        self._changed(n)

    def set_meters(
        self, n: int, *, rssi: float | None = None, rsqi: int | None = None, af: float | None = None
    ) -> None:
        c = self._ch[n]
        c.rssi = c.rssi if rssi is None else rssi
        c.rsqi = c.rsqi if rsqi is None else rsqi
        c.af = c.af if af is None else af
        self._changed(n, meters_only=True)

    def subscribe_requests(self) -> list[SimRequest]:
        return [r for r in self.received if r.is_subscribe]

    def subscriptions(self) -> list[tuple[tuple[str, int], int, float]]:
        """Live subscriptions as (peer, number of addresses, period s)."""
        return [(s.peer, len(s.paths), s.period_s) for s in self._subs.values()]

    def inject(self, data: bytes, peer: tuple[str, int] | None = None) -> None:
        """Send raw bytes to ``peer`` (default: the last client heard from)."""
        target = peer or (self.received[-1].peer if self.received else None)
        if target is not None and self._transport is not None:
            self._transport.sendto(data, target)

    # ================================================================= address space

    def _build_table(self) -> dict[Path, tuple[Callable[[], Any], Callable[[Any], Any] | None]]:
        """Every address this variant has: path → (getter, setter or None for read-only)."""
        t: dict[Path, tuple[Callable[[], Any], Callable[[Any], Any] | None]] = {}
        v = self.variant
        nch = len(self._ch)
        t[("device", "identity", "product")] = (lambda: PRODUCTS[v].format(n=nch), None)
        t[("device", "identity", "serial")] = (lambda: self.serial, None)
        t[("device", "identity", "version")] = (lambda: self.version, None)
        t[("device", "identity", "vendor")] = (lambda: "Sennheiser", None)
        t[("device", "name")] = (lambda: self.device_name, self._set_device_name)
        t[("device", "location")] = (lambda: "", None)
        t[("osc", "version")] = (lambda: "1.0", None)
        t[("osc", "ping")] = (lambda: True, None)
        for n, c in self._ch.items():
            self._channel_table(t, n, c)
        if v == "d6000":
            t[("mm",)] = (self._mm, None)
        return t

    def _channel_table(
        self, t: dict[Path, tuple[Callable[[], Any], Callable[[Any], Any] | None]], n: int, c: _Channel
    ) -> None:
        v = self.variant
        rx = f"rx{n}"
        tx = ("mates", f"tx{n}")

        def need_tx(get: Callable[[], Any]) -> Callable[[], Any]:
            def wrapped() -> Any:
                if not c.linked:
                    if v in ("ewdx", "ewd"):
                        raise _Err(424)  # EW-DX: no transmitter / no valid data
                    return None  # CONSTRUCTED for SpeechLine: no value; absence shows as "No Link"
                return get()

            return wrapped

        def set_name(value: Any) -> Any:
            if not isinstance(value, str):
                raise _Err(406)
            c.name = (value.upper() if v == "ewdx" else value)[:8]  # applied value is echoed
            return c.name

        def set_mute(value: Any) -> Any:
            if not isinstance(value, bool):
                raise _Err(406)
            c.mute = value
            return value

        def set_freq(value: Any) -> Any:
            if not isinstance(value, int) or isinstance(value, bool) or value % 25 or not 470_000 <= value <= 1_999_000:
                raise _Err(406)
            c.freq_khz = value
            return value

        def set_gain(value: Any) -> Any:
            if not isinstance(value, int) or isinstance(value, bool) or value % 3 or not -3 <= value <= 42:
                raise _Err(406)
            c.gain_db = value
            return value

        def set_identify(value: Any) -> Any:
            if not isinstance(value, bool):
                raise _Err(406)
            c.identify = value
            return value

        def rx_warnings() -> list[str]:
            if not c.linked:
                return ["No Link"] if v in ("speechline", "ewd") else ["NoLink"]
            out = []
            if c.rsqi < 30:
                out.append("LowSignal")
            if c.af > -3:
                out.append("AfPeak" if v != "d6000" else "AFPeak")
            return out

        def tx_warnings() -> list[str]:
            low = c.gauge <= 10
            return (["Low Bat"] if v == "speechline" else ["LowBattery"]) if low else []

        t[(rx, "name")] = (lambda: c.name, set_name)
        if v == "d6000":
            t[(rx, "carrier")] = (lambda: c.freq_khz, set_freq)
            t[(rx, "audio_mute")] = (lambda: c.mute, set_mute)
            t[(rx, "active_warnings")] = (rx_warnings, None)
            t[(rx, "skx", "type")] = (lambda: "SKM 6000" if c.linked else "", None)
            t[(rx, "skx", "name")] = (lambda: c.tx_name if c.linked else "", None)
            t[(rx, "skx", "battery")] = (lambda: [c.gauge, int(c.lifetime_min)] if c.linked else [], None)
            return
        t[(rx, "mute")] = (lambda: c.mute, set_mute)
        t[(rx, "warnings")] = (rx_warnings, None)
        if v != "speechline":
            t[(rx, "frequency")] = (lambda: c.freq_khz, set_freq)
        m = ("m", rx)
        t[(*m, "rssi")] = (lambda: c.rssi if c.linked else -107.0, None)
        t[(*m, "rsqi")] = (lambda: c.rsqi if c.linked else 0, None)
        t[(*m, "divi")] = (lambda: c.divi if c.linked else 0, None)
        t[(*m, "af")] = (lambda: c.af if c.linked else -138.5, None)
        if v == "ewdx":
            t[(rx, "gain")] = (lambda: c.gain_db, set_gain)
            t[(rx, "identification", "visual")] = (lambda: c.identify, set_identify)
            t[(*tx, "battery", "gauge")] = (need_tx(lambda: c.gauge), None)
            t[(*tx, "battery", "lifetime")] = (need_tx(lambda: int(c.lifetime_min)), None)
            t[(*tx, "battery", "type")] = (need_tx(lambda: "Battery" if c.rechargeable else "Primary Cell"), None)
            t[(*tx, "type")] = (need_tx(lambda: c.tx_type), None)
            t[(*tx, "name")] = (need_tx(lambda: c.tx_name), None)
            t[(*tx, "mute")] = (need_tx(lambda: c.tx_mute), None)
            t[(*tx, "warnings")] = (need_tx(tx_warnings), None)
        elif v == "speechline":
            t[(*tx, "bat_gauge")] = (need_tx(lambda: c.gauge), None)
            t[(*tx, "bat_lifetime")] = (need_tx(lambda: int(c.lifetime_min * 60)), None)  # seconds
            t[(*tx, "bat_bars")] = (need_tx(lambda: math.ceil(c.gauge / 20)), None)
            t[(*tx, "bat_health")] = (need_tx(lambda: c.health), None)
            t[(*tx, "bat_cycles")] = (need_tx(lambda: c.cycles), None)
            t[(*tx, "bat_charging")] = (need_tx(lambda: False), None)
            t[(*tx, "warnings")] = (need_tx(tx_warnings), None)
        elif v == "ewd":
            # bat_state answers with either a gauge (%) or a lifetime (s): CONSTRUCTED nesting and choice
            t[(*tx, "bat_state")] = (
                need_tx(
                    lambda: {"bat_lifetime": int(c.lifetime_min * 60)} if c.rechargeable else {"bat_gauge": c.gauge}
                ),
                None,
            )
            t[(*tx, "bat_type")] = (need_tx(lambda: 1 if c.rechargeable else 0), None)
            t[(*tx, "device_type")] = (need_tx(lambda: 0 if c.tx_type == "SKM" else 1), None)

    def _set_device_name(self, value: Any) -> Any:
        if not isinstance(value, str) or not value:
            raise _Err(406)
        self.device_name = value[:18]
        return self.device_name

    def _mm(self) -> list[list[int]]:
        rows = []
        for c in self._ch.values():
            rf = round(c.rssi * 2 + 255) if c.linked else 41
            rf2 = max(0, rf - 8)
            af = round((c.af + 128) * 2 - 1) if c.linked else 0
            lqi = round(c.rsqi * 255 / 100) if c.linked else 0
            rows.append([rf, rf, rf2, rf2, int(c.divi == 1), int(c.divi == 2), lqi, af, min(255, af + 6)])
        return rows

    def _read(self, path: Path) -> Any:
        entry = self._table.get(path)
        if entry is None:
            prefix = [p for p in self._table if p[: len(path)] == path]
            if not prefix:
                raise _Err(404)
            return _nest([(p[len(path) :], self._read(p)) for p in prefix])  # null on a container: its subtree
        return entry[0]()

    # ================================================================= protocol

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        peer = (str(addr[0]), int(addr[1]))
        try:
            msg = json.loads(data.rstrip(b"\r\n\x00").decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            self.received.append(SimRequest(time.monotonic(), peer, data, self.fault != "silent"))
            self._reply(peer, {"osc": {"error": [400]}})  # SLDW-SSC p.106: the whole message is not understood
            return
        self.received.append(SimRequest(time.monotonic(), peer, msg, self.fault != "silent"))
        if not isinstance(msg, dict):
            self._reply(peer, {"osc": {"error": [400]}})
            return
        values: list[tuple[Path, Any]] = []
        errors: list[tuple[Path, int]] = []
        osc_out: dict[str, Any] = {}
        after: list[dict[str, Any]] = []
        changed: set[Path] = set()
        for path, value in _leaves({k: v for k, v in msg.items() if k != "osc"}):
            self._one(path, value, values, errors, changed)
        osc = msg.get("osc")
        if isinstance(osc, dict):
            for key, value in osc.items():
                if key == "xid":
                    osc_out["xid"] = value
                elif key == "state" and isinstance(value, dict) and "subscribe" in value:
                    ack, notes = self._subscribe(peer, value["subscribe"], errors)
                    osc_out["state"] = {"subscribe": ack}
                    after.extend(notes)
                else:
                    for path, leaf in _leaves({key: value}, ("osc",)):
                        self._one(path, leaf, values, errors, changed)
        elements: list[Any] = [_nest([(p, [code])]) if p else code for p, code in errors]
        if self.bundle_ack:  # the ack carries the initial values itself (allowed by SLDW-SSC p.16)
            for note in after:
                values.extend(_leaves({k: v for k, v in note.items() if k != "osc"}))
                elements.extend(note.get("osc", {}).get("error", []))
            after = []
        reply = _nest(values)
        if elements:
            osc_out["error"] = elements
        if osc_out:
            reply["osc"] = {**reply.get("osc", {}), **osc_out}
        self._reply(peer, reply)
        for note in after:
            self._reply(peer, note)
        if changed:
            self._notify(changed, exclude=peer)

    def _one(
        self, path: Path, value: Any, values: list[tuple[Path, Any]], errors: list[tuple[Path, int]], changed: set[Path]
    ) -> None:
        try:
            if value is None:
                values.append((path, self._read(path)))
                return
            entry = self._table.get(path)
            if entry is None:
                raise _Err(404)
            if self.locked:
                raise _Err(423)
            if entry[1] is None:
                raise _Err(406)  # read-only (SLDW-SSC p.88 uses 406 for write protection)
            applied = entry[1](value)
            values.append((path, applied))
            changed.add(path)
        except _Err as exc:
            errors.append((path, exc.code))

    def _subscribe(
        self, peer: tuple[str, int], request: Any, errors: list[tuple[Path, int]]
    ) -> tuple[list[Any], list[dict[str, Any]]]:
        ack: list[Any] = []
        notes: list[dict[str, Any]] = []
        now = time.monotonic()
        for element in request if isinstance(request, list) else [request]:
            if not isinstance(element, dict):
                ack.append(400)
                continue
            raw_opts = element.get("#")
            opts: dict[str, Any] = raw_opts if isinstance(raw_opts, dict) else {}
            tree = {k: v for k, v in element.items() if k != "#"}
            paths = []
            for path, _value in _leaves(tree):
                if path in self._table:
                    paths.append(path)
                else:
                    errors.append((path, 404))
            key = (peer, frozenset(paths))
            ack.append({"#": opts, **_nest([(p, None) for p in paths])})
            if opts.get("cancel") is True:
                self._subs.pop(key, None)
                continue
            if not paths:
                continue
            lifetime = _number(opts.get("lifetime"), DEFAULT_LIFETIME_S)
            count = int(_number(opts.get("count"), DEFAULT_COUNT))
            period = _number(opts.get("max"), 0.0) / 1000
            sub = self._subs.get(key)
            if sub is None:
                sub = self._subs[key] = _Subscription(peer, key[1], lifetime, count, period, 0.0, now + period)
            sub.lifetime_s, sub.count, sub.period_s = lifetime, count, period  # renewal: identical request
            sub.expires = now + lifetime
            sub.sent = 0
            notes.append(self._values_message(sub.paths))
        return ack, notes

    def _values_message(self, paths: frozenset[Path] | set[Path]) -> dict[str, Any]:
        values: list[tuple[Path, Any]] = []
        errors: list[tuple[Path, int]] = []
        for path in sorted(paths):
            try:
                values.append((path, self._read(path)))
            except _Err as exc:
                errors.append((path, exc.code))
        msg = _nest(values)
        if errors:
            msg.setdefault("osc", {})["error"] = [_nest([(p, [code])]) for p, code in errors]
        return msg


    def _changed(self, n: int, *, meters_only: bool = False) -> None:
        prefixes = [("m", f"rx{n}")] if meters_only else [(f"rx{n}",), ("mates", f"tx{n}"), ("m", f"rx{n}")]
        paths = {p for p in self._table if any(p[: len(x)] == x for x in prefixes)}
        if self.variant == "d6000":
            paths.add(("mm",))
        self._notify(paths)

    def _notify(self, changed: set[Path], exclude: tuple[str, int] | None = None) -> None:
        """On-change notifications; periodic subscriptions pick the change up at their next period."""
        for sub in list(self._subs.values()):
            if sub.period_s or sub.peer == exclude:
                continue
            hit = sub.paths & changed
            if hit:
                self._send_note(sub, hit)

    def _send_note(self, sub: _Subscription, paths: frozenset[Path] | set[Path]) -> None:
        sub.sent += 1
        self._reply(sub.peer, self._values_message(paths))

    def _due(self, now: float) -> None:
        for key, sub in list(self._subs.items()):
            if now >= sub.expires or sub.sent >= sub.count:
                del self._subs[key]
                self._reply(sub.peer, {"osc": {"error": [{"osc": {"state": {"subscribe": [310]}}}]}})
                continue
            if sub.period_s and now >= sub.next_due:
                sub.next_due = max(sub.next_due + sub.period_s, now)
                self._send_note(sub, sub.paths)

    def _live_step(self) -> None:
        rng = self._rng
        for n, c in self._ch.items():
            if not c.linked:
                continue
            c.rssi = round(min(-30.0, max(-95.0, c.rssi + rng.uniform(-2, 2))), 1)
            c.rsqi = min(100, max(40, c.rsqi + rng.randrange(-3, 4)))
            c.af = round(min(-1.0, max(-60.0, c.af + rng.uniform(-4, 4))), 1)
            if rng.random() < 0.05:
                c.divi = 3 - c.divi
            c.lifetime_min = max(0.0, c.lifetime_min - LIVELY_EVERY_S / 60)
            gauge = min(c.gauge, math.ceil(c.lifetime_min / 5))
            if gauge != c.gauge:
                c.gauge = gauge
                self._changed(n)
            else:
                self._changed(n, meters_only=True)

    # ================================================================= sending (with fault modes)

    def _reply(self, peer: tuple[str, int], message: dict[str, Any]) -> None:
        if self.fault == "silent" or self._transport is None:
            return
        self._send(json.dumps(message, separators=(",", ":")).encode("utf-8"), peer)


def _number(value: Any, default: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        return default
    return float(value)


async def main(argv: list[str] | None = None) -> None:
    """``python -m micboardd.simulators.sennheiser_sscv1 [host] [port] [variant]``: a lively device until ^C."""
    args = sys.argv[1:] if argv is None else argv
    host = args[0] if args else "127.0.0.1"
    port = int(args[1]) if len(args) > 1 else 45
    variant = args[2] if len(args) > 2 else "ewdx"
    sim = SSCv1Sim(host, port, variant=variant, lively=True)
    await sim.start()
    print(f"SSCv1 {variant} simulator on {host}:{sim.port}")
    try:
        await asyncio.Event().wait()
    finally:
        await sim.stop()


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main())
