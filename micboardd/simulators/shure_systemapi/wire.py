"""HTTPS and WSS on one TLS port, the way the System API service serves both: HTTP/1.1 on asyncio streams,
and a WebSocket upgrade handed to the ``websockets`` sans-I/O server protocol on the same connection.

A throw-away certificate (trustme, like the server's self-signed one), persistent connections with an
idle timeout, limits on the request head and body, ``Content-Length`` bodies only, JSON replies. What a
request means is not this module's business: REST requests and accepted WebSockets go to handlers.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
import ssl
import struct
import tempfile
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import trustme
from websockets.frames import Frame, Opcode
from websockets.http11 import Request
from websockets.protocol import State
from websockets.server import ServerProtocol

MAX_HEADER_BYTES: Final = 16 * 1024  # request heads bigger than this are refused (431)
MAX_BODY_BYTES: Final = 64 * 1024  # PATCH bodies are a few bytes
IDLE_KEEPALIVE_S: Final = 60.0  # an idle persistent connection is closed after this
WRITE_TIMEOUT_S: Final = 5.0  # a client that stops reading loses its connection
HANDSHAKE_TIMEOUT_S: Final = 5.0  # a client that opens TCP but never finishes TLS is dropped
HANDLERS_EXIT_S: Final = 2.0  # handlers end once their connection is aborted; this only guards a bug
READ_CHUNK: Final = 64 * 1024
log = logging.getLogger(__name__)
REASONS: Final = {
    101: "Switching Protocols", 200: "OK", 204: "No Content", 400: "Bad Request", 401: "Unauthorized",
    404: "Not Found", 405: "Method Not Allowed", 409: "Conflict", 411: "Length Required",
    413: "Payload Too Large", 431: "Request Header Fields Too Large", 500: "Internal Server Error",
}


@dataclass(frozen=True, slots=True)
class HttpRequest:
    """One request: ``path`` without the query (trailing slash trimmed), ``query`` as given."""

    method: str
    path: str
    query: str
    headers: dict[str, str]  # names in lower case
    body: bytes
    close: bool


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


class WireServer:
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
        self.host = host
        self.port = port
        self._rest = rest
        self._ws_path = ws_path
        self._ws_gate = ws_gate
        self._ws = ws
        self._reset = reset
        self._server: asyncio.Server | None = None
        self._conns: set[asyncio.StreamWriter] = set()
        self._handlers: set[asyncio.Task[Any]] = set()
        self._tmp = tempfile.TemporaryDirectory(prefix="sysapisim-")
        ca = trustme.CA(organization_name="System API simulator CA")
        cert = ca.issue_cert(*sorted({host, "127.0.0.1", "localhost"}))
        self.ca_file = str(Path(self._tmp.name) / "ca.pem")
        self.cert_file = str(Path(self._tmp.name) / "server-cert.pem")  # the leaf alone, for pinning
        ca.cert_pem.write_to_path(self.ca_file)
        cert.cert_chain_pems[0].write_to_path(self.cert_file)
        self._ssl = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self._ssl.minimum_version = ssl.TLSVersion.TLSv1_2
        cert.configure_cert(self._ssl)

    @property
    def running(self) -> bool:
        return self._server is not None

    async def listen(self) -> None:
        self._server = await asyncio.start_server(
            self._client, self.host, self.port, ssl=self._ssl, reuse_address=True,
            ssl_handshake_timeout=HANDSHAKE_TIMEOUT_S,
        )
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        server.close()
        self.drop_connections()
        if self._handlers:
            await asyncio.wait(list(self._handlers), timeout=HANDLERS_EXIT_S)
        await server.wait_closed()

    def drop_connections(self) -> None:
        """Abort every open connection with a TCP reset."""
        for w in list(self._conns):
            abort(w)

    def cleanup(self) -> None:
        self._tmp.cleanup()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._reset() or self._server is None:
            abort(writer)
            return
        task = asyncio.current_task()
        if task is not None:
            self._handlers.add(task)
        self._conns.add(writer)
        try:
            while True:
                try:
                    async with asyncio.timeout(IDLE_KEEPALIVE_S):
                        head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, TimeoutError, ConnectionError, ssl.SSLError):
                    return
                except asyncio.LimitOverrunError:
                    await write_reply(writer, HttpReply(431), close=True)
                    return
                if len(head) > MAX_HEADER_BYTES:
                    await write_reply(writer, HttpReply(431), close=True)
                    return
                if self._reset():
                    abort(writer)
                    return
                req = await read_request(head, reader, writer)
                if req is None:
                    return
                if req.path == self._ws_path and req.headers.get("upgrade", "").lower() == "websocket":
                    await self._upgrade(head, req, reader, writer)
                    return
                reply = await self._rest(req)
                await write_reply(writer, reply, close=req.close)
                if req.close:
                    return
        except (ConnectionError, ssl.SSLError, OSError, asyncio.IncompleteReadError, TimeoutError):
            return
        finally:
            self._conns.discard(writer)
            if task is not None:
                self._handlers.discard(task)
            with contextlib.suppress(Exception):
                writer.close()

    async def _upgrade(
        self, head: bytes, req: HttpRequest, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        refusal = self._ws_gate(req)
        if refusal is not None:
            await write_reply(writer, refusal, close=True)
            return
        proto = ServerProtocol(max_size=MAX_BODY_BYTES, logger=log)
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


async def read_request(head: bytes, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> HttpRequest | None:
    """Parse a request head and read its body; None after answering a request the server refuses."""
    try:
        lines = head.decode("latin-1").split("\r\n")
        method, target, _version = lines[0].split(" ", 2)
    except ValueError:
        await write_reply(writer, HttpReply(400), close=True)
        return None
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if ":" in line:
            k, _, v = line.partition(":")
            headers[k.strip().lower()] = v.strip()
    close = headers.get("connection", "").lower() == "close"
    if "transfer-encoding" in headers:
        await write_reply(writer, HttpReply(411), close=True)
        return None
    length = headers.get("content-length", "0")
    if not length.isdigit() or int(length) > MAX_BODY_BYTES:
        await write_reply(writer, HttpReply(413), close=True)
        return None
    body = await reader.readexactly(int(length)) if int(length) else b""
    path, _, query = target.partition("?")
    if len(path) > 1:
        path = path.rstrip("/")
    return HttpRequest(method, path, query, headers, body, close)


async def write_reply(writer: asyncio.StreamWriter, reply: HttpReply, *, close: bool) -> None:
    """A complete response: status line, headers, and the body as compact JSON (or raw bytes)."""
    if reply.raw is not None:
        payload = reply.raw
    else:
        payload = b"" if reply.body is None else json.dumps(reply.body, separators=(",", ":")).encode()
    problem = isinstance(reply.body, dict) and "traceId" in reply.body
    lines = [f"HTTP/1.1 {reply.status} {REASONS.get(reply.status, 'Error')}", f"Content-Length: {len(payload)}"]
    if payload:
        lines.append(f"Content-Type: application/{'problem+json' if problem else 'json'}; charset=utf-8")
    if close:
        lines.append("Connection: close")
    writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + payload)
    async with asyncio.timeout(WRITE_TIMEOUT_S):
        await writer.drain()


def abort(writer: asyncio.StreamWriter) -> None:
    """Close with a TCP reset (SO_LINGER 0), the way a crashed service drops its sockets."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport = writer.transport
    with contextlib.suppress(Exception):
        transport.abort()
