"""Wire value codecs of the simulated Shure receivers: state value ⇄ the token a receiver sends.

Each codec turns a simulator state value (normalized: dB, kHz, bool, lock words) into the exact token
the reference documents (zero padding, braces and space padding, sentinels) and parses a SET argument
back, raising :class:`BadValue` for anything the device would answer with ``REP ERR``.
Written from ``reference/shure.md`` §1.2, §2.1 and §2.2 only; never from the adapters' codecs.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Protocol

# Characters a receiver accepts in a name: printable ASCII without the framing characters.
_NAME_RE: Final = re.compile(r"^[\x20-\x7e]+$")
_FORBIDDEN_IN_NAME: Final = frozenset("{}<>*")
_INT_RE: Final = re.compile(r"^-?\d+$")


class BadValue(ValueError):
    """A SET argument the receiver rejects (out of range, malformed): it answers ``REP ERR``."""


class Toggle:
    """Marker for ``TOGGLE`` (``AUDIO_MUTE TOGGLE``): flip the current value."""

    def __repr__(self) -> str:
        return "TOGGLE"


TOGGLE: Final = Toggle()


class Codec(Protocol):
    """How one property's value looks on the wire."""

    def encode(self, value: Any) -> str: ...

    def decode(self, raw: str) -> Any: ...


@dataclass(frozen=True, slots=True)
class Text:
    """A string: ``{Lead Vox   }`` braced and space-padded to ``width``, or bare (PSM1000, UHF-R)."""

    width: int | None
    set_max: int = 0  # longest name accepted on SET (SLX-D reports 31 but takes 8); 0 = read-only
    braces: bool = True

    def encode(self, value: Any) -> str:
        text = "" if value is None else str(value)
        if not self.braces:
            return text
        width = self.width or len(text)
        return "{" + text[:width].ljust(width) + "}"

    def decode(self, raw: str) -> str:
        if self.braces:
            if len(raw) < 2 or raw[0] != "{" or raw[-1] != "}":
                raise BadValue(f"string value must be in braces: {raw!r}")
            raw = raw[1:-1]
        text = raw.rstrip(" ")
        if not text or not _NAME_RE.match(text) or _FORBIDDEN_IN_NAME & set(text):
            raise BadValue(f"not a printable name: {raw!r}")
        if len(text) > self.set_max:
            raise BadValue(f"name longer than {self.set_max} characters: {text!r}")
        return text


@dataclass(frozen=True, slots=True)
class Num:
    """An integer: ``raw = value * scale + offset``, zero-padded to ``digits``; ``None`` → ``unknown``."""

    digits: int | None
    lo: int  # raw bounds accepted on SET (and never exceeded when sending)
    hi: int
    unknown: int | str | None = None  # 255, 65535, "U"
    offset: int = 0
    scale: int = 1  # +1, or -1 where a larger raw number means less (UHF-R gain)

    def raw(self, value: Any) -> int | str:
        if value is None:
            if self.unknown is None:
                raise ValueError("this value has no 'unknown' encoding")
            return self.unknown
        raw: int = round(float(value)) * self.scale + self.offset
        return min(max(raw, self.lo), self.hi)

    def encode(self, value: Any) -> str:
        raw = self.raw(value)
        if isinstance(raw, str) or self.digits is None:
            return str(raw)
        if raw < 0:
            return "-" + str(-raw).zfill(self.digits - 1)
        return str(raw).zfill(self.digits)

    def decode(self, raw: str) -> int:
        if not _INT_RE.match(raw) or len(raw.lstrip("-")) > max(self.digits or 0, 6):
            raise BadValue(f"not a number: {raw!r}")
        number = int(raw)
        if not self.lo <= number <= self.hi:
            raise BadValue(f"{number} outside {self.lo}..{self.hi}")
        return (number - self.offset) // self.scale


@dataclass(frozen=True, slots=True)
class Flag:
    """A two-state value (ON/OFF, 1/0, CRITICAL/NONE …) held as a bool; ``None`` → ``unknown``."""

    on: str = "ON"
    off: str = "OFF"
    unknown: str | None = None
    toggle: bool = False  # accepts TOGGLE on SET (AUDIO_MUTE)

    def encode(self, value: Any) -> str:
        if value is None:
            if self.unknown is None:
                raise ValueError("this flag has no 'unknown' encoding")
            return self.unknown
        return self.on if value else self.off

    def decode(self, raw: str) -> bool | Toggle:
        token = raw.upper()
        if token == self.on:
            return True
        if token == self.off:
            return False
        if self.toggle and token == "TOGGLE":
            return TOGGLE
        raise BadValue(f"expected {self.on} or {self.off}: {raw!r}")


