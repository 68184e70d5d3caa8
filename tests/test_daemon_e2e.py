"""The whole data path on real sockets: simulated Shure receivers → adapters → hub → SQLite.

Drives the real Daemon (in-process for state assertions, and ``micboardd run`` as a subprocess for
readiness, watchdog and kill -9) against the protocol simulators over loopback.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import sqlite3
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from micboardd.config import Config, parse_config
from micboardd.daemon import Daemon
from micboardd.model import ConnState, Kind
from micboardd.simulators.shure import ShureReceiverSim

# One receiver of each 2202 family the issue names; each on its own loopback address.
FAMILY_MODELS = {"ulxd": "ULXD4D", "qlxd": "QLXD4", "slxd": "SLXD4D", "axient": "AD4Q"}


async def until(cond: Callable[[], bool], timeout: float = 10.0, what: str = "condition") -> None:
    async with asyncio.timeout(timeout):
        while not cond():
            await asyncio.sleep(0.05)
    assert cond(), what


def config_for(tmp: Path, sims: dict[str, ShureReceiverSim], *, meter_rate_ms: int = 200, **extra: Any) -> Config:
    devices = [
        {"id": fam, "model": sim.model, "host": sim.host, "port": sim.port, "meter_rate_ms": meter_rate_ms}
        for fam, sim in sims.items()
    ]
    return parse_config(
        {
            "site": "e2e",
            "store": {"path": str(tmp / "m.db")},
            "api": {"socket": str(tmp / "api.sock")},
            "mqtt": {"enabled": False},
            "devices": devices,
            **extra,
        }
    )


@contextlib.asynccontextmanager
async def running_sims(base: int) -> AsyncIterator[dict[str, ShureReceiverSim]]:
    sims = {
        fam: ShureReceiverSim(model, host=f"127.0.{base}.{i + 1}", port=0, seed=i, fragment=True)
        for i, (fam, model) in enumerate(FAMILY_MODELS.items())
    }
    for sim in sims.values():
        await sim.start()
    try:
        yield sims
    finally:
        for sim in sims.values():
            with contextlib.suppress(Exception):
                await sim.stop()


@contextlib.asynccontextmanager
async def running_daemon(cfg: Config) -> AsyncIterator[Daemon]:
    daemon = Daemon(cfg, enable_mqtt=False)
    task = asyncio.create_task(daemon.run())
    try:
        await asyncio.wait_for(daemon.ready.wait(), 15)
        yield daemon
    finally:
        daemon.request_stop()
        await asyncio.wait_for(task, 20)


def all_online(daemon: Daemon, n: int) -> bool:
    devs = daemon.hub.all(Kind.DEVICE)
    return len(devs) == n and all(d.state is ConnState.ONLINE for d in devs)


async def test_every_family_end_to_end(tmp_path: Path) -> None:
    async with running_sims(51) as sims, running_daemon(config_for(tmp_path, sims)) as daemon:
        await until(lambda: all_online(daemon, len(sims)), 15, "all receivers online")
        hub = daemon.hub

        def mismatches() -> list[str]:
            """Every difference between the hub and the receivers' own state (dumps arrive in pieces)."""
            out = []
            for fam, sim in sims.items():
                dev = hub.device(fam)
                if dev is None or dev.family != fam or dev.channel_count != len(sim.channels):
                    out.append(f"{fam}: device {dev}")
                for sc in sim.channels:
                    ch = hub.channel(fam, sc.index)
                    if ch is None:
                        out.append(f"{fam}/{sc.index}: missing")
                        continue
                    want: dict[str, Any] = {"name": sc.name.strip(), "frequency_khz": sc.frequency_khz}
                    got: dict[str, Any] = {"name": ch.name, "frequency_khz": ch.frequency_khz}
                    if sc.tx_present:
                        want |= {"present": True, "model": sc.tx_model, "bars": sc.battery_bars,
                                 "percent": sc.battery_percent, "minutes": sc.runtime_minutes}
                    else:
                        want |= {"present": False, "model": None, "bars": None, "percent": None, "minutes": None}
                    got |= {"present": ch.tx.present, "model": ch.tx.model, "bars": ch.tx.battery_bars,
                            "percent": ch.tx.battery_percent, "minutes": ch.tx.runtime_minutes}
                    if want != got:
                        out.append(f"{fam}/{sc.index}: want {want} got {got}")
            return out

        try:
            await until(lambda: not mismatches(), 10, "hub matches every receiver")
        except TimeoutError:
            pytest.fail("\n".join(mismatches()))
        # At least one family reports battery percent and one does not (SLX-D has none): both paths ran.
        percents = {fam: hub.channel(fam, 1).tx.battery_percent for fam in sims}  # type: ignore[union-attr]
        assert percents["slxd"] is None and percents["ulxd"] is not None

        # Meters arrive in normalized units and in the receivers' documented ranges.
        def metered() -> bool:
            return all(hub.meters(f"{fam}/1") is not None for fam in sims)

        await until(metered, 10, "meters from every family")
        for fam in sims:
            m = hub.meters(f"{fam}/1")
            assert m is not None
            if sims[fam].channel(1).tx_present:
                assert m.rf_best_dbm is not None and -130 <= m.rf_best_dbm <= 0, (fam, m)
                level = m.audio_rms_dbfs if m.audio_rms_dbfs is not None else m.audio_peak_dbfs
                assert level is not None and -130 <= level <= 0, (fam, m)

        # Transmitter switched off at the receiver → unknowns, not numbers that look real.
        for sim in sims.values():
            sim.tx_off(1)

        def tx_gone() -> bool:
            return all((c := hub.channel(fam, 1)) is not None and c.tx.present is False for fam in sims)

        await until(tx_gone, 10, "transmitters reported off")
        for fam in sims:
            tx = hub.channel(fam, 1).tx  # type: ignore[union-attr]
            assert (tx.battery_bars, tx.battery_percent, tx.runtime_minutes, tx.model) == (None,) * 4
        for sim in sims.values():
            sim.tx_on(1)
        await until(lambda: all(hub.channel(f, 1).tx.present for f in sims), 10, "transmitters back")  # type: ignore[union-attr]

        # Unreachable receiver → offline (channels stale) → online again when it returns.
        ulx = sims["ulxd"]
        await ulx.stop()
        await until(lambda: hub.device("ulxd").state is ConnState.OFFLINE, 20, "offline")  # type: ignore[union-attr]
        assert all(c.stale for c in hub.channels_of("ulxd"))
        assert hub.device("qlxd").state is ConnState.ONLINE  # type: ignore[union-attr]  # others untouched
        await ulx.start()
        await until(lambda: hub.device("ulxd").state is ConnState.ONLINE, 30, "back online")  # type: ignore[union-attr]
        await until(lambda: not any(c.stale for c in hub.channels_of("ulxd")), 10, "fresh again")


