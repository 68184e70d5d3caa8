"""Session with one Shure receiver over the 2202 command strings (ULX-D, QLX-D, SLX-D, Axient Digital,
PSM1000 over TCP; UHF-R over UDP in ``uhfr``): read everything, keep it current, run verified SETs.

Timing can be tuned per device with ``options`` in the config (all seconds, numbers > 0)::

    connect_timeout_s      TCP connect (default 5)
    heartbeat_s            interval of the liveness GET (default 10)
    silence_timeout_s      nothing received this long → reconnect (default 3 * heartbeat_s, or
                           5 s + 3 meter periods while SAMPLEs flow, whichever is shorter)
    first_answer_timeout_s connected but no reply this long → state "degraded" (default 5)
    no_answer_reconnect_s  connected but no reply this long → reconnect (default 60)
    echo_timeout_s         a SET's REP echo must arrive within this (default commands.ECHO_TIMEOUT_S)
    battery_temp_offset_c  added to raw BATT_TEMP_C (default -40; the sign is UNVERIFIED, CW/HA use +40)
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Final

from ... import commands as cmds
from ...commands import Command, CommandError, CommandErrorReason, CommandResult
from ...config import DeviceConfig
from ...model import TX_ABSENT, Device, Manufacturer, Meters
from ..base import Adapter, DeviceLink, ProtocolError, RetryableError, TerminalError
from .codec import (
    METER_DECODERS,
    TEMP_OFFSET_C,
    DecodeContext,
    Err,
    FieldChange,
    Framer,
    Garbage,
    Rep,
    Sample,
    check_text,
    combine_encryption,
    combine_lock,
    decode_value,
    encode_get,
    encode_set,
    format_frequency,
    format_group_channel,
    format_meter_rate,
    format_text,
    interpret,
    parse_frame,
    parse_group_channel,
)
from .vocab import FAMILIES, MAX_CHANNELS, Vocab, channels_for_model

log = logging.getLogger(__name__)

CONNECT_TIMEOUT_S: Final = 5.0  # a receiver on the LAN accepts in milliseconds; 5 s covers ARP and a busy switch
HEARTBEAT_S: Final = 10.0  # MB polls every 10 s; one cheap GET keeps a link with metering off observable
SILENCE_HEARTBEATS: Final = 3  # three unanswered heartbeats in a row: the link is dead
SILENCE_METERED_BASE_S: Final = 5.0  # MB's watchdog: 5 s of silence while metering means gone
FIRST_ANSWER_TIMEOUT_S: Final = 5.0  # GET ALL is answered within a second; 5 s of nothing → "degraded"
NO_ANSWER_RECONNECT_S: Final = 60.0  # mute this long (SLX-D Controller Access off) → try a fresh connection
CLOSE_FLUSH_S: Final = 1.0  # the metering stop gets this long to leave the socket before it is aborted
READ_CHUNK: Final = 65536  # one read takes whatever a 100 ms burst of a 4-channel receiver has sent
GARBAGE_WINDOW: Final = 64  # frames per garbage accounting window
GARBAGE_LIMIT: Final = 48  # this many bad frames inside one window: the stream is mostly garbage
GARBAGE_QUIET_S: Final = 10.0  # a garbage burst ends after this long without bad bytes (one WARNING each)

_DEVICE_FIELDS: Final = frozenset(f.name for f in dataclasses.fields(Device))


@dataclass(frozen=True, slots=True)
class Timing:
    """Network waits of one session; defaults are the named constants above, overridable via options."""

    connect_timeout_s: float = CONNECT_TIMEOUT_S
    heartbeat_s: float = HEARTBEAT_S
    silence_timeout_s: float | None = None
    first_answer_timeout_s: float = FIRST_ANSWER_TIMEOUT_S
    no_answer_reconnect_s: float = NO_ANSWER_RECONNECT_S
    echo_timeout_s: float = cmds.ECHO_TIMEOUT_S

    @classmethod
    def from_options(cls, options: Mapping[str, Any], logger: logging.LoggerAdapter[logging.Logger]) -> Timing:
        values: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            if f.name not in options:
                continue
            value = options[f.name]
            if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
                logger.warning("options.%s = %r is not a number of seconds > 0; using the default", f.name, value)
                continue
            values[f.name] = float(value)
        return cls(**values)


@dataclass(slots=True)
class _Pending:
    """The one SET waiting for its echo (SETs are serialized so a REP ERR can be attributed)."""

    prop: str
    channel: int | None  # None: device-level property
    any_channel: bool  # "SET 0 …" is echoed per real channel
    check: Callable[[str], Any]
    expected: Any
    future: asyncio.Future[CommandResult]
    seen: Any = None  # the last differing value echoed (reported as MISMATCH at the timeout)
    seen_any: bool = False


@dataclass(frozen=True, slots=True)
class _Step:
    """One SET of a command and how to recognise its echo."""

    prop: str
    channel: int | None
    value: str
    expected: Any
    check: Callable[[str], Any]
    any_channel: bool = False


def _option_float(
    options: Mapping[str, Any], key: str, default: float, logger: logging.LoggerAdapter[logging.Logger]
) -> float:
    value = options.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float):
        logger.warning("options.%s = %r is not a number; using %g", key, value, default)
        return default
    return float(value)


class ShureAdapter(Adapter):
    """One Shure receiver (or P10T) on TCP 2202, per the family tables in ``vocab``."""

    family: ClassVar[str] = "shure"
    manufacturer: ClassVar[Manufacturer] = Manufacturer.SHURE
    answer_means_connected: ClassVar[bool] = True  # TCP: connected-but-mute is a distinct, "degraded" state

    def __init__(self, config: DeviceConfig, link: DeviceLink) -> None:
        super().__init__(config, link)
        self.vocab: Vocab | None = self._vocab_for(config)
        self.timing = Timing.from_options(config.options, self.log)
        offset = _option_float(config.options, "battery_temp_offset_c", TEMP_OFFSET_C, self.log)
        self._ctx = DecodeContext(self.vocab or FAMILIES["ulxd"], temp_offset_c=offset)
        vocab = self._ctx.vocab
        self._meter_fn: Callable[[str, Sample, float], Meters] | None = METER_DECODERS.get(vocab.sample)
        self._model_channels = config.channels or channels_for_model(vocab, config.model) or vocab.default_channels
        self.rf_band: str | None = None  # also published as Device.rf_band
        self._mute_warned = False  # "answers nothing" is a WARNING once per adapter, then DEBUG
        self._reset_session()

    @staticmethod
    def _vocab_for(config: DeviceConfig) -> Vocab | None:
        return FAMILIES.get(config.family)

    # ------------------------------------------------------------------ session state

    def _reset_session(self) -> None:
        self._session_id = getattr(self, "_session_id", 0) + 1
        self._live = False  # a transport is open
        self._peer_closed = False  # the device closed or reset the link (no metering stop to send)
        self._answered = False
        self._degraded = False
        self._connected_at = time.monotonic()
        self._framer = Framer(self._ctx.vocab.framing)
        self._pending: _Pending | None = None
        self._set_lock = asyncio.Lock()
        self._tasks: set[asyncio.Task[None]] = set()
        self._meter_rate_ms: int | None = None  # as the device reports it
        self._metered_seen = False
        self._metering_requested = False
        self._good = 0
        self._bad = 0
        self._last_garbage = -GARBAGE_QUIET_S
        self._seen_max = 0
        self._enc_mode: str | None = None
        self._inputs: dict[int, dict[str, Any]] = {}
        self._unknown_props: set[str] = set()
        self._err_logged = False
        self._self_test_warned = False

    @property
    def channel_count(self) -> int | None:
        return self._model_channels

    @property
    def _max_channel(self) -> int:
        return self._model_channels or MAX_CHANNELS

    def _channels(self) -> range:
        return range(1, (self._model_channels or self._seen_max or 1) + 1)

    # ------------------------------------------------------------------ transport (TCP; UDP overrides)

    async def _open(self) -> None:
        t = self.timing.connect_timeout_s
        try:
            async with asyncio.timeout(t):
                self._reader, self._writer = await asyncio.open_connection(self.config.host, self.config.port)
        except TimeoutError:
            raise RetryableError(f"no TCP connection to {self.config.host}:{self.config.port} within {t:g} s") from None

    def _send(self, data: bytes) -> None:
        self.log.debug("send %r", data)
        self._writer.write(data)

    async def _recv(self, timeout: float) -> bytes | None:
        """Bytes from the device; None when ``timeout`` passed first; RetryableError on EOF."""
        try:
            async with asyncio.timeout(max(0.0, timeout)):
                data = await self._reader.read(READ_CHUNK)
        except TimeoutError:
            return None
        if not data:
            self._peer_closed = True
            raise RetryableError("connection closed by the device")
        return data

    def _close_transport(self, *, stop_metering: bool) -> None:
        """Synchronous: queue the metering stop, close (the transport flushes it), abort if it hangs."""
        writer = getattr(self, "_writer", None)
        if writer is None or writer.is_closing():
            return
        if stop_metering:
            for frame in self._meter_requests(0):
                self._send(frame)
        writer.close()
        transport = writer.transport
        asyncio.get_running_loop().call_later(CLOSE_FLUSH_S, transport.abort)

    async def _wait_closed(self) -> None:
        writer = getattr(self, "_writer", None)
        if writer is None:
            return
        try:
            async with asyncio.timeout(CLOSE_FLUSH_S):
                await writer.wait_closed()
        except (TimeoutError, OSError):
            writer.transport.abort()

    # ------------------------------------------------------------------ requests

    def _initial_requests(self) -> list[bytes]:
        v = self._ctx.vocab
        if v.get_all:
            return [encode_get(v, "ALL", 0)]
        frames = [encode_get(v, prop) for prop in v.initial_device_gets]
        for ch in self._channels():
            frames += [encode_get(v, prop, ch) for prop in v.initial_channel_gets]
        return frames

    def _heartbeat_requests(self) -> list[bytes]:
        v = self._ctx.vocab
        channel, prop = v.heartbeat
        return [encode_get(v, prop, channel)]

    def _meter_requests(self, rate_ms: int) -> list[bytes]:
        v = self._ctx.vocab
        value = format_meter_rate(rate_ms)
        if v.meter_all_channels:
            return [encode_set(v, v.meter_rate, value, 0)]
        return [encode_set(v, v.meter_rate, value, ch) for ch in self._channels()]

    def _meter_steps(self, rate_ms: int, channel: int | None) -> list[_Step]:
        v = self._ctx.vocab
        value = format_meter_rate(rate_ms)
        check = self._checker(v.meter_rate)
        if channel is not None:
            return [_Step(v.meter_rate, channel, value, rate_ms, check)]
        if v.meter_all_channels:
            return [_Step(v.meter_rate, 0, value, rate_ms, check, any_channel=True)]
        return [_Step(v.meter_rate, ch, value, rate_ms, check) for ch in self._channels()]

    async def _start_metering(self, rate_ms: int) -> None:
        """Connect-time metering, through the serialized SET path so its echo (or ERR) is attributed."""
        self._metering_requested = True
        for step in self._meter_steps(rate_ms, None):
            try:
                await self._run_step(step, require_answer=False)
            except CommandError as exc:
                if exc.reason is CommandErrorReason.OFFLINE:
                    return
                where = f" on channel {step.channel}" if step.channel else ""
                self.log.warning(
                    "metering at %d ms%s not confirmed (%s); liveness uses heartbeats", rate_ms, where, exc
                )

    # ------------------------------------------------------------------ run

    async def run(self) -> None:
        if self.vocab is None:
            raise TerminalError(f"family {self.config.family!r} is not a Shure 2202 family")
        self._reset_session()
        if self._model_channels:
            self.link.device(channel_count=self._model_channels)
        await self._open()
        self._live = True
        self._connected_at = time.monotonic()
        try:
            for frame in self._initial_requests():
                self._send(frame)
            if self.config.meter_rate_ms > 0:
                self._spawn(self._start_metering(self.config.meter_rate_ms))
            await self._loop()
        except OSError:
            self._peer_closed = True  # reset/unreachable: nothing left to stop cleanly
            raise
        finally:
            tasks = list(self._tasks)
            self._end_session(stop_metering=self._metering_requested and not self._peer_closed)
            if tasks:  # cancelled above; let them finish so none outlives its session
                await asyncio.wait(tasks, timeout=CLOSE_FLUSH_S)

    def _spawn(self, coro: Any) -> None:
        task: asyncio.Task[None] = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _end_session(self, *, stop_metering: bool) -> None:
        self._live = False
        for task in list(self._tasks):
            task.cancel()
        if self._pending is not None and not self._pending.future.done():
            self._pending.future.set_exception(CommandError(CommandErrorReason.OFFLINE, "connection lost"))
        with contextlib.suppress(OSError, RuntimeError):
            self._close_transport(stop_metering=stop_metering)

    async def close(self) -> None:
        """Stop metering cleanly (QLX-D ≥ 2.2.11 locks up otherwise) and close the connection."""
        if self._live:
            self._end_session(stop_metering=self._metering_requested)
        await self._wait_closed()

    async def _loop(self) -> None:
        t = self.timing
        next_heartbeat = time.monotonic() + t.heartbeat_s
        while True:
            now = time.monotonic()
            if now >= next_heartbeat:
                frames = self._heartbeat_requests() if self._answered else self._initial_requests()
                for frame in frames:
                    self._send(frame)
                next_heartbeat = now + t.heartbeat_s
            if not self._answered:
                deadline = self._check_no_answer(now)
            else:
                limit = self._silence_limit()
                silent = self.link.seconds_since_rx()
                if silent >= limit:
                    raise RetryableError(f"silent for {silent:.0f} s")
                deadline = now + (limit - silent)
            data = await self._recv(min(deadline, next_heartbeat) - time.monotonic())
            if data is not None:
                self.on_bytes(data)

    def _check_no_answer(self, now: float) -> float:
        """Degrade, then reconnect, a link that is connected but never answers; the next check time."""
        t = self.timing
        waited = now - self._connected_at
        hint = self._ctx.vocab.hint_when_mute
        if waited >= t.no_answer_reconnect_s:
            raise RetryableError(f"connected but no answer for {waited:.0f} s; {hint}")
        if waited >= t.first_answer_timeout_s and not self._degraded:
            self._degraded = True
            if not self.answer_means_connected:
                raise RetryableError(f"no reply for {waited:.0f} s; {hint}")
            level = logging.DEBUG if self._mute_warned else logging.WARNING
            self._mute_warned = True
            self.log.log(level, "connected but the receiver answers nothing after %.0f s; %s", waited, hint)
            self.link.degraded(f"connected but the receiver answers nothing; {hint}")
        edge = t.first_answer_timeout_s if not self._degraded else t.no_answer_reconnect_s
        return self._connected_at + edge

    def _silence_limit(self) -> float:
        t = self.timing
        if t.silence_timeout_s is not None:
            return t.silence_timeout_s
        limit = SILENCE_HEARTBEATS * t.heartbeat_s
        if self._metered_seen and self._meter_rate_ms:
            limit = min(limit, SILENCE_METERED_BASE_S + 3 * self._meter_rate_ms / 1000)
        return limit

    # ------------------------------------------------------------------ receiving (hot path)

    def on_bytes(self, data: bytes) -> None:
        """Everything the device sent in one read: frame, parse, apply; counts garbage."""
        self.link.received(len(data))
        self._frames(self._framer.feed(data))

    def _frames(self, items: list[bytes | Garbage]) -> None:
        at = time.time()
        good = 0
        meter_fn = self._meter_fn
        max_channel = self._max_channel
        for item in items:
            if isinstance(item, Garbage):
                self._garbage(item.data, item.reason)
                continue
            meters: Meters | None = None
            change: FieldChange | None = None
            try:
                msg = parse_frame(item)
                if isinstance(msg, Sample):
                    if meter_fn is not None and 1 <= msg.channel <= max_channel:
                        meters = meter_fn(self.device_id, msg, at)
                elif isinstance(msg, Rep):
                    change = interpret(self._ctx, msg)
            except (ValueError, IndexError) as exc:
                self._garbage(item, str(exc))
                continue
            good += 1
            if isinstance(msg, Sample):
                if meters is not None:
                    self._on_meters(msg, meters)
            elif isinstance(msg, Rep):
                self._on_rep(msg, change)
            else:
                self._on_err(msg)
        if good:
            self._good += good
            if self._good + self._bad >= GARBAGE_WINDOW:
                self._good = self._bad = 0
            if not self._answered:
                self._answered = True
                self.link.online()

    @property
    def device_id(self) -> str:
        return self.link.device_id

    def _on_meters(self, sample: Sample, meters: Meters) -> None:
        self._metered_seen = True
        self._note_channel(sample.channel)
        self.link.meters(meters)

    def _garbage(self, data: bytes, reason: str) -> None:
        now = time.monotonic()
        if now - self._last_garbage > GARBAGE_QUIET_S:
            self.log.warning("skipping bytes that are not a Shure frame (%s): %r", reason, data[:48])
        else:
            self.log.debug("skipping bad frame (%s): %r", reason, data[:48])
        self._last_garbage = now
        self._bad += 1
        if self._bad >= GARBAGE_LIMIT:
            total = self._good + self._bad
            raise ProtocolError(f"mostly garbage: {self._bad} of the last {total} frames were not Shure frames")
        if self._good + self._bad >= GARBAGE_WINDOW:
            self._good = self._bad = 0

    def _note_channel(self, ch: int) -> None:
        if ch > self._seen_max:
            self._seen_max = ch
            if self._model_channels is None:
                self.link.device(channel_count=ch)

    def _on_err(self, err: Err) -> None:
        pending = self._pending
        if pending is not None and not pending.future.done():
            where = f" on channel {pending.channel}" if pending.channel else ""
            pending.future.set_exception(
                CommandError(CommandErrorReason.REJECTED, f"the receiver answered REP ERR to {pending.prop}{where}")
            )
            return
        if not self._err_logged:
            self._err_logged = True
            self.log.warning("the receiver answered REP ERR with no SET outstanding (a GET it does not accept?)")

    def _on_rep(self, rep: Rep, change: FieldChange | None) -> None:
        if change is None:
            if rep.prop not in self._unknown_props:
                self._unknown_props.add(rep.prop)
                self.log.debug("ignoring %s (not in the %s table)", rep.prop, self._ctx.vocab.family)
        elif not change.metered:
            self._apply(change)
        else:
            self._metered_seen = True
        pending = self._pending
        if (
            pending is not None
            and pending.prop == rep.prop
            and not pending.future.done()
            and (pending.any_channel or rep.channel == pending.channel)
        ):
            self._match_echo(pending, rep)

    def _match_echo(self, pending: _Pending, rep: Rep) -> None:
        try:
            value = pending.check(rep.value)
        except ValueError:
            value = rep.value
        if value == pending.expected:
            pending.future.set_result(CommandResult(value=value, detail=f"{rep.prop} echoed by the receiver"))
        else:
            # Not yet a failure: a GET ALL dump or a front-panel change may report the old value first.
            pending.seen, pending.seen_any = value, True

    # ------------------------------------------------------------------ applying changes

    def _apply(self, change: FieldChange) -> None:
        if change.channel is None:
            self._apply_device(change)
            return
        ch = change.channel
        if not 1 <= ch <= self._max_channel:
            self.log.debug("ignoring %s for channel %d (device has %d)", change.prop, ch, self._max_channel)
            return
        self._note_channel(ch)
        fields = dict(change.fields)
        tx = dict(change.tx)
        if change.session:
            self._apply_inputs(ch, change.session, fields, tx)
        if change.present is False:
            self.link.channel(ch, tx_replace=TX_ABSENT, **fields)
            return
        if change.present:
            tx["present"] = True
        if fields or tx:
            self.link.channel(ch, tx=tx, **fields)

    def _apply_inputs(self, ch: int, session: Mapping[str, Any], fields: dict[str, Any], tx: dict[str, Any]) -> None:
        if "meter_rate_ms" in session:
            self._meter_rate_ms = session["meter_rate_ms"]
            return
        inputs = self._inputs.setdefault(ch, {})
        inputs.update(session)
        keys = session.keys()
        if "encryption_warning" in keys or "encryption_status" in keys:
            fields["encryption"] = combine_encryption(
                self._enc_mode, inputs.get("encryption_warning"), inputs.get("encryption_status")
            )
        if "tx_power_lock" in keys or "tx_menu_lock" in keys:
            tx["lock"] = combine_lock(inputs.get("tx_power_lock"), inputs.get("tx_menu_lock"))

    def _apply_device(self, change: FieldChange) -> None:
        session = change.session
        if "encryption_mode" in session:
            self._enc_mode = session["encryption_mode"]
            for ch in self._channels():
                inputs = self._inputs.get(ch, {})
                warning, status = inputs.get("encryption_warning"), inputs.get("encryption_status")
                self.link.channel(ch, encryption=combine_encryption(self._enc_mode, warning, status))
        if session.get("self_test_failed") and not self._self_test_warned:
            self._self_test_warned = True
            self.log.warning("the receiver reports a failed self-test (FW_VER ends in '*')")
        fields: dict[str, Any] = {}
        for key, value in change.fields.items():
            if key in _DEVICE_FIELDS:
                fields[key] = value
            elif key == "rf_band":
                self.rf_band = value
        for key in ("model", "name"):
            if key in fields and fields[key] is None:
                del fields[key]  # a blank MODEL/DEVICE_ID must not erase what the config says
        if fields.get("model") and not self.config.channels:
            count = channels_for_model(self._ctx.vocab, fields["model"])
            if count and count != self._model_channels:
                self._model_channels = count
                fields["channel_count"] = count
        if fields:
            self.link.device(**fields)

    # ------------------------------------------------------------------ commands

    def supports(self, command: Command) -> bool:
        v = self.vocab
        if v is None or type(command) not in v.supports:
            return False
        if isinstance(command, cmds.Identify):
            return v.identify_device or (command.channel is not None and v.identify_channel)
        return True

    async def execute(self, command: Command) -> CommandResult:
        if not self.supports(command):
            raise CommandError(
                CommandErrorReason.UNSUPPORTED,
                f"{self.config.family} ({self.config.model or 'model unknown'}) has no {type(command).__name__}",
            )
        steps, note = self._plan(command)
        result = CommandResult()
        for step in steps:
            result = await self._run_step(step, require_answer=True)
        if note:
            result = CommandResult(result.value, f"{result.detail}; {note}")
        return result

    def _checker(self, prop_name: str) -> Callable[[str], Any]:
        prop = self._ctx.vocab.props[prop_name]
        ctx = self._ctx
        return lambda text: decode_value(ctx, prop, text)

    def _check_channel(self, ch: int) -> None:
        if not 1 <= ch <= self._max_channel:
            raise CommandError(CommandErrorReason.INVALID, f"channel {ch} does not exist (1..{self._max_channel})")

    def _plan(self, command: Command) -> tuple[list[_Step], str]:
        """The SETs a command needs, validated against the family's limits (CommandError INVALID)."""
        v = self._ctx.vocab
        invalid = CommandErrorReason.INVALID
        if isinstance(command, cmds.Identify):
            ch = command.channel
            if ch is not None:
                self._check_channel(ch)
            flash = self._checker(v.flash)
            if ch is not None and not v.identify_channel:
                return [_Step(v.flash, None, "ON", True, flash)], "this family flashes the whole receiver"
            return [_Step(v.flash, ch, "ON", True, flash)], ""
        if isinstance(command, cmds.SetMeterRate):
            rate = command.rate_ms
            if rate != 0 and not 100 <= rate <= 65535:
                raise CommandError(invalid, f"meter rate {rate} ms must be 0 (off) or 100..65535")
            if command.channel is not None:
                self._check_channel(command.channel)
            self._metering_requested = self._metering_requested or rate > 0
            return self._meter_steps(rate, command.channel), ""
        if isinstance(command, cmds.RenameChannel):
            self._check_channel(command.channel)
            why = check_text(command.name, v.chan_name_set_max)
            if why:
                raise CommandError(invalid, f"channel name {command.name!r} {why}")
            value = format_text(v, command.name)
            return [_Step(v.chan_name, command.channel, value, command.name, self._checker(v.chan_name))], ""
        if isinstance(command, cmds.RenameDevice):
            why = check_text(command.name, v.device_name_set_max)
            if why:
                raise CommandError(invalid, f"device name {command.name!r} {why}")
            value = format_text(v, command.name)
            return [_Step(v.device_name, None, value, command.name, self._checker(v.device_name))], ""
        if isinstance(command, cmds.SetMute):
            self._check_channel(command.channel)
            value = "ON" if command.muted else "OFF"
            return [_Step(v.mute, command.channel, value, command.muted, self._checker(v.mute))], ""
        if isinstance(command, cmds.SetGain):
            self._check_channel(command.channel)
            db = command.gain_db
            lo, hi = v.gain_raw_range
            if db != int(db):
                raise CommandError(invalid, f"gain {db} dB: the receiver steps in whole dB")
            raw = int(db) + v.gain_offset
            if not lo <= raw <= hi:
                raise CommandError(invalid, f"gain {db} dB outside {lo - v.gain_offset}..{hi - v.gain_offset} dB")
            return [_Step(v.gain, command.channel, f"{raw:03d}", int(db), self._checker(v.gain))], ""
        if isinstance(command, cmds.SetFrequency):
            self._check_channel(command.channel)
            khz = command.frequency_khz
            if not 100_000 <= khz <= 2_500_000:
                raise CommandError(invalid, f"frequency {khz} kHz is not a wireless-microphone frequency")
            value = format_frequency(v, khz)
            return [_Step(v.frequency, command.channel, value, khz, self._checker(v.frequency))], ""
        if isinstance(command, cmds.SetGroupChannel):
            self._check_channel(command.channel)
            g, c = command.group, command.chan
            if not (0 <= g <= 99 and 0 <= c <= 99):
                raise CommandError(invalid, f"group/channel {g},{c} must be 0..99 each")
            value = format_group_channel(v, g, c)
            base = self._checker(v.group_channel)
            return [_Step(v.group_channel, command.channel, value, (g, c), lambda t: parse_group_channel(base(t)))], ""
        raise CommandError(CommandErrorReason.UNSUPPORTED, f"unknown command {command!r}")

    async def _run_step(self, step: _Step, *, require_answer: bool) -> CommandResult:
        """Send one SET and wait for its echo; one SET outstanding per device at a time."""
        offline = CommandError(CommandErrorReason.OFFLINE, f"{self.device_id} is not connected")
        session = self._session_id
        if not self._live or (require_answer and not self._answered):
            raise offline
        async with self._set_lock:
            if not self._live or self._session_id != session:
                raise offline
            future: asyncio.Future[CommandResult] = asyncio.get_running_loop().create_future()
            pending = _Pending(step.prop, step.channel, step.any_channel, step.check, step.expected, future)
            self._pending = pending
            try:
                self._send(encode_set(self._ctx.vocab, step.prop, step.value, step.channel))
                async with asyncio.timeout(self.timing.echo_timeout_s):
                    return await future
            except TimeoutError:
                if pending.seen_any:
                    raise CommandError(
                        CommandErrorReason.MISMATCH,
                        f"asked {step.prop} = {step.expected!r}, the receiver reports {pending.seen!r}",
                    ) from None
                raise CommandError(
                    CommandErrorReason.TIMEOUT,
                    f"no echo of {step.prop} within {self.timing.echo_timeout_s:g} s",
                ) from None
            finally:
                if self._pending is pending:
                    self._pending = None
