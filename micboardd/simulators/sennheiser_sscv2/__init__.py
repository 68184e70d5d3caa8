"""A simulated Sennheiser EW-DX EM2/EM4 receiver speaking SSCv2 (HTTPS REST + Server-Sent Events).

Written from reference/sennheiser-and-others.md §1 on its own; it never imports micboardd's adapters.
"""

from __future__ import annotations

from .simulator import SimChannel, SimFault, SimRequest, SimRx, SimTx, SSCv2Sim

__all__ = ["SSCv2Sim", "SimChannel", "SimFault", "SimRequest", "SimRx", "SimTx"]
