"""What every simulated UDP device shares: its socket's life, a ticker, and the fault modes on sending.

Subclasses (the SSCv1 and MCP simulators) speak their protocol in ``datagram_received``, send through
:meth:`UdpDeviceSim._send` (which applies the fault: silent, garbage first, or slow), and say what is due
on each tick in ``_due``. Simulators only; never imports an adapter.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from abc import ABC, abstractmethod
from typing import ClassVar, Final, Literal, Self, cast

Fault = Literal["silent", "garbage", "slow"] | None

TICK_S: Final = 0.02  # periodic sends are due at most this late (20 ms against ≥ 100 ms periods)
LIVELY_EVERY_S: Final = 0.25  # how often lively mode moves the meters


class UdpDeviceSim(asyncio.DatagramProtocol, ABC):
    """One device on ``host:port`` (port 0 picks one; a restart keeps it)."""

    log: ClassVar[logging.Logger]  # the subclass module's logger
    LABEL: ClassVar[str]  # how its log lines start ("mcp sim")
    GARBAGE: ClassVar[tuple[bytes, ...]]  # what the garbage fault sends before each real answer, in turn

    def __init__(self, host: str, port: int, *, seed: int, lively: bool) -> None:
        self.host = host
        self._port = port
        self.lively = lively
        self.fault: Fault = None
        self.slow_s = 0.5
        self.sent = 0
        self._rng = random.Random(seed)
        self._transport: asyncio.DatagramTransport | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._ticker: asyncio.Task[None] | None = None
        self._lost: asyncio.Future[None] | None = None
        self._garbage_i = 0

    # ================================================================= lifecycle

    @property
    def port(self) -> int:
        return self._port

    @property
    def running(self) -> bool:
        return self._transport is not None

    @abstractmethod
    def describe(self) -> str:
        """What the device is, for log lines (model or variant)."""

    async def start(self) -> None:
        if self._transport is not None:
            return
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(lambda: self, local_addr=(self.host, self._port))
        self._transport = transport
        self._port = transport.get_extra_info("sockname")[1]
        self._lost = loop.create_future()
        self._ticker = loop.create_task(self._tick())
        self.log.debug("%s %s:%d (%s) started", self.LABEL, self.host, self._port, self.describe())

    async def stop(self) -> None:
        """Stop the ticker and delayed sends, and close the socket."""
        if self._ticker is not None:
            self._ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ticker
            self._ticker = None
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._transport is not None:
            self._transport.close()
            self._transport = None
            if self._lost is not None:
                await self._lost  # the port is free again only once the socket is really closed

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # ================================================================= protocol

    def connection_lost(self, exc: Exception | None) -> None:
        if self._lost is not None and not self._lost.done():
            self._lost.set_result(None)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.DatagramTransport, transport)  # selector transports lack the base class

    # ================================================================= ticking

    async def _tick(self) -> None:
        last_lively = time.monotonic()
        while True:
            await asyncio.sleep(TICK_S)
            now = time.monotonic()
            if self.lively and now - last_lively >= LIVELY_EVERY_S:
                last_lively = now
                self._live_step()
            self._due(now)

    @abstractmethod
    def _live_step(self) -> None:
        """Lively mode: move the meters a little."""

    @abstractmethod
    def _due(self, now: float) -> None:
        """Send what is due at ``now`` (periodic reports) and drop what has run out."""

    # ================================================================= sending (with fault modes)

    def _send(self, data: bytes, target: tuple[str, int]) -> None:
        if self.fault == "silent" or self._transport is None:
            return
        if self.fault == "slow":
            task = asyncio.get_running_loop().create_task(self._later(self.slow_s, data, target))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
            return
        if self.fault == "garbage":
            self._transport.sendto(self._garbage(), target)
        self.sent += 1
        self._transport.sendto(data, target)

    async def _later(self, delay: float, data: bytes, target: tuple[str, int]) -> None:
        await asyncio.sleep(delay)
        if self._transport is not None:
            self.sent += 1
            self._transport.sendto(data, target)

    def _garbage(self) -> bytes:
        self._garbage_i += 1
        return self.GARBAGE[self._garbage_i % len(self.GARBAGE)]
