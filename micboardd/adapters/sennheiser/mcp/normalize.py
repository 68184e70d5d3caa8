"""MCP readings in model units: RF and AF percentages, battery steps, warning words, bank/channel.

The reference gives percentages only; each choice below is UNVERIFIED against hardware:

- RF: ``0 % = 0 dBµV, 100 % = 40 dBµV``; dBµV → dBm at 50 Ω is ``-107 dB``, so ``dBm = 0.4·pct - 107``.
- AF: ``0 % = -50 dB, 100 % = peak`` read as linear in dB up to 0 dBFS: ``dBFS = 0.5·pct - 50``; ``> 100`` → clip.
- Battery: ``Bat 0/30/70/100`` is already a (coarse) percent and is kept as such; bars use the same
  percent→bars rule as every other family (``ceil(pct/20)``): 0→0, 30→2, 70→4, 100→5. ``Bat 0`` is the
  device's own Low_Battery point. ``Bat ?`` (no battery telegram: TX off or out of range) → transmitter absent,
  battery unknown.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Final

from .codec import Frequency


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
