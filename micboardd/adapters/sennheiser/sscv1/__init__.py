"""Sennheiser SSCv1 (JSON address trees over UDP): EW-DX (legacy mode), EW-D, SpeechLine DW and Digital 6000.

``codec`` turns datagrams into messages and back (no I/O), ``convert`` turns one raw value into model fields,
``tables`` holds each family's addresses as data, ``interpretation`` maps a message through a table, and
``adapter`` runs the session. Everything public is re-exported here.

Each family is one :class:`VariantTable` in ``tables``, selected by ``options.variant``. Device options (all
optional, under ``[devices.options]``):

- ``variant``: ``"ewdx"`` (default), ``"speechline"``, ``"ewd"``, ``"d6000"``
- ``reply_timeout_s`` (2.0), ``heartbeat_s`` (5.0), ``silence_timeout_s`` (15.0), ``lifetime_s`` (10)
- ``battery_time_unit``: ``"min"`` or ``"s"``, overrides the variant's runtime unit (D6000 is UNVERIFIED)
- ``local_host`` ("0.0.0.0"); the local port is ``local_port`` (default 0: one shared ephemeral port)
"""

from __future__ import annotations

from .adapter import (
    HEARTBEAT_S,
    LIFETIME_S,
    MAX_CHANNELS,
    REPLY_TIMEOUT_S,
    SETTINGS_COUNT,
    SILENCE_TIMEOUT_S,
    Element,
    SscOptions,
    SSCv1Adapter,
)
from .codec import (
    ERR_FAILED_DEPENDENCY,
    ERR_NOT_FOUND,
    ERR_PARAM_NOT_FOUND,
    ERR_SUB_TERMINATED,
    MAX_DEPTH,
    MAX_MESSAGE_BYTES,
    Path,
    SscDecodeError,
    SscError,
    SscMessage,
    decode,
    encode,
    flatten,
    get_tree,
    subscribe_tree,
    tree_from_leaves,
)
from .convert import (
    BATTERY_TYPES,
    DIVERSITY,
    EWD_DEVICE_TYPES,
    MM_FIELDS,
    WARNING_WORDS,
    ConvCtx,
    Converter,
    battery_bars,
    warning_word,
)
from .interpretation import Interpretation, interpret
from .tables import (
    CONTROL_OF,
    D6000,
    EWD,
    EWDX,
    SPEECHLINE,
    VARIANTS,
    Control,
    Group,
    Lookup,
    PathSpec,
    Target,
    VariantTable,
    build_lookup,
)

__all__ = [
    "BATTERY_TYPES",
    "CONTROL_OF",
    "D6000",
    "DIVERSITY",
    "ERR_FAILED_DEPENDENCY",
    "ERR_NOT_FOUND",
    "ERR_PARAM_NOT_FOUND",
    "ERR_SUB_TERMINATED",
    "EWD",
    "EWDX",
    "EWD_DEVICE_TYPES",
    "HEARTBEAT_S",
    "LIFETIME_S",
    "MAX_CHANNELS",
    "MAX_DEPTH",
    "MAX_MESSAGE_BYTES",
    "MM_FIELDS",
    "REPLY_TIMEOUT_S",
    "SETTINGS_COUNT",
    "SILENCE_TIMEOUT_S",
    "SPEECHLINE",
    "VARIANTS",
    "WARNING_WORDS",
    "Control",
    "ConvCtx",
    "Converter",
    "Element",
    "Group",
    "Interpretation",
    "Lookup",
    "Path",
    "PathSpec",
    "SSCv1Adapter",
    "SscDecodeError",
    "SscError",
    "SscMessage",
    "SscOptions",
    "Target",
    "VariantTable",
    "battery_bars",
    "build_lookup",
    "decode",
    "encode",
    "flatten",
    "get_tree",
    "interpret",
    "subscribe_tree",
    "tree_from_leaves",
    "warning_word",
]
