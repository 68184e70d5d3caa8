"""HTTPS and WSS on one TLS port, the way the System API service serves both: the shared HTTP/1.1 + TLS
server, and a WebSocket upgrade handed to the ``websockets`` sans-I/O server protocol on the same connection.

JSON (or problem JSON) replies; REST requests and accepted WebSockets go to handlers, because what a
request means is not this module's business.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Final

from websockets.frames import Frame, Opcode
from websockets.http11 import Request
from websockets.protocol import State
from websockets.server import ServerProtocol

from .._https import (
    MAX_BODY_BYTES,
    WRITE_TIMEOUT_S,
    HttpRequest,
    HttpsServer,
    compact_json,
    read_request,
    write_response,
)
from .._https import REASONS as HTTP_REASONS

IDLE_KEEPALIVE_S: Final = 60.0  # an idle persistent connection is closed after this
READ_CHUNK: Final = 64 * 1024
log = logging.getLogger(__name__)


class _RedactKey(logging.Filter):
    """websockets logs each handshake header at DEBUG ("< name: value"); a key must not reach the log
    (``micboardd demo`` runs this simulator inside the daemon's process and log)."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) == 2 and str(args[0]).lower() == "x-api-key":
            record.args = (args[0], "<redacted>")
        return True


WS_LOG: Final = logging.getLogger(f"{__name__}.websocket")
WS_LOG.addFilter(_RedactKey())
REASONS: Final = {**HTTP_REASONS, 101: "Switching Protocols", 204: "No Content"}


@dataclass(frozen=True, slots=True)
class HttpReply:
    status: int
    body: Any = None  # JSON-able; None sends no body
    raw: bytes | None = None  # sent as-is instead of JSON (the garbage fault)


class WsPeer:
    """One accepted WebSocket: text frames out, pings answered, closes handled (sans-I/O protocol)."""

    def __init__(self, proto: ServerProtocol, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.proto = proto
        self.reader = reader
        self.writer = writer

    @property
    def open(self) -> bool:
        return self.proto.state is State.OPEN and not self.writer.is_closing()

    def send_text(self, text: str) -> None:
        """Queue one text message (a no-op once the socket is closing)."""
        if not self.open:
            return
        self.proto.send_text(text.encode())
        self.flush()

    def flush(self) -> None:
        for data in self.proto.data_to_send():
            if data:
                self.writer.write(data)
            else:  # the protocol asks for EOF: TLS cannot half-close, so close
                self.writer.close()
                return

    async def serve(self, wait_readable: Callable[[], Awaitable[object]]) -> None:
        """Read frames until the peer or we close; ``wait_readable`` stalls reading (the silent fault)."""
        while self.proto.state is not State.CLOSED:
            await wait_readable()
            try:
                data = await self.reader.read(READ_CHUNK)
            except (ConnectionError, ssl.SSLError, OSError):
                return
            if not data:
                self.proto.receive_eof()
                self.flush()
                return
            self.proto.receive_data(data)
            for event in self.proto.events_received():
                if isinstance(event, Frame) and event.opcode is Opcode.CLOSE:
                    break
            self.flush()
            with contextlib.suppress(ConnectionError, TimeoutError, OSError):
                async with asyncio.timeout(WRITE_TIMEOUT_S):
                    await self.writer.drain()

    def close(self, code: int = 1001, reason: str = "going away") -> None:
        if self.proto.state is State.OPEN:
            self.proto.send_close(code, reason)
            self.flush()


RestHandler = Callable[[HttpRequest], Awaitable[HttpReply]]
# Decides on an upgrade request: None accepts; a reply refuses it (e.g. 401).
WsGate = Callable[[HttpRequest], HttpReply | None]
WsHandler = Callable[[WsPeer], Awaitable[None]]


class WireServer(HttpsServer):
    """Listens with TLS on ``host:port`` (the port survives a restart); REST and one WebSocket path."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        rest: RestHandler,
        ws_path: str,
        ws_gate: WsGate,
        ws: WsHandler,
        reset: Callable[[], bool],
    ) -> None:
        super().__init__(
            host, port, self._serve, reset=reset, idle_s=IDLE_KEEPALIVE_S,
            ca_name="System API simulator CA", leaf_file="server-cert.pem", tmp_prefix="sysapisim-",
        )
        self._rest = rest
        self._ws_path = ws_path
        self._ws_gate = ws_gate
        self._ws = ws

    async def _serve(self, head: bytes, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        """One request: a WebSocket upgrade on ``ws_path`` (the connection is then the socket's), else REST."""
        req = await read_request(head, reader, writer)
        if req is None:
            return False
        if req.path == self._ws_path and req.headers.get("upgrade", "").lower() == "websocket":
            await self._upgrade(head, req, reader, writer)
            return False
        reply = await self._rest(req)
        await write_reply(writer, reply, close=req.close)
        return not req.close

    async def _upgrade(
        self, head: bytes, req: HttpRequest, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        refusal = self._ws_gate(req)
        if refusal is not None:
            await write_reply(writer, refusal, close=True)
            return
        proto = ServerProtocol(max_size=MAX_BODY_BYTES, logger=WS_LOG)
        proto.receive_data(head)
        events = proto.events_received()
        if not events or not isinstance(events[0], Request):
            await write_reply(writer, HttpReply(400), close=True)
            return
        response = proto.accept(events[0])
        proto.send_response(response)
        peer = WsPeer(proto, reader, writer)
        peer.flush()
        if response.status_code != 101:
            return
        await self._ws(peer)


async def write_reply(writer: asyncio.StreamWriter, reply: HttpReply, *, close: bool) -> None:
    """A complete response: status line, headers, and the body as compact JSON (or raw bytes)."""
    payload = reply.raw if reply.raw is not None else compact_json(reply.body)
    problem = isinstance(reply.body, dict) and "traceId" in reply.body
    headers = []
    if payload:
        headers.append(f"Content-Type: application/{'problem+json' if problem else 'json'}; charset=utf-8")
    await write_response(writer, reply.status, payload, headers, close=close, reasons=REASONS)
