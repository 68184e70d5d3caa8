"""Config RPCs: field masks, etags, validation details, audit, and persistence across a daemon restart."""

from __future__ import annotations

import asyncio
from pathlib import Path

import grpc
import pytest
from google.protobuf import field_mask_pb2
from grpc import aio

from micboardd.actions import Actor, Role
from micboardd.api.gen.micboard.v1 import micboard_pb2 as pb
from micboardd.api.gen.micboard.v1 import resources_pb2 as rpb
from micboardd.api.testing import (
    daemon_config,
    error_reason,
    fake_board,
    field_violations,
    running_daemon,
    stub_for,
    until,
)
from micboardd.config import parse_device
from micboardd.daemon import Daemon
from micboardd.hub import ChannelUpdate
from micboardd.model import Kind


def mask(*paths: str) -> field_mask_pb2.FieldMask:
    return field_mask_pb2.FieldMask(paths=list(paths))


FILE_DEVICE = {"id": "rack1", "model": "ULXD4Q", "host": "127.0.62.1", "port": 1, "enabled": False}


async def test_slots_masks_etags_and_audit(tmp_path: Path) -> None:
    async with running_daemon(daemon_config(tmp_path, [FILE_DEVICE])) as d, stub_for(d) as stub:
        d.hub.apply(fake_board(2))
        with pytest.raises(aio.AioRpcError) as e:
            await stub.UpdateSlot(pb.UpdateSlotRequest(slot=rpb.Slot(slot=5, channel="rx001/1")))
        assert e.value.code() == grpc.StatusCode.NOT_FOUND

        created = await stub.UpdateSlot(pb.UpdateSlotRequest(
            slot=rpb.Slot(slot=5, channel="rx001/1", performer="Anna", group="band"), allow_missing=True))
        assert (created.slot, created.channel, created.performer, created.group) == (5, "rx001/1", "Anna", "band")
        assert d.hub.get(Kind.SLOT, "5").performer == "Anna"  # visible only after the store committed it

        # update_mask: only the performer changes; the channel in the message is ignored.
        renamed = await stub.UpdateSlot(pb.UpdateSlotRequest(
            slot=rpb.Slot(slot=5, channel="rx002/4", performer="Anna B", etag=created.etag),
            update_mask=mask("performer")))
        assert renamed.channel == "rx001/1" and renamed.performer == "Anna B" and renamed.etag != created.etag

        with pytest.raises(aio.AioRpcError) as e:  # stale etag
            await stub.UpdateSlot(pb.UpdateSlotRequest(slot=rpb.Slot(slot=5, performer="X", etag=created.etag),
                                                       update_mask=mask("performer")))
        assert e.value.code() == grpc.StatusCode.ABORTED

        # A masked field left unset clears it.
        cleared = await stub.UpdateSlot(pb.UpdateSlotRequest(slot=rpb.Slot(slot=5), update_mask=mask("group")))
        assert not cleared.HasField("group")

        with pytest.raises(aio.AioRpcError) as e:
            await stub.UpdateSlot(pb.UpdateSlotRequest(
                slot=rpb.Slot(slot=5, channel="nosuch/1", performer="\x07bell",
                              alerts=rpb.SlotAlerts(low_battery_bars=9)),
                update_mask=mask("channel", "performer", "alerts.low_battery_bars")))
        assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert set(field_violations(e.value)) == {"slot.channel", "slot.performer", "slot.alerts.low_battery_bars"}
        with pytest.raises(aio.AioRpcError) as e:
            await stub.UpdateSlot(pb.UpdateSlotRequest(slot=rpb.Slot(slot=5), update_mask=mask("etag")))
        assert field_violations(e.value) == ["update_mask.paths[0]"]
        with pytest.raises(aio.AioRpcError) as e:
            await stub.UpdateSlot(pb.UpdateSlotRequest(slot=rpb.Slot(slot=0, channel="rx001/1")))
        assert field_violations(e.value) == ["slot.slot"]

        log = await stub.ListAuditLog(pb.ListAuditLogRequest(target="slot:5"))
        assert [x.action for x in log.entries] == ["UpdateSlot"] * 3
        newest = log.entries[0]
        assert newest.actor == "grpc:local" and newest.before["group"] == "band"
        assert newest.after["group"] is None and newest.after["performer"] == "Anna B"

        with pytest.raises(aio.AioRpcError) as e:
            await stub.DeleteSlot(pb.DeleteSlotRequest(slot=5, etag="0000"))
        assert e.value.code() == grpc.StatusCode.ABORTED
        await stub.DeleteSlot(pb.DeleteSlotRequest(slot=5, etag=cleared.etag))
        assert d.hub.get(Kind.SLOT, "5") is None