async def test_clean_metering_stop_on_shutdown(tmp_path: Path) -> None:
    async with running_sims(52) as sims:
        async with running_daemon(config_for(tmp_path, sims)) as daemon:
            await until(lambda: all_online(daemon, len(sims)), 15, "online")
        for fam, sim in sims.items():
            stops = [c for c in sim.received if "METER_RATE" in c and c.rstrip("> ").split()[-1].lstrip("0") == ""]
            assert stops, f"{fam}: no METER_RATE 0 before disconnect; received {sim.received[-5:]}"


def _notify_socket(tmp: Path) -> tuple[socket.socket, str]:
    path = str(tmp / "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.setblocking(False)
    return sock, path


async def _read_notify(sock: socket.socket, want: str, timeout: float) -> list[str]:
    loop = asyncio.get_running_loop()
    seen: list[str] = []
    async with asyncio.timeout(timeout):
        while not any(want in m for m in seen):
            data = await loop.sock_recv(sock, 4096)
            seen.append(data.decode())
    return seen


def _write_config(tmp: Path, sims: dict[str, ShureReceiverSim]) -> Path:
    lines = [
        'site = "e2e"', "[store]", f'path = "{tmp}/m.db"', "[api]", f'socket = "{tmp}/api.sock"',
        "[mqtt]", "enabled = false", "",
    ]
    for fam, sim in sims.items():
        lines += [
            "[[devices]]", f'id = "{fam}"', f'model = "{sim.model}"', f'host = "{sim.host}"', f"port = {sim.port}",
            "meter_rate_ms = 200", "",
        ]
    path = tmp / "micboardd.toml"
    path.write_text("\n".join(lines))
    return path


async def test_subprocess_ready_watchdog_and_kill_9_restore(tmp_path: Path) -> None:
    """READY=1 and WATCHDOG=1 over a real notify socket; SIGKILL mid-run loses nothing."""
    async with running_sims(53) as sims:
        cfg_path = _write_config(tmp_path, sims)
        sock, npath = _notify_socket(tmp_path)
        env = {**os.environ, "NOTIFY_SOCKET": npath, "WATCHDOG_USEC": "2000000"}
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "micboardd", "run", "--config", str(cfg_path), env=env,
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
        )
        try:
            seen = await _read_notify(sock, "READY=1", 20)
            seen += await _read_notify(sock, "WATCHDOG=1", 5)
            # STATUS= refreshes every few seconds; wait for every receiver to be reported online.
            seen += await _read_notify(sock, f"{len(sims)}/{len(sims)} devices online", 20)
            assert any(m.startswith("READY=1") and "STATUS=" in m for m in seen)
            # Audited runtime changes over the API, each committed before its call returned.
            from micboard_client import Client

            async with Client(socket=str(tmp_path / "api.sock")) as mb:
                await mb.assign(7, "ulxd/1", performer="Kim")
                await mb.set_show_lock(True)
                renamed = await mb.rename({"qlxd/1": "HH09"})
                assert all(r.ok for r in renamed.results), renamed
            # The echoed name is device state: the store writer commits it with its next batch, not before
            # the call returns. Wait for that batch, or the kill below races the writer.
            db = sqlite3.connect(tmp_path / "m.db", timeout=5)
            try:
                async with asyncio.timeout(10):
                    while '"HH09"' not in (db.execute("select data from channels where key = 'qlxd/1'").fetchone()
                                           or ("",))[0]:
                        await asyncio.sleep(0.05)
                rows_before = db.execute("select count(*) from channels").fetchone()[0]
            finally:
                db.close()
            assert rows_before == sum(len(s.channels) for s in sims.values())
            proc.send_signal(signal.SIGKILL)
            await asyncio.wait_for(proc.wait(), 10)
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
            sock.close()

        # Devices gone while the daemon is down: the restored state is there, and marked stale.
        for sim in sims.values():
            await sim.stop()
        cfg = config_for(tmp_path, sims)
        async with running_daemon(cfg) as daemon:
            chans = daemon.hub.all(Kind.CHANNEL)
            assert len(chans) == rows_before
            assert all(c.stale for c in chans)
            names = {c.key: c.name for c in chans}
            assert names["ulxd/1"] == sims["ulxd"].channel(1).name.strip()
            assert names["qlxd/1"] == "HH09"  # the echoed rename was stored
            slot = daemon.hub.get(Kind.SLOT, "7")
            assert slot is not None and slot.channel == "ulxd/1" and slot.performer == "Kim"
            assert daemon.show_lock is True
            audit = {(e.action, e.target) for e in await daemon.store.audit_log(limit=50)}
            assert {("SetShowLock", "site"), ("RenameChannel", "qlxd/1")} <= audit, audit
            assert any(a == "UpdateSlot" or "Slot" in a for a, _ in audit), audit
            for sim in sims.values():
                await sim.start()  # same address and port
            await until(lambda: all_online(daemon, len(sims)), 30, "reconnected after restore")
            await until(lambda: not any(c.stale for c in daemon.hub.all(Kind.CHANNEL)), 10, "refreshed")


