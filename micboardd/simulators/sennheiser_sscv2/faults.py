"""Fault switches for the simulated EW-DX receiver: the ways a real device misbehaves, to be flipped at any time."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class SimFault:
    """Fault switches; flip them at any time."""

    silent: bool = False  # read requests, never answer; SSE streams go quiet
    reset: bool = False  # every new connection and request is aborted (TCP RST)
    garbage_events: int = 0  # the next N notifications carry malformed JSON
    delay_s: float = 0.0  # every reply waits this long first
    fail_status: int | None = None  # answer every authenticated request with this status (e.g. 500)
