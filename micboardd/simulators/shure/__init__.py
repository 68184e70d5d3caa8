"""Protocol-faithful Shure receiver simulators (ULX-D, QLX-D, SLX-D, Axient Digital, PSM1000, UHF-R).

Written from ``reference/shure.md`` alone — never from ``micboardd.adapters`` — so a mistake in our
codec cannot hide behind the same mistake in the simulator.
"""

from __future__ import annotations

from .engine import Reply, ShureProtocol, normalize, tokenize
from .fleet import ShureFleet, fleet_hosts
from .meters import Levels, SentMeter
from .models import MODELS, Band, ModelSpec
from .server import FaultMode, ShureReceiverSim
from .state import SimChannel, SimDevice
from .vocab import FAMILIES, Family, Prop, SampleLayout

__all__ = [
    "FAMILIES",
    "MODELS",
    "Band",
    "Family",
    "FaultMode",
    "Levels",
    "ModelSpec",
    "Prop",
    "Reply",
    "SampleLayout",
    "SentMeter",
    "ShureFleet",
    "ShureProtocol",
    "ShureReceiverSim",
    "SimChannel",
    "SimDevice",
    "fleet_hosts",
    "normalize",
    "tokenize",
]
