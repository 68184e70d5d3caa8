"""The SSCv1 adapter: one session per device over the shared UDP endpoint (read, subscribe, renew, commands)."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from ....commands import (
    ECHO_TIMEOUT_S,
    Command,
    CommandError,
    CommandErrorReason,
    CommandResult,
    Identify,
    RenameChannel,
    RenameDevice,
    SetFrequency,
    SetGain,
    SetMeterRate,
    SetMute,
)
from ....config import DeviceConfig
from ....model import TX_ABSENT, Manufacturer, Meters, now
from ...base import Adapter, DeviceError, DeviceLink, RetryableError, TerminalError
from ..udp import EndpointError, MalformedLog, PeerInUseError, SharedUdpEndpoint, resolve_ipv4, shared_endpoint
from .codec import (
    ERR_FAILED_DEPENDENCY,
    Path,
    SscDecodeError,
    SscMessage,
    decode,
    encode,
    flatten,
    get_tree,
    subscribe_tree,
    tree_from_leaves,
)
from .convert import ConvCtx
from .interpretation import interpret
from .tables import CONTROL_OF, EWDX, VARIANTS, Control, Group, Lookup, VariantTable, build_lookup

MAX_CHANNELS: Final = 4  # EM4 / SL MCR 4 DW: the most receive channels one SSCv1 device has

REPLY_TIMEOUT_S: Final = 2.0  # EWDX-V1 calls a device offline after 2 s without a reply; a LAN answers in ms
HEARTBEAT_S: Final = 5.0  # EWDX-V1 pings /device/name every 5 s; we also re-read the transmitters then
SILENCE_TIMEOUT_S: Final = 15.0  # three heartbeats unanswered: the device is gone
LIFETIME_S: Final = 10  # the protocol's default subscription lifetime; renewed before it runs out
SETTINGS_COUNT: Final = 1000  # the protocol's default notification budget per subscription

Element = tuple[Mapping[str, Any], list[Path]]  # one subscription array element: ("#" options, addresses)


@dataclass(frozen=True, slots=True)
class SscOptions:
    """``[devices.options]`` of an SSCv1 device, validated."""

    variant: VariantTable = EWDX
    reply_timeout_s: float = REPLY_TIMEOUT_S
    heartbeat_s: float = HEARTBEAT_S
    silence_timeout_s: float = SILENCE_TIMEOUT_S
    lifetime_s: float = LIFETIME_S
    runtime_unit_s: float = 60.0
    local_host: str = "0.0.0.0"

    @classmethod
    def from_config(cls, config: DeviceConfig) -> SscOptions:
        opts = dict(config.options)
        name = opts.pop("variant", "ewdx")
        if name not in VARIANTS:
            raise TerminalError(f"options.variant {name!r} is not one of {', '.join(VARIANTS)}")
        variant = VARIANTS[name]

        def seconds(key: str, default: float) -> float:
            value = opts.pop(key, default)
            if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= 3600:
                raise TerminalError(f"options.{key} must be a number of seconds in (0, 3600], got {value!r}")
            return float(value)

        unit = opts.pop("battery_time_unit", None)
        if unit not in (None, "min", "s"):
            raise TerminalError(f"options.battery_time_unit must be \"min\" or \"s\", got {unit!r}")
        local_host = opts.pop("local_host", "0.0.0.0")
        if not isinstance(local_host, str):
            raise TerminalError("options.local_host must be an IPv4 address string")
        out = cls(
            variant=variant,
            reply_timeout_s=seconds("reply_timeout_s", REPLY_TIMEOUT_S),
            heartbeat_s=seconds("heartbeat_s", HEARTBEAT_S),
            silence_timeout_s=seconds("silence_timeout_s", SILENCE_TIMEOUT_S),
            lifetime_s=seconds("lifetime_s", LIFETIME_S),
            runtime_unit_s=variant.runtime_unit_s if unit is None else (60.0 if unit == "min" else 1.0),
            local_host=local_host,
        )
        if opts:
            raise TerminalError(f"unknown options for sscv1: {', '.join(sorted(opts))}")
        return out


@dataclass(slots=True)
class _Pending:
    future: asyncio.Future[SscMessage]
    paths: frozenset[Path]


@dataclass(slots=True)
class _Session:
    """One connected stretch with a device: socket, peer, pending requests, what it turned out to support."""

    endpoint: SharedUdpEndpoint
    peer: tuple[str, int]
    channels: int = 0
    lookup: Lookup = field(default_factory=dict)
    pending: dict[int, _Pending] = field(default_factory=dict)
    unsupported: set[Path] = field(default_factory=set)
    renew_now: asyncio.Event = field(default_factory=asyncio.Event)
    subscribed: bool = False
    last_meter: float = 0.0  # loop time of the last meter value received


class SSCv1Adapter(Adapter):
    """EW-DX (legacy mode), EW-D, SpeechLine DW and Digital 6000 receivers over SSCv1."""

    family = "sscv1"
    manufacturer = Manufacturer.SENNHEISER

    def __init__(self, config: DeviceConfig, link: DeviceLink) -> None:
        super().__init__(config, link)
        self._session: _Session | None = None
        self._xids = itertools.count(1)
        self._malformed = MalformedLog(self.log, "SSCv1 datagram")
        self._meter_rate: dict[int, int] = {}  # per channel, survives reconnects; default config.meter_rate_ms
        self._meters: dict[int, dict[str, Any]] = {}
        self._rx_warnings: dict[int, tuple[str, ...]] = {}
        self._tx_warnings: dict[int, tuple[str, ...]] = {}
        self._opts: SscOptions | None = None

    @property
    def options(self) -> SscOptions:
        if self._opts is None:
            self._opts = SscOptions.from_config(self.config)
        return self._opts

    # ----------------------------------------------------------------- session

    async def run(self) -> None:
        opts = self.options
        peer = await resolve_ipv4(self.config.host, self.config.port)
        try:
            async with shared_endpoint(opts.local_host, self.config.local_port or 0) as endpoint:
                with endpoint.register(peer, self._on_datagram):
                    session = self._session = _Session(endpoint, peer)
                    try:
                        await self._serve(session)
                    except asyncio.CancelledError:
                        self._cancel_subscriptions(session)  # a clean stop leaves the receiver unburdened
                        raise
                    finally:
                        self._session = None
                        for pending in session.pending.values():
                            if not pending.future.done():
                                pending.future.set_exception(RetryableError("session ended"))
        except EndpointError as exc:
            raise RetryableError(exc.strerror or str(exc)) from exc
        except PeerInUseError as exc:
            raise TerminalError(str(exc)) from exc

    async def _serve(self, s: _Session) -> None:
        opts = self.options
        table = opts.variant
        identity = [spec.path for spec in table.group("identity")]
        name_probe = [(f"rx{n}", "name") for n in range(1, MAX_CHANNELS + 1)]  # which channels exist
        try:
            first = await self._request(s, get_tree([*identity, *name_probe]), opts.reply_timeout_s)
        except TimeoutError:
            raise RetryableError(f"no SSCv1 reply within {opts.reply_timeout_s:g} s") from None
        self.link.online()

        s.channels = self._channel_count(first)
        s.lookup = build_lookup(table, s.channels)
        self.link.device(channel_count=s.channels)
        self._apply(first)
        for n in range(1, s.channels + 1):
            self.link.channel(n)  # make every channel exist even before its first value

        try:
            await self._request(s, get_tree(self._paths(s, "settings", "tx")), opts.reply_timeout_s)
        except TimeoutError:
            self.log.info("full read not answered within %g s; relying on subscriptions", opts.reply_timeout_s)
        await self._subscribe(s, wait=True)
        try:
            async with asyncio.TaskGroup() as tg:
                tg.create_task(self._renew_loop(s))
                tg.create_task(self._heartbeat_loop(s))
                tg.create_task(self._watchdog())
        except* (DeviceError, OSError) as group:
            raise group.exceptions[0] from None  # the supervisor classifies the error, not its group

    def _channel_count(self, first: SscMessage) -> int:
        if self.config.channels:
            return self.config.channels
        product = first.values.get(("device", "identity", "product"))
        if isinstance(product, str):
            for marker, count in self.options.variant.channels_from_product:
                if marker in product.upper():
                    return count
        answered = [n for n in range(1, MAX_CHANNELS + 1) if (f"rx{n}", "name") in first.values]
        return max(answered) if answered else self.options.variant.default_channels

    def _paths(self, s: _Session, *groups: Group) -> list[Path]:
        return [p for p, (spec, _n) in s.lookup.items() if spec.group in groups and p not in s.unsupported]

    def _rate(self, n: int) -> int:
        return self._meter_rate.get(n, self.config.meter_rate_ms)

    def _elements(self, s: _Session) -> tuple[list[Element], list[Element]]:
        """The subscription as (on-change elements, periodic meter elements), each (options, addresses)."""
        lifetime = self.options.lifetime_s
        life = int(lifetime) if float(lifetime).is_integer() else lifetime
        settings: list[Element] = []
        on_change = self._paths(s, "settings", "tx")
        if on_change:
            settings.append(({"min": 0, "max": 0, "count": SETTINGS_COUNT, "lifetime": life}, on_change))
        # A device-wide meter address (D6000 /mm) runs at the fastest rate any channel asked for.
        fastest = min((r for r in map(self._rate, range(1, s.channels + 1)) if r), default=0)
        by_rate: dict[int, list[Path]] = {}
        for path in self._paths(s, "meter"):
            spec, n = s.lookup[path]
            rate = fastest if spec.fanout else self._rate(n)
            if rate:
                by_rate.setdefault(rate, []).append(path)
        meters: list[Element] = []
        for rate, paths in sorted(by_rate.items()):
            count = int(lifetime * 1000 / rate) + 100  # never the count that ends it, only the lifetime
            meters.append(({"min": rate, "max": rate, "count": count, "lifetime": life}, paths))
        return settings, meters

    def _subscription(self, s: _Session) -> dict[str, Any]:
        settings, meters = self._elements(s)
        return subscribe_tree(settings + meters)

    async def _subscribe(self, s: _Session, *, wait: bool) -> None:
        request = self._subscription(s)
        if not request["osc"]["state"]["subscribe"]:
            return
        if not wait:
            self._send(s, request)
            return
        try:
            await self._request(s, request, self.options.reply_timeout_s)
            if not s.subscribed:
                s.last_meter = asyncio.get_running_loop().time()  # meters are due from now on
            s.subscribed = True
        except TimeoutError:
            self.log.warning("subscription not acknowledged within %g s; retrying", self.options.reply_timeout_s)
            s.renew_now.set()

    async def _renew_loop(self, s: _Session) -> None:
        lifetime = self.options.lifetime_s
        renew_after = lifetime - min(2.0, lifetime / 3)  # D6000 renews 1 s early; a lost datagram needs slack
        while True:
            try:
                async with asyncio.timeout(renew_after):
                    await s.renew_now.wait()
            except TimeoutError:
                pass
            s.renew_now.clear()
            await self._subscribe(s, wait=True)

    async def _heartbeat_loop(self, s: _Session) -> None:
        """Ask for the name and the transmitters: proves the device is there and catches TX link changes.

        When meters are subscribed but none came for a while although the device answers, it has lost the
        subscription (a quick reboot, a lost datagram): subscribe again now rather than at the next renewal.
        """
        beat = self.options.heartbeat_s
        while True:
            await asyncio.sleep(beat)
            paths = [("device", "name"), *self._paths(s, "tx")]
            self._send(s, get_tree(p for p in paths if p not in s.unsupported))
            _settings, meters = self._elements(s)
            if meters and s.subscribed:
                slowest_s = max(float(opts["max"]) for opts, _paths in meters) / 1000
                if asyncio.get_running_loop().time() - s.last_meter > max(beat, 3 * slowest_s):
                    self.log.debug("meter notifications stopped; subscribing again")
                    s.renew_now.set()

    def _cancel_subscriptions(self, s: _Session) -> None:
        settings, meters = self._elements(s)
        if not (settings or meters) or s.endpoint.transport is None or s.endpoint.transport.is_closing():
            return
        self._send(s, subscribe_tree([({"cancel": True}, paths) for _opts, paths in settings + meters]))

    async def _watchdog(self) -> None:
        limit = self.options.silence_timeout_s
        while True:
            quiet = self.link.seconds_since_rx()
            if quiet >= limit:
                raise RetryableError(f"no datagram for {quiet:.1f} s (silence timeout {limit:g} s)")
            await asyncio.sleep(min(limit - quiet, limit / 4) + 0.01)

    # ----------------------------------------------------------------- wire

    def _next_xid(self) -> int:
        return next(self._xids) % 65_535 + 1

    def _send(self, s: _Session, tree: Mapping[str, Any], xid: int | None = None) -> int:
        xid = xid if xid is not None else self._next_xid()
        data = encode(tree, xid=xid)
        self.log.debug("→ %s", data[:300])
        s.endpoint.sendto(data, s.peer)
        return xid

    async def _request(self, s: _Session, tree: Mapping[str, Any], timeout: float) -> SscMessage:
        xid = self._next_xid()
        future: asyncio.Future[SscMessage] = asyncio.get_running_loop().create_future()
        s.pending[xid] = _Pending(future, frozenset(p for p, _v in flatten(tree) if p[0] != "osc"))
        try:
            self._send(s, tree, xid)
            async with asyncio.timeout(timeout):
                return await future
        finally:
            s.pending.pop(xid, None)

    def _on_datagram(self, data: bytes) -> None:
        self.link.received(len(data))
        try:
            msg = decode(data)
        except SscDecodeError as exc:
            self._malformed(data, str(exc))
            return
        self.log.debug("← %s", data[:300])
        s = self._session
        try:
            self._apply(msg)
        except Exception as exc:  # a value our tables cannot take must not end the session
            self._malformed(data, f"unusable values: {exc!r}")
        if s is None:
            return
        pending = s.pending.get(msg.xid) if isinstance(msg.xid, int) else None
        if pending is None and msg.xid is None:  # tolerate devices that do not echo xid: match by address
            pending = next((p for p in s.pending.values() if p.paths & msg.paths), None)
        if pending is not None and not pending.future.done():
            pending.future.set_result(msg)

    # ----------------------------------------------------------------- state

    def _apply(self, msg: SscMessage) -> None:
        s = self._session
        if s is None or not s.lookup:
            return
        r = interpret(msg, s.lookup, self.options.variant, ConvCtx(self.options.runtime_unit_s), s.channels)
        if r.meters:
            s.last_meter = asyncio.get_running_loop().time()
        if r.terminated:
            self.log.info("device ended a subscription (310); renewing")
            s.renew_now.set()
        for path in r.unsupported:
            if path not in s.unsupported:
                s.unsupported.add(path)
                self.log.info("device has no /%s; no longer asked for it", "/".join(path))
                if s.subscribed:
                    s.renew_now.set()  # re-subscribe without the address the device refused
        for err in r.other_errors:
            self.log.debug("device error %d at /%s", err.code, "/".join(err.path))
        for path, value in r.unusable:
            self.log.debug("unusable value at /%s: %r", "/".join(path), value)

        device = dict(r.device)
        if self.config.name:
            device.pop("name", None)  # the configured name wins over the device's own
        if device:
            self.link.device(**device)
        for n in sorted(set(r.channels) | set(r.tx) | r.absent):
            fields = dict(r.channels.get(n, {}))
            rx_w = fields.pop("rx_warnings", None)
            tx_w = fields.pop("tx_warnings", None)
            if rx_w is not None:
                self._rx_warnings[n] = rx_w
            if tx_w is not None:
                self._tx_warnings[n] = tx_w
            if n in r.absent:
                self._tx_warnings.pop(n, None)
            if rx_w is not None or tx_w is not None or n in r.absent:
                fields["warnings"] = tuple(dict.fromkeys(self._rx_warnings.get(n, ()) + self._tx_warnings.get(n, ())))
            if n in r.absent:
                self.link.channel(n, tx_replace=TX_ABSENT, **fields)
            elif n in r.tx:
                self.link.channel(n, tx={**r.tx[n], "present": True}, **fields)
            elif fields:
                self.link.channel(n, **fields)
        for n, fields in r.meters.items():
            acc = self._meters.setdefault(n, {})
            acc.update(fields)
            self.link.meters(
                Meters(
                    self.config.id,
                    n,
                    rf_dbm=acc.get("rf_dbm", ()),
                    active_antenna=acc.get("active_antenna"),
                    link_quality=acc.get("link_quality"),
                    audio_rms_dbfs=acc.get("audio_rms_dbfs"),
                    audio_peak_dbfs=acc.get("audio_peak_dbfs"),
                    clip="af_peak" in self._rx_warnings.get(n, ()),
                    at=now(),
                )
            )

    # ----------------------------------------------------------------- commands

    def supports(self, command: Command) -> bool:
        if isinstance(command, SetMeterRate):
            return True
        try:
            table = self.options.variant
        except TerminalError:  # a bad options table supports nothing; run() reports it
            return False
        control = CONTROL_OF.get(type(command))
        return control is not None and getattr(table, control) is not None

    async def execute(self, command: Command) -> CommandResult:
        s = self._session
        if s is None:
            raise CommandError(CommandErrorReason.OFFLINE, f"{self.config.id} has no live SSCv1 session")
        if not self.supports(command):
            raise CommandError(
                CommandErrorReason.UNSUPPORTED, f"{self.options.variant.name} has no {type(command).__name__}"
            )
        t = self.options.variant
        if isinstance(command, SetMeterRate):
            return await self._set_meter_rate(s, command)
        if isinstance(command, RenameDevice):
            assert t.rename_device is not None
            name = _checked_name(command.name, t.rename_device)
            return await self._set_verified(s, {t.rename_device.path: name})
        if isinstance(command, Identify):
            assert t.identify is not None
            chans = [command.channel] if command.channel else list(range(1, s.channels + 1))
            for n in chans:
                self._check_channel(s, n)
            return await self._set_verified(s, {t.identify.at(n): True for n in chans})
        self._check_channel(s, command.channel)
        n = command.channel
        if isinstance(command, RenameChannel):
            assert t.rename is not None
            return await self._set_verified(s, {t.rename.at(n): _checked_name(command.name, t.rename)})
        if isinstance(command, SetMute):
            assert t.mute is not None
            return await self._set_verified(s, {t.mute.at(n): command.muted})
        if isinstance(command, SetFrequency):
            assert t.frequency is not None
            khz = _checked_number(command.frequency_khz, t.frequency, "frequency (kHz)")
            return await self._set_verified(s, {t.frequency.at(n): int(khz)})
        if isinstance(command, SetGain):
            assert t.gain is not None
            gain = _checked_number(command.gain_db, t.gain, "gain (dB)")
            return await self._set_verified(s, {t.gain.at(n): int(gain) if float(gain).is_integer() else gain})
        raise CommandError(CommandErrorReason.UNSUPPORTED, type(command).__name__)

    def _check_channel(self, s: _Session, n: int) -> None:
        if not 1 <= n <= s.channels:
            raise CommandError(CommandErrorReason.INVALID, f"channel {n} does not exist (1..{s.channels})")

    async def _set_verified(self, s: _Session, values: Mapping[Path, Any]) -> CommandResult:
        tree = tree_from_leaves(values.items())
        try:
            reply = await self._request(s, tree, ECHO_TIMEOUT_S)
        except TimeoutError:
            raise CommandError(CommandErrorReason.TIMEOUT, f"no echo within {ECHO_TIMEOUT_S:g} s") from None
        except (RetryableError, OSError) as exc:  # the session ended or its socket closed under the command
            raise CommandError(CommandErrorReason.OFFLINE, str(exc)) from None
        errors = [e for e in reply.errors if e.path in values or not e.path]
        if errors:
            detail = ", ".join(f"/{'/'.join(e.path)} error {e.code}" for e in errors)
            raise CommandError(CommandErrorReason.REJECTED, detail)
        echoed: dict[Path, Any] = {}
        for path, wanted in values.items():
            if path not in reply.values:
                raise CommandError(CommandErrorReason.MISMATCH, f"/{'/'.join(path)} not echoed")
            got = reply.values[path]
            if got != wanted and not (isinstance(wanted, bool) and got in (0, 1) and bool(got) is wanted):
                raise CommandError(CommandErrorReason.MISMATCH, f"/{'/'.join(path)} echoed {got!r}, asked {wanted!r}")
            echoed[path] = got
        value = next(iter(echoed.values())) if len(echoed) == 1 else {"/".join(p): v for p, v in echoed.items()}
        return CommandResult(value=value, detail="echoed by the device")

    async def _set_meter_rate(self, s: _Session, command: SetMeterRate) -> CommandResult:
        rate = command.rate_ms
        if rate != 0 and not 100 <= rate <= 65_535:
            raise CommandError(CommandErrorReason.INVALID, "rate must be 0 (off) or 100..65535 ms")
        chans = [command.channel] if command.channel else list(range(1, s.channels + 1))
        for n in chans:
            self._check_channel(s, n)
        # A subscription is identified by its addresses: cancel the old meter ones, or they would run on at
        # the old rate until their lifetime ends.
        _settings, old = self._elements(s)
        for n in chans:
            self._meter_rate[n] = rate
        try:
            if old:
                self._send(s, subscribe_tree([({"cancel": True}, paths) for _opts, paths in old]))
            reply = await self._request(s, self._subscription(s), ECHO_TIMEOUT_S)
        except TimeoutError:
            raise CommandError(CommandErrorReason.TIMEOUT, "subscription not acknowledged") from None
        except (RetryableError, OSError) as exc:  # the session ended or its socket closed under the command
            raise CommandError(CommandErrorReason.OFFLINE, str(exc)) from None
        if any(e.code not in (ERR_FAILED_DEPENDENCY,) for e in reply.errors):
            raise CommandError(CommandErrorReason.REJECTED, f"subscription errors: {reply.errors}")
        return CommandResult(value=rate, detail="subscription renewed")


def _checked_name(name: str, control: Control) -> str:
    text = name.upper() if control.upper else name
    if not text.strip():
        raise CommandError(CommandErrorReason.INVALID, "name must not be empty")
    if control.max_len is not None and len(text) > control.max_len:
        raise CommandError(CommandErrorReason.INVALID, f"name longer than {control.max_len} characters")
    if not text.isprintable():
        raise CommandError(CommandErrorReason.INVALID, "name contains control characters")
    return text


def _checked_number(value: float, control: Control, what: str) -> float:
    if control.lo is not None and control.hi is not None and not control.lo <= value <= control.hi:
        raise CommandError(CommandErrorReason.INVALID, f"{what} {value:g} outside {control.lo:g}..{control.hi:g}")
    if control.step and control.lo is not None and not float((value - control.lo) / control.step).is_integer():
        raise CommandError(CommandErrorReason.INVALID, f"{what} {value:g} is not on the {control.step:g} grid")
    return value
