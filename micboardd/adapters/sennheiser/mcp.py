"""Sennheiser ew G3 / G4 / 2000 "Media Control Protocol" (ASCII over UDP 53212): sans-IO codec and the adapter.

Wire facts (reference/sennheiser-and-others.md §3): case-sensitive ASCII lines ``Keyword p1 … pN<CR>``; a bare
keyword reads, a keyword with parameters sets and the device echoes the whole instruction; errors are
``<code>: <text> [ <instruction> ]``; several lines may share a datagram. ``Push <timeout_s> <cycle_ms> <mode>``
starts cyclic bursts (``RF1 RF2 States RF AF Bat Msg Config`` on a receiver) and config-on-change reports for
``timeout`` seconds; the client re-sends it before then. The device answers only to source port 53212, so every
receiver shares one socket bound to it (``local_port``, default 53212; see :mod:`.udp`).

Normalization choices (the reference gives percentages only; each is UNVERIFIED against hardware):

- RF: ``0 % = 0 dBµV, 100 % = 40 dBµV``; dBµV → dBm at 50 Ω is ``-107 dB``, so ``dBm = 0.4·pct - 107``.
- AF: ``0 % = -50 dB, 100 % = peak`` read as linear in dB up to 0 dBFS: ``dBFS = 0.5·pct - 50``; ``> 100`` → clip.
- Battery: ``Bat 0/30/70/100`` is already a (coarse) percent and is kept as such; bars use the same
  percent→bars rule as every other family (``ceil(pct/20)``): 0→0, 30→2, 70→4, 100→5. ``Bat 0`` is the
  device's own Low_Battery point. ``Bat ?`` (no battery telegram: TX off or out of range) → transmitter absent,
  battery unknown.

Device options (``[devices.options]``): ``push_timeout_s`` (60), ``reply_timeout_s`` (2.0), ``heartbeat_s``
(5.0), ``silence_timeout_s`` (10.0), ``push_mode`` (7 receivers / 3 IEM transmitters), ``name_max_len`` (8,
UNVERIFIED), ``kind`` (``"em"``/``"sr"``, default from the model name), ``local_host`` ("0.0.0.0").
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from ...commands import (
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
from ...config import DeviceConfig
from ...model import TX_ABSENT, Manufacturer, Meters, now
from ..base import Adapter, DeviceLink, RetryableError, TerminalError
from .udp import EndpointError, MalformedLog, PeerInUseError, SharedUdpEndpoint, resolve_ipv4, shared_endpoint

MCP_PORT: Final = 53212
MAX_DATAGRAM_BYTES: Final = 4096  # a config dump is ~150 bytes; the device itself ignores input over 1500 chars
MAX_COMMAND_CHARS: Final = 1500  # G4-MCP p.6: longer input is silently ignored by the device

REPLY_TIMEOUT_S: Final = 2.0  # first answer after Push; receivers answer on a LAN within tens of ms
PUSH_TIMEOUT_S: Final = 60  # EWMOD re-pushes every 60 s; the device stops reporting when it runs out
HEARTBEAT_S: Final = 5.0  # with metering off nothing arrives by itself: read Name when quiet this long
SILENCE_TIMEOUT_S: Final = 10.0  # two heartbeats (or many cycles) without a datagram: the device is gone

CYCLIC: Final = frozenset({"RF1", "RF2", "RF", "AF", "States", "Bat", "Msg", "Config"})
CONFIG_READS: Final = ("Name", "Frequency", "Mute")  # what EWMOD re-reads when Config moves, plus Mute


# ============================================================================= codec (no I/O)


class McpDecodeError(ValueError):
    """A line that is not a well-formed MCP reply."""


@dataclass(frozen=True, slots=True)
class RfAntenna:
    """``RF1|RF2 <min%> <max%> <wasActive>``: one antenna's RF since the last cycle."""

    antenna: int
    min_pct: int
    max_pct: int
    was_active: bool


@dataclass(frozen=True, slots=True)
class RfLevel:
    """``RF <level%> <antenna 1|2> <pilot>``."""

    level_pct: int
    antenna: int
    pilot: bool


@dataclass(frozen=True, slots=True)
class AfLevel:
    """Receiver ``AF <peak%> <peakhold%> <muteBits>``; bit0 any, bit1 TX, bit2 RF, bit3 RX mute."""

    peak_pct: int
    hold_pct: int
    mute_bits: int

    @property
    def tx_muted(self) -> bool:
        return bool(self.mute_bits & 0b10)


