"""``micboardd bench api``: ListChannels latency at N channels and Watch fan-out under a changing board.

The daemon runs in this process on a synthetic board (hub updates, no adapters, so the figures are
the API's own); the Watch clients run in a child process so their CPU does not slow the daemon's loop.
Latency of a watch event is measured from the hub update to its arrival in the child, using the
channel name as the carrier of a CLOCK_MONOTONIC timestamp (same host, same clock).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Final

from grpc import aio

from ..bench import percentile
from ..hub import ChannelUpdate
from ..model import Meters
from .gen.micboard.v1 import micboard_pb2 as pb
from .gen.micboard.v1 import micboard_pb2_grpc as pb_grpc
from .testing import daemon_config, fake_board, running_daemon, stub_for

LIST_CALLS: Final = 300  # enough calls for a stable p99
TICK_S: Final = 0.1  # every channel changes (and meters) every 100 ms, as a 100 ms METER_RATE would
CHILD_START_TIMEOUT_S: Final = 30.0  # the child imports grpc and opens its streams


async def bench_list(stub: pb_grpc.MicboardStub, calls: int = LIST_CALLS, *, meters: bool = False) -> dict[str, Any]:
    lat: list[float] = []
    size = 0
    for _ in range(calls):
        t0 = time.perf_counter()
        resp = await stub.ListChannels(pb.ListChannelsRequest(include_meters=meters))
        lat.append((time.perf_counter() - t0) * 1000)
        size = len(resp.channels)
    return {"channels_returned": size, "calls": calls, "p50_ms": round(percentile(lat, 0.5), 2),
            "p99_ms": round(percentile(lat, 0.99), 2), "mean_ms": round(statistics.fmean(lat), 2)}


async def _watch_client(socket: str, watchers: int, seconds: float) -> dict[str, Any]:
    """Child side: open ``watchers`` Watch streams, count events and measure latency for ``seconds``."""
    lat: list[float] = []
    events = [0] * watchers
    messages = [0] * watchers
    coalesced = [0] * watchers
    ready = asyncio.Event()
    opened = 0

    async def one(i: int, stub: pb_grpc.MicboardStub) -> None:
        nonlocal opened
        call = stub.Watch(pb.WatchRequest(kinds=[pb.RESOURCE_KIND_CHANNEL]))
        async for msg in call:
            if msg.HasField("snapshot"):
                opened += 1
                if opened == watchers:
                    ready.set()
                continue
            now = time.monotonic_ns()
            messages[i] += 1
            coalesced[i] = msg.changes.coalesced
            for ev in msg.changes.events:
                events[i] += 1
                name = ev.channel.name
                if name.startswith("t") and i % 5 == 0:  # sample a quarter of the watchers for latency
                    lat.append((now - int(name[1:])) / 1e6)

    async with aio.insecure_channel(f"unix:{socket}") as channel:
        stub = pb_grpc.MicboardStub(channel)  # type: ignore[no-untyped-call]
        tasks = [asyncio.create_task(one(i, stub)) for i in range(watchers)]
        await asyncio.wait_for(ready.wait(), CHILD_START_TIMEOUT_S)
        print("READY", flush=True)
        e0 = sum(events)
        lat.clear()
        t0 = time.monotonic()
        await asyncio.sleep(seconds)
        wall = time.monotonic() - t0
        total = sum(events) - e0
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    return {"watchers": watchers, "window_s": round(wall, 1), "events_per_s_all_watchers": round(total / wall),
            "events_per_s_per_watcher": round(total / wall / watchers),
            "latency_p50_ms": round(percentile(lat, 0.5), 1), "latency_p99_ms": round(percentile(lat, 0.99), 1),
            "max_coalesced_per_watcher": max(coalesced)}


async def bench_api(args: argparse.Namespace) -> dict[str, Any]:
    channels = int(getattr(args, "channels", 1000))
    watchers = int(getattr(args, "watchers", 20))
    seconds = float(getattr(args, "seconds", 10.0))
    watch_channels = 400
    out: dict[str, Any] = {"bench": "api", "python": sys.version.split()[0]}
    with tempfile.TemporaryDirectory(prefix="micboardd-bench-api-") as tmp:
        async with running_daemon(daemon_config(Path(tmp))) as d, stub_for(d) as stub:
            d.hub.apply(fake_board(channels // 4))
            await bench_list(stub, 20)  # warm-up
            out["list_channels"] = await bench_list(stub)
            out["list_channels_with_meters"] = await bench_list(stub, meters=True)

        with contextlib.suppress(FileNotFoundError):
            (Path(tmp) / "micboardd.db").unlink()
        async with running_daemon(daemon_config(Path(tmp))) as d:
            d.hub.apply(fake_board(watch_channels // 4))
            child = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "micboardd.api.bench", "--watch-client", d.config.api.socket,
                str(watchers), str(seconds), stdout=asyncio.subprocess.PIPE,
            )
            assert child.stdout is not None
            line = await asyncio.wait_for(child.stdout.readline(), CHILD_START_TIMEOUT_S)
            if line.strip() != b"READY":
                raise RuntimeError(f"watch client did not start: {line!r}")
            keys = [(f"rx{i // 4 + 1:03d}", i % 4 + 1) for i in range(watch_channels)]
            ticks = 0
            t0 = time.monotonic()
            while child.returncode is None and time.monotonic() - t0 < seconds + 5:
                stamp = f"t{time.monotonic_ns()}"
                d.hub.apply([ChannelUpdate(dev, ch, {"name": stamp}) for dev, ch in keys])
                now = time.time()
                for dev, ch in keys:
                    d.hub.put_meters(Meters(dev, ch, rf_dbm=(-60.0, -62.0), audio_peak_dbfs=-20.0, at=now))
                ticks += 1
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(child.wait()), TICK_S)
            stdout, _ = await child.communicate()
            out["watch_fanout"] = {
                "channels_changing": watch_channels, "tick_ms": int(TICK_S * 1000),
                "changes_per_s_applied": round(ticks * watch_channels / (time.monotonic() - t0)),
                **json.loads(stdout.decode().strip().splitlines()[-1]),
            }
    return out


def _child_main(argv: list[str]) -> int:
    socket, watchers, seconds = argv[0], int(argv[1]), float(argv[2])
    print(json.dumps(asyncio.run(_watch_client(socket, watchers, seconds))), flush=True)
    return 0


if __name__ == "__main__":
    if len(sys.argv) >= 2 and sys.argv[1] == "--watch-client":
        raise SystemExit(_child_main(sys.argv[2:]))
    ns = argparse.Namespace(channels=1000, watchers=20, seconds=10.0)
    print(json.dumps(asyncio.run(bench_api(ns)), indent=2))
