"""Shure System API adapter against the simulated server over real loopback TLS, driven by the Supervisor."""

from __future__ import annotations

import functools
import json
import logging
import ssl
from contextlib import AbstractAsyncContextManager
from typing import Any
from urllib.parse import quote, unquote

import httpx
import pytest
from helpers import Supervised, run_supervised, started, wait_until

from micboardd.actions import ActionRunner, Actor, Role
from micboardd.adapters.base import Supervisor
from micboardd.adapters.shure.systemapi import OFFLINE_REASON, UNLISTED_REASON, SystemApiAdapter
from micboardd.commands import (
    CommandErrorReason,
    Identify,
    RenameChannel,
    RenameDevice,
    SetFrequency,
    SetGain,
    SetMute,
)
from micboardd.config import DeviceConfig, Secret
from micboardd.hub import ChannelUpdate, DeviceUpdate, StateHub
from micboardd.model import Channel, ConnState, Device, ErrorKind, Kind, slugify
from micboardd.simulators.shure_systemapi import SimDevice, SimFault, SystemApiSim

SERVER = "sysapi"
FAST = {"refresh_s": 0.3, "silence_s": 2.0, "request_timeout_s": 2.0, "hello_timeout_s": 2.0,
        "ping_timeout_s": 1.0, "identify_s": 0}
OPERATOR = Actor("op", Role.OPERATOR, via="cli")
ADMIN = Actor("admin", Role.ADMIN, via="cli")

pytestmark = pytest.mark.timeout(20)


def config(sim: SystemApiSim, **overrides: Any) -> DeviceConfig:
    options = {**FAST, **overrides.pop("options", {})}
    fields: dict[str, Any] = {
        "id": SERVER, "family": "systemapi", "host": sim.host, "port": sim.port,
        "password": Secret("secret"), "tls_ca_file": sim.ca_file, "options": options,
    }
    fields.update(overrides)
    return DeviceConfig(**fields)


def simulator(**kwargs: Any) -> AbstractAsyncContextManager[SystemApiSim]:
    kwargs.setdefault("activity_s", 0.5)
    return started(SystemApiSim(**kwargs))


def supervised(cfg: DeviceConfig, hub: StateHub | None = None) -> Supervised:
    return run_supervised(cfg, SystemApiAdapter, hub, backoff_base=0.05, backoff_cap=0.3)


def child_id(dev: SimDevice) -> str:
    return f"{SERVER}-{slugify(dev.serial)}"


def device(hub: StateHub, dev_id: str) -> Device:
    d = hub.device(dev_id)
    assert d is not None, f"device {dev_id} missing"
    return d


def chan(hub: StateHub, dev_id: str, n: int) -> Channel:
    c = hub.channel(dev_id, n)
    assert c is not None, f"channel {dev_id}/{n} missing"
    return c


def state_of(hub: StateHub, dev_id: str) -> ConnState | None:
    d = hub.device(dev_id)
    return d.state if d else None


def kind_of(hub: StateHub, dev_id: str) -> ErrorKind | None:
    d = hub.device(dev_id)
    return d.error_kind if d else None


def channels_named(hub: StateHub, dev_id: str, n: int) -> bool:
    return all((c := hub.channel(dev_id, i)) is not None and c.name is not None for i in range(1, n + 1))


def battery_read(hub: StateHub, dev_id: str) -> bool:
    return (c := hub.channel(dev_id, 1)) is not None and c.tx.battery_percent is not None


async def up(hub: StateHub, sim: SystemApiSim) -> None:
    """Every online, controllable device read through (all channels named), subscriptions made."""
    await wait_until(lambda: state_of(hub, SERVER) is ConnState.ONLINE, what="server online")
    for dev in sim.devices:
        if dev.state == "ONLINE" and dev.compatibility != "INCOMPATIBLE_TOO_OLD":
            cid = child_id(dev)
            if dev.channels:
                await wait_until(functools.partial(channels_named, hub, cid, len(dev.channels)),
                                 what=f"channels of {dev.model}")
            if dev.battery is not None:
                await wait_until(functools.partial(battery_read, hub, cid), what=f"battery of {dev.model}")
    await wait_until(lambda: sim.transports and len(sim.transport_subs(sim.transports[0]) or ()) > 1,
                     what="subscriptions")


