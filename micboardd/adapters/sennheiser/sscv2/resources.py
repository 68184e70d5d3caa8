"""Which SSCv2 resources micboardd reads (EW-DX service API 1.7) and their wire paths, both ways.

Paths carry 0-based ids on the wire (EM2: 0..1, EM4: 0..3); micboardd counts channels from 1.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping
from typing import Final

from ..sse import SUBSCRIPTIONS_PATH, normalize_path

SUBS: Final = SUBSCRIPTIONS_PATH  # where subscription sessions live: GET opens one, …/{uuid} manages it


class Res(enum.StrEnum):
    """The SSCv2 resources micboardd reads (EW-DX service API 1.7)."""

    VERSION = "version"
    IDENTITY = "identity"
    SITE = "site"
    STATE = "state"
    IDENTIFICATION = "identification"
    FIRMWARE = "firmware"
    RF = "rf"
    ENCRYPTION = "encryption"
    TX_LIST = "tx_list"
    CHANNEL = "channel"
    CHANNEL_WARNINGS = "channel_warnings"
    CHANNEL_IDENTIFY = "channel_identify"
    FREQUENCY = "frequency"
    RSSI = "rssi"
    RSQI = "rsqi"
    DIVERSITY = "diversity"
    LEVEL = "level"
    TX = "tx"
    BATTERY = "battery"
    TX_WARNINGS = "tx_warnings"


# path patterns, 0-based ids on the wire (EM2: 0..1, EM4: 0..3)
_DEVICE_PATHS: Final[Mapping[str, Res]] = {
    "/api/ssc/version": Res.VERSION,
    "/api/device/identity": Res.IDENTITY,
    "/api/device/site": Res.SITE,
    "/api/device/state": Res.STATE,
    "/api/device/identification": Res.IDENTIFICATION,
    "/api/firmware/update/state": Res.FIRMWARE,
    "/api/rf": Res.RF,
    "/api/rf/encryption": Res.ENCRYPTION,
    "/api/transmitters": Res.TX_LIST,
}
_CHANNEL_PATHS: Final = (
    (re.compile(r"^/api/channel/(\d+)$"), Res.CHANNEL),
    (re.compile(r"^/api/channel/(\d+)/warnings$"), Res.CHANNEL_WARNINGS),
    (re.compile(r"^/api/channel/(\d+)/identify$"), Res.CHANNEL_IDENTIFY),
    (re.compile(r"^/api/channel/(\d+)/signalStrengthIndicator$"), Res.RSSI),
    (re.compile(r"^/api/channel/(\d+)/signalQualityIndicator$"), Res.RSQI),
    (re.compile(r"^/api/channel/(\d+)/diversityIndicator$"), Res.DIVERSITY),
    (re.compile(r"^/api/channel/(\d+)/level$"), Res.LEVEL),
    (re.compile(r"^/api/rf/channels/(\d+)$"), Res.FREQUENCY),
    (re.compile(r"^/api/transmitters/(\d+)$"), Res.TX),
    (re.compile(r"^/api/transmitters/(\d+)/battery$"), Res.BATTERY),
    (re.compile(r"^/api/transmitters/(\d+)/warnings$"), Res.TX_WARNINGS),
)
_CHANNEL_TEMPLATES: Final[Mapping[Res, str]] = {
    Res.CHANNEL: "/api/channel/{i}",
    Res.CHANNEL_WARNINGS: "/api/channel/{i}/warnings",
    Res.CHANNEL_IDENTIFY: "/api/channel/{i}/identify",
    Res.RSSI: "/api/channel/{i}/signalStrengthIndicator",
    Res.RSQI: "/api/channel/{i}/signalQualityIndicator",
    Res.DIVERSITY: "/api/channel/{i}/diversityIndicator",
    Res.LEVEL: "/api/channel/{i}/level",
    Res.FREQUENCY: "/api/rf/channels/{i}",
    Res.TX: "/api/transmitters/{i}",
    Res.BATTERY: "/api/transmitters/{i}/battery",
    Res.TX_WARNINGS: "/api/transmitters/{i}/warnings",
}
_DEVICE_TEMPLATES: Final[Mapping[Res, str]] = {res: path for path, res in _DEVICE_PATHS.items()}
METER_RESOURCES: Final = (Res.RSSI, Res.RSQI, Res.DIVERSITY, Res.LEVEL)
MAX_ID_DIGITS: Final = 4  # EM2/EM4 ids are 0..3; a longer id in a path is junk


def resource_path(res: Res, index: int | None = None) -> str:
    """The wire path of a resource; ``index`` is the 1-based channel number (the wire id is index-1)."""
    if index is None:
        return _DEVICE_TEMPLATES[res]
    return _CHANNEL_TEMPLATES[res].format(i=index - 1)


def classify(path: str) -> tuple[Res, int | None] | None:
    """Which resource a path is and its 1-based channel, or None for a path we do not read."""
    p = normalize_path(path)
    res = _DEVICE_PATHS.get(p)
    if res is not None:
        return res, None
    for pattern, res in _CHANNEL_PATHS:
        m = pattern.match(p)
        if m:
            wire_id = m.group(1)
            if not wire_id.isascii() or len(wire_id) > MAX_ID_DIGITS:
                return None  # \d also matches other scripts' digits; a 5000-digit id is no channel
            return res, int(wire_id) + 1
    return None
