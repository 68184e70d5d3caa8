"""Watch (list-then-watch, resume, compaction, progress, slow watchers) and StreamMeters rate limits."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import deque
from pathlib import Path

import grpc
import pytest
from google.protobuf import duration_pb2
from google.rpc import error_details_pb2, status_pb2
from grpc import aio

from micboardd.api.gen.micboard.v1 import micboard_pb2 as pb
from micboardd.api.testing import daemon_config, fake_board, running_daemon, stub_for, until
from micboardd.hub import ChannelUpdate
from micboardd.model import Meters


def ms(n: int) -> duration_pb2.Duration:
    d = duration_pb2.Duration()
    d.FromMilliseconds(n)
    return d


def error_info(err: aio.AioRpcError) -> error_details_pb2.ErrorInfo:
    for key, value in err.trailing_metadata() or ():
        if key == "grpc-status-details-bin":
            for any_ in status_pb2.Status.FromString(value).details:
                info = error_details_pb2.ErrorInfo()
                if any_.Unpack(info):
                    return info
    raise AssertionError("no ErrorInfo in the trailers")


CHANNELS_ONLY = [pb.RESOURCE_KIND_CHANNEL]


async def test_snapshot_then_live_then_resume(tmp_path: Path) -> None:
    async with running_daemon(daemon_config(tmp_path)) as d, stub_for(d) as stub:
        d.hub.apply(fake_board(3))
        applied = d.hub.revision  # the alert engine may add (alert) revisions at any moment after this
        call = stub.Watch(pb.WatchRequest(kinds=CHANNELS_ONLY, include_context=True))
        first = await call.read()
        assert first.HasField("snapshot") and not first.fragment
        assert len(first.snapshot.events) == 12 and applied <= first.revision <= d.hub.revision
        assert all(e.type == pb.EVENT_TYPE_PUT and e.channel.context.device_online for e in first.snapshot.events)

        d.hub.apply([ChannelUpdate("rx001", 2, {"name": "LEAD"})])
        msg = await call.read()
        assert msg.HasField("changes") and [e.channel.name for e in msg.changes.events] == ["LEAD"]
        resume_from = msg.revision
        call.cancel()

        # Changes made while nobody watches are replayed from the history, then the stream goes live.
        d.hub.apply([ChannelUpdate("rx002", 1, {"name": "GTR"}), ChannelUpdate("rx003", 4, {"name": "BASS"})])
        call = stub.Watch(pb.WatchRequest(kinds=CHANNELS_ONLY, start_revision=resume_from, epoch=first.epoch))
        replay = await call.read()
        assert [(e.key, e.channel.name) for e in replay.changes.events] == [("rx002/1", "GTR"), ("rx003/4", "BASS")]
        d.hub.apply([ChannelUpdate("rx003", 4, {"name": "BASS 2"})])
        live = await call.read()
        assert [e.channel.name for e in live.changes.events] == ["BASS 2"] and live.revision > replay.revision
        call.cancel()

        # Nothing to replay: the stream opens with a progress message at the current revision.
        now = d.hub.revision
        call = stub.Watch(pb.WatchRequest(kinds=CHANNELS_ONLY, start_revision=now))
        opened = await call.read()
        assert opened.HasField("progress") and now <= opened.revision <= d.hub.revision
        call.cancel()


async def test_compacted_and_foreign_revisions_are_out_of_range(tmp_path: Path) -> None:
    async with running_daemon(daemon_config(tmp_path)) as d, stub_for(d) as stub:
        # A small history ring (the daemon's is 50,000 changes) so compaction happens within a test.
        d.hub._history = deque(d.hub._history, maxlen=20)
        d.hub.apply(fake_board(2))
        old = d.hub.revision
        d.hub.apply([ChannelUpdate("rx001", 1, {"name": f"N{i}"}) for i in range(40)])
        with pytest.raises(aio.AioRpcError) as e:
            await stub.Watch(pb.WatchRequest(start_revision=old)).read()
        assert e.value.code() == grpc.StatusCode.OUT_OF_RANGE
        info = error_info(e.value)
        assert info.reason == "REVISION_COMPACTED" and info.domain == "micboardd.local"
        assert int(info.metadata["oldest_revision"]) == d.hub.oldest_revision > old

        # The recovery the error asks for: list again, watch from the listed revision.
        listed = await stub.ListChannels(pb.ListChannelsRequest())
        # (channels only: the alert engine may still be raising low-battery alerts for the fake board)
        call = stub.Watch(pb.WatchRequest(kinds=CHANNELS_ONLY, start_revision=listed.revision, epoch=listed.epoch))
        assert (await call.read()).HasField("progress")
        call.cancel()

        for req in (pb.WatchRequest(start_revision=1, epoch="another-run"),
                    pb.WatchRequest(start_revision=d.hub.revision + 100)):
            with pytest.raises(aio.AioRpcError) as e:
                await stub.Watch(req).read()
            assert e.value.code() == grpc.StatusCode.OUT_OF_RANGE
            assert error_info(e.value).reason == "REVISION_COMPACTED"

        with pytest.raises(aio.AioRpcError) as e:
            await stub.Watch(pb.WatchRequest(progress_interval=ms(10))).read()
        assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_progress_events_while_idle(tmp_path: Path) -> None:
    async with running_daemon(daemon_config(tmp_path)) as d, stub_for(d) as stub:
        d.hub.apply(fake_board(1))
        call = stub.Watch(pb.WatchRequest(kinds=CHANNELS_ONLY, progress_interval=ms(100)))
        snap = await call.read()
        assert snap.HasField("snapshot")
        t0 = time.monotonic()
        progress = [await call.read() for _ in range(3)]
        assert all(p.HasField("progress") and snap.revision <= p.revision <= d.hub.revision for p in progress)
        assert time.monotonic() - t0 < 2.0
        call.cancel()


async def test_slow_watcher_gets_latest_values_and_blocks_nobody(tmp_path: Path) -> None:
    # The slow client keeps HTTP/2's 64 KiB window (no BDP growth), so the server feels it quickly.
    async with running_daemon(daemon_config(tmp_path)) as d, stub_for(d) as stub, aio.insecure_channel(
        f"unix:{d.config.api.socket}", options=[("grpc.http2.bdp_probe", 0)]
    ) as slow_channel:
        from micboardd.api.gen.micboard.v1 import micboard_pb2_grpc as pb_grpc

        d.hub.apply(fake_board(100))  # 400 channels
        slow = pb_grpc.MicboardStub(slow_channel).Watch(pb.WatchRequest(kinds=CHANNELS_ONLY))  # not read for now
        fast = stub.Watch(pb.WatchRequest(kinds=CHANNELS_ONLY))
        assert (await fast.read()).HasField("snapshot")
        await until(lambda: d.hub.subscriber_count >= 4, 5, "both watch subscriptions")  # + store, alerts

        rounds = 60
        long_name = "x" * 40
        fast_names: dict[str, str] = {}
        for r in range(rounds):  # 24,000 changes, far more than fits the slow stream's flow-control window
            d.hub.apply([ChannelUpdate(f"rx{i // 4 + 1:03d}", i % 4 + 1, {"name": f"{long_name}{r}"})
                         for i in range(400)])
            await asyncio.sleep(0)
            while True:  # the fast watcher keeps up round by round
                msg = await asyncio.wait_for(fast.read(), 5)
                fast_names.update({e.key: e.channel.name for e in msg.changes.events})
                if all(n.endswith(f"{r}") for n in fast_names.values()) and len(fast_names) == 400:
                    break
        watch_subs = [s for s in d.hub._subs if s.name.startswith("grpc-watch")]
        assert all(s.pending <= 400 for s in watch_subs), "pending changes are bounded by the entity count"

        # The slow watcher now reads: snapshot, then a few coalesced batches ending at the latest values.
        first = await slow.read()
        assert first.HasField("snapshot")
        slow_names: dict[str, str] = {}
        messages = 0
        while len(slow_names) < 400 or not all(n.endswith(str(rounds - 1)) for n in slow_names.values()):
            msg = await asyncio.wait_for(slow.read(), 5)
            messages += 1
            slow_names.update({e.key: e.channel.name for e in msg.changes.events})
        assert messages < rounds * 400 / 100, "a slow reader gets coalesced batches, not every change"
        assert max(s.coalesced for s in watch_subs) > 0
        slow.cancel()
        fast.cancel()


async def test_watch_ends_unavailable_at_shutdown(tmp_path: Path) -> None:
    async with running_daemon(daemon_config(tmp_path)) as d, stub_for(d) as stub:
        call = stub.Watch(pb.WatchRequest())
        assert (await call.read()).HasField("snapshot")
        assert d.api is not None
        await d.api.stop(1.0)
        with pytest.raises(aio.AioRpcError) as e:
            await asyncio.wait_for(call.read(), 5)
        assert e.value.code() == grpc.StatusCode.UNAVAILABLE


async def test_stream_meters_is_rate_limited_per_channel(tmp_path: Path) -> None:
    async with running_daemon(daemon_config(tmp_path)) as d, stub_for(d) as stub:
        d.hub.apply(fake_board(1))
        call = stub.StreamMeters(pb.StreamMetersRequest(channels=["rx001/1"], min_interval=ms(200)))
        got: list[float] = []

        async def reader() -> None:
            async for msg in call:
                assert all(m.channel == "rx001/1" for m in msg.meters)
                got.append(time.monotonic())

        task = asyncio.create_task(reader())
        t0 = time.monotonic()
        i = 0
        while time.monotonic() - t0 < 1.0:  # 100 Hz of readings on two channels
            i += 1
            for ch in (1, 2):
                rf = (-60.0 - i % 5, None)
                d.hub.put_meters(Meters("rx001", ch, rf_dbm=rf, audio_peak_dbfs=-20.0, at=time.time()))
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.3)
        call.cancel()
        task.cancel()
        with pytest.raises((asyncio.CancelledError, aio.AioRpcError)):
            await task
        assert 3 <= len(got) <= 7, f"{len(got)} messages in 1 s at a 200 ms limit"
        gaps = [b - a for a, b in itertools.pairwise(got)]
        assert min(gaps) >= 0.18

        with pytest.raises(aio.AioRpcError) as e:
            await stub.StreamMeters(pb.StreamMetersRequest(channels=["rx001"])).read()
        assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
