"""Sennheiser SSCv2 (EW-DX EM2/EM4, firmware ≥ 4): HTTPS REST plus a Server-Sent-Events subscription.

``resources`` names the resources micboardd reads and their wire paths, ``decode`` turns one resource's
JSON into model units (both I/O-free; the stream framing is :mod:`..sse`), and ``adapter`` runs the
session. Everything public is re-exported here, so the registry path
``micboardd.adapters.sennheiser.sscv2:SSCv2Adapter`` names the adapter.
"""

from __future__ import annotations

from .adapter import SSCv2Adapter, SSCv2Options
from .decode import (
    BATTERY_TYPES,
    DIVERSITY,
    LEVEL_RANGE,
    PRODUCTS,
    RSSI_RANGE,
    TX_MODELS,
    WARNINGS,
    Decoded,
    ResourceError,
    battery_bars,
    decode_resource,
    decode_tx_object,
    warning_word,
)
from .resources import METER_RESOURCES, SUBS, Res, classify, resource_path

__all__ = [
    "BATTERY_TYPES",
    "DIVERSITY",
    "LEVEL_RANGE",
    "METER_RESOURCES",
    "PRODUCTS",
    "RSSI_RANGE",
    "SUBS",
    "TX_MODELS",
    "WARNINGS",
    "Decoded",
    "Res",
    "ResourceError",
    "SSCv2Adapter",
    "SSCv2Options",
    "battery_bars",
    "classify",
    "decode_resource",
    "decode_tx_object",
    "resource_path",
    "warning_word",
]
