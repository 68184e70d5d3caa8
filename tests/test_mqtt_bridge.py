"""The MQTT bridge against a real Mosquitto: retained state, outages, discovery lifecycle, meters, alerts.

The host is a real :class:`Daemon` (store open in ``tmp_path``, not running its own sessions); state is
fed through ``daemon.hub.apply`` exactly as adapters feed it, and everything is asserted over an
independent subscriber connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from mosquitto import WAIT_S, Collector, mosquitto, retained_snapshot  # noqa: F401 - mosquitto is a fixture
from test_mqtt_discovery import validate_ha_device_config

from micboardd.config import parse_config
from micboardd.daemon import Daemon
from micboardd.hub import ChannelUpdate, DeviceUpdate, Put, Remove
from micboardd.model import (
    TX_ABSENT,
    Alert,
    AlertState,
    ConnState,
    Kind,
    Manufacturer,
    Meters,
    Severity,
    Slot,
)
from micboardd.mqtt.bridge import MqttBridge
from micboardd.mqtt.localbroker import LocalMosquitto
from micboardd.mqtt.topics import channel_payload, device_payload, encode

Factory = Callable[..., Awaitable[tuple[Daemon, MqttBridge]]]


@pytest_asyncio.fixture
async def make_bridge(mosquitto: LocalMosquitto, tmp_path: Path) -> AsyncIterator[Factory]:  # noqa: F811
    running: list[tuple[Daemon, MqttBridge, asyncio.Task[None]]] = []

    async def make(site: str = "main", *, broker: LocalMosquitto | None = None, start: bool = True,
                   setup: Callable[[Daemon], None] | None = None, devices: tuple[str, ...] = (),
                   **mqtt: Any) -> tuple[Daemon, MqttBridge]:
        """A daemon (store open, ``devices`` configured but no sessions) with its bridge running.

        ``setup`` feeds the hub before the bridge starts. Every daemon gets a store of its own: empty.
        """
        b = broker or mosquitto
        cfg = parse_config({
            "site": site,
            "store": {"path": str(tmp_path / f"{site}-{len(running)}.db")},
            "mqtt": {"host": b.host, "port": b.port, **mqtt},
            "devices": [{"id": d, "model": "ULXD4Q", "host": "127.0.0.1"} for d in devices],
        })
        daemon = Daemon(cfg, enable_api=False, enable_mqtt=False)
        await daemon.store.open()
        bridge = MqttBridge(daemon)
        bridge.backoff_base_s, bridge.backoff_cap_s = 0.05, 0.3
        bridge.ha_birth_delay_s = 0.05
        if setup is not None:
            setup(daemon)
        task = asyncio.create_task(bridge.run())
        running.append((daemon, bridge, task))
        if start:
            async with asyncio.timeout(WAIT_S):
                await bridge.connected.wait()
                while not bridge.mirror.online:
                    await asyncio.sleep(0.01)
        return daemon, bridge

    yield make
    for daemon, bridge, task in reversed(running):
        await bridge.stop()
        with contextlib.suppress(Exception):
            async with asyncio.timeout(WAIT_S):
                await task
        task.cancel()
        await daemon.store.close()


def rack(daemon: Daemon, device_id: str, channels: int, *, model: str = "ULXD4Q") -> None:
    """A receiver as its adapter would report it: online, named channels, transmitters on."""
    daemon.hub.apply([
        DeviceUpdate(device_id, {"manufacturer": Manufacturer.SHURE, "family": "ulxd", "model": model,
                                 "name": device_id.upper(), "firmware": "2.7.6", "state": ConnState.ONLINE,
                                 "channel_count": channels}),
        *[
            ChannelUpdate(device_id, n, {"name": f"{device_id.upper()} {n}", "frequency_khz": 470_000 + 25 * n},
                          {"present": True, "model": "ULXD2", "battery_bars": 4, "runtime_minutes": 300 + n})
            for n in range(1, channels + 1)
        ],
    ])


def expected_retained(daemon: Daemon, bridge: MqttBridge) -> dict[str, bytes]:
    """What the broker must hold for the hub as it is now (state and availability; discovery is checked apart)."""
    t = bridge.topics
    bars, mins = daemon.config.alerts.low_battery_bars, daemon.config.alerts.low_runtime_minutes
    out = {t.status: b"online"}
    for dev in daemon.hub.all(Kind.DEVICE):
        out[t.device_state(dev.device_id)] = encode(device_payload(dev))
        out[t.device_availability(dev.device_id)] = b"online" if dev.online and not dev.stale else b"offline"
    for ch in daemon.hub.all(Kind.CHANNEL):
        out[t.channel_state(ch.device_id, ch.index)] = encode(channel_payload(ch, bars, mins))
    return out


async def wait_synced(bridge: MqttBridge) -> None:
    """Until the bridge has nothing left to send (every desired topic confirmed by the broker)."""
    async with asyncio.timeout(WAIT_S):
        while not bridge.in_sync():
            await asyncio.sleep(0.01)
    # The last publish is confirmed by PUBACK when in_sync turns true; let its stats settle too.
    await asyncio.sleep(0)


# ---------------------------------------------------------------------------------------------- retained state


async def test_retained_state_for_every_channel(make_bridge: Factory, mosquitto: LocalMosquitto) -> None:  # noqa: F811
    daemon, bridge = await make_bridge()
    rack(daemon, "rack1", 4)
    rack(daemon, "rack2", 2, model="ULXD4D")
    await wait_synced(bridge)
    snap = await retained_snapshot(mosquitto, ["micboard/main/#", "homeassistant/#"])
    want = expected_retained(daemon, bridge)
    assert {t: snap.get(t) for t in want} == want
    state = json.loads(snap["micboard/main/channels/rack1/3/state"])
    assert state["name"] == "RACK1 3" and state["frequency_mhz"] == 470.075 and state["tx"]["runtime_minutes"] == 303
    assert state["tx"]["battery_percent"] is None, "unknown stays null, never a number that looks real"
    assert state["tx_state"] == "on" and state["battery_low"] is False
    # One HA device per receiver and per channel, every one acceptable to Home Assistant.
    disc = {t: p for t, p in snap.items() if t.startswith("homeassistant/")}
    assert len(disc) == 2 + 6
    for topic, raw in disc.items():
        assert validate_ha_device_config(topic, raw) == [], topic
    # State topics carry their revision and schema as MQTT v5 user properties.
    async with Collector(mosquitto, ["micboard/main/channels/rack1/1/state"]) as c:
        await c.wait_for(lambda: "micboard/main/channels/rack1/1/state" in c.props)
        props = c.props["micboard/main/channels/rack1/1/state"]
        assert dict(props.UserProperty)["schema"] == "micboardd/1"
        assert int(dict(props.UserProperty)["revision"]) > 0


async def test_only_what_changed_is_published(make_bridge: Factory, mosquitto: LocalMosquitto) -> None:  # noqa: F811
    daemon, bridge = await make_bridge()
    rack(daemon, "rack1", 4)
    await wait_synced(bridge)
    async with Collector(mosquitto, ["micboard/main/#", "homeassistant/#"]) as c:
        await c.sync()
        seen = len(c.log)
        # A burst of battery changes on one channel: coalesced, and only that channel's state moves.
        for bars in (3, 2, 3, 2, 1):
            daemon.hub.apply([ChannelUpdate("rack1", 2, {}, {"battery_bars": bars})])
        await wait_synced(bridge)
        await c.wait_for(lambda: json.loads(c.last["micboard/main/channels/rack1/2/state"])["tx"]["battery_bars"] == 1)
        fresh = [t for _, t, _, _ in c.log[seen:]]
        assert set(fresh) == {"micboard/main/channels/rack1/2/state"}, fresh
        assert len(fresh) <= 5
        # Discovery depends on the name, not the battery: a rename re-publishes that channel's config only.
        seen = len(c.log)
        daemon.hub.apply([ChannelUpdate("rack1", 2, {"name": "VOX"})])
        await wait_synced(bridge)
        await c.wait_for(lambda: any("ch2_rack1" in t for _, t, _, _ in c.log[seen:]))
        assert {t for _, t, _, _ in c.log[seen:]} == {
            "micboard/main/channels/rack1/2/state",
            "homeassistant/device/micboardd_main/ch2_rack1/config",
        }


async def test_transmitter_off_reaches_its_retained_topic(make_bridge: Factory, mosquitto: LocalMosquitto) -> None:  # noqa: F811
    daemon, _bridge = await make_bridge()
    rack(daemon, "rack1", 2)
    async with Collector(mosquitto, ["micboard/main/channels/rack1/2/state"]) as c:
        await c.wait_for(lambda: "micboard/main/channels/rack1/2/state" in c.last)
        daemon.hub.apply([ChannelUpdate("rack1", 2, tx_replace=TX_ABSENT)])
        state = await c.wait_for(
            lambda: (s := json.loads(c.last["micboard/main/channels/rack1/2/state"]))["tx_state"] == "off" and s
        )
        assert state["tx"]["present"] is False and state["tx"]["battery_bars"] is None
        assert c.retained["micboard/main/channels/rack1/2/state"] is False  # a live publish, retained on the broker
    snap = await retained_snapshot(mosquitto, ["micboard/main/channels/rack1/2/state"])
    assert json.loads(snap["micboard/main/channels/rack1/2/state"])["tx_state"] == "off"


async def test_broker_outage_ends_with_every_retained_topic_correct(
    make_bridge: Factory, mosquitto: LocalMosquitto  # noqa: F811
) -> None:
    daemon, bridge = await make_bridge(flat_topics=True)
    rack(daemon, "rack1", 4)
    rack(daemon, "rack2", 2)
    await wait_synced(bridge)
    before = await retained_snapshot(mosquitto, ["#"])
    assert len(before) > 20
    await mosquitto.kill()  # persistence is off: every retained message is gone with it
    async with asyncio.timeout(WAIT_S):
        while bridge.connected.is_set() or daemon.subsystems["mqtt"].ok:
            await asyncio.sleep(0.01)
    assert daemon.subsystems["mqtt"].ok is False and "retrying" in daemon.subsystems["mqtt"].detail
    # Life goes on while the broker is down.
    daemon.hub.apply([ChannelUpdate("rack1", 1, tx_replace=TX_ABSENT)])
    daemon.hub.apply([ChannelUpdate("rack2", 2, {"name": "NEW NAME"})])
    daemon.hub.apply([Remove(Kind.DEVICE, "rack2")])
    rack(daemon, "rack3", 1)
    await mosquitto.start()  # same port
    async with asyncio.timeout(WAIT_S):
        while not (bridge.mirror.online and daemon.subsystems["mqtt"].ok):
            await asyncio.sleep(0.01)
    await wait_synced(bridge)
    after = await retained_snapshot(mosquitto, ["#"])
    want = expected_retained(daemon, bridge)
    assert {t: after.get(t) for t in want} == want
    assert not [t for t in after if "rack2" in t], "a device removed during the outage left retained topics"
    assert json.loads(after["micboard/main/channels/rack1/1/state"])["tx_state"] == "off"
    assert after["micboard/main/channels/rack1/1/tx_state"] == b"off"
    disc = {t for t in after if t.startswith("homeassistant/")}
    assert disc == {
        "homeassistant/device/micboardd_main/rx_rack1/config",
        "homeassistant/device/micboardd_main/rx_rack3/config",
        *{f"homeassistant/device/micboardd_main/ch{n}_rack1/config" for n in range(1, 5)},
        "homeassistant/device/micboardd_main/ch1_rack3/config",
    }
    assert bridge.stats.connects == 2


async def test_broker_absent_at_start_then_up(tmp_path: Path, make_bridge: Factory) -> None:
    later = LocalMosquitto(tmp_path / "later")
    daemon, bridge = await make_bridge(broker=later, start=False)
    rack(daemon, "rack1", 1)
    async with asyncio.timeout(WAIT_S):
        while daemon.subsystems["mqtt"].ok is not False or "retrying" not in daemon.subsystems["mqtt"].detail:
            await asyncio.sleep(0.01)
    assert "MQTT down" in daemon.status_line()
    try:
        await later.start()
        async with asyncio.timeout(WAIT_S):
            await bridge.connected.wait()
        await wait_synced(bridge)
        snap = await retained_snapshot(later, ["micboard/main/#"])
        assert snap["micboard/main/status"] == b"online"
        assert "micboard/main/channels/rack1/1/state" in snap
        assert daemon.subsystems["mqtt"].ok is True and "MQTT connected" in daemon.status_line()
    finally:
        await later.kill()


async def test_stop_says_offline_and_the_status_is_retained(
    make_bridge: Factory, mosquitto: LocalMosquitto  # noqa: F811
) -> None:
    daemon, bridge = await make_bridge()
    assert (await retained_snapshot(mosquitto, ["micboard/main/status"]))["micboard/main/status"] == b"online"
    await bridge.stop()
    assert (await retained_snapshot(mosquitto, ["micboard/main/status"]))["micboard/main/status"] == b"offline"
    assert daemon.subsystems["mqtt"].ok is False


# ---------------------------------------------------------------------------------------------- discovery lifecycle


async def test_stale_configs_are_cleared_and_identical_ones_not_resent(
    make_bridge: Factory, mosquitto: LocalMosquitto  # noqa: F811
) -> None:
    junk = {
        "homeassistant/device/micboardd_main/rx_ghost/config": b'{"dev":{"ids":["x"]}}',
        "homeassistant/device/micboardd_main/ch1_ghost/config": b'{"dev":{"ids":["y"]}}',
        "micboard/main/devices/ghost/state": b"{}",
        "micboard/main/devices/ghost/availability": b"online",
        "micboard/main/channels/ghost/1/state": b"{}",
        "micboard/main/channels/rack1/1/battery_bars": b"3",  # flat topics are off in this config
        "micboard/main/slots/9/state": b"{}",
    }
    keep = {
        "homeassistant/device/micboardd_annex/rx_ghost/config": b'{"dev":{"ids":["z"]}}',  # another site's
        "homeassistant/sensor/someone_else/config": b"{}",
        "micboard/main/somebody/else": b"x",  # not a topic shape of ours: left alone
    }
    # The state the bridge will publish for rack1's device is already there, byte for byte.
    probe = Daemon(parse_config({"site": "main"}), enable_api=False, enable_mqtt=False)
    rack(probe, "rack1", 1)
    device_topic = "micboard/main/devices/rack1/state"
    identical = encode(device_payload(probe.hub.device("rack1")))  # type: ignore[arg-type]
    async with Collector(mosquitto, ["test/none"]) as pub:
        for topic, payload in {**junk, **keep, device_topic: identical}.items():
            await pub.publish(topic, payload, retain=True)
    async with Collector(mosquitto, [device_topic]) as watcher:
        await watcher.wait_for(lambda: device_topic in watcher.last)
        _daemon, bridge = await make_bridge(setup=lambda d: rack(d, "rack1", 1))
        await wait_synced(bridge)
        snap = await retained_snapshot(mosquitto, ["#"])
        assert not set(junk) & set(snap), sorted(set(junk) & set(snap))
        assert {t: snap.get(t) for t in keep} == keep
        assert bridge.stats.stale_cleared == len(junk)
        assert len([t for _, t, _, _ in watcher.log if t == device_topic]) == 1, "identical state was sent again"
        assert bridge.stats.skipped_identical >= 1


async def test_removing_a_device_removes_its_entities(make_bridge: Factory, mosquitto: LocalMosquitto) -> None:  # noqa: F811
    daemon, bridge = await make_bridge(flat_topics=True)
    rack(daemon, "rack1", 2)
    rack(daemon, "rack2", 2)
    await wait_synced(bridge)
    snap = await retained_snapshot(mosquitto, ["#"])
    assert any("rack2" in t for t in snap)
    async with Collector(mosquitto, ["homeassistant/#", "micboard/main/#"]) as c:
        await c.wait_for(lambda: "homeassistant/device/micboardd_main/rx_rack2/config" in c.last)
        order_from = len(c.log)
        daemon.hub.apply([Remove(Kind.DEVICE, "rack2")])
        await wait_synced(bridge)
        await c.wait_for(lambda: not any("rack2" in t for t in c.last))
        cleared = [t for _, t, p, _ in c.log[order_from:] if not p]
        # Discovery is removed before the state topics HA was reading.
        first_state = min(i for i, t in enumerate(cleared) if not t.startswith("homeassistant/"))
        assert all(t.startswith("homeassistant/") for t in cleared[:first_state])
        assert len([t for t in cleared if t.startswith("homeassistant/")]) == 3
    snap = await retained_snapshot(mosquitto, ["#"])
    assert not [t for t in snap if "rack2" in t]
    assert "micboard/main/channels/rack1/1/state" in snap


async def test_dropped_component_is_reduced_before_it_disappears(
    make_bridge: Factory, mosquitto: LocalMosquitto  # noqa: F811
) -> None:
    # A config published by an earlier run with commands on (identify button present).
    daemon, bridge = await make_bridge("main", commands={"enabled": True})
    rack(daemon, "rack1", 1)
    await wait_synced(bridge)
    topic = "homeassistant/device/micboardd_main/ch1_rack1/config"
    assert "identify" in json.loads((await retained_snapshot(mosquitto, [topic]))[topic])["cmps"]
    await bridge.stop()
    async with Collector(mosquitto, [topic]) as c:
        await c.wait_for(lambda: topic in c.last)
        _daemon2, bridge2 = await make_bridge("main", setup=lambda d: rack(d, "rack1", 1))  # commands now off
        await wait_synced(bridge2)
        payloads = await c.wait_for(lambda: (p := [json.loads(x) for _, t, x, _ in c.log if t == topic])[-1:] and
                                    "identify" not in p[-1]["cmps"] and p)
        interim = payloads[-2]["cmps"]["identify"]
        assert interim == {"p": "button"}


async def test_home_assistant_restart_replays_availability_and_state(
    make_bridge: Factory, mosquitto: LocalMosquitto  # noqa: F811
) -> None:
    daemon, bridge = await make_bridge()
    rack(daemon, "rack1", 2)
    await wait_synced(bridge)
    async with Collector(mosquitto, ["micboard/main/#"]) as c:
        await c.wait_for(lambda: "micboard/main/channels/rack1/2/state" in c.last)
        seen = len(c.log)
        await c.publish("homeassistant/status", b"online")
        want = {"micboard/main/status", "micboard/main/devices/rack1/availability", "micboard/main/devices/rack1/state",
                "micboard/main/channels/rack1/1/state", "micboard/main/channels/rack1/2/state"}
        await c.wait_for(lambda: want <= {t for _, t, _, _ in c.log[seen:]}, what="replay after HA birth")
        # Retained HA status (as some setups configure the birth) does not trigger a replay loop.
        seen = len(c.log)
        await c.publish("homeassistant/status", b"offline")
        await asyncio.sleep(0.2)
        assert len(c.log) == seen


async def test_two_sites_on_one_broker_do_not_collide(
    make_bridge: Factory, mosquitto: LocalMosquitto  # noqa: F811
) -> None:
    main, b_main = await make_bridge("main")
    annex, b_annex = await make_bridge("annex")
    rack(main, "rack1", 2)
    rack(annex, "rack1", 2)  # the same device id in both buildings
    await wait_synced(b_main)
    await wait_synced(b_annex)
    assert b_main.client_id != b_annex.client_id
    snap = await retained_snapshot(mosquitto, ["#"])
    main_topics = {t for t in snap if t.startswith("micboard/main/") or "micboardd_main" in t}
    annex_topics = {t for t in snap if t.startswith("micboard/annex/") or "micboardd_annex" in t}
    assert len(main_topics) == len(annex_topics) > 5
    ids_main = {c["uniq_id"] for t in main_topics if t.startswith("homeassistant/")
                for c in json.loads(snap[t])["cmps"].values()}
    ids_annex = {c["uniq_id"] for t in annex_topics if t.startswith("homeassistant/")
                 for c in json.loads(snap[t])["cmps"].values()}
    assert ids_main and not ids_main & ids_annex
    # A restart of one site's bridge (with its stale cleanup) leaves the other site's topics alone.
    await b_main.stop()
    _main2, b_main2 = await make_bridge("main", setup=lambda d: rack(d, "rack1", 2))
    await wait_synced(b_main2)
    snap2 = await retained_snapshot(mosquitto, ["#"])
    assert {t: snap2.get(t) for t in annex_topics} == {t: snap[t] for t in annex_topics}


# ---------------------------------------------------------------------------------------------- meters, alerts, slots


async def test_meters_are_throttled_not_retained_and_expire(
    make_bridge: Factory, mosquitto: LocalMosquitto  # noqa: F811
) -> None:
    daemon, bridge = await make_bridge(meter_deadband_db=3.0)
    rack(daemon, "rack1", 2)
    await wait_synced(bridge)
    moving, steady = "micboard/main/channels/rack1/1/meter", "micboard/main/channels/rack1/2/meter"
    async with Collector(mosquitto, ["micboard/main/channels/+/+/meter"]) as c:
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        i = 0
        while loop.time() - t0 < 2.6:  # 100 ms metering, as a fast Shure METER_RATE
            i += 1
            daemon.hub.put_meters(Meters("rack1", 1, rf_dbm=(-60.0 - 5 * (i % 2), -70.0), audio_peak_dbfs=-20.0 - 10 *
                                         (i % 2), at=loop.time()))
            daemon.hub.put_meters(Meters("rack1", 2, rf_dbm=(-55.0, -58.0), audio_peak_dbfs=-30.0, at=loop.time()))
            await asyncio.sleep(0.1)
        await c.wait_for(lambda: moving in c.last and steady in c.last)
        times = [ts for ts, t, _, _ in c.log if t == moving]
        assert 2 <= len(times) <= 4, f"{len(times)} meter messages in 2.6 s at ≤ 1 Hz"
        assert all(b - a >= 0.9 for a, b in itertools.pairwise(times))
        assert len([1 for _, t, _, _ in c.log if t == steady]) == 1, "inside the deadband: published once"
        assert not any(r for _, _, _, r in c.log)
        assert c.props[moving].MessageExpiryInterval == 5
        m = json.loads(c.last[moving])
        assert m["rf_dbm"][1] == -70.0 and "audio_dbfs" in m
    snap = await retained_snapshot(mosquitto, ["micboard/main/#"])
    assert not [t for t in snap if t.endswith("/meter")]


async def test_alert_events_active_list_and_slot_view(make_bridge: Factory, mosquitto: LocalMosquitto) -> None:  # noqa: F811
    daemon, bridge = await make_bridge()
    rack(daemon, "rack1", 2)
    daemon.hub.apply([Put(Slot(3, "rack1/2", performer="Ana", group="Band"))])
    await wait_synced(bridge)
    async with Collector(mosquitto, ["micboard/main/alerts", "micboard/main/alerts/active",
                                     "micboard/main/slots/#"]) as c:
        await c.wait_for(lambda: "micboard/main/slots/3/state" in c.last)
        slot = json.loads(c.last["micboard/main/slots/3/state"])
        assert (slot["performer"], slot["channel"], slot["channel_name"], slot["alert"]) == ("Ana", "rack1/2",
                                                                                           "RACK1 2", None)
        assert json.loads(c.last["micboard/main/alerts/active"]) == []
        warning = Alert("low_battery:rack1/2", "low_battery", "rack1/2", Severity.WARNING, message="Ana: battery 2/5")
        daemon.hub.apply([Put(warning), ChannelUpdate("rack1", 2, {}, {"battery_bars": 2})])
        await c.wait_for(lambda: json.loads(c.last.get("micboard/main/alerts/active", b"[]")))
        event = json.loads(c.last["micboard/main/alerts"])
        assert event["event"] == "raised" and event["alert"]["alert_id"] == "low_battery:rack1/2"
        assert (event["previous"], event["escalated"]) == (None, False)
        assert c.retained["micboard/main/alerts"] is False
        alert = Alert("low_battery:rack1/2", "low_battery", "rack1/2", Severity.CRITICAL, message="Ana: battery 1/5")
        daemon.hub.apply([Put(alert), ChannelUpdate("rack1", 2, {}, {"battery_bars": 1})])
        await c.wait_for(lambda: json.loads(c.last["micboard/main/alerts"])["event"] == "updated")
        event = json.loads(c.last["micboard/main/alerts"])
        assert event["escalated"] is True and event["previous"] == {"severity": "warning", "state": "active"}
        assert event["alert"]["severity"] == "critical"
        await c.wait_for(lambda: json.loads(c.last["micboard/main/slots/3/state"])["alert"] == "critical")
        assert json.loads(c.last["micboard/main/slots/3/state"])["battery_low"] is True
        daemon.hub.apply([Put(Alert("low_battery:rack1/2", "low_battery", "rack1/2", Severity.CRITICAL,
                                    AlertState.CLEARED, cleared_at=1.0))])
        await c.wait_for(lambda: json.loads(c.last["micboard/main/alerts"])["event"] == "cleared")
        await c.wait_for(lambda: json.loads(c.last["micboard/main/alerts/active"]) == [])
        # Meters summarize into the slot view (a glance, not a meter).
        daemon.hub.put_meters(Meters("rack1", 2, rf_dbm=(-90.0,), audio_peak_dbfs=-70.0))
        await c.wait_for(lambda: (s := json.loads(c.last["micboard/main/slots/3/state"]))["rf"] == "weak" and
                         s["audio"] == "silent")
        daemon.hub.apply([Remove(Kind.SLOT, "3")])
        await c.wait_for(lambda: "micboard/main/slots/3/state" not in c.last)


async def test_an_unsafe_id_is_refused_with_a_log_line_and_nothing_else_suffers(
    make_bridge: Factory, mosquitto: LocalMosquitto, caplog: pytest.LogCaptureFixture  # noqa: F811
) -> None:
    daemon, bridge = await make_bridge()
    daemon.hub.apply([DeviceUpdate("Stage Left/#1", {"state": ConnState.ONLINE}),
                      ChannelUpdate("Stage Left/#1", 1, {"name": "X"})])
    rack(daemon, "rack1", 1)
    await wait_synced(bridge)
    snap = await retained_snapshot(mosquitto, ["#"])
    assert "micboard/main/channels/rack1/1/state" in snap
    assert not [t for t in snap if "Stage" in t or "#" in t]
    assert bridge.stats.refused_ids == 2
    assert "Stage Left/#1: not published on MQTT" in caplog.text


# ---------------------------------------------------------------------------------------------- a restart


def _receiver(device_id: str, model: str, count: int = 0) -> DeviceUpdate:
    """A receiver that has connected but not reported its channels (count 0: not even how many)."""
    return DeviceUpdate(device_id, {"manufacturer": Manufacturer.SHURE, "family": "ulxd", "model": model,
                                    "name": device_id.upper(), "firmware": "2.7.6", "state": ConnState.ONLINE,
                                    "channel_count": count})


def _is_channel_topic(topic: str) -> bool:
    return "/channels/" in topic or "/micboardd_main/ch" in topic


async def test_a_restart_with_an_empty_store_leaves_channel_topics_alone(
    make_bridge: Factory, mosquitto: LocalMosquitto  # noqa: F811
) -> None:
    """A receiver online but with its channels not read yet has not lost them: nothing is cleared or re-sent.

    Clearing them made Home Assistant delete and re-create those devices (and Node-RED see them removed)
    at every start with an empty store, e.g. every ``micboardd demo``.
    """
    daemon1, bridge1 = await make_bridge(devices=("rack3",))
    rack(daemon1, "rack1", 4)
    rack(daemon1, "rack2", 2, model="ULXD4D")
    rack(daemon1, "rack3", 1, model="ULXD4")
    await wait_synced(bridge1)
    await bridge1.stop()
    before = await retained_snapshot(mosquitto, ["#"])
    channel_topics = {t for t in before if _is_channel_topic(t)}
    assert len(channel_topics) == 2 * 7

    def connected_not_read(daemon: Daemon) -> None:
        # rack1 has not even said how many channels it has (SSCv1 before its probe, a Shure model we do not
        # list); rack2 knows its count from the model (Shure, SSCv2) but no channel is read; rack3 is
        # configured and not connected yet.
        daemon.hub.apply([_receiver("rack1", "ULXD4Q"), _receiver("rack2", "ULXD4D", 2)])

    async with Collector(mosquitto, ["#"]) as watcher:
        await watcher.sync()
        seen = len(watcher.log)
        daemon2, bridge2 = await make_bridge(devices=("rack3",), setup=connected_not_read)
        await wait_synced(bridge2)
        assert set(bridge2.mirror.held) == channel_topics
        # The channels arrive after the bridge's sync, exactly as they were.
        rack(daemon2, "rack1", 4)
        rack(daemon2, "rack2", 2, model="ULXD4D")
        await wait_synced(bridge2)
        await watcher.sync()
        fresh = watcher.log[seen:]
        assert not [t for _, t, p, _ in fresh if not p], "a retained topic was cleared"
        assert not [t for _, t, _, _ in fresh if _is_channel_topic(t)], "a channel topic was sent again"
        assert bridge2.stats.stale_cleared == 0
        assert set(bridge2.mirror.held) == {t for t in channel_topics if "rack3" in t}, "rack3 is still unseen"
    after = await retained_snapshot(mosquitto, ["#"])
    assert {t: after.get(t) for t in channel_topics} == {t: before[t] for t in channel_topics}


async def test_channels_a_receiver_no_longer_has_are_cleared_once_it_has_counted(
    make_bridge: Factory, mosquitto: LocalMosquitto  # noqa: F811
) -> None:
    daemon1, bridge1 = await make_bridge()
    rack(daemon1, "rack1", 4)
    rack(daemon1, "rack2", 4)
    rack(daemon1, "rack9", 1)
    await wait_synced(bridge1)
    await bridge1.stop()
    before = await retained_snapshot(mosquitto, ["#"])

    def restarted(daemon: Daemon) -> None:
        # rack2 counts its channels up as it reports them (a Shure model the adapter does not list).
        daemon.hub.apply([_receiver("rack1", "ULXD4Q"), _receiver("rack2", "ULXD4Q", 1), _receiver("rack9", "ULXD4")])
        tx = {"present": True, "model": "ULXD2", "battery_bars": 4, "runtime_minutes": 301}
        daemon.hub.apply([ChannelUpdate("rack2", 1, {"name": "RACK2 1", "frequency_khz": 470_025}, tx)])

    settle = 1.0
    async with Collector(mosquitto, ["#"]) as watcher:
        await watcher.sync()
        seen = len(watcher.log)
        daemon2, bridge2 = await make_bridge(setup=restarted, start=False)
        bridge2.mirror.judge.settle_s = settle  # the bridge task has not run yet
        await wait_synced(bridge2)
        # Counting up within the settle time clears nothing: channels 2-4 of rack2 are on their way.
        rack(daemon2, "rack2", 4)
        # rack1 is now a two-channel receiver, and says so: its channels 3 and 4 go once the count has held.
        rack(daemon2, "rack1", 2, model="ULXD4D")
        await wait_synced(bridge2)
        gone = {t for t in before if _is_channel_topic(t) and ("rack1/3/" in t or "rack1/4/" in t or
                                                                  t.endswith(("ch3_rack1/config", "ch4_rack1/config")))}
        assert len(gone) == 4
        await watcher.wait_for(lambda: not gone & set(watcher.last), what="rack1's channels 3 and 4 cleared")
        cleared = [(ts, t) for ts, t, p, _ in watcher.log[seen:] if not p]
        assert {t for _, t in cleared} == gone, "only what rack1 no longer has"
        assert cleared[0][0] - watcher.log[seen][0] >= settle * 0.9
        assert [t.startswith("homeassistant/") for _, t in cleared] == [True, True, False, False], "discovery first"
        # A device that leaves the hub (and no config names it) takes its held channel topics with it.
        assert set(bridge2.mirror.held.values()) == {"rack9"}
        daemon2.hub.apply([Remove(Kind.DEVICE, "rack9")])
        await watcher.wait_for(lambda: not [t for t in watcher.last if "rack9" in t], what="rack9 cleared")
        assert not bridge2.mirror.held
        assert bridge2.stats.stale_cleared == 4 + 2
    after = await retained_snapshot(mosquitto, ["#"])
    assert {t for t in after if "rack2" in t} == {t for t in before if "rack2" in t}
    assert not gone & set(after)


async def test_devices_behind_a_known_parent_wait_until_it_could_have_listed_them(
    make_bridge: Factory, mosquitto: LocalMosquitto  # noqa: F811
) -> None:
    """Devices behind a System API server are in no config: with an empty store the hub learns them late."""

    def child(daemon: Daemon, device_id: str, parent: str) -> None:
        daemon.hub.apply([DeviceUpdate(device_id, {"parent": parent})])
        rack(daemon, device_id, 1, model="ULXD4")

    daemon1, bridge1 = await make_bridge(devices=("sysapi",))
    daemon1.hub.apply([_receiver("sysapi", "SYSTEM API")])
    child(daemon1, "sysapi-a", "sysapi")
    child(daemon1, "sysapi-b", "sysapi")
    child(daemon1, "orphan", "old-server")  # its server is in no config any more
    await wait_synced(bridge1)
    await bridge1.stop()
    before = await retained_snapshot(mosquitto, ["#"])
    topics_of = {d: {t for t in before if f"/{d}/" in t or t.endswith(f"_{d}/config")}
                 for d in ("sysapi-a", "sysapi-b", "orphan")}
    assert all(len(ts) == 5 for ts in topics_of.values()), topics_of  # state, availability, channel, 2 configs

    settle = 1.0
    async with Collector(mosquitto, ["#"]) as watcher:
        await watcher.sync()
        seen = len(watcher.log)
        daemon2, bridge2 = await make_bridge(devices=("sysapi",), start=False)
        bridge2.mirror.judge.children_settle_s = settle  # the bridge task has not run yet
        await wait_synced(bridge2)
        # The orphan goes at once; the server's devices wait, the server not being online yet.
        await watcher.wait_for(lambda: not topics_of["orphan"] & set(watcher.last), what="orphan cleared")
        assert set(bridge2.mirror.held) == topics_of["sysapi-a"] | topics_of["sysapi-b"]
        # The server comes online and lists device a; device b it no longer has.
        online_at = time.monotonic()  # the collector's clock
        daemon2.hub.apply([_receiver("sysapi", "SYSTEM API")])
        child(daemon2, "sysapi-a", "sysapi")
        await wait_synced(bridge2)
        await watcher.wait_for(lambda: not topics_of["sysapi-b"] & set(watcher.last), what="device b cleared")
        cleared = {t: ts for ts, t, p, _ in watcher.log[seen:] if not p}
        assert set(cleared) == topics_of["orphan"] | topics_of["sysapi-b"]
        assert min(cleared[t] for t in topics_of["sysapi-b"]) - online_at >= settle * 0.9
        assert not bridge2.mirror.held
    after = await retained_snapshot(mosquitto, ["#"])
    assert {t: after.get(t) for t in topics_of["sysapi-a"]} == {t: before[t] for t in topics_of["sysapi-a"]}
