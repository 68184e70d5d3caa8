"""The EW-DX's HTTPS face: the shared small HTTP/1.1 + TLS server with this device's settings and replies.

JSON replies with the headers the device adds (``WWW-Authenticate`` on 401, ``Allow`` on 405), and chunked
writes split into several TLS records for the SSE stream. What a request means is not this module's
business: each request head goes to a handler.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from typing import Any, Final

from .._https import REASONS as HTTP_REASONS
from .._https import WRITE_TIMEOUT_S, Handler, HttpsServer, compact_json, write_response

IDLE_KEEPALIVE_S: Final = 30.0  # an idle persistent connection is closed after this, like a small device would
REASONS: Final = {**HTTP_REASONS, 403: "Forbidden", 422: "Unprocessable Entity", 429: "Too Many Requests"}


class HttpServer(HttpsServer):
    """Listens with TLS on ``host:port`` (the port survives a restart) and hands each request head to a handler."""

    def __init__(self, host: str, port: int, handler: Handler, *, reset: Callable[[], bool]) -> None:
        super().__init__(
            host, port, handler, reset=reset, idle_s=IDLE_KEEPALIVE_S,
            ca_name="SSCv2 simulator CA", leaf_file="device-cert.pem", tmp_prefix="sscv2sim-",
        )


async def write_reply(writer: asyncio.StreamWriter, status: int, body: Any, *, close: bool) -> None:
    """A complete response: status line, headers, and ``body`` as compact JSON (None: no body)."""
    payload = compact_json(body)
    headers = []
    if payload:
        headers.append("Content-Type: application/json")
    if status == 401:
        headers.append('WWW-Authenticate: Basic realm="SSCv2"')
    if status == 405:
        headers.append("Allow: GET, PUT")
    await write_response(writer, status, payload, headers, close=close, reasons=REASONS)


async def write_chunks(writer: asyncio.StreamWriter, data: bytes, rng: random.Random, *, fragment: bool) -> None:
    """``data`` as HTTP chunks; with ``fragment``, cut at random places so it spans several TLS records."""
    parts = [data]
    if fragment and len(data) > 4:
        cuts = sorted(rng.sample(range(1, len(data)), k=min(2, len(data) - 1)))
        parts = [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True)]
    for part in parts:
        writer.write(f"{len(part):X}\r\n".encode() + part + b"\r\n")
        async with asyncio.timeout(WRITE_TIMEOUT_S):
            await writer.drain()
