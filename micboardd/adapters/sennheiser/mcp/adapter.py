"""The MCP adapter: one receiver or IEM transmitter per session on the shared port-53212 socket (Push, echoes)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Final

from ....commands import (
    ECHO_TIMEOUT_S,
    Command,
    CommandError,
    CommandErrorReason,
    CommandResult,
    RenameChannel,
    SetFrequency,
    SetMeterRate,
    SetMute,
)
from ....config import DeviceConfig
from ....model import TX_ABSENT, Manufacturer, Meters, now
from ...base import Adapter, DeviceError, DeviceLink, RetryableError, TerminalError
from ..udp import EndpointError, MalformedLog, PeerInUseError, SharedUdpEndpoint, resolve_ipv4, shared_endpoint
from .codec import (
    AfLevel,
    Battery,
    ConfigCounter,
    ErrorReply,
    Firmware,
    Frequency,
    Item,
    Mute,
    Name,
    PushEcho,
    RfAntenna,
    RfLevel,
    SrAfLevel,
    Warnings,
    encode,
    parse_datagram,
)
from .normalize import af_dbfs, battery_bars, group_channel, rf_dbm, warning_word

MCP_PORT: Final = 53212
MAX_DATAGRAM_BYTES: Final = 4096  # a config dump is ~150 bytes; the device itself ignores input over 1500 chars

REPLY_TIMEOUT_S: Final = 2.0  # first answer after Push; receivers answer on a LAN within tens of ms
PUSH_TIMEOUT_S: Final = 60  # EWMOD re-pushes every 60 s; the device stops reporting when it runs out
HEARTBEAT_S: Final = 5.0  # with metering off nothing arrives by itself: read Name when quiet this long
SILENCE_TIMEOUT_S: Final = 10.0  # two heartbeats (or many cycles) without a datagram: the device is gone

CONFIG_READS: Final = ("Name", "Frequency", "Mute")  # what EWMOD re-reads when Config moves, plus Mute


@dataclass(slots=True)
class _Waiter:
    """A set waiting for its echo."""

    keyword: str
    instruction: str
    future: asyncio.Future[Item]
    seen: Item | None = None  # the last same-keyword line that was not our echo


@dataclass(frozen=True, slots=True)
class McpOptions:
    """``[devices.options]`` of an MCP device, validated."""

    kind: str = "em"
    push_timeout_s: int = PUSH_TIMEOUT_S
    reply_timeout_s: float = REPLY_TIMEOUT_S
    heartbeat_s: float = HEARTBEAT_S
    silence_timeout_s: float = SILENCE_TIMEOUT_S
    push_mode: int = 7
    name_max_len: int = 8
    local_host: str = "0.0.0.0"

    @classmethod
    def from_config(cls, config: DeviceConfig) -> McpOptions:
        opts = dict(config.options)
        model = (config.model or "").upper()
        kind = opts.pop("kind", "sr" if model.startswith("SR") else "em")
        if kind not in ("em", "sr"):
            raise TerminalError(f"options.kind must be \"em\" (receiver) or \"sr\" (IEM transmitter), got {kind!r}")

        def number(key: str, default: float, lo: float, hi: float) -> float:
            value = opts.pop(key, default)
            if isinstance(value, bool) or not isinstance(value, int | float) or not lo <= value <= hi:
                raise TerminalError(f"options.{key} must be a number in {lo:g}..{hi:g}, got {value!r}")
            return float(value)

        push_timeout = int(number("push_timeout_s", PUSH_TIMEOUT_S, 1, 300))  # protocol range 0..300
        out = cls(
            kind=kind,
            push_timeout_s=push_timeout,
            reply_timeout_s=number("reply_timeout_s", REPLY_TIMEOUT_S, 0.01, 60),
            heartbeat_s=number("heartbeat_s", HEARTBEAT_S, 0.01, 300),
            silence_timeout_s=number("silence_timeout_s", SILENCE_TIMEOUT_S, 0.05, 3600),
            push_mode=int(number("push_mode", 7 if kind == "em" else 3, 1, 7)),
            name_max_len=int(number("name_max_len", 8, 1, 64)),
            local_host=str(opts.pop("local_host", "0.0.0.0")),
        )
        if opts:
            raise TerminalError(f"unknown options for mcp: {', '.join(sorted(opts))}")
        return out


class McpAdapter(Adapter):
    """One ew G3/G4/2000 receiver (EM) or IEM transmitter (SR); one channel per device address."""

    family = "mcp"
    manufacturer = Manufacturer.SENNHEISER

    def __init__(self, config: DeviceConfig, link: DeviceLink) -> None:
        super().__init__(config, link)
        self._opts: McpOptions | None = None
        self._endpoint: SharedUdpEndpoint | None = None
        self._peer: tuple[str, int] | None = None
        self._rx = asyncio.Event()
        self._waiters: list[_Waiter] = []
        self._malformed = MalformedLog(self.log, "MCP datagram")
        self._config_counter: int | None = None
        self._cycle_ms = self._cycle_for(config.meter_rate_ms)
        self._meters: dict[str, Any] = {}
        self._warnings: tuple[str, ...] = ()
        self._last_cyclic = 0.0  # loop time of the last cyclic burst
        self.pushes_sent = 0

    @property
    def options(self) -> McpOptions:
        if self._opts is None:
            self._opts = McpOptions.from_config(self.config)
        return self._opts

    @staticmethod
    def _cycle_for(rate_ms: int) -> int:
        """Meter rate → Push cycle: 0 (off) or 100..60000 ms in 100 ms steps (G4-MCP p.11)."""
        if rate_ms <= 0:
            return 0
        return max(100, min(60_000, round(rate_ms / 100) * 100))

    # ----------------------------------------------------------------- session

    async def run(self) -> None:
        opts = self.options
        peer = await resolve_ipv4(self.config.host, self.config.port)
        try:
            async with shared_endpoint(opts.local_host, self.config.local_port or MCP_PORT) as endpoint:
                with endpoint.register(peer, self._on_datagram):
                    self._endpoint, self._peer = endpoint, peer
                    try:
                        await self._serve()
                    except asyncio.CancelledError:
                        with contextlib.suppress(OSError):  # a clean stop: the device stops reporting now
                            self._send(encode("Push", 0, 0, 0))
                        raise
                    finally:
                        self._endpoint = self._peer = None
                        self._fail_waiters(RetryableError("session ended"))
        except EndpointError as exc:
            raise RetryableError(exc.strerror or str(exc)) from exc
        except PeerInUseError as exc:
            raise TerminalError(str(exc)) from exc

    async def _serve(self) -> None:
        opts = self.options
        self._rx.clear()
        self._config_counter = None
        self._last_cyclic = asyncio.get_running_loop().time()
        self._push()  # mode > 0: the device dumps its configuration straight away
        for keyword in ("FirmwareRevision", *CONFIG_READS):
            self._send(encode(keyword))
        try:
            async with asyncio.timeout(opts.reply_timeout_s):
                await self._rx.wait()
        except TimeoutError:
            raise RetryableError(
                f"no MCP reply within {opts.reply_timeout_s:g} s (the device answers only to source port "
                f"{self._endpoint.local[1] if self._endpoint else MCP_PORT})"
            ) from None
        self.link.online()
        self.link.device(channel_count=1)
        try:
            async with asyncio.TaskGroup() as tg:
                tg.create_task(self._push_loop())
                tg.create_task(self._heartbeat_loop())
                tg.create_task(self._watchdog())
        except* (DeviceError, OSError) as group:
            raise group.exceptions[0] from None  # the supervisor classifies the error, not its group

    def _push(self) -> None:
        self.pushes_sent += 1
        self._send(encode("Push", self.options.push_timeout_s, self._cycle_ms, self.options.push_mode))

    async def _push_loop(self) -> None:
        timeout = self.options.push_timeout_s
        renew_after = timeout - min(10.0, timeout / 3)  # re-push well before the device stops reporting
        while True:
            await asyncio.sleep(renew_after)
            self._push()

    async def _heartbeat_loop(self) -> None:
        """Read the name when the device is quiet (metering off sends nothing by itself); re-push when cyclic
        bursts stopped although they are due: the device lost the Push (a quick reboot, a lost datagram)."""
        beat = self.options.heartbeat_s
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(beat)
            if self.link.seconds_since_rx() >= beat:
                self._send(encode("Name"))
            if self._cycle_ms and loop.time() - self._last_cyclic > max(beat, 3 * self._cycle_ms / 1000):
                self.log.debug("cyclic bursts stopped; pushing again")
                self._last_cyclic = loop.time()
                self._push()

    async def _watchdog(self) -> None:
        limit = self.options.silence_timeout_s
        while True:
            quiet = self.link.seconds_since_rx()
            if quiet >= limit:
                raise RetryableError(f"no datagram for {quiet:.1f} s (silence timeout {limit:g} s)")
            await asyncio.sleep(min(limit - quiet, limit / 4) + 0.01)

    def _send(self, data: bytes) -> None:
        if self._endpoint is None or self._peer is None:
            raise CommandError(CommandErrorReason.OFFLINE, f"{self.config.id} has no live MCP session")
        self.log.debug("→ %r", data)
        self._endpoint.sendto(data, self._peer)

    # ----------------------------------------------------------------- intake

    def _on_datagram(self, data: bytes) -> None:
        self.link.received(len(data))
        self._rx.set()
        if len(data) > MAX_DATAGRAM_BYTES:
            self._malformed(data, f"{len(data)} bytes exceeds {MAX_DATAGRAM_BYTES}")
            return
        self.log.debug("← %r", data[:200])
        parsed = parse_datagram(data)
        if any(isinstance(item, ConfigCounter | RfLevel | Battery) for item in parsed.items):
            self._last_cyclic = asyncio.get_running_loop().time()
        for line, reason in parsed.bad:
            self._malformed(line.encode("latin-1"), reason)
        try:
            self._apply(parsed.items)
        except Exception as exc:  # a value our mapping cannot take must not end the session
            self._malformed(data, f"unusable values: {exc!r}")
        for item, line in zip(parsed.items, parsed.lines, strict=True):
            self._wake(item, line)

    def _apply(self, items: Iterable[Item]) -> None:
        chan: dict[str, Any] = {}
        tx: dict[str, Any] = {}
        absent = False
        meters = False
        reread = False
        for item in items:
            if isinstance(item, Name):
                chan["name"] = item.text.strip() or None
            elif isinstance(item, Frequency):
                chan["frequency_khz"] = item.khz if item.khz > 0 else None
                if item.bank is not None:
                    chan["group_channel"] = group_channel(item)
            elif isinstance(item, Mute):
                chan["muted"] = item.on
            elif isinstance(item, Firmware):
                self.link.device(firmware=item.text or None)
            elif isinstance(item, Battery):
                if item.percent is None:
                    absent = True
                else:
                    tx.update(present=True, battery_percent=item.percent, battery_bars=battery_bars(item.percent))
            elif isinstance(item, Warnings):
                self._warnings = tuple(dict.fromkeys(warning_word(w) for w in item.words))
                chan["warnings"] = self._warnings
            elif isinstance(item, AfLevel):
                tx["muted"] = item.tx_muted
                self._meters.update(audio_peak_dbfs=af_dbfs(min(item.peak_pct, 100)), over=item.peak_pct > 100)
                meters = True
            elif isinstance(item, SrAfLevel):
                peak = max(item.levels[:2])
                self._meters.update(audio_peak_dbfs=af_dbfs(min(peak, 100)), over=peak > 100)
                meters = True
            elif isinstance(item, RfAntenna):
                self._meters[f"rf{item.antenna}"] = rf_dbm(item.max_pct)
                meters = True
            elif isinstance(item, RfLevel):
                self._meters["antenna"] = {1: "A", 2: "B"}.get(item.antenna)
                self._meters["rf_level"] = (item.antenna, rf_dbm(item.level_pct))
                meters = True
            elif isinstance(item, ConfigCounter):
                reread = self._config_counter is not None and item.value != self._config_counter
                self._config_counter = item.value
            elif isinstance(item, ErrorReply) and not any(w.instruction == item.instruction for w in self._waiters):
                self.log.info("device answered %d %s for %r", item.code, item.text, item.instruction)
        if absent:
            tx.pop("present", None)
            self.link.channel(1, tx_replace=TX_ABSENT, **chan)
        elif chan or tx:
            self.link.channel(1, tx=tx, **chan)
        if meters:
            self._emit_meters()
        if reread:
            self.log.debug("configuration counter moved; re-reading %s", ", ".join(CONFIG_READS))
            for keyword in CONFIG_READS:
                self._send(encode(keyword))

    def _emit_meters(self) -> None:
        m = self._meters
        rf: tuple[float | None, ...] = (m.get("rf1"), m.get("rf2"))
        if rf == (None, None) and "rf_level" in m:  # only RF seen: place it on its antenna
            antenna, dbm = m["rf_level"]
            rf = (dbm, None) if antenna == 1 else (None, dbm)
        self.link.meters(
            Meters(
                self.config.id,
                1,
                rf_dbm=rf if any(v is not None for v in rf) else (),
                active_antenna=m.get("antenna"),
                audio_peak_dbfs=m.get("audio_peak_dbfs"),
                clip=bool(m.get("over")) or "af_peak" in self._warnings,
                at=now(),
            )
        )

    # ----------------------------------------------------------------- replies to our commands

    def _wake(self, item: Item, line: str) -> None:
        """Resolve the set whose instruction this line echoes (or refuses); same-keyword lines are only noted.

        A set is confirmed by the echo of the whole instruction (G4-MCP p.7). Config-on-change pushes and
        re-read answers carry the same keyword but are not that echo, so they never confirm a command.
        """
        text = " ".join(line.split())
        for waiter in self._waiters:
            if waiter.future.done():
                continue
            if isinstance(item, ErrorReply):
                if item.instruction is None or " ".join(item.instruction.split()) == waiter.instruction:
                    waiter.future.set_result(item)
                    return
            elif text == waiter.instruction:
                waiter.future.set_result(item)
                return
            elif text.split(" ", 1)[0] == waiter.keyword:
                waiter.seen = item

    def _fail_waiters(self, exc: Exception) -> None:
        for waiter in self._waiters:
            if not waiter.future.done():
                waiter.future.set_exception(exc)
        self._waiters.clear()

    async def _command(self, keyword: str, *args: object) -> Item:
        """Send a set and wait for its echo; REJECTED on an error reply, MISMATCH if only another value came."""
        try:
            data = encode(keyword, *args)
        except ValueError as exc:
            raise CommandError(CommandErrorReason.INVALID, str(exc)) from None
        waiter = _Waiter(keyword, data.decode("ascii").rstrip("\r"), asyncio.get_running_loop().create_future())
        self._waiters.append(waiter)
        try:
            self._send(data)
            async with asyncio.timeout(ECHO_TIMEOUT_S):
                item = await waiter.future
        except TimeoutError:
            if waiter.seen is not None:
                raise CommandError(CommandErrorReason.MISMATCH, f"device reports {waiter.seen!r}") from None
            detail = f"no echo of {waiter.instruction!r} within {ECHO_TIMEOUT_S:g} s"
            raise CommandError(CommandErrorReason.TIMEOUT, detail) from None
        except RetryableError as exc:
            raise CommandError(CommandErrorReason.OFFLINE, str(exc)) from None
        finally:
            if waiter in self._waiters:
                self._waiters.remove(waiter)
        if isinstance(item, ErrorReply):
            raise CommandError(CommandErrorReason.REJECTED, f"{item.code}: {item.text}")
        return item

    # ----------------------------------------------------------------- commands

    def supports(self, command: Command) -> bool:
        return isinstance(command, RenameChannel | SetMute | SetFrequency | SetMeterRate)

    async def execute(self, command: Command) -> CommandResult:
        if self._endpoint is None:
            raise CommandError(CommandErrorReason.OFFLINE, f"{self.config.id} has no live MCP session")
        if not self.supports(command):
            raise CommandError(CommandErrorReason.UNSUPPORTED, f"MCP has no {type(command).__name__}")
        if isinstance(command, SetMeterRate):
            if command.channel not in (None, 1):
                raise CommandError(CommandErrorReason.INVALID, "an MCP device has one channel")
            self._cycle_ms = self._cycle_for(command.rate_ms)
            echo = await self._command("Push", self.options.push_timeout_s, self._cycle_ms, self.options.push_mode)
            if not isinstance(echo, PushEcho) or echo.cycle_ms != self._cycle_ms:
                raise CommandError(CommandErrorReason.MISMATCH, f"Push echoed {echo!r}")
            return CommandResult(value=self._cycle_ms, detail="Push echoed")
        assert isinstance(command, RenameChannel | SetMute | SetFrequency)
        if command.channel != 1:
            raise CommandError(CommandErrorReason.INVALID, "an MCP device has one channel (1)")
        if isinstance(command, RenameChannel):
            name = command.name
            if not name.strip() or name != name.strip():
                raise CommandError(CommandErrorReason.INVALID, "name must be non-empty without outer spaces")
            if len(name) > self.options.name_max_len:
                raise CommandError(CommandErrorReason.INVALID, f"name longer than {self.options.name_max_len}")
            echo = await self._command("Name", name)
            if not isinstance(echo, Name) or echo.text != name:
                raise CommandError(CommandErrorReason.MISMATCH, f"Name echoed {echo!r}, asked {name!r}")
            self.link.channel(1, name=echo.text)
            return CommandResult(value=echo.text, detail="echoed by the device")
        if isinstance(command, SetMute):
            echo = await self._command("Mute", int(command.muted))
            if not isinstance(echo, Mute) or echo.on is not command.muted:
                raise CommandError(CommandErrorReason.MISMATCH, f"Mute echoed {echo!r}")
            self.link.channel(1, muted=echo.on)
            return CommandResult(value=echo.on, detail="echoed by the device")
        khz = command.frequency_khz
        if khz % 25 or not 400_000 <= khz <= 2_000_000:
            raise CommandError(CommandErrorReason.INVALID, f"{khz} kHz is not a 25 kHz step in 400..2000 MHz")
        echo = await self._command("Frequency", khz)
        if not isinstance(echo, Frequency) or echo.khz != khz:
            raise CommandError(CommandErrorReason.MISMATCH, f"Frequency echoed {echo!r}")
        self.link.channel(1, frequency_khz=echo.khz)
        return CommandResult(value=echo.khz, detail="echoed by the device")
