"""End to end: simulated Shure receivers → the real daemon → Mosquitto → an independent subscriber.

Nothing here calls the bridge directly: the daemon runs as in production (its own store, its own
device sessions), the simulators speak the Shure protocol over TCP, and every assertion is about what
a Home Assistant, Node-RED or Companion subscriber would see on the broker.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest_asyncio
from mosquitto import WAIT_S, Collector, mosquitto, retained_snapshot  # noqa: F401 - mosquitto is a fixture
from test_mqtt_discovery import validate_ha_device_config

from micboardd.config import parse_config
from micboardd.daemon import Daemon
from micboardd.model import Kind
from micboardd.mqtt.bridge import MqttBridge
from micboardd.mqtt.localbroker import LocalMosquitto
from micboardd.simulators.sennheiser_sscv2 import SSCv2Sim
from micboardd.simulators.shure import ShureReceiverSim

MODELS = (("ULXD4Q", "127.0.61.1"), ("AD4D", "127.0.61.2"))
DAEMON_START_S = 30.0  # a cold `python -m micboardd` imports grpc, sqlite and aiomqtt before it says online


@pytest_asyncio.fixture
async def sims() -> AsyncIterator[list[ShureReceiverSim]]:
    started: list[ShureReceiverSim] = []
    try:
        for i, (model, host) in enumerate(MODELS):
            sim = ShureReceiverSim(model, host=host, port=0, seed=11 + i)
            await sim.start()
            started.append(sim)
        yield started
    finally:
        for sim in started:
            await sim.stop()


def daemon_config(tmp_path: Path, broker: LocalMosquitto, sims: list[ShureReceiverSim], **mqtt: Any) -> Any:
    return parse_config({
        "site": "e2e",
        "store": {"path": str(tmp_path / "micboardd.db")},
        "api": {"socket": str(tmp_path / "api.sock")},
        "mqtt": {"host": broker.host, "port": broker.port, **mqtt},
        "devices": [
            {"id": f"rx{i + 1}", "model": sim.model, "host": sim.host, "port": sim.port, "meter_rate_ms": 1000}
            for i, sim in enumerate(sims)
        ],
    })


@contextlib.asynccontextmanager
async def running(config: Any) -> AsyncIterator[Daemon]:
    daemon = Daemon(config, enable_api=False)
    task = asyncio.create_task(daemon.run())
    try:
        async with asyncio.timeout(WAIT_S):
            await daemon.ready.wait()
            while not (daemon.mqtt is not None and daemon.mqtt.connected.is_set()):
                await asyncio.sleep(0.02)
        yield daemon
    finally:
        daemon.request_stop()
        with contextlib.suppress(Exception):
            async with asyncio.timeout(WAIT_S):
                await task
        task.cancel()


async def settled(daemon: Daemon, channels: int) -> None:
    """Every simulated channel known and online, and the bridge caught up with it."""
    assert daemon.mqtt is not None
    async with asyncio.timeout(WAIT_S):
        while not (
            len([c for c in daemon.hub.all(Kind.CHANNEL) if not c.stale]) == channels
            and all(d.online for d in daemon.hub.all(Kind.DEVICE))
            and daemon.mqtt.in_sync()
        ):
            await asyncio.sleep(0.02)


async def test_simulated_receivers_reach_retained_topics_through_outages(
    tmp_path: Path, mosquitto: LocalMosquitto, sims: list[ShureReceiverSim]  # noqa: F811
) -> None:
    total = sum(len(s.channels) for s in sims)
    async with running(daemon_config(tmp_path, mosquitto, sims)) as daemon:
        await settled(daemon, total)
        snap = await retained_snapshot(mosquitto, ["micboard/e2e/#", "homeassistant/#"])
        assert snap["micboard/e2e/status"] == b"online"
        for i, sim in enumerate(sims):
            dev = f"rx{i + 1}"
            assert snap[f"micboard/e2e/devices/{dev}/availability"] == b"online"
            for ch in sim.channels:
                state = json.loads(snap[f"micboard/e2e/channels/{dev}/{ch.index}/state"])
                assert state["name"] == ch.name, "the name the receiver reports, unchanged"
                assert state["tx_state"] in ("on", "off", "muted")
                disc = f"homeassistant/device/micboardd_e2e/ch{ch.index}_{dev}/config"
                assert validate_ha_device_config(disc, snap[disc]) == []
        assert len([t for t in snap if "/channels/" in t and t.endswith("/state")]) == total

        # A transmitter switched off on the (simulated) receiver reaches its retained topic.
        topic = "micboard/e2e/channels/rx1/2/state"
        async with Collector(mosquitto, [topic]) as c:
            sims[0].tx_off(2)
            await c.wait_for(lambda: json.loads(c.last.get(topic, b"{}")).get("tx_state") == "off",
                             what="tx off on MQTT")
            assert json.loads(c.last[topic])["tx"]["battery_bars"] is None

        # The broker dies; a transmitter goes off meanwhile; the broker comes back empty on the same port.
        await mosquitto.kill()
        async with asyncio.timeout(WAIT_S):
            while daemon.subsystems["mqtt"].ok:
                await asyncio.sleep(0.02)
        sims[1].tx_off(1)
        async with asyncio.timeout(WAIT_S):
            while (ch := daemon.hub.channel("rx2", 1)) is None or ch.tx.present is not False:
                await asyncio.sleep(0.02)
        await mosquitto.start()
        await settled(daemon, total)
        after = await retained_snapshot(mosquitto, ["micboard/e2e/#", "homeassistant/#"])
        assert set(after) == set(snap), "every retained topic is back, and nothing else"
        assert json.loads(after["micboard/e2e/channels/rx2/1/state"])["tx_state"] == "off"
        assert json.loads(after["micboard/e2e/channels/rx1/2/state"])["tx_state"] == "off"
        assert after["micboard/e2e/status"] == b"online"


async def test_rename_over_mqtt_is_verified_on_the_receiver(
    tmp_path: Path, mosquitto: LocalMosquitto, sims: list[ShureReceiverSim]  # noqa: F811
) -> None:
    cfg = daemon_config(tmp_path, mosquitto, sims, commands={"enabled": True, "rename": True})
    async with running(cfg) as daemon:
        await settled(daemon, sum(len(s.channels) for s in sims))
        state = "micboard/e2e/channels/rx1/3/state"
        async with Collector(mosquitto, ["micboard/e2e/results", "micboard/e2e/errors", state]) as c:
            await c.publish("micboard/e2e/channels/rx1/3/name/set", "VOX 3")
            await c.wait_for(lambda: "micboard/e2e/results" in c.last)
            result = json.loads(c.last["micboard/e2e/results"])
            assert result["ok"] is True and result["results"][0]["value"] == "VOX 3"
            assert sims[0].channel(3).name == "VOX 3"  # the receiver itself holds the new name
            await c.wait_for(lambda: json.loads(c.last.get(state, b"{}")).get("name") == "VOX 3")
            # Mute is a dangerous class, not enabled here: refused before the receiver hears of it.
            await c.publish("micboard/e2e/channels/rx1/3/muted/set", "ON")
            await c.wait_for(lambda: "micboard/e2e/errors" in c.last)
            assert json.loads(c.last["micboard/e2e/errors"])["error"] == "disabled"
        assert not any("MUTE" in line for line in sims[0].received)
        audit = await daemon.store.audit_log()
        assert [(a.actor, a.action, a.target, a.result) for a in audit if a.actor == "mqtt:mqtt"] == [
            ("mqtt:mqtt", "RenameChannel", "rx1/3", "ok")
        ]


async def test_last_will_fires_when_the_daemon_is_killed(tmp_path: Path, mosquitto: LocalMosquitto) -> None:  # noqa: F811
    cfg = tmp_path / "micboardd.toml"
    cfg.write_text(
        f'site = "lwt"\nlog_level = "WARNING"\n[store]\npath = "{tmp_path}/lwt.db"\n'
        f'[api]\nsocket = "{tmp_path}/api.sock"\n[mqtt]\nhost = "{mosquitto.host}"\nport = {mosquitto.port}\n'
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    env.pop("NOTIFY_SOCKET", None)
    with (tmp_path / "daemon.log").open("wb") as log:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "micboardd", "run", "--config", str(cfg), env=env,
            stdout=asyncio.subprocess.DEVNULL, stderr=log,
        )
    try:
        async with Collector(mosquitto, ["micboard/lwt/status"]) as c:
            await c.wait_for(lambda: c.last.get("micboard/lwt/status") == b"online", timeout=DAEMON_START_S,
                             what="the daemon's online status")
            proc.send_signal(signal.SIGKILL)  # no clean shutdown, no "offline" of its own
            await proc.wait()
            await c.wait_for(lambda: c.last.get("micboard/lwt/status") == b"offline", what="the will")
        snap = await retained_snapshot(mosquitto, ["micboard/lwt/status"])
        assert snap["micboard/lwt/status"] == b"offline", "the will is retained for late subscribers"
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def test_a_second_start_with_an_empty_store_does_not_touch_the_channel_topics(
    tmp_path: Path, mosquitto: LocalMosquitto  # noqa: F811
) -> None:
    """``micboardd demo`` twice: the EW-DX was online before its channels were read, and they were cleared.

    Home Assistant then deleted and re-created those devices, Node-RED saw them removed. Here the
    simulated receiver answers slowly on the second start, so the bridge syncs in that very gap.
    """
    sim = SSCv2Sim(host="127.0.61.3", port=0, model="EW-DX EM4", channels=4, password="pw", seed=5)
    await sim.start()

    def config(run: int) -> Any:
        return parse_config({
            "site": "e2e",
            "store": {"path": str(tmp_path / f"run{run}.db")},  # a new, empty store each time
            "api": {"socket": str(tmp_path / f"api{run}.sock")},
            "mqtt": {"host": mosquitto.host, "port": mosquitto.port},
            "devices": [{"id": "em4", "family": "sscv2", "host": sim.host, "port": sim.port, "password": "pw",
                         "tls_ca_file": str(sim.ca_file)}],
        })

    def channels() -> int:
        return len([c for c in daemon.hub.channels_of("em4") if not c.stale])

    try:
        async with running(config(1)) as first:
            await settled(first, 4)
        before = await retained_snapshot(mosquitto, ["micboard/e2e/#", "homeassistant/#"])
        channel_topics = {t for t in before if "/channels/em4/" in t or "/micboardd_e2e/ch" in t}
        assert len(channel_topics) == 8

        sim.fault.delay_s = 0.5  # every reply: identity, site and then each channel read come slowly
        daemon = Daemon(config(2), enable_api=False, enable_mqtt=False)
        task = asyncio.create_task(daemon.run())
        bridge: MqttBridge | None = None
        async with Collector(mosquitto, ["micboard/e2e/#", "homeassistant/#"]) as watcher:
            await watcher.sync()
            seen = len(watcher.log)
            try:
                async with asyncio.timeout(WAIT_S):
                    while (dev := daemon.hub.device("em4")) is None or not dev.online:
                        await asyncio.sleep(0.01)
                bridge = MqttBridge(daemon)
                bridge_task = asyncio.create_task(bridge.run())
                async with asyncio.timeout(WAIT_S):
                    while not bridge.mirror.online:
                        await asyncio.sleep(0.01)
                assert channels() == 0, "the bridge was meant to sync before the channels were read"
                sim.fault.delay_s = 0.0
                async with asyncio.timeout(WAIT_S):
                    while not (channels() == 4 and bridge.in_sync()):
                        await asyncio.sleep(0.02)
                await watcher.sync()
                fresh = watcher.log[seen:]
                assert not [t for _, t, p, _ in fresh if not p], "a retained topic was cleared"
                # A channel's state builds up as its reads arrive; its Home Assistant device is not touched.
                assert not [t for _, t, _, _ in fresh if t in channel_topics and t.startswith("homeassistant/")]
                assert bridge.stats.stale_cleared == 0
                for t in channel_topics - {t for t in channel_topics if t.startswith("homeassistant/")}:
                    now, then = json.loads(watcher.last[t]), json.loads(before[t])
                    assert (now.pop("stale"), then.pop("stale")) == (False, True), "live now; marked at the last stop"
                    assert now == then, t
            finally:
                if bridge is not None:
                    await bridge.stop()
                    with contextlib.suppress(Exception):
                        async with asyncio.timeout(WAIT_S):
                            await bridge_task
                daemon.request_stop()
                with contextlib.suppress(Exception):
                    async with asyncio.timeout(WAIT_S):
                        await task
                task.cancel()
    finally:
        await sim.stop()
