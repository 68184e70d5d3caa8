"""The SSCv2 subscription session: open the stream, add the paths, re-read, then keep it alive.

``GET /api/ssc/state/subscriptions`` opens the stream; the session id comes from the ``open`` event
(falling back to the ``Content-Location`` header); the resource paths are added on a second
connection and everything is re-read (initial values are not promised by the spec). While the
stream runs, a heartbeat polls the session, silence renews it, and ``close`` ends it. Protocol facts:
reference/sennheiser-and-others.md §1.4.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncGenerator
from typing import Any, Final

import httpx
from httpx_sse import aconnect_sse

from ...base import DeviceError, DeviceLink, ProtocolError, RetryableError
from ..sse import (
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
from ..udp import MalformedLog
from .client import DeviceClient
from .mapping import ResourceMapper
from .options import SSCv2Options
from .reads import Reader
from .resources import METER_RESOURCES, SUBS, Res, resource_path

MAX_REJECTED_RETRIES: Final = 8  # drop at most this many refused paths from one /add before giving up
SILENCE_REASON: Final = "no event for"

# per-channel resources the subscription carries (reference §1.3 "What micboardd needs")
CHANNEL_RESOURCES: Final = (Res.CHANNEL, Res.CHANNEL_WARNINGS, Res.FREQUENCY, Res.BATTERY, Res.TX_WARNINGS)
# device resources; /api/transmitters is the collection: items notify under /api/transmitters/{id}
DEVICE_RESOURCES: Final = (Res.SITE, Res.STATE, Res.IDENTIFICATION, Res.ENCRYPTION, Res.TX_LIST)


class Subscription:
    """One receiver's event subscription: a session at a time, each run until it needs renewing."""

    def __init__(
        self, opt: SSCv2Options, client: DeviceClient, mapper: ResourceMapper, reader: Reader, link: DeviceLink
    ) -> None:
        self.opt = opt
        self.link = link
        self.log = link.log
        self._client = client
        self._mapper = mapper
        self._reader = reader
        self.session: str | None = None  # the live session's id, once the stream named it
        self.rejected: set[str] = set()  # paths the device refused to subscribe: polled at heartbeat rate
        self._last_rx = 0.0
        self._malformed = MalformedLog(self.log, "SSCv2 event")  # a WARNING, then at most one per 30 s

    def paths(self) -> list[str]:
        paths = [resource_path(r) for r in DEVICE_RESOURCES]
        for i in range(1, self._mapper.n + 1):
            paths += [resource_path(r, i) for r in CHANNEL_RESOURCES]
            if self._mapper.metering(i):
                paths += [resource_path(r, i) for r in METER_RESOURCES]
        return [p for p in paths if p not in self.rejected]

    async def run(self) -> str:
        """One subscription session; returns why it ended when a resubscribe is the cure."""
        client = self._client.require()
        await self._client.wait_pace()
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
            raise self._client.transport_error(exc, f"GET {SUBS}") from exc

    async def _run_stream(self, resp: httpx.Response) -> str:
        self._last_rx = time.monotonic()
        if resp.status_code != 200:
            await resp.aread()
            self._client.raise_for_status(resp, "GET", SUBS)
        ctype = resp.headers.get("content-type", "").partition(";")[0].strip()
        if ctype != "text/event-stream":
            raise ProtocolError(f"subscription answered with Content-Type {ctype!r}, not text/event-stream")
        from_header = session_from_location(resp.headers.get("content-location"))
        opened: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        events = self._events(resp)
        reader = asyncio.create_task(self._consume(events, opened, from_header))
        try:
            session = await self._await_open(opened, reader, from_header)
            self.session = session
            self.log.debug("subscription session %s", session)
            await self._subscribe(session)
            await self._reader.read_all()
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
        paths = self.paths()
        for _ in range(MAX_REJECTED_RETRIES):
            resp = await self._client.request("PUT", f"{SUBS}/{session}/add", json_body=paths, ok=(200, 400, 422))
            if resp.status_code == 200:
                return
            if resp.status_code == 422:
                raise RetryableError("the device forgot the subscription session before /add (HTTP 422)")
            bad, code = _rejected_path(resp)
            if bad is None or bad not in paths:
                raise ProtocolError(f"device refused the subscription list: HTTP 400 {excerpt(resp.text)}")
            self.log.warning("device refused to subscribe %s (error %s); reading it at heartbeat rate instead",
                             bad, code)
            self.rejected.add(bad)
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
            raise self._client.transport_error(exc, "subscription stream") from exc
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
            self._malformed(event.data.encode("utf-8", "replace"), str(exc))
            return None
        if isinstance(parsed, DataEvent):
            for path, value in parsed.resources:
                self._reader.note_event(path)
                self._mapper.apply(path, value)
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
        next_flush = now + (self._mapper.meter_rate_s or self.opt.heartbeat_s)
        while True:
            await self._reader.recheck_tx()
            wake = asyncio.create_task(self._mapper.wake.wait())
            timeout = max(0.0, min(next_beat, next_flush) - time.monotonic())
            try:
                await asyncio.wait({reader, wake}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
            finally:
                wake.cancel()
            self._mapper.wake.clear()
            if reader.done():
                return reader.result()
            now = time.monotonic()
            if now >= next_flush:
                self._mapper.flush_meters()
                next_flush = now + (self._mapper.meter_rate_s or self.opt.heartbeat_s)
            if now >= next_beat:
                silent = now - self._last_rx
                if silent >= self.opt.silence_s:
                    await self._client.delete_session(session)
                    return f"{SILENCE_REASON} {silent:.0f} s (stale session {session} deleted)"
                if not await self._session_alive(session):
                    return "the device no longer knows the session"
                await self._poll_rejected()
                next_beat = time.monotonic() + self.opt.heartbeat_s

    async def _session_alive(self, session: str) -> bool:
        """Heartbeat: GET the session's path list; 422/404 means the device dropped it."""
        resp = await self._client.request("GET", f"{SUBS}/{session}", ok=(200, 404, 422))
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
        missing = [p for p in self.paths() if p not in listed]
        if missing:
            self.log.info("device lost %d subscribed paths; adding them again", len(missing))
            await self._client.request("PUT", f"{SUBS}/{session}/add", json_body=missing, ok=(200, 400))
        return True

    async def _poll_rejected(self) -> None:
        for path in sorted(self.rejected):
            await self._reader.get_apply(path)


def _rejected_path(resp: httpx.Response) -> tuple[str | None, Any]:
    """The ``{"path": …, "error": …}`` body of a refused /add (the one JSON error body the OAS defines)."""
    try:
        body = resp.json()
    except ValueError:
        return None, None
    if isinstance(body, dict) and isinstance(body.get("path"), str):
        return normalize_path(body["path"]), body.get("error")
    return None, None
