"""SSCv1 per-family vocabularies as data: which addresses each family has, what they feed, what can be set.

The families differ in paths and units (reference/sennheiser-and-others.md §2.3, §2.4); each is one
:class:`VariantTable`, selected by ``options.variant``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final, Literal

from ....commands import Identify, RenameChannel, RenameDevice, SetFrequency, SetGain, SetMute
from . import convert as cv
from .codec import Path
from .convert import Converter

Group = Literal["identity", "settings", "tx", "meter", "reply"]  # reply: appears only in answers
Target = Literal["device", "channel", "tx", "meter"]


@dataclass(frozen=True, slots=True)
class PathSpec:
    """One address of a family: where it lives, which normalized fields it feeds, how it is read."""

    path: Path  # "{n}" in an element is the 1-based channel number
    group: Group
    target: Target
    convert: Converter
    fanout: bool = False  # the value carries every channel ({ch: fields}), e.g. D6000 /mm

    @property
    def per_channel(self) -> bool:
        return any("{n}" in part for part in self.path)

    def at(self, n: int) -> Path:
        return tuple(part.replace("{n}", str(n)) for part in self.path)


@dataclass(frozen=True, slots=True)
class Control:
    """A settable address and the rules its value must follow."""

    path: Path
    max_len: int | None = None
    upper: bool = False  # the device (or its sibling API) accepts upper case only
    lo: float | None = None
    hi: float | None = None
    step: float | None = None

    def at(self, n: int) -> Path:
        return tuple(part.replace("{n}", str(n)) for part in self.path)


@dataclass(frozen=True, slots=True)
class VariantTable:
    """Everything that differs between SSCv1 families, as data."""

    name: str
    specs: tuple[PathSpec, ...]
    default_channels: int
    runtime_unit_s: float  # 60: minutes, 1: seconds
    no_link_means_absent: bool  # a "no_link" receiver warning means the transmitter is gone
    rename: Control | None = None
    rename_device: Control | None = None
    mute: Control | None = None
    identify: Control | None = None
    frequency: Control | None = None
    gain: Control | None = None
    channels_from_product: tuple[tuple[str, int], ...] = ()

    def group(self, group: Group) -> tuple[PathSpec, ...]:
        return tuple(s for s in self.specs if s.group == group)


_IDENTITY: Final = (
    PathSpec(("device", "identity", "product"), "identity", "device", cv.text("model")),
    PathSpec(("device", "identity", "serial"), "identity", "device", cv.text("serial")),
    PathSpec(("device", "identity", "version"), "identity", "device", cv.text("firmware")),
    PathSpec(("device", "name"), "identity", "device", cv.text("name")),
)
_M_TREE: Final = (  # EW-DX /m; assumed (UNVERIFIED) on SpeechLine and EW-D, dropped on 404
    PathSpec(("m", "rx{n}", "rssi"), "meter", "meter", cv.rssi),
    PathSpec(("m", "rx{n}", "rsqi"), "meter", "meter", cv.rsqi),
    PathSpec(("m", "rx{n}", "divi"), "meter", "meter", cv.divi),
    PathSpec(("m", "rx{n}", "af"), "meter", "meter", cv.af),
)
_NAME: Final = Control(("rx{n}", "name"), max_len=8)
_DEVICE_NAME: Final = Control(("device", "name"), max_len=18)

EWDX: Final = VariantTable(
    name="ewdx",
    specs=(
        *_IDENTITY,
        PathSpec(("rx{n}", "name"), "settings", "channel", cv.text("name")),
        PathSpec(("rx{n}", "frequency"), "settings", "channel", cv.frequency),
        PathSpec(("rx{n}", "mute"), "settings", "channel", cv.flag("muted")),
        PathSpec(("rx{n}", "gain"), "settings", "channel", cv.number("gain_db", -20, 60)),
        PathSpec(("rx{n}", "warnings"), "settings", "channel", cv.warnings("rx_warnings")),
        PathSpec(("mates", "tx{n}", "battery", "gauge"), "tx", "tx", cv.battery),
        PathSpec(("mates", "tx{n}", "battery", "lifetime"), "tx", "tx", cv.runtime),
        PathSpec(("mates", "tx{n}", "battery", "type"), "tx", "tx", cv.battery_type),
        PathSpec(("mates", "tx{n}", "type"), "tx", "tx", cv.text("model")),
        PathSpec(("mates", "tx{n}", "name"), "tx", "tx", cv.text("device_name")),
        PathSpec(("mates", "tx{n}", "mute"), "tx", "tx", cv.flag("muted")),
        PathSpec(("mates", "tx{n}", "warnings"), "tx", "channel", cv.warnings("tx_warnings")),
        *_M_TREE,
    ),
    default_channels=2,
    runtime_unit_s=60.0,
    no_link_means_absent=False,  # EW-DX says so with 424; NoLink can also mean a TX out of range for a moment
    rename=Control(("rx{n}", "name"), max_len=8, upper=True),
    rename_device=_DEVICE_NAME,
    mute=Control(("rx{n}", "mute")),
    identify=Control(("rx{n}", "identification", "visual")),
    frequency=Control(("rx{n}", "frequency"), lo=470_200, hi=1_999_000, step=25),
    gain=Control(("rx{n}", "gain"), lo=-3, hi=42, step=3),
    channels_from_product=(("4CH", 4), ("2CH", 2)),
)

SPEECHLINE: Final = VariantTable(
    name="speechline",
    specs=(
        *_IDENTITY,
        PathSpec(("rx{n}", "name"), "settings", "channel", cv.text("name")),
        PathSpec(("rx{n}", "mute"), "settings", "channel", cv.flag("muted")),  # UNVERIFIED path
        PathSpec(("rx{n}", "warnings"), "settings", "channel", cv.warnings("rx_warnings")),
        PathSpec(("mates", "tx{n}", "bat_gauge"), "tx", "tx", cv.battery),
        PathSpec(("mates", "tx{n}", "bat_lifetime"), "tx", "tx", cv.runtime),  # seconds (SLDW-SSC)
        PathSpec(("mates", "tx{n}", "bat_health"), "tx", "tx", cv.number("battery_health_percent", 0, 100, int)),
        PathSpec(("mates", "tx{n}", "bat_cycles"), "tx", "tx", cv.number("battery_cycles", 0, 1e6, int)),
        PathSpec(("mates", "tx{n}", "bat_charging"), "tx", "tx", cv.flag("charging")),
        PathSpec(("mates", "tx{n}", "warnings"), "tx", "channel", cv.warnings("tx_warnings")),
        *_M_TREE,
    ),
    default_channels=1,
    runtime_unit_s=1.0,
    no_link_means_absent=True,
    rename=_NAME,
    rename_device=_DEVICE_NAME,
    mute=Control(("rx{n}", "mute")),
)

EWD: Final = VariantTable(
    name="ewd",
    specs=(
        *_IDENTITY,
        PathSpec(("rx{n}", "name"), "settings", "channel", cv.text("name")),
        PathSpec(("rx{n}", "frequency"), "settings", "channel", cv.frequency),
        PathSpec(("rx{n}", "mute"), "settings", "channel", cv.flag("muted")),
        PathSpec(("rx{n}", "warnings"), "settings", "channel", cv.warnings("rx_warnings")),
        # bat_state answers with either bat_gauge (%) or bat_lifetime (s); nested or flat, both tolerated
        PathSpec(("mates", "tx{n}", "bat_state"), "tx", "tx", cv.ignore),
        PathSpec(("mates", "tx{n}", "bat_state", "bat_gauge"), "reply", "tx", cv.battery),
        PathSpec(("mates", "tx{n}", "bat_state", "bat_lifetime"), "reply", "tx", cv.runtime),
        PathSpec(("mates", "tx{n}", "bat_gauge"), "reply", "tx", cv.battery),
        PathSpec(("mates", "tx{n}", "bat_lifetime"), "reply", "tx", cv.runtime),
        PathSpec(("mates", "tx{n}", "bat_type"), "tx", "tx", cv.battery_type),
        PathSpec(("mates", "tx{n}", "device_type"), "tx", "tx", cv.ewd_device_type),
        *_M_TREE,
        # /audio/out1/level_db (-80..0) is deliberately not read as an AF meter: it looks like the output
        # level setting, and a setting shown as a live meter would be a number that looks real and is not.
    ),
    default_channels=1,
    runtime_unit_s=1.0,
    no_link_means_absent=True,
    rename=_NAME,
    rename_device=_DEVICE_NAME,
    mute=Control(("rx{n}", "mute")),
    frequency=Control(("rx{n}", "frequency"), lo=470_200, hi=1_999_000, step=25),
)

D6000: Final = VariantTable(
    name="d6000",
    specs=(
        *_IDENTITY,
        PathSpec(("rx{n}", "name"), "settings", "channel", cv.text("name")),
        PathSpec(("rx{n}", "carrier"), "settings", "channel", cv.frequency),
        PathSpec(("rx{n}", "audio_mute"), "settings", "channel", cv.flag("muted")),
        PathSpec(("rx{n}", "active_warnings"), "settings", "channel", cv.warnings("rx_warnings")),
        PathSpec(("rx{n}", "skx", "type"), "tx", "tx", cv.d6000_type),
        PathSpec(("rx{n}", "skx", "name"), "tx", "tx", cv.text("device_name")),
        PathSpec(("rx{n}", "skx", "battery"), "tx", "tx", cv.d6000_battery),
        # an older Companion build reads skx.type.type and skx.battery.{percent,time}: tolerated as replies
        PathSpec(("rx{n}", "skx", "type", "type"), "reply", "tx", cv.d6000_type),
        PathSpec(("rx{n}", "skx", "battery", "percent"), "reply", "tx", cv.battery),
        PathSpec(("rx{n}", "skx", "battery", "time"), "reply", "tx", cv.runtime),
        PathSpec(("mm",), "meter", "meter", cv.d6000_mm, fanout=True),
    ),
    default_channels=2,
    runtime_unit_s=60.0,  # UNVERIFIED (§6 "unit not checked"); options.battery_time_unit overrides
    no_link_means_absent=True,
    rename=_NAME,
    rename_device=_DEVICE_NAME,
    mute=Control(("rx{n}", "audio_mute")),
    frequency=Control(("rx{n}", "carrier"), lo=470_100, hi=713_900, step=25),
)

VARIANTS: Final[Mapping[str, VariantTable]] = {t.name: t for t in (EWDX, SPEECHLINE, EWD, D6000)}

# command → the VariantTable field holding its Control (None there: the family has no such control)
CONTROL_OF: Final[Mapping[type, str]] = {
    RenameChannel: "rename", RenameDevice: "rename_device", SetMute: "mute", Identify: "identify",
    SetFrequency: "frequency", SetGain: "gain",
}


Lookup = Mapping[Path, tuple[PathSpec, int]]


def build_lookup(table: VariantTable, channels: int) -> dict[Path, tuple[PathSpec, int]]:
    """Concrete address → (spec, channel) for a device with ``channels`` channels (0 for device-wide)."""
    out: dict[Path, tuple[PathSpec, int]] = {}
    for spec in table.specs:
        if spec.per_channel:
            for n in range(1, channels + 1):
                out[spec.at(n)] = (spec, n)
        else:
            out[spec.path] = (spec, 0)
    return out