def runner(sup: Supervisor, hub: StateHub) -> ActionRunner:
    return ActionRunner(hub, None, lambda: {SERVER: sup}, lambda: False)


# ----------------------------------------------------------------------------- inventory


async def test_inventory_becomes_child_devices_with_channels() -> None:
    async with simulator() as sim, supervised(config(sim)) as (_sup, hub):
        await up(hub, sim)
        server = device(hub, SERVER)
        assert (server.state, server.model, server.parent) == (ConnState.ONLINE, "System API", None)
        children = {d.device_id: d for d in hub.all(Kind.DEVICE) if d.parent == SERVER}
        assert set(children) == {child_id(d) for d in sim.devices}

        rx = sim.by_model("ULXD4D")
        got = children[child_id(rx)]
        assert (got.model, got.serial, got.firmware, got.name, got.host, got.channel_count, got.state) == (
            "ULXD4D", rx.serial, "2.7.6.0", "Rack A", rx.address, 2, ConnState.ONLINE)
        for n in (1, 2):
            c = chan(hub, got.device_id, n)
            assert (c.name, c.muted, c.gain_db, c.stale) == (f"CH {n}", False, 6.0, False)
            assert (c.frequency_khz, c.group_channel, c.encryption, c.tx.battery_bars) == (None, None, None, None)

        ad = children[child_id(sim.by_model("AD4Q"))]
        assert ad.channel_count == 4
        assert chan(hub, ad.device_id, 3).muted is None  # no mute capability: unknown, not "unmuted"

        pack = sim.by_model("ULXD6")

        def pack_tx() -> tuple[object, ...]:
            t = chan(hub, child_id(pack), 1).tx
            return (t.present, t.model, t.device_name, t.battery_percent, t.runtime_minutes, t.charging,
                    t.battery_health_percent, t.battery_cycles)

        # battery-level and battery-health are separate reads; the second may still be in flight
        want = (True, "ULXD6", "Lead Vox", 87, 385, False, 96, 42)
        await wait_until(lambda: pack_tx() == want, what="battery level and health of the ULXD6")
        assert chan(hub, child_id(pack), 1).name == "Lead Vox"
        assert pack_tx() == want

        old = children[child_id(sim.by_model("ULXD4"))]
        assert old.state is ConnState.DEGRADED and "INCOMPATIBLE_TOO_OLD" in (old.last_error or "")
        off = children[child_id(sim.by_model("ULXD4Q"))]
        assert (off.state, off.last_error) == (ConnState.OFFLINE, OFFLINE_REASON)

        # every request carried the key; bodyless ones no Content-Type (the server's empty-JSON-body gotcha)
        assert all(r.has_key for r in sim.requests)
        bodyless = [r for r in sim.requests if not r.body]
        assert bodyless and all(r.content_type is None for r in bodyless)
        assert any(r.method == "POST" and "/subscription/" in r.path for r in sim.requests)
        # opaque base64 channel ids travel as one URL-encoded path segment ('=' as %3D) and arrive intact
        padded = next(c.channel_id for c in rx.channels if c.channel_id.endswith("="))
        assert any(quote(padded, safe="") in r.path for r in sim.requests)
        ids = {c.channel_id for d in sim.devices for c in d.channels}
        used = {unquote(r.path.split("/")[6]) for r in sim.requests if "/audio-channels/" in r.path}
        assert used and used <= ids


@pytest.mark.parametrize("shape", ["relay", "array", "items"])
async def test_every_list_shape_and_paging(shape: str) -> None:
    async with simulator(list_shape=shape, page_size=2) as sim, supervised(config(sim)) as (_sup, hub):
        await up(hub, sim)
        children = {d.device_id for d in hub.all(Kind.DEVICE) if d.parent == SERVER}
        assert children == {child_id(d) for d in sim.devices}
        pages = [r for r in sim.requests if r.path == "/api/v1/devices"]
        if shape == "relay":  # five devices, two per page: three requests per full list
            assert any(r.query.startswith("after=") for r in pages)
            first_list = pages[:3]
            assert [bool(r.query) for r in first_list] == [False, True, True]
        else:
            assert not any(r.query for r in pages)


