"""Bad input never crashes a codec: seeded mutation fuzzing of every sans-IO codec from the wire fixtures.

DESIGN.md "Bad input": malformed device bytes get a clear error and never stop the daemon or another
device's session. Here every codec is fed mutations of its own wire fixtures (byte flips, truncation at
every offset, duplication, splicing, delimiter and control bytes, long runs, invalid UTF-8, deep nesting,
huge numbers, wrong JSON types) and may only raise the exception it documents; whatever it returns must
obey the model's ranges (bars 0..5, percent 0..100, finite dBm/dBFS, ints that fit the API's int32).

Cases are drawn from a fixed seed, so a run is repeatable. ``FUZZ_SEED=<n>`` (or ``random``) picks
another, ``FUZZ_SCALE=<x>`` multiplies the case counts for a longer hunt, ``FUZZ_CASE=<i>`` replays one
case of the selected test. A failure names the seed, the case, the command that replays it and the input.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import os
import random
import time
import traceback
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import pytest

from micboardd.adapters.sennheiser import mcp, sscv1
from micboardd.adapters.sennheiser.sscv2.decode import Decoded, ResourceError, decode_resource
from micboardd.adapters.sennheiser.sscv2.resources import Res, resource_path
from micboardd.adapters.sennheiser.sse import (
    DataEvent,
    EventDataError,
    OpenEvent,
    SseDecoder,
    SseEvent,
    SseFramingError,
    parse_event,
)
from micboardd.adapters.shure import vocab as V
from micboardd.adapters.shure.codec import (
    GARBAGE_REPR_BYTES,
    MAX_FRAME_BYTES,
    DecodeContext,
    Err,
    FieldChange,
    Framer,
    Garbage,
    ParseError,
    Rep,
    Sample,
    interpret,
    meters_uhfr,
    parse_frame,
    sample_meters,
    uhfr_sample_bars,
)
from micboardd.config import Config, ConfigError, parse_config
from micboardd.model import Channel, Device, Meters, Transmitter, valid_id
from micboardd.mqtt.commands import CommandRejectedError, CommandRequest, parse_command
from micboardd.mqtt.topics import MAX_CHANNEL_INDEX, Topics

FIXTURES: Final = Path(__file__).parent / "fixtures"

# ============================================================================ seeds and cases


def _base_seed() -> int:
    raw = os.environ.get("FUZZ_SEED", "20240611")
    if raw == "random":
        return random.SystemRandom().randrange(1 << 32)
    return int(raw)


SEED: Final = _base_seed()
SCALE: Final = float(os.environ.get("FUZZ_SCALE", "1"))
ONLY_CASE: Final = os.environ.get("FUZZ_CASE")
SLOW_CASE_S: Final = 2.0  # a case takes milliseconds; seconds mean a backtracking regex or a quadratic loop


@dataclass
class Case:
    """One generated case: its own random stream and the inputs it fed, for the failure message."""

    name: str
    index: int
    rng: random.Random
    inputs: list[tuple[str, object]] = field(default_factory=list)

    def note(self, label: str, value: Any) -> Any:
        self.inputs.append((label, value))
        return value


def _show(value: object, limit: int = 20_000) -> str:
    text = repr(value)
    if len(text) <= limit:
        return text
    half = limit // 2
    return f"{text[:half]} …[{len(text) - limit} chars cut; replay the case for all of it]… {text[-half:]}"


def fuzz(name: str, count: int, body: Callable[[Case], None]) -> None:
    """Run ``count`` cases of ``body``; any failure is re-raised naming seed, case and inputs."""
    indices: Sequence[int] = range(max(1, round(count * SCALE)))
    if ONLY_CASE is not None:
        indices = [int(ONLY_CASE)]
    for i in indices:
        case = Case(name, i, random.Random(f"{SEED}/{name}/{i}"))
        started = time.monotonic()
        try:
            body(case)
            took = time.monotonic() - started
            assert took < SLOW_CASE_S, f"one case took {took:.2f} s: super-linear work on bad input?"
        except Exception as exc:
            inputs = "\n".join(f"  {label} = {_show(value)}" for label, value in case.inputs[-4:])
            where = "".join(traceback.format_exception(exc)[-3:])
            node = os.environ.get("PYTEST_CURRENT_TEST", "").split(" ")[0]
            raise AssertionError(
                f"{name}: case {i} failed; replay: FUZZ_SEED={SEED} FUZZ_CASE={i} python -m pytest '{node}'\n"
                f"{inputs}\n{where}"
            ) from exc


class _Rejected:
    """What :func:`only` returns when the call raised an allowed (documented) exception."""

    def __repr__(self) -> str:
        return "REJECTED"


REJECTED: Final = _Rejected()


def only(allowed: type[BaseException] | tuple[type[BaseException], ...], fn: Callable[..., Any], *args: Any) -> Any:
    """``fn(*args)``, or REJECTED when it raised one of the documented exceptions; anything else propagates."""
    try:
        return fn(*args)
    except allowed:
        return REJECTED


# ============================================================================ the mutation engine

SPECIALS: Final = (
    b">", b"<", b"{", b"}", b"*", b"\r", b"\n", b"\r\n", b"\x00", b"\xff", b" ", b"\t", b":", b",", b";", b"-",
    b"+", b".", b'"', b"[", b"]", b"\\", b"/", b"#",
    b"\xc3\x28", b"\xed\xa0\x80", b"\xf0\x28\x8c\x28", b"\xc2\xb2", b"\xb2", b"\xef\xbb\xbf", b"\x80",
    b"255", b"65535", b"-1", b"UNKN", b"U", b"NaN", b"Infinity", b"-Infinity", b"1e999", b"-0", b"null", b"true",
    b"9" * 40, b"9" * 400, b"{A>B}", b"}>", b"{>",
)
SSE_SPECIALS: Final = (
    b"retry: 3000\n", b"retry: \xc2\xb2\n", b"retry:" + b"9" * 40 + b"\n", b"id: 5\n", b"id: a\x00b\n",
    b"event: open\n", b"event: close\n\n", b"event: zz\n", b": keep-alive\n", b"data\n", b"data:\n\n", b"\n\n",
    b"\xef\xbb\xbf", b"data: " + b"[" * 2000 + b"\n",
)
RUN_UNITS: Final = (
    b"9", b"{", b"}", b">", b"<", b"*", b" ", b"\n", b"\r", b"[", b"]", b"A", b"\xff", b"\x00", b'[{"a":',
)
RUN_REPEATS: Final = (32, 300, 2500)  # 2500 brackets nest deeper than Python's recursion limit


def mutate_bytes(
    rng: random.Random, data: bytes, corpus: Sequence[bytes], max_ops: int = 4, specials: Sequence[bytes] = SPECIALS
) -> bytes:
    """1..max_ops random edits: flips, deletions, truncation, duplication, splicing, specials, long runs."""
    buf = bytearray(data)
    for _ in range(rng.randint(1, max_ops)):
        n = len(buf)
        op = rng.randrange(10)
        at = rng.randint(0, n)
        if op == 0 and n:  # flip one bit
            i = rng.randrange(n)
            buf[i] ^= 1 << rng.randrange(8)
        elif op == 1 and n:  # any byte
            buf[rng.randrange(n)] = rng.randrange(256)
        elif op == 2:  # a delimiter, control byte, invalid UTF-8 or sentinel word
            buf[at:at] = rng.choice(specials)
        elif op == 3:  # a very long run
            buf[at:at] = rng.choice(RUN_UNITS) * rng.choice(RUN_REPEATS)
        elif op == 4 and n:  # delete a range
            end = min(n, at + rng.randint(1, 16))
            del buf[at:end]
        elif op == 5:  # truncate
            del buf[at:]
        elif op == 6 and n:  # duplicate a range somewhere else
            i = rng.randrange(n)
            piece = buf[i : i + rng.randint(1, 64)]
            buf[at:at] = piece
        elif op == 7 and corpus:  # splice with another valid input
            other = rng.choice(corpus)
            buf = buf[:at] + other[rng.randint(0, len(other)) :]
        elif op == 8 and n:  # a digit becomes a huge number
            digits = [i for i, b in enumerate(buf) if 0x30 <= b <= 0x39]
            if digits:
                i = rng.choice(digits)
                buf[i:i] = b"9" * rng.choice((5, 12, 40, 400))
        elif op == 9 and n:  # drop everything before a random offset (a stream that starts mid-frame)
            del buf[:at]
    return bytes(buf)


def chunked(rng: random.Random, data: bytes) -> list[bytes]:
    """The same bytes as one read, one byte per read, or random read sizes."""
    mode = rng.randrange(4)
    if mode == 0 or not data:
        return [data]
    if mode == 1 and len(data) <= 800:
        return [data[i : i + 1] for i in range(len(data))]
    out: list[bytes] = []
    i = 0
    while i < len(data):
        step = rng.randint(1, 97)
        out.append(data[i : i + step])
        i += step
    return out


def nest(depth: int, inner: Any, key: str | None = None) -> Any:
    """``inner`` under ``depth`` levels of arrays, or of objects with ``key``."""
    for _ in range(depth):
        inner = [inner] if key is None else {key: inner}
    return inner


WRONG_VALUES: Final[tuple[Any, ...]] = (
    None, True, False, 0, -1, 1, 2, 3, 5, 6, 100, 101, 255, 256, 424, 65534, 65535, 65536, 2**31, -(2**63), 10**400,
    -(10**400), 0.5, -0.0, 1e308, -1e308, 1e-308, float("inf"), float("-inf"), float("nan"),
    "", " ", "x", "UNKN", "NaN", "255", "-52.5", "\u0663", "\u00b2", "\x00", "\udcff", "é" * 3, "A" * 3000,
    "NoLink", "Battery", "Factory", "User",
    [], [None], [1, "a"], [[]], ["NoLink", 5], [424], {}, {"": None}, {"value": None}, {"value": "-52"},
    {"#": {"lifetime": 10}}, {"type": None, "bank": -1, "channel": 10**400},
)
KEYS: Final = (
    "", "#", "osc", "xid", "error", "state", "subscribe", "value", "gauge", "lifetime", "type", "name", "mute",
    "gain", "frequency", "presets", "bank", "channel", "id", "transmitter", "warnings", "sessionUUID", "path",
    "rx1", "rx2", "rx0", "rx9", "tx1", "tx9", "mates", "m", "mm", "skx", "battery", "rssi", "rsqi", "divi", "af",
    "/api/channel/0", "/api/channel/99", "/api/transmitters/0/battery", "/device/site", "/api/rf/channels/1",
    "/api/channel/\u0663", "/api/channel/" + "9" * 40,
)


def wrong_value(rng: random.Random) -> Any:
    if rng.randrange(8) == 0:
        key = rng.choice((None, None, "a", "rx1", "value"))
        return nest(rng.randint(10, 40), copy.deepcopy(rng.choice(WRONG_VALUES)), key)
    return copy.deepcopy(rng.choice(WRONG_VALUES))


def _slots(node: Any, out: list[tuple[Any, Any]]) -> None:
    if isinstance(node, dict):
        for key in list(node):
            out.append((node, key))
            _slots(node[key], out)
    elif isinstance(node, list):
        for i in range(len(node)):
            out.append((node, i))
            _slots(node[i], out)


def mutate_json(rng: random.Random, doc: Any, corpus: Sequence[Any], max_ops: int = 4) -> Any:
    """A structurally mutated deep copy: wrong types, deleted/added/renamed keys, splices, wrapping, nesting."""
    root: list[Any] = [copy.deepcopy(doc)]
    for _ in range(rng.randint(1, max_ops)):
        slots: list[tuple[Any, Any]] = [(root, 0)]
        _slots(root[0], slots)
        container, key = rng.choice(slots)
        node = container[key]
        op = rng.randrange(7)
        if op == 0:
            container[key] = wrong_value(rng)
        elif op == 1 and container is not root:
            del container[key]
        elif op == 2:
            if isinstance(node, dict):
                node[rng.choice(KEYS)] = wrong_value(rng)
            elif isinstance(node, list):
                node.insert(rng.randint(0, len(node)), wrong_value(rng))
            else:
                container[key] = {rng.choice(KEYS): node}
        elif op == 3 and corpus:
            container[key] = copy.deepcopy(rng.choice(corpus))
        elif op == 4:
            container[key] = [node] if rng.randrange(2) else {rng.choice(KEYS): node}
        elif op == 5 and isinstance(container, dict):
            container[rng.choice(KEYS)] = container.pop(key)
        elif op == 6 and isinstance(node, list) and node:
            node.append(copy.deepcopy(rng.choice(node)))
    return root[0]


def json_bytes(rng: random.Random, value: Any) -> bytes:
    """JSON text of ``value`` (NaN/Infinity allowed, as Python writes them; lone surrogates → invalid UTF-8)."""
    if rng.randrange(4) == 0:
        return json.dumps(value, ensure_ascii=False).encode("utf-8", "surrogatepass")
    return json.dumps(value).encode("ascii")


def subvalues(doc: Any) -> list[Any]:
    slots: list[tuple[Any, Any]] = []
    _slots(doc, slots)
    return [c[k] for c, k in slots]


# ============================================================================ model ranges

INT32: Final = 2**31 - 1
INT64: Final = 2**63 - 1


def _num(v: Any) -> bool:
    """A real, finite number that the API's double fields can carry (a 400-digit int cannot)."""
    if isinstance(v, bool) or not isinstance(v, int | float):
        return False
    try:
        return math.isfinite(float(v))
    except OverflowError:
        return False