async def test_devices_groups_show_lock_persist_across_restart(tmp_path: Path) -> None:
    cfg = daemon_config(tmp_path, [FILE_DEVICE])
    async with running_daemon(cfg) as d, stub_for(d) as stub:
        d.hub.apply(fake_board(1))
        # Bad input: every problem comes back as a field violation named like the request field.
        with pytest.raises(aio.AioRpcError) as e:
            await stub.AddDevice(pb.AddDeviceRequest(device=rpb.DeviceConfig(id="Bad Id", family="nope")))
        assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "device.family" in field_violations(e.value)

        added = await stub.AddDevice(pb.AddDeviceRequest(device=rpb.DeviceConfig(
            id="spare", model="QLXD4", host="127.0.62.9", port=1, enabled=False, name="SPARE RACK")))
        assert (added.source, added.family, added.enabled) == ("runtime", "qlxd", False)
        with pytest.raises(aio.AioRpcError) as e:
            await stub.AddDevice(pb.AddDeviceRequest(device=rpb.DeviceConfig(id="spare", model="QLXD4", host="x")))
        assert e.value.code() == grpc.StatusCode.ALREADY_EXISTS

        updated = await stub.UpdateDevice(pb.UpdateDeviceRequest(
            device=rpb.DeviceConfig(id="spare", name="SPARE B", host="ignored", etag=added.etag),
            update_mask=mask("name")))
        assert updated.name == "SPARE B" and updated.host == "127.0.62.9"
        with pytest.raises(aio.AioRpcError) as e:
            await stub.UpdateDevice(pb.UpdateDeviceRequest(device=rpb.DeviceConfig(id="spare", etag=added.etag),
                                                           update_mask=mask("name")))
        assert e.value.code() == grpc.StatusCode.ABORTED
        with pytest.raises(aio.AioRpcError) as e:
            await stub.UpdateDevice(pb.UpdateDeviceRequest(device=rpb.DeviceConfig(id="spare", port=70000),
                                                           update_mask=mask("port")))
        assert field_violations(e.value) == ["device.port"]
        with pytest.raises(aio.AioRpcError) as e:  # devices from the config file are read-only here
            await stub.UpdateDevice(pb.UpdateDeviceRequest(device=rpb.DeviceConfig(id="rack1", name="x")))
        assert e.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert error_reason(e.value) == "FILE_MANAGED"

        grp = await stub.UpdateGroup(pb.UpdateGroupRequest(
            group=rpb.Group(name="band", title="The Band", color="#ff8800"), allow_missing=True))
        await stub.UpdateGroup(pb.UpdateGroupRequest(group=rpb.Group(name="band", description="stage left",
                                                                     etag=grp.etag), update_mask=mask("description")))
        await stub.UpdateSlot(pb.UpdateSlotRequest(slot=rpb.Slot(slot=3, channel="rx001/2", performer="Kim"),
                                                   allow_missing=True))
        lock = await stub.SetShowLock(pb.SetShowLockRequest(on=True))
        assert lock.on and lock.changed

        configs = await stub.ListDeviceConfigs(pb.ListDeviceConfigsRequest())
        assert {(c.id, c.source) for c in configs.devices} == {("rack1", "file"), ("spare", "runtime")}

    # Everything above was committed before each call returned: a new daemon on the same store has it.
    async with running_daemon(cfg) as d, stub_for(d) as stub:
        configs = await stub.ListDeviceConfigs(pb.ListDeviceConfigsRequest())
        spare = next(c for c in configs.devices if c.id == "spare")
        assert (spare.name, spare.source) == ("SPARE B", "runtime")
        groups = await stub.ListGroups(pb.ListGroupsRequest())
        assert [(g.name, g.title, g.description) for g in groups.groups] == [("band", "The Band", "stage left")]
        slot = await stub.GetSlot(pb.GetSlotRequest(slot=3))
        assert (slot.channel, slot.performer) == ("rx001/2", "Kim")
        assert (await stub.GetStatus(pb.GetStatusRequest())).show_lock

        await stub.RemoveDevice(pb.RemoveDeviceRequest(device_id="spare"))
        await stub.DeleteGroup(pb.DeleteGroupRequest(name="band"))
        with pytest.raises(aio.AioRpcError) as e:
            await stub.RemoveDevice(pb.RemoveDeviceRequest(device_id="spare"))
        assert e.value.code() == grpc.StatusCode.NOT_FOUND
        actions = [x.action for x in (await stub.ListAuditLog(pb.ListAuditLogRequest(limit=100))).entries]
        for action in ("AddDevice", "UpdateDevice", "RemoveDevice", "UpdateGroup", "DeleteGroup", "SetShowLock"):
            assert action in actions