@dataclass(frozen=True, slots=True)
class Choice:
    """One of a fixed set of wire tokens, held as the token itself; ``None`` → ``unknown``."""

    values: tuple[str, ...]
    unknown: str | None = None

    def encode(self, value: Any) -> str:
        if value is None:
            if self.unknown is None:
                raise ValueError("this choice has no 'unknown' encoding")
            return self.unknown
        return str(value)

    def decode(self, raw: str) -> str:
        token = raw.upper()
        if token not in self.values:
            raise BadValue(f"expected one of {', '.join(self.values)}: {raw!r}")
        return token


@dataclass(frozen=True, slots=True)
class Mapped:
    """A normalized word (``"menu"``) shown as a family's own token (``MENU``); ``None`` → ``unknown``."""

    tokens: Mapping[str, str]  # normalized → wire
    unknown: str | None = None
    _back: dict[str, str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_back", {wire: norm for norm, wire in self.tokens.items()})

    def encode(self, value: Any) -> str:
        if value is None or value not in self.tokens:
            if self.unknown is None:
                raise ValueError(f"no token for {value!r}")
            return self.unknown
        return self.tokens[value]

    def decode(self, raw: str) -> str:
        try:
            return self._back[raw.upper()]
        except KeyError:
            raise BadValue(f"expected one of {', '.join(self._back)}: {raw!r}") from None


@dataclass(frozen=True, slots=True)
class LockPart:
    """ULX-D/QLX-D split the transmitter lock into TX_PWR_LOCK and TX_MENU_LOCK (ON/OFF/UNKN)."""

    part: str  # "power" or "menu"
    unknown: str = "UNKN"

    def encode(self, value: Any) -> str:
        if value is None:
            return self.unknown
        return "ON" if value in (self.part, "all") else "OFF"

    def decode(self, raw: str) -> str:
        raise BadValue("the transmitter lock is read-only")


@dataclass(frozen=True, slots=True)
class TempF:
    """Battery temperature in °F from the °C state value, with the +40 offset (sign UNVERIFIED, §2.2)."""

    unknown: int = 255

    def encode(self, value: Any) -> str:
        if value is None:
            return str(self.unknown)
        return str(min(max(round(value * 9 / 5 + 32) + 40, 0), 254)).zfill(3)

    def decode(self, raw: str) -> int:
        raise BadValue("temperature is read-only")


@dataclass(frozen=True, slots=True)
class GroupChan:
    """Group and channel, ``(g, c)`` or ``None`` (``--,--``, which cannot be SET).

    ULX-D/QLX-D ``{01,01}``, AD ``{01,01     }``, SLX-D ``{6,6       }`` (SX p.8), PSM1000 bare
    ``01,01``; UHF-R two tokens ``01 01`` (UNVERIFIED).
    """

    braces: bool = True
    width: int | None = None  # brace padding width
    zero_pad: bool = True
    sep: str = ","

    def encode(self, value: Any) -> str:
        if value is None:
            text = f"--{self.sep}--"
        else:
            group, chan = value
            text = f"{group:02d}{self.sep}{chan:02d}" if self.zero_pad else f"{group}{self.sep}{chan}"
        if not self.braces:
            return text
        return "{" + text.ljust(self.width or len(text)) + "}"

    def decode(self, raw: str) -> tuple[int, int]:
        text = raw
        if self.braces:
            if len(text) < 2 or text[0] != "{" or text[-1] != "}":
                raise BadValue(f"group/channel must be in braces: {raw!r}")
            text = text[1:-1]
        parts = text.strip().replace(" ", ",").split(",") if self.sep == " " else text.strip().split(",")
        parts = [p for p in parts if p]
        if len(parts) != 2 or not all(p.isdigit() and len(p) <= 2 for p in parts):
            raise BadValue(f"not a group,channel pair: {raw!r}")
        return int(parts[0]), int(parts[1])