async def test_restored_children_are_reconciled() -> None:
    async with simulator() as sim:
        hub = StateHub()
        kept, gone = child_id(sim.by_model("ULXD4D")), f"{SERVER}-2xx00000000"
        for dev_id in (kept, gone):  # as the store restores them: stale, parent set
            hub.apply([DeviceUpdate(dev_id, {"parent": SERVER, "stale": True, "state": ConnState.OFFLINE}),
                       ChannelUpdate(dev_id, 1, {"name": "old", "stale": True})])
        async with supervised(config(sim), hub) as (_sup, hub):
            await up(hub, sim)
            assert device(hub, kept).stale is False and chan(hub, kept, 1).stale is False
            await wait_until(lambda: hub.device(gone) is None, what="the unlisted restored child removed")
            assert hub.channel(gone, 1) is None


# ----------------------------------------------------------------------------- events


async def test_events_update_names_mute_gain_battery_and_clip() -> None:
    async with simulator() as sim, supervised(config(sim)) as (_sup, hub):
        await up(hub, sim)
        rx, pack = sim.by_model("ULXD4D"), sim.by_model("ULXD6")
        rid, pid = child_id(rx), child_id(pack)
        sim.rename(rx.device_id, "Stage Left")
        sim.rename_channel(rx.device_id, 2, "Vox 2")
        sim.set_mute(rx.device_id, 1, True)
        sim.set_gain(rx.device_id, 2, -3.0)
        sim.set_battery(pack.device_id, percent=40, state="CHARGING", minutes=90)
        sim.set_activity(rx.device_id, 2, "CLIPPING")
        await wait_until(lambda: device(hub, rid).name == "Stage Left", what="device name")
        await wait_until(lambda: chan(hub, rid, 2).name == "Vox 2", what="channel name")
        await wait_until(lambda: chan(hub, rid, 1).muted is True, what="channel mute")
        await wait_until(lambda: chan(hub, rid, 2).gain_db == -3.0, what="channel gain")
        await wait_until(lambda: chan(hub, pid, 1).tx.charging is True, what="charging")
        tx = chan(hub, pid, 1).tx
        assert (tx.battery_percent, tx.runtime_minutes) == (40, None)  # time to FULL is not runtime
        await wait_until(lambda: (m := hub.meters(f"{rid}/2")) is not None and m.clip, what="clip from activity")
        sim.set_battery(pack.device_id, state="DISCHARGING", minutes=200, health=80, cycles=43)
        await wait_until(lambda: chan(hub, pid, 1).tx.runtime_minutes == 200, what="runtime")
        await wait_until(lambda: chan(hub, pid, 1).tx.battery_cycles == 43, what="battery health")
        sim.rename(pack.device_id, "Guest")
        await wait_until(lambda: chan(hub, pid, 1).tx.device_name == "Guest", what="pack name on its channel")
        assert chan(hub, pid, 1).name == "Guest"


async def test_state_changes_added_devices_and_capabilities() -> None:
    async with simulator() as sim, supervised(config(sim)) as (_sup, hub):
        await up(hub, sim)
        q, rx = sim.by_model("ULXD4Q"), sim.by_model("ULXD4D")
        sim.set_state(q.device_id, "ONLINE")
        await wait_until(lambda: state_of(hub, child_id(q)) is ConnState.ONLINE, what="ULXD4Q online")
        await wait_until(lambda: (c := hub.channel(child_id(q), 4)) is not None and c.name == "CH 4",
                         what="ULXD4Q channels read")
        sim.set_state(rx.device_id, "OFFLINE")
        await wait_until(lambda: state_of(hub, child_id(rx)) is ConnState.OFFLINE, what="ULXD4D offline")
        assert device(hub, child_id(rx)).last_error == OFFLINE_REASON
        assert chan(hub, child_id(rx), 1).stale and chan(hub, child_id(rx), 2).stale

        new_id = sim.add_device("AD4D", name="Spare")
        new = sim.device(new_id)
        assert new is not None
        await wait_until(lambda: (c := hub.channel(child_id(new), 2)) is not None and c.name == "CH 2",
                         what="added device read")
        assert device(hub, child_id(new)).parent == SERVER

        # capabilities are not pushed: a change is found by the periodic re-read and re-synced
        sim.set_capabilities(new_id, [*new.caps, "audio-mute"])
        await wait_until(lambda: any(r.path.endswith(f"{new_id}/audio-mute") for r in sim.requests),
                         what="audio-mute read after the capability appeared")


