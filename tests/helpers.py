"""Test support shared by the adapter-against-simulator tests: polling, a supervised adapter, a started simulator.

Use from a test module (``tests/`` is on ``sys.path`` as the test files' folder)::

    from helpers import run_supervised, wait_until
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from typing import Any, Protocol, TypeVar

from micboardd.adapters.base import Adapter, Supervisor
from micboardd.config import DeviceConfig
from micboardd.hub import StateHub
from micboardd.model import ConnState

POLL_S = 0.02  # how often a condition is looked at again; far below any wait the tests allow

# What run_supervised gives: ``async with ... as (sup, hub)``.
Supervised = AbstractAsyncContextManager[tuple[Supervisor, StateHub]]


async def wait_until(predicate: Callable[[], Any], timeout: float = 5.0, what: str = "condition") -> Any:
    """Poll until ``predicate()`` is truthy and return that value; AssertionError naming ``what`` on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(POLL_S)


async def wait_for(predicate: Callable[[], object], timeout: float = 5.0) -> None:
    """Poll until ``predicate()`` is truthy; TimeoutError on timeout (events would need hooks inside the hub)."""
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(POLL_S)


@contextlib.asynccontextmanager
async def run_supervised(
    cfg: DeviceConfig,
    adapter: type[Adapter],
    hub: StateHub | None = None,
    *,
    backoff_base: float,
    backoff_cap: float,
) -> AsyncIterator[tuple[Supervisor, StateHub]]:
    """A Supervisor running ``adapter`` for ``cfg`` into ``hub`` (a new one by default); cancelled on exit."""
    hub = hub or StateHub()
    sup = Supervisor(cfg, hub, adapter, backoff_base=backoff_base, backoff_cap=backoff_cap)
    task = asyncio.create_task(sup.run())
    try:
        yield sup, hub
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def is_online(hub: StateHub, dev_id: str) -> bool:
    """The device is in the hub and online."""
    dev = hub.device(dev_id)
    return dev is not None and dev.state is ConnState.ONLINE


class TlsSim(Protocol):
    """A simulator with a throw-away certificate: started, stopped, and its files removed."""

    async def start(self) -> None: ...
    async def stop(self) -> None: ...
    def cleanup(self) -> None: ...


SimT = TypeVar("SimT", bound=TlsSim)


@contextlib.asynccontextmanager
async def started(sim: SimT) -> AsyncIterator[SimT]:
    """``sim`` started; stopped and its certificate files removed on exit."""
    await sim.start()
    try:
        yield sim
    finally:
        await sim.stop()
        sim.cleanup()
