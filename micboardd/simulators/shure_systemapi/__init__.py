"""A simulated Shure System API server (HTTPS REST + event WebSocket on one TLS port) fronting many devices.

Written from reference/shure.md §5 on its own; it never imports micboardd's adapters.
"""

from __future__ import annotations

from .simulator import DEFAULT_FLEET, WS_PATH, SimFault, SimRequest, SimTransport, SystemApiSim
from .state import MODELS, SimBattery, SimChannel, SimDevice

__all__ = [
    "DEFAULT_FLEET",
    "MODELS",
    "WS_PATH",
    "SimBattery",
    "SimChannel",
    "SimDevice",
    "SimFault",
    "SimRequest",
    "SimTransport",
    "SystemApiSim",
]
