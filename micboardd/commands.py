"""Typed commands the action layer hands an adapter, and the errors a command can end in.

A command names what to change in normalized units; each adapter turns it into its protocol's SET and
returns only once the device has echoed the new value (``CommandResult.value``). Anything else ends
in a :class:`CommandError` whose ``reason`` says why, so one failing target never hides another's
success.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any, Final

ECHO_TIMEOUT_S: Final = 3.0  # a receiver echoes a SET within tens of ms; 3 s covers a loaded rack


class Danger(enum.IntEnum):
    """How much harm a command can do mid-show; decides role, confirm and show-lock checks."""

    SAFE = 0  # identify, metering
    CAREFUL = 1  # renames: safe for audio, but what operators see changes (dry run offered)
    DANGEROUS = 2  # audible or RF-affecting: admin + confirm + no show lock


@dataclass(frozen=True, slots=True)
class Identify:
    """Flash the device (channel None) or one channel's front panel."""

    channel: int | None = None
    danger = Danger.SAFE


@dataclass(frozen=True, slots=True)
class SetMeterRate:
    """Change the metering interval of one channel or (channel None) all; 0 stops metering."""

    rate_ms: int
    channel: int | None = None
    danger = Danger.SAFE


@dataclass(frozen=True, slots=True)
class RenameChannel:
    channel: int
    name: str
    danger = Danger.CAREFUL


@dataclass(frozen=True, slots=True)
class RenameDevice:
    name: str
    danger = Danger.CAREFUL


@dataclass(frozen=True, slots=True)
class SetMute:
    """Receiver audio output mute (not the transmitter's own mute switch)."""

    channel: int
    muted: bool
    danger = Danger.DANGEROUS


@dataclass(frozen=True, slots=True)
class SetGain:
    channel: int
    gain_db: float
    danger = Danger.DANGEROUS


@dataclass(frozen=True, slots=True)
class SetFrequency:
    channel: int
    frequency_khz: int
    danger = Danger.DANGEROUS


@dataclass(frozen=True, slots=True)
class SetGroupChannel:
    channel: int
    group: int
    chan: int
    danger = Danger.DANGEROUS


Command = Identify | SetMeterRate | RenameChannel | RenameDevice | SetMute | SetGain | SetFrequency | SetGroupChannel


@dataclass(frozen=True, slots=True)
class CommandResult:
    """What the device echoed back, in normalized units."""

    value: Any = None
    detail: str = ""


class CommandErrorReason(enum.StrEnum):
    OFFLINE = "offline"  # no live session to the device
    UNSUPPORTED = "unsupported"  # this model has no such control
    INVALID = "invalid"  # value out of the model's range (checked before sending)
    REJECTED = "rejected"  # the device answered with an error (REP ERR, HTTP 4xx, osc.error)
    TIMEOUT = "timeout"  # sent, but no echo within ECHO_TIMEOUT_S
    MISMATCH = "mismatch"  # the device echoed a different value than asked


class CommandError(Exception):
    """A command that did not take effect on the device, and why."""

    def __init__(self, reason: CommandErrorReason, detail: str) -> None:
        super().__init__(f"{reason.value}: {detail}")
        self.reason = reason
        self.detail = detail