async def test_discovered_devices_wait_for_a_serial() -> None:
    async with simulator() as sim, supervised(config(sim)) as (_sup, hub):
        await up(hub, sim)
        dev_id = sim.add_device("ULXD4D", state="DISCOVERED")
        dev = sim.device(dev_id)
        assert dev is not None
        lists = sum(1 for r in sim.requests if r.path == "/api/v1/devices")
        await wait_until(lambda: sum(1 for r in sim.requests if r.path == "/api/v1/devices") >= lists + 2,
                         what="two more device lists")
        assert hub.device(child_id(dev)) is None
        assert not [d for d in hub.all(Kind.DEVICE) if d.parent == SERVER and dev_id in d.device_id]
        sim.set_state(dev_id, "ONLINE")
        await wait_until(lambda: state_of(hub, child_id(dev)) is ConnState.ONLINE, what="discovered device online")


async def test_removed_device_goes_offline_then_is_removed() -> None:
    async with simulator() as sim, supervised(config(sim)) as (_sup, hub):
        await up(hub, sim)
        ad = sim.by_model("AD4Q")
        sim.remove_device(ad.device_id)
        await wait_until(lambda: (d := hub.device(child_id(ad))) is None or d.last_error == UNLISTED_REASON,
                         what="first miss")
        await wait_until(lambda: hub.device(child_id(ad)) is None, what="child removed")
        assert hub.channel(child_id(ad), 1) is None
        assert state_of(hub, child_id(sim.by_model("ULXD4D"))) is ConnState.ONLINE