async def test_sighup_reload_keeps_unchanged_sessions(tmp_path: Path) -> None:
    async with running_sims(54) as sims:
        cfg_path = _write_config(tmp_path, {k: sims[k] for k in ("ulxd", "qlxd")})
        from micboardd.config import load_config

        daemon = Daemon(load_config(cfg_path), config_path=str(cfg_path), enable_mqtt=False)
        task = asyncio.create_task(daemon.run())
        try:
            await asyncio.wait_for(daemon.ready.wait(), 15)
            await until(lambda: all_online(daemon, 2), 15, "online")
            kept = daemon.supervisors["ulxd"]
            sessions = kept.sessions
            _write_config(tmp_path, {k: sims[k] for k in ("ulxd", "slxd")})
            assert await daemon.reload()
            await until(lambda: all_online(daemon, 2), 15, "new device online")
            assert daemon.supervisors["ulxd"] is kept and kept.sessions == sessions
            assert daemon.hub.device("qlxd") is None and "slxd" in daemon.supervisors
            # A broken file is refused and the running config stays.
            cfg_path.write_text("[[devices]]\nfamily = 'nope'\n")
            assert not await daemon.reload()
            assert set(daemon.supervisors) == {"ulxd", "slxd"}
        finally:
            daemon.request_stop()
            await asyncio.wait_for(task, 20)


