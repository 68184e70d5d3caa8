"""A real daemon with its API on a Unix socket in a temp dir, for the API tests and ``micboardd bench api``.

grpcio-testing has no asyncio support, so everything here runs the real ``grpc.aio`` server of a real
``Daemon`` (store in the temp dir, MQTT off) and talks to it through generated stubs.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Final

from grpc import aio

from ..config import Config, parse_config
from ..daemon import Daemon
from ..hub import ChannelUpdate, DeviceUpdate
from ..model import ConnState, Manufacturer
from .gen.micboard.v1 import micboard_pb2_grpc as pb_grpc

READY_TIMEOUT_S: Final = 15.0  # store open + restore + API bind on a loaded CI machine
STOP_TIMEOUT_S: Final = 20.0  # device sessions close, the store flushes


def daemon_config(tmp: Path, devices: Sequence[Mapping[str, Any]] = (), **extra: Any) -> Config:
    """A config whose store and API socket live in ``tmp`` and whose MQTT bridge is off."""
    api = {"socket": str(tmp / "api.sock"), **extra.pop("api", {})}
    return parse_config(
        {
            "site": "test",
            "store": {"path": str(tmp / "micboardd.db")},
            "api": api,
            "mqtt": {"enabled": False},
            "devices": list(devices),
            **extra,
        },
        base_dir=tmp,
    )


@contextlib.asynccontextmanager
async def running_daemon(cfg: Config) -> AsyncIterator[Daemon]:
    """Run ``Daemon.run()`` as a task until the block ends; yields once it is ready (API listening)."""
    daemon = Daemon(cfg, enable_mqtt=False)
    task = asyncio.create_task(daemon.run(), name="daemon")
    try:
        async with asyncio.timeout(READY_TIMEOUT_S):
            ready = asyncio.ensure_future(daemon.ready.wait())
            done, _ = await asyncio.wait({ready, task}, return_when=asyncio.FIRST_COMPLETED)
            if task in done:
                ready.cancel()
                task.result()  # raises why the daemon could not start
                raise RuntimeError("the daemon stopped before it was ready")
        yield daemon
    finally:
        daemon.request_stop()
        async with asyncio.timeout(STOP_TIMEOUT_S):
            with contextlib.suppress(asyncio.CancelledError):
                await task


@contextlib.asynccontextmanager
async def stub_for(daemon: Daemon) -> AsyncIterator[pb_grpc.MicboardStub]:
    """A client stub on the daemon's Unix socket."""
    async with aio.insecure_channel(f"unix:{daemon.config.api.socket}") as channel:
        yield pb_grpc.MicboardStub(channel)  # type: ignore[no-untyped-call]


def fake_board(devices: int, channels_per_device: int = 4, *, prefix: str = "rx") -> list[Any]:
    """Hub updates for a plausible board (no adapters): devices online, transmitters with batteries."""
    updates: list[Any] = []
    for d in range(devices):
        dev_id = f"{prefix}{d + 1:03d}"
        updates.append(
            DeviceUpdate(dev_id, {"manufacturer": Manufacturer.SHURE, "family": "ulxd", "model": "ULXD4Q",
                                  "host": f"127.0.9.{d % 250 + 1}", "port": 2202, "state": ConnState.ONLINE,
                                  "channel_count": channels_per_device, "name": f"RACK{d + 1}"})
        )
        for c in range(1, channels_per_device + 1):
            n = d * channels_per_device + c
            updates.append(
                ChannelUpdate(dev_id, c, {"name": f"MIC {n}", "frequency_khz": 470_000 + 25 * n, "muted": False},
                              tx={"present": True, "model": "ULXD2", "battery_bars": 1 + n % 5,
                                  "battery_percent": 20 * (1 + n % 5), "runtime_minutes": 60 * (1 + n % 5)})
            )
    return updates
