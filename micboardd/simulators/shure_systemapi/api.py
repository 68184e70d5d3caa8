"""The REST surface of the simulated System API: routing, problem JSON, paging, subscriptions.

URL shapes, bodies and event envelopes follow reference/shure.md §5. Where the reference is silent the
simulator makes a plain choice and says so: PATCH answers 204 (as JB's mock), a property of an offline
device answers 409, a missing capability 405, a bad value 400 — each with a problem-JSON body.
"""

from __future__ import annotations

import base64
import json
import secrets
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import parse_qs, unquote

from .._https import HttpRequest
from .state import ACTIVITY_LEVELS, MAX_NAME, SimChannel, SimDevice
from .wire import HttpReply

if TYPE_CHECKING:
    from .simulator import SystemApiSim

API_PREFIX: Final = "/api/v1"
DEVICE_EVENTS: Final = {
    "name": "DEVICE_NAME",
    "identify": "DEVICE_IDENTIFY",
    "audio-mute": "DEVICE_AUDIO_MUTE",
    "battery-level": "DEVICE_BATTERY_LEVEL",
    "battery-health": "DEVICE_BATTERY_HEALTH",
}
CHANNEL_EVENTS: Final = {
    "mute": "AUDIO_CHANNEL_MUTE",
    "gain": "AUDIO_CHANNEL_GAIN",
    "name": "AUDIO_CHANNEL_NAME",
    "activity": "AUDIO_CHANNEL_ACTIVITY",
}
PROBLEM_SECTIONS: Final = {400: 1, 401: 2, 404: 5, 405: 6, 409: 10}  # RFC 9110 §15.5.x per status
EMPTY_JSON_BODY: Final = "Body cannot be empty when content-type is set to 'application/json'"  # JB's quote


def problem(status: int, title: str, detail: str, instance: str) -> HttpReply:
    """An RFC 7807 body shaped like the server's (reference §5: type, title, status, detail, instance, traceId)."""
    trace = f"00-{secrets.token_hex(16)}-{secrets.token_hex(8)}-00"
    return HttpReply(status, {
        "type": f"https://tools.ietf.org/html/rfc9110#section-15.5.{PROBLEM_SECTIONS.get(status, 1)}",
        "title": title,
        "status": status,
        "detail": detail,
        "instance": instance,
        "traceId": trace,
    })


def unauthorized(instance: str) -> HttpReply:
    return problem(401, "Request Unauthorized.", "The x-api-key header is missing or does not match the shared key.",
                   instance)


def cursor_of(device_id: str) -> str:
    return base64.b64encode(json.dumps({"f": "D", "a": device_id}, separators=(",", ":")).encode()).decode()


