"""Shure System API (REST + WebSocket middleware fronting many Shure devices): one server, many child devices.

One job per module. I/O-free: ``codec`` (device nodes, list shapes, channels, battery, events, problem
JSON → typed values). The session: ``options`` (the ``options`` table, documented there), ``client``
(HTTPS, ``x-api-key``, classified errors, paging), ``events`` (the event WebSocket), ``inventory``
(nodes, reads and events → child devices), ``commands`` (verified writes) and ``adapter`` (the session
loop). The registry path ``micboardd.adapters.shure.systemapi:SystemApiAdapter`` names the adapter.
"""

from __future__ import annotations

from .adapter import SERVER_MODEL, SystemApiAdapter
from .client import MAX_BODY_BYTES, MAX_PAGES, ApiClient, ApiStatusError
from .codec import (
    Activity,
    AudioChannelInfo,
    BatteryHealth,
    BatteryLevel,
    BatteryState,
    Cap,
    CodecError,
    Compatibility,
    DeviceNode,
    DevicePage,
    Event,
    EventName,
    GainRange,
    Hello,
    NodeState,
    Problem,
    decode_channel_id,
    number_channels,
    parse_activity,
    parse_audio_channels,
    parse_battery_health,
    parse_battery_level,
    parse_device_list,
    parse_device_node,
    parse_duration_minutes,
    parse_flag,
    parse_gain,
    parse_gain_description,
    parse_message,
    parse_name,
    parse_problem,
)
from .commands import VERIFY_POLL_S, Commander
from .events import MAX_MESSAGE_BYTES, WS_PATH, EventSocket
from .inventory import OFFLINE_REASON, UNLISTED_REASON, Child, Inventory
from .options import SystemApiOptions

__all__ = [
    "MAX_BODY_BYTES",
    "MAX_MESSAGE_BYTES",
    "MAX_PAGES",
    "OFFLINE_REASON",
    "SERVER_MODEL",
    "UNLISTED_REASON",
    "VERIFY_POLL_S",
    "WS_PATH",
    "Activity",
    "ApiClient",
    "ApiStatusError",
    "AudioChannelInfo",
    "BatteryHealth",
    "BatteryLevel",
    "BatteryState",
    "Cap",
    "Child",
    "CodecError",
    "Commander",
    "Compatibility",
    "DeviceNode",
    "DevicePage",
    "Event",
    "EventName",
    "EventSocket",
    "GainRange",
    "Hello",
    "Inventory",
    "NodeState",
    "Problem",
    "SystemApiAdapter",
    "SystemApiOptions",
    "decode_channel_id",
    "number_channels",
    "parse_activity",
    "parse_audio_channels",
    "parse_battery_health",
    "parse_battery_level",
    "parse_device_list",
    "parse_device_node",
    "parse_duration_minutes",
    "parse_flag",
    "parse_gain",
    "parse_gain_description",
    "parse_message",
    "parse_name",
    "parse_problem",
]
