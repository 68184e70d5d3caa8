"""The simulated receiver's REST resources (EW-DX service API 1.7): what a GET returns, what a PUT may change.

Functions of an :class:`~.state.EwdxDevice`, no I/O. Errors are the device's: :class:`Reply` carries the
status (and the one JSON error body the OAS defines), including 401/403 from the security scheme.
A PUT returns the paths it changed, for the caller to notify.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Callable
from typing import Any, Final

from .state import FACTORY_BANK, LOW_BATTERY_PERCENT, RF_CODE, RF_RANGES, VENDOR, EwdxDevice

SUBS: Final = "/api/ssc/state/subscriptions"
NAME_RE: Final = re.compile(r"^[\x20#*+,;\x2D\x2F<=|>0-9A-Z]*$")  # PUT /api/channel name pattern (OAS)


class Reply(Exception):
    """Raised inside a handler to answer with a status (and optional JSON body)."""

    def __init__(self, status: int, body: Any = None) -> None:
        super().__init__(status)
        self.status = status
        self.body = body


def check_auth(users: dict[str, str], header: str | None) -> tuple[str | None, bool]:
    """The user an ``Authorization: Basic`` header names, and whether its password is right."""
    if not header or not header.lower().startswith("basic "):
        return None, False
    try:
        raw = base64.b64decode(header[6:].strip(), validate=True).decode("utf-8")
    except (ValueError, UnicodeDecodeError):
        return None, False
    user, sep, pw = raw.partition(":")
    ok = bool(sep) and user in users and users[user] == pw
    return user, ok


def security(path: str, user: str | None, ok: bool) -> int:
    """401 without valid credentials, 403 for a user the route does not allow, else 200 (OAS §security)."""
    public = path in ("/api/ssc/version", "/api/device/identity", "/api/device/identification") or \
        path.startswith("/api/device/licenseAgreements")
    if public:
        return 200
    if user is None or not ok:
        return 401
    if user == "initialSennheiser" and path != "/api/device/site":
        return 403
    return 200


def resource(dev: EwdxDevice, path: str) -> Any:
    """The JSON of a GET-able resource; raises Reply(404/422) like the device."""
    fixed: dict[str, Callable[[], Any]] = {
        "/api/ssc/version": lambda: {"protocol": "2.3", "schema": "1.7"},
        "/api/device/identity": lambda: {"product": dev.product, "hardwareRevision": "0596715-06",
                                         "serial": dev.serial, "vendor": VENDOR},
        "/api/device/site": lambda: dict(dev.site),
        "/api/device/state": lambda: {"state": dev.device_state, "warnings": list(dev.device_warnings)},
        "/api/device/identification": lambda: {"visual": dev.visual},
        "/api/firmware/update/state": lambda: {"deviceVersion": dev.firmware, "danteVersion": "4.2.3.1",
                                               "state": "Idle", "progress": 0, "lastStatus": "None"},
        "/api/rf": lambda: {"code": RF_CODE, "ranges": [dict(r) for r in RF_RANGES]},
        "/api/rf/transmission": lambda: {"mode": "Standard", "presetSpacing": 25},
        "/api/rf/encryption": lambda: {"enabled": dev.encryption},
        "/api/ssc/legacyMode": lambda: {"enabled": False},
        "/api/transmitters": lambda: [{"id": i, "transmitter": dev.tx_json(rx.tx)}
                                      for i, rx in enumerate(dev.rx) if rx.tx is not None],
    }
    if path in fixed:
        return fixed[path]()
    m = re.match(r"^/api/(channel|rf/channels|transmitters)/(\d+)(/[A-Za-z]+)?$", path)
    if not m:
        raise Reply(404)
    kind, idx, sub = m.group(1), int(m.group(2)), m.group(3) or ""
    if idx >= dev.n_channels:
        raise Reply(404)
    rx = dev.rx[idx]
    if kind == "channel":
        per_channel: dict[str, Callable[[], Any]] = {
            "": lambda: {"name": rx.name, "mute": rx.mute, "mates": [f"TX{idx + 1}"], "gain": rx.gain,
                         "audio": [f"Out{idx + 1}"], "outputLevel": rx.output_level,
                         "eventCounter": rx.event_counter},
            "/warnings": lambda: dev.rx_warnings(rx),
            "/identify": lambda: {"enabled": rx.identify},
            "/signalStrengthIndicator": lambda: {"value": rx.rssi},
            "/signalQualityIndicator": lambda: {"value": rx.rsqi},
            "/diversityIndicator": lambda: {"value": rx.divi},
            "/level": lambda: {"value": rx.level},
        }
        if sub not in per_channel:
            raise Reply(404)
        return per_channel[sub]()
    if kind == "rf/channels":
        if sub:
            raise Reply(404)
        return {"frequency": rx.frequency, "presets": dict(rx.preset)}
    if sub not in ("", "/battery", "/warnings"):
        raise Reply(404)
    tx = rx.tx
    if tx is None:
        raise Reply(422)  # "Missing property values as no Transmitter is linked" (OAS: no body)
    if sub == "/battery":
        return {"type": tx.battery_type, "lifetime": tx.lifetime, "gauge": tx.gauge}
    if sub == "/warnings":
        return ["LowBattery"] if tx.gauge <= LOW_BATTERY_PERCENT else []
    return dev.tx_json(tx)


def subscribable(dev: EwdxDevice, path: str) -> bool:
    """Whether ``/add`` accepts the path: any readable resource, and transmitter paths even while none is linked."""
    try:
        resource(dev, path)
    except Reply as r:
        return r.status == 422  # a transmitter path is valid even while nothing is linked
    return path not in ("/api/ssc/version", "/api/ssc/legacyMode")


def put(dev: EwdxDevice, path: str, body: Any) -> list[str]:
    """Apply a PUT as the device validates it; returns the paths whose values changed."""
    if path == "/api/device/identification":
        visual = _obj(body, {"visual"}).get("visual")
        if not isinstance(visual, bool):
            raise Reply(400)
        if dev.device_state in ("FirmwareUpdate", "Busy"):
            raise Reply(409)
        dev.visual = visual
        dev.device_state = "Identifying" if visual else "Normal"
        return ["/api/device/identification", "/api/device/state"]
    m = re.match(r"^/api/(channel|rf/channels)/(\d+)(/[A-Za-z]+)?$", path)
    if not m:
        resource(dev, path)  # 404 when unknown
        raise Reply(405)  # read-only resource
    kind, idx, sub = m.group(1), int(m.group(2)), m.group(3) or ""
    if idx >= dev.n_channels:
        raise Reply(404)
    rx = dev.rx[idx]
    if kind == "channel" and sub == "":
        o = _obj(body, {"name", "mute", "gain", "outputLevel"})
        name, mute, gain, level = o.get("name"), o.get("mute"), o.get("gain"), o.get("outputLevel")
        if "name" in o and not (isinstance(name, str) and len(name) <= 8 and NAME_RE.match(name)):
            raise Reply(400)
        if "mute" in o and not isinstance(mute, bool):
            raise Reply(400)
        if "gain" in o and not _stepped(gain, -3, 42, 3):
            raise Reply(400)
        if "outputLevel" in o and not _stepped(level, -24, 18, 6):
            raise Reply(400)
        if isinstance(name, str):
            rx.name = name
        if isinstance(mute, bool):
            rx.mute = mute
        if "gain" in o:
            rx.gain = int(gain)  # type: ignore[arg-type]
        if "outputLevel" in o:
            rx.output_level = int(level)  # type: ignore[arg-type]
        return [f"/api/channel/{idx}"]
    if kind == "channel" and sub == "/identify":
        enabled = _obj(body, {"enabled"}).get("enabled")
        if not isinstance(enabled, bool):
            raise Reply(400)
        rx.identify = enabled
        return [f"/api/channel/{idx}/identify"]
    if kind == "rf/channels" and sub == "/frequency":
        freq = _obj(body, {"frequency"}).get("frequency")
        if isinstance(freq, bool) or not isinstance(freq, int) or freq % 25:
            raise Reply(400)
        if not any(r["start"] <= freq <= r["end"] for r in RF_RANGES):
            raise Reply(400)  # out of the device's RF code ranges; status UNVERIFIED
        rx.frequency = freq
        rx.preset = {"type": "None"}
        return [f"/api/rf/channels/{idx}"]
    if kind == "rf/channels" and sub == "/preset":
        o = _obj(body, {"type", "bank", "channel"})
        if o.get("type") != "Factory" or o.get("bank", 0) != 0:
            raise Reply(400)  # user banks are not simulated
        ch = o.get("channel")
        if isinstance(ch, bool) or not isinstance(ch, int) or not 1 <= ch <= len(FACTORY_BANK):
            raise Reply(400)
        rx.frequency = FACTORY_BANK[ch - 1]
        rx.preset = {"type": "Factory", "bank": 0, "channel": ch}
        return [f"/api/rf/channels/{idx}"]
    resource(dev, path)
    raise Reply(405)


def json_body(body: bytes) -> Any:
    """A request body as JSON; 400 when it is not."""
    try:
        return json.loads(body)
    except ValueError:
        raise Reply(400) from None


def _obj(body: Any, allowed: set[str]) -> dict[str, Any]:
    if not isinstance(body, dict) or not body or any(k not in allowed for k in body):
        raise Reply(400)  # unknown or read-only properties are a bad request
    return body


def _stepped(value: Any, lo: int, hi: int, step: int) -> bool:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    return lo <= value <= hi and float(value).is_integer() and (int(value) - lo) % step == 0
