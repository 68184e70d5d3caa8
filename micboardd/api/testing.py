"""A real daemon with its API on a Unix socket in a temp dir, for the API tests and ``micboardd bench api``.

grpcio-testing has no asyncio support, so everything here runs the real ``grpc.aio`` server of a real
``Daemon`` (store in the temp dir, MQTT off) and talks to it through generated stubs.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
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


async def until(cond: Callable[[], bool], timeout: float = 10.0, what: str = "condition") -> None:
    """Poll ``cond`` every 20 ms until true; TimeoutError naming ``what`` otherwise."""
    try:
        async with asyncio.timeout(timeout):
            while not cond():  # noqa: ASYNC110 - polls state with no event to wait on (hub, sims)
                await asyncio.sleep(0.02)
    except TimeoutError:
        raise TimeoutError(f"timed out after {timeout} s waiting for {what}") from None


@contextlib.asynccontextmanager
async def shure_sims(models: Mapping[str, str], base_host: str, **kwargs: Any) -> AsyncIterator[dict[str, Any]]:
    """Simulated Shure receivers ``{device_id: model}``, each on its own loopback address from ``base_host``."""
    from ..simulators.shure import ShureReceiverSim  # noqa: PLC0415 - tests and benches only

    prefix, _, last = base_host.rpartition(".")
    sims = {
        dev_id: ShureReceiverSim(model, host=f"{prefix}.{int(last) + i}", port=0, seed=i, **kwargs)
        for i, (dev_id, model) in enumerate(models.items())
    }
    try:
        for sim in sims.values():
            await sim.start()
        yield sims
    finally:
        for sim in sims.values():
            with contextlib.suppress(Exception):
                await sim.stop()


def sim_devices(sims: Mapping[str, Any], *, meter_rate_ms: int = 1000) -> list[dict[str, Any]]:
    """Device tables pointing the daemon at running simulators."""
    return [
        {"id": dev_id, "model": sim.model, "host": sim.host, "port": sim.port, "meter_rate_ms": meter_rate_ms}
        for dev_id, sim in sims.items()
    ]


def rpc_details(err: Any) -> list[Any]:
    """The google.rpc details (ErrorInfo, BadRequest, ResourceInfo, PreconditionFailure) of a failed call."""
    from google.rpc import error_details_pb2, status_pb2  # noqa: PLC0415

    out: list[Any] = []
    for key, value in err.trailing_metadata() or ():
        if key != "grpc-status-details-bin":
            continue
        for packed in status_pb2.Status.FromString(value).details:
            for cls in (error_details_pb2.ErrorInfo, error_details_pb2.BadRequest,
                        error_details_pb2.ResourceInfo, error_details_pb2.PreconditionFailure):
                msg = cls()
                if packed.Unpack(msg):
                    out.append(msg)
    return out


def field_violations(err: Any) -> list[str]:
    """The ``field`` of every BadRequest violation of a failed call, in order."""
    return [v.field for d in rpc_details(err) if hasattr(d, "field_violations") for v in d.field_violations]


def error_reason(err: Any) -> str:
    """The ErrorInfo reason of a failed call ("" when it has none)."""
    return next((d.reason for d in rpc_details(err) if hasattr(d, "reason")), "")
