"""MCP wire codec, no I/O: reply datagrams → typed items, and command lines to send.

Wire facts (reference/sennheiser-and-others.md §3): case-sensitive ASCII lines ``Keyword p1 … pN<CR>``; a bare
keyword reads, a keyword with parameters sets and the device echoes the whole instruction; errors are
``<code>: <text> [ <instruction> ]``; several lines may share a datagram. ``Push <timeout_s> <cycle_ms> <mode>``
starts cyclic bursts (``RF1 RF2 States RF AF Bat Msg Config`` on a receiver) and config-on-change reports for
``timeout`` seconds; the client re-sends it before then.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

MAX_COMMAND_CHARS: Final = 1500  # G4-MCP p.6: longer input is silently ignored by the device

MAX_NUMBER_CHARS: Final = 9  # the longest MCP number is a 6-digit kHz frequency; more digits are junk

CYCLIC: Final = frozenset({"RF1", "RF2", "RF", "AF", "States", "Bat", "Msg", "Config"})


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


def _printable(text: str) -> bool:
    """Printable ASCII only (0x20-0x7E); no regex, whose ``$`` would let a trailing LF through."""
    return text.isascii() and text.isprintable()


def split_lines(data: bytes) -> list[str]:
    """The lines of a datagram: split on CR (and LF, as RFJS does); cyclic lines also on ``;`` (vendor text)."""
    text = data.decode("latin-1")
    if "\n" in text:
        text = text.replace("\n", "\r")
    out: list[str] = []
    for raw in text.split("\r"):  # runs of CR/LF give empty pieces, skipped below
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
    if any(len(a) > MAX_NUMBER_CHARS for a in args):
        raise McpDecodeError(f"over-long number in {line[:40]!r}")
    try:
        return [int(a) for a in args]
    except ValueError:
        raise McpDecodeError(f"not a number in {line!r}") from None


def _pct(value: int, line: str, hi: int = 255) -> int:
    if not 0 <= value <= hi:
        raise McpDecodeError(f"value {value} out of range in {line!r}")
    return value


def _error_reply(code: int, rest: str) -> ErrorReply:
    """``<text> [ <instruction> ]``, split by hand: one regex for it backtracked for minutes on a 4 KB line."""
    start = rest.find("[")
    if start >= 0 and rest.endswith("]"):
        return ErrorReply(code, rest[:start].strip(), rest[start + 1 : -1].strip() or None)
    return ErrorReply(code, rest.strip(), None)


def parse_line(line: str) -> Item:
    """One reply line → a typed item; raises McpDecodeError for malformed known keywords."""
    if not _printable(line):
        raise McpDecodeError("non-ASCII or control bytes")
    if line[:1].isdigit():
        code, colon, rest = line.partition(":")  # "<code>: <text> [ <instruction> ]"
        if colon and 3 <= len(code) <= 4 and code.isdigit():
            return _error_reply(int(code), rest)
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
    if not _printable(text):
        raise ValueError("MCP commands are printable ASCII only")
    if len(text) + 1 > MAX_COMMAND_CHARS:
        raise ValueError(f"command longer than {MAX_COMMAND_CHARS} characters")
    return text.encode("ascii") + b"\r"