class Router:
    """Maps one REST request onto the simulator's devices and subscriptions."""

    def __init__(self, sim: SystemApiSim) -> None:
        self.sim = sim

    def route(self, req: HttpRequest) -> HttpReply:
        path = req.path
        if not path.startswith(API_PREFIX + "/"):
            return problem(404, "Not Found", "no such resource", path)
        if req.body == b"" and req.headers.get("content-type", "").startswith("application/json"):
            return problem(400, "One or more validation errors occurred.", EMPTY_JSON_BODY, path)
        body: Any = None
        if req.body:
            try:
                body = json.loads(req.body)
            except ValueError:
                return problem(400, "Bad Request", "the body is not JSON", path)
        seg = [unquote(s) for s in path[len(API_PREFIX) + 1:].split("/")]
        if seg == ["devices"] and req.method == "GET":
            return self._list(req)
        if len(seg) == 3 and seg[:2] == ["devices", "subscription"]:
            return self._subscribe(req, seg[2], "DEVICE_STATE_CHANGE")
        if len(seg) < 2 or seg[0] != "devices":
            return problem(404, "Not Found", "no such resource", path)
        dev = self.sim.device(seg[1])
        if dev is None:
            return problem(404, "Not Found", f"device {seg[1]} is not known to the server", path)
        rest = seg[2:]
        if not rest:
            return HttpReply(200, dev.node()) if req.method == "GET" else self._no_method(req)
        if rest[0] == "audio-channels":
            return self._channels(req, dev, rest[1:], body)
        return self._device(req, dev, rest, body)

    def _no_method(self, req: HttpRequest) -> HttpReply:
        return problem(405, "Method Not Allowed", f"{req.method} is not allowed here", req.path)

    def _list(self, req: HttpRequest) -> HttpReply:
        nodes = [d.node() for d in self.sim.devices]
        shape = self.sim.list_shape
        if shape == "array":
            return HttpReply(200, nodes)
        if shape == "items":
            return HttpReply(200, {"items": nodes})
        query = parse_qs(req.query)
        start = 0
        after = query.get("after", [None])[0]
        if after is not None:
            ids = [n["hardwareIdentity"]["deviceId"] for n in nodes]
            try:
                start = next(i for i, d in enumerate(ids) if cursor_of(d) == after) + 1
            except StopIteration:
                return problem(400, "Bad Request", "the cursor names no device (the list changed?)", req.path)
        size = self.sim.page_size
        first = query.get("first", [None])[0]
        if first is not None and first.isdigit() and 0 < int(first) < size:
            size = int(first)
        page = nodes[start:start + size]
        edges = [{"cursor": cursor_of(n["hardwareIdentity"]["deviceId"]), "node": n} for n in page]
        return HttpReply(200, {
            "pageInfo": {
                "hasNextPage": start + size < len(nodes),
                "hasPreviousPage": start > 0,
                "startCursor": edges[0]["cursor"] if edges else "",
                "endCursor": edges[-1]["cursor"] if edges else "",
            },
            "edges": edges,
        })

    def _subscribe(self, req: HttpRequest, transport_id: str, key: str) -> HttpReply:
        subs = self.sim.transport_subs(transport_id)
        if subs is None:
            return problem(404, "Not Found", f"transport {transport_id} is not open", req.path)
        if req.method == "POST":
            subs.add(key)
            return HttpReply(204)
        if req.method == "DELETE":
            subs.discard(key)
            return HttpReply(204)
        return self._no_method(req)

    def _device(self, req: HttpRequest, dev: SimDevice, rest: list[str], body: Any) -> HttpReply:
        prop, tail = rest[0], rest[1:]
        if len(tail) == 2 and tail[0] == "subscription":
            event = DEVICE_EVENTS.get(prop)
            if event is None or prop not in dev.caps:
                return problem(404, "Not Found", f"{prop} events are not offered by this device", req.path)
            return self._subscribe(req, tail[1], f"{dev.device_id}:{event}")
        if prop == "capabilities" and req.method == "GET" and not tail:
            return HttpReply(200, list(dev.caps))
        if prop not in dev.caps:
            return problem(405, "Method Not Allowed", f"the device does not have the {prop} capability", req.path)
        if dev.state != "ONLINE":
            return problem(409, "Conflict", f"the device is {dev.state}", req.path)
        sim = self.sim
        match prop, req.method, tail:
            case "name", "GET", []:
                return HttpReply(200, {"name": dev.name})
            case "name", "PATCH", []:
                name = body.get("name") if isinstance(body, dict) else None
                if not isinstance(name, str) or not 1 <= len(name) <= MAX_NAME:
                    return problem(400, "Bad Request", f"name must be 1..{MAX_NAME} characters", req.path)
                sim.rename(dev.device_id, name)
                return HttpReply(204)
            case "identify", "GET", []:
                return HttpReply(200, {"identifying": dev.identifying})
            case "identify", "POST", ["start" | "stop" as what]:
                sim.set_identify(dev.device_id, what == "start")
                return HttpReply(204)
            case "audio-mute", "GET", []:
                return HttpReply(200, {"muted": dev.audio_mute})
            case "audio-mute", "PATCH", []:
                muted = body.get("muted") if isinstance(body, dict) else None
                if not isinstance(muted, bool):
                    return problem(400, "Bad Request", "muted must be true or false", req.path)
                sim.set_device_mute(dev.device_id, muted)
                return HttpReply(204)
            case "battery-level", "GET", [] if dev.battery is not None:
                return HttpReply(200, dev.battery.level_body())
            case "battery-health", "GET", [] if dev.battery is not None:
                return HttpReply(200, dev.battery.health_body())
            case "reboot", "POST", []:
                sim.reboot(dev.device_id)
                return HttpReply(204)
        return problem(404, "Not Found", "no such resource", req.path)

    def _channels(self, req: HttpRequest, dev: SimDevice, rest: list[str], body: Any) -> HttpReply:
        if "audio-channels" not in dev.caps:
            return problem(405, "Method Not Allowed", "the device has no audio channels", req.path)
        if dev.state != "ONLINE":
            return problem(409, "Conflict", f"the device is {dev.state}", req.path)
        if not rest:
            return HttpReply(200, [c.listing() for c in dev.channels]) if req.method == "GET" else self._no_method(req)
        ch = dev.channel(rest[0])
        if ch is None or len(rest) < 2:
            return problem(404, "Not Found", "no such audio channel", req.path)
        prop, tail = rest[1], rest[2:]
        if prop not in ch.caps:
            return problem(405, "Method Not Allowed", f"the channel does not have the {prop} capability", req.path)
        if len(tail) == 2 and tail[0] == "subscription":
            event = CHANNEL_EVENTS.get(prop)
            if event is None:
                return problem(404, "Not Found", f"{prop} events are not offered", req.path)
            return self._subscribe(req, tail[1], f"{dev.device_id}:{ch.channel_id}:{event}")
        return self._channel_property(req, dev, ch, (prop, tail), body)

    def _channel_property(
        self, req: HttpRequest, dev: SimDevice, ch: SimChannel, what: tuple[str, list[str]], body: Any
    ) -> HttpReply:
        sim = self.sim
        prop, tail = what

        def value(key: str) -> Any:
            return body.get(key) if isinstance(body, dict) else None

        match prop, req.method, tail:
            case "name", "GET", []:
                return HttpReply(200, {"name": ch.name})
            case "name", "PATCH", []:
                name = value("name")
                if not isinstance(name, str) or not 1 <= len(name) <= MAX_NAME:
                    return problem(400, "Bad Request", f"name must be 1..{MAX_NAME} characters", req.path)
                sim.rename_channel(dev.device_id, ch.index + 1, name)
                return HttpReply(204)
            case "mute", "GET", []:
                return HttpReply(200, {"muted": ch.muted})
            case "mute", "PATCH", []:
                muted = value("muted")
                if not isinstance(muted, bool):
                    return problem(400, "Bad Request", "muted must be true or false", req.path)
                sim.set_mute(dev.device_id, ch.index + 1, muted)
                return HttpReply(204)
            case "gain", "GET", []:
                return HttpReply(200, {"gain": ch.gain})
            case "gain", "GET", ["description"]:
                return HttpReply(200, ch.gain_description())
            case "gain", "PATCH", []:
                gain = value("gain")
                lo, hi, _step = ch.gain_range
                if isinstance(gain, bool) or not isinstance(gain, int | float) or not lo <= gain <= hi:
                    return problem(400, "Bad Request", f"gain must be a number {lo:g}..{hi:g}", req.path)
                sim.set_gain(dev.device_id, ch.index + 1, float(gain))
                return HttpReply(204)
            case "activity", "GET", []:
                return HttpReply(200, {"audioLevel": ch.activity if ch.activity in ACTIVITY_LEVELS else "LOW"})
        return problem(404, "Not Found", "no such resource", req.path)
