"""Action RPCs on simulated receivers: echo-verified results per target, and the safety refusals."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest
from grpc import aio

from micboardd.api.gen.micboard.v1 import micboard_pb2 as pb
from micboardd.api.gen.micboard.v1 import resources_pb2 as rpb
from micboardd.api.testing import (
    daemon_config,
    error_reason,
    field_violations,
    running_daemon,
    shure_sims,
    sim_devices,
    stub_for,
    until,
)
from micboardd.model import Kind

TOKENS = [
    {"name": "front-of-house", "role": "viewer", "token": "viewer-secret"},
    {"name": "a2", "role": "operator", "token": "operator-secret"},
]
# A configured receiver that never answers: its sessions stay offline.
DEAD = {"id": "dead", "model": "ULXD4D", "host": "127.0.63.99", "port": 9}


def bearer(token: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),)


async def test_actions_on_simulated_receivers(tmp_path: Path) -> None:
    async with shure_sims({"rack1": "ULXD4Q", "rack2": "AD4D"}, "127.0.63.1") as sims:
        cfg = daemon_config(tmp_path, [*sim_devices(sims, meter_rate_ms=0), DEAD], api={"tokens": TOKENS})
        async with running_daemon(cfg) as d, stub_for(d) as stub:
            await until(lambda: all(d.hub.device(x) and d.hub.device(x).online for x in ("rack1", "rack2")),
                        15, "both receivers online")
            await until(lambda: len(d.hub.channels_of("rack1")) == 4, 10, "rack1 channels")
            await stub.UpdateSlot(pb.UpdateSlotRequest(slot=rpb.Slot(slot=7, channel="rack2/2"), allow_missing=True))

            # Bulk identify: every target answers for itself; the unknown one fails alone.
            resp = await stub.Identify(pb.IdentifyRequest(targets=["rack1/1", "rack2", "slot:7", "ghost/1"]))
            by = {r.target: r for r in resp.results}
            assert by["rack1/1"].ok and by["rack2"].ok and by["slot:7"].ok
            assert by["slot:7"].resolved == "rack2/2"
            assert not by["ghost/1"].ok and by["ghost/1"].error == pb.TARGET_ERROR_NOT_FOUND
            assert (resp.succeeded, resp.failed) == (3, 1)

            # Rename: the dry run plans without sending; the real one succeeds on the receiver's echo.
            before = sims["rack1"].channel(3).name
            plan = await stub.Rename(pb.RenameRequest(items=[pb.RenameItem(target="rack1/3", name="LEAD VOX")],
                                                      dry_run=True))
            assert plan.dry_run and plan.results[0].ok
            assert plan.results[0].before.string_value == before and plan.results[0].after.string_value == "LEAD VOX"
            assert sims["rack1"].channel(3).name == before
            done = await stub.Rename(pb.RenameRequest(items=[pb.RenameItem(target="rack1/3", name="LEAD VOX"),
                                                             pb.RenameItem(target="dead/1", name="X")]))
            assert done.results[0].ok and done.results[0].after.string_value == "LEAD VOX"
            assert sims["rack1"].channel(3).name == "LEAD VOX"
            await until(lambda: d.hub.channel("rack1", 3).name == "LEAD VOX", 5, "renamed channel in the hub")

            # A single offline target is UNAVAILABLE as a whole; a single unknown one NOT_FOUND.
            with pytest.raises(aio.AioRpcError) as e:
                await stub.Identify(pb.IdentifyRequest(targets=["dead"]))
            assert e.value.code() == grpc.StatusCode.UNAVAILABLE and error_reason(e.value) == "DEVICE_OFFLINE"
            with pytest.raises(aio.AioRpcError) as e:
                await stub.Identify(pb.IdentifyRequest(targets=["ghost"]))
            assert e.value.code() == grpc.StatusCode.NOT_FOUND

            # Dangerous: confirm required, refused under the show lock, admin only.
            with pytest.raises(aio.AioRpcError) as e:
                await stub.SetMute(pb.SetMuteRequest(targets=["rack1/1"], muted=True))
            assert e.value.code() == grpc.StatusCode.FAILED_PRECONDITION
            assert error_reason(e.value) == "CONFIRM_REQUIRED"
            await stub.SetShowLock(pb.SetShowLockRequest(on=True))
            with pytest.raises(aio.AioRpcError) as e:
                await stub.SetMute(pb.SetMuteRequest(targets=["rack1/1"], muted=True, confirm=True))
            assert e.value.code() == grpc.StatusCode.FAILED_PRECONDITION and error_reason(e.value) == "SHOW_LOCK"
            await stub.SetShowLock(pb.SetShowLockRequest(on=False))
            for token in ("viewer-secret", "operator-secret"):
                with pytest.raises(aio.AioRpcError) as e:
                    await stub.SetMute(pb.SetMuteRequest(targets=["rack1/1"], muted=True, confirm=True),
                                       metadata=bearer(token))
                assert e.value.code() == grpc.StatusCode.PERMISSION_DENIED
                assert error_reason(e.value) == "ROLE_REQUIRED"
            assert not sims["rack1"].channel(1).muted

            # Admin (the socket's own role) with confirm: done, and verified by the device's echo.
            muted = await stub.SetMute(pb.SetMuteRequest(targets=["rack1/1", "slot:7"], muted=True, confirm=True))
            assert [r.ok for r in muted.results] == [True, True] and muted.results[0].after.bool_value is True
            assert sims["rack1"].channel(1).muted and sims["rack2"].channel(2).muted

            # One bad value fails its target with the device's answer; the other target still changes.
            good_khz = sims["rack2"].channel(1).frequency_khz + 25
            freq = await stub.SetFrequency(pb.SetFrequencyRequest(targets=["rack2/1"], frequency_khz=good_khz,
                                                                  confirm=True))
            assert freq.results[0].ok
            mixed = await stub.SetFrequency(
                pb.SetFrequencyRequest(targets=["rack2/1", "rack1/2"], frequency_khz=100_000, confirm=True))
            assert not any(r.ok for r in mixed.results)
            assert {r.error for r in mixed.results} <= {pb.TARGET_ERROR_REJECTED, pb.TARGET_ERROR_INVALID}

            # Operators may identify and rename; viewers may only look.
            ok = await stub.Identify(pb.IdentifyRequest(targets=["rack1/2"]), metadata=bearer("operator-secret"))
            assert ok.results[0].ok
            with pytest.raises(aio.AioRpcError) as e:
                await stub.Identify(pb.IdentifyRequest(targets=["rack1/2"]), metadata=bearer("viewer-secret"))
            assert e.value.code() == grpc.StatusCode.PERMISSION_DENIED
            listed = await stub.ListChannels(pb.ListChannelsRequest(), metadata=bearer("viewer-secret"))
            assert len(listed.channels) >= 6

            # Malformed requests name the bad field.
            with pytest.raises(aio.AioRpcError) as e:
                await stub.Identify(pb.IdentifyRequest(targets=["rack1/1", "rack1/zero", "slot:x"]))
            assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert field_violations(e.value) == ["targets[1]"]
            with pytest.raises(aio.AioRpcError) as e:
                await stub.SetMute(pb.SetMuteRequest(targets=["rack1"], muted=True, confirm=True))
            assert field_violations(e.value) == ["targets[0]"]
            with pytest.raises(aio.AioRpcError) as e:
                await stub.Identify(pb.IdentifyRequest())
            assert field_violations(e.value) == ["targets"]
            with pytest.raises(aio.AioRpcError) as e:
                await stub.Identify(pb.IdentifyRequest(targets=["rack1/1"]), metadata=bearer("wrong"))
            assert e.value.code() == grpc.StatusCode.UNAUTHENTICATED

            audit = await stub.ListAuditLog(pb.ListAuditLogRequest(target="rack1/3"))
            assert [x.action for x in audit.entries] == ["RenameChannel"]
            assert audit.entries[0].after["name"] == "LEAD VOX" and audit.entries[0].result == "ok"
            assert d.hub.get(Kind.SLOT, "7") is not None
