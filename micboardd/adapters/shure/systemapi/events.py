"""The System API event WebSocket: open it, learn the transport id, then hand over events one by one.

Flow (reference/shure.md §5, JB's real-server probe): open
``wss://host:port/api/v1/subscriptions/websocket/create``; the first message is ``{"transportId":…}``;
REST subscriptions (made by the adapter) bind events to that transport; events then arrive as
``{"envelope":{…},"body":{…}}``. The socket uses the same TLS trust as REST and carries the
``x-api-key`` header too (JB and DM send none on the socket and the server accepts that; sending it
costs nothing and keeps working should a server start asking).

A close ends the session (RetryableError: the supervisor reconnects with backoff). A malformed message
is logged with an excerpt and skipped; the session goes on.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Final

import websockets
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

from ...base import DeviceError, DeviceLink, ProtocolError, RetryableError
from .client import ApiClient
from .codec import CodecError, Event, Hello, parse_message, parse_problem
from .options import SystemApiOptions

WS_PATH: Final = "/api/v1/subscriptions/websocket/create"
MAX_MESSAGE_BYTES: Final = 1024 * 1024  # a DEVICE_STATE_CHANGE node is ~1 KB; a megabyte is a broken server
WS_CLOSE_TIMEOUT_S: Final = 2.0  # closing politely must not hold up a reconnect or the daemon's stop
LOUD_MALFORMED: Final = 3  # malformed messages logged at WARNING per session before the rest go to DEBUG
KEY_HEADER: Final = "x-api-key"


class _RedactKey(logging.Filter):
    """websockets logs every handshake header at DEBUG ("> name: value"); the API key must never reach a log."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) == 2 and str(args[0]).lower() == KEY_HEADER:
            record.args = (args[0], "<redacted>")
        return True


WS_LOG: Final = logging.getLogger(f"{__name__}.websocket")  # the library's own log lines, key redacted
WS_LOG.addFilter(_RedactKey())


class EventSocket:
    """One session's event WebSocket."""

    def __init__(self, client: ApiClient, opt: SystemApiOptions, link: DeviceLink) -> None:
        self.client = client
        self.opt = opt
        self.link = link
        self.log = link.log
        self.url = f"wss://{client.origin}{WS_PATH}"
        self.ws: ClientConnection | None = None
        self.transport_id: str | None = None
        self.malformed = 0
        self.messages = 0

    async def open(self) -> str:
        """Connect and wait for the transport id; raises a classified DeviceError."""
        self.malformed = 0
        try:
            async with asyncio.timeout(self.opt.hello_timeout_s):
                self.ws = await connect(
                    self.url,
                    ssl=self.client.ssl_context(),
                    additional_headers=self.client.key_headers(),
                    proxy=None,  # LAN server; an environment proxy would only misroute it
                    open_timeout=None,  # bounded by hello_timeout_s around the whole open
                    ping_interval=None,  # liveness is ours: silence → ping → re-read (see next())
                    close_timeout=WS_CLOSE_TIMEOUT_S,
                    max_size=MAX_MESSAGE_BYTES,
                    logger=WS_LOG,
                )
                while True:
                    msg = await self._recv_parsed()
                    if isinstance(msg, Hello):
                        self.transport_id = msg.transport_id
                        self.log.debug("event transport %s open", msg.transport_id)
                        return msg.transport_id
                    if isinstance(msg, Event):
                        self.log.debug("event %s before the transport id; ignored", msg.raw_name)
        except TimeoutError:
            await self.close()
            raise RetryableError(
                f"the event WebSocket sent no transportId within {self.opt.hello_timeout_s:g} s"
            ) from None
        except InvalidStatus as exc:
            await self.close()
            status = exc.response.status_code
            problem = parse_problem(_json_or_text(exc.response.body))
            if status in (401, 403):
                raise self.client.auth_error(status, problem) from exc
            raise RetryableError(f"the event WebSocket was refused (HTTP {status} {problem.text()})".strip()) from exc
        except InvalidHandshake as exc:
            await self.close()
            raise ProtocolError(f"the event WebSocket handshake failed: {exc}") from exc
        except DeviceError:
            await self.close()
            raise
        except OSError as exc:
            await self.close()
            raise self.client.transport_error(exc, "event WebSocket") from exc
        except websockets.WebSocketException as exc:  # e.g. InvalidURI: not worth a crash trace
            await self.close()
            raise ProtocolError(f"the event WebSocket could not open: {exc}") from exc

    async def next(self) -> Event | None:
        """The next event; None when the socket was silent for ``silence_s`` (the caller probes)."""
        while True:
            try:
                async with asyncio.timeout(self.opt.silence_s):
                    msg = await self._recv_parsed()
            except TimeoutError:
                return None
            if isinstance(msg, Event):
                return msg
            if isinstance(msg, Hello):
                self.log.debug("a second transportId (%s) ignored", msg.transport_id)

    async def probe(self) -> None:
        """Ping the socket and wait for the pong; RetryableError when it does not come."""
        ws = self._require()
        try:
            async with asyncio.timeout(self.opt.ping_timeout_s):  # sending the ping can wait on a full buffer too
                pong = await ws.ping()
                await pong
        except TimeoutError:
            raise RetryableError(
                f"the event WebSocket was silent for {self.opt.silence_s:g} s and did not answer a ping"
            ) from None
        except ConnectionClosed as exc:
            raise _closed(exc) from exc

    async def _recv_parsed(self) -> Hello | Event | None:
        """One message parsed; None for a malformed one (logged, skipped)."""
        ws = self._require()
        try:
            raw = await ws.recv()
        except ConnectionClosed as exc:
            raise _closed(exc) from exc
        self.messages += 1
        self.link.received(len(raw))
        try:
            return parse_message(raw)
        except CodecError as exc:
            self.malformed += 1
            level = logging.WARNING if self.malformed <= LOUD_MALFORMED else logging.DEBUG
            more = "; further ones this session are logged at DEBUG" if self.malformed == LOUD_MALFORMED else ""
            self.log.log(level, "malformed event from the System API at %s ignored: %s%s", self.client.origin, exc,
                         more)
            return None

    def _require(self) -> ClientConnection:
        if self.ws is None:
            raise RetryableError("event WebSocket not open")
        return self.ws

    async def close(self) -> None:
        ws, self.ws = self.ws, None
        self.transport_id = None
        if ws is not None:
            try:
                async with asyncio.timeout(WS_CLOSE_TIMEOUT_S):
                    await ws.close()
            except (TimeoutError, OSError, websockets.WebSocketException) as exc:
                self.log.debug("closing the event WebSocket: %s", exc)


def _closed(exc: ConnectionClosed) -> RetryableError:
    frame = exc.rcvd or exc.sent
    detail = f"code {frame.code}{' ' + frame.reason if frame.reason else ''}" if frame else "no close frame"
    return RetryableError(f"the event WebSocket closed ({detail})")


def _json_or_text(body: bytes | None) -> object:
    if not body:
        return None
    try:
        return json.loads(body)
    except ValueError:
        return body.decode("utf-8", "replace")