def _num_in(lo: float, hi: float) -> Callable[[Any], bool]:
    return lambda v: v is None or (_num(v) and lo <= v <= hi)


def _int_in(lo: int, hi: int) -> Callable[[Any], bool]:
    return lambda v: v is None or (isinstance(v, int) and not isinstance(v, bool) and lo <= v <= hi)


def _opt(kind: type) -> Callable[[Any], bool]:
    return lambda v: v is None or (isinstance(v, kind) and (kind is bool or not isinstance(v, bool)))


def _strs(v: Any) -> bool:
    return isinstance(v, tuple) and all(isinstance(w, str) and w for w in v)


def _rf(v: Any) -> bool:
    return isinstance(v, tuple) and all(x is None or _num(x) for x in v)


# What every codec may hand on, per model field. Ints must fit the API's int32 (frequency: int64).
RULES: Final[Mapping[type, Mapping[str, Callable[[Any], bool]]]] = {
    Device: {
        "model": _opt(str), "name": _opt(str), "firmware": _opt(str), "serial": _opt(str), "rf_band": _opt(str),
        "channel_count": _int_in(0, INT32),
    },
    Channel: {
        "name": _opt(str), "frequency_khz": _int_in(1, INT64), "group_channel": _opt(str),
        "gain_db": _num_in(-100, 100), "muted": _opt(bool), "encryption": _opt(str), "interference": _opt(bool),
        "warnings": _strs,
    },
    Transmitter: {
        "present": _opt(bool), "model": _opt(str), "device_name": _opt(str), "battery_bars": _int_in(0, 5),
        "battery_percent": _int_in(0, 100), "runtime_minutes": _int_in(0, INT32), "battery_type": _opt(str),
        "battery_health_percent": _int_in(0, 100), "battery_cycles": _int_in(0, INT32),
        "battery_temp_c": _num_in(-273, 1000), "charging": _opt(bool), "muted": _opt(bool), "lock": _opt(str),
        "rf_power": _opt(str),
    },
    Meters: {
        "rf_dbm": _rf, "active_antenna": _opt(str), "link_quality": _int_in(0, 100),
        "audio_rms_dbfs": lambda v: v is None or _num(v), "audio_peak_dbfs": lambda v: v is None or _num(v),
        "clip": lambda v: isinstance(v, bool),
    },
}