async def test_malformed_event_is_logged_and_the_session_survives(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    async with simulator() as sim, supervised(config(sim)) as (sup, hub):
        await up(hub, sim)
        sim.send_garbage('{"envelope": {"eventName": "DEVICE_NAME", ')
        rx = sim.by_model("ULXD4D")
        sim.rename(rx.device_id, "After Garbage")
        await wait_until(lambda: device(hub, child_id(rx)).name == "After Garbage", what="event after garbage")
        sim.set_fault(SimFault.GARBAGE)  # every event cut in half for a while
        sim.rename(rx.device_id, "Lost")
        sim.set_mute(rx.device_id, 1, True)
        await wait_until(lambda: sum("malformed event" in r.getMessage() for r in caplog.records) >= 3,
                         what="more malformed events")
        sim.set_fault(None)
        sim.rename(rx.device_id, "Found")
        await wait_until(lambda: device(hub, child_id(rx)).name == "Found", what="events after the garbage fault")
        assert sup.sessions == 1
        text = " ".join(r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)
        assert "malformed event" in text and f"127.0.0.1:{sim.port}" in text and "DEVICE_NAME" in text
        assert text.startswith(f"{SERVER}:") or f"{SERVER}: malformed" in text


async def test_a_repeated_bad_event_body_warns_once(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    async with simulator() as sim, supervised(config(sim)) as (sup, hub):
        await up(hub, sim)
        rx = sim.by_model("ULXD4D")
        bad = {"envelope": {"eventName": "DEVICE_NAME", "deviceId": rx.device_id}, "body": {"name": 42}}
        for _ in range(20):
            sim.send_garbage(json.dumps(bad))  # well-formed JSON, impossible body
        await wait_until(lambda: sum("DEVICE_NAME event ignored" in r.getMessage() for r in caplog.records) >= 20,
                         what="20 ignored events")
        ignored = [r for r in caplog.records if "DEVICE_NAME event ignored" in r.getMessage()]
        assert [r.levelno for r in ignored].count(logging.WARNING) == 1 and sup.sessions == 1


# ----------------------------------------------------------------------------- connection


async def test_server_down_marks_children_offline_and_stale_then_recovers() -> None:
    async with simulator() as sim, supervised(config(sim)) as (sup, hub):
        await up(hub, sim)
        rid = child_id(sim.by_model("ULXD4D"))
        await sim.stop()
        await wait_until(lambda: state_of(hub, SERVER) is ConnState.OFFLINE, what="server offline")
        await wait_until(lambda: state_of(hub, rid) is ConnState.OFFLINE, what="child offline")
        assert f"{SERVER} is offline" in (device(hub, rid).last_error or "")
        assert chan(hub, rid, 1).stale and chan(hub, rid, 2).stale
        await sim.start()
        await wait_until(lambda: state_of(hub, rid) is ConnState.ONLINE, what="child online again")
        await wait_until(lambda: not chan(hub, rid, 1).stale, what="channel fresh again")
        assert sup.sessions >= 2


async def test_reset_connections_reconnect_with_a_new_transport() -> None:
    async with simulator() as sim, supervised(config(sim)) as (sup, hub):
        await up(hub, sim)
        first = sim.transports[0]
        sim.set_fault(SimFault.RESET)
        await wait_until(lambda: state_of(hub, SERVER) is not ConnState.ONLINE, what="session dropped")
        sim.set_fault(None)
        await wait_until(lambda: sim.transports and sim.transports[0] != first, what="a new transport")
        await up(hub, sim)
        assert sup.sessions >= 2


async def test_silence_is_probed_and_a_hung_server_dropped() -> None:
    async with simulator(activity_s=0) as sim, supervised(config(sim, options={"silence_s": 0.3})) as (sup, hub):
        await up(hub, sim)
        # a quiet but live server: pings are answered, the list re-read, the session kept
        lists = sum(1 for r in sim.requests if r.path == "/api/v1/devices")
        await wait_until(lambda: sum(1 for r in sim.requests if r.path == "/api/v1/devices") >= lists + 3,
                         what="re-reads while quiet")
        assert sup.sessions == 1 and state_of(hub, SERVER) is ConnState.ONLINE
        sim.set_fault(SimFault.SILENT)
        await wait_until(lambda: state_of(hub, SERVER) is ConnState.OFFLINE, what="hung server dropped")
        assert device(hub, SERVER).error_kind is ErrorKind.RETRYABLE
        sim.set_fault(None)
        await wait_until(lambda: state_of(hub, SERVER) is ConnState.ONLINE, what="back after the hang")


async def test_wrong_key_is_an_auth_error_without_the_key(caplog: pytest.LogCaptureFixture) -> None:
    async with simulator(api_key="right-key") as sim, supervised(config(sim, password=Secret("wrong-key"))) as (
        _sup, hub,
    ):
        await wait_until(lambda: kind_of(hub, SERVER) is ErrorKind.AUTH, what="auth error")
        err = device(hub, SERVER).last_error or ""
        assert "refused the API key" in err and "Request Unauthorized." in err and "sharedkey.txt" in err
        assert "wrong-key" not in err and "right-key" not in err
        assert all("wrong-key" not in r.getMessage() for r in caplog.records)
        assert not [d for d in hub.all(Kind.DEVICE) if d.parent == SERVER]


async def test_the_key_is_never_logged_even_at_debug(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)  # the WebSocket library logs every handshake header at DEBUG
    async with simulator(api_key="sekrit-key-42") as sim, supervised(config(sim, password=Secret("sekrit-key-42"))) as (
        _sup, hub,
    ):
        await wait_until(lambda: state_of(hub, SERVER) is ConnState.ONLINE and any("event transport" in r.getMessage()
                                                             for r in caplog.records), what="event socket open")
    assert all("sekrit-key-42" not in r.getMessage() for r in caplog.records)


async def test_a_key_regenerated_mid_session_is_an_auth_error() -> None:
    async with simulator() as sim, supervised(config(sim)) as (_sup, hub):
        await up(hub, sim)
        sim.set_fault(SimFault.WRONG_KEY)  # the service was reinstalled: the shared key changed
        await wait_until(lambda: kind_of(hub, SERVER) is ErrorKind.AUTH, what="auth error at the next re-read")
        rid = child_id(sim.by_model("ULXD4D"))
        assert state_of(hub, rid) is ConnState.OFFLINE
        sim.set_fault(None)
        await wait_until(lambda: state_of(hub, rid) is ConnState.ONLINE, what="back with the right key", timeout=8)


async def test_missing_key_names_the_fix() -> None:
    async with simulator() as sim, supervised(config(sim, password=None)) as (_sup, hub):
        await wait_until(lambda: kind_of(hub, SERVER) is ErrorKind.AUTH, what="auth error")
        assert "set password_file" in (device(hub, SERVER).last_error or "")


async def test_tls_without_ca_and_not_insecure_is_refused() -> None:
    async with simulator() as sim, supervised(config(sim, tls_ca_file=None)) as (_sup, hub):
        await wait_until(lambda: kind_of(hub, SERVER) is ErrorKind.TERMINAL, what="TLS refused")
        assert "tls_ca_file" in (device(hub, SERVER).last_error or "")
        assert not sim.requests  # nothing, not even the key, went over an unverified connection


async def test_tls_insecure_is_explicit_and_warned(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    async with simulator() as sim, supervised(config(sim, tls_ca_file=None, tls_insecure=True)) as (_sup, hub):
        await up(hub, sim)
        warnings = [r for r in caplog.records if "verification is OFF" in r.getMessage()]
        assert len(warnings) == 1


async def test_pinned_leaf_certificate_without_hostname_check() -> None:
    async with simulator() as sim:
        cfg = config(sim, host="localhost", tls_ca_file=sim.cert_file, options={"tls_check_hostname": False})
        async with supervised(cfg) as (_sup, hub):
            await wait_until(lambda: state_of(hub, SERVER) is ConnState.ONLINE, what="online with a pinned leaf")


async def test_bad_options_are_terminal() -> None:
    async with simulator() as sim, supervised(config(sim, options={"refresh_s": -1})) as (_sup, hub):
        await wait_until(lambda: kind_of(hub, SERVER) is ErrorKind.TERMINAL, what="options refused")
        assert "options.refresh_s" in (device(hub, SERVER).last_error or "")
        assert not sim.requests


# ----------------------------------------------------------------------------- commands


async def test_commands_through_the_action_runner_are_verified() -> None:
    async with simulator() as sim, supervised(config(sim)) as (sup, hub):
        await up(hub, sim)
        rx, ad = sim.by_model("ULXD4D"), sim.by_model("AD4Q")
        rid, aid = child_id(rx), child_id(ad)
        actions = runner(sup, hub)

        results = await actions.run(OPERATOR, [(rid, Identify()), (rid, RenameDevice("Stage Right")),
                                               (rid, RenameChannel(2, "Guitar"))])
        assert [r.ok for r in results] == [True, True, True], [r.detail for r in results]
        assert rx.identifying and rx.name == "Stage Right" and rx.channels[1].name == "Guitar"
        assert device(hub, rid).name == "Stage Right" and chan(hub, rid, 2).name == "Guitar"

        results = await actions.run(ADMIN, [(rid, SetMute(1, True)), (rid, SetGain(2, 12.0))], confirm=True)
        assert [r.ok for r in results] == [True, True], [r.detail for r in results]
        assert rx.channels[0].muted is True and rx.channels[1].gain == 12.0
        assert chan(hub, rid, 1).muted is True and chan(hub, rid, 2).gain_db == 12.0
        patches = [r for r in sim.requests if r.method == "PATCH"]
        assert patches and all(r.content_type == "application/json" and r.body for r in patches)

        results = await actions.run(ADMIN, [(rid, SetGain(1, 50.0)), (rid, SetGain(1, 2.5)), (aid, SetMute(1, True)),
                                            (rid, SetFrequency(1, 550_000))], confirm=True)
        assert [r.ok for r in results] == [False] * 4
        assert results[0].error is CommandErrorReason.INVALID and "-18..42" in results[0].detail
        assert results[1].error is CommandErrorReason.INVALID and "steps of 1" in results[1].detail
        assert results[2].error is CommandErrorReason.UNSUPPORTED
        assert results[3].error is CommandErrorReason.UNSUPPORTED
        assert rx.channels[0].gain == 6.0 and ad.channels[0].muted is False  # nothing was sent

        # the server itself has no controls; an offline child refuses
        assert not sup.supports(Identify(), SERVER)
        off = child_id(sim.by_model("ULXD4Q"))
        assert sup.supports(RenameDevice("x"), off)  # it lists the capability…
        results = await actions.run(OPERATOR, [(off, RenameDevice("x"))])
        assert results[0].error is CommandErrorReason.OFFLINE  # …but is not reachable now


async def test_identify_stops_by_itself() -> None:
    # identify_s long enough that the echo check of the start cannot race the automatic stop on a loaded machine
    async with simulator() as sim, supervised(config(sim, options={"identify_s": 1.0})) as (sup, hub):
        await up(hub, sim)
        pack = sim.by_model("ULXD6")
        results = await runner(sup, hub).run(OPERATOR, [(child_id(pack), Identify())])
        assert results[0].ok and results[0].value is True
        await wait_until(lambda: any(r.path.endswith("/identify/stop") for r in sim.requests), what="identify/stop")
        await wait_until(lambda: not pack.identifying, what="identify off")


async def test_device_mute_only_where_it_silences_one_channel() -> None:
    caps = ["audio-channels", "identify", "name", "audio-mute"]
    fleet = [("ULXD4", {"capabilities": caps, "channel_capabilities": ["name", "gain"]}),
             ("ULXD4D", {"capabilities": caps, "channel_capabilities": ["name"]})]
    async with simulator(devices=fleet) as sim, supervised(config(sim)) as (sup, hub):
        await up(hub, sim)
        one, two = sim.by_model("ULXD4"), sim.by_model("ULXD4D")
        results = await runner(sup, hub).run(ADMIN, [(child_id(one), SetMute(1, True)),
                                                     (child_id(two), SetMute(1, True))], confirm=True)
        assert results[0].ok and one.audio_mute is True
        assert chan(hub, child_id(one), 1).muted is True
        assert results[1].error is CommandErrorReason.UNSUPPORTED and two.audio_mute is False
        sim.set_device_mute(two.device_id, True)  # a mute made elsewhere shows on every channel it silences
        await wait_until(lambda: chan(hub, child_id(two), 2).muted is True, what="device mute on channels")


async def test_a_write_the_server_does_not_apply_is_a_mismatch(monkeypatch: pytest.MonkeyPatch) -> None:
    async with simulator() as sim, supervised(config(sim)) as (sup, hub):
        await up(hub, sim)
        rx = sim.by_model("ULXD4D")
        monkeypatch.setattr(sim, "rename_channel", lambda *_a, **_k: None)  # answers 204, keeps the old name
        results = await runner(sup, hub).run(OPERATOR, [(child_id(rx), RenameChannel(1, "Nope"))])
        assert results[0].error is CommandErrorReason.MISMATCH and "CH 1" in results[0].detail
        assert chan(hub, child_id(rx), 1).name == "CH 1"


# ----------------------------------------------------------------------------- the simulator as a peer


async def test_simulator_enforces_the_key_and_the_empty_json_body_gotcha() -> None:
    async with simulator() as sim, httpx.AsyncClient(base_url=f"https://127.0.0.1:{sim.port}/api/v1",
                                                     verify=ssl.create_default_context(cafile=sim.ca_file)) as http:
        r = await http.get("/devices")
        assert r.status_code == 401 and r.json()["title"] == "Request Unauthorized." and r.json()["traceId"]
        key = {"x-api-key": "secret"}
        rx = sim.by_model("ULXD4D")
        json_type = {**key, "Content-Type": "application/json"}
        r = await http.post(f"/devices/{rx.device_id}/identify/start", headers=json_type)
        assert r.status_code == 400 and "Body cannot be empty" in r.json()["detail"]
        assert not rx.identifying
        r = await http.post(f"/devices/{rx.device_id}/identify/start", headers=key)
        assert r.status_code == 204 and rx.identifying
        r = await http.patch(f"/devices/{rx.device_id}/audio-channels/{quote(rx.channels[0].channel_id, safe='')}/gain",
                             json={"gain": 99}, headers=key)
        assert r.status_code == 400 and r.json()["status"] == 400


async def test_a_slow_read_never_undoes_a_newer_event() -> None:
    async with simulator(slow_s=0.4) as sim:
        sim.set_fault(SimFault.SLOW)
        rx = sim.by_model("ULXD4D")
        ch1 = rx.channels[0]
        name_path = f"/api/v1/devices/{rx.device_id}/audio-channels/{quote(ch1.channel_id, safe='')}/name"
        async with supervised(config(sim, options={"request_timeout_s": 3.0})) as (_sup, hub):
            # the GET of the name is answered (old value) but still on its way when the rename is pushed
            await wait_until(lambda: any(r.method == "GET" and unquote(r.path) == unquote(name_path)
                                         for r in sim.requests), what="the name read", timeout=10)
            sim.rename_channel(rx.device_id, 1, "Pushed")
            await wait_until(lambda: (c := hub.channel(child_id(rx), 1)) is not None and c.gain_db is not None,
                             what="the channel's reads applied", timeout=10)
            assert chan(hub, child_id(rx), 1).name == "Pushed"
            sim.set_fault(None)
