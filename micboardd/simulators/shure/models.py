"""The simulated Shure receiver models: channel count, band, firmware and vocabulary, as one table."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from .vocab import AXIENT, PSM1000, QLXD, SLXD, UHFR, ULXD, Family

_PLAN_CHANNEL_STRIDE: Final = 46  # tuning steps between channels of a group (1.15 MHz at 25 kHz)
_PLAN_GROUP_STRIDE: Final = 13  # tuning steps between groups (325 kHz)
_PLAN_EDGE: Final = 20  # steps kept clear of the band's lower edge


@dataclass(frozen=True, slots=True)
class Band:
    """A tuning range and a deterministic group/channel plan inside it.

    Real receivers ship compatibility tables from WWB; the simulator only needs a plan that is stable,
    inside the band, and distinct within each group, so a SET GROUP_CHANNEL has a real answer.
    """

    name: str
    lo_khz: int
    hi_khz: int
    step_khz: int = 25
    groups: int = 20

    @property
    def channels_per_group(self) -> int:
        return min(30, (self.hi_khz - self.lo_khz) // self.step_khz // _PLAN_CHANNEL_STRIDE)

    def frequency(self, group: int, chan: int) -> int:
        """kHz of group/channel (1-based); ValueError outside the plan."""
        if not (1 <= group <= self.groups and 1 <= chan <= self.channels_per_group):
            raise ValueError(f"{group},{chan} is not in the {self.name} plan")
        span = (self.hi_khz - self.lo_khz) // self.step_khz - 2 * _PLAN_EDGE
        steps = ((group - 1) * _PLAN_GROUP_STRIDE + (chan - 1) * _PLAN_CHANNEL_STRIDE) % span
        return self.lo_khz + (steps + _PLAN_EDGE) * self.step_khz

    def accepts(self, khz: int) -> bool:
        return self.lo_khz <= khz <= self.hi_khz and (khz - self.lo_khz) % self.step_khz == 0


@dataclass(frozen=True, slots=True)
class ModelSpec:
    """One receiver model."""

    name: str  # the MODELS key, e.g. "ULXD4Q"
    family: Family
    channels: int
    band: Band
    fw_ver: str
    model_label: str = ""  # what MODEL reports on AD and SLX-D
    antennas: int = 2
    quadversity_capable: bool = False  # AD4Q: 4 antenna pairs in SAMPLE when QUADVERSITY_MODE is ON

    @property
    def family_key(self) -> str:
        return self.family.key


_ULX_SINGLE: Final = ULXD.without(("AUDIO_SUMMING_MODE", "FREQUENCY_DIVERSITY_MODE"))
_H50: Final = Band("H50", 534_000, 598_000)
_G50: Final = Band("G50", 470_000, 534_000)
_G58: Final = Band("G58", 470_000, 514_000)
_G57: Final = Band("G57", 470_000, 616_000)
_G10: Final = Band("G10", 470_000, 542_000)
_H4: Final = Band("H4", 518_000, 578_000)

MODELS: Final[dict[str, ModelSpec]] = {
    m.name: m
    for m in (
        ModelSpec("ULXD4", _ULX_SINGLE, 1, _H50, "2.7.6.0"),
        ModelSpec("ULXD4D", ULXD, 2, _H50, "2.7.6.0"),
        ModelSpec("ULXD4Q", ULXD, 4, _H50, "2.7.6.0"),
        ModelSpec("QLXD4", QLXD, 1, _G50, "2.1.5.0"),
        ModelSpec("SLXD4", SLXD, 1, _G58, "2.1.9.0", model_label="SLXD4"),
        ModelSpec("SLXD4D", SLXD, 2, _G58, "2.1.9.0", model_label="SLXD4D"),
        ModelSpec("SLXD4Q+", SLXD, 4, _G58, "2.0.38.9", model_label="SLXD4Q+"),
        # "-A" as in MB's real AD dump (`{AD4Q-A …}`, §2.4).
        ModelSpec("AD4D", AXIENT, 2, _G57, "1.2.8.0", model_label="AD4D-A"),
        ModelSpec("AD4Q", AXIENT, 4, _G57, "1.2.8.0", model_label="AD4Q-A", quadversity_capable=True),
        ModelSpec("P10T", PSM1000, 2, _G10, ""),
        ModelSpec("UR4S", UHFR, 1, _H4, ""),
        ModelSpec("UR4D", UHFR, 2, _H4, ""),
    )
}
