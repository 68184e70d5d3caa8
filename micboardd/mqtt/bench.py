"""``micboardd bench mqtt``: change-to-publish latency and publish rate with a full site metering.

The daemon runs here with its MQTT bridge on a private Mosquitto. ``receivers - 1`` simulated
ULX-D4Q receivers meter every ``rate`` ms from a child process (``micboardd simulate``), so their
CPU is not the daemon's; one probe receiver runs in this process so the bench knows the instant it
writes a ``REP``. A second child process subscribes to the broker and stamps every message with
the system-wide monotonic clock: latency is REP written → retained state received by a subscriber.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Final

from ..bench import percentile
from ..config import load_config
from ..model import Kind

SIM_START_TIMEOUT_S: Final = 60.0  # 100 simulated receivers bind and start in a few seconds
ONLINE_TIMEOUT_S: Final = 90.0  # every session connects, reads GET ALL, starts metering, and MQTT catches up
WARMUP_S: Final = 3.0  # let the first retained replay and meter burst pass before measuring
SAMPLE_EVERY_S: Final = 0.2  # latency probes per second: a show's worth of changes, not a flood
SAMPLE_TIMEOUT_S: Final = 5.0  # a change not on the broker after this long counts as lost
SUBSCRIBER_READY_S: Final = 30.0  # a cold interpreter imports aiomqtt and connects
PROBE_HOST: Final = "127.0.42.1"
FLEET_BASE_HOST: Final = "127.0.41.1"
SITE: Final = "bench"


async def bench_mqtt(args: argparse.Namespace) -> dict[str, Any]:
    """Latency p50/p99 (REP → subscriber) and messages/s published while every channel meters."""
    from ..daemon import Daemon  # noqa: PLC0415 - the bench pulls in everything
    from ..simulators.shure import ShureReceiverSim  # noqa: PLC0415
    from .localbroker import LocalMosquitto  # noqa: PLC0415

    receivers = max(1, int(getattr(args, "receivers", 100)))
    rate_ms = int(getattr(args, "rate", 100))
    seconds = float(getattr(args, "seconds", 30.0))
    with tempfile.TemporaryDirectory(prefix="micboardd-bench-mqtt-") as tmp_s:
        tmp = Path(tmp_s)
        broker = LocalMosquitto(tmp / "broker")
        await broker.start()
        fleet: asyncio.subprocess.Process | None = None
        sub: asyncio.subprocess.Process | None = None
        probe = ShureReceiverSim("ULXD4Q", host=PROBE_HOST, port=0, seed=7)
        daemon: Daemon | None = None
        task: asyncio.Task[None] | None = None
        try:
            await probe.start()
            for sim_ch in probe.channels:
                if not sim_ch.tx_present:
                    probe.tx_on(sim_ch.index)
            devices_toml = ""
            if receivers > 1:
                cfg_out = tmp / "fleet.toml"
                fleet = await asyncio.create_subprocess_exec(
                    sys.executable, "-m", "micboardd", "--log-level", "WARNING", "simulate", "--family", "shure",
                    "--models", "ULXD4Q", "--count", str(receivers - 1), "--base-host", FLEET_BASE_HOST,
                    "--meter-rate", str(rate_ms), "--config-out", str(cfg_out), "--seconds", str(seconds + 300),
                )
                deadline = time.monotonic() + SIM_START_TIMEOUT_S
                while not cfg_out.exists():
                    if time.monotonic() > deadline or fleet.returncode is not None:
                        raise RuntimeError("the simulator fleet did not start")
                    await asyncio.sleep(0.2)
                devices_toml = cfg_out.read_text(encoding="utf-8")
            full = tmp / "micboardd.toml"
            full.write_text(
                f'site = "{SITE}"\nlog_level = "WARNING"\n[store]\npath = "{tmp}/bench.db"\n'
                f'[api]\nsocket = "{tmp}/api.sock"\n'
                f'[mqtt]\nhost = "{broker.host}"\nport = {broker.port}\n\n'
                f'[[devices]]\nid = "probe"\nmodel = "ULXD4Q"\nhost = "{PROBE_HOST}"\nport = {probe.port}\n'
                f"meter_rate_ms = {rate_ms}\n\n{devices_toml}",
                encoding="utf-8",
            )
            daemon = Daemon(load_config(full), enable_api=False)
            task = asyncio.create_task(daemon.run())
            await asyncio.wait_for(daemon.ready.wait(), 30)
            t0 = time.monotonic()
            while True:
                bridge = daemon.mqtt
                online = sum(1 for d in daemon.hub.all(Kind.DEVICE) if d.online)
                if online == receivers and bridge is not None and bridge.in_sync():
                    break
                if time.monotonic() - t0 > ONLINE_TIMEOUT_S:
                    raise RuntimeError(f"only {online}/{receivers} receivers online after {ONLINE_TIMEOUT_S:.0f} s")
                await asyncio.sleep(0.5)
            connect_s = time.monotonic() - t0
            assert daemon.mqtt is not None
            sub = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "micboardd.mqtt.bench", "subscribe", broker.host, str(broker.port),
                f"micboard/{SITE}/#", f"micboard/{SITE}/channels/probe/",
                stdout=asyncio.subprocess.PIPE,
            )
            assert sub.stdout is not None
            seen: dict[tuple[int, int], float] = {}
            counts: list[tuple[float, int]] = []
            ready, arrived = asyncio.Event(), asyncio.Event()
            reader = asyncio.create_task(_read_subscriber(sub.stdout, seen, counts, ready, arrived))
            await asyncio.wait_for(ready.wait(), SUBSCRIBER_READY_S)
            await asyncio.sleep(WARMUP_S)

            # Where the time goes: REP → hub change (adapter), hub → PUBACK (bridge), PUBACK → subscriber.
            in_hub: dict[tuple[int, int], float] = {}
            acked: dict[tuple[int, int], float] = {}
            watch = asyncio.create_task(_watch_probe(daemon, in_hub))
            lags: list[float] = []
            lagger = asyncio.create_task(_loop_lag(lags))
            daemon.mqtt.on_published = lambda topic, payload: _note_probe(topic, payload, acked)
            stats0 = _stats(daemon)
            pids = {"fleet": fleet.pid if fleet else None, "broker": broker.pid, "subscriber": sub.pid}
            cpu0 = {name: _cpu_s(pid) for name, pid in pids.items()}
            own0 = _own_cpu_s()
            load0 = os.getloadavg()[0]
            w0 = time.monotonic()
            latencies: list[float] = []
            split: dict[str, list[float]] = {"adapter": [], "bridge": [], "broker": []}
            lost = 0
            i = 0
            while time.monotonic() - w0 < seconds:
                i += 1
                ch = 1 + i % len(probe.channels)
                minutes = 1000 + i
                sent = time.monotonic()
                probe.update_channel(ch, runtime_minutes=minutes)
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(SAMPLE_TIMEOUT_S):
                        while (ch, minutes) not in seen:
                            arrived.clear()
                            await arrived.wait()
                got = seen.get((ch, minutes))
                if got is None:
                    lost += 1
                else:
                    latencies.append((got - sent) * 1000)
                    hub_t, ack_t = in_hub.get((ch, minutes)), acked.get((ch, minutes))
                    if hub_t is not None and ack_t is not None:
                        split["adapter"].append((hub_t - sent) * 1000)
                        split["bridge"].append((ack_t - hub_t) * 1000)
                        split["broker"].append((got - ack_t) * 1000)
                await asyncio.sleep(max(0.0, SAMPLE_EVERY_S - (time.monotonic() - sent)))
            wall = time.monotonic() - w0
            stats1 = _stats(daemon)
            cpu = {name: round(100 * (_cpu_s(pid) - cpu0[name]) / wall, 1) for name, pid in pids.items()}
            cpu["daemon"] = round(100 * (_own_cpu_s() - own0) / wall, 1)
            in_window = [c for t, c in counts if w0 <= t <= w0 + wall]
            sub_rate = (in_window[-1] - in_window[0]) / wall if len(in_window) >= 2 else float("nan")
            reader.cancel()
            watch.cancel()
            lagger.cancel()
            daemon.mqtt.on_published = None
            d = {k: stats1[k] - stats0[k] for k in stats0}
            return {
                "bench": "mqtt",
                "receivers": receivers,
                "channels": len(daemon.hub.all(Kind.CHANNEL)),
                "meter_rate_ms": rate_ms,
                "window_s": round(wall, 1),
                "connect_and_sync_s": round(connect_s, 1),
                "latency_samples": len(latencies),
                "latency_lost": lost,
                "latency_ms_p50": round(percentile(latencies, 0.50), 2),
                "latency_ms_p90": round(percentile(latencies, 0.90), 2),
                "latency_ms_p99": round(percentile(latencies, 0.99), 2),
                "latency_ms_max": round(max(latencies), 2) if latencies else None,
                "latency_ms_mean": round(statistics.fmean(latencies), 2) if latencies else None,
                "latency_split_ms_p50": {k: round(percentile(v, 0.5), 2) for k, v in split.items()},
                "latency_split_ms_p99": {k: round(percentile(v, 0.99), 2) for k, v in split.items()},
                # How late a 10 ms timer fires in the daemon's event loop: the floor under every latency tail.
                "loop_lag_ms_p50": round(percentile(lags, 0.5), 2),
                "loop_lag_ms_p99": round(percentile(lags, 0.99), 2),
                "loop_lag_ms_max": round(max(lags), 2) if lags else None,
                "meters_in_per_s": round(d["meters_in"] / wall),
                "published_per_s": round(d["published"] / wall),
                "meters_published_per_s": round(d["meters"] / wall),
                "retained_published_per_s": round(d["retained"] / wall, 1),
                "events_published_per_s": round(d["events"] / wall, 1),
                "published_kib_per_s": round(d["bytes"] / wall / 1024, 1),
                "subscriber_received_per_s": round(sub_rate),
                "mqtt_reconnects": daemon.mqtt.stats.connects - 1,
                # Percent of one core over the window; the daemon figure includes the in-process probe receiver.
                "cpu_percent": cpu,
                "cpus": os.cpu_count(),
                # Other work on the host skews every figure here; these say how busy it was.
                "loadavg_1m": [round(load0, 2), round(os.getloadavg()[0], 2)],
                "python": sys.version.split()[0],
            }
        finally:
            if sub is not None and sub.returncode is None:
                sub.kill()
                await sub.wait()
            if daemon is not None and task is not None:
                daemon.request_stop()
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(task, 30)
            await probe.stop()
            if fleet is not None and fleet.returncode is None:
                fleet.terminate()
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(fleet.wait(), 10)
                if fleet.returncode is None:
                    fleet.kill()
                    await fleet.wait()
            await broker.kill()


async def _loop_lag(lags: list[float]) -> None:
    while True:
        t = time.monotonic()
        await asyncio.sleep(0.01)
        lags.append((time.monotonic() - t - 0.01) * 1000)


async def _watch_probe(daemon: Any, in_hub: dict[tuple[int, int], float]) -> None:
    """When each probe change became a hub change (its own subscriber, so it wakes like the bridge does)."""
    sub = daemon.hub.subscribe("bench-probe", [Kind.CHANNEL])
    try:
        while True:
            for change in await sub.get():
                ch = change.after
                if ch is not None and ch.device_id == "probe" and ch.tx.runtime_minutes is not None:
                    in_hub.setdefault((ch.index, ch.tx.runtime_minutes), time.monotonic())
    finally:
        sub.close()


def _note_probe(topic: str, payload: bytes, acked: dict[tuple[int, int], float]) -> None:
    if "/channels/probe/" in topic and topic.endswith("/state") and payload:
        with contextlib.suppress(ValueError, KeyError, TypeError):
            state = json.loads(payload)
            if state["tx"]["runtime_minutes"] is not None:
                acked.setdefault((state["channel"], state["tx"]["runtime_minutes"]), time.monotonic())


def _cpu_s(pid: int | None) -> float:
    """CPU seconds (user + system) a process has used so far; 0 when it is not there."""
    if pid is None:
        return 0.0
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            fields = f.read().rpartition(")")[2].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _own_cpu_s() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def _stats(daemon: Any) -> dict[str, int]:
    st = daemon.mqtt.stats
    return {
        "published": st.published, "meters": st.meters_published, "retained": st.retained_published,
        "events": st.events_published, "bytes": st.published_bytes, "meters_in": daemon.hub.meters_received,
    }


async def _read_subscriber(
    stream: asyncio.StreamReader, seen: dict[tuple[int, int], float], counts: list[tuple[float, int]],
    ready: asyncio.Event, arrived: asyncio.Event,
) -> None:
    """Parse the subscriber child's lines: ``R``eady, ``S``tate (t, channel, runtime), ``C``ount (t, n)."""
    while line := await stream.readline():
        parts = line.decode().split()
        if not parts:
            continue
        if parts[0] == "R":
            ready.set()
        elif parts[0] == "S" and len(parts) == 4 and parts[3] != "None":
            seen.setdefault((int(parts[2]), int(parts[3])), float(parts[1]))
            arrived.set()
        elif parts[0] == "C" and len(parts) == 3:
            counts.append((float(parts[1]), int(parts[2])))


async def _subscribe(host: str, port: int, flt: str, probe_prefix: str) -> None:
    """Child process: count every message; report probe channel states with their arrival time."""
    import aiomqtt  # noqa: PLC0415

    n = 0
    last_report = 0.0
    async with aiomqtt.Client(host, port, protocol=aiomqtt.ProtocolVersion.V5) as client:
        await client.subscribe(flt, qos=1)
        print("R", flush=True)
        async for msg in client.messages:
            now = time.monotonic()
            n += 1
            topic = msg.topic.value
            if topic.startswith(probe_prefix) and topic.endswith("/state") and isinstance(msg.payload, bytes):
                with contextlib.suppress(ValueError, KeyError, TypeError):
                    state = json.loads(msg.payload)
                    print("S", now, state["channel"], state["tx"]["runtime_minutes"], flush=True)
            if now - last_report >= 0.5:
                last_report = now
                print("C", now, n, flush=True)


if __name__ == "__main__":
    if len(sys.argv) == 6 and sys.argv[1] == "subscribe":
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(_subscribe(sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5]))
    else:
        print("usage: python -m micboardd.mqtt.bench subscribe HOST PORT FILTER PROBE_PREFIX", file=sys.stderr)
        sys.exit(2)