# What a valid wire sample must give besides: readings a real receiver could show.
PLAUSIBLE: Final[Mapping[str, Callable[[Any], bool]]] = {
    "rf_dbm": lambda v: all(x is None or -150 <= x <= 20 for x in v),
    "audio_rms_dbfs": _num_in(-200, 20),
    "audio_peak_dbfs": _num_in(-200, 20),
    "frequency_khz": _int_in(25_000, 6_000_000),
    "gain_db": _num_in(-40, 80),
    "battery_temp_c": _num_in(-40, 100),
}


def check_fields(cls: type, fields: Mapping[str, Any], *, plausible: bool = False) -> None:
    """Every field exists on the model class and holds a value in the model's range."""
    rules = RULES[cls]
    names = {f.name for f in dataclasses.fields(cls)}
    for key, value in fields.items():
        assert key in names, f"{cls.__name__} has no field {key!r} (value {value!r})"
        assert key in rules, f"no range rule for {cls.__name__}.{key}; add one to RULES"
        assert rules[key](value), f"{cls.__name__}.{key} = {_show(value, 200)} is outside the model's range"
        if plausible and key in PLAUSIBLE:
            assert PLAUSIBLE[key](value), f"{cls.__name__}.{key} = {value!r} is not a plausible reading"


def check_meters(m: Meters, *, plausible: bool = False) -> None:
    assert isinstance(m, Meters)
    check_fields(Meters, {k: getattr(m, k) for k in RULES[Meters]}, plausible=plausible)
    assert m.rf_best_dbm is None or _num(m.rf_best_dbm)


# ============================================================================ Shure

SHURE_FAMILY_OF: Final = {
    "ULXD4D": V.ULXD, "QLXD4": V.QLXD, "AD4D": V.AXIENT, "AD4Q": V.AXIENT, "SLXD4D": V.SLXD, "P10T": V.PSM1000,
    "UR4D": V.UHFR,
}
SHURE_LAYOUTS: Final = (V.SampleLayout.ULX, V.SampleLayout.AD, V.SampleLayout.SLX, V.SampleLayout.UHFR)


def _shure_load(path: Path) -> bytes:
    """Fixture → wire bytes ('#' lines are notes; line breaks are not wire; \\r \\n escapes are CR LF)."""
    lines = [ln for ln in path.read_text("utf-8").splitlines() if ln and not ln.startswith("#")]
    return "".join(ln.replace("\\r", "\r").replace("\\n", "\n") for ln in lines).encode("ascii")


SHURE_STREAMS: Final = {p.name: _shure_load(p) for p in sorted((FIXTURES / "shure").glob("*.txt"))}


def _shure_bodies() -> list[bytes]:
    bodies: list[bytes] = []
    for name, data in SHURE_STREAMS.items():
        framer = Framer(SHURE_FAMILY_OF[name.split("_")[0]].framing)
        bodies += [b for b in framer.feed(data) + framer.flush() if isinstance(b, bytes)]
    return bodies


SHURE_BODIES: Final = _shure_bodies()
SHURE_PROPS: Final = sorted({p for fam in V.FAMILIES.values() for p in fam.props} | {"ERR", "ALL", "TX_BATT"})
SHURE_TOKENS: Final = (
    "", "0", "00", "000", "001", "004", "005", "006", "020", "060", "061", "100", "101", "120", "255", "256", "999",
    "65532", "65533", "65534", "65535", "65536", "-1", "-01", "-000", "-67", "-68", "+5", "1_0", "5.5", ".", "5.",
    "578.350", "0614650", "6000001", "24999", "9" * 12, "9" * 400, "UNKN", "UNKNOWN", "U", "u", "ON", "OFF", "MUTE",
    "ALL", "LOCKED", "X", "XX", "AB", "BX", "BBBB", "ABXR", "XXXXXXXXXX", "{", "}", "{}", "{x}", "--,--", "6,6",
    ",", "\xb2", "\xb2\xb3", "\xe9", "ERR", "REP", "REPORT", "SAMPLE", "*", "0" * 30,
)


def mutate_shure_text(rng: random.Random, body: bytes) -> bytes:
    """Token-level edits of a frame body that keep it parseable often enough to reach ``interpret``."""
    toks = body.decode("latin-1").split()
    for _ in range(rng.randint(1, 3)):
        op = rng.randrange(6)
        i = rng.randrange(len(toks) + 1)
        if op == 0 and toks:
            toks[min(i, len(toks) - 1)] = rng.choice(SHURE_TOKENS)
        elif op == 1:
            toks.insert(i, rng.choice(SHURE_TOKENS))
        elif op == 2 and len(toks) > 1:
            del toks[min(i, len(toks) - 1)]
        elif op == 3 and len(toks) > 1:  # another property name (from any family) in the same frame
            idx = 2 if len(toks) > 2 and toks[1].isdigit() else 1
            toks[min(idx, len(toks) - 1)] = rng.choice(SHURE_PROPS)
        elif op == 4:  # another channel index, or none
            if len(toks) > 1 and toks[1].isdigit():
                if rng.randrange(3):
                    toks[1] = str(rng.choice((0, 1, 2, 4, 8, 9, 99, 999, 1000)))
                else:
                    del toks[1]
            else:
                toks.insert(1, str(rng.randint(0, 9)))
        elif op == 5 and toks:  # a token from another frame
            other = rng.choice(SHURE_BODIES).decode("latin-1").split()
            if other:
                toks.insert(i, rng.choice(other))
    sep = rng.choice((" ", " ", "  ", "\t"))
    return sep.join(toks).encode("latin-1")


def _check_shure_frames(framer: Framer, chunks: list[bytes], cap: int) -> list[bytes]:
    bodies: list[bytes] = []
    for chunk in chunks:
        items = framer.feed(chunk)
        assert framer.pending <= cap, f"framer holds {framer.pending} bytes, cap {cap}"
        for item in items:
            if isinstance(item, Garbage):
                assert isinstance(item.data, bytes) and len(item.data) <= GARBAGE_REPR_BYTES and item.reason
            else:
                assert isinstance(item, bytes), f"framer returned {type(item).__name__}"
                bodies.append(item)
    for item in framer.flush():
        assert isinstance(item, Garbage) and item.reason
    assert framer.pending == 0
    return bodies


def _check_parsed(msg: Any) -> None:
    assert isinstance(msg, Rep | Sample | Err), type(msg)
    if isinstance(msg, Sample):
        assert isinstance(msg.channel, int) and 0 <= msg.channel <= 999
        assert all(isinstance(v, str) and v for v in msg.values)
    elif msg.channel is not None:
        assert isinstance(msg.channel, int) and 0 <= msg.channel <= 999
    if isinstance(msg, Rep):
        assert msg.prop and isinstance(msg.value, str)


