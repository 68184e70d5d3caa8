"""Sennheiser ew G3 / G4 / 2000 "Media Control Protocol" (ASCII over UDP 53212): one receiver or IEM transmitter.

``codec`` parses reply datagrams and encodes commands (no I/O), ``normalize`` turns MCP readings into model
units, and ``adapter`` runs the session. Everything public is re-exported here.

The device answers only to source port 53212, so every receiver shares one socket bound to it (``local_port``,
default 53212; see :mod:`micboardd.adapters.sennheiser.udp`).

Device options (``[devices.options]``): ``push_timeout_s`` (60), ``reply_timeout_s`` (2.0), ``heartbeat_s``
(5.0), ``silence_timeout_s`` (10.0), ``push_mode`` (7 receivers / 3 IEM transmitters), ``name_max_len`` (8,
UNVERIFIED), ``kind`` (``"em"``/``"sr"``, default from the model name), ``local_host`` ("0.0.0.0").
"""

from __future__ import annotations

from .adapter import (
    CONFIG_READS,
    HEARTBEAT_S,
    MAX_DATAGRAM_BYTES,
    MCP_PORT,
    PUSH_TIMEOUT_S,
    REPLY_TIMEOUT_S,
    SILENCE_TIMEOUT_S,
    McpAdapter,
    McpOptions,
)
from .codec import (
    CYCLIC,
    MAX_COMMAND_CHARS,
    AfLevel,
    Battery,
    ConfigCounter,
    Datagram,
    ErrorReply,
    Firmware,
    Frequency,
    Item,
    McpDecodeError,
    Mute,
    Name,
    PushEcho,
    RfAntenna,
    RfLevel,
    Setting,
    SrAfLevel,
    States,
    Warnings,
    encode,
    parse_datagram,
    parse_line,
    split_lines,
)
from .normalize import WARNING_WORDS, af_dbfs, battery_bars, group_channel, rf_dbm, warning_word

__all__ = [
    "CONFIG_READS",
    "CYCLIC",
    "HEARTBEAT_S",
    "MAX_COMMAND_CHARS",
    "MAX_DATAGRAM_BYTES",
    "MCP_PORT",
    "PUSH_TIMEOUT_S",
    "REPLY_TIMEOUT_S",
    "SILENCE_TIMEOUT_S",
    "WARNING_WORDS",
    "AfLevel",
    "Battery",
    "ConfigCounter",
    "Datagram",
    "ErrorReply",
    "Firmware",
    "Frequency",
    "Item",
    "McpAdapter",
    "McpDecodeError",
    "McpOptions",
    "Mute",
    "Name",
    "PushEcho",
    "RfAntenna",
    "RfLevel",
    "Setting",
    "SrAfLevel",
    "States",
    "Warnings",
    "af_dbfs",
    "battery_bars",
    "encode",
    "group_channel",
    "parse_datagram",
    "parse_line",
    "rf_dbm",
    "split_lines",
    "warning_word",
]
