"""gRPC queries, status, health and reflection against a real daemon on a Unix socket in a temp dir."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import grpc
import pytest
from grpc import aio
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from micboardd.api.board import paginate
from micboardd.api.errors import ApiError
from micboardd.api.gen.micboard.v1 import micboard_pb2 as pb
from micboardd.api.gen.micboard.v1 import resources_pb2 as rpb
from micboardd.api.testing import (
    daemon_config,
    fake_board,
    field_violations,
    running_daemon,
    shure_sims,
    sim_devices,
    stub_for,
    until,
)
from micboardd.hub import ChannelUpdate, Put
from micboardd.model import Kind, Slot


async def test_queries_against_simulated_receivers(tmp_path: Path) -> None:
    models = {"rack1": "ULXD4Q", "rack2": "AD4D"}
    async with shure_sims(models, "127.0.61.1") as sims:
        cfg = daemon_config(tmp_path, sim_devices(sims))
        async with running_daemon(cfg) as d, stub_for(d) as stub:
            await until(lambda: len([c for c in d.hub.all(Kind.CHANNEL) if c.name]) == 6, 15, "6 named channels")
            sim_name = sims["rack1"].channel(2).name

            devs = await stub.ListDevices(pb.ListDevicesRequest())
            assert [x.device_id for x in devs.devices] == ["rack1", "rack2"]
            assert devs.revision > 0 and devs.epoch
            assert all(x.online and x.state == rpb.CONNECTION_STATE_ONLINE for x in devs.devices)
            only = await stub.ListDevices(pb.ListDevicesRequest(filter=pb.DeviceFilter(models=["ad4d"])))
            assert [x.device_id for x in only.devices] == ["rack2"]

            got = await stub.GetDevice(pb.GetDeviceRequest(device_id="rack1"))
            assert got.device.model == "ULXD4Q" and len(got.channels) == 4

            chans = await stub.ListChannels(pb.ListChannelsRequest(include_meters=True))
            assert [c.key for c in chans.channels] == [f"rack1/{i}" for i in range(1, 5)] + ["rack2/1", "rack2/2"]
            by_key = {c.key: c for c in chans.channels}
            assert by_key["rack1/2"].name == sim_name
            assert by_key["rack1/2"].context.device_model == "ULXD4Q"
            assert by_key["rack1/2"].context.manufacturer == "shure"

            ch = await stub.GetChannel(pb.GetChannelRequest(channel="rack2/1"))
            assert ch.channel.device_id == "rack2" and ch.revision >= chans.revision

            with pytest.raises(aio.AioRpcError) as e:
                await stub.GetChannel(pb.GetChannelRequest(channel="rack2/9"))
            assert e.value.code() == grpc.StatusCode.NOT_FOUND
            with pytest.raises(aio.AioRpcError) as e:
                await stub.GetChannel(pb.GetChannelRequest(channel="rack2"))
            assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert field_violations(e.value) == ["channel"]

            st = await stub.GetStatus(pb.GetStatusRequest())
            assert st.version == d.version and st.site == "test"
            assert {x.device_id: x.state for x in st.devices} == {
                "rack1": rpb.CONNECTION_STATE_ONLINE, "rack2": rpb.CONNECTION_STATE_ONLINE}
            subsystems = {s.name: s.state for s in st.subsystems}
            assert subsystems["store"] == pb.SUBSYSTEM_STATE_OK
            assert subsystems["mqtt"] == pb.SUBSYSTEM_STATE_DISABLED
            assert st.store.path.endswith("micboardd.db")


async def test_filters_and_pagination(tmp_path: Path) -> None:
    async with running_daemon(daemon_config(tmp_path)) as d, stub_for(d) as stub:
        d.hub.apply(fake_board(25))  # 100 channels; battery bars cycle 1..5
        d.hub.apply([Put(Slot(1, channel="rx002/3", performer="Anna", group="band")),
                     Put(Slot(2, channel="rx010/1", performer="Ben", group="cast"))])

        seen: list[str] = []
        token = ""
        while True:
            page = await stub.ListChannels(pb.ListChannelsRequest(page_size=30, page_token=token))
            assert page.total_size == 100
            seen += [c.key for c in page.channels]
            token = page.next_page_token
            if not token:
                break
        assert len(seen) == 100 and len(set(seen)) == 100

        band = await stub.ListChannels(pb.ListChannelsRequest(filter=pb.ChannelFilter(groups=["band"])))
        assert [c.key for c in band.channels] == ["rx002/3"]
        assert band.channels[0].context.performer == "Anna" and band.channels[0].context.slot == 1

        low = await stub.ListChannels(pb.ListChannelsRequest(filter=pb.ChannelFilter(low_battery=True)))
        assert low.channels and all(c.tx.battery_bars <= 1 or c.tx.runtime_minutes <= 30 for c in low.channels)
        await until(lambda: bool(d.alerts.active()), 5, "low battery alerts")
        alerting = await stub.ListChannels(pb.ListChannelsRequest(filter=pb.ChannelFilter(alerting=True)))
        assert {c.key for c in alerting.channels} == {a.subject for a in d.alerts.active()}

        d.hub.apply([ChannelUpdate("rx003", 1, tx={"present": False})])
        off = await stub.ListChannels(pb.ListChannelsRequest(filter=pb.ChannelFilter(tx_present=False)))
        assert [c.key for c in off.channels] == ["rx003/1"]

        slots = await stub.ListSlots(pb.ListSlotsRequest(filter=pb.SlotFilter(groups=["cast"])))
        assert [s.slot for s in slots.slots] == [2] and slots.slots[0].etag

        with pytest.raises(aio.AioRpcError) as e:
            await stub.ListChannels(pb.ListChannelsRequest(page_token="not-a-token"))
        assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT and field_violations(e.value) == ["page_token"]
        first = await stub.ListChannels(pb.ListChannelsRequest(page_size=10))
        with pytest.raises(aio.AioRpcError) as e:  # a token belongs to the filter it was issued for
            await stub.ListChannels(pb.ListChannelsRequest(page_size=10, page_token=first.next_page_token,
                                                           filter=pb.ChannelFilter(low_battery=True)))
        assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_health_and_reflection(tmp_path: Path) -> None:
    async with running_daemon(daemon_config(tmp_path)) as d:
        async with aio.insecure_channel(f"unix:{d.config.api.socket}") as channel:
            health = health_pb2_grpc.HealthStub(channel)
            for service, want in [("", health_pb2.HealthCheckResponse.SERVING),
                                  ("micboard.v1.Micboard", health_pb2.HealthCheckResponse.SERVING),
                                  ("micboardd.store", health_pb2.HealthCheckResponse.SERVING),
                                  ("micboardd.mqtt", health_pb2.HealthCheckResponse.SERVICE_UNKNOWN)]:
                resp = await health.Check(health_pb2.HealthCheckRequest(service=service))
                assert resp.status == want, service

            # The health service follows the daemon's subsystems.
            watch = health.Watch(health_pb2.HealthCheckRequest(service="micboardd.mqtt"))
            assert (await watch.read()).status == health_pb2.HealthCheckResponse.SERVICE_UNKNOWN
            d.set_subsystem("mqtt", False, "broker down")
            assert (await watch.read()).status == health_pb2.HealthCheckResponse.NOT_SERVING
            d.set_subsystem("mqtt", True, "connected")
            assert (await watch.read()).status == health_pb2.HealthCheckResponse.SERVING
            watch.cancel()

            refl = reflection_pb2_grpc.ServerReflectionStub(channel)
            call = refl.ServerReflectionInfo()
            await call.write(reflection_pb2.ServerReflectionRequest(list_services=""))
            answer = await call.read()
            names = {s.name for s in answer.list_services_response.service}
            assert {"micboard.v1.Micboard", "grpc.health.v1.Health"} <= names
            await call.write(reflection_pb2.ServerReflectionRequest(file_containing_symbol="micboard.v1.Micboard"))
            answer = await call.read()
            assert answer.file_descriptor_response.file_descriptor_proto
            await call.done_writing()

        # Shutdown: NOT_SERVING first, and the socket goes away with the daemon.
        sock = Path(d.config.api.socket)
        assert sock.exists() and (sock.stat().st_mode & 0o777) == 0o660
        assert d.api is not None
        await d.api.health.enter_graceful_shutdown()
        async with aio.insecure_channel(f"unix:{sock}") as channel:
            resp = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest())
            assert resp.status == health_pb2.HealthCheckResponse.NOT_SERVING
    assert not sock.exists()


def test_a_page_token_that_was_edited_or_nested_is_invalid_argument_not_a_crash() -> None:
    items = [("rx1", 1), ("rx1", 2), ("rx2", 1)]
    first = paginate(items, lambda it: it, 1, "", "q1")
    assert first.next_token and paginate(items, lambda it: it, 1, first.next_token, "q1").items == [("rx1", 2)]
    for raw in (
        json.dumps({"after": 5, "q": "q1"}).encode(),  # a position of another shape than the keys
        b"[" * 50_000,  # nested deeper than the stack
    ):
        token = base64.urlsafe_b64encode(raw).decode("ascii")
        with pytest.raises(ApiError) as e:
            paginate(items, lambda it: it, 1, token, "q1")
        assert e.value.code == grpc.StatusCode.INVALID_ARGUMENT