def check_field_change(change: FieldChange | None, *, plausible: bool = False) -> None:
    if change is None:
        return
    assert isinstance(change, FieldChange)
    if change.channel is None:
        check_fields(Device, change.fields, plausible=plausible)
    else:
        check_fields(Channel, change.fields, plausible=plausible)
    check_fields(Transmitter, change.tx, plausible=plausible)
    assert change.present in (None, True, False)


SHURE_CONTEXTS: Final = tuple(DecodeContext(v) for v in V.FAMILIES.values())


def _shure_messages(body: bytes) -> None:
    """One body through parse → interpret (every family) / sample_meters (every layout)."""
    msg = only(ParseError, parse_frame, body)
    if msg is REJECTED:
        return
    _check_parsed(msg)
    if isinstance(msg, Rep):
        for ctx in SHURE_CONTEXTS:
            change = only(ValueError, interpret, ctx, msg)
            if change is not REJECTED:
                check_field_change(change)
    elif isinstance(msg, Sample):
        for layout in SHURE_LAYOUTS:
            m = only((ValueError, IndexError), sample_meters, layout, "fuzz", msg, 1.0)
            if m is not REJECTED:
                check_meters(m)
        m = only((ValueError, IndexError), meters_uhfr, "fuzz", msg, 1.0, "none")
        if m is not REJECTED:
            check_meters(m)
        bars = only(ValueError, uhfr_sample_bars, msg)
        assert bars is REJECTED or bars is None or (isinstance(bars, int) and 0 <= bars <= 5), bars


@pytest.mark.parametrize("framing", list(V.Framing))
def test_shure_framer_never_raises_and_caps_its_tail(framing: V.Framing) -> None:
    corpus = list(SHURE_STREAMS.values())

    def body(c: Case) -> None:
        cap = c.rng.choice((MAX_FRAME_BYTES, MAX_FRAME_BYTES, 64, 8, 1))
        data = c.note("stream", mutate_bytes(c.rng, c.rng.choice(corpus), corpus, max_ops=6))
        chunks = chunked(c.rng, data)
        c.note("read sizes", [len(x) for x in chunks])
        c.note("max_frame", cap)
        for b in _check_shure_frames(Framer(framing, max_frame=cap), chunks, cap):
            _shure_messages(b)

    fuzz(f"shure-framer-{framing.value}", 300, body)


def test_shure_framer_truncated_at_every_offset() -> None:
    for name, data in SHURE_STREAMS.items():
        for framing in V.Framing:
            for i in range(len(data) + 1):
                try:
                    _check_shure_frames(Framer(framing), [data[:i]], MAX_FRAME_BYTES)
                    if i % 7 == 0:  # a stream that starts mid-frame (every 7th offset keeps this test quick)
                        _check_shure_frames(Framer(framing), [data[i:]], MAX_FRAME_BYTES)
                except Exception as exc:
                    raise AssertionError(f"{name} {framing.value} cut at {i}: {data[:i]!r} | {data[i:]!r}") from exc


def test_shure_parse_and_interpret_mutated_frames_for_every_family() -> None:
    def body(c: Case) -> None:
        frame = c.rng.choice(SHURE_BODIES)
        if c.rng.randrange(3):
            frame = mutate_shure_text(c.rng, frame)
        if c.rng.randrange(3) == 0:
            frame = mutate_bytes(c.rng, frame, SHURE_BODIES, max_ops=2)
        _shure_messages(c.note("body", frame))

    fuzz("shure-messages", 4000, body)


# ============================================================================ Sennheiser SSCv2 (SSE stream + resources)

SSE_STREAMS: Final = [p.read_bytes() for p in sorted((FIXTURES / "sennheiser").glob("sscv2_*.sse"))]
SSE_EXPECTED: Final[list[dict[str, Any]]] = json.loads(
    (FIXTURES / "sennheiser" / "sscv2_EW-DX-EM4_fw4.0-constructed_session.expected.json").read_text()
)
# Resources the session fixture does not carry, in the shapes decode.py reads (OAS 1.7 names), so every
# decoder gets mutated input; values are illustrative.
SSC2_MORE: Final = {
    "/api/ssc/version": {"protocol": "1.7", "schema": "1.7.0"},
    "/api/device/identity": {"product": "EWDX4CHDS", "serial": "1234567890", "hardwareRevision": "1"},
    "/api/device/state": {"state": "Normal", "warnings": ["Busy"]},
    "/api/device/identification": {"visual": False},
    "/api/firmware/update/state": {"deviceVersion": "4.0.0", "state": "Idle"},
    "/api/rf": {"code": "Q1-6", "ranges": [{"start": 470200, "end": 526000, "stepSize": 25}]},
    "/api/rf/encryption": {"enabled": True},
    "/api/transmitters": [{"id": 0, "transmitter": {"type": "EW_DX_SK", "name": "BASS"}}, {"id": 1}],
    "/api/channel/0/identify": {"enabled": False},
    "/api/transmitters/0/warnings": ["LowBattery"],
}
SSE_PAYLOADS: Final = [e["data"] for e in SSE_EXPECTED if isinstance(e.get("data"), dict)] + [SSC2_MORE]
SSE_VALUES: Final = [v for p in SSE_PAYLOADS for v in subvalues(p)]
SSC2_PATHS: Final = [
    *(resource_path(r) for r in (Res.VERSION, Res.IDENTITY, Res.SITE, Res.STATE, Res.IDENTIFICATION, Res.FIRMWARE,
                                 Res.RF, Res.ENCRYPTION, Res.TX_LIST)),
    *(resource_path(r, i) for r in Res if r not in (Res.VERSION, Res.IDENTITY, Res.SITE, Res.STATE,
                                                    Res.IDENTIFICATION, Res.FIRMWARE, Res.RF, Res.ENCRYPTION,
                                                    Res.TX_LIST) for i in (1, 2, 4, 5)),
    "/device/site", "api/channel/0/", "/api/channel/-1", "/api/channel/\u0663", "/api/channel/" + "9" * 40,
    "/api/channel/" + "9" * 5000, "/api/transmitters/0/battery/extra", "", "/", "//", "/api",
]


def check_decoded(d: Decoded | None, *, plausible: bool = False) -> None:
    if d is None:
        return
    assert isinstance(d, Decoded) and isinstance(d.res, Res)
    assert d.index is None or (isinstance(d.index, int) and 1 <= d.index <= INT32), d.index
    check_fields(Device, d.device, plausible=plausible)
    check_fields(Channel, d.channel, plausible=plausible)
    check_fields(Transmitter, d.tx, plausible=plausible)
    check_fields(Meters, d.meters, plausible=plausible)
    assert d.warnings is None or _strs(d.warnings)


def _ssc2_event(ev: SseEvent) -> None:
    parsed = only(EventDataError, parse_event, ev)
    if isinstance(parsed, OpenEvent):
        assert parsed.session and isinstance(parsed.path, str)
    if isinstance(parsed, DataEvent):
        for path, value in parsed.resources:
            assert isinstance(path, str) and path.startswith("/api")
            d = only(ResourceError, decode_resource, path, value)
            if d is not REJECTED:
                check_decoded(d)