@pytest.mark.parametrize("fault", ["GARBAGE", "SILENT"])
async def test_one_bad_device_never_stops_another(tmp_path: Path, fault: str) -> None:
    from micboardd.simulators.shure import FaultMode

    async with running_sims(55 if fault == "GARBAGE" else 56) as sims:
        cfg = config_for(tmp_path, sims, meter_rate_ms=200)
        async with running_daemon(cfg) as daemon:
            await until(lambda: all_online(daemon, len(sims)), 15, "online")
            sims["slxd"].fault = FaultMode[fault]
            before = daemon.hub.meters_received
            await asyncio.sleep(2.0)
            assert daemon.hub.meters_received > before + 20  # the others keep metering
            for fam in ("ulxd", "qlxd", "axient"):
                assert daemon.hub.device(fam).state is ConnState.ONLINE  # type: ignore[union-attr]
            sims["slxd"].fault = FaultMode.NONE
            await until(lambda: all_online(daemon, len(sims)), 40, "faulty device recovered")


async def test_devices_removed_from_config_do_not_linger(tmp_path: Path) -> None:
    async with running_sims(57) as sims:
        cfg = config_for(tmp_path, sims)
        async with running_daemon(cfg) as daemon:
            await until(lambda: all_online(daemon, len(sims)), 15, "online")
        fewer = config_for(tmp_path, {"ulxd": sims["ulxd"]})
        async with running_daemon(fewer) as daemon:
            assert [d.device_id for d in daemon.hub.all(Kind.DEVICE)] == ["ulxd"]
            assert {c.device_id for c in daemon.hub.all(Kind.CHANNEL)} == {"ulxd"}
            await daemon.store.flush()
        db = sqlite3.connect(tmp_path / "m.db")
        assert [r[0] for r in db.execute("select device_id from devices")] == ["ulxd"]
        db.close()


async def test_meters_reach_sqlite_only_as_per_window_summaries(tmp_path: Path) -> None:
    async with running_sims(58) as sims:
        daemon = Daemon(config_for(tmp_path, {"axient": sims["axient"]}, meter_rate_ms=100), enable_mqtt=False)
        daemon.meter_summary_every_s = 1.0
        task = asyncio.create_task(daemon.run())
        try:
            await asyncio.wait_for(daemon.ready.wait(), 15)
            await until(lambda: daemon.hub.meters_received > 40, 15, "metering")

            async def summaries() -> list[dict[str, Any]]:
                await daemon.store.flush()
                return await daemon.store.channel_history("axient/1", kinds=("meters",))

            async with asyncio.timeout(15):
                rows = await summaries()
                while not rows:
                    await asyncio.sleep(0.3)
                    rows = await summaries()
            row = rows[-1]
            # ~10 SAMPLEs a second for a one-second window: one row, not ten.
            assert 3 <= row["samples"] <= 30, row
            assert row["rf_dbm_min"] <= row["rf_dbm_max"] <= 0
            assert row["link_quality_min"] is not None and row["clips"] >= 0
        finally:
            daemon.request_stop()
            await asyncio.wait_for(task, 20)
