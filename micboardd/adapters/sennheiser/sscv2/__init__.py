"""Sennheiser SSCv2 (EW-DX EM2/EM4, firmware ≥ 4): HTTPS REST plus a Server-Sent-Events subscription.

The session lives in ``adapter``; everything public is re-exported here, so the registry path
``micboardd.adapters.sennheiser.sscv2:SSCv2Adapter`` names the adapter.
"""

from __future__ import annotations

from .adapter import SSCv2Adapter, SSCv2Options

__all__ = ["SSCv2Adapter", "SSCv2Options"]