def _check_sse_feed(decoder: SseDecoder, chunks: list[bytes]) -> list[SseEvent]:
    """Feed until the first framing error (the adapter drops the link there); every event well-formed."""
    events: list[SseEvent] = []
    for chunk in chunks:
        got = only(SseFramingError, decoder.feed, chunk)
        if got is REJECTED:
            break
        for ev in got:
            assert isinstance(ev, SseEvent) and isinstance(ev.event, str) and isinstance(ev.data, str)
            assert ev.id is None or (isinstance(ev.id, str) and "\0" not in ev.id)
            assert ev.retry is None or (isinstance(ev.retry, int) and 0 <= ev.retry <= INT64)
        events += got
    return events


def test_sse_decoder_on_mutated_streams_and_events() -> None:
    def body(c: Case) -> None:
        limits = c.rng.choice(({}, {}, {"max_line": 300, "max_event": 2000}, {"max_line": 64, "max_event": 64}))
        specials = SSE_SPECIALS if c.rng.randrange(2) else SPECIALS
        data = c.note("stream", mutate_bytes(c.rng, c.rng.choice(SSE_STREAMS), SSE_STREAMS, 6, specials))
        chunks = chunked(c.rng, data)
        c.note("read sizes", [len(x) for x in chunks])
        c.note("limits", limits)
        for ev in _check_sse_feed(SseDecoder(**limits), chunks):
            _ssc2_event(ev)

    fuzz("sse-stream", 800, body)


def test_sse_decoder_truncated_at_every_offset_and_bounded() -> None:
    for data in SSE_STREAMS:
        for i in range(len(data) + 1):
            try:
                # a stream cut at i dispatches only complete events, the same ones the whole stream has
                _check_sse_feed(SseDecoder(), [data[:i]])
                # a stream joined at i (a reconnect mid-event) may start with a torn event: parse that one
                for ev in _check_sse_feed(SseDecoder(), [data[i:]])[:1]:
                    _ssc2_event(ev)
            except Exception as exc:
                raise AssertionError(f"cut at {i}: {data[:i]!r} | {data[i:]!r}") from exc
    # A line that never ends is refused as soon as it passes the cap, however it is split.
    for step in (1, 7, 64, 1000):
        dec = SseDecoder(max_line=256)
        fed = 0
        while fed <= 256:
            got = only(SseFramingError, dec.feed, b"d" * step)
            fed += step
            if got is REJECTED:
                break
        assert got is REJECTED and fed <= 256 + step, (step, fed)


def test_sscv2_events_with_mutated_json() -> None:
    opens = [e["data"] for e in SSE_EXPECTED if e["event"] == "open"]

    def body(c: Case) -> None:
        kind = c.rng.choice(("message", "message", "message", "open", "close", "other"))
        doc = c.rng.choice(opens if kind == "open" else SSE_PAYLOADS)
        text = json_bytes(c.rng, mutate_json(c.rng, doc, SSE_VALUES))
        if c.rng.randrange(3) == 0:
            text = mutate_bytes(c.rng, text, [], max_ops=2)
        # what the SSE layer would hand on: UTF-8 decoded with replacement
        _ssc2_event(c.note("event", SseEvent(event=kind, data=text.decode("utf-8", "replace"))))

    fuzz("sscv2-events", 900, body)


def test_sscv2_decode_resource_with_wrong_types() -> None:
    pairs = [(path, value) for doc in SSE_PAYLOADS for path, value in doc.items()]

    def body(c: Case) -> None:
        path, value = c.rng.choice(pairs)
        if c.rng.randrange(4) == 0:  # another resource's path for this value
            path = c.rng.choice(SSC2_PATHS)
        c.note("path", path)
        value = c.note("value", mutate_json(c.rng, value, SSE_VALUES))
        d = only(ResourceError, decode_resource, path, value)
        if d is not REJECTED:
            check_decoded(d)

    fuzz("sscv2-resources", 3000, body)


# ============================================================================ Sennheiser SSCv1

SSCV1_DOCS: Final = [json.loads(p.read_text()) for p in sorted((FIXTURES / "sennheiser").glob("sscv1_*.json"))]
SSCV1_WIRES: Final = [s["wire"].encode("utf-8") for d in SSCV1_DOCS for s in d["samples"]]
SSCV1_TREES: Final = [t for t in (only(ValueError, json.loads, w) for w in SSCV1_WIRES) if isinstance(t, dict)]
SSCV1_VALUES: Final = [v for t in SSCV1_TREES for v in subvalues(t)]
SSCV1_LOOKUPS: Final = [
    (table, n, sscv1.build_lookup(table, n), sscv1.ConvCtx(table.runtime_unit_s))
    for table in sscv1.VARIANTS.values()
    for n in (1, 2, 4)
]


def check_interpretation(r: sscv1.Interpretation, channels: int, *, plausible: bool = False) -> None:
    assert isinstance(r, sscv1.Interpretation)
    check_fields(Device, r.device, plausible=plausible)
    for group in (r.channels, r.tx, r.meters):
        assert all(isinstance(n, int) and 0 <= n <= channels for n in group), sorted(group)
    for fields in r.channels.values():
        rest = dict(fields)
        for key in ("rx_warnings", "tx_warnings"):
            if key in rest:
                assert _strs(rest.pop(key)), fields
        check_fields(Channel, rest, plausible=plausible)
    for fields in r.tx.values():
        check_fields(Transmitter, fields, plausible=plausible)
    for fields in r.meters.values():
        check_fields(Meters, fields, plausible=plausible)
    assert all(isinstance(n, int) for n in r.absent)


def _sscv1_message(data: bytes) -> None:
    msg = only(sscv1.SscDecodeError, sscv1.decode, data)
    if msg is REJECTED:
        return
    assert isinstance(msg, sscv1.SscMessage)
    assert all(isinstance(p, tuple) and all(isinstance(s, str) for s in p) for p in msg.paths)
    assert all(isinstance(e.code, int) for e in msg.errors)
    for table, n, lookup, ctx in SSCV1_LOOKUPS:
        check_interpretation(sscv1.interpret(msg, lookup, table, ctx, n), n)


def test_sscv1_decode_and_interpret_mutated_datagrams() -> None:
    def body(c: Case) -> None:
        _sscv1_message(c.note("datagram", mutate_bytes(c.rng, c.rng.choice(SSCV1_WIRES), SSCV1_WIRES)))

    fuzz("sscv1-bytes", 1500, body)
    for wire in SSCV1_WIRES:
        for i in range(len(wire) + 1):
            try:
                _sscv1_message(wire[:i])
            except Exception as exc:
                raise AssertionError(f"cut at {i}: {wire[:i]!r}") from exc


def test_sscv1_interpret_mutated_trees_for_every_variant() -> None:
    def body(c: Case) -> None:
        tree = mutate_json(c.rng, c.rng.choice(SSCV1_TREES), SSCV1_VALUES)
        _sscv1_message(c.note("datagram", json_bytes(c.rng, tree)))

    fuzz("sscv1-trees", 600, body)


# ============================================================================ Sennheiser MCP

MCP_DOCS: Final = [json.loads(p.read_text()) for p in sorted((FIXTURES / "sennheiser").glob("mcp_*.json"))]
MCP_WIRES: Final = [s["wire"].encode("latin-1") for d in MCP_DOCS for s in d["samples"]]


