"""A Sennheiser ew G3/G4/2000 device speaking the Media Control Protocol (ASCII over UDP) on a real socket.

Written from reference/sennheiser-and-others.md §3 on its own (never through micboardd's adapters).
Faithful quirks: it answers only datagrams whose source port is ``reply_port`` (53212 on real gear: "probes
from an ephemeral port get dead silence") and sends every answer to ``(sender_ip, reply_port)``; commands are
case-sensitive ``Keyword args<CR>``; sets echo the whole instruction; errors are ``<code>: <text> [ <instr> ]``
(1000 unknown, 1010 bad parameter, 1020 out of range, 1030 relative not supported, 1040 wrong count, 1050
missing CR); input over 1500 characters is ignored. ``Push <timeout> <cycle> <mode>`` dumps the configuration
once when mode > 0 and echoes *after* that data, sends one cyclic burst per datagram every ``cycle`` ms until
``timeout`` runs out, config lines on change (bit 0), a burst when warnings change (bit 1) and when pilot or
battery change (bit 2, receivers only). ``Config`` counts configuration changes and wraps at 999.
Left out (low confidence in the reference): the legacy binary protocol on UDP 8133 and multicast discovery.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
import time
from dataclasses import dataclass
from typing import Any, Final

from ._udp import UdpDeviceSim

log = logging.getLogger(__name__)

DEFAULT_PORT: Final = 53212
MAX_INPUT: Final = 1500  # G4-MCP p.6: longer input is silently ignored
NAME_MAX: Final = 8  # UNVERIFIED (the reference has no name length); front panels show 8 characters

# model → (kind, firmware); kind "em" receiver, "sr" IEM transmitter. FIELD saw 1.8.0 on a G3 receiver.
MODELS: Final[dict[str, tuple[str, str]]] = {
    "EM 300-500 G4": ("em", "2.3.2"),
    "EM 100 G4": ("em", "2.3.2"),
    "EM 300 G3": ("em", "1.8.0"),
    "EM 500 G3": ("em", "1.8.0"),
    "EM 100 G3": ("em", "1.8.0"),
    "EM 2000": ("em", "2.4.0"),
    "EM 2050": ("em", "2.4.0"),
    "SR 300 IEM G4": ("sr", "2.3.2"),
    "SR 2050 IEM": ("sr", "2.4.0"),
}
BAT_LEVELS: Final = (0, 30, 70, 100)
NAMES: Final = ("LEAD", "BV1", "HOST", "KEYS", "GTR", "PASTOR", "SAX", "MC")
EM_CONFIG: Final = ("Name", "Frequency", "Mute", "Squelch", "AfOut", "Equalizer")
SR_CONFIG: Final = ("Name", "Frequency", "Mute", "Sensitivity", "Mode", "Equalizer")


@dataclass(frozen=True, slots=True)
class SimChannel:
    """The device's one channel as the simulator knows it (raw MCP percents plus plain values)."""

    index: int
    name: str
    frequency_khz: int
    bank: int
    chan: int
    muted: bool
    tx_present: bool
    tx_muted: bool
    battery_percent: int | None  # 0/30/70/100 or None (no battery telegram)
    rf1_pct: int
    rf2_pct: int
    antenna: int
    pilot: bool
    af_pct: int
    warnings: tuple[str, ...]


@dataclass(slots=True)
class SimRequest:
    """One datagram received: when, from whom, its text, and whether the device answered it."""

    at: float
    peer: tuple[str, int]
    text: str
    answered: bool

    @property
    def lines(self) -> list[str]:
        return [part for part in self.text.replace("\n", "\r").split("\r") if part]


@dataclass(slots=True)
class _Push:
    target: tuple[str, int]
    expires: float
    cycle_s: float
    mode: int
    next_due: float


