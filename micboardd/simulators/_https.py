"""HTTP/1.1 on asyncio streams behind a throw-away TLS certificate, shared by the HTTPS simulators.

A trustme CA and leaf certificate (the leaf alone written out for pinning), persistent connections with an
idle timeout, limits on the request head and body, ``Content-Length`` bodies only, the response head, and
the TCP reset a crashing peer leaves behind. What a request means, and how a reply body looks, is each
simulator's business: every request head goes to a handler. Simulators only; never imports an adapter.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import ssl
import struct
import tempfile
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import trustme

MAX_HEADER_BYTES: Final = 16 * 1024  # a small server refuses bigger request heads (431)
MAX_BODY_BYTES: Final = 64 * 1024  # every request body the simulated APIs take is tiny
WRITE_TIMEOUT_S: Final = 5.0  # a client that stops reading loses its connection
HANDSHAKE_TIMEOUT_S: Final = 5.0  # a client that opens TCP but never finishes TLS is dropped
HANDLERS_EXIT_S: Final = 2.0  # handlers end once their connection is aborted; this only guards against a bug
REASONS: Final[Mapping[int, str]] = {
    200: "OK", 400: "Bad Request", 401: "Unauthorized", 404: "Not Found", 405: "Method Not Allowed",
    409: "Conflict", 411: "Length Required", 413: "Payload Too Large", 431: "Request Header Fields Too Large",
    500: "Internal Server Error",
}

# Serves one request from its head; False when the connection must close afterwards.
Handler = Callable[[bytes, asyncio.StreamReader, asyncio.StreamWriter], Awaitable[bool]]


@dataclass(frozen=True, slots=True)
class HttpRequest:
    """One request: ``path`` without the query (trailing slash trimmed), ``query`` as given."""

    method: str
    path: str
    query: str
    headers: dict[str, str]  # names in lower case
    body: bytes
    close: bool  # the client sent ``Connection: close``


class HttpsServer:
    """Listens with TLS on ``host:port`` (the port survives a restart) and hands each request head to a handler."""

    def __init__(
        self,
        host: str,
        port: int,
        handler: Handler,
        *,
        reset: Callable[[], bool],
        idle_s: float,
        ca_name: str,
        leaf_file: str,
        tmp_prefix: str,
    ) -> None:
        self.host = host
        self.port = port
        self._handler = handler
        self._reset = reset  # the reset fault: abort every new connection and request while it is on
        self._idle_s = idle_s  # an idle persistent connection is closed after this
        self._server: asyncio.Server | None = None
        self._conns: set[asyncio.StreamWriter] = set()
        self._handlers: set[asyncio.Task[Any]] = set()
        self._tmp = tempfile.TemporaryDirectory(prefix=tmp_prefix)
        ca = trustme.CA(organization_name=ca_name)
        cert = ca.issue_cert(*sorted({host, "127.0.0.1", "localhost"}))
        self.ca_file = str(Path(self._tmp.name) / "ca.pem")
        self.cert_file = str(Path(self._tmp.name) / leaf_file)  # the leaf alone, for pinning
        ca.cert_pem.write_to_path(self.ca_file)
        cert.cert_chain_pems[0].write_to_path(self.cert_file)
        self._ssl = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self._ssl.minimum_version = ssl.TLSVersion.TLSv1_2
        cert.configure_cert(self._ssl)

    @property
    def running(self) -> bool:
        return self._server is not None

    async def listen(self) -> None:
        """Start accepting; port 0 picks a free port once, and later restarts reuse it."""
        self._server = await asyncio.start_server(
            self._client, self.host, self.port, ssl=self._ssl, reuse_address=True,
            ssl_handshake_timeout=HANDSHAKE_TIMEOUT_S,
        )
        self.port = self._server.sockets[0].getsockname()[1]

    def close(self) -> asyncio.Server | None:
        """Stop accepting; the server to pass to :meth:`wait_closed`, or None when it was not listening."""
        server, self._server = self._server, None
        if server is not None:
            server.close()
        return server

    async def stop(self) -> None:
        """Stop accepting, abort every connection and wait until they and the listener are gone."""
        server = self.close()
        if server is None:
            return
        self.drop_connections()
        await self.wait_closed(server)

    def drop_connections(self) -> None:
        """Abort every open connection with a TCP reset."""
        for w in list(self._conns):
            abort(w)

    def abort_all(self) -> None:
        """Abort every open connection and forget them (the server is stopping)."""
        self.drop_connections()
        self._conns.clear()

    async def wait_closed(self, server: asyncio.Server) -> None:
        """Wait for the connection handlers to end, then for the listener to close."""
        if self._handlers:
            # Handlers end by themselves once their connection is gone (cancelling them makes 3.11's
            # stream callback log an error); the timeout only guards against a bug here.
            await asyncio.wait(list(self._handlers), timeout=HANDLERS_EXIT_S)
        await server.wait_closed()

    def cleanup(self) -> None:
        """Remove the certificate files (also happens when the object is collected)."""
        self._tmp.cleanup()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._reset() or self._server is None:
            abort(writer)
            return
        task = asyncio.current_task()
        if task is not None:
            self._handlers.add(task)  # wait_closed() waits for them; they end once their connection is aborted
        self._conns.add(writer)
        try:
            while True:
                try:
                    async with asyncio.timeout(self._idle_s):
                        head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, TimeoutError, ConnectionError, ssl.SSLError):
                    return
                except asyncio.LimitOverrunError:
                    await write_response(writer, 431, close=True)
                    return
                if len(head) > MAX_HEADER_BYTES:
                    await write_response(writer, 431, close=True)
                    return
                if self._reset():
                    abort(writer)
                    return
                keep = await self._handler(head, reader, writer)
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


async def read_request(head: bytes, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> HttpRequest | None:
    """Parse a request head and read its body; None after answering a request the server refuses."""
    try:
        lines = head.decode("latin-1").split("\r\n")
        method, target, _version = lines[0].split(" ", 2)
    except ValueError:
        await write_response(writer, 400, close=True)
        return None
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if ":" in line:
            k, _, v = line.partition(":")
            headers[k.strip().lower()] = v.strip()
    close = headers.get("connection", "").lower() == "close"
    if "transfer-encoding" in headers:
        await write_response(writer, 411, close=True)
        return None
    length = headers.get("content-length", "0")
    if not length.isdigit() or int(length) > MAX_BODY_BYTES:
        await write_response(writer, 413, close=True)
        return None
    body = await reader.readexactly(int(length)) if int(length) else b""
    path, _, query = target.partition("?")
    if len(path) > 1:
        path = path.rstrip("/")
    return HttpRequest(method, path, query, headers, body, close)


def compact_json(body: Any) -> bytes:
    """``body`` as compact JSON; None is no body at all."""
    return b"" if body is None else json.dumps(body, separators=(",", ":")).encode()


async def write_response(
    writer: asyncio.StreamWriter,
    status: int,
    payload: bytes = b"",
    headers: Iterable[str] = (),
    *,
    close: bool,
    reasons: Mapping[int, str] = REASONS,
) -> None:
    """A complete response: status line, ``Content-Length``, ``headers`` as given, then ``payload``."""
    lines = [f"HTTP/1.1 {status} {reasons.get(status, 'Error')}", f"Content-Length: {len(payload)}", *headers]
    if close:
        lines.append("Connection: close")
    writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + payload)
    async with asyncio.timeout(WRITE_TIMEOUT_S):
        await writer.drain()


def abort(writer: asyncio.StreamWriter) -> None:
    """Close with a TCP reset (SO_LINGER 0), the way a crashing device or service drops a connection."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    with contextlib.suppress(Exception):
        writer.transport.abort()