def check_mcp_item(item: mcp.Item, *, plausible: bool = False) -> None:
    """The ranges a parsed MCP item promises, and the model values the normalizers make of it."""
    if isinstance(item, mcp.Battery):
        assert item.percent is None or 0 <= item.percent <= 100
        check_fields(Transmitter, {"battery_percent": item.percent, "battery_bars": mcp.battery_bars(item.percent)})
    elif isinstance(item, mcp.RfAntenna):
        assert item.antenna in (1, 2) and 0 <= item.min_pct <= 255 and 0 <= item.max_pct <= 255
        check_fields(Meters, {"rf_dbm": (mcp.rf_dbm(item.min_pct), mcp.rf_dbm(item.max_pct))}, plausible=plausible)
    elif isinstance(item, mcp.RfLevel):
        assert item.antenna in (0, 1, 2) and 0 <= item.level_pct <= 255
        check_fields(Meters, {"rf_dbm": (mcp.rf_dbm(item.level_pct),)}, plausible=plausible)
    elif isinstance(item, mcp.AfLevel):
        assert 0 <= item.peak_pct <= 255 and 0 <= item.hold_pct <= 255 and 0 <= item.mute_bits <= 15
        assert -50 <= mcp.af_dbfs(min(item.peak_pct, 100)) <= 0
    elif isinstance(item, mcp.SrAfLevel):
        assert all(0 <= v <= 255 for v in item.levels)
    elif isinstance(item, mcp.ConfigCounter):
        assert 0 <= item.value <= 999
    elif isinstance(item, mcp.Frequency):
        khz = item.khz if item.khz > 0 else None  # what the adapter stores
        check_fields(Channel, {"frequency_khz": khz, "group_channel": mcp.group_channel(item)}, plausible=plausible)
    elif isinstance(item, mcp.States):
        assert _int_in(-INT32, INT32)(item.first) and _int_in(-INT32, INT32)(item.second)
    elif isinstance(item, mcp.Warnings):
        assert all(mcp.warning_word(w) for w in item.words)
    elif isinstance(item, mcp.ErrorReply):
        assert 0 <= item.code <= 9999
    elif isinstance(item, mcp.PushEcho):
        assert all(_int_in(-INT32, INT32)(v) for v in (item.timeout_s, item.cycle_ms, item.mode))
    else:
        assert isinstance(item, mcp.Name | mcp.Firmware | mcp.Mute | mcp.Setting), type(item)


def _mcp_datagram(data: bytes) -> None:
    dg = mcp.parse_datagram(data)  # documented never to raise
    assert isinstance(dg, mcp.Datagram) and len(dg.items) == len(dg.lines)
    for item in dg.items:
        check_mcp_item(item)
    for line, reason in dg.bad:
        assert isinstance(line, str) and reason
    for line in mcp.split_lines(data):
        got = only(mcp.McpDecodeError, mcp.parse_line, line)
        if got is not REJECTED:
            check_mcp_item(got)


def test_mcp_mutated_datagrams_and_lines() -> None:
    def body(c: Case) -> None:
        _mcp_datagram(c.note("datagram", mutate_bytes(c.rng, c.rng.choice(MCP_WIRES), MCP_WIRES)))
        line = mutate_bytes(c.rng, c.rng.choice(MCP_WIRES).split(b"\r")[0], [], max_ops=2)
        got = only(mcp.McpDecodeError, mcp.parse_line, c.note("line", line.decode("latin-1")))
        if got is not REJECTED:
            check_mcp_item(got)

    fuzz("mcp", 900, body)
    for wire in MCP_WIRES:
        for i in range(len(wire) + 1):
            _mcp_datagram(wire[:i])
            _mcp_datagram(wire[i:])


# ============================================================================ MQTT commands

TOPICS: Final = Topics(base="micboard/arena", site="arena")
COMMAND_TOPICS: Final = (
    "micboard/arena/devices/rack1/set", "micboard/arena/devices/rack1/identify/set",
    "micboard/arena/devices/rack1/name/set", "micboard/arena/channels/rack1/2/set",
    *(f"micboard/arena/channels/rack1/2/{a}/set" for a in (
        "identify", "name", "muted", "mute", "gain_db", "gain", "frequency_khz", "frequency_mhz", "group_channel")),
)
COMMAND_PAYLOADS: Final = (
    b"", b"ON", b"OFF", b"true", b"0", b"mute", b"Lead Vox", b"24", b"-3.5", b"606.4", b"606400", b"6,6",
    b'"6,6"', b'{"group": 6, "channel": 6}', b'{"identify": true}', b'{"identify": false}', b'{"name": "Vox"}',
    b'{"name": "Vox", "muted": false, "gain_db": 12}', b'{"frequency_mhz": 606.4}', b'{"frequency_khz": 606400}',
    b'{"group_channel": {"group": 1, "channel": 2}}', b"null", b"[]", b"{}",
)
COMMAND_JSON: Final = [
    t for t in (only(ValueError, json.loads, p) for p in COMMAND_PAYLOADS) if isinstance(t, dict | list)
]
TOPIC_PARTS: Final = (
    "", "+", "#", "\u00b2", "\u0663", "0", "1", "999", "1000", "9" * 50, "9" * 5000, "-1", "Rack1", "a b", "\x00",
    "é", "devices", "channels", "set", "slots", "state", "rx_rack1", "ch2_rack1", "ch\u00b2_rack1", "config",
)


def mutate_topic(rng: random.Random, topic: str) -> str:
    parts = topic.split("/")
    for _ in range(rng.randint(1, 3)):
        op = rng.randrange(5)
        i = rng.randrange(len(parts))
        if op == 0:
            parts[i] = rng.choice(TOPIC_PARTS)
        elif op == 1:
            parts.insert(i, rng.choice(TOPIC_PARTS))
        elif op == 2 and len(parts) > 1:
            del parts[i]
        elif op == 3:
            parts[i] += rng.choice(TOPIC_PARTS)
        else:
            raw = mutate_bytes(rng, "/".join(parts).encode("utf-8"), [], max_ops=2)
            parts = raw.decode("utf-8", "replace").split("/")
    return "/".join(parts)


def _check_request(req: CommandRequest) -> None:
    assert isinstance(req, CommandRequest) and valid_id(req.device_id) and req.commands
    assert req.channel is None or 1 <= req.channel <= MAX_CHANNEL_INDEX
    for cmd in req.commands:
        for f in dataclasses.fields(cmd):
            value = getattr(cmd, f.name)
            if isinstance(value, float):
                assert math.isfinite(value), f"{type(cmd).__name__}.{f.name} = {value}"


def test_mqtt_parse_command_only_rejects() -> None:
    def body(c: Case) -> None:
        topic = c.rng.choice(COMMAND_TOPICS)
        if c.rng.randrange(3) == 0:
            topic = mutate_topic(c.rng, topic)
        roll = c.rng.randrange(3)
        if roll == 0:
            payload = mutate_bytes(c.rng, c.rng.choice(COMMAND_PAYLOADS), list(COMMAND_PAYLOADS))
        elif roll == 1:
            payload = json_bytes(c.rng, mutate_json(c.rng, c.rng.choice(COMMAND_JSON), []))
        else:
            payload = json_bytes(c.rng, wrong_value(c.rng))
        c.note("topic", topic)
        req = only(CommandRejectedError, parse_command, TOPICS, topic, c.note("payload", payload))
        if req is not REJECTED:
            _check_request(req)
        # the retained-topic inventory reads whatever the broker holds under the base: never a crash
        TOPICS.classify(topic.replace("/set", "/state"))
        TOPICS.classify(topic)
        obj = ["", *topic.split("/")][-2]
        TOPICS.parse_discovery(f"homeassistant/device/micboardd_arena/{obj}/config")

    fuzz("mqtt-commands", 3000, body)


# ============================================================================ config


