"""Sennheiser SSCv2 (EW-DX EM2/EM4, firmware ≥ 4): HTTPS REST plus a Server-Sent-Events subscription.

One job per module. I/O-free: ``resources`` (which resources we read, wire path ↔ resource) and
``decode`` (one resource's JSON → model units); the stream framing is :mod:`..sse`. The session:
``options`` (the ``options`` table, documented there), ``client`` (HTTPS, pacing, error
classification), ``reads`` (GET and apply), ``mapping`` (resource → model), ``subscription`` (the
event stream), ``commands`` (verified writes) and ``adapter`` (the session loop that ties them).
Everything public is re-exported here, so the registry path
``micboardd.adapters.sennheiser.sscv2:SSCv2Adapter`` names the adapter.
"""

from __future__ import annotations

from .adapter import MAX_QUICK_ENDS, QUICK_END_S, SSCv2Adapter
from .client import DELETE_TIMEOUT_S, DeviceClient
from .commands import VERIFY_POLL_S, Commander
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
from .mapping import ResourceMapper
from .options import (
    DEFAULT_HEARTBEAT_S,
    DEFAULT_IDENTIFY_S,
    DEFAULT_OPEN_TIMEOUT_S,
    DEFAULT_REQUEST_GAP_MS,
    DEFAULT_REQUEST_TIMEOUT_S,
    DEFAULT_SILENCE_S,
    SSCv2Options,
)
from .reads import MAX_PROBE_CHANNELS, Reader
from .resources import METER_RESOURCES, SUBS, Res, classify, resource_path
from .subscription import (
    CHANNEL_RESOURCES,
    DEVICE_RESOURCES,
    MAX_REJECTED_RETRIES,
    SILENCE_REASON,
    Subscription,
)

__all__ = [
    "BATTERY_TYPES",
    "CHANNEL_RESOURCES",
    "DEFAULT_HEARTBEAT_S",
    "DEFAULT_IDENTIFY_S",
    "DEFAULT_OPEN_TIMEOUT_S",
    "DEFAULT_REQUEST_GAP_MS",
    "DEFAULT_REQUEST_TIMEOUT_S",
    "DEFAULT_SILENCE_S",
    "DELETE_TIMEOUT_S",
    "DEVICE_RESOURCES",
    "DIVERSITY",
    "LEVEL_RANGE",
    "MAX_PROBE_CHANNELS",
    "MAX_QUICK_ENDS",
    "MAX_REJECTED_RETRIES",
    "METER_RESOURCES",
    "PRODUCTS",
    "QUICK_END_S",
    "RSSI_RANGE",
    "SILENCE_REASON",
    "SUBS",
    "TX_MODELS",
    "VERIFY_POLL_S",
    "WARNINGS",
    "Commander",
    "Decoded",
    "DeviceClient",
    "Reader",
    "Res",
    "ResourceError",
    "ResourceMapper",
    "SSCv2Adapter",
    "SSCv2Options",
    "Subscription",
    "battery_bars",
    "classify",
    "decode_resource",
    "decode_tx_object",
    "resource_path",
    "warning_word",
]
