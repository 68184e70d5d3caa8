"""``micboardd demo`` and ``micboardd simulate``: simulated receivers of every family, no setup needed.

The demo runs the real daemon (store, gRPC, MQTT when a broker answers) against in-process simulators,
each on its own loopback address, so a newcomer sees channels change within seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ipaddress
import logging
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from .config import parse_config
from .model import Kind

log = logging.getLogger("micboardd.demo")

# One of each 2202 family the adapters speak; UHF-R and PSM1000 show the framing variants.
DEMO_SHURE_MODELS: Final = ("ULXD4Q", "QLXD4", "SLXD4D", "AD4Q", "AD4D", "P10T", "UR4D")
ALL_FAMILIES: Final = ("shure", "sscv2", "sscv1", "mcp", "systemapi")
PROBE_TIMEOUT_S: Final = 0.5  # a broker on loopback answers at once or is not there


def nth_address(base: str, n: int) -> str:
    """The n-th loopback address after ``base`` (127.0.20.1, .2 … carrying into the next octet)."""
    addr = ipaddress.IPv4Address(base) + n
    if addr not in ipaddress.IPv4Network("127.0.0.0/8"):
        raise ValueError(f"{addr} is outside 127.0.0.0/8; use a lower --base-host")
    return str(addr)


@dataclass
class SimSet:
    """Running simulators and the device tables that point the daemon at them."""

    sims: list[Any] = field(default_factory=list)
    devices: list[dict[str, Any]] = field(default_factory=list)

    async def stop(self) -> None:
        for sim in reversed(self.sims):
            with contextlib.suppress(Exception):
                await sim.stop()


async def start_simulators(
    *,
    families: Sequence[str] = ALL_FAMILIES,
    shure_models: Sequence[str] = DEMO_SHURE_MODELS,
    base_host: str = "127.0.20.1",
    lively: bool = True,
    meter_rate_ms: int = 1000,
    seed: int = 1,
) -> SimSet:
    """Start simulators on consecutive loopback addresses; a family that fails is logged and skipped."""
    out = SimSet()
    n = 0
    if "shure" in families:
        from .simulators.shure import ShureReceiverSim  # noqa: PLC0415 - simulators are demo/test only

        for i, model in enumerate(shure_models):
            host = nth_address(base_host, n)
            n += 1
            sim = ShureReceiverSim(model, host=host, port=2202, seed=seed + i, lively=lively)
            try:
                await sim.start()
            except OSError as exc:
                log.warning("%s simulator on %s:2202 failed (%s); trying a free port", model, host, exc)
                sim = ShureReceiverSim(model, host=host, port=0, seed=seed + i, lively=lively)
                await sim.start()
            out.sims.append(sim)
            dev_id = f"{model.lower().replace('+', 'p')}-{i + 1}"
            out.devices.append(
                {"id": dev_id, "model": model, "host": host, "port": sim.port, "meter_rate_ms": meter_rate_ms}
            )
    if "sscv2" in families:
        try:
            from .simulators.sennheiser_sscv2 import SSCv2Sim  # noqa: PLC0415

            host = nth_address(base_host, n)
            n += 1
            ssc2 = SSCv2Sim(host=host, port=0, model="EW-DX EM4", channels=4, password="demo", seed=seed,
                            lively=lively)
            await ssc2.start()
            out.sims.append(ssc2)
            out.devices.append(
                {"id": "ewdx-em4-1", "family": "sscv2", "host": host, "port": ssc2.port, "password": "demo",
                 "tls_ca_file": str(ssc2.ca_file)}
            )
        except Exception:
            log.exception("SSCv2 simulator unavailable; the demo runs without it")
    if "sscv1" in families:
        try:
            from .simulators.sennheiser_sscv1 import SSCv1Sim  # noqa: PLC0415

            host = nth_address(base_host, n)
            n += 1
            ssc1 = SSCv1Sim(host=host, port=0, variant="ewdx", channels=2, seed=seed, lively=lively)
            await ssc1.start()
            out.sims.append(ssc1)
            out.devices.append({"id": "ewdx-em2-v1", "family": "sscv1", "host": host, "port": ssc1.port})
        except Exception:
            log.exception("SSCv1 simulator unavailable; the demo runs without it")
    if "mcp" in families:
        try:
            from .simulators.sennheiser_mcp import McpSim  # noqa: PLC0415

            host = nth_address(base_host, n)
            n += 1
            mcp = McpSim(host=host, port=0, model="EM 300-500 G4", seed=seed, lively=lively, reply_port=53212)
            await mcp.start()
            out.sims.append(mcp)
            out.devices.append(
                {"id": "ew-g4-1", "family": "mcp", "model": "EM 300-500 G4", "host": host, "port": mcp.port,
                 "local_port": 53212}
            )
        except Exception:
            log.exception("MCP (G3/G4) simulator unavailable; the demo runs without it")
    if "systemapi" in families:
        try:
            from .simulators.shure_systemapi import SystemApiSim  # noqa: PLC0415

            host = nth_address(base_host, n)
            n += 1
            sysapi = SystemApiSim(host=host, port=0, api_key="demo", seed=seed, lively=lively)
            await sysapi.start()
            out.sims.append(sysapi)
            out.devices.append(
                {"id": "shure-sysapi-1", "family": "systemapi", "host": host, "port": sysapi.port,
                 "password": "demo", "tls_ca_file": str(sysapi.ca_file)}
            )
        except Exception:
            log.exception("Shure System API simulator unavailable; the demo runs without it")
    return out


async def broker_reachable(hostport: str) -> tuple[str, int] | None:
    host, _, port_s = hostport.rpartition(":")
    try:
        port = int(port_s)
        async with asyncio.timeout(PROBE_TIMEOUT_S):
            _, writer = await asyncio.open_connection(host or "127.0.0.1", port)
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()
    except (OSError, TimeoutError, ValueError):
        return None
    return host or "127.0.0.1", port


def board_lines(daemon: Any) -> list[str]:
    """The first channel of every receiver, as a board would show it, for the demo's log."""
    lines = []
    seen: set[str] = set()
    for ch in daemon.hub.all(Kind.CHANNEL):
        if ch.device_id in seen:
            continue
        seen.add(ch.device_id)
        dev = daemon.hub.device(ch.device_id)
        tx = ch.tx
        if tx.present:
            bars = "?" if tx.battery_bars is None else f"{tx.battery_bars}/5"
            mins = "" if tx.runtime_minutes is None else f" {tx.runtime_minutes // 60}h{tx.runtime_minutes % 60:02d}"
            txt = f"{tx.model or 'TX'} {bars}{mins}"
        else:
            txt = "TX off" if tx.present is False else "TX ?"
        m = daemon.hub.meters(ch.key)
        rf = f"{m.rf_best_dbm:.0f} dBm" if m and m.rf_best_dbm is not None else "- dBm"
        level = None if m is None else (m.audio_rms_dbfs if m.audio_rms_dbfs is not None else m.audio_peak_dbfs)
        au = f"{level:.0f} dBFS" if level is not None else "- dBFS"
        freq = f"{ch.frequency_khz / 1000:.3f} MHz" if ch.frequency_khz else "-"
        model = (dev.model if dev else None) or ""
        lines.append(
            f"  {model[:12]:<12} {ch.key:<16} {(ch.name or '')[:18]:<18} {freq:>11}  {txt:<20} {rf:>9} {au:>10}"
        )
    return lines