def _good_config(tmp: Path) -> dict[str, Any]:
    (tmp / "secret.pw").write_text("hunter2\n")
    (tmp / "cred").write_text("s3cret")
    return {
        "site": "arena", "log_level": "info", "show_lock": False,
        "store": {"path": str(tmp / "m.db"), "history_days": 14},
        "defaults": {"meter_rate_ms": 500},
        "api": {
            "socket": str(tmp / "api.sock"), "socket_mode": "0660", "tcp_listen": "127.0.0.1:50051",
            "tls_cert_file": "c.pem", "tls_key_file": "k.pem", "reflection": True,
            "tokens": [{"name": "ops", "role": "operator", "token": "t0k"},
                       {"name": "adm", "role": "admin", "token_file": "secret.pw"}],
        },
        "mqtt": {
            "enabled": True, "host": "127.0.0.1", "port": 1883, "username": "u", "password_file": "secret.pw",
            "tls": False, "tls_ca_file": "ca.pem", "client_id": "c", "base_topic": "micboard/arena",
            "discovery": True, "discovery_prefix": "homeassistant", "flat_topics": False, "meter_interval_s": 1.0,
            "meter_deadband_db": 1.0, "commands": {"enabled": True, "rename": True, "dangerous": False},
        },
        "alerts": {"low_battery_bars": 1, "low_runtime_minutes": 30},
        "devices": [
            {"id": "rack1", "model": "ULXD4Q", "host": "127.0.10.1", "meter_rate_ms": 500, "channels": 4,
             "name": "Rack 1", "enabled": True},
            {"family": "sscv2", "host": "127.0.11.1", "port": 443, "username": "api", "password": "pw",
             "tls_ca_file": "ca.pem", "tls_insecure": False, "options": {"heartbeat_s": 5}},
            {"family": "sscv1", "host": "127.0.12.1", "local_port": 0, "options": {"variant": "ewd"}},
            {"family": "mcp", "host": "127.0.13.1", "password_credential": "cred"},
        ],
    }


