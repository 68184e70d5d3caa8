"""A simulated Sennheiser EW-DX EM2/EM4 receiver speaking SSCv2 (HTTPS REST + Server-Sent Events).

Written from reference/sennheiser-and-others.md §1 on its own; it never imports micboardd's adapters.
One job per module: ``state`` (the device's values), ``api`` (what GET returns and PUT changes),
``sessions`` (subscription sessions and their SSE events), ``http`` (its face on the shared HTTPS server),
``faults`` (fault switches) and ``simulator`` (:class:`SSCv2Sim`, the device with its network face).
"""

from __future__ import annotations

from .api import SUBS, Reply
from .faults import SimFault
from .http import HttpServer
from .sessions import Session, SessionTable
from .simulator import SimRequest, SSCv2Sim
from .state import MODELS, TX_NAMES, EwdxDevice, SimChannel, SimRx, SimTx

__all__ = [
    "MODELS",
    "SUBS",
    "TX_NAMES",
    "EwdxDevice",
    "HttpServer",
    "Reply",
    "SSCv2Sim",
    "Session",
    "SessionTable",
    "SimChannel",
    "SimFault",
    "SimRequest",
    "SimRx",
    "SimTx",
]
