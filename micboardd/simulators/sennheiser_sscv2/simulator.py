"""A simulated Sennheiser EW-DX EM2/EM4 receiver speaking SSCv2: HTTPS REST + Server-Sent Events.

Written from reference/sennheiser-and-others.md §1 (EW-DX service API 1.7) on its own — it never
imports micboardd's adapters. It is a real peer on a real socket: a small HTTP/1.1 server on asyncio
streams behind TLS with a throw-away certificate (trustme), HTTP Basic auth, persistent connections,
chunked SSE streams written in fragments, the device's validation errors, and fault modes.

Subscription flow (reference §1.4): ``GET /api/ssc/state/subscriptions`` answers 200
``text/event-stream`` with a ``Content-Location`` (bare UUID as in the OAS example, or the full path)
and a first ``open`` event; the client manages the list with ``PUT …/{uuid}``, ``…/add``,
``…/remove`` on another connection; after ``/add`` the current values of the added paths are
pushed (as the Rust Spectera simulator does); later changes arrive with several paths per ``data:``;
``close`` ends a session (lifetime, idle, :meth:`SSCv2Sim.close_sessions`).

Where the reference is silent the simulator picks one plausible behaviour and says so (UNVERIFIED):
what a notification for an unlinked transmitter looks like (``null``, as Spectera collections do),
that subscribing the ``/api/transmitters`` collection notifies per item path, the session limit's
status code, and the wire style of events (both ``data:x`` and ``data: x``, LF and CRLF, with and
without ``event:message``, multi-line ``data:`` and ``:`` comments are all emitted).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import random
import re
import socket
import ssl
import struct
import tempfile
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import trustme

log = logging.getLogger(__name__)

MAX_HEADER_BYTES: Final = 16 * 1024  # a real embedded server would refuse bigger request heads
MAX_BODY_BYTES: Final = 64 * 1024  # subscription lists and channel PUTs are tiny
IDLE_KEEPALIVE_S: Final = 30.0  # an idle persistent connection is closed after this, like a small device would
WRITE_TIMEOUT_S: Final = 5.0  # a client that stops reading its SSE stream loses it
REQUEST_LOG_MAX: Final = 20_000  # the request log is for tests; a long demo must not grow it forever

SUBS: Final = "/api/ssc/state/subscriptions"
VENDOR: Final = "Sennheiser electronic SE & Co. KG"

# model → (identity.product, channels, default site name)
MODELS: Final[dict[str, tuple[str, int, str]]] = {
    "EW-DX EM2": ("EWDX2CHS", 2, "EWDXEM2"),
    "EW-DX EM2 Dante": ("EWDX2CHDS", 2, "EWDXEM2D"),
    "EW-DX EM4": ("EWDX4CHDS", 4, "EWDXEM4"),
    "EW-DX EM4 Dante": ("EWDX4CHDS", 4, "EWDXEM4"),
}
# transmitter wire type → front-panel model name (the sim's own table, kept apart from the adapter's)
TX_NAMES: Final[dict[str, str]] = {
    "EW_D_SKP": "EW-D SKP",
    "EW_D_SK": "EW-D SK",
    "EW_D_SKM_S": "EW-D SKM-S",
    "EW_DX_SK": "EW-DX SK",
    "EW_DX_SK_3_PIN": "EW-DX SK 3-PIN",
    "EW_DX_SKM": "EW-DX SKM",
    "EW_DX_SKM_S": "EW-DX SKM-S",
    "EW_DX_TS_3_PIN": "EW-DX TS 3-PIN",
    "EW_DX_TS_5_PIN": "EW-DX TS 5-PIN",
}
RF_CODE: Final = "Q1-9"
RF_RANGES: Final = ({"start": 470200, "end": 550000, "stepSize": 25},)
NAME_RE: Final = re.compile(r"^[\x20#*+,;\x2D\x2F<=|>0-9A-Z]*$")  # PUT /api/channel name pattern (OAS)
FACTORY_BANK: Final = tuple(470200 + 2000 * n + (n % 3) * 350 for n in range(32))  # bank 0 presets, kHz
LOW_BATTERY_PERCENT: Final = 10  # below this the TX raises LowBattery (threshold UNVERIFIED)
NO_SIGNAL: Final = {"rssi": -107.0, "rsqi": 0, "divi": 0, "level": -138.5}
REASONS: Final = {
    200: "OK", 400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found",
    405: "Method Not Allowed", 409: "Conflict", 411: "Length Required", 413: "Payload Too Large",
    422: "Unprocessable Entity", 429: "Too Many Requests", 431: "Request Header Fields Too Large",
    500: "Internal Server Error",
}


# ----------------------------------------------------------------------------- state


@dataclass
class SimTx:
    type: str = "EW_DX_SKM"
    name: str = ""
    mute: bool = False
    version: str = "4.0.0"
    capsule: str = "MMD_935"
    lowcut: str = "80Hz"
    trim: float = 0.0
    lock: bool = False
    led: bool = True
    identification: bool = False
    battery_type: str = "Battery"
    gauge: int = 80
    lifetime: int = 420  # minutes


@dataclass
class SimRx:
    name: str
    frequency: int
    mute: bool = False
    gain: int = 18
    output_level: int = 0
    identify: bool = False
    preset: dict[str, Any] = field(default_factory=lambda: {"type": "None"})
    tx: SimTx | None = None
    rssi: float = NO_SIGNAL["rssi"]
    rsqi: int = 0
    divi: int = 0
    level: float = NO_SIGNAL["level"]
    event_counter: int = 0


@dataclass(frozen=True, slots=True)
class SimChannel:
    """A channel in normalized units, for tests to compare with what the daemon reports."""

    name: str
    frequency_khz: int
    muted: bool
    gain_db: float
    tx_present: bool
    tx_type: str | None
    tx_model: str | None
    battery_percent: int | None
    runtime_minutes: int | None
    rssi_dbm: float
    link_quality: int
    af_dbfs: float


@dataclass
class SimFault:
    """Fault switches; flip them at any time."""

    silent: bool = False  # read requests, never answer; SSE streams go quiet
    reset: bool = False  # every new connection and request is aborted (TCP RST)
    garbage_events: int = 0  # the next N notifications carry malformed JSON
    delay_s: float = 0.0  # every reply waits this long first
    fail_status: int | None = None  # answer every authenticated request with this status (e.g. 500)


@dataclass(frozen=True, slots=True)
class SimRequest:
    method: str
    path: str
    user: str | None
    status: int
    body: Any = None
    at: float = 0.0


@dataclass(eq=False)  # identity semantics: sessions live in sets
class _Session:
    uuid: str
    user: str
    paths: list[str] = field(default_factory=list)
    queue: asyncio.Queue[bytes | None] = field(default_factory=asyncio.Queue)
    created: float = field(default_factory=time.monotonic)
    touched: float = field(default_factory=time.monotonic)
    stalled: bool = False
    closed: bool = False


class _Reply(Exception):
    """Raised inside a handler to answer with a status (and optional JSON body)."""

    def __init__(self, status: int, body: Any = None) -> None:
        super().__init__(status)
        self.status = status
        self.body = body


# ----------------------------------------------------------------------------- simulator


class SSCv2Sim:
    """One EW-DX receiver on ``https://host:port``; start/stop keep the same port and device state."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        model: str = "EW-DX EM4",
        channels: int | None = None,
        password: str = "secret",
        seed: int = 0,
        lively: bool = False,
        serial: str | None = None,
        firmware: str = "4.0.1",
        content_location: str = "uuid",  # "uuid" (OAS example), "path" (what DJM insists on) or "none"
        open_event: bool = True,  # False: the stream starts without the `open` event (not seen; tolerance test)
        collection_notify: str = "items",  # /api/transmitters changes as per-item paths, or "list": whole list
        max_sessions: int = 4,  # per user; the OAS says "only a limited number" without the number
        session_lifetime_s: float | None = None,  # close a session this long after it opened
        session_idle_s: float | None = None,  # close a session nobody touched (GET/PUT on it) this long
        meter_interval_s: float = 0.2,  # lively meter tick
        fragment: bool = True,  # write SSE events in several TLS records
        wire_variants: bool = True,  # mix event styles (space/no space, CRLF/LF, event line, comments)
    ) -> None:
        if model not in MODELS:
            raise ValueError(f"unknown model {model!r}; one of {', '.join(MODELS)}")
        if content_location not in ("uuid", "path", "none"):
            raise ValueError("content_location must be 'uuid', 'path' or 'none'")
        if collection_notify not in ("items", "list"):
            raise ValueError("collection_notify must be 'items' or 'list'")
        self.host = host
        self.port = port
        self.model = model
        self.product, default_channels, site_name = MODELS[model]
        self.n_channels = channels if channels is not None else default_channels
        self.password = password
        self.users: dict[str, str] = {
            "api": password,
            "controlSennheiser": "Control-Pass-1",
            "initialSennheiser": "sennheiser",
        }
        self.rng = random.Random(seed)
        self.lively = lively
        self.serial = serial or f"{1023456789 + seed}"
        self.firmware = firmware
        self.content_location = content_location
        self.open_event = open_event
        self.collection_notify = collection_notify
        self.max_sessions = max_sessions
        self.session_lifetime_s = session_lifetime_s
        self.session_idle_s = session_idle_s
        self.meter_interval_s = meter_interval_s
        self.fragment = fragment
        self.wire_variants = wire_variants
        self.fault = SimFault()
        self.reject_paths: set[str] = set()  # /add answers 400 {"path", "error": 404} for these (older firmware)
        self.requests: deque[SimRequest] = deque(maxlen=REQUEST_LOG_MAX)
        self.site = {"deviceName": site_name, "location": "", "position": ""}
        self.device_state = "Normal"
        self.device_warnings: list[str] = []
        self.visual = False
        self.encryption = False
        self.rx: list[SimRx] = []
        for i in range(self.n_channels):
            rx = SimRx(name=f"CH {i + 1}", frequency=FACTORY_BANK[i * 3])
            rx.preset = {"type": "Factory", "bank": 0, "channel": i * 3 + 1}
            if i < max(1, self.n_channels - 1):  # every channel but the last has a transmitter
                tx_type = ("EW_DX_SKM", "EW_DX_SK", "EW_DX_SKM_S", "EW_DX_TS_5_PIN")[i % 4]
                self._link(rx, SimTx(type=tx_type, name=f"TX{i + 1}", gauge=90 - 10 * i, lifetime=480 - 60 * i))
            self.rx.append(rx)
        self._sessions: dict[str, _Session] = {}
        self._server: asyncio.Server | None = None
        self._conns: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._handlers: set[asyncio.Task[Any]] = set()
        self._streams: set[_Session] = set()  # sessions with an open stream, including forgotten ones
        self._stopping = asyncio.Event()
        self._tmp = tempfile.TemporaryDirectory(prefix="sscv2sim-")
        ca = trustme.CA(organization_name="SSCv2 simulator CA")
        names = sorted({host, "127.0.0.1", "localhost"})
        self._cert = ca.issue_cert(*names)
        self.ca_file = str(Path(self._tmp.name) / "ca.pem")
        self.cert_file = str(Path(self._tmp.name) / "device-cert.pem")  # the leaf alone, for pinning
        ca.cert_pem.write_to_path(self.ca_file)
        self._cert.cert_chain_pems[0].write_to_path(self.cert_file)
        self._ssl = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self._ssl.minimum_version = ssl.TLSVersion.TLSv1_2
        self._cert.configure_cert(self._ssl)

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Listen (again) on the same port; device state survives a restart, sessions do not."""
        if self._server is not None:
            return
        self._stopping = asyncio.Event()
        self._server = await asyncio.start_server(
            self._client, self.host, self.port, ssl=self._ssl, reuse_address=True, ssl_handshake_timeout=5.0
        )
        self.port = self._server.sockets[0].getsockname()[1]
        self._spawn(self._janitor())
        if self.lively:
            self._spawn(self._meters_loop())
        log.debug("sscv2 sim %s listening on %s:%d", self.model, self.host, self.port)

    async def stop(self) -> None:
        """Stop listening, drop every connection and forget every session (as a reboot would)."""
        server, self._server = self._server, None
        if server is None:
            return
        server.close()
        self._stopping.set()
        for sess in {*self._sessions.values(), *self._streams}:
            sess.closed = True
            sess.queue.put_nowait(None)  # wakes the stream writer, whose connection is aborted below
        self._sessions.clear()
        for w in list(self._conns):
            _abort(w)
        self._conns.clear()
        tasks = list(self._tasks)
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        self._tasks.clear()
        if self._handlers:
            # Handlers end by themselves once their connection is gone (cancelling them makes 3.11's
            # stream callback log an error); the timeout only guards against a bug here.
            await asyncio.wait(list(self._handlers), timeout=2.0)
        await server.wait_closed()

    async def __aenter__(self) -> SSCv2Sim:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def cleanup(self) -> None:
        """Remove the certificate files (also happens when the object is collected)."""
        self._tmp.cleanup()

    @property
    def running(self) -> bool:
        return self._server is not None

    @property
    def url(self) -> str:
        return f"https://{self.host}:{self.port}"

    # ------------------------------------------------------------------ test controls

    def channel(self, n: int) -> SimChannel:
        """Channel ``n`` (1-based, as on the front panel) in normalized units."""
        rx = self.rx[n - 1]
        tx = rx.tx
        return SimChannel(
            name=rx.name,
            frequency_khz=rx.frequency,
            muted=rx.mute,
            gain_db=float(rx.gain),
            tx_present=tx is not None,
            tx_type=tx.type if tx else None,
            tx_model=TX_NAMES.get(tx.type, tx.type) if tx else None,
            battery_percent=tx.gauge if tx else None,
            runtime_minutes=tx.lifetime if tx else None,
            rssi_dbm=rx.rssi,
            link_quality=rx.rsqi,
            af_dbfs=rx.level,
        )

    @property
    def active_sessions(self) -> list[str]:
        """UUIDs of the sessions the device currently holds."""
        return [u for u, s in self._sessions.items() if not s.closed]

    def session_paths(self, session: str) -> list[str]:
        return list(self._sessions[session].paths)

    def tx_link(self, n: int, tx_type: str = "EW_DX_SKM", *, gauge: int = 100, lifetime_min: int = 480) -> None:
        """A transmitter on channel ``n`` switches on / comes into range."""
        rx = self.rx[n - 1]
        self._link(rx, SimTx(type=tx_type, name=f"TX{n}", gauge=gauge, lifetime=lifetime_min))
        self._changed(n, "/api/transmitters/{i}", "/api/transmitters/{i}/battery", "/api/transmitters/{i}/warnings",
                      "/api/channel/{i}/warnings", *self._meter_templates())

    def tx_unlink(self, n: int) -> None:
        """The transmitter on channel ``n`` switches off / leaves range."""
        rx = self.rx[n - 1]
        rx.tx = None
        rx.rssi, rx.rsqi, rx.divi, rx.level = NO_SIGNAL["rssi"], 0, 0, NO_SIGNAL["level"]
        self._changed(n, "/api/transmitters/{i}", "/api/transmitters/{i}/battery", "/api/transmitters/{i}/warnings",
                      "/api/channel/{i}/warnings", *self._meter_templates())

    def set_battery(self, n: int, gauge: int, lifetime_min: int, battery_type: str | None = None) -> None:
        tx = self.rx[n - 1].tx
        if tx is None:
            raise ValueError(f"channel {n} has no transmitter")
        warned = tx.gauge <= LOW_BATTERY_PERCENT
        tx.gauge, tx.lifetime = gauge, lifetime_min
        if battery_type is not None:
            tx.battery_type = battery_type
        paths = ["/api/transmitters/{i}/battery"]
        if warned != (gauge <= LOW_BATTERY_PERCENT):
            paths.append("/api/transmitters/{i}/warnings")
        self._changed(n, *paths)

    def rename(self, n: int, name: str) -> None:
        """Rename from the front panel / Control Cockpit: notified like any change."""
        rx = self.rx[n - 1]
        rx.name = name
        rx.event_counter += 1
        self._changed(n, "/api/channel/{i}")

    def set_meters(self, n: int, *, rssi: float | None = None, rsqi: int | None = None,
                   divi: int | None = None, level: float | None = None) -> None:
        rx = self.rx[n - 1]
        rx.rssi = rx.rssi if rssi is None else rssi
        rx.rsqi = rx.rsqi if rsqi is None else rsqi
        rx.divi = rx.divi if divi is None else divi
        rx.level = rx.level if level is None else level
        self._changed(n, *self._meter_templates(), "/api/channel/{i}/warnings")

    def set_state(self, state: str, warnings: Iterable[str] = ()) -> None:
        """Device state ("Normal", "Identifying", "FirmwareUpdate", "Busy") and device warnings, notified."""
        self.device_state = state
        self.device_warnings = list(warnings)
        self._notify(["/api/device/state"])

    def set_password(self, password: str) -> None:
        """Change the ``api`` user's password (as re-enabling third-party access would)."""
        self.password = password
        self.users["api"] = password

    def close_sessions(self, detail: str = "closed") -> None:
        """Send ``close`` on every session and end it."""
        for s in list(self._sessions.values()):
            self._end_session(s, detail)

    def stall_streams(self) -> None:
        """Existing SSE streams stop delivering without closing (the silent death of a stream)."""
        for s in self._sessions.values():
            s.stalled = True

    def forget_sessions(self) -> None:
        """The device loses its session table but the streams stay open and silent (a half restart)."""
        for s in list(self._sessions.values()):
            s.stalled = True
        self._sessions.clear()

    def drop_connections(self) -> None:
        """Abort every open connection with a TCP reset; sessions whose stream died are ended."""
        for w in list(self._conns):
            _abort(w)

    # ------------------------------------------------------------------ model helpers

    @staticmethod
    def _link(rx: SimRx, tx: SimTx) -> None:
        rx.tx = tx
        rx.rssi, rx.rsqi, rx.divi, rx.level = -55.0, 92, 1, -30.0

    @staticmethod
    def _meter_templates() -> tuple[str, ...]:
        return (
            "/api/channel/{i}/signalStrengthIndicator",
            "/api/channel/{i}/signalQualityIndicator",
            "/api/channel/{i}/diversityIndicator",
            "/api/channel/{i}/level",
        )

    def _rx_warnings(self, rx: SimRx) -> list[str]:
        out: list[str] = []
        if self.encryption and rx.tx is not None and rx.tx.type.startswith("EW_D_"):
            out.append("Aes256Error")  # EW-D transmitters cannot do AES-256 (plausible, UNVERIFIED)
        if rx.tx is None:
            out.append("NoLink")
        elif rx.rsqi < 30:
            out.append("LowSignal")
        if rx.rssi > -20:
            out.append("RfPeak")
        if rx.level >= -1.0:
            out.append("AfPeak")
        return out

    @staticmethod
    def _tx_json(tx: SimTx) -> dict[str, Any]:
        base: dict[str, Any] = {"type": tx.type, "version": tx.version, "mute": tx.mute,
                                "identification": tx.identification}
        if tx.type.startswith("EW_D_"):
            base["capsule"] = tx.capsule if tx.type == "EW_D_SKM_S" else "Unknown"
            return base
        base.update({"name": tx.name, "trim": tx.trim, "led": tx.led, "lock": tx.lock, "lowcut": tx.lowcut})
        if tx.type in ("EW_DX_SK", "EW_DX_SK_3_PIN"):
            base.update({"capsule": "None", "cableEmulation": "Off", "muteConfig": "AfMute"})
        elif tx.type.startswith("EW_DX_TS"):
            base.update({"capsule": "Unknown", "cableEmulation": "Off", "muteConfigTableStand": "AfMute"})
        else:
            base["capsule"] = tx.capsule
            if tx.type == "EW_DX_SKM_S":
                base["muteConfig"] = "AfMute"
        return base

    # ------------------------------------------------------------------ resources (GET)

    def _resource(self, path: str) -> Any:
        """The JSON of a GET-able resource; raises _Reply(404/422) like the device."""
        fixed: dict[str, Callable[[], Any]] = {
            "/api/ssc/version": lambda: {"protocol": "2.3", "schema": "1.7"},
            "/api/device/identity": lambda: {"product": self.product, "hardwareRevision": "0596715-06",
                                             "serial": self.serial, "vendor": VENDOR},
            "/api/device/site": lambda: dict(self.site),
            "/api/device/state": lambda: {"state": self.device_state, "warnings": list(self.device_warnings)},
            "/api/device/identification": lambda: {"visual": self.visual},
            "/api/firmware/update/state": lambda: {"deviceVersion": self.firmware, "danteVersion": "4.2.3.1",
                                                   "state": "Idle", "progress": 0, "lastStatus": "None"},
            "/api/rf": lambda: {"code": RF_CODE, "ranges": [dict(r) for r in RF_RANGES]},
            "/api/rf/transmission": lambda: {"mode": "Standard", "presetSpacing": 25},
            "/api/rf/encryption": lambda: {"enabled": self.encryption},
            "/api/ssc/legacyMode": lambda: {"enabled": False},
            "/api/transmitters": lambda: [{"id": i, "transmitter": self._tx_json(rx.tx)}
                                          for i, rx in enumerate(self.rx) if rx.tx is not None],
        }
        if path in fixed:
            return fixed[path]()
        m = re.match(r"^/api/(channel|rf/channels|transmitters)/(\d+)(/[A-Za-z]+)?$", path)
        if not m:
            raise _Reply(404)
        kind, idx, sub = m.group(1), int(m.group(2)), m.group(3) or ""
        if idx >= self.n_channels:
            raise _Reply(404)
        rx = self.rx[idx]
        if kind == "channel":
            per_channel: dict[str, Callable[[], Any]] = {
                "": lambda: {"name": rx.name, "mute": rx.mute, "mates": [f"TX{idx + 1}"], "gain": rx.gain,
                             "audio": [f"Out{idx + 1}"], "outputLevel": rx.output_level,
                             "eventCounter": rx.event_counter},
                "/warnings": lambda: self._rx_warnings(rx),
                "/identify": lambda: {"enabled": rx.identify},
                "/signalStrengthIndicator": lambda: {"value": rx.rssi},
                "/signalQualityIndicator": lambda: {"value": rx.rsqi},
                "/diversityIndicator": lambda: {"value": rx.divi},
                "/level": lambda: {"value": rx.level},
            }
            if sub not in per_channel:
                raise _Reply(404)
            return per_channel[sub]()
        if kind == "rf/channels":
            if sub:
                raise _Reply(404)
            return {"frequency": rx.frequency, "presets": dict(rx.preset)}
        if sub not in ("", "/battery", "/warnings"):
            raise _Reply(404)
        tx = rx.tx
        if tx is None:
            raise _Reply(422)  # "Missing property values as no Transmitter is linked" (OAS: no body)
        if sub == "/battery":
            return {"type": tx.battery_type, "lifetime": tx.lifetime, "gauge": tx.gauge}
        if sub == "/warnings":
            return ["LowBattery"] if tx.gauge <= LOW_BATTERY_PERCENT else []
        return self._tx_json(tx)

    def _subscribable(self, path: str) -> bool:
        try:
            self._resource(path)
        except _Reply as r:
            return r.status == 422  # a transmitter path is valid even while nothing is linked
        return path not in ("/api/ssc/version", "/api/ssc/legacyMode")

    # ------------------------------------------------------------------ notifications

    def _changed(self, n: int, *templates: str) -> None:
        paths = [t.format(i=n - 1) for t in templates]
        if self.collection_notify == "list" and "/api/transmitters/{i}" in templates:
            paths.append("/api/transmitters")
        self._notify(paths)

    def _notify(self, paths: Iterable[str]) -> None:
        changed = list(dict.fromkeys(paths))
        for s in list(self._sessions.values()):
            if s.closed or s.stalled:
                continue
            wanted = [p for p in changed if self._wants(s, p)]
            if wanted:
                self._send(s, self._values(wanted))

    def _wants(self, s: _Session, path: str) -> bool:
        if path in s.paths:
            return True
        # Subscribing the /api/transmitters collection notifies per item path (x-sennheiser-sscv2-
        # subresource in the OAS; Spectera does the same for its collections). UNVERIFIED for EW-DX,
        # so collection_notify="list" sends the whole list under the collection path instead.
        if "/api/transmitters" in s.paths and re.fullmatch(r"/api/transmitters/\d+", path):
            return self.collection_notify == "items"
        return path == "/api/transmitters" and "/api/transmitters" in s.paths

    def _values(self, paths: Iterable[str], *, skip_missing: bool = False) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for p in paths:
            try:
                out[p] = self._resource(p)
            except _Reply:
                if not skip_missing:
                    out[p] = None  # item gone: null, as Spectera notifies deleted items
        return out

    def _send(self, s: _Session, payload: dict[str, Any]) -> None:
        if self.fault.garbage_events > 0:
            self.fault.garbage_events -= 1
            text = json.dumps(payload)
            data = [text[: max(1, len(text) // 2)] + "#garbage"]  # cut mid-object: not JSON
        elif self.wire_variants and self.rng.random() < 0.25:
            data = json.dumps(payload, indent=1).split("\n")  # multi-line data: joined with \n by clients
        else:
            data = [json.dumps(payload, separators=(",", ":"))]
        s.queue.put_nowait(self._frame("message", data))

    def _frame(self, event: str, data: list[str]) -> bytes:
        r = self.rng
        v = self.wire_variants
        sep = ": " if v and r.random() < 0.5 else ":"
        eol = "\r\n" if v and r.random() < 0.3 else "\n"
        lines: list[str] = []
        if v and r.random() < 0.1:
            lines.append(": keep-alive")
        if event != "message" or (v and r.random() < 0.5):
            lines.append(f"event{sep}{event}")
        lines += [f"data{sep}{d}" for d in data]
        return (eol.join(lines) + eol + eol).encode()

    def _end_session(self, s: _Session, detail: str) -> None:
        if s.closed:
            return
        s.closed = True
        self._sessions.pop(s.uuid, None)
        payload = json.dumps({"sessionUUID": s.uuid, "reason": detail}, separators=(",", ":"))
        s.queue.put_nowait(self._frame("close", [payload]))
        s.queue.put_nowait(None)

    # ------------------------------------------------------------------ background

    def _spawn(self, coro: Any) -> None:
        task: asyncio.Task[Any] = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _janitor(self) -> None:
        while True:
            await asyncio.sleep(0.05)
            now = time.monotonic()
            for s in list(self._sessions.values()):
                if self.session_lifetime_s is not None and now - s.created >= self.session_lifetime_s:
                    self._end_session(s, "lifetime")
                elif self.session_idle_s is not None and now - s.touched >= self.session_idle_s:
                    self._end_session(s, "idle")

    async def _meters_loop(self) -> None:
        while True:
            await asyncio.sleep(self.meter_interval_s)
            if self.fault.silent:
                continue
            paths: list[str] = []
            for i, rx in enumerate(self.rx):
                if rx.tx is None:
                    continue
                rx.rssi = round(min(-30.0, max(-95.0, rx.rssi + self.rng.uniform(-3, 3))), 1)
                rx.rsqi = int(min(100, max(40, rx.rsqi + self.rng.randint(-4, 4))))
                if self.rng.random() < 0.2:
                    rx.divi = 3 - rx.divi if rx.divi in (1, 2) else 1
                rx.level = round(min(-6.0, max(-70.0, rx.level + self.rng.uniform(-6, 6))), 1)
                paths += [t.format(i=i) for t in self._meter_templates()]
            self._notify(paths)

    # ------------------------------------------------------------------ HTTP server

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.fault.reset or self._server is None:
            _abort(writer)
            return
        task = asyncio.current_task()
        if task is not None:
            self._handlers.add(task)  # stop() waits for them; they end once their connection is aborted
        self._conns.add(writer)
        try:
            while True:
                try:
                    async with asyncio.timeout(IDLE_KEEPALIVE_S):
                        head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, TimeoutError, ConnectionError, ssl.SSLError):
                    return
                except asyncio.LimitOverrunError:
                    await self._write(writer, 431, None, close=True)
                    return
                if len(head) > MAX_HEADER_BYTES:
                    await self._write(writer, 431, None, close=True)
                    return
                if self.fault.reset:
                    _abort(writer)
                    return
                keep = await self._request(head, reader, writer)
                if not keep:
                    return
        except (ConnectionError, ssl.SSLError, OSError, asyncio.IncompleteReadError, TimeoutError):
            return  # the client went away mid-request or stopped reading
        finally:
            self._conns.discard(writer)
            if task is not None:
                self._handlers.discard(task)
            with contextlib.suppress(Exception):
                writer.close()

    async def _request(self, head: bytes, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        """Serve one request; False when the connection must close afterwards."""
        try:
            lines = head.decode("latin-1").split("\r\n")
            method, target, _version = lines[0].split(" ", 2)
        except ValueError:
            await self._write(writer, 400, None, close=True)
            return False
        headers: dict[str, str] = {}
        for line in lines[1:]:
            if ":" in line:
                k, _, v = line.partition(":")
                headers[k.strip().lower()] = v.strip()
        close = headers.get("connection", "").lower() == "close"
        body: bytes = b""
        if "transfer-encoding" in headers:
            await self._write(writer, 411, None, close=True)
            return False
        length = headers.get("content-length", "0")
        if not length.isdigit() or int(length) > MAX_BODY_BYTES:
            await self._write(writer, 413, None, close=True)
            return False
        if int(length):
            body = await reader.readexactly(int(length))
        path = target.split("?", 1)[0]
        if len(path) > 1:
            path = path.rstrip("/")
        user, auth_ok = self._auth(headers.get("authorization"))
        if self.fault.silent:
            await self._stopping.wait()  # never answers; the handler ends when the simulator stops
            return False
        if self.fault.delay_s:
            await asyncio.sleep(self.fault.delay_s)
        if method == "GET" and path == SUBS:
            status = self._security(path, user, auth_ok)
            if status == 200 and self.fault.fail_status:
                status = self.fault.fail_status
            if status != 200:
                self._log(method, path, user, status)
                await self._write(writer, status, None, close=close)
                return not close
            if len([s for s in self._sessions.values() if s.user == user and not s.closed]) >= self.max_sessions:
                self._log(method, path, user, 429)  # status for "too many sessions" is UNVERIFIED
                await self._write(writer, 429, None, close=close)
                return not close
            self._log(method, path, user, 200)
            await self._stream(reader, writer, user or "")
            return False
        status, reply = self._dispatch(method, path, body, user, auth_ok)
        parsed: Any = None
        with contextlib.suppress(ValueError):
            parsed = json.loads(body) if body else None
        self._log(method, path, user, status, parsed)
        await self._write(writer, status, reply, close=close)
        return not close

    def _log(self, method: str, path: str, user: str | None, status: int, body: Any = None) -> None:
        self.requests.append(SimRequest(method, path, user, status, body, time.monotonic()))

    def _auth(self, header: str | None) -> tuple[str | None, bool]:
        if not header or not header.lower().startswith("basic "):
            return None, False
        try:
            raw = base64.b64decode(header[6:].strip(), validate=True).decode("utf-8")
        except (ValueError, UnicodeDecodeError):
            return None, False
        user, sep, pw = raw.partition(":")
        ok = bool(sep) and user in self.users and self.users[user] == pw
        return user, ok

    def _security(self, path: str, user: str | None, ok: bool) -> int:
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

    def _dispatch(self, method: str, path: str, body: bytes, user: str | None, ok: bool) -> tuple[int, Any]:
        status = self._security(path, user, ok)
        if status != 200:
            return status, None
        if self.fault.fail_status and path not in ("/api/ssc/version", "/api/device/identity"):
            return self.fault.fail_status, None
        try:
            if path.startswith(SUBS + "/"):
                return 200, self._subscription_call(method, path, body, user or "")
            if method == "GET":
                return 200, self._resource(path)
            if method == "PUT":
                self._put(path, _json_body(body))
                return 200, None
            if method in ("PATCH", "POST", "DELETE"):
                self._resource(path)  # 404 for paths that do not exist at all
                return 405, None
            return 405, None
        except _Reply as r:
            return r.status, r.body

    # ------------------------------------------------------------------ subscriptions

    def _subscription_call(self, method: str, path: str, body: bytes, user: str) -> Any:
        rest = path[len(SUBS) + 1 :]
        sid, _, action = rest.partition("/")
        s = self._sessions.get(sid)
        if s is None or s.closed or s.user != user:
            raise _Reply(422)  # OAS: 422 "Not found … (e.g., the URL contains a wrong ID)"
        s.touched = time.monotonic()
        if action == "" and method == "GET":
            return list(s.paths)
        if action == "" and method == "DELETE":
            self._end_session(s, "deleted")
            return None
        if method != "PUT" or action not in ("", "add", "remove"):
            raise _Reply(405)
        items = _json_body(body)
        if not isinstance(items, list) or not all(isinstance(p, str) for p in items):
            raise _Reply(400)
        wanted: list[str] = []
        for raw in items:
            p = _normalize(raw)
            if action != "remove" and (p in self.reject_paths or not self._subscribable(p)):
                raise _Reply(400, {"path": raw, "error": 404})  # the one JSON error body the OAS defines
            if action == "remove" and p not in s.paths:
                raise _Reply(400, {"path": raw, "error": 404})
            wanted.append(p)
        if action == "remove":
            s.paths = [p for p in s.paths if p not in wanted]
            return None
        added = [p for p in dict.fromkeys(wanted) if action == "" or p not in s.paths]
        s.paths = list(dict.fromkeys(wanted)) if action == "" else s.paths + added
        # Push current values of what was added (reference §1.4: the Rust simulator does).
        expanded: list[str] = []
        for p in added:
            if p == "/api/transmitters" and self.collection_notify == "items":
                expanded += [f"/api/transmitters/{i}" for i, rx in enumerate(self.rx) if rx.tx is not None]
            else:
                expanded.append(p)
        values = self._values(expanded, skip_missing=True)
        if values and not s.stalled:
            self._send(s, values)
        return None

    async def _stream(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, user: str) -> None:
        sid = str(uuid.UUID(int=self.rng.getrandbits(128), version=4))
        s = _Session(uuid=sid, user=user)
        self._sessions[sid] = s
        self._streams.add(s)
        # The client sends nothing more on a stream connection: any read result means it went away.
        gone = asyncio.ensure_future(reader.read(1))
        location = {"uuid": sid, "path": f"{SUBS}/{sid}"}.get(self.content_location)
        head = (
            "HTTP/1.1 200 OK\r\n"
            "Content-Type: text/event-stream\r\n"
            "Cache-Control: no-cache\r\n"
            + (f"Content-Location: {location}\r\n" if location else "")
            + "Transfer-Encoding: chunked\r\n"
            "\r\n"
        )
        try:
            writer.write(head.encode())
            opening = json.dumps({"path": f"{SUBS}/{sid}", "sessionUUID": sid}, separators=(",", ":"))
            if self.open_event:  # exactly as the OAS example writes it: no space after the colon
                await self._chunks(writer, f"event:open\ndata:{opening}\n\n".encode())
            else:
                await writer.drain()
            while True:
                getter = asyncio.ensure_future(s.queue.get())
                await asyncio.wait({getter, gone}, return_when=asyncio.FIRST_COMPLETED)
                if not getter.done():
                    getter.cancel()
                    return  # the client closed the stream
                item = getter.result()
                if item is None:
                    writer.write(b"0\r\n\r\n")
                    await writer.drain()
                    return
                if s.stalled or self.fault.silent:
                    continue
                await self._chunks(writer, item)
        except (ConnectionError, ssl.SSLError, OSError, TimeoutError):
            return
        finally:
            gone.cancel()
            self._streams.discard(s)
            # the device notices its stream is gone and forgets the session
            if not s.closed:
                s.closed = True
                self._sessions.pop(sid, None)

    async def _chunks(self, writer: asyncio.StreamWriter, data: bytes) -> None:
        parts = [data]
        if self.fragment and len(data) > 4:
            cuts = sorted(self.rng.sample(range(1, len(data)), k=min(2, len(data) - 1)))
            parts = [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True)]
        for part in parts:
            writer.write(f"{len(part):X}\r\n".encode() + part + b"\r\n")
            async with asyncio.timeout(WRITE_TIMEOUT_S):
                await writer.drain()

    async def _write(self, writer: asyncio.StreamWriter, status: int, body: Any, *, close: bool) -> None:
        payload = b"" if body is None else json.dumps(body, separators=(",", ":")).encode()
        headers = [f"HTTP/1.1 {status} {REASONS.get(status, 'Error')}", f"Content-Length: {len(payload)}"]
        if payload:
            headers.append("Content-Type: application/json")
        if status == 401:
            headers.append('WWW-Authenticate: Basic realm="SSCv2"')
        if status == 405:
            headers.append("Allow: GET, PUT")
        if close:
            headers.append("Connection: close")
        writer.write(("\r\n".join(headers) + "\r\n\r\n").encode() + payload)
        async with asyncio.timeout(WRITE_TIMEOUT_S):
            await writer.drain()

    # ------------------------------------------------------------------ writes (PUT)

    def _put(self, path: str, body: Any) -> None:
        if path == "/api/device/identification":
            visual = _obj(body, {"visual"}).get("visual")
            if not isinstance(visual, bool):
                raise _Reply(400)
            if self.device_state in ("FirmwareUpdate", "Busy"):
                raise _Reply(409)
            self.visual = visual
            self.device_state = "Identifying" if visual else "Normal"
            self._notify(["/api/device/identification", "/api/device/state"])
            return
        m = re.match(r"^/api/(channel|rf/channels)/(\d+)(/[A-Za-z]+)?$", path)
        if not m:
            self._resource(path)  # 404 when unknown
            raise _Reply(405)  # read-only resource
        kind, idx, sub = m.group(1), int(m.group(2)), m.group(3) or ""
        if idx >= self.n_channels:
            raise _Reply(404)
        rx = self.rx[idx]
        if kind == "channel" and sub == "":
            o = _obj(body, {"name", "mute", "gain", "outputLevel"})
            name, mute, gain, level = o.get("name"), o.get("mute"), o.get("gain"), o.get("outputLevel")
            if "name" in o and not (isinstance(name, str) and len(name) <= 8 and NAME_RE.match(name)):
                raise _Reply(400)
            if "mute" in o and not isinstance(mute, bool):
                raise _Reply(400)
            if "gain" in o and not _stepped(gain, -3, 42, 3):
                raise _Reply(400)
            if "outputLevel" in o and not _stepped(level, -24, 18, 6):
                raise _Reply(400)
            if isinstance(name, str):
                rx.name = name
            if isinstance(mute, bool):
                rx.mute = mute
            if "gain" in o:
                rx.gain = int(gain)  # type: ignore[arg-type]
            if "outputLevel" in o:
                rx.output_level = int(level)  # type: ignore[arg-type]
            self._changed(idx + 1, "/api/channel/{i}")
        elif kind == "channel" and sub == "/identify":
            enabled = _obj(body, {"enabled"}).get("enabled")
            if not isinstance(enabled, bool):
                raise _Reply(400)
            rx.identify = enabled
            self._changed(idx + 1, "/api/channel/{i}/identify")
        elif kind == "rf/channels" and sub == "/frequency":
            freq = _obj(body, {"frequency"}).get("frequency")
            if isinstance(freq, bool) or not isinstance(freq, int) or freq % 25:
                raise _Reply(400)
            if not any(r["start"] <= freq <= r["end"] for r in RF_RANGES):
                raise _Reply(400)  # out of the device's RF code ranges; status UNVERIFIED
            rx.frequency = freq
            rx.preset = {"type": "None"}
            self._changed(idx + 1, "/api/rf/channels/{i}")
        elif kind == "rf/channels" and sub == "/preset":
            o = _obj(body, {"type", "bank", "channel"})
            if o.get("type") != "Factory" or o.get("bank", 0) != 0:
                raise _Reply(400)  # user banks are not simulated
            ch = o.get("channel")
            if isinstance(ch, bool) or not isinstance(ch, int) or not 1 <= ch <= len(FACTORY_BANK):
                raise _Reply(400)
            rx.frequency = FACTORY_BANK[ch - 1]
            rx.preset = {"type": "Factory", "bank": 0, "channel": ch}
            self._changed(idx + 1, "/api/rf/channels/{i}")
        else:
            self._resource(path)
            raise _Reply(405)


# ----------------------------------------------------------------------------- helpers


def _normalize(path: str) -> str:
    p = path.strip()
    if len(p) > 1:
        p = p.rstrip("/")
    if not p.startswith("/api/"):
        p = "/api" + (p if p.startswith("/") else "/" + p)
    return p


def _json_body(body: bytes) -> Any:
    try:
        return json.loads(body)
    except ValueError:
        raise _Reply(400) from None


def _obj(body: Any, allowed: set[str]) -> dict[str, Any]:
    if not isinstance(body, dict) or not body or any(k not in allowed for k in body):
        raise _Reply(400)  # unknown or read-only properties are a bad request
    return body


def _stepped(value: Any, lo: int, hi: int, step: int) -> bool:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    return lo <= value <= hi and float(value).is_integer() and (int(value) - lo) % step == 0


def _abort(writer: asyncio.StreamWriter) -> None:
    """Close with a TCP reset (SO_LINGER 0), the way a crashing device drops a connection."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    with contextlib.suppress(Exception):
        writer.transport.abort()