@dataclass(frozen=True, slots=True)
class SrAfLevel:
    """IEM transmitter ``AF <in1> <in2> <hold1> <hold2> [flag]``."""

    levels: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class States:
    """``States a b``: receiver mute flags + pilot flags; IEM transmitter RF-mute now + flags."""

    first: int
    second: int


@dataclass(frozen=True, slots=True)
class Battery:
    """``Bat <0|30|70|100|?>``; ``None`` for ``?`` (no battery telegram)."""

    percent: int | None


@dataclass(frozen=True, slots=True)
class Warnings:
    """``Msg <warnings…>|OK``; ``()`` for OK."""

    words: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class ConfigCounter:
    """``Config <0..999>``: moves whenever a configuration attribute changed."""

    value: int


@dataclass(frozen=True, slots=True)
class Name:
    text: str


@dataclass(frozen=True, slots=True)
class Frequency:
    """``Frequency <kHz> [bank chan]``."""

    khz: int
    bank: int | None = None
    chan: int | None = None


@dataclass(frozen=True, slots=True)
class Mute:
    on: bool


@dataclass(frozen=True, slots=True)
class Firmware:
    text: str


@dataclass(frozen=True, slots=True)
class PushEcho:
    timeout_s: int
    cycle_ms: int
    mode: int


@dataclass(frozen=True, slots=True)
class Setting:
    """Any other ``Keyword args…`` line (Squelch, AfOut, Equalizer, Sensitivity, Mode …)."""

    keyword: str
    args: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class ErrorReply:
    """``<code>: <text> [ <instruction> ]``."""

    code: int
    text: str
    instruction: str | None

    @property
    def keyword(self) -> str | None:
        return self.instruction.split(" ", 1)[0] if self.instruction else None


Item = (
    RfAntenna | RfLevel | AfLevel | SrAfLevel | States | Battery | Warnings | ConfigCounter | Name | Frequency
    | Mute | Firmware | PushEcho | Setting | ErrorReply
)


@dataclass(frozen=True, slots=True)
class Datagram:
    """What one datagram held: parsed items in order, and the lines that did not parse (with why)."""

    items: tuple[Item, ...]
    bad: tuple[tuple[str, str], ...] = ()
    lines: tuple[str, ...] = ()  # the text of each item, in step with ``items``


_ERROR_RE: Final = re.compile(r"^(\d{3,4}):\s*(.*?)\s*(?:\[\s*(.*?)\s*\])?$")
_PRINTABLE: Final = re.compile(r"^[\x20-\x7e]*$")


def split_lines(data: bytes) -> list[str]:
    """The lines of a datagram: split on CR (and LF, as RFJS does); cyclic lines also on ``;`` (vendor text)."""
    text = data.decode("latin-1")
    out: list[str] = []
    for raw in re.split(r"[\r\n]+", text):
        line = raw.strip(" \t\x00")
        if not line:
            continue
        if ";" in line and line.split(" ", 1)[0] in CYCLIC:
            out.extend(part.strip() for part in line.split(";") if part.strip())
        else:
            out.append(line)
    return out


def _ints(args: list[str], n: int, line: str) -> list[int]:
    if len(args) != n:
        raise McpDecodeError(f"expected {n} numbers, got {len(args)}")
    try:
        return [int(a) for a in args]
    except ValueError:
        raise McpDecodeError(f"not a number in {line!r}") from None


def _pct(value: int, line: str, hi: int = 255) -> int:
    if not 0 <= value <= hi:
        raise McpDecodeError(f"value {value} out of range in {line!r}")
    return value


