"""Sans-IO codec of the Shure command-string protocol: bytes → frames → messages → normalized changes.

Nothing here touches a socket or a clock. :class:`Framer` turns a byte stream into frame bodies (keeping
partial tails, capping frame length); :func:`parse_frame` turns a body into a frozen :class:`Rep`,
:class:`Sample` or :class:`Err`; :func:`interpret` and :func:`sample_meters` turn those into normalized
field changes and :class:`~micboardd.model.Meters` using the family tables in ``vocab``. ``encode_*``
build what we send. SAMPLE handling is the hot path (thousands per second on a large site): it uses
``split`` and ``int`` only, no regexes, no logging.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from ...model import Meters
from .vocab import Decode, Framing, Prop, SampleLayout, Scope, Vocab

MAX_FRAME_BYTES: Final = 512  # the longest real frame (AD quadversity FD-C SAMPLE, 31-wide names) is < 120
MAX_SAMPLE_TOKEN: Final = 8  # SAMPLE tokens are 2-3 digit levels and antenna strings of up to 4 characters
GARBAGE_REPR_BYTES: Final = 48  # how much of a bad frame a log line shows
TEMP_OFFSET_C: Final = -40.0  # BATT_TEMP_C carries a +40 offset (§2.2); sign UNVERIFIED, see decode_temp
UNKNOWN_WORDS: Final = frozenset({"UNKN", "UNKNOWN", ""})
MAX_MHZ_CHARS: Final = 12  # "2500.000000": longer MHz text is no frequency

# Printable ASCII, TAB/CR/LF, and Latin-1 letters (tolerated in names although the reference says ASCII).
_ALLOWED_BYTES: Final = bytes(range(0x20, 0x7F)) + b"\t\r\n" + bytes(range(0xA0, 0x100))


# ----------------------------------------------------------------------------- framing


@dataclass(frozen=True, slots=True)
class Garbage:
    """Bytes that are not a frame (junk between frames, an over-long frame); for logging and counting."""

    data: bytes
    reason: str


class Framer:
    """Splits a byte stream into frame bodies; keeps the unfinished tail for the next ``feed``.

    Angle framing (``< … >``): split on ``>`` (a ``>`` inside an open ``{…`` belongs to the value), then
    each piece must start with ``<`` after optional whitespace such as PSM1000's CRLF. Star framing
    (UHF-R ``* … *``): every non-blank piece between ``*`` is a body. A tail longer than ``max_frame``
    is reported as :class:`Garbage` and dropped up to the next frame start, so a device that never
    sends a delimiter cannot make us buffer without bound.
    """

    __slots__ = ("_buf", "_end", "_max", "_skipping", "_start")

    def __init__(self, framing: Framing = Framing.ANGLE, *, max_frame: int = MAX_FRAME_BYTES) -> None:
        self._start: bytes | None = b"<" if framing is Framing.ANGLE else None
        self._end = b">" if framing is Framing.ANGLE else b"*"
        self._max = max_frame
        self._buf = b""
        self._skipping = False  # after an overflow: drop bytes until the next frame start

    @property
    def pending(self) -> int:
        """Bytes held back as an unfinished frame."""
        return len(self._buf)

    def feed(self, data: bytes) -> list[bytes | Garbage]:
        """Frame bodies (without delimiters) and garbage found in ``data``, in stream order."""
        out: list[bytes | Garbage] = []
        rest: bytes | None = data
        while rest is not None:  # a loop, not recursion: a read full of overflows must not exhaust the stack
            rest = self._feed_once(rest, out)
        return out

    def _feed_once(self, data: bytes, out: list[bytes | Garbage]) -> bytes | None:
        """Frame ``data`` into ``out``; after an overflow, the bytes from the next frame start (else None)."""
        if self._skipping:
            data = self._resync(data)
            if self._skipping:
                return None
        buf = self._buf + data if self._buf else data
        end, start = self._end, self._start
        pos = 0
        while True:
            cut = buf.find(end, pos)
            if cut < 0:
                break
            if start is not None:
                brace = buf.rfind(b"{", pos, cut)
                if brace >= 0 and buf.rfind(b"}", pos, cut) < brace:
                    # A '>' inside an open braced value (a name like "A>B") does not end the frame,
                    # unless a new frame starts before any '}' (then the '{' was junk).
                    close = buf.find(b"}", cut)
                    nxt = buf.find(start, cut)
                    if close < 0 and nxt < 0:
                        break  # wait for the rest of the value
                    if close >= 0 and (nxt < 0 or close < nxt):
                        cut = buf.find(end, close)
                        if cut < 0:
                            break
            self._piece(buf[pos:cut], out)
            pos = cut + 1
        tail = buf[pos:]
        if len(tail) > self._max:
            out.append(Garbage(tail[:GARBAGE_REPR_BYTES], f"no end of frame within {self._max} bytes"))
            self._buf = b""
            self._skipping = True
            rest = self._resync(tail[1:])
            return None if self._skipping else rest
        self._buf = tail
        return None

    def _resync(self, data: bytes) -> bytes:
        """Drop bytes of an over-long frame up to the next frame start; return what follows."""
        marker = self._start if self._start is not None else self._end
        i = data.find(marker)
        if i < 0:
            return b""
        self._skipping = False
        return data[i:] if self._start is not None else data[i + 1 :]

    def _piece(self, piece: bytes, out: list[bytes | Garbage]) -> None:
        if self._start is None:
            if piece.strip():
                self._emit(piece, out)
            return
        i = piece.find(b"<")
        if i == 0:
            self._emit(piece[1:], out)
            return
        if i < 0:
            if piece.strip():
                out.append(Garbage(piece[:GARBAGE_REPR_BYTES], "bytes outside a frame"))
            return
        junk = piece[:i]
        if junk.strip():
            out.append(Garbage(junk[:GARBAGE_REPR_BYTES], "bytes outside a frame"))
        self._emit(piece[i + 1 :], out)

    def _emit(self, body: bytes, out: list[bytes | Garbage]) -> None:
        """A complete frame, unless it is longer than the cap (which then holds whole frames too)."""
        if len(body) > self._max:
            out.append(Garbage(body[:GARBAGE_REPR_BYTES], f"frame longer than {self._max} bytes"))
        else:
            out.append(body)

    def flush(self) -> list[bytes | Garbage]:
        """End of a datagram or stream: whatever is left is garbage unless it is whitespace."""
        tail, self._buf, self._skipping = self._buf, b"", False
        if tail.strip():
            return [Garbage(tail[:GARBAGE_REPR_BYTES], "unfinished frame")]
        return []


# ----------------------------------------------------------------------------- messages


class ParseError(ValueError):
    """A frame body that is not a Shure message."""


@dataclass(frozen=True, slots=True)
class Rep:
    """``REP``/``REPORT``: a property value; ``channel`` None for device-level properties.

    ``value`` is the text after the property name with braces and padding removed; a sub-index
    (antenna, slot) stays in front of it (``"2 012"``) for :func:`interpret` to split off.
    """

    channel: int | None
    prop: str
    value: str


@dataclass(frozen=True, slots=True)
class Sample:
    """``SAMPLE``: the metered values of one channel, as tokens after ``ALL``."""

    channel: int
    values: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Err:
    """``REP ERR``: the device rejected the last command (malformed or out of range)."""

    channel: int | None = None


Message = Rep | Sample | Err


def _channel(token: str) -> int:
    if not (token.isascii() and token.isdigit()) or len(token) > 3:
        raise ParseError(f"bad channel index {token!r}")
    return int(token)


def parse_frame(body: bytes) -> Message:
    """One frame body (delimiters removed) → message; ParseError for anything else."""
    if body.translate(None, _ALLOWED_BYTES):
        raise ParseError("control or non-text bytes in frame")
    text = body.decode("latin-1")
    toks = text.split()
    if not toks:
        raise ParseError("empty frame")
    verb = toks[0]
    if verb == "SAMPLE":  # the hot path: one split, no further string work
        if len(toks) < 3:
            raise ParseError("SAMPLE without values")
        values = toks[3:] if toks[2] == "ALL" else toks[2:]  # MXW omits ALL (§2.3)
        if values and max(map(len, values)) > MAX_SAMPLE_TOKEN:
            raise ParseError("over-long SAMPLE token")  # a 400-digit level is no reading (and no float)
        return Sample(_channel(toks[1]), tuple(values))
    rest = text.strip()[len(verb) :]
    if verb not in ("REP", "REPORT"):
        raise ParseError(f"unknown verb {verb[:12]!r}")
    first, _, rest = rest.lstrip().partition(" ")
    if not first:
        raise ParseError("REP without a property")
    channel: int | None = None
    if first[0].isdigit():
        channel = _channel(first)
        first, _, rest = rest.lstrip().partition(" ")
        if not first:
            raise ParseError("REP without a property")
    if first == "ERR":
        return Err(channel)
    if not (first.isascii() and first.replace("_", "").isalnum()):
        raise ParseError(f"bad property name {first[:24]!r}")
    rest = rest.strip()
    if "{" in rest:
        i = rest.index("{")
        j = rest.rfind("}")
        if j < i:
            raise ParseError(f"unclosed brace in {first}")
        inner = rest[i + 1 : j].strip()
        head = rest[:i].strip()
        rest = f"{head} {inner}" if head else inner
    return Rep(channel, first, rest)


# ----------------------------------------------------------------------------- encoding


def _frame(vocab: Vocab, words: Sequence[str]) -> bytes:
    body = " ".join(w for w in words if w)
    if vocab.framing is Framing.STAR:
        return f"* {body} *{vocab.terminator}".encode("ascii")
    return f"< {body} >{vocab.terminator}".encode("ascii")


def encode_get(vocab: Vocab, prop: str, channel: int | None = None) -> bytes:
    """``< GET [x] PROP >`` in the family's framing (``0`` = all channels where the family allows it)."""
    return _frame(vocab, ("GET", "" if channel is None else str(channel), prop))


def encode_set(vocab: Vocab, prop: str, value: str, channel: int | None = None) -> bytes:
    """``< SET [x] PROP value >``; ``value`` already formatted (see ``format_*``)."""
    return _frame(vocab, ("SET", "" if channel is None else str(channel), prop, value))


def encode_uhfr_meter(channel: int, rate_ms: int) -> bytes:
    """UHF-R ``* METER x ALL sss *`` (units of ~30 ms per MB, UNVERIFIED) or ``* METER x ALL STOP *``."""
    arg = "STOP" if rate_ms <= 0 else f"{max(1, min(999, round(rate_ms / 30))):03d}"
    return f"* METER {channel} ALL {arg} *".encode("ascii")


def format_text(vocab: Vocab, text: str) -> str:
    return f"{{{text}}}" if vocab.braces else text


def format_group_channel(vocab: Vocab, group: int, chan: int) -> str:
    if vocab.group_channel_padded:
        return f"{group:02d},{chan:02d}"
    return f"{{{group},{chan}}}"


def format_frequency(vocab: Vocab, khz: int) -> str:
    return f"{khz:0{vocab.freq_set_digits}d}"


def format_meter_rate(rate_ms: int) -> str:
    return f"{rate_ms:05d}"


def check_text(text: str, limit: int) -> str | None:
    """Why ``text`` cannot be sent as a name (None when it can): length and the characters framing uses."""
    if not 1 <= len(text) <= limit:
        return f"must be 1..{limit} characters (got {len(text)})"
    if not (text.isascii() and text.isprintable()):
        return "must be printable ASCII"
    bad = sorted(set(text) & set("{}<>*"))
    if bad:
        return f"must not contain {''.join(bad)!r} (they frame the protocol)"
    if text != text.strip():
        return "must not start or end with a space (the receiver pads and trims)"
    return None


# ----------------------------------------------------------------------------- value decoding


def _num(text: str) -> int:
    if not (text.isascii() and text.isdigit()):
        raise ValueError(f"not a number: {text[:16]!r}")
    return int(text)


def _text(text: str, _: DecodeContext) -> Any:
    return text or None


def _firmware(text: str, _: DecodeContext) -> Any:
    return text.rstrip("*").strip() or None


def _mhz(text: str) -> int:
    """Tolerate "578.350" (MHz with a dot) from families whose frequency format is UNVERIFIED."""
    if len(text) > MAX_MHZ_CHARS or not text.replace(".", "", 1).isdigit():
        raise ValueError(f"not a frequency: {text[:16]!r}")  # (a 300-digit float is infinite: no OverflowError)
    return round(float(text) * 1000)


def _frequency(text: str, _: DecodeContext) -> Any:
    khz = _num(text) if "." not in text else _mhz(text)
    if khz == 0:
        return None
    if not 25_000 <= khz <= 6_000_000:
        raise ValueError(f"frequency {text!r} is not a plausible kHz value")
    return khz


def _group_channel(text: str, _: DecodeContext) -> Any:
    value = text.strip()
    if not value.replace("-", "").replace(",", "").strip():
        return None  # "--,--": not set
    if "," not in value and " " in value:
        value = ",".join(value.split())  # UHF-R may send two tokens (UNVERIFIED)
    return value


def parse_group_channel(text: str | None) -> tuple[int, int] | None:
    """``"06,06"`` → ``(6, 6)``; None when unset or not two numbers."""
    if not text:
        return None
    g, sep, c = text.partition(",")
    if not sep or not (g.strip().isdigit() and c.strip().isdigit()):
        return None
    return int(g), int(c)


def _gain(text: str, ctx: DecodeContext) -> Any:
    raw = _num(text)
    lo, hi = ctx.vocab.gain_raw_range
    if not lo <= raw <= hi:
        raise ValueError(f"gain {raw} outside {lo}..{hi}")
    return raw - ctx.vocab.gain_offset


def _on_off(text: str, _: DecodeContext) -> Any:
    return {"ON": True, "OFF": False}.get(text.upper())


def _word(text: str, _: DecodeContext) -> Any:
    return None if text.upper() in UNKNOWN_WORDS else text.lower()


def _battery_type(text: str, _: DecodeContext) -> Any:
    return None if text.upper() in UNKNOWN_WORDS else text.upper()


def _tx_model(text: str, _: DecodeContext) -> Any:
    return None if text.upper() in UNKNOWN_WORDS else text


def _bars(text: str, _: DecodeContext) -> Any:
    raw = _num(text)
    if raw == 255:
        return None
    if raw > 5:
        raise ValueError(f"battery bars {raw} outside 0..5")
    return raw


def _uhfr_bars(text: str, _: DecodeContext) -> Any:
    if text.upper() == "U":
        return None
    raw = _num(text)
    if raw > 5:
        raise ValueError(f"battery bars {raw} outside 0..5")
    return raw


def _percent(text: str, _: DecodeContext) -> Any:
    raw = _num(text)
    if raw == 255:
        return None
    if raw > 100:
        raise ValueError(f"percent {raw} outside 0..100")
    return raw


def _minutes(text: str, _: DecodeContext) -> Any:
    raw = _num(text)
    return raw if raw <= 65532 else None  # 65533 comm warning, 65534 calculating, 65535 unknown


def _count(text: str, _: DecodeContext) -> Any:
    raw = _num(text)
    if raw > 65535:
        raise ValueError(f"count {raw} outside 0..65534")
    return None if raw == 65535 else raw


def _temp_c(text: str, ctx: DecodeContext) -> Any:
    raw = _num(text)
    if raw >= 255:  # 255 = unknown; the reading is one byte, so more is no temperature either
        return None
    value = raw + ctx.temp_offset_c
    return value if -40 <= value <= 100 else None  # a reading outside this is the wrong offset, not a battery


def _tx_mute_status(text: str, _: DecodeContext) -> Any:
    return {"ON": True, "OFF": False}.get(text.upper())  # ULX: ON = mute engaged


def _tx_mute_mode(text: str, _: DecodeContext) -> Any:
    return {"ON": False, "MUTE": True}.get(text.upper())  # AD: ON = live, MUTE = muted (§2.1)


def _tx_lock(text: str, _: DecodeContext) -> Any:
    return {"ALL": "all", "LOCKED": "all", "POWER": "power", "MENU": "menu", "NONE": "none"}.get(text.upper())


def _power_mw(text: str, _: DecodeContext) -> Any:
    raw = _num(text)
    return None if raw == 255 else f"{raw}mW"


def _interference(text: str, _: DecodeContext) -> Any:
    return {"NONE": False, "CRITICAL": True, "DETECTED": True}.get(text.upper())


def _encryption_status(text: str, _: DecodeContext) -> Any:
    return {"OK": "ok", "ERROR": "error"}.get(text.upper())


def _int(text: str, _: DecodeContext) -> Any:
    return _num(text)


def _input_db(text: str, _: DecodeContext) -> Any:
    digits = text[1:] if text.startswith("-") else text
    if not (digits.isascii() and digits.isdigit()):
        return None  # the wire format is UNVERIFIED: unknown, not garbage
    value = int(text)
    return value if -67 <= value <= 0 else None


@dataclass(frozen=True, slots=True)
class DecodeContext:
    """What value decoding needs besides the text: the family table and configurable offsets."""

    vocab: Vocab
    temp_offset_c: float = TEMP_OFFSET_C


DECODERS: Final[Mapping[Decode, Callable[[str, DecodeContext], Any]]] = {
    Decode.TEXT: _text,
    Decode.FIRMWARE: _firmware,
    Decode.FREQUENCY: _frequency,
    Decode.GROUP_CHANNEL: _group_channel,
    Decode.GAIN: _gain,
    Decode.ON_OFF: _on_off,
    Decode.TX_MODEL: _tx_model,
    Decode.BARS: _bars,
    Decode.UHFR_BARS: _uhfr_bars,
    Decode.PERCENT: _percent,
    Decode.MINUTES: _minutes,
    Decode.COUNT: _count,
    Decode.TEMP_C: _temp_c,
    Decode.BATTERY_TYPE: _battery_type,
    Decode.WORD: _word,
    Decode.TX_MUTE_STATUS: _tx_mute_status,
    Decode.TX_MUTE_MODE: _tx_mute_mode,
    Decode.TX_LOCK: _tx_lock,
    Decode.POWER_MW: _power_mw,
    Decode.INTERFERENCE: _interference,
    Decode.ENCRYPTION_STATUS: _encryption_status,
    Decode.INT: _int,
    Decode.INPUT_DB: _input_db,
}


def decode_value(ctx: DecodeContext, prop: Prop, value: str) -> Any:
    """A property's value text → normalized value (ValueError when the text is impossible)."""
    if prop.indexed:
        _, _, value = value.partition(" ")
    return DECODERS[prop.decode](value, ctx)


# ----------------------------------------------------------------------------- interpretation


@dataclass(frozen=True, slots=True)
class FieldChange:
    """What one REP means in normalized terms.

    ``channel`` None: ``fields`` are Device fields. Otherwise ``fields`` are Channel fields and ``tx``
    Transmitter fields; ``present`` False means the transmitter is gone (replace the record with
    unknowns), True means one is there, None says nothing about presence. ``session`` carries inputs the
    adapter combines or tracks (meter rate, flash, encryption mode and warning, ULX lock switches).
    """

    channel: int | None
    prop: str
    fields: Mapping[str, Any] = field(default_factory=dict)
    tx: Mapping[str, Any] = field(default_factory=dict)
    present: bool | None = None
    session: Mapping[str, Any] = field(default_factory=dict)
    metered: bool = False  # a metered value reported as REP: nothing to apply


def interpret(ctx: DecodeContext, rep: Rep) -> FieldChange | None:
    """REP → normalized change; None for a property this family's table does not know."""
    prop = ctx.vocab.props.get(rep.prop)
    if prop is None:
        return None
    if prop.scope is Scope.METERED:
        return FieldChange(rep.channel, rep.prop, metered=True)
    value = decode_value(ctx, prop, rep.value)
    if prop.scope is Scope.SESSION:
        session: dict[str, Any] = {prop.field: value}
        return FieldChange(rep.channel, rep.prop, session=session)
    if prop.scope is Scope.DEVICE:
        extra: dict[str, Any] = {}
        if prop.decode is Decode.FIRMWARE and rep.value.rstrip().endswith("*"):
            extra["self_test_failed"] = True
        return FieldChange(None, rep.prop, fields={prop.field: value}, session=extra)
    if rep.channel is None:
        raise ValueError(f"{rep.prop} is a channel property but came without a channel")
    if prop.scope is Scope.CHANNEL:
        return FieldChange(rep.channel, rep.prop, fields={prop.field: value})
    present: bool | None = None
    tx: dict[str, Any] = {prop.field: value}
    if prop.decode is Decode.TX_MODEL or prop.decode is Decode.BARS:
        # CW feedback.js: "transmitter off" = model unknown OR bars 255; a real model/bar count = on.
        present = value is not None
    elif prop.decode is Decode.UHFR_BARS:
        if value is None:
            tx["present"] = None  # UHF-R "U": unknown, and so is whether a transmitter is there
        else:
            present = True
    return FieldChange(rep.channel, rep.prop, tx=tx, present=present)


def combine_lock(power: bool | None, menu: bool | None) -> str | None:
    """ULX TX_PWR_LOCK + TX_MENU_LOCK → "none"/"power"/"menu"/"all"; None until both are known."""
    if power is None or menu is None:
        return None
    if power and menu:
        return "all"
    if power:
        return "power"
    return "menu" if menu else "none"


def combine_encryption(mode: str | None, warning: bool | None, status: str | None) -> str | None:
    """Device encryption mode (ULX ``ENCRYPTION``, AD ``ENCRYPTION_MODE``) + the channel's own signal
    (ULX ``ENCRYPTION_WARNING``, AD ``ENCRYPTION_STATUS``) → the channel's encryption word."""
    if warning or status == "error":
        return "error"
    if mode == "off":
        return "off"
    return status if status is not None else mode


# ----------------------------------------------------------------------------- meters (hot path)


_ANTENNA_MEMO: dict[tuple[str, str], str | None] = {}
_ANTENNA_MEMO_MAX: Final = 512  # distinct antenna strings are few (X/R/B per antenna); bound it anyway


def _antennas(status: str, names: str) -> str | None:
    """Active antennas from a status string: every position that is not ``X`` (off)."""
    key = (status, names)
    active = _ANTENNA_MEMO.get(key, "?")
    if active != "?":
        return active
    active = "".join(names[i] for i, c in enumerate(status[: len(names)]) if c != "X") or None
    if len(_ANTENNA_MEMO) < _ANTENNA_MEMO_MAX:
        _ANTENNA_MEMO[key] = active
    return active


def meters_ulx(device_id: str, sample: Sample, at: float) -> Meters:
    """ULX-D/QLX-D ``nn aaa eee``: RF dBm = aaa - 128; audio dBFS = eee - 50 (inferred, §2.3)."""
    v = sample.values
    return Meters(
        device_id,
        sample.channel,
        rf_dbm=(int(v[1]) - 128,),
        active_antenna=_antennas(v[0], "AB"),
        audio_rms_dbfs=int(v[2]) - 50,  # the doc gives 000-050 but no unit; -50 puts full scale at 0 dBFS
        at=at,
    )


def meters_ad(device_id: str, sample: Sample, at: float) -> Meters:
    """Axient ``qual bitmap peak rms antStat (bm rssi)…``; the antenna string length gives the pair count."""
    v = sample.values
    quality = int(v[0])
    status = v[4]
    n = len(status)
    if len(v) < 5 + 2 * n:
        raise ValueError(f"SAMPLE has {len(v) - 5} RF tokens for {n} antennas")
    if n == 2:  # standard diversity: skip the generator
        rf: tuple[float | None, ...] = (int(v[6]) - 120, int(v[8]) - 120)
    else:
        rf = tuple([int(v[6 + 2 * i]) - 120 for i in range(n)])
    return Meters(
        device_id,
        sample.channel,
        rf_dbm=rf,
        active_antenna=_antennas(status, "AB" if n <= 2 else "1234"),
        link_quality=quality * 20 if 0 <= quality <= 5 else None,  # 0-5 bars → percent; 255 = no link
        audio_peak_dbfs=int(v[2]) - 120,
        audio_rms_dbfs=int(v[3]) - 120,
        clip=bool(int(v[1]) & 0x80),
        at=at,
    )


def meters_slx(device_id: str, sample: Sample, at: float) -> Meters:
    """SLX-D ``peak rms rssi``, each reported - 120 (dBFS, dBFS, dBm; Shure PDF)."""
    v = sample.values
    return Meters(
        device_id,
        sample.channel,
        rf_dbm=(int(v[2]) - 120,),
        audio_peak_dbfs=int(v[0]) - 120,
        audio_rms_dbfs=int(v[1]) - 120,
        at=at,
    )


UHFR_SCALES: Final = ("ur4d", "none")


def meters_uhfr(device_id: str, sample: Sample, at: float, scale: str = "ur4d") -> Meters:
    """UHF-R ``nn rfA rfB bat audio``. CONFLICT/UNVERIFIED units: "ur4d" uses the third-party UR4D
    client's dBm = (v-255)/2 and dBFS = (v+1)/2 - 128; "none" reports antenna only."""
    v = sample.values
    rf: tuple[float | None, ...] = (None, None)
    audio: float | None = None
    if scale == "ur4d":
        rf = ((int(v[1]) - 255) / 2, (int(v[2]) - 255) / 2)
        audio = (int(v[4]) + 1) / 2 - 128
    return Meters(
        device_id, sample.channel, rf_dbm=rf, active_antenna=_antennas(v[0], "AB"), audio_rms_dbfs=audio, at=at
    )


def uhfr_sample_bars(sample: Sample) -> int | None:
    """The battery token of a UHF-R SAMPLE (1-5, ``U`` unknown)."""
    return _uhfr_bars(sample.values[3], _NO_CTX) if len(sample.values) > 3 else None


METER_DECODERS: Final[Mapping[SampleLayout, Callable[[str, Sample, float], Meters]]] = {
    SampleLayout.ULX: meters_ulx,
    SampleLayout.AD: meters_ad,
    SampleLayout.SLX: meters_slx,
    SampleLayout.UHFR: meters_uhfr,
}


def sample_meters(layout: SampleLayout, device_id: str, sample: Sample, at: float) -> Meters:
    """A SAMPLE → Meters in normalized units; ValueError/IndexError when the tokens do not fit the layout."""
    return METER_DECODERS[layout](device_id, sample, at)


_NO_CTX: Final = DecodeContext(Vocab(family="none", props={}))