async def test_acknowledge_alert(tmp_path: Path) -> None:
    async with running_daemon(daemon_config(tmp_path)) as d, stub_for(d) as stub:
        d.hub.apply(fake_board(1))  # rx001/1 has 2 bars: a low-battery warning
        await until(lambda: d.hub.get(Kind.ALERT, "low_battery:rx001/1") is not None, 5, "low battery alert")
        alerts = await stub.ListAlerts(pb.ListAlertsRequest())
        assert "low_battery:rx001/1" in [a.alert_id for a in alerts.alerts]
        acked = await stub.AcknowledgeAlert(pb.AcknowledgeAlertRequest(alert_id="low_battery:rx001/1"))
        assert acked.state == rpb.ALERT_STATE_ACKNOWLEDGED and acked.acknowledged_by == "grpc:local"
        with pytest.raises(aio.AioRpcError) as e:
            await stub.AcknowledgeAlert(pb.AcknowledgeAlertRequest(alert_id="nope"))
        assert e.value.code() == grpc.StatusCode.NOT_FOUND


async def test_two_overlapping_adds_of_one_device_start_one_session(tmp_path: Path) -> None:
    cfg = daemon_config(tmp_path, [FILE_DEVICE])
    async with running_daemon(cfg) as d:
        dev = parse_device({"id": "spare", "model": "QLXD4", "host": "127.0.62.9", "port": 1})
        actor = Actor("test", Role.ADMIN)
        results = await asyncio.gather(d.add_device(dev, actor), d.add_device(dev, actor), return_exceptions=True)
        assert sum(isinstance(r, KeyError) for r in results) == 1, results
        sessions = [t for t in asyncio.all_tasks() if t.get_name() == "device:spare" and not t.done()]
        assert len(sessions) == 1


async def test_two_updates_of_one_slot_with_the_same_etag_let_only_one_win(tmp_path: Path) -> None:
    async with running_daemon(daemon_config(tmp_path, [FILE_DEVICE])) as d, stub_for(d) as stub:
        d.hub.apply(fake_board(2))
        created = await stub.UpdateSlot(pb.UpdateSlotRequest(
            slot=rpb.Slot(slot=5, channel="rx001/1", performer="Anna"), allow_missing=True))
        results = await asyncio.gather(*(
            stub.UpdateSlot(pb.UpdateSlotRequest(slot=rpb.Slot(slot=5, performer=name, etag=created.etag),
                                                 update_mask=mask("performer")))
            for name in ("Bea", "Cem")
        ), return_exceptions=True)
        refused = [r for r in results if isinstance(r, aio.AioRpcError)]
        assert len(refused) == 1 and refused[0].code() == grpc.StatusCode.ABORTED, results
        (won,) = [r for r in results if not isinstance(r, BaseException)]
        assert d.hub.get(Kind.SLOT, "5").performer == won.performer


def test_the_status_line_counts_low_batteries_by_the_configured_thresholds(tmp_path: Path) -> None:
    d = Daemon(daemon_config(tmp_path, alerts={"low_battery_bars": 2, "low_runtime_minutes": 30}), enable_api=False)
    d.hub.apply([
        ChannelUpdate("rx1", 1, tx={"present": True, "battery_bars": 2}),  # at the site's 2-bar limit
        ChannelUpdate("rx1", 2, tx={"present": True, "battery_bars": 5, "runtime_minutes": 20}),  # under 30 min
        ChannelUpdate("rx1", 3, tx={"present": True, "battery_bars": 4, "runtime_minutes": 300}),
    ])
    assert "2 low batteries" in d.status_line()