def _config_paths(node: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    if isinstance(node, dict):
        for key, value in node.items():
            yield (*path, key)
            yield from _config_paths(value, (*path, key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield (*path, i)
            yield from _config_paths(value, (*path, i))


def _set_path(doc: Any, path: tuple[Any, ...], value: Any) -> None:
    for key in path[:-1]:
        doc = doc[key]
    doc[path[-1]] = value


def _check_config(doc: Any, base: Path) -> None:
    try:
        cfg = parse_config(doc, source="fuzz.toml", base_dir=base)
    except ConfigError as exc:
        problems, text = exc.problems, str(exc)
    else:
        assert isinstance(cfg, Config)
        return
    assert problems and text, "ConfigError without problems"
    for path, msg in problems:
        assert isinstance(path, str) and path, f"problem with an empty key path: {msg!r}"
        assert isinstance(msg, str) and msg


def test_config_wrong_type_at_every_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path))
    (tmp_path / "binary.pw").write_bytes(b"\xff\xfe\x00not utf-8")
    good = _good_config(tmp_path)
    assert isinstance(parse_config(good, base_dir=tmp_path), Config)
    wrong: tuple[Any, ...] = (  # one of each kind: wrong type, out of range, unreadable path, empty, nested junk
        None, True, -1, 10**30, 1.5, float("nan"), "", "Bad Id", "a\x00b", "binary.pw", str(tmp_path), [], [{}], {},
        {"": {"zz": 1}},
    )
    for path in _config_paths(good):
        for value in wrong:
            doc = copy.deepcopy(good)
            _set_path(doc, path, copy.deepcopy(value))
            try:
                _check_config(doc, tmp_path)
            except Exception as exc:
                raise AssertionError(f"config with {'.'.join(map(str, path))} = {value!r} failed") from exc

    extra_keys: tuple[Any, ...] = ("", " ", "zz", "password", "password_file", "token", "options", 5, None)

    def body(c: Case) -> None:
        doc = copy.deepcopy(good)
        for _ in range(c.rng.randint(1, 5)):
            paths = list(_config_paths(doc))
            path = c.rng.choice(paths)
            op = c.rng.randrange(4)
            parent: Any = doc
            for key in path[:-1]:
                parent = parent[key]
            if op == 0:
                _set_path(doc, path, copy.deepcopy(c.rng.choice(wrong)))
            elif op == 1:
                del parent[path[-1]]
            elif op == 2 and isinstance(parent, dict):
                parent[c.rng.choice(extra_keys)] = copy.deepcopy(c.rng.choice(wrong))
            elif op == 3 and isinstance(parent, list):
                parent.append(copy.deepcopy(c.rng.choice(parent)))
        _check_config(c.note("config", doc), tmp_path)

    fuzz("config", 120, body)


# ============================================================================ valid fixtures obey the model


def test_valid_shure_fixtures_normalize_into_model_ranges() -> None:
    seen_meters = seen_changes = 0
    for name, data in SHURE_STREAMS.items():
        vocab = SHURE_FAMILY_OF[name.split("_")[0]]
        ctx = DecodeContext(vocab)
        framer = Framer(vocab.framing)
        for item in framer.feed(data) + framer.flush():
            assert isinstance(item, bytes), f"{name}: {item}"
            msg = parse_frame(item)
            if isinstance(msg, Rep):
                change = interpret(ctx, msg)
                check_field_change(change, plausible=True)
                seen_changes += change is not None
            elif isinstance(msg, Sample):
                check_meters(sample_meters(vocab.sample, name, msg, 1.0), plausible=True)
                seen_meters += 1
    assert seen_changes > 100 and seen_meters >= 10, (seen_changes, seen_meters)


def test_valid_sscv2_fixture_normalizes_into_model_ranges() -> None:
    decoded = 0
    for data in SSE_STREAMS:
        for ev in SseDecoder().feed(data):
            parsed = parse_event(ev)
            if isinstance(parsed, DataEvent):
                for path, value in parsed.resources:
                    d = decode_resource(path, value)
                    check_decoded(d, plausible=True)
                    decoded += d is not None
    assert decoded >= 15


def test_valid_sscv1_fixtures_normalize_into_model_ranges() -> None:
    count = 0
    for doc in SSCV1_DOCS:
        table = sscv1.VARIANTS[doc["variant"]]
        n = int(doc["channels"])
        lookup, ctx = sscv1.build_lookup(table, n), sscv1.ConvCtx(table.runtime_unit_s)
        for sample in doc["samples"]:
            msg = sscv1.decode(sample["wire"].encode("utf-8"))
            r = sscv1.interpret(msg, lookup, table, ctx, n)
            check_interpretation(r, n, plausible=True)
            count += len(r.device) + len(r.channels) + len(r.tx) + len(r.meters)
    assert count >= 15


def test_valid_mcp_fixtures_normalize_into_model_ranges() -> None:
    items = 0
    for wire in MCP_WIRES:
        dg = mcp.parse_datagram(wire)
        for item in dg.items:
            check_mcp_item(item, plausible=True)
        items += len(dg.items)
    assert items >= 20


# ============================================================================ regressions: exact inputs fuzzing found
# Each of these crashed a codec (or produced an out-of-range value) before its fix.


@pytest.mark.parametrize(
    ("family", "body"),
    [
        # a 400-digit battery cycle count reached the model (and the API's int32) as a number
        ("ulxd", b" REP 1 BATT_CYCLE 0004" + b"9" * 400 + b"2 "),
        # a temperature beyond any float: OverflowError instead of "unknown"
        ("axient", b" REP 2 TX_BATT_TEMP_C 2" + b"9" * 420 + b"55 "),
    ],
)
def test_regression_shure_huge_numbers_in_a_rep(family: str, body: bytes) -> None:
    change = only(ValueError, interpret, DecodeContext(V.FAMILIES[family]), parse_frame(body))
    if change is not REJECTED:
        check_field_change(change)


def test_regression_shure_sample_with_a_huge_token_or_negative_quality() -> None:
    huge = b" SAMPLE 1 ALL ;AX 087 " + b"9" * 420 + b"031 "
    with pytest.raises(ParseError):
        parse_frame(huge)
    # AD channel quality "-01" was reported as link quality -20 %
    sample = parse_frame(b"SAMPLE 1 ALL -01 031 102 102 BB 31 086 31 065")
    assert isinstance(sample, Sample)
    m = sample_meters(V.SampleLayout.AD, "ad", sample, 1.0)
    assert m.link_quality is None
    check_meters(m)


def test_regression_shure_framer_survives_a_read_of_nothing_but_overflows() -> None:
    # every "<" starts a frame that overflows the cap: the framer recursed once per overflow (RecursionError)
    framer = Framer(V.Framing.ANGLE)
    items = framer.feed(b"* REP" + b"<" * 4000)
    assert len(items) > 1000 and all(isinstance(i, Garbage) for i in items)
    assert framer.pending <= MAX_FRAME_BYTES
    framer = Framer(V.Framing.ANGLE, max_frame=1)
    assert len(framer.feed(b"* REP" + b"<" * 2900)) == 2900 and framer.pending <= 1


def test_regression_sse_retry_and_json_a_parser_cannot_take() -> None:
    dec = SseDecoder()
    events = dec.feed(b"retry: \xc2\xb2\ndata: x\n\nretry: " + b"9" * 5000 + b"\ndata: y\n\n")
    assert [e.retry for e in events] == [None, None]
    for data in ("[" * 5000, "1" * 5000, '{"a": ' + "1" * 5000 + "}"):
        with pytest.raises(EventDataError):
            parse_event(SseEvent("message", data))
        with pytest.raises(EventDataError):
            parse_event(SseEvent("open", data))


@pytest.mark.parametrize(
    ("path", "value"),
    [
        ("/api/channel/0", {"name": "VOX1", "gain": 10**400}),  # OverflowError converting to float
        ("/api/channel/" + "9" * 5000, {"name": "VOX1"}),  # int() refuses 5000 digits
        ("/api/channel/\u0663", {"name": "VOX1"}),  # an Arabic-Indic 3 was channel 4
        ("/api/channel/" + "9" * 40 + "/signalQualityIndicator", {"value": 88}),  # channel 10**40
        ("/api/rf/channels/0", {"frequency": 5182099999999999999999999999999999999999999990}),
    ],
)
def test_regression_sscv2_resources(path: str, value: Any) -> None:
    d = decode_resource(path, value)
    check_decoded(d)
    assert d is None or d.index == 1


@pytest.mark.parametrize(
    "datagram",
    [
        b'{"a":' + b"1" * 5000 + b"}",  # json's digit limit raised a bare ValueError
        b'{"osc":{"error":[Infinity]}}',  # int(inf): OverflowError
        b'{"osc":{"error":[NaN]}}',  # int(nan): ValueError
        b'{"m":{"rx1":{"rssi":' + b"9" * 400 + b"}}}",  # math.isfinite(huge int): OverflowError
        b'{"rx1":{"name":"VOX 999991","frequency":65999999999999999991950,"mute":false}}',
        b'{"rx1": {"name": "PASTOR", "carrier": 1e-308, "audio_mute": []}}',  # frequency 0 kHz
        b'{"mm":[[151,155,141,145,1,0,29999904,83,95],[41,41,33,33,0,0,0,0,0]]}',  # link quality 11764668 %
        b'{"mm": [[151, 155, 141, 145, 1, 0, 204, 83, 95], [41, 41, 33, 33, 0, 0, -18.3, 0, 0]]}',  # -7 %
        b" " * 40_000,
    ],
)
def test_regression_sscv1(datagram: bytes) -> None:
    _sscv1_message(datagram)


def test_regression_mcp_error_reply_regex_backtracking() -> None:
    # "<code>: [" then 4000 spaces: the error-reply regex backtracked for over a minute (the whole daemon's loop)
    started = time.monotonic()
    for line in ("1000: [" + " " * 4000 + "x", "1000: x " + "[" * 4000, "1000: " + "[ " * 2000):
        item = mcp.parse_line(line)
        assert isinstance(item, mcp.ErrorReply) and item.code == 1000 and item.instruction is None
    assert time.monotonic() - started < 1.0
    assert mcp.parse_line("1000: Invalid command [ Frequency 822000 2 10 ]") == mcp.ErrorReply(
        1000, "Invalid command", "Frequency 822000 2 10"
    )


def test_regression_mcp_numbers_beyond_the_api() -> None:
    dg = mcp.parse_datagram(b" -3\rEqualizer 0\rPush 60999999999999999999999999999999999 100 7\rFrequency " + b"9" * 40)
    bad = [line for line, _ in dg.bad]
    assert "Push 60999999999999999999999999999999999 100 7" in bad and "Frequency " + "9" * 40 in bad
    for item in dg.items:
        check_mcp_item(item)


@pytest.mark.parametrize(
    ("topic", "payload"),
    [
        ("micboard/arena/channels/rack1/1/gain_db/set", b"1" * 400),  # math.isfinite(huge int)
        ("micboard/arena/channels/rack1/1/set", b'{"frequency_mhz": 1e306}'),  # round(inf)
        ("micboard/arena/channels/rack1/1/set", b"[" * 3000),  # RecursionError in json
        ("micboard/arena/channels/rack1/1/name/set", b'{"name": "x"}' + b" " * 5000),  # over the size cap
        ("micboard/arena/channels/rack1/\u00b2/set", b"x"),  # "²".isdigit() but int("²") fails
        ("micboard/arena/channels/rack1/" + "9" * 5000 + "/set", b"x"),
    ],
)
def test_regression_mqtt_commands(topic: str, payload: bytes) -> None:
    with pytest.raises(CommandRejectedError):
        parse_command(TOPICS, topic, payload)


def test_regression_mqtt_retained_topics_with_odd_digits() -> None:
    for topic in ("micboard/arena/slots/\u00b2/state", "micboard/arena/channels/rack1/\u00b2/state",
                  "micboard/arena/slots/" + "9" * 5000 + "/state"):
        assert TOPICS.classify(topic)[0] == "other"
    assert TOPICS.parse_discovery("homeassistant/device/micboardd_arena/ch\u00b2_rack1/config") is None


def test_regression_config_unreadable_secrets_and_an_empty_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path))
    (tmp_path / "binary.pw").write_bytes(b"\xff\xfe\x00not utf-8")
    good = _good_config(tmp_path)
    for path, value in (
        (("api", "tokens", 1, "token_file"), "a\x00b"),  # ValueError: embedded null byte
        (("mqtt", "password_file"), "binary.pw"),  # UnicodeDecodeError
        (("devices", 3, "password_credential"), "c\x00"),
    ):
        doc = copy.deepcopy(good)
        _set_path(doc, path, value)
        with pytest.raises(ConfigError) as err:
            parse_config(doc, base_dir=tmp_path)
        assert "\\xff" not in str(err.value)  # a secret file's bytes never reach the message
    doc = copy.deepcopy(good)
    doc[""] = 1
    with pytest.raises(ConfigError) as err:
        parse_config(doc, base_dir=tmp_path)
    assert [p for p, _ in err.value.problems] == ['""']
