"""Measure the store's writer on a real SQLite file: full-site bursts, rows per second, commit latency.

``python -m micboardd.bench_store --channels 400 --seconds 3`` prints the figures as JSON. Nothing here
asserts a threshold: disks differ by orders of magnitude (NVMe vs an SD card), so the numbers are for
people to read, not for a test to judge.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any, Final

from .bench import percentile
from .hub import ChannelUpdate, DeviceUpdate, StateHub
from .store import Store

CHANNELS_PER_DEVICE: Final = 4
COMMIT_WAIT_S: Final = 30.0  # a single burst taking longer than this means the disk is effectively stuck
LAG_PROBE_S: Final = 0.005  # how often the event-loop lag probe wakes


async def _wait_for_batch(store: Store, after: int) -> None:
    async with asyncio.timeout(COMMIT_WAIT_S):
        await store.wait_batches(after + 1)


def _db_bytes(directory: str) -> int:
    return sum(p.stat().st_size for p in Path(directory).glob("bench.db*"))


class _LagProbe:
    """How late the event loop wakes a sleeper while only the store works (the bench's own hub.apply excluded)."""

    def __init__(self) -> None:
        self.generation = 0  # bumped by the bench around its own loop-blocking work
        self.lags: list[float] = []

    async def run(self) -> None:
        while True:
            gen = self.generation
            start = time.perf_counter()
            await asyncio.sleep(LAG_PROBE_S)
            if gen == self.generation:
                self.lags.append(time.perf_counter() - start - LAG_PROBE_S)


async def bench_store(n_channels: int, seconds: float, *, directory: str | None = None) -> dict[str, Any]:
    """Drive ``n_channels`` channels through hub → store in back-to-back full bursts for ``seconds``.

    ``burst_commit_latency_ms`` runs from the end of ``hub.apply`` (every channel changed) to that batch's
    COMMIT; ``transaction_ms_p50`` is the time the write lock is held; ``rows_per_s`` counts channel and
    history rows committed while bursting.
    """
    if n_channels < 1 or seconds <= 0:
        raise ValueError("bench_store: n_channels must be ≥ 1 and seconds > 0")
    with tempfile.TemporaryDirectory(prefix="micboardd-bench-", dir=directory) as tmp:
        path = Path(tmp) / "bench.db"
        store = Store(path)
        await store.open()
        hub = StateHub(history_size=max(1000, n_channels * 4))
        n_devices = math.ceil(n_channels / CHANNELS_PER_DEVICE)
        channels = [(f"rx{i // CHANNELS_PER_DEVICE:04d}", i % CHANNELS_PER_DEVICE + 1) for i in range(n_channels)]
        writer = asyncio.create_task(store.run(hub), name="bench-store-writer")
        lag = _LagProbe()
        probe = asyncio.create_task(lag.run(), name="bench-lag-probe")
        try:
            await store.flush()  # the writer is up and its start-up prune is done
            before = store.batches_committed
            hub.apply([DeviceUpdate(f"rx{d:04d}", {"state": "online", "model": "ULXD4Q"}) for d in range(n_devices)])
            hub.apply(
                [
                    ChannelUpdate(dev, idx, {"name": f"Chan {dev}/{idx}"}, tx={"present": True, "battery_bars": 5})
                    for dev, idx in channels
                ]
            )
            await _wait_for_batch(store, before)
            rows_before = store.rows_written
            latencies: list[float] = []
            applies: list[float] = []
            tx_durations: list[float] = []
            started = time.perf_counter()
            burst = 0
            while time.perf_counter() - started < seconds:
                burst += 1
                before = store.batches_committed
                lag.generation += 1
                t_apply = time.perf_counter()
                hub.apply(
                    [
                        ChannelUpdate(
                            dev,
                            idx,
                            {"gain_db": float(burst % 30)},
                            tx={"runtime_minutes": 600 - burst, "battery_bars": 5 - (burst // 50) % 5},
                        )
                        for dev, idx in channels
                    ]
                )
                t0 = time.perf_counter()
                applies.append(t0 - t_apply)
                await _wait_for_batch(store, before)
                latencies.append(time.perf_counter() - t0)
                tx_durations.append(store.last_commit_duration_s)
            elapsed = time.perf_counter() - started
            rows = store.rows_written - rows_before
            size = await asyncio.to_thread(_db_bytes, tmp)
        finally:
            probe.cancel()
            writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await probe
            with contextlib.suppress(asyncio.CancelledError):
                await writer
            await store.close()
    return {
        "n_channels": n_channels,
        "seconds": round(elapsed, 3),
        "bursts": burst,
        "rows_written": rows,
        "rows_per_s": round(rows / elapsed, 1),
        "burst_commit_latency_ms": {
            "first": round(latencies[0] * 1000, 2),
            "p50": round(statistics.median(latencies) * 1000, 2),
            "p95": round(percentile(latencies, 0.95) * 1000, 2),
            "max": round(max(latencies) * 1000, 2),
        },
        "transaction_ms_p50": round(statistics.median(tx_durations) * 1000, 2),
        "hub_apply_ms_p50": round(statistics.median(applies) * 1000, 2),
        "event_loop_lag_ms": {
            "p50": round(statistics.median(lag.lags) * 1000, 2) if lag.lags else None,
            "max": round(max(lag.lags) * 1000, 2) if lag.lags else None,
        },
        "db_bytes": size,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Measure micboardd's SQLite writer")
    parser.add_argument("--channels", type=int, default=400)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--dir", default=None, help="directory for the throwaway database (default: system temp)")
    args = parser.parse_args(argv)
    print(json.dumps(asyncio.run(bench_store(args.channels, args.seconds, directory=args.dir)), indent=2))


if __name__ == "__main__":
    main()
