"""Connected clients of a simulated receiver: one outgoing queue and one writer task per client.

The writer is where the wire quirks happen: coalescing whatever is queued into one write, splitting a
write at random byte offsets (§1.2: the devices' segments end mid-message), slow replies and garbage.
TCP clients get a byte stream; UHF-R clients get datagrams (§1.1).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import socket
import struct
from collections import deque
from collections.abc import Callable
from typing import Final, Protocol

log = logging.getLogger(__name__)

FRAGMENT_PROBABILITY: Final = 0.5  # half the writes leave in pieces
FRAGMENT_MAX_PIECES: Final = 4
FRAGMENT_GAP_S: Final = 0.002  # pause between pieces so they leave as separate TCP segments
MAX_QUEUED: Final = 20_000  # a client that stops reading loses new messages beyond this
UDP_DATAGRAM_BYTES: Final = 1400  # coalesced UHF-R replies stay within one Ethernet frame
_JUNK_BYTES: Final = bytes(b for b in range(256) if b not in b"<>*{}")


class WireSettings(Protocol):
    """What a writer needs to know about its receiver at the moment it writes."""

    @property
    def slow_delay_s(self) -> float | None: ...  # None unless the SLOW fault is on

    @property
    def garbage(self) -> bool: ...

    @property
    def fragment(self) -> bool: ...

    garbage_run_bytes: int


def junk(rng: random.Random, size: int) -> bytes:
    """Bytes that are not protocol: no delimiters, no braces."""
    return bytes(rng.choice(_JUNK_BYTES) for _ in range(size))


class Peer:
    """One client's outgoing side."""

    def __init__(self, settings: WireSettings, rng: random.Random, label: str) -> None:
        self._settings = settings
        self._rng = rng
        self.label = label
        self._queue: deque[tuple[float, bytes]] = deque()
        self._wake = asyncio.Event()
        self._dropped = 0
        self.long_run_due = True  # the first garbled write carries an over-long run without '>'
        self.task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self.task = asyncio.create_task(self._run(), name=f"{self.label} writer")

    def send(self, framed: bytes) -> None:
        if len(self._queue) >= MAX_QUEUED:
            self._dropped += 1
            if self._dropped == 1:
                log.debug("%s: client not reading; dropping messages", self.label)
            return
        self._queue.append((asyncio.get_running_loop().time(), framed))
        self._wake.set()

    def inject_garbage(self) -> None:
        """Unprompted junk (GARBAGE fault), now and then an over-long run without a delimiter."""
        size = self._settings.garbage_run_bytes if self.long_run_due else self._rng.randint(4, 64)
        self.long_run_due = self._rng.random() < 0.125
        self.send(junk(self._rng, size))

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while True:
                if not self._queue:
                    self._wake.clear()
                    await self._wake.wait()
                    continue
                slow = self._settings.slow_delay_s
                if slow is not None:
                    delay = self._queue[0][0] + slow - loop.time()
                    if delay > 0:
                        await asyncio.sleep(delay)
                        continue
                    now = loop.time()
                    items: list[bytes] = []
                    while self._queue and self._queue[0][0] + slow <= now:
                        items.append(self._queue.popleft()[1])
                else:
                    items = [data for _, data in self._queue]
                    self._queue.clear()
                if self._settings.garbage:
                    items = self._garble(items)
                await self.write(items)
        except (ConnectionError, OSError) as exc:
            log.debug("%s: write failed: %s", self.label, exc)

    def _garble(self, items: list[bytes]) -> list[bytes]:
        out: list[bytes] = []
        if self.long_run_due:
            out.append(junk(self._rng, self._settings.garbage_run_bytes))
            self.long_run_due = False
        for item in items:
            if self._rng.random() < 0.5:
                out.append(junk(self._rng, self._rng.randint(1, 24)))
            out.append(item)
        return out

    async def write(self, items: list[bytes]) -> None:
        raise NotImplementedError


class TcpPeer(Peer):
    """A TCP client: coalesced writes, split at random offsets unless fragmentation is off."""

    def __init__(
        self, settings: WireSettings, rng: random.Random, label: str, writer: asyncio.StreamWriter
    ) -> None:
        super().__init__(settings, rng, label)
        self.writer = writer
        self.closed_by_us = False
        sock = writer.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    async def write(self, items: list[bytes]) -> None:
        if not self._settings.fragment:
            for item in items:  # one message per write
                self.writer.write(item)
                await self.writer.drain()
            return
        payload = b"".join(items)
        pieces = [payload]
        if len(payload) > 1 and self._rng.random() < FRAGMENT_PROBABILITY:
            count = self._rng.randint(2, min(FRAGMENT_MAX_PIECES, len(payload)))
            cuts = sorted(self._rng.sample(range(1, len(payload)), count - 1))
            pieces = [payload[a:b] for a, b in zip([0, *cuts], [*cuts, len(payload)], strict=True)]
        for i, piece in enumerate(pieces):
            if i:
                await asyncio.sleep(FRAGMENT_GAP_S)
            self.writer.write(piece)
            await self.writer.drain()

    def abort(self, *, rst: bool = True) -> None:
        """Drop the connection; with ``rst`` the client sees a reset, not an orderly close."""
        self.closed_by_us = True
        if rst:
            sock = self.writer.get_extra_info("socket")
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.writer.transport.abort()


def rst_close(writer: asyncio.StreamWriter) -> None:
    """Close a fresh connection with a reset (the RESET fault)."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


class UdpPeer(Peer):
    """A UHF-R client, known by its address; replies leave from whichever socket ``sendto`` gives."""

    def __init__(
        self,
        settings: WireSettings,
        rng: random.Random,
        label: str,
        addr: tuple[str, int],
        sendto: Callable[[bytes, tuple[str, int]], None],
    ) -> None:
        super().__init__(settings, rng, label)
        self.addr = addr
        self._sendto = sendto
        self.last_seen = 0.0

    async def write(self, items: list[bytes]) -> None:
        if not self._settings.fragment:
            for item in items:
                self._sendto(item, self.addr)
            return
        datagram = b""
        for item in items:  # coalesce, never split: a datagram holds whole messages
            if datagram and len(datagram) + len(item) > UDP_DATAGRAM_BYTES:
                self._sendto(datagram, self.addr)
                datagram = b""
            datagram += item
        if datagram:
            self._sendto(datagram, self.addr)
