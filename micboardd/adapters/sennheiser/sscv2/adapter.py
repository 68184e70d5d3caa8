"""Sennheiser SSCv2 session (EW-DX EM2/EM4, FW ≥ 4): HTTPS REST reads and writes plus an SSE subscription.

One :class:`SSCv2Adapter` per receiver. A session reads the device (version, identity, site), opens the
subscription stream (``GET /api/ssc/state/subscriptions``), takes the session id from the ``open``
event (falling back to the ``Content-Location`` header), adds the resource paths on a second
connection, re-reads everything with GETs (initial values are not promised by the spec), then keeps
the stream alive: a heartbeat polls the session, silence renews it, ``close`` resubscribes.
Protocol facts and their confidence: reference/sennheiser-and-others.md §1; wire parsing lives in
:mod:`.sse`.

Device config keys used: ``host``, ``port`` (443), ``username`` (default ``api``), ``password``,
``tls_ca_file`` (device certificate or its CA: pinned trust), ``tls_insecure`` (explicit opt-out,
logged), ``channels`` (override), ``meter_rate_ms`` (0 = no meter subscription).

``options`` keys (all optional; tests shorten them):

==================== ======= ==================================================================
key                  default meaning
==================== ======= ==================================================================
request_timeout_s    5.0     each REST request, connect to last byte
open_timeout_s       15.0    wait for the stream's ``open`` event (the Spectera client waits 15 s)
heartbeat_s          5.0     poll the session (``GET …/subscriptions/{uuid}``): liveness, lost sessions
silence_s            60.0    no byte on the stream this long → delete the stale session, resubscribe
request_gap_ms       20      pause between REST requests; small embedded HTTPS servers need pacing
identify_s           10.0    switch identify off again after this many seconds (0 = leave it on)
tls_check_hostname   true    check the certificate names the host (device certificates may not)
==================== ======= ==================================================================
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import ssl
import time
from collections.abc import AsyncGenerator, Callable, Mapping
from dataclasses import dataclass, fields
from typing import Any, ClassVar, Final

import httpx
from httpx_sse import aconnect_sse

from ....commands import (
    ECHO_TIMEOUT_S,
    Command,
    CommandError,
    CommandErrorReason,
    CommandResult,
    Identify,
    RenameChannel,
    SetFrequency,
    SetGain,
    SetMeterRate,
    SetMute,
)
from ....config import DeviceConfig
from ....model import TX_ABSENT, Manufacturer, Meters
from ...base import (
    Adapter,
    AuthError,
    DeviceError,
    DeviceLink,
    ProtocolError,
    RetryableError,
    TerminalError,
    describe_os_error,
)
from ..sse import (
    SUBSCRIPTIONS_PATH,
    CloseEvent,
    DataEvent,
    EventDataError,
    OpenEvent,
    OtherEvent,
    SseDecoder,
    SseEvent,
    SseFramingError,
    excerpt,
    normalize_path,
    parse_event,
    session_from_location,
)
from .decode import PRODUCTS, Decoded, ResourceError, decode_resource, decode_tx_object
from .resources import METER_RESOURCES, Res, classify, resource_path

DEFAULT_REQUEST_TIMEOUT_S: Final = 5.0  # an EM answers a GET in tens of ms; 5 s covers a busy TLS stack
DEFAULT_OPEN_TIMEOUT_S: Final = 15.0  # the Spectera client waits 15 s for the `open` event
DEFAULT_HEARTBEAT_S: Final = 5.0  # Spectera polls every 5 s; notices a dead device within seconds
DEFAULT_SILENCE_S: Final = 60.0  # Spectera renews after 60 s without an event
DEFAULT_REQUEST_GAP_MS: Final = 20  # Spectera spaces requests 20 ms apart for the embedded server
DEFAULT_IDENTIFY_S: Final = 10.0  # long enough to walk to the rack, short enough not to be forgotten
DELETE_TIMEOUT_S: Final = 2.0  # deleting a stale session is best effort; never hold up the resubscribe
VERIFY_POLL_S: Final = 0.1  # re-read spacing while waiting for a write to show on the device
QUICK_END_S: Final = 5.0  # a subscription shorter than this counts as failing…
MAX_QUICK_ENDS: Final = 3  # …and this many in a row hand the retry to the supervisor's backoff
MAX_REJECTED_RETRIES: Final = 8  # drop at most this many refused paths from one /add before giving up
MAX_PROBE_CHANNELS: Final = 8  # channel probe for unknown products (EW-DX tops out at 4)
SUBS: Final = SUBSCRIPTIONS_PATH
SILENCE_REASON: Final = "no event for"

# per-channel resources the subscription carries (reference §1.3 "What micboardd needs")
CHANNEL_RESOURCES: Final = (Res.CHANNEL, Res.CHANNEL_WARNINGS, Res.FREQUENCY, Res.BATTERY, Res.TX_WARNINGS)
# device resources; /api/transmitters is the collection: items notify under /api/transmitters/{id}
DEVICE_RESOURCES: Final = (Res.SITE, Res.STATE, Res.IDENTIFICATION, Res.ENCRYPTION, Res.TX_LIST)


@dataclass(frozen=True, slots=True)
class SSCv2Options:
    """The ``options`` table of an SSCv2 device, validated."""

    request_timeout_s: float = DEFAULT_REQUEST_TIMEOUT_S
    open_timeout_s: float = DEFAULT_OPEN_TIMEOUT_S
    heartbeat_s: float = DEFAULT_HEARTBEAT_S
    silence_s: float = DEFAULT_SILENCE_S
    request_gap_ms: float = DEFAULT_REQUEST_GAP_MS
    identify_s: float = DEFAULT_IDENTIFY_S
    tls_check_hostname: bool = True

    @classmethod
    def from_mapping(cls, options: Mapping[str, Any]) -> SSCv2Options:
        """Validate; ValueError names the key and what it must be."""
        known = {f.name: f for f in fields(cls)}
        values: dict[str, Any] = {}
        for key, value in options.items():
            if key not in known:
                raise ValueError(f"options.{key}: unknown for sscv2; known: {', '.join(sorted(known))}")
            if key == "tls_check_hostname":
                if not isinstance(value, bool):
                    raise ValueError(f"options.{key} must be true or false")
            elif isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
                raise ValueError(f"options.{key} must be a number")
            elif value < 0 or (value == 0 and key not in ("request_gap_ms", "identify_s")):
                raise ValueError(f"options.{key} must be greater than 0")
            values[key] = value
        return cls(**values)


class SSCv2Adapter(Adapter):
    """Monitors and controls one EW-DX receiver over SSCv2."""

    family: ClassVar[str] = "sscv2"
    manufacturer: ClassVar[Manufacturer] = Manufacturer.SENNHEISER

    def __init__(self, config: DeviceConfig, link: DeviceLink) -> None:
        super().__init__(config, link)
        self._options_error: str | None = None
        try:
            self.opt = SSCv2Options.from_mapping(config.options)
        except ValueError as exc:
            self.opt = SSCv2Options()
            self._options_error = str(exc)
        self.user = config.username or "api"
        self.base_url = f"https://{_url_host(config.host)}:{config.port}"
        self._client: httpx.AsyncClient | None = None
        self._session: str | None = None
        self._stale_session: str | None = None  # left behind by a failed session; deleted on reconnect
        self._n = 0
        self._ranges: tuple[tuple[int, int, int], ...] = ()
        self._pace = asyncio.Lock()
        self._next_request_at = 0.0
        self._last_rx = 0.0
        self._event_gen: dict[str, int] = {}
        self._rejected: set[str] = set()
        self._rx_warn: dict[int, tuple[str, ...]] = {}
        self._tx_warn: dict[int, tuple[str, ...]] = {}
        self._tx_present: dict[int, bool] = {}
        self._recheck: set[int] = set()
        self._wake = asyncio.Event()
        self._meters: dict[int, dict[str, Any]] = {}
        self._meters_dirty: set[int] = set()
        self._meter_off: set[int] = set()  # channels whose metering was switched off by SetMeterRate
        self._meter_rate_s = config.meter_rate_ms / 1000.0
        self._degraded = False
        self._device_warnings: tuple[str, ...] = ()
        self._warned_insecure = False
        self._silence_logged = False
        self._identify_task: asyncio.Task[None] | None = None

    # ================================================================== session

    async def run(self) -> None:
        if self._options_error:
            raise TerminalError(self._options_error)
        client = httpx.AsyncClient(
            base_url=self.base_url,
            verify=self._tls(),
            auth=httpx.BasicAuth(self.user, self.config.password.reveal() if self.config.password else ""),
            timeout=httpx.Timeout(self.opt.request_timeout_s),
            limits=httpx.Limits(max_connections=4, max_keepalive_connections=2),
            headers={"Accept": "application/json"},
        )
        self._client = client
        cancelled = False
        try:
            await self._read_device()
            self.link.online()
            if self._stale_session:
                # the device allows only a few sessions per user: free the one the last failure left
                await self._delete_session(self._stale_session)
                self._stale_session = None
            quick = 0
            while True:
                started = time.monotonic()
                reason = await self._subscription()
                quick = quick + 1 if time.monotonic() - started < QUICK_END_S else 0
                if quick >= MAX_QUICK_ENDS:
                    raise RetryableError(f"subscription keeps ending ({reason})")
                routine = reason.startswith(SILENCE_REASON)  # a quiet device renews every silence_s
                level = logging.DEBUG if routine and self._silence_logged else logging.INFO
                self._silence_logged = self._silence_logged or routine
                self.log.log(level, "renewing the subscription: %s", reason)
        except asyncio.CancelledError:
            cancelled = True  # close() deletes the session with this client, then closes it
            raise
        finally:
            self._session_done()
            if not cancelled:
                self._stale_session = self._session or self._stale_session
                self._client = None
                self._session = None
                await client.aclose()

    async def close(self) -> None:
        """Delete our subscription session (the device allows only a few) and close the client."""
        client, session = self._client, self._session
        self._client, self._session = None, None
        self._session_done()
        if client is None:
            return
        try:
            if session:
                async with asyncio.timeout(DELETE_TIMEOUT_S):
                    await client.delete(f"{SUBS}/{session}")
        except (httpx.HTTPError, TimeoutError, OSError) as exc:
            self.log.debug("could not delete subscription %s: %s", session, exc)
        finally:
            await client.aclose()

    def _session_done(self) -> None:
        if self._identify_task is not None:
            self._identify_task.cancel()
            self._identify_task = None

    def _tls(self) -> ssl.SSLContext | bool:
        cfg = self.config
        if cfg.tls_ca_file:
            try:
                ctx = ssl.create_default_context(cafile=cfg.tls_ca_file)
            except (OSError, ssl.SSLError) as exc:
                raise TerminalError(f"tls_ca_file {cfg.tls_ca_file!r} is not a readable PEM file: {exc}") from exc
            ctx.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN  # a pinned device certificate is a trust anchor
            ctx.check_hostname = self.opt.tls_check_hostname
            ctx.minimum_version = ssl.TLSVersion.TLSv1_2
            return ctx
        if cfg.tls_insecure:
            if not self._warned_insecure:
                self._warned_insecure = True
                self.log.warning(
                    "TLS certificate verification is OFF (tls_insecure = true); anyone on the network path "
                    "can read the device password. Set tls_ca_file to the device certificate instead."
                )
            return False
        ctx = ssl.create_default_context()
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        return ctx

    async def _read_device(self) -> None:
        """Version and identity (no auth needed), then the site: the first request that proves the password."""
        resp = await self._request("GET", resource_path(Res.VERSION), ok=(200, 404))
        if resp.status_code == 404:
            raise TerminalError(
                f"{self.base_url} has no SSCv2 API (/api/ssc/version: HTTP 404); "
                "older EW-DX firmware speaks SSCv1 (family = \"sscv1\")"
            )
        self._apply_json(resource_path(Res.VERSION), resp)
        identity = await self._request("GET", resource_path(Res.IDENTITY))
        self._apply_json(resource_path(Res.IDENTITY), identity)
        site = await self._request("GET", resource_path(Res.SITE))
        self._apply_json(resource_path(Res.SITE), site)
        if not self._n:
            self._n = await self._probe_channels()
        if self.config.channels:
            self._n = self.config.channels
        self.link.device(channel_count=self._n)

    async def _probe_channels(self) -> int:
        """Count channels by GETting /api/channel/{i} until 404, for products not in the table."""
        n = 0
        for i in range(1, MAX_PROBE_CHANNELS + 1):
            resp = await self._request("GET", resource_path(Res.CHANNEL, i), ok=(200, 404))
            if resp.status_code == 404:
                break
            n = i
        if n == 0:
            raise TerminalError("device reports no receiver channels (/api/channel/0: HTTP 404)")
        self.log.info("unknown product; found %d channels by probing", n)
        return n

    # ------------------------------------------------------------------ subscription

    def _paths(self) -> list[str]:
        paths = [resource_path(r) for r in DEVICE_RESOURCES]
        for i in range(1, self._n + 1):
            paths += [resource_path(r, i) for r in CHANNEL_RESOURCES]
            if self._metering(i):
                paths += [resource_path(r, i) for r in METER_RESOURCES]
        return [p for p in paths if p not in self._rejected]

    async def _subscription(self) -> str:
        """One subscription session; returns why it ended when a resubscribe is the cure."""
        client = self._require_client()
        await self._wait_pace()
        self._last_rx = time.monotonic()
        try:
            # The stream's read timeout is off (it is silent between changes); the wait for the
            # response head is bounded here instead, then lifted once the stream is open.
            async with asyncio.timeout(self.opt.request_timeout_s) as head_deadline:
                async with aconnect_sse(
                    client, "GET", SUBS, timeout=httpx.Timeout(self.opt.request_timeout_s, read=None)
                ) as source:
                    head_deadline.reschedule(None)
                    return await self._run_stream(source.response)
        except TimeoutError:
            raise RetryableError(f"GET {SUBS}: no answer within {self.opt.request_timeout_s:g} s") from None
        except httpx.HTTPError as exc:
            raise self._transport_error(exc, f"GET {SUBS}") from exc

    async def _run_stream(self, resp: httpx.Response) -> str:
        self._last_rx = time.monotonic()
        if resp.status_code != 200:
            await resp.aread()
            self._raise_for_status(resp, "GET", SUBS)
        ctype = resp.headers.get("content-type", "").partition(";")[0].strip()
        if ctype != "text/event-stream":
            raise ProtocolError(f"subscription answered with Content-Type {ctype!r}, not text/event-stream")
        from_header = session_from_location(resp.headers.get("content-location"))
        opened: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        events = self._events(resp)
        reader = asyncio.create_task(self._consume(events, opened, from_header))
        try:
            session = await self._await_open(opened, reader, from_header)
            self._session = session
            self.log.debug("subscription session %s", session)
            await self._subscribe(session)
            await self._read_all()
            return await self._watch(session, reader)
        finally:
            if not reader.done():
                reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, DeviceError, httpx.HTTPError):
                await reader
            if not opened.done():
                opened.cancel()
            await events.aclose()

    async def _await_open(self, opened: asyncio.Future[str], reader: asyncio.Task[str], from_header: str | None) -> str:
        """The session id from the `open` event; Content-Location when the event does not come."""
        await asyncio.wait({opened, reader}, timeout=self.opt.open_timeout_s, return_when=asyncio.FIRST_COMPLETED)
        if opened.done():
            return opened.result()
        if reader.done():
            reader.result()  # raises the reader's error, if any
            raise RetryableError("subscription stream ended before the open event")
        if from_header:
            self.log.warning("no open event within %g s; using Content-Location %s", self.opt.open_timeout_s,
                             from_header)
            return from_header
        raise RetryableError(f"no open event within {self.opt.open_timeout_s:g} s")

    async def _subscribe(self, session: str) -> None:
        """PUT the path list to …/add; paths the device refuses are dropped (and polled) with a warning."""
        paths = self._paths()
        for _ in range(MAX_REJECTED_RETRIES):
            resp = await self._request("PUT", f"{SUBS}/{session}/add", json_body=paths, ok=(200, 400, 422))
            if resp.status_code == 200:
                return
            if resp.status_code == 422:
                raise RetryableError("the device forgot the subscription session before /add (HTTP 422)")
            bad, code = _rejected_path(resp)
            if bad is None or bad not in paths:
                raise ProtocolError(f"device refused the subscription list: HTTP 400 {excerpt(resp.text)}")
            self.log.warning("device refused to subscribe %s (error %s); reading it at heartbeat rate instead",
                             bad, code)
            self._rejected.add(bad)
            paths.remove(bad)
        raise ProtocolError("device refused too many subscription paths")

    async def _events(self, resp: httpx.Response) -> AsyncGenerator[SseEvent, None]:
        decoder = SseDecoder()
        async for chunk in resp.aiter_bytes():
            self._last_rx = time.monotonic()
            self.link.received(len(chunk))
            try:
                batch = decoder.feed(chunk)
            except SseFramingError as exc:
                raise ProtocolError(f"subscription stream: {exc}") from None
            for event in batch:
                yield event

    async def _consume(self, events: AsyncGenerator[SseEvent, None], opened: asyncio.Future[str],
                       from_header: str | None) -> str:
        """Apply events until the stream ends; the return value says why."""
        try:
            async for event in events:
                if not opened.done() and self._take_open(event, opened, from_header):
                    continue
                reason = self._handle_event(event)
                if reason:
                    return reason
        except httpx.HTTPError as exc:
            raise self._transport_error(exc, "subscription stream") from exc
        return "the device ended the event stream"

    def _take_open(self, event: SseEvent, opened: asyncio.Future[str], from_header: str | None) -> bool:
        """Resolve ``opened`` from the first event; True when the event was the open event."""
        if event.event == "open":
            try:
                parsed = parse_event(event)
            except EventDataError as exc:
                if not from_header:
                    opened.set_exception(ProtocolError(f"open event unusable: {exc} {exc.excerpt}"))
                    return True
                self.log.warning("unusable open event (%s: %s); using Content-Location", exc, exc.excerpt)
                opened.set_result(from_header)
                return True
            assert isinstance(parsed, OpenEvent)
            if from_header and from_header != parsed.session:
                self.log.debug("Content-Location %s differs from the open event's %s; using the event",
                                    from_header, parsed.session)
            opened.set_result(parsed.session)
            return True
        if from_header:
            opened.set_result(from_header)  # no open event: the header names the session
            return False
        opened.set_exception(ProtocolError(f"subscription started with a {event.event!r} event and no "
                                           "Content-Location"))
        return False

    def _handle_event(self, event: SseEvent) -> str | None:
        if self.log.isEnabledFor(logging.DEBUG):  # wire dumps only at DEBUG
            self.log.debug("event %s: %s", event.event, excerpt(event.data, 400))
        try:
            parsed = parse_event(event)
        except EventDataError as exc:
            self.log.warning("malformed SSCv2 event ignored (%s): %s", exc, exc.excerpt)
            return None
        if isinstance(parsed, DataEvent):
            for path, value in parsed.resources:
                self._event_gen[path] = self._event_gen.get(path, 0) + 1
                self._apply(path, value)
        elif isinstance(parsed, CloseEvent):
            detail = parsed.detail.strip()
            return "the device closed the subscription" + (f" ({excerpt(detail)})" if detail else "")
        elif isinstance(parsed, OpenEvent):
            self.log.debug("second open event on one stream ignored (%s)", parsed.session)
        elif isinstance(parsed, OtherEvent):
            self.log.debug("event type %r ignored", parsed.name)
        return None

    async def _watch(self, session: str, reader: asyncio.Task[str]) -> str:
        """Heartbeat, silence check, meter flushing and transmitter re-checks while the reader runs."""
        now = time.monotonic()
        next_beat = now + self.opt.heartbeat_s
        next_flush = now + (self._meter_rate_s or self.opt.heartbeat_s)
        while True:
            await self._recheck_tx()
            wake = asyncio.create_task(self._wake.wait())
            timeout = max(0.0, min(next_beat, next_flush) - time.monotonic())
            try:
                await asyncio.wait({reader, wake}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
            finally:
                wake.cancel()
            self._wake.clear()
            if reader.done():
                return reader.result()
            now = time.monotonic()
            if now >= next_flush:
                self._flush_meters()
                next_flush = now + (self._meter_rate_s or self.opt.heartbeat_s)
            if now >= next_beat:
                silent = now - self._last_rx
                if silent >= self.opt.silence_s:
                    await self._delete_session(session)
                    return f"{SILENCE_REASON} {silent:.0f} s (stale session {session} deleted)"
                if not await self._session_alive(session):
                    return "the device no longer knows the session"
                await self._poll_rejected()
                next_beat = time.monotonic() + self.opt.heartbeat_s

    async def _session_alive(self, session: str) -> bool:
        """Heartbeat: GET the session's path list; 422/404 means the device dropped it."""
        resp = await self._request("GET", f"{SUBS}/{session}", ok=(200, 404, 422))
        if resp.status_code != 200:
            return False
        try:
            body = resp.json()
        except ValueError:
            body = None
        if not isinstance(body, list):
            self.log.warning("session list is not a JSON array: %s", excerpt(resp.text))
            return True
        listed = {normalize_path(p) for p in body if isinstance(p, str)}
        missing = [p for p in self._paths() if p not in listed]
        if missing:
            self.log.info("device lost %d subscribed paths; adding them again", len(missing))
            await self._request("PUT", f"{SUBS}/{session}/add", json_body=missing, ok=(200, 400))
        return True

    async def _delete_session(self, session: str) -> None:
        client = self._client
        if client is None:
            return
        try:
            async with asyncio.timeout(DELETE_TIMEOUT_S):
                await client.delete(f"{SUBS}/{session}")
        except (httpx.HTTPError, TimeoutError) as exc:
            self.log.debug("deleting stale session %s failed: %s", session, exc)

    # ------------------------------------------------------------------ reads

    async def _read_all(self) -> None:
        """Every resource by GET, after subscribing: initial values are not promised by SSCv2."""
        for res in (Res.STATE, Res.FIRMWARE, Res.RF, Res.ENCRYPTION, Res.IDENTIFICATION, Res.TX_LIST):
            await self._get_apply(resource_path(res))
        for i in range(1, self._n + 1):
            await self._get_apply(resource_path(Res.CHANNEL, i))
            await self._get_apply(resource_path(Res.FREQUENCY, i))
            await self._get_apply(resource_path(Res.CHANNEL_WARNINGS, i))
            await self._read_tx_extras(i)
            if self._metering(i):
                for res in METER_RESOURCES:
                    await self._get_apply(resource_path(res, i))
        self._flush_meters()

    async def _read_tx_extras(self, i: int) -> None:
        """Battery and warnings of a linked transmitter (422 = none linked)."""
        if not self._tx_present.get(i):
            self._set_tx_absent(i)
            return
        await self._get_apply(resource_path(Res.BATTERY, i))
        await self._get_apply(resource_path(Res.TX_WARNINGS, i))

    async def _recheck_tx(self) -> None:
        """Re-read transmitters whose presence may have changed (null item, NoLink toggled)."""
        while self._recheck:
            i = self._recheck.pop()
            if 1 <= i <= self._n:
                await self._get_apply(resource_path(Res.TX, i))
                await self._read_tx_extras(i)

    async def _poll_rejected(self) -> None:
        for path in sorted(self._rejected):
            await self._get_apply(path)

    async def _get_apply(self, path: str) -> None:
        gen = self._event_gen.get(path, 0)
        resp = await self._request("GET", path, ok=(200, 404, 422))
        if self._event_gen.get(path, 0) != gen:
            return  # an event for this path arrived while we waited: it is newer than this answer
        found = resp.status_code
        kind = classify(path)
        if found == 422 and kind is not None and kind[0] in (Res.TX, Res.BATTERY, Res.TX_WARNINGS) and kind[1]:
            if 1 <= kind[1] <= self._n:
                self._set_tx_absent(kind[1])  # "Missing property values as no Transmitter is linked" (OAS 422)
        elif found == 404:
            self.log.warning("%s: HTTP 404 (resource missing on this firmware?)", path)
        elif found == 200:
            self._apply_json(path, resp)
        else:
            self.log.warning("%s: HTTP %d", path, found)

    def _apply_json(self, path: str, resp: httpx.Response) -> None:
        try:
            value = resp.json()
        except ValueError:
            self.log.warning("%s: answer is not JSON: %s", path, excerpt(resp.text))
            return
        self._apply(path, value)

    # ------------------------------------------------------------------ mapping into the model

    def _apply(self, path: str, value: Any) -> None:
        try:
            d = decode_resource(path, value)
        except ResourceError as exc:
            self.log.warning("%s: %s: %s", path, exc, excerpt(json.dumps(value)))
            return
        if d is None:
            return
        if d.index is not None and self._n and not 1 <= d.index <= self._n:
            self.log.debug("%s: channel %d beyond %d ignored", path, d.index, self._n)
            return
        handler = self._HANDLERS.get(d.res)
        if handler is not None:
            handler(self, d)

    def _on_identity(self, d: Decoded) -> None:
        fields_ = dict(d.device)
        product = d.extra.get("product")
        if product and product not in PRODUCTS:
            self.log.info("unknown product %r; treating it as an SSCv2 receiver", product)
        count = fields_.pop("channel_count", 0)
        if count and not self._n:
            self._n = count
        self.link.device(**fields_)

    def _on_site(self, d: Decoded) -> None:
        name = d.extra.get("device_name")
        if name and not self.config.name:
            self.link.device(name=name)

    def _on_state(self, d: Decoded) -> None:
        state = d.extra.get("state")
        warnings = d.warnings or ()
        if warnings != self._device_warnings:
            self._device_warnings = warnings
            self.log.info("device warnings: %s", ", ".join(warnings) or "none")
        if state in ("Busy", "FirmwareUpdate"):
            if not self._degraded:
                self._degraded = True
                self.link.degraded(f"device is {'updating firmware' if state == 'FirmwareUpdate' else 'busy'}")
        elif state in ("Normal", "Identifying") and self._degraded:
            self._degraded = False
            self.link.online()

    def _on_device_fields(self, d: Decoded) -> None:
        if d.device:
            self.link.device(**d.device)

    def _on_rf(self, d: Decoded) -> None:
        self._ranges = tuple(d.extra.get("ranges", ()))

    def _on_encryption(self, d: Decoded) -> None:
        for i in range(1, self._n + 1):
            self.link.channel(i, encryption=d.extra.get("encryption"))

    def _on_tx_list(self, d: Decoded) -> None:
        linked: Mapping[int, Mapping[str, Any]] = d.extra.get("linked", {})
        for i in range(1, self._n + 1):
            if i in linked:
                was = self._tx_present.get(i)
                self._tx_present[i] = True
                self.link.channel(i, tx=decode_tx_object(linked[i]))
                if was is False:
                    self._schedule_recheck(i)  # newly linked: read its battery and warnings
            elif self._tx_present.get(i):
                # A list-shaped notification might be partial (UNVERIFIED): confirm by GET before
                # dropping a transmitter we believe is there.
                self._schedule_recheck(i)
            else:
                self._set_tx_absent(i)

    def _on_tx(self, d: Decoded) -> None:
        assert d.index is not None
        if d.tx_absent:
            if self._tx_present.get(d.index, True):
                self._schedule_recheck(d.index)  # confirm by GET (422) rather than trust a null alone
            self._set_tx_absent(d.index)
            return
        was = self._tx_present.get(d.index)
        self._tx_present[d.index] = True
        self.link.channel(d.index, tx=d.tx)
        if was is False:
            self._schedule_recheck(d.index)  # newly linked: read its battery and warnings

    def _on_channel(self, d: Decoded) -> None:
        assert d.index is not None
        if d.channel:
            self.link.channel(d.index, **d.channel)

    def _on_battery(self, d: Decoded) -> None:
        assert d.index is not None
        tx = dict(d.tx)
        if tx.get("battery_percent") is not None or tx.get("runtime_minutes") is not None:
            tx["present"] = True  # a battery reading means a transmitter is there
            self._tx_present[d.index] = True
        if tx:
            self.link.channel(d.index, tx=tx)

    def _on_channel_warnings(self, d: Decoded) -> None:
        assert d.index is not None
        old = self._rx_warn.get(d.index)
        new = d.warnings or ()
        self._rx_warn[d.index] = new
        if old is not None and ("no_link" in old) != ("no_link" in new):
            self._schedule_recheck(d.index)  # the transmitter came or went
        self._publish_warnings(d.index)
        if self._metering(d.index):
            meters = self._meters.setdefault(d.index, {})
            clip = "af_peak" in new
            if meters.get("clip") != clip:
                meters["clip"] = clip
                self._meters_dirty.add(d.index)

    def _on_tx_warnings(self, d: Decoded) -> None:
        assert d.index is not None
        self._tx_warn[d.index] = d.warnings or ()
        self._publish_warnings(d.index)

    def _metering(self, i: int) -> bool:
        return self._meter_rate_s > 0 and i not in self._meter_off

    def _on_meter(self, d: Decoded) -> None:
        assert d.index is not None
        if not self._metering(d.index):
            return
        self._meters.setdefault(d.index, {}).update(d.meters)
        self._meters_dirty.add(d.index)

    def _on_ignore(self, d: Decoded) -> None:
        return

    _HANDLERS: ClassVar[dict[Res, Callable[[SSCv2Adapter, Decoded], None]]] = {
        Res.VERSION: _on_ignore,
        Res.IDENTITY: _on_identity,
        Res.SITE: _on_site,
        Res.STATE: _on_state,
        Res.IDENTIFICATION: _on_ignore,
        Res.CHANNEL_IDENTIFY: _on_ignore,
        Res.FIRMWARE: _on_device_fields,
        Res.RF: _on_rf,
        Res.ENCRYPTION: _on_encryption,
        Res.TX_LIST: _on_tx_list,
        Res.TX: _on_tx,
        Res.CHANNEL: _on_channel,
        Res.FREQUENCY: _on_channel,
        Res.BATTERY: _on_battery,
        Res.CHANNEL_WARNINGS: _on_channel_warnings,
        Res.TX_WARNINGS: _on_tx_warnings,
        Res.RSSI: _on_meter,
        Res.RSQI: _on_meter,
        Res.DIVERSITY: _on_meter,
        Res.LEVEL: _on_meter,
    }

    def _set_tx_absent(self, i: int) -> None:
        self._tx_present[i] = False
        self._tx_warn[i] = ()
        self.link.channel(i, tx_replace=TX_ABSENT)
        self._publish_warnings(i)

    def _publish_warnings(self, i: int) -> None:
        merged = tuple(dict.fromkeys(self._rx_warn.get(i, ()) + self._tx_warn.get(i, ())))
        self.link.channel(i, warnings=merged)

    def _schedule_recheck(self, i: int) -> None:
        self._recheck.add(i)
        self._wake.set()

    def _flush_meters(self) -> None:
        now = time.time()
        for i in sorted(self._meters_dirty):
            if not self._metering(i):
                continue
            m = self._meters.get(i, {})
            self.link.meters(
                Meters(
                    device_id=self.link.device_id,
                    index=i,
                    rf_dbm=m.get("rf_dbm", ()),
                    active_antenna=m.get("active_antenna"),
                    link_quality=m.get("link_quality"),
                    audio_peak_dbfs=m.get("audio_peak_dbfs"),
                    clip=bool(m.get("clip", False)),
                    at=now,
                )
            )
        self._meters_dirty.clear()

    # ================================================================== HTTP

    def _require_client(self) -> httpx.AsyncClient:
        if self._client is None:
            raise RetryableError("not connected")
        return self._client

    async def _wait_pace(self) -> None:
        async with self._pace:
            wait = self._next_request_at - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            self._next_request_at = time.monotonic() + self.opt.request_gap_ms / 1000.0

    async def _request(
        self, method: str, path: str, *, json_body: Any = None, ok: tuple[int, ...] = (200,)
    ) -> httpx.Response:
        """One paced REST request; maps transport failures and unexpected statuses to DeviceErrors."""
        client = self._require_client()
        async with self._pace:
            wait = self._next_request_at - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            try:
                async with asyncio.timeout(self.opt.request_timeout_s):
                    resp = await client.request(method, path, json=json_body)
            except TimeoutError:
                raise RetryableError(f"{method} {path}: no answer within {self.opt.request_timeout_s:g} s") from None
            except httpx.HTTPError as exc:
                raise self._transport_error(exc, f"{method} {path}") from exc
            finally:
                self._next_request_at = time.monotonic() + self.opt.request_gap_ms / 1000.0
        self.link.received(len(resp.content))
        if self.log.isEnabledFor(logging.DEBUG):
            self.log.debug("%s %s → %d %s", method, path, resp.status_code, excerpt(resp.text, 200))
        if resp.status_code not in ok:
            self._raise_for_status(resp, method, path)
        return resp

    def _raise_for_status(self, resp: httpx.Response, method: str, path: str) -> None:
        code = resp.status_code
        if code == 401:
            if self.config.password is None:
                raise AuthError(f"device requires a password for user '{self.user}' (HTTP 401); set password_file")
            raise AuthError(
                f"device refused the password of user '{self.user}' (HTTP 401); check the third-party access "
                "password (Control Cockpit → Access → Secure)"
            )
        if code == 403:
            raise AuthError(f"user '{self.user}' may not use {path} (HTTP 403); use the third-party user 'api'")
        if code == 429 or code >= 500:
            raise RetryableError(f"{method} {path}: HTTP {code}")
        raise ProtocolError(f"{method} {path}: unexpected HTTP {code} {excerpt(resp.text)}")

    def _transport_error(self, exc: httpx.HTTPError, what: str) -> DeviceError:
        cause: BaseException | None = exc
        while cause is not None:
            if isinstance(cause, ssl.SSLCertVerificationError):
                return TerminalError(
                    f"TLS certificate of {self.base_url} not trusted ({cause.verify_message}); set tls_ca_file "
                    "to the device certificate or its CA (or tls_insecure = true to skip verification)"
                )
            if isinstance(cause, ssl.SSLError):
                return RetryableError(f"{what}: TLS error ({cause.reason or cause})")
            if isinstance(cause, OSError) and not isinstance(cause, ssl.SSLError) and cause.strerror:
                return RetryableError(f"{what}: {describe_os_error(cause)}")
            cause = cause.__cause__ or cause.__context__
        if isinstance(exc, httpx.TimeoutException):
            return RetryableError(f"{what}: timed out")
        return RetryableError(f"{what}: {type(exc).__name__} {exc}".strip())

    # ================================================================== commands

    def supports(self, command: Command) -> bool:
        channel = getattr(command, "channel", None)
        if channel is not None and self._n and not 1 <= channel <= self._n:
            return False
        return isinstance(command, Identify | RenameChannel | SetMute | SetGain | SetFrequency | SetMeterRate)

    async def execute(self, command: Command) -> CommandResult:
        if self._client is None:
            raise CommandError(CommandErrorReason.OFFLINE, f"{self.link.device_id} has no live session")
        if not self.supports(command):
            channel = getattr(command, "channel", None)
            if channel is not None and self._n and not 1 <= channel <= self._n:
                raise CommandError(CommandErrorReason.INVALID, f"no channel {channel} (device has {self._n})")
            raise CommandError(CommandErrorReason.UNSUPPORTED, f"sscv2 has no {type(command).__name__}")
        try:
            return await self._execute(command)
        except AuthError as exc:
            raise CommandError(CommandErrorReason.REJECTED, str(exc)) from exc
        except RetryableError as exc:
            raise CommandError(CommandErrorReason.TIMEOUT, str(exc)) from exc
        except DeviceError as exc:
            raise CommandError(CommandErrorReason.REJECTED, str(exc)) from exc

    async def _execute(self, command: Command) -> CommandResult:
        if isinstance(command, Identify):
            return await self._identify(command.channel)
        if isinstance(command, RenameChannel):
            name = command.name.strip().upper()  # the device takes upper case only; the echo shows it
            if len(name) > 8 or not _name_ok(name):
                raise CommandError(
                    CommandErrorReason.INVALID,
                    f"{command.name!r}: EW-DX channel names are up to 8 characters of A-Z 0-9 space #*+,;-/<=>|",
                )
            path = resource_path(Res.CHANNEL, command.channel)
            return await self._write(path, path, {"name": name}, "name", name)
        if isinstance(command, SetMute):
            path = resource_path(Res.CHANNEL, command.channel)
            return await self._write(path, path, {"mute": command.muted}, "mute", command.muted)
        if isinstance(command, SetGain):
            gain = command.gain_db
            if not (-3 <= gain <= 42 and float(gain).is_integer() and int(gain) % 3 == 0):
                raise CommandError(CommandErrorReason.INVALID, f"gain {gain:g} dB: EW-DX takes -3..42 dB in 3 dB steps")
            path = resource_path(Res.CHANNEL, command.channel)
            return await self._write(path, path, {"gain": int(gain)}, "gain", int(gain))
        if isinstance(command, SetFrequency):
            f = command.frequency_khz
            if f % 25 or (self._ranges and not any(lo <= f <= hi for lo, hi, _ in self._ranges)):
                bands = ", ".join(f"{lo}-{hi}" for lo, hi, _ in self._ranges) or "the device's range"
                raise CommandError(CommandErrorReason.INVALID, f"{f} kHz: must be a multiple of 25 kHz in {bands}")
            read = resource_path(Res.FREQUENCY, command.channel)
            return await self._write(read + "/frequency", read, {"frequency": f}, "frequency", f)
        if isinstance(command, SetMeterRate):
            return await self._set_meter_rate(command)
        raise CommandError(CommandErrorReason.UNSUPPORTED, f"sscv2 has no {type(command).__name__}")

    async def _put(self, path: str, body: Mapping[str, Any]) -> None:
        resp = await self._request("PUT", path, json_body=dict(body), ok=(200, 400, 404, 409, 422))
        code = resp.status_code
        if code == 400:
            raise CommandError(CommandErrorReason.REJECTED, f"device refused {json.dumps(body)} (HTTP 400)")
        if code == 404:
            raise CommandError(CommandErrorReason.INVALID, f"{path} does not exist on this device (HTTP 404)")
        if code in (409, 422):
            raise CommandError(CommandErrorReason.REJECTED, f"device state does not allow it now (HTTP {code})")

    async def _write(self, put_path: str, read_path: str, body: Mapping[str, Any], key: str, want: Any
                     ) -> CommandResult:
        """PUT, then re-read until the device reports the new value (success means the device says so)."""
        await self._put(put_path, body)
        got = await self._verify(read_path, key, want)
        return CommandResult(value=got, detail=f"{read_path} {key} = {json.dumps(got)}")

    async def _verify(self, path: str, key: str, want: Any) -> Any:
        last: Any = None
        try:
            async with asyncio.timeout(ECHO_TIMEOUT_S):
                while True:
                    resp = await self._request("GET", path)
                    try:
                        value = resp.json()
                    except ValueError:
                        value = None
                    self._apply(path, value)
                    last = value.get(key) if isinstance(value, dict) else None
                    if last == want:
                        return last
                    await asyncio.sleep(VERIFY_POLL_S)
        except TimeoutError:
            pass
        if last is None:
            raise CommandError(CommandErrorReason.TIMEOUT, f"{path}: no readable {key} within {ECHO_TIMEOUT_S:g} s")
        raise CommandError(CommandErrorReason.MISMATCH, f"{path}: asked {key}={want!r}, device reports {last!r}")

    async def _identify(self, channel: int | None) -> CommandResult:
        if channel is None:
            path, key = resource_path(Res.IDENTIFICATION), "visual"
        else:
            path, key = resource_path(Res.CHANNEL_IDENTIFY, channel), "enabled"
        result = await self._write(path, path, {key: True}, key, True)
        if self.opt.identify_s > 0:
            if self._identify_task is not None:
                self._identify_task.cancel()
            self._identify_task = asyncio.create_task(self._identify_off(path, key))
        return result

    async def _identify_off(self, path: str, key: str) -> None:
        await asyncio.sleep(self.opt.identify_s)
        try:
            await self._request("PUT", path, json_body={key: False})
        except DeviceError as exc:
            self.log.info("could not switch identify off: %s", exc)
        finally:
            self._identify_task = None

    async def _set_meter_rate(self, command: SetMeterRate) -> CommandResult:
        """Meters are pushed at the device's pace; the rate throttles publishing, 0 unsubscribes them."""
        session = self._session
        if session is None:
            raise CommandError(CommandErrorReason.OFFLINE, "no subscription session")
        channels = [command.channel] if command.channel is not None else list(range(1, self._n + 1))
        paths = [resource_path(r, i) for i in channels for r in METER_RESOURCES]
        if command.rate_ms == 0:
            self._meter_off.update(channels)
            await self._request("PUT", f"{SUBS}/{session}/remove", json_body=paths, ok=(200, 400))
        else:
            if self._meter_rate_s <= 0 and command.channel is not None:
                # metering was off device-wide: switch on this channel only
                self._meter_off = set(range(1, self._n + 1)) - {command.channel}
            else:
                self._meter_off.difference_update(channels)
            if command.channel is None or self._meter_rate_s <= 0:
                self._meter_rate_s = command.rate_ms / 1000.0
            await self._request("PUT", f"{SUBS}/{session}/add", json_body=paths, ok=(200, 400))
        resp = await self._request("GET", f"{SUBS}/{session}")
        try:
            body = resp.json()
        except ValueError:
            body = None
        if not isinstance(body, list):
            raise CommandError(CommandErrorReason.TIMEOUT, f"session list unreadable: {excerpt(resp.text)}")
        listed = {normalize_path(p) for p in body if isinstance(p, str)}
        subscribed = all(p in listed for p in paths)
        if subscribed != (command.rate_ms > 0):
            raise CommandError(CommandErrorReason.MISMATCH, "device subscription list does not show the change")
        return CommandResult(value=command.rate_ms, detail=f"meters {'on' if subscribed else 'off'} for {channels}")


# ============================================================================ helpers


def _name_ok(name: str) -> bool:
    return all(c.isdigit() or ("A" <= c <= "Z") or c in " #*+,;-/<=>|" for c in name)


def _rejected_path(resp: httpx.Response) -> tuple[str | None, Any]:
    """The ``{"path": …, "error": …}`` body of a refused /add (the one JSON error body the OAS defines)."""
    try:
        body = resp.json()
    except ValueError:
        return None, None
    if isinstance(body, dict) and isinstance(body.get("path"), str):
        return normalize_path(body["path"]), body.get("error")
    return None, None


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host and not host.startswith("[") else host
