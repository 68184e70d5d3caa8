"""Many simulated Shure receivers at once, one loopback address each, for demo, simulate and bench."""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import Sequence
from types import TracebackType
from typing import Any

from .models import MODELS
from .server import ShureReceiverSim


def fleet_hosts(base_host: str, count: int) -> list[str]:
    """``count`` consecutive addresses from ``base_host``, carrying into the next octet.

    Addresses ending in .0 or .255 are skipped: they bind fine on loopback but read like network and
    broadcast addresses in a config file.
    """
    hosts: list[str] = []
    addr = ipaddress.IPv4Address(base_host)
    while len(hosts) < count:
        if int(addr) & 0xFF not in (0, 255):
            hosts.append(str(addr))
        addr += 1
    return hosts


class ShureFleet:
    """A set of receivers started and stopped together."""

    def __init__(self, receivers: Sequence[ShureReceiverSim]) -> None:
        self.receivers = list(receivers)

    @classmethod
    def build(
        cls, models: Sequence[str], *, base_host: str = "127.0.10.1", port: int = 2202, **kw: Any
    ) -> ShureFleet:
        """One receiver per entry of ``models`` on its own address; seeds and channel numbers run on."""
        unknown = [m for m in models if m not in MODELS]
        if unknown:
            raise ValueError(f"unknown Shure model(s) {', '.join(unknown)}; known: {', '.join(MODELS)}")
        seed = int(kw.pop("seed", 0))
        receivers: list[ShureReceiverSim] = []
        slot = 0
        for i, (model, host) in enumerate(zip(models, fleet_hosts(base_host, len(models)), strict=True)):
            receivers.append(ShureReceiverSim(model, host, port, seed=seed + i, slot_base=slot, **kw))
            slot += MODELS[model].channels
        return cls(receivers)

    async def start(self) -> None:
        """Start every receiver; if one cannot bind, the ones already started are stopped again."""
        try:
            async with asyncio.TaskGroup() as tg:
                for sim in self.receivers:
                    tg.create_task(sim.start())
        except BaseException:
            await self.stop()
            raise

    async def stop(self) -> None:
        async with asyncio.TaskGroup() as tg:
            for sim in self.receivers:
                tg.create_task(sim.stop())

    async def __aenter__(self) -> ShureFleet:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()