async def run_demo(args: argparse.Namespace) -> None:
    from .daemon import Daemon  # noqa: PLC0415

    workdir = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="micboardd-demo-"))
    workdir.mkdir(parents=True, exist_ok=True)
    sims = await start_simulators(lively=True, meter_rate_ms=args.meter_rate)
    broker = None if args.no_mqtt else await broker_reachable(args.mqtt)
    mqtt: dict[str, Any] = {"enabled": broker is not None}
    if broker:
        mqtt.update(host=broker[0], port=broker[1])
    cfg = parse_config(
        {
            "site": "demo",
            "store": {"path": str(workdir / "micboardd.db")},
            "api": {"socket": str(workdir / "api.sock")},
            "mqtt": mqtt,
            "devices": sims.devices,
        },
        source="demo",
    )
    daemon = Daemon(cfg)
    task = asyncio.create_task(daemon.run())
    try:
        await asyncio.wait_for(daemon.ready.wait(), 30)
        log.info("demo: %d simulated receivers of every family, store %s", len(sims.sims), cfg.store_path)
        log.info("demo: try   micboardctl --socket %s channels   (or: watch)", cfg.api.socket)
        if broker:
            log.info("demo: MQTT on %s:%d — try   mosquitto_sub -v -t 'micboard/demo/#'", *broker)
        else:
            log.info("demo: no MQTT broker on %s; start mosquitto there to see retained topics", args.mqtt)
        deadline = time.monotonic() + args.seconds if args.seconds else None
        while not task.done():
            wait = args.summary_every
            if deadline is not None:
                wait = min(wait, max(0.0, deadline - time.monotonic()))
            await asyncio.wait({task}, timeout=wait)
            if task.done():
                break
            log.info("demo: %d channels; %s", len(daemon.hub.all(Kind.CHANNEL)), daemon.status_line())
            for line in board_lines(daemon):
                log.info("%s", line)
            if deadline is not None and time.monotonic() >= deadline:
                break
    finally:
        daemon.request_stop()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(task, 15)
        await sims.stop()


async def run_simulators(args: argparse.Namespace) -> None:
    families = ALL_FAMILIES if args.family == "all" else tuple(args.family.split(","))
    models = [m.strip() for m in args.models.split(",") if m.strip()] or list(DEMO_SHURE_MODELS)
    if args.count:
        models = [models[i % len(models)] for i in range(args.count)]
    sims = await start_simulators(
        families=families, shure_models=models, base_host=args.base_host, lively=args.lively,
        meter_rate_ms=args.meter_rate,
    )
    log.info("%d simulators running", len(sims.sims))
    for dev in sims.devices:
        log.info("  %s %s:%s", dev["id"], dev["host"], dev["port"])
    if args.config_out:
        await asyncio.to_thread(Path(args.config_out).write_text, devices_toml(sims.devices), encoding="utf-8")
        log.info("config for these simulators written to %s", args.config_out)
    try:
        if args.seconds:
            await asyncio.sleep(args.seconds)
        else:
            await asyncio.Event().wait()
    finally:
        await sims.stop()


def devices_toml(devices: Sequence[dict[str, Any]]) -> str:
    """``[[devices]]`` tables for the given device dicts (strings, ints and bools only)."""
    out = []
    for dev in devices:
        out.append("[[devices]]")
        for k, v in dev.items():
            if isinstance(v, bool):
                out.append(f"{k} = {'true' if v else 'false'}")
            elif isinstance(v, int):
                out.append(f"{k} = {v}")
            else:
                out.append(f'{k} = "{v}"')
        out.append("")
    return "\n".join(out)
