"""A simulated Sennheiser EW-DX EM2/EM4 receiver speaking SSCv2: HTTPS REST + Server-Sent Events.

Written from reference/sennheiser-and-others.md §1 (EW-DX service API 1.7) on its own — it never
imports micboardd's adapters. It is a real peer on a real socket: a small HTTP/1.1 server on asyncio
streams behind TLS with a throw-away certificate (:mod:`.http`), HTTP Basic auth, persistent
connections, chunked SSE streams written in fragments (:mod:`.sessions`), the device's validation
errors (:mod:`.api`), and fault modes (:mod:`.faults`). :class:`SSCv2Sim` is the device's state
(:mod:`.state`) with that network face, plus the controls tests steer it with.

Where the reference is silent the simulator picks one plausible behaviour and says so (UNVERIFIED):
what a notification for an unlinked transmitter looks like (``null``, as Spectera collections do),
that subscribing the ``/api/transmitters`` collection notifies per item path, the session limit's
status code, and the wire style of events (both ``data:x`` and ``data: x``, LF and CRLF, with and
without ``event:message``, multi-line ``data:`` and ``:`` comments are all emitted).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Final

from .._https import read_request
from .api import SUBS, Reply, check_auth, json_body, put, resource, security
from .faults import SimFault
from .http import HttpServer, write_reply
from .sessions import SessionTable
from .state import LOW_BATTERY_PERCENT, METER_TEMPLATES, NO_SIGNAL, EwdxDevice, SimTx

log = logging.getLogger(__name__)

REQUEST_LOG_MAX: Final = 20_000  # the request log is for tests; a long demo must not grow it forever
JANITOR_TICK_S: Final = 0.05  # how often session lifetime and idle limits are checked


@dataclass(frozen=True, slots=True)
class SimRequest:
    method: str
    path: str
    user: str | None
    status: int
    body: Any = None
    at: float = 0.0


class SSCv2Sim(EwdxDevice):
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
        super().__init__(model, channels, password=password, seed=seed, serial=serial, firmware=firmware)
        self.rng = random.Random(seed)
        self.lively = lively
        self.meter_interval_s = meter_interval_s
        self._fault = SimFault()
        self.reject_paths: set[str] = set()  # /add answers 400 {"path", "error": 404} for these (older firmware)
        self.requests: deque[SimRequest] = deque(maxlen=REQUEST_LOG_MAX)
        self.sessions = SessionTable(
            self, self.rng, self._fault,
            content_location=content_location, open_event=open_event, collection_notify=collection_notify,
            max_sessions=max_sessions, session_lifetime_s=session_lifetime_s, session_idle_s=session_idle_s,
            fragment=fragment, wire_variants=wire_variants,
        )
        self._tasks: set[asyncio.Task[Any]] = set()
        self._stopping = asyncio.Event()
        self._http = HttpServer(host, port, self._request, reset=lambda: self._fault.reset)
        self.ca_file = self._http.ca_file
        self.cert_file = self._http.cert_file  # the leaf alone, for pinning

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Listen (again) on the same port; device state survives a restart, sessions do not."""
        if self._http.running:
            return
        self._stopping = asyncio.Event()
        await self._http.listen()
        self._spawn(self._janitor())
        if self.lively:
            self._spawn(self._meters_loop())
        log.debug("sscv2 sim %s listening on %s:%d", self.model, self.host, self.port)

    async def stop(self) -> None:
        """Stop listening, drop every connection and forget every session (as a reboot would)."""
        server = self._http.close()
        if server is None:
            return
        self._stopping.set()
        self.sessions.shutdown()
        self._http.abort_all()
        tasks = list(self._tasks)
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        self._tasks.clear()
        await self._http.wait_closed(server)

    async def __aenter__(self) -> SSCv2Sim:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def cleanup(self) -> None:
        """Remove the certificate files (also happens when the object is collected)."""
        self._http.cleanup()

    @property
    def fault(self) -> SimFault:
        """Fault switches, shared with the server and the sessions: flip its fields, never replace it."""
        return self._fault

    @property
    def host(self) -> str:
        return self._http.host

    @property
    def port(self) -> int:
        return self._http.port

    @property
    def running(self) -> bool:
        return self._http.running

    @property
    def url(self) -> str:
        return f"https://{self.host}:{self.port}"

    # ------------------------------------------------------------------ test controls

    @property
    def active_sessions(self) -> list[str]:
        """UUIDs of the sessions the device currently holds."""
        return self.sessions.active()

    def session_paths(self, session: str) -> list[str]:
        return self.sessions.paths(session)

    def tx_link(self, n: int, tx_type: str = "EW_DX_SKM", *, gauge: int = 100, lifetime_min: int = 480) -> None:
        """A transmitter on channel ``n`` switches on / comes into range."""
        rx = self.rx[n - 1]
        self.link_tx(rx, SimTx(type=tx_type, name=f"TX{n}", gauge=gauge, lifetime=lifetime_min))
        self.sessions.changed(n, "/api/transmitters/{i}", "/api/transmitters/{i}/battery",
                              "/api/transmitters/{i}/warnings", "/api/channel/{i}/warnings", *METER_TEMPLATES)

    def tx_unlink(self, n: int) -> None:
        """The transmitter on channel ``n`` switches off / leaves range."""
        rx = self.rx[n - 1]
        rx.tx = None
        rx.rssi, rx.rsqi, rx.divi, rx.level = NO_SIGNAL["rssi"], 0, 0, NO_SIGNAL["level"]
        self.sessions.changed(n, "/api/transmitters/{i}", "/api/transmitters/{i}/battery",
                              "/api/transmitters/{i}/warnings", "/api/channel/{i}/warnings", *METER_TEMPLATES)

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
        self.sessions.changed(n, *paths)

    def rename(self, n: int, name: str) -> None:
        """Rename from the front panel / Control Cockpit: notified like any change."""
        rx = self.rx[n - 1]
        rx.name = name
        rx.event_counter += 1
        self.sessions.changed(n, "/api/channel/{i}")

    def set_meters(self, n: int, *, rssi: float | None = None, rsqi: int | None = None,
                   divi: int | None = None, level: float | None = None) -> None:
        rx = self.rx[n - 1]
        rx.rssi = rx.rssi if rssi is None else rssi
        rx.rsqi = rx.rsqi if rsqi is None else rsqi
        rx.divi = rx.divi if divi is None else divi
        rx.level = rx.level if level is None else level
        self.sessions.changed(n, *METER_TEMPLATES, "/api/channel/{i}/warnings")

    def set_state(self, state: str, warnings: Iterable[str] = ()) -> None:
        """Device state ("Normal", "Identifying", "FirmwareUpdate", "Busy") and device warnings, notified."""
        self.device_state = state
        self.device_warnings = list(warnings)
        self.sessions.notify(["/api/device/state"])

    def close_sessions(self, detail: str = "closed") -> None:
        """Send ``close`` on every session and end it."""
        self.sessions.close_all(detail)

    def stall_streams(self) -> None:
        """Existing SSE streams stop delivering without closing (the silent death of a stream)."""
        self.sessions.stall_all()

    def forget_sessions(self) -> None:
        """The device loses its session table but the streams stay open and silent (a half restart)."""
        self.sessions.forget_all()

    def drop_connections(self) -> None:
        """Abort every open connection with a TCP reset; sessions whose stream died are ended."""
        self._http.drop_connections()

    # ------------------------------------------------------------------ background

    def _spawn(self, coro: Any) -> None:
        task: asyncio.Task[Any] = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _janitor(self) -> None:
        while True:
            await asyncio.sleep(JANITOR_TICK_S)
            self.sessions.expire()

    async def _meters_loop(self) -> None:
        while True:
            await asyncio.sleep(self.meter_interval_s)
            if self.fault.silent:
                continue
            self.sessions.notify(self.wander_meters(self.rng))

    # ------------------------------------------------------------------ requests

    async def _request(self, head: bytes, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        """Serve one request; False when the connection must close afterwards."""
        req = await read_request(head, reader, writer)
        if req is None:
            return False
        method, path, body, close = req.method, req.path, req.body, req.close
        user, auth_ok = check_auth(self.users, req.headers.get("authorization"))
        if self.fault.silent:
            await self._stopping.wait()  # never answers; the handler ends when the simulator stops
            return False
        if self.fault.delay_s:
            await asyncio.sleep(self.fault.delay_s)
        if method == "GET" and path == SUBS:
            status = security(path, user, auth_ok)
            if status == 200 and self.fault.fail_status:
                status = self.fault.fail_status
            if status != 200:
                self._log(method, path, user, status)
                await write_reply(writer, status, None, close=close)
                return not close
            if self.sessions.full(user):
                self._log(method, path, user, 429)  # status for "too many sessions" is UNVERIFIED
                await write_reply(writer, 429, None, close=close)
                return not close
            self._log(method, path, user, 200)
            await self.sessions.stream(reader, writer, user or "")
            return False
        status, reply = self._dispatch(method, path, body, user, auth_ok)
        parsed: Any = None
        with contextlib.suppress(ValueError):
            parsed = json.loads(body) if body else None
        self._log(method, path, user, status, parsed)
        await write_reply(writer, status, reply, close=close)
        return not close

    def _log(self, method: str, path: str, user: str | None, status: int, body: Any = None) -> None:
        self.requests.append(SimRequest(method, path, user, status, body, time.monotonic()))

    def _dispatch(self, method: str, path: str, body: bytes, user: str | None, ok: bool) -> tuple[int, Any]:
        status = security(path, user, ok)
        if status != 200:
            return status, None
        if self.fault.fail_status and path not in ("/api/ssc/version", "/api/device/identity"):
            return self.fault.fail_status, None
        try:
            if path.startswith(SUBS + "/"):
                return 200, self.sessions.call(method, path, body, user or "", self.reject_paths)
            if method == "GET":
                return 200, resource(self, path)
            if method == "PUT":
                self.sessions.notify(put(self, path, json_body(body)))
                return 200, None
            if method in ("PATCH", "POST", "DELETE"):
                resource(self, path)  # 404 for paths that do not exist at all
                return 405, None
            return 405, None
        except Reply as r:
            return r.status, r.body
