"""``micboardd bench``: speed and memory figures against simulators, never timed unit tests.

``ingest`` runs the simulators in a child process (so their CPU is not counted) and the real daemon
in this one, then reports the daemon's CPU share, RSS and how many SAMPLEs per second it took in.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import os
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Final

from .config import load_config
from .model import Kind

SIM_START_TIMEOUT_S: Final = 60.0  # 100 simulated receivers bind and start in a few seconds
ONLINE_TIMEOUT_S: Final = 60.0  # every session connects, reads GET ALL and starts metering


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (the smallest value with at least ``q`` of them at or below it); NaN when empty.

    One definition for every bench, so a p99 from the store, MQTT and API benches means the same thing.
    """
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def rss_kib() -> tuple[int, int]:
    """Current and peak resident set size of this process, in KiB."""
    cur = peak = 0
    with open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                cur = int(line.split()[1])
            elif line.startswith("VmHWM:"):
                peak = int(line.split()[1])
    return cur, peak


def cpu_seconds() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


async def bench_ingest(receivers: int, rate_ms: int, seconds: float, model: str = "ULXD4Q") -> dict[str, Any]:
    """Daemon CPU/RSS with ``receivers`` simulated receivers metering every ``rate_ms`` for ``seconds``."""
    from .daemon import Daemon  # noqa: PLC0415 - the bench pulls in everything

    with tempfile.TemporaryDirectory(prefix="micboardd-bench-") as tmp:
        cfg_path = Path(tmp) / "devices.toml"
        sim = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "micboardd", "--log-level", "WARNING", "simulate", "--family", "shure",
            "--models", model, "--count", str(receivers), "--base-host", "127.0.40.1",
            "--meter-rate", str(rate_ms), "--config-out", str(cfg_path), "--seconds", str(seconds + 120),
        )
        daemon: Daemon | None = None
        task: asyncio.Task[None] | None = None
        try:
            deadline = time.monotonic() + SIM_START_TIMEOUT_S
            while not cfg_path.exists():
                if time.monotonic() > deadline or sim.returncode is not None:
                    raise RuntimeError("simulators did not start")
                await asyncio.sleep(0.2)
            body = cfg_path.read_text()
            full = Path(tmp) / "micboardd.toml"
            full.write_text(
                f'site = "bench"\nlog_level = "WARNING"\n[store]\npath = "{tmp}/bench.db"\n'
                f'[api]\nsocket = "{tmp}/api.sock"\n[mqtt]\nenabled = false\n\n{body}'
            )
            cfg = load_config(full)
            daemon = Daemon(cfg)
            task = asyncio.create_task(daemon.run())
            await asyncio.wait_for(daemon.ready.wait(), 30)
            t0 = time.monotonic()
            while time.monotonic() - t0 < ONLINE_TIMEOUT_S:
                online = sum(1 for d in daemon.hub.all(Kind.DEVICE) if d.online)
                if online == receivers and daemon.hub.meters_received > receivers * 4:
                    break
                await asyncio.sleep(0.5)
            connect_s = time.monotonic() - t0
            rss0, _ = rss_kib()
            cpu0, m0, u0, w0 = cpu_seconds(), daemon.hub.meters_received, daemon.hub.updates_applied, time.monotonic()
            samples: list[int] = []
            while time.monotonic() - w0 < seconds:
                await asyncio.sleep(1.0)
                samples.append(rss_kib()[0])
            wall = time.monotonic() - w0
            cpu = cpu_seconds() - cpu0
            meters = daemon.hub.meters_received - m0
            rss, peak = rss_kib()
            chans = daemon.hub.all(Kind.CHANNEL)
            return {
                "bench": "ingest",
                "receivers": receivers,
                "channels": len(chans),
                "meter_rate_ms": rate_ms,
                "window_s": round(wall, 1),
                "devices_online": sum(1 for d in daemon.hub.all(Kind.DEVICE) if d.online),
                "connect_all_s": round(connect_s, 1),
                "samples_per_s": round(meters / wall),
                "expected_samples_per_s": round(len(chans) * 1000 / rate_ms),
                "other_updates_per_s": round((daemon.hub.updates_applied - u0) / wall),
                "daemon_cpu_percent_of_one_core": round(100 * cpu / wall, 1),
                "rss_mib_start": round(rss0 / 1024, 1),
                "rss_mib_end": round(rss / 1024, 1),
                "rss_mib_max_sampled": round(max(samples or [rss]) / 1024, 1),
                "peak_rss_mib": round(peak / 1024, 1),
                "store_batches": daemon.store.batches_committed,
                "python": sys.version.split()[0],
                "cpus": os.cpu_count(),
            }
        finally:
            if daemon is not None and task is not None:
                daemon.request_stop()
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(task, 30)
            if sim.returncode is None:
                sim.terminate()
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(sim.wait(), 10)
            if sim.returncode is None:
                sim.kill()


async def run_bench(args: argparse.Namespace) -> dict[str, Any]:
    if args.what == "ingest":
        return await bench_ingest(args.receivers, args.rate, args.seconds)
    if args.what == "store":
        from .bench_store import bench_store  # noqa: PLC0415

        return await bench_store(args.channels, args.seconds)
    if args.what == "api":
        from .api.bench import bench_api  # noqa: PLC0415

        return await bench_api(args)
    if args.what == "mqtt":
        from .mqtt.bench import bench_mqtt  # noqa: PLC0415

        return await bench_mqtt(args)
    raise ValueError(f"unknown bench {args.what!r}")