class McpSim(UdpDeviceSim):
    """One MCP device (a single-channel receiver or IEM transmitter) on ``host:port``."""

    log = log
    LABEL = "mcp sim"
    GARBAGE = (
        b"RF1 abc 12 1\r",  # not a number
        b"\xff\xfe\x00\x81\r",  # binary
        b"Bat 250\r",  # out of range
        b"AF 1\rStates\r",  # wrong counts
    )

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        model: str = "EM 300-500 G4",
        seed: int = 0,
        lively: bool = False,
        reply_port: int = DEFAULT_PORT,
    ) -> None:
        if model not in MODELS:
            raise ValueError(f"model must be one of {', '.join(MODELS)}")
        super().__init__(host, port, seed=seed, lively=lively)
        self.model = model
        self.kind, self.firmware = MODELS[model]
        self.reply_port = reply_port
        self.send_config_changes = True  # False: a device that only moves Config (tests the re-read path)
        self.received: list[SimRequest] = []
        rng = self._rng
        self.name = NAMES[seed % len(NAMES)]
        self.bank, self.chan = 1 + seed % 6, 1 + rng.randrange(0, 12)
        self.frequency_khz = 470_200 + rng.randrange(0, 3000) * 25
        self.mute = False
        self.squelch = 5 + 2 * rng.randrange(0, 6)
        self.afout = 3 * rng.randrange(-4, 4)
        self.equalizer = 0
        self.sensitivity = -6
        self.mode = 1
        self.tx_present = True
        self.tx_mute = False
        self.battery: int | None = rng.choice((30, 70, 100, 100))
        self.rf1 = rng.randrange(45, 80)
        self.rf2 = rng.randrange(45, 80)
        self.antenna = 1 if self.rf1 >= self.rf2 else 2
        self.pilot = True
        self.af = rng.randrange(20, 70)
        self.af2 = rng.randrange(20, 70)
        self.af_over = False
        self.config_counter = rng.randrange(0, 1000)
        self._pushes: dict[str, _Push] = {}
        self._last_msg: tuple[str, ...] = self._warnings()
        self._last_pilot_bat: tuple[bool, int | None] = (self.pilot, self.battery)

    # ================================================================= lifecycle

    def describe(self) -> str:
        return self.model

    async def stop(self) -> None:
        """Close the socket and forget Push targets, as a power cycle would."""
        await super().stop()
        self._pushes.clear()

    # ================================================================= controls

    def channel(self, n: int = 1) -> SimChannel:
        if n != 1:
            raise KeyError(f"an MCP device has one channel, not {n}")
        return SimChannel(
            index=1,
            name=self.name,
            frequency_khz=self.frequency_khz,
            bank=self.bank,
            chan=self.chan,
            muted=self.mute,
            tx_present=self.tx_present,
            tx_muted=self.tx_mute,
            battery_percent=self.battery if self.tx_present else None,
            rf1_pct=self.rf1,
            rf2_pct=self.rf2,
            antenna=self.antenna,
            pilot=self.pilot,
            af_pct=self.af,
            warnings=self._warnings(),
        )

    def tx_link(self, n: int = 1) -> None:
        """The transmitter is switched on (or comes back into range)."""
        self.tx_present, self.pilot = True, True
        self.rf1, self.rf2 = max(self.rf1, 60), max(self.rf2, 55)
        self.battery = self.battery if self.battery is not None else 100
        self._state_changed()

    def tx_unlink(self, n: int = 1) -> None:
        """The transmitter is switched off: no pilot, no battery telegram, RF at the noise floor."""
        self.tx_present, self.pilot = False, False
        self.rf1, self.rf2, self.af = 3, 2, 0
        self._state_changed()

    def set_battery(self, n: int = 1, level: int | None = 100) -> None:
        """``level`` is what ``Bat`` will say: 0, 30, 70, 100 or None (``?``)."""
        if level is not None and level not in BAT_LEVELS:
            raise ValueError(f"Bat reports only {BAT_LEVELS} or None")
        self.battery = level
        self._state_changed()

    def rename(self, n: int, name: str) -> None:
        """A name set on the front panel."""
        self.name = name[:NAME_MAX]
        self._config_changed("Name")

    def set_tx_mute(self, muted: bool) -> None:
        self.tx_mute = muted
        self._state_changed()

    def push_requests(self) -> list[SimRequest]:
        return [r for r in self.received if any(line.startswith("Push ") for line in r.lines)]

    def push_targets(self) -> list[tuple[tuple[str, int], float, int]]:
        """Live Push sessions as (target, cycle s, mode)."""
        now = time.monotonic()
        return [(p.target, p.cycle_s, p.mode) for p in self._pushes.values() if p.expires > now]

    def inject(self, data: bytes, target: tuple[str, int] | None = None) -> None:
        """Send raw bytes (default to the last answered client)."""
        if target is None:
            answered = [r for r in self.received if r.answered]
            target = (answered[-1].peer[0], self.reply_port) if answered else None
        if target is not None and self._transport is not None:
            self._transport.sendto(data, target)

    # ================================================================= state

    def _warnings(self) -> tuple[str, ...]:
        out = []
        if self.kind == "sr":
            if self.af_over:
                out.append("AF_Peak")
            if self.mute:
                out.append("RF_Mute")
            return tuple(out)
        if self.af_over:
            out.append("AF_Peak")
        if self.tx_present and self.battery == 0:
            out.append("Low_Battery")
        if self.tx_present and self.tx_mute:
            out.append("TX_Mute")
        if not self.tx_present or max(self.rf1, self.rf2) < 10:
            out.append("Low_RF_Signal")
        if not self.tx_present:
            out.append("RF_Mute")
        if self.mute:
            out.append("RX_Mute")
        return tuple(out)

    def _mute_bits(self) -> int:
        bits = 0
        if self.tx_present and self.tx_mute:
            bits |= 0b10
        if not self.tx_present:
            bits |= 0b100
        if self.mute:
            bits |= 0b1000
        return bits | (1 if bits else 0)

    def _config_line(self, keyword: str) -> str:
        if keyword == "Name":
            return f"Name {self.name}"
        if keyword == "Frequency":
            return f"Frequency {self.frequency_khz} {self.bank} {self.chan}"
        if keyword == "Mute":
            return f"Mute {int(self.mute)}"
        if keyword == "Squelch":
            return f"Squelch {self.squelch}"
        if keyword == "AfOut":
            return f"AfOut {self.afout}"
        if keyword == "Equalizer":
            return f"Equalizer {self.equalizer}"
        if keyword == "Sensitivity":
            return f"Sensitivity {self.sensitivity}"
        if keyword == "Mode":
            return f"Mode {self.mode}"
        raise KeyError(keyword)

    def _burst(self) -> bytes:
        """One cyclic burst, one datagram, each line ending in CR (G4-MCP p.9 order)."""
        msg = " ".join(self._warnings()) or "OK"
        if self.kind == "sr":
            lines = [
                f"AF {self.af} {self.af2} {self.af} {self.af2}",
                f"States {int(self.mute)} {int(self.mute)}",
                f"Msg {msg}",
                f"Config {self.config_counter}",
            ]
        else:
            pilot_flags = 1 if self.pilot else 0
            bat = "?" if not self.tx_present or self.battery is None else str(self.battery)
            level = self.rf1 if self.antenna == 1 else self.rf2
            lines = [
                f"RF1 {max(0, self.rf1 - 6)} {self.rf1} {int(self.antenna == 1)}",
                f"RF2 {max(0, self.rf2 - 6)} {self.rf2} {int(self.antenna == 2)}",
                f"States {self._mute_bits() & 1} {pilot_flags}",
                f"RF {level} {self.antenna} {int(self.pilot)}",
                f"AF {self.af} {min(150, self.af + 8)} {self._mute_bits()}",
                f"Bat {bat}",
                f"Msg {msg}",
                f"Config {self.config_counter}",
            ]
        return "".join(line + "\r" for line in lines).encode("ascii")

    def _config_changed(self, *keywords: str) -> None:
        self.config_counter = (self.config_counter + 1) % 1000
        if self.send_config_changes:
            for push in self._live_pushes():
                if push.mode & 1:
                    self._send("".join(self._config_line(k) + "\r" for k in keywords).encode("ascii"), push.target)
        self._state_changed()

    def _state_changed(self) -> None:
        msg = self._warnings()
        warn_moved = msg != self._last_msg
        self._last_msg = msg
        pilot_bat = (self.pilot, self.battery if self.tx_present else None)
        pilot_bat_moved = pilot_bat != self._last_pilot_bat
        self._last_pilot_bat = pilot_bat
        for push in self._live_pushes():
            if (warn_moved and push.mode & 2) or (pilot_bat_moved and self.kind == "em" and push.mode & 4):
                self._send(self._burst(), push.target)

    def _live_pushes(self) -> list[_Push]:
        now = time.monotonic()
        return [p for p in self._pushes.values() if p.expires > now]

    # ================================================================= protocol

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        peer = (str(addr[0]), int(addr[1]))
        text = data.decode("latin-1")
        right_port = peer[1] == self.reply_port
        answering = right_port and self.fault != "silent" and len(data) <= MAX_INPUT
        self.received.append(SimRequest(time.monotonic(), peer, text, answering))
        if not right_port or len(data) > MAX_INPUT:
            return  # dead silence for ephemeral source ports; oversized input is ignored
        target = (peer[0], self.reply_port)
        parts = text.split("\r")
        out: list[str] = []
        for i, raw in enumerate(parts):
            line = raw.strip("\n")
            if not line:
                continue
            if i == len(parts) - 1:  # text after the last CR: no termination
                out.append(f"1050: Incorrect termination [ {line} ]")
                continue
            out.extend(self._command(line, target))
        if out:
            self._send("".join(line + "\r" for line in out).encode("ascii", "replace"), target)

    def _command(self, line: str, target: tuple[str, int]) -> list[str]:
        keyword, _, rest = line.partition(" ")
        args = rest.split()
        config = EM_CONFIG if self.kind == "em" else SR_CONFIG

        def err(code: int, text: str) -> list[str]:
            return [f"{code}: {text} [ {line} ]"]

        if keyword == "Push":
            return self._push(line, args, target)
        if keyword == "FirmwareRevision":
            return err(1040, "Invalid numbers of parameter") if args else [f"FirmwareRevision {self.firmware}"]
        if keyword not in config:
            return err(1000, "Invalid command")  # includes Config: a cyclic attribute, not a command
        if not args:
            return [self._config_line(keyword)]
        if any(a.startswith("#") for a in args) and keyword not in ("Squelch", "AfOut", "Sensitivity"):
            return err(1030, "Relative parameters not supported")
        if keyword == "Name":
            if len(rest) > NAME_MAX:
                return err(1020, "Value out of range")
            self.name = rest
        else:
            try:
                nums = [int(a.lstrip("#")) for a in args]
            except ValueError:
                return err(1010, "Invalid parameter")
            problem = self._set(keyword, args, nums)
            if problem is not None:
                return err(*problem)
        self._config_changed(keyword)
        return [line]  # the positive reply echoes the whole instruction

    def _set(self, keyword: str, args: list[str], nums: list[int]) -> tuple[int, str] | None:
        relative = args[0].startswith("#")
        if keyword == "Frequency":
            if len(nums) not in (1, 3):
                return 1040, "Invalid numbers of parameter"
            if nums[0] % 25 or not 470_000 <= nums[0] <= 1_999_000:
                return 1020, "Value out of range"
            self.frequency_khz = nums[0]
            self.bank, self.chan = (nums[1], nums[2]) if len(nums) == 3 else (0, 0)
            return None
        if len(nums) != 1:
            return 1040, "Invalid numbers of parameter"
        value = nums[0]
        if keyword == "Mute":
            if value not in (0, 1):
                return 1020, "Value out of range"
            self.mute = bool(value)
        elif keyword == "Squelch":
            new = self.squelch + value if relative else value
            if new != 0 and not (5 <= new <= 25 and new % 2):
                return 1020, "Value out of range"
            self.squelch = new
        elif keyword == "AfOut":
            new = self.afout + 3 * value if relative else value
            if new % 3 or not -24 <= new <= 24:
                return 1020, "Value out of range"
            self.afout = new
        elif keyword == "Sensitivity":
            self.sensitivity = self.sensitivity + value if relative else value
        elif keyword == "Mode":
            self.mode = value
        elif keyword == "Equalizer":
            self.equalizer = value
        return None

    def _push(self, line: str, args: list[str], target: tuple[str, int]) -> list[str]:
        if len(args) != 3:
            return [f"1040: Invalid numbers of parameter [ {line} ]"]
        try:
            timeout, cycle, mode = (int(a) for a in args)
        except ValueError:
            return [f"1010: Invalid parameter [ {line} ]"]
        if not 0 <= timeout <= 300 or not 0 <= cycle <= 60_000 or cycle % 100 or not 0 <= mode <= 7:
            return [f"1020: Value out of range [ {line} ]"]
        now = time.monotonic()
        if mode > 0:  # every configuration attribute once, straight away, before the echo
            config = EM_CONFIG if self.kind == "em" else SR_CONFIG
            self._send("".join(self._config_line(k) + "\r" for k in config).encode("ascii"), target)
        if timeout == 0:
            self._pushes.pop(target[0], None)
            if cycle > 0:
                self._send(self._burst(), target)  # "Push 0 100 0 sends the cyclic attributes once"
        else:
            self._pushes[target[0]] = _Push(target, now + timeout, cycle / 1000, mode, now + cycle / 1000)
        return [line]

    def _due(self, now: float) -> None:
        for key, push in list(self._pushes.items()):
            if now >= push.expires:
                del self._pushes[key]  # reporting stops silently when the timeout runs out
            elif push.cycle_s and now >= push.next_due:
                push.next_due = max(push.next_due + push.cycle_s, now)
                self._send(self._burst(), push.target)

    def _live_step(self) -> None:
        rng = self._rng
        if self.tx_present:
            self.rf1 = min(100, max(10, self.rf1 + rng.randrange(-5, 6)))
            self.rf2 = min(100, max(10, self.rf2 + rng.randrange(-5, 6)))
            self.antenna = 1 if self.rf1 >= self.rf2 else 2
            self.af = min(100, max(0, self.af + rng.randrange(-12, 13)))
            self.af2 = min(100, max(0, self.af2 + rng.randrange(-12, 13)))
            if self.battery and rng.random() < 0.002:
                self.battery = BAT_LEVELS[BAT_LEVELS.index(self.battery) - 1]
                self._state_changed()



async def main(argv: list[str] | None = None) -> None:
    """``python -m micboardd.simulators.sennheiser_mcp [host] [port] [model]``: a lively device until ^C."""
    args = sys.argv[1:] if argv is None else argv
    host = args[0] if args else "127.0.0.1"
    port = int(args[1]) if len(args) > 1 else DEFAULT_PORT
    model = args[2] if len(args) > 2 else "EM 300-500 G4"
    sim = McpSim(host, port, model=model, lively=True)
    await sim.start()
    print(f"MCP {model} simulator on {host}:{sim.port}, answering source port {sim.reply_port}")
    try:
        await asyncio.Event().wait()
    finally:
        await sim.stop()


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main())
