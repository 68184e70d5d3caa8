"""Meter values of the simulated receivers: a seeded random walk of true levels, quantized per family.

:class:`LevelWalk` produces what a channel "hears" (dBm per antenna, dBFS); :func:`encode_sample`
turns one reading into the family's exact SAMPLE (or PSM1000 REPORT) text **and** the normalized
values that text means, so tests can compare what a client decoded with what was sent.
Scales from ``reference/shure.md`` §2.3; UHF-R and PSM1000 scales are UNVERIFIED (see below).
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Final

from .vocab import SampleLayout

ULX_RF_OFFSET: Final = 128  # dBm = aaa - 128, aaa 000..115 (ULX-D PDF via RD; CW)
ULX_RF_MAX: Final = 115
ULX_AUDIO_OFFSET: Final = 50  # dBFS = eee - 50 is inferred; eee 000..050 (§2.3)
ULX_AUDIO_MAX: Final = 50
AD_OFFSET: Final = 120  # AD and SLX-D: actual = reported - 120, 0..120
AD_MAX: Final = 120
# CONFLICT (§2.3): MB reads UHF-R RF as "lower is stronger" and audio as an LED bitmap; the UR4D client
# uses dBm = (v - 255) / 2 and dBFS = (v + 1) / 2 - 128. The simulator follows the UR4D client.
UHFR_MAX: Final = 255
# PSM1000 AUDIO_IN_LVL_L/_R: 11 digits of undocumented scale. MB/S6 bucket them with edges from 10272 to
# 2502970 (about 48 dB apart), which fits a linear amplitude; full scale here is an assumption.
PSM_FULL_SCALE: Final = 2_800_000
PSM_MAX: Final = 99_999_999_999

_RF_LED_EDGES: Final = (-90.0, -83.0, -77.0, -70.0, -25.0)  # one LED per edge passed (CW bar edges)
_AUDIO_LED_EDGES: Final = (-50.0, -40.0, -30.0, -20.0, -12.0, -6.0, -3.0)  # bits 0..6
_AUDIO_OVERLOAD_DBFS: Final = -1.0  # bit 7 of the AD audio bitmap (MB reads it as a peak)
_ANTENNA_LETTERS: Final = "ABCD"


def _clamp(value: float, hi: int) -> int:
    return min(max(round(value), 0), hi)


@dataclass(frozen=True, slots=True)
class Levels:
    """The true levels of one channel at one instant, before any quantization."""

    present: bool
    rf_dbm: tuple[float, ...]  # per antenna
    active: int | None  # antenna in use; None when nothing is received
    rms_dbfs: float
    peak_dbfs: float
    quality: int | None  # AD link quality 0..5
    left_dbfs: float  # PSM1000 inputs
    right_dbfs: float


@dataclass(frozen=True, slots=True)
class SentMeter:
    """One meter message as sent, and the normalized values it stands for."""

    body: str  # e.g. "SAMPLE 1 ALL AX 087 031"; PSM1000: the two REPORT bodies joined by "|"
    rf_dbm: tuple[float, ...]  # per antenna as reported (ULX-D/SLX-D report one diversity value)
    antenna: str | None  # "A", "B", "AB", "ABCD" …; None when no antenna is active
    audio_rms_dbfs: float | None
    audio_peak_dbfs: float | None
    quality: int | None = None  # AD 0..5; None for 255
    audio_lr_dbfs: tuple[float, float] | None = None  # PSM1000 left/right
    battery_bars: int | None = None  # UHF-R SAMPLE carries the battery; None for U


class LevelWalk:
    """Plausible, seeded levels for one channel: RF wanders around a per-channel base, audio breathes."""

    def __init__(self, rng: random.Random, antennas: int) -> None:
        self._rng = rng
        self._antennas = antennas
        self._rf_base = rng.uniform(-68.0, -48.0)
        self._rf_offsets = [rng.uniform(-6.0, 6.0) for _ in range(antennas)]
        self._audio_base = rng.uniform(-30.0, -16.0)
        self._audio = self._audio_base
        self.current = self.step(present=True)

    def step(self, *, present: bool) -> Levels:
        rng = self._rng
        self._audio += rng.gauss(0.0, 2.0) + 0.2 * (self._audio_base - self._audio)
        audio = min(max(self._audio, -70.0), -2.0)
        left = audio + rng.gauss(0.0, 1.0)
        right = audio + rng.gauss(0.0, 1.0)
        if present:
            rf = tuple(
                min(max(self._rf_base + off + rng.gauss(0.0, 2.5), -95.0), -20.0) for off in self._rf_offsets
            )
            active: int | None = max(range(len(rf)), key=lambda i: rf[i])
            rms = audio - 20.0 if rng.random() < 0.1 else audio  # now and then a pause in the speech
            peak = min(rms + rng.uniform(3.0, 12.0), 0.0)
            best = max(rf)
            quality: int | None = 5 if best > -75 else 4 if best > -82 else 3
        else:
            rf = tuple(rng.uniform(-112.0, -104.0) for _ in range(self._antennas))
            active = None
            # The real no-transmitter AD sample (MB docs/api.md) reads rms 033 / peak 005.
            rms = -87.0 + rng.uniform(-1.5, 1.5)
            peak = -115.0 + rng.uniform(-2.0, 2.0)
            quality = None
        self.current = Levels(present, rf, active, rms, peak, quality, left, right)
        return self.current


# ------------------------------------------------------------------------------ quantization helpers


def ulx_rf(dbm: float) -> int:
    return _clamp(dbm + ULX_RF_OFFSET, ULX_RF_MAX)


def ulx_audio(dbfs: float) -> int:
    return _clamp(dbfs + ULX_AUDIO_OFFSET, ULX_AUDIO_MAX)


def ulx_antenna(levels: Levels) -> str:
    if levels.active is None:
        return "XX"
    return "AX" if levels.active == 0 else "XB"


def ad_level(value: float) -> int:
    return _clamp(value + AD_OFFSET, AD_MAX)


def rf_led_bitmap(dbm: float) -> int:
    lit = sum(1 for edge in _RF_LED_EDGES if dbm >= edge)
    return (1 << lit) - 1


def audio_led_bitmap(levels: Levels) -> int:
    if not levels.present:
        return 0
    lit = sum(1 for edge in _AUDIO_LED_EDGES if levels.rms_dbfs >= edge)
    overload = 0x80 if levels.peak_dbfs >= _AUDIO_OVERLOAD_DBFS else 0
    return ((1 << lit) - 1) | overload


def ad_antenna_status(levels: Levels, antennas: int) -> str:
    if not levels.present:
        return "X" * antennas
    return "".join("B" if levels.rf_dbm[i] > -90.0 else "X" for i in range(antennas))


def uhfr_rf(dbm: float) -> int:
    return _clamp(2 * dbm + 255, UHFR_MAX)


def uhfr_audio(dbfs: float) -> int:
    return _clamp(2 * (dbfs + 128) - 1, UHFR_MAX)


def psm_level(dbfs: float) -> int:
    return min(max(round(PSM_FULL_SCALE * 10 ** (dbfs / 20)), 0), PSM_MAX)


def psm_dbfs(raw: int) -> float:
    return 20 * math.log10(raw / PSM_FULL_SCALE) if raw > 0 else -math.inf


# ------------------------------------------------------------------------------------ SAMPLE text


def encode_sample(
    layout: SampleLayout,
    ch: int,
    levels: Levels,
    *,
    antennas: int = 2,
    fd_combining: bool = False,
    battery_bars: int | None = None,
) -> SentMeter:
    """The meter message(s) a receiver of ``layout`` sends for channel ``ch`` at ``levels``."""
    if layout is SampleLayout.ULX:
        ant = ulx_antenna(levels)
        aaa = ulx_rf(max(levels.rf_dbm))
        eee = ulx_audio(levels.rms_dbfs)
        return SentMeter(
            body=f"SAMPLE {ch} ALL {ant} {aaa:03d} {eee:03d}",
            rf_dbm=(float(aaa - ULX_RF_OFFSET),),
            antenna=_letters(ant, "AB"),
            audio_rms_dbfs=float(eee - ULX_AUDIO_OFFSET),
            audio_peak_dbfs=None,
        )
    if layout is SampleLayout.AXIENT:
        return _encode_axient(ch, levels, antennas, fd_combining)
    if layout is SampleLayout.SLX:
        peak, rms, rssi = ad_level(levels.peak_dbfs), ad_level(levels.rms_dbfs), ad_level(max(levels.rf_dbm))
        return SentMeter(
            body=f"SAMPLE {ch} ALL {peak:03d} {rms:03d} {rssi:03d}",
            rf_dbm=(float(rssi - AD_OFFSET),),
            antenna=None,
            audio_rms_dbfs=float(rms - AD_OFFSET),
            audio_peak_dbfs=float(peak - AD_OFFSET),
        )
    if layout is SampleLayout.UHFR:
        if levels.active is None:
            ant = "XX"
        elif min(levels.rf_dbm[:2]) > -70.0:
            ant = "AB"
        else:
            ant = "AX" if levels.active == 0 else "XB"
        rf_a, rf_b = uhfr_rf(levels.rf_dbm[0]), uhfr_rf(levels.rf_dbm[1])
        audio = uhfr_audio(levels.rms_dbfs if levels.present else -120.0)
        bat = "U" if battery_bars is None else str(min(max(battery_bars, 1), 5))
        return SentMeter(
            body=f"SAMPLE {ch} ALL {ant} {rf_a:03d} {rf_b:03d} {bat} {audio:03d}",
            rf_dbm=((rf_a - 255) / 2, (rf_b - 255) / 2),
            antenna=_letters(ant, "AB"),
            audio_rms_dbfs=(audio + 1) / 2 - 128,
            audio_peak_dbfs=None,
            battery_bars=None if bat == "U" else int(bat),
        )
    left, right = psm_level(levels.left_dbfs), psm_level(levels.right_dbfs)
    lr = (psm_dbfs(left), psm_dbfs(right))
    return SentMeter(
        body=f"REPORT {ch} AUDIO_IN_LVL_L {left:011d}|REPORT {ch} AUDIO_IN_LVL_R {right:011d}",
        rf_dbm=(),
        antenna=None,
        audio_rms_dbfs=max(lr),
        audio_peak_dbfs=None,
        audio_lr_dbfs=lr,
    )


def _encode_axient(ch: int, levels: Levels, antennas: int, fd_combining: bool) -> SentMeter:
    qual = 255 if levels.quality is None else levels.quality
    bitmap = audio_led_bitmap(levels)
    peak, rms = ad_level(levels.peak_dbfs), ad_level(levels.rms_dbfs)
    status = ad_antenna_status(levels, antennas)
    rssi = [ad_level(levels.rf_dbm[i]) for i in range(antennas)]
    pairs = " ".join(
        f"{(rf_led_bitmap(levels.rf_dbm[i]) if levels.present else 0):02d} {rssi[i]:03d}" for i in range(antennas)
    )
    body = f"SAMPLE {ch} ALL {qual:03d} {bitmap:03d} {peak:03d} {rms:03d} {status} {pairs}"
    if fd_combining:
        # FD-C appends a second RF section (§2.3); its exact layout is UNVERIFIED: status + pairs again,
        # for the second frequency, a few dB weaker here.
        rf2 = [v - 3.0 for v in levels.rf_dbm[:antennas]]
        status2 = "".join("B" if levels.present and v > -90.0 else "X" for v in rf2)
        pairs2 = " ".join(f"{(rf_led_bitmap(v) if levels.present else 0):02d} {ad_level(v):03d}" for v in rf2)
        body += f" {status2} {pairs2}"
    return SentMeter(
        body=body,
        rf_dbm=tuple(float(v - AD_OFFSET) for v in rssi),
        antenna="".join(_ANTENNA_LETTERS[i] for i, c in enumerate(status) if c == "B") or None,
        audio_rms_dbfs=float(rms - AD_OFFSET),
        audio_peak_dbfs=float(peak - AD_OFFSET),
        quality=levels.quality,
    )


def _letters(indicator: str, letters: str) -> str | None:
    """``"AX"`` → ``"A"``, ``"XB"`` → ``"B"``, ``"AB"`` → ``"AB"``, ``"XX"`` → None."""
    picked = "".join(letters[i] for i, c in enumerate(indicator) if c != "X")
    return picked or None
