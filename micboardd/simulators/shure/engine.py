"""What a simulated Shure receiver answers: one command text in, the REP bodies it sends out.

Pure state logic with no I/O: the server frames the bodies and decides who receives them. GET replies
go to the asking client only; a SET's echo (and its linked REPs) goes to every connected client, as
every non-metered change does on the real devices (§1.2). Unknown parameters and parameters the model
lacks get no answer at all; bad values and malformed commands get ``REP ERR``.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Final, Protocol

from .models import ModelSpec
from .state import SLOTS, TX_ATTRS, SimChannel, SimDevice
from .values import TOGGLE, BadValue, Num
from .vocab import ULX_METERED, Prop, SetKind, Sub

log = logging.getLogger(__name__)

_TOKEN_RE: Final = re.compile(r"\{[^}]*\}|\S+")
MIN_METER_RATE_MS: Final = 100  # faster than 100 ms is refused (SX pp.9-10)
MAX_METER_RATE_MS: Final = 65535
# UHF-R `* METER ch ALL sss *`: MB computes sss = interval / 30 ms, so one unit is about 30 ms (UNVERIFIED).
UHFR_METER_UNIT_MS: Final = 30


def tokenize(text: str) -> list[str]:
    """Split a command into tokens, keeping ``{braced values}`` (with their spaces) as one token."""
    return _TOKEN_RE.findall(text)


def normalize(text: str) -> str:
    """The command as tests compare it: outer whitespace gone, single spaces between tokens."""
    return " ".join(tokenize(text))


@dataclass(frozen=True, slots=True)
class Reply:
    """One message body to send; ``broadcast`` ones go to every connected client."""

    body: str
    broadcast: bool = False


class Hooks(Protocol):
    """What the server does about side effects of a SET."""

    def meter_rate_changed(self) -> None: ...

    def flash_started(self, channel: int | None) -> None: ...


class _Err(Exception):
    """The command gets ``REP ERR``."""


class ShureProtocol:
    """The command interpreter of one simulated receiver."""

    def __init__(
        self,
        spec: ModelSpec,
        device: SimDevice,
        channels: Sequence[SimChannel],
        hooks: Hooks,
        *,
        label: str,
        ulx_meter_props: bool = True,
    ) -> None:
        self.spec = spec
        self.family = spec.family
        self.device = device
        self.channels = channels
        self._hooks = hooks
        self._label = label
        self._reply = spec.family.framing.reply
        self._hidden = frozenset() if ulx_meter_props else ULX_METERED

    # ------------------------------------------------------------------------------------ bodies

    def rep(self, prop: Prop, ch: SimChannel | None, sub: int | None = None) -> str:
        """The REP body for one property of the device (``ch`` None) or a channel."""
        target: Any = self.device if ch is None else ch
        value = getattr(target, prop.attr)
        if sub is not None:
            value = value[sub - 1]
        encoded = prop.codec.encode(value)
        if ch is None:
            return f"{self._reply} {prop.name} {encoded}"
        if sub is not None:
            return f"{self._reply} {ch.index} {prop.name} {sub} {encoded}"
        return f"{self._reply} {ch.index} {prop.name} {encoded}"

    def err(self) -> str:
        return f"{self._reply} ERR"

    def _subs(self, prop: Prop, ch: SimChannel) -> range:
        if prop.sub is Sub.SLOT:
            return range(1, SLOTS + 1)
        return range(1, ch.antennas + 1)

    def _visible(self, props: Iterable[Prop]) -> list[Prop]:
        return [p for p in props if p.name not in self._hidden]

    def channel_reps(self, ch: SimChannel, props: Iterable[Prop]) -> list[str]:
        bodies: list[str] = []
        for prop in props:
            if prop.sub is None:
                bodies.append(self.rep(prop, ch))
            else:
                bodies.extend(self.rep(prop, ch, sub) for sub in self._subs(prop, ch))
        return bodies

    def reps_for_attrs(self, ch: SimChannel | None, attrs: Iterable[str]) -> list[str]:
        """REPs of every property showing one of ``attrs`` (what an unsolicited change reports)."""
        changed = frozenset(attrs)
        if ch is None:
            return [self.rep(p, None) for p in self._visible(self.family.device) if p.attr in changed]
        tx_changed = bool(changed & frozenset(TX_ATTRS)) or "tx_present" in changed
        props = [
            p
            for p in self._visible(self.family.channel)
            if not p.metered and (p.attr in changed or (p.sub is Sub.SLOT and tx_changed))
        ]
        return self.channel_reps(ch, props)

    def tx_reps(self, ch: SimChannel) -> list[str]:
        """Every transmitter-side REP of a channel, as sent when a transmitter goes off or comes on."""
        return self.channel_reps(ch, [p for p in self.family.channel if p.tx])

    def dump(self, index: int | None) -> list[str]:
        """``GET x ALL``: device properties, then every property of the channel(s), metered ones included."""
        targets = self._targets(index if index is not None else 0)
        bodies = [self.rep(p, None) for p in self._visible(self.family.device)]
        for ch in targets:
            bodies.extend(self.channel_reps(ch, self._visible(self.family.channel)))
        return bodies

    # ---------------------------------------------------------------------------------- commands

    def handle(self, text: str) -> list[Reply]:
        """Answer one command (the text between the delimiters)."""
        toks = tokenize(text)
        if not toks:
            return []
        try:
            return self._handle(toks)
        except _Err as exc:
            log.debug("%s: REP ERR for %r: %s", self._label, text, exc)
            return [Reply(self.err())]

    def _handle(self, toks: list[str]) -> list[Reply]:
        verb = toks[0].upper()
        if verb == "METER" and self.family.framing.udp:
            self._uhfr_meter(toks[1:])
            return []
        if verb not in ("GET", "SET"):
            raise _Err(f"unknown verb {verb}")
        rest = toks[1:]
        index: int | None = None
        if rest and rest[0].isdigit():
            index = int(rest[0])
            rest = rest[1:]
        if not rest:
            raise _Err("no parameter")
        param, args = rest[0].upper(), rest[1:]
        if param == "ALL":
            if not self.family.has_get_all:
                return []  # PSM1000 / UHF-R: no such command, so no answer
            if verb != "GET" or args:
                raise _Err("ALL is GET-only")
            return [Reply(b) for b in self.dump(index)]
        if param in self._hidden:
            return []
        cprop, dprop = self.family.channel_prop(param), self.family.device_prop(param)
        if index is not None and cprop is not None:
            targets = self._targets(index)
            if verb == "GET":
                return self._get_channel(cprop, targets, args)
            return self._set_channel(cprop, targets, args)
        if dprop is not None:  # device-level; an index in front is tolerated and ignored (UNVERIFIED)
            if verb == "GET":
                if args:
                    raise _Err("device property takes no argument on GET")
                return [Reply(self.rep(dprop, None))]
            return self._set_device(dprop, args)
        if cprop is not None:
            raise _Err(f"{param} needs a channel index")
        return []  # unknown here: the real receivers do not answer at all

    def _targets(self, index: int) -> list[SimChannel]:
        if index == 0:
            return list(self.channels)
        if 1 <= index <= len(self.channels):
            return [self.channels[index - 1]]
        raise _Err(f"no channel {index}")

    def _get_channel(self, prop: Prop, targets: list[SimChannel], args: list[str]) -> list[Reply]:
        if prop.sub is None:
            if args:
                raise _Err("unexpected argument")
            return [Reply(self.rep(prop, ch)) for ch in targets]
        bodies: list[str] = []
        for ch in targets:
            subs = self._subs(prop, ch)
            if args:
                if len(args) != 1 or not args[0].isdigit() or int(args[0]) not in subs:
                    raise _Err(f"bad {prop.sub.value} index {args}")
                bodies.append(self.rep(prop, ch, int(args[0])))
            else:
                bodies.extend(self.rep(prop, ch, sub) for sub in subs)
        return [Reply(b) for b in bodies]

    def _set_device(self, prop: Prop, args: list[str]) -> list[Reply]:
        if prop.set is None:
            raise _Err(f"{prop.name} is read-only")
        value = self._decode(prop, args)
        if prop.set is SetKind.FLASH:
            self.device.flash = bool(value)
            if value:
                self._hooks.flash_started(None)
        elif prop.set in (SetKind.NAME, SetKind.VALUE):
            setattr(self.device, prop.attr, value)
        else:
            raise _Err(f"{prop.name} cannot be set on the device")
        return [Reply(self.rep(prop, None), broadcast=True)]

    def _set_channel(self, prop: Prop, targets: list[SimChannel], args: list[str]) -> list[Reply]:
        kind = prop.set
        if kind is None:
            raise _Err(f"{prop.name} is read-only")
        if kind is SetKind.GAIN:
            return self._set_gain(prop, targets, args)
        if kind is SetKind.METER:
            return self._set_meter(prop, targets, args)
        if kind is SetKind.FREQUENCY:
            return self._set_frequency(prop, targets, args)
        value = self._decode(prop, args)
        bodies: list[str] = []
        for ch in targets:
            if kind is SetKind.GROUP:
                try:
                    khz = self.spec.band.frequency(*value)
                except ValueError as exc:
                    raise _Err(str(exc)) from None
                ch.group_chan, ch.frequency_khz = value, khz
                bodies += [self.rep(self._linked(SetKind.FREQUENCY), ch), self.rep(prop, ch)]
                continue
            if kind is SetKind.MUTE and value is TOGGLE:
                ch.muted = not ch.muted
            else:
                setattr(ch, prop.attr, value)
            bodies.append(self.rep(prop, ch))
            if kind is SetKind.FLASH and value:
                self._hooks.flash_started(ch.index)
        return [Reply(b, broadcast=True) for b in bodies]

    def _decode(self, prop: Prop, args: list[str]) -> Any:
        if not args:
            raise _Err("no value")
        try:
            return prop.codec.decode(" ".join(args))
        except BadValue as exc:
            raise _Err(str(exc)) from None

    def _linked(self, kind: SetKind) -> Prop:
        return next(p for p in self.family.channel if p.set is kind)

    def _set_gain(self, prop: Prop, targets: list[SimChannel], args: list[str]) -> list[Reply]:
        codec = prop.codec
        if not isinstance(codec, Num):
            raise _Err("gain codec")
        lo_db, hi_db = sorted(((codec.lo - codec.offset) // codec.scale, (codec.hi - codec.offset) // codec.scale))
        bodies: list[str] = []
        if args and args[0].upper() in ("INC", "DEC"):
            if len(args) != 2 or not args[1].isdigit() or len(args[1]) > 3:
                raise _Err("INC/DEC need a step")
            step = int(args[1]) * (1 if args[0].upper() == "INC" else -1)
            for ch in targets:  # relative steps stop at the ends of the range
                ch.gain_db = min(max(ch.gain_db + step, lo_db), hi_db)
                bodies.append(self.rep(prop, ch))
        else:
            value = self._decode(prop, args)
            for ch in targets:
                ch.gain_db = value
                bodies.append(self.rep(prop, ch))
        return [Reply(b, broadcast=True) for b in bodies]

    def _set_meter(self, prop: Prop, targets: list[SimChannel], args: list[str]) -> list[Reply]:
        if len(args) != 1 or not args[0].isdigit() or len(args[0]) > 5:
            raise _Err("METER_RATE takes up to 5 digits")
        rate = int(args[0])
        if 0 < rate < MIN_METER_RATE_MS or rate > MAX_METER_RATE_MS:
            raise _Err(f"meter rate {rate} ms out of range")
        for ch in targets:
            ch.meter_rate_ms = rate
        self._hooks.meter_rate_changed()
        return [Reply(self.rep(prop, ch), broadcast=True) for ch in targets]

    def _set_frequency(self, prop: Prop, targets: list[SimChannel], args: list[str]) -> list[Reply]:
        if len(args) != 1 or not args[0].isdigit() or len(args[0]) > 7:
            raise _Err("FREQUENCY takes kHz digits")
        khz = int(args[0])
        if not self.spec.band.accepts(khz):
            raise _Err(f"{khz} kHz is outside {self.spec.band.name} or off the tuning step")
        group_prop = self._linked(SetKind.GROUP)
        bodies: list[str] = []
        for ch in targets:  # a frequency set by hand leaves the group/channel plan: --,-- (SX pp.7-8)
            ch.frequency_khz, ch.group_chan = khz, None
            bodies += [self.rep(group_prop, ch), self.rep(prop, ch)]
        return [Reply(b, broadcast=True) for b in bodies]

    def _uhfr_meter(self, args: list[str]) -> None:
        """``* METER ch ALL sss *`` / ``* METER ch ALL STOP *`` (UHF-R; no documented reply)."""
        if len(args) != 3 or not args[0].isdigit() or args[1].upper() != "ALL":
            raise _Err("METER ch ALL sss|STOP")
        targets = self._targets(int(args[0]))
        arg = args[2].upper()
        if arg == "STOP":
            rate = 0
        elif arg.isdigit() and len(arg) <= 3:
            rate = int(arg) * UHFR_METER_UNIT_MS
        else:
            raise _Err(f"bad METER interval {arg}")
        for ch in targets:
            ch.meter_rate_ms = rate
        self._hooks.meter_rate_changed()