def parse_line(line: str) -> Item:
    """One reply line → a typed item; raises McpDecodeError for malformed known keywords."""
    if not _PRINTABLE.match(line):
        raise McpDecodeError("non-ASCII or control bytes")
    m = _ERROR_RE.match(line)
    if m and line[:1].isdigit():
        return ErrorReply(int(m.group(1)), m.group(2), m.group(3) or None)
    keyword, _, rest = line.partition(" ")
    args = rest.split()
    if keyword in ("RF1", "RF2"):
        lo, hi, active = _ints(args, 3, line)
        return RfAntenna(int(keyword[2]), _pct(lo, line), _pct(hi, line), bool(active))
    if keyword == "RF":
        level, antenna, pilot = _ints(args, 3, line)
        if antenna not in (0, 1, 2):
            raise McpDecodeError(f"antenna {antenna} is not 1 or 2")
        return RfLevel(_pct(level, line), antenna, bool(pilot))
    if keyword == "AF":
        if len(args) == 3:
            peak, hold, bits = _ints(args, 3, line)
            return AfLevel(_pct(peak, line), _pct(hold, line), _pct(bits, line, 15))
        if len(args) in (4, 5):
            return SrAfLevel(tuple(_pct(v, line) for v in _ints(args, len(args), line)))
        raise McpDecodeError(f"AF with {len(args)} values")
    if keyword == "States":
        a, b = _ints(args, 2, line)
        return States(a, b)
    if keyword == "Bat":
        if args == ["?"]:
            return Battery(None)
        (pct,) = _ints(args, 1, line)
        return Battery(_pct(pct, line, 100))
    if keyword == "Msg":
        if not args:
            raise McpDecodeError("Msg without words")
        return Warnings(() if args == ["OK"] else tuple(args))
    if keyword == "Config":
        (n,) = _ints(args, 1, line)
        return ConfigCounter(_pct(n, line, 999))
    if keyword == "Name":
        return Name(rest)
    if keyword == "Frequency":
        if len(args) not in (1, 3):
            raise McpDecodeError(f"Frequency with {len(args)} values")
        nums = _ints(args, len(args), line)
        return Frequency(nums[0], *nums[1:]) if len(nums) == 3 else Frequency(nums[0])
    if keyword == "Mute":
        (on,) = _ints(args, 1, line)
        return Mute(bool(on))
    if keyword == "FirmwareRevision":
        return Firmware(rest.strip())
    if keyword == "Push":
        t, c, mode = _ints(args, 3, line)
        return PushEcho(t, c, mode)
    if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_]*", keyword):
        raise McpDecodeError("not a keyword")
    return Setting(keyword, tuple(args))


def parse_datagram(data: bytes) -> Datagram:
    """Every line of a datagram, parsed; bad lines are collected, never raised, so one never hides the rest."""
    items: list[Item] = []
    bad: list[tuple[str, str]] = []
    lines: list[str] = []
    for line in split_lines(data):
        try:
            items.append(parse_line(line))
            lines.append(line)
        except McpDecodeError as exc:
            bad.append((line, str(exc)))
    return Datagram(tuple(items), tuple(bad), tuple(lines))


def encode(keyword: str, *args: object) -> bytes:
    """One command line with its CR; raises ValueError for what the device could not take."""
    text = " ".join([keyword, *(str(a) for a in args)])
    if not _PRINTABLE.match(text):
        raise ValueError("MCP commands are printable ASCII only")
    if len(text) + 1 > MAX_COMMAND_CHARS:
        raise ValueError(f"command longer than {MAX_COMMAND_CHARS} characters")
    return text.encode("ascii") + b"\r"


# ============================================================================= normalization


def rf_dbm(pct: int) -> float:
    """RF percent of 40 dBµV → dBm at 50 Ω (UNVERIFIED impedance assumption)."""
    return round(pct * 0.4 - 107.0, 1)


def af_dbfs(pct: int) -> float:
    """AF percent (0 % = -50 dB, 100 % = full scale) → dBFS, linear in dB (UNVERIFIED)."""
    return round(pct * 0.5 - 50.0, 1)


def battery_bars(percent: int | None) -> int | None:
    """Percent → 0..5 bars, rounding up (30 % → 2, 70 % → 4), the rule every family shares."""
    return None if percent is None else max(0, min(5, math.ceil(percent / 20)))


WARNING_WORDS: Final[Mapping[str, str]] = {
    "AF_Peak": "af_peak", "Low_Battery": "low_battery", "TX_Mute": "tx_mute", "Low_RF_Signal": "low_rf",
    "RF_Mute": "rf_mute", "RX_Mute": "rx_mute",
}


def warning_word(word: str) -> str:
    return WARNING_WORDS.get(word) or re.sub(r"[^a-z0-9]+", "_", word.lower()).strip("_") or "unknown"


def group_channel(freq: Frequency) -> str | None:
    """``bank chan`` as the receiver shows it; bank 0 is the user bank "U" (§3.2)."""
    if freq.bank is None or freq.chan is None:
        return None
    return f"{'U' if freq.bank == 0 else freq.bank},{freq.chan}"


# ============================================================================= adapter


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
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self._push_loop())
            tg.create_task(self._heartbeat_loop())
            tg.create_task(self._watchdog())

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
