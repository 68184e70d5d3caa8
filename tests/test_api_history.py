"""GetChannelHistory, the client's history() and `micboardctl history`, against a real daemon on a Unix socket."""

from __future__ import annotations

import asyncio
import datetime as dt
import io
import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc import aio
from micboard_client import Client, MicboardError, SyncClient
from micboard_client.cli import run as ctl_run
from micboard_client.when import parse_when

from micboardd.api.gen.micboard.v1 import micboard_pb2 as pb
from micboardd.api.gen.micboard.v1 import resources_pb2 as rpb
from micboardd.api.testing import daemon_config, field_violations, running_daemon, stub_for
from micboardd.daemon import Daemon
from micboardd.hub import ChannelUpdate, DeviceUpdate, Put
from micboardd.model import TX_ABSENT, ConnState, Manufacturer, Slot

TX = pb.HISTORY_KIND_TRANSMITTER
METERS = pb.HISTORY_KIND_METERS


def rack(device_id: str = "rx1") -> DeviceUpdate:
    return DeviceUpdate(device_id, {"manufacturer": Manufacturer.SHURE, "family": "ulxd", "model": "ULXD4Q",
                                    "host": "127.0.9.1", "port": 2202, "state": ConnState.ONLINE,
                                    "channel_count": 4})


async def change(d: Daemon, *updates: Any) -> None:
    """Apply updates to the hub and wait until the store has committed what they record."""
    d.hub.apply(list(updates))
    await d.store.flush()


async def drive_second_act(d: Daemon) -> None:
    """HH03 on rx1/1: switched on full, drains, dies to 0 bars, swapped off (four history rows)."""
    await change(d, rack(), ChannelUpdate("rx1", 1, {"name": "HH03"}, tx={
        "present": True, "model": "ULXD2", "battery_bars": 5, "battery_percent": 100, "runtime_minutes": 600,
        "battery_type": "LION", "charging": False, "muted": False}))
    await change(d, ChannelUpdate("rx1", 1, tx={"battery_bars": 2, "battery_percent": 35, "runtime_minutes": 95}))
    await change(d, ChannelUpdate("rx1", 1, tx={"battery_bars": 0, "battery_percent": 2, "runtime_minutes": 4,
                                                "muted": True}))
    await change(d, ChannelUpdate("rx1", 1, tx_replace=TX_ABSENT))


def seconds(ts: Any) -> float:
    return float(ts.seconds + ts.nanos / 1e9)


def bars(entries: Sequence[Any]) -> list[int | None]:  # daemon or client messages
    return [e.transmitter.battery_bars if e.transmitter.HasField("battery_bars") else None for e in entries]


async def history(stub: Any, channel: str, **kwargs: Any) -> pb.GetChannelHistoryResponse:
    resp: pb.GetChannelHistoryResponse = await stub.GetChannelHistory(
        pb.GetChannelHistoryRequest(channel=channel, **kwargs))
    return resp


async def test_history_follows_transmitter_and_battery_changes(tmp_path: Path) -> None:
    async with running_daemon(daemon_config(tmp_path)) as d, stub_for(d) as stub:
        started = time.time()
        await drive_second_act(d)
        resp = await history(stub, "rx1/1")
        assert resp.channel == "rx1/1" and not resp.truncated
        assert [e.WhichOneof("entry") for e in resp.entries] == ["transmitter"] * 4
        first, low, dead, gone = (e.transmitter for e in resp.entries)
        assert (first.present, first.model, first.battery_bars, first.battery_percent, first.runtime_minutes,
                first.battery_type, first.charging, first.muted) == (True, "ULXD2", 5, 100, 600, "LION", False, False)
        assert (low.battery_bars, low.battery_percent, low.runtime_minutes) == (2, 35, 95)
        # 0 bars is a reading; a transmitter that left has no battery at all: unknown stays unset.
        assert dead.HasField("battery_bars") and dead.battery_bars == 0 and dead.muted
        assert gone.HasField("present") and not gone.present
        assert not gone.HasField("battery_bars") and not gone.HasField("model") and not gone.HasField("muted")
        times = [seconds(e.transmitter.at) for e in resp.entries]
        assert times == sorted(times) and started - 1 < times[0] and times[-1] < time.time() + 1

        # since is inclusive, until exclusive; an entry's own time works as either bound.
        since = resp.entries[1].transmitter.at
        until = resp.entries[3].transmitter.at
        assert bars((await history(stub, "rx1/1", since=since)).entries) == [2, 0, None]
        assert bars((await history(stub, "rx1/1", until=until)).entries) == [5, 2, 0]
        assert bars((await history(stub, "rx1/1", since=since, until=until)).entries) == [2, 0]

        # limit keeps the newest; truncated says older ones exist; until = the first entry pages back.
        newest = await history(stub, "rx1/1", limit=2)
        assert bars(newest.entries) == [0, None] and newest.truncated
        older = await history(stub, "rx1/1", limit=2, until=newest.entries[0].transmitter.at)
        assert bars(older.entries) == [5, 2] and not older.truncated
        exact = await history(stub, "rx1/1", limit=4)
        assert len(exact.entries) == 4 and not exact.truncated

        # A slot resolves to the channel it points at now.
        d.hub.apply([Put(Slot(3, channel="rx1/1", performer="Anna"))])
        via_slot = await history(stub, "slot:3")
        assert via_slot.channel == "rx1/1" and len(via_slot.entries) == 4

        # Known to the hub but nothing recorded: an empty answer, not NOT_FOUND.
        await change(d, ChannelUpdate("rx1", 2, {"name": "SPARE"}))
        assert list((await history(stub, "rx1/2")).entries) == []


async def test_history_meter_summaries_and_kinds(tmp_path: Path) -> None:
    async with running_daemon(daemon_config(tmp_path)) as d, stub_for(d) as stub:
        await drive_second_act(d)
        t0 = time.time()
        minutes = [
            {"key": "rx1/1", "at": t0 - 180, "window_s": 60.0, "samples": 60, "rf_dbm_min": -84.5,
             "rf_dbm_max": -61.0, "audio_dbfs_min": -50.0, "audio_dbfs_max": -12.5, "link_quality_min": 80,
             "clips": 0},
            {"key": "rx1/1", "at": t0 - 120, "window_s": 60.0, "samples": 58, "rf_dbm_min": -90.0,
             "rf_dbm_max": -70.0, "audio_dbfs_max": -1.0, "clips": 3},
            # A channel whose receiver has gone from the hub still has its recorded minutes.
            {"key": "gone/2", "at": t0 - 60, "samples": 10, "rf_dbm_min": -70.0, "rf_dbm_max": -65.0},
        ]
        for row in minutes:
            await d.store.record_meter_summary([row])
            await d.store.flush()

        both = await history(stub, "rx1/1")
        assert [e.WhichOneof("entry") for e in both.entries] == ["meters"] * 2 + ["transmitter"] * 4
        full, clipped = (e.meters for e in both.entries[:2])
        assert seconds(full.at) == pytest.approx(t0 - 180, abs=1e-5)
        assert (full.window_s, full.samples, full.rf_dbm_min, full.rf_dbm_max, full.audio_dbfs_min,
                full.audio_dbfs_max, full.link_quality_min, full.clips) == (60.0, 60, -84.5, -61.0, -50.0, -12.5, 80, 0)
        # Not measured is unset, not 0: no audio minimum, no link quality in that minute.
        assert not clipped.HasField("audio_dbfs_min") and not clipped.HasField("link_quality_min")
        assert clipped.HasField("clips") and clipped.clips == 3 and clipped.audio_dbfs_max == -1.0

        only_meters = await history(stub, "rx1/1", kinds=[METERS])
        assert [e.WhichOneof("entry") for e in only_meters.entries] == ["meters", "meters"]
        only_tx = await history(stub, "rx1/1", kinds=[TX], limit=4)
        assert bars(only_tx.entries) == [5, 2, 0, None] and not only_tx.truncated  # meters take no room
        assert len((await history(stub, "rx1/1", kinds=[TX, METERS])).entries) == 6
        window = await history(stub, "rx1/1", since=both.entries[1].meters.at, until=both.entries[2].transmitter.at)
        assert [e.meters.clips for e in window.entries] == [3]

        gone = await history(stub, "gone/2")
        assert gone.channel == "gone/2" and [e.meters.samples for e in gone.entries] == [10]
        # Nothing in the span, but the channel has a past: still an (empty) answer.
        assert list((await history(stub, "gone/2", since=both.entries[-1].transmitter.at)).entries) == []

        with pytest.raises(aio.AioRpcError) as e:
            await history(stub, "ghost/1")
        assert e.value.code() == grpc.StatusCode.NOT_FOUND and "ghost/1" in (e.value.details() or "")


@pytest.mark.parametrize(
    ("request_fields", "fields"),
    [
        ({"channel": "rx1"}, ["channel"]),
        ({"channel": ""}, ["channel"]),
        ({"channel": "rx1/0"}, ["channel"]),
        ({"channel": "slot:abc"}, ["channel"]),
        ({"channel": "rx1/1", "limit": -1}, ["limit"]),
        ({"channel": "rx1/1", "limit": 5001}, ["limit"]),
        ({"channel": "rx1", "limit": 9999}, ["channel", "limit"]),
        ({"channel": "rx1/1", "kinds": [pb.HISTORY_KIND_UNSPECIFIED]}, ["kinds[0]"]),
        ({"channel": "rx1/1", "kinds": [TX, 42]}, ["kinds[1]"]),
    ],
)
async def test_history_bad_requests_name_the_field(
    tmp_path: Path, request_fields: dict[str, Any], fields: list[str]
) -> None:
    async with running_daemon(daemon_config(tmp_path)) as d, stub_for(d) as stub:
        with pytest.raises(aio.AioRpcError) as e:
            await stub.GetChannelHistory(pb.GetChannelHistoryRequest(**request_fields))
        assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert field_violations(e.value) == fields


async def test_history_time_window_and_slot_errors(tmp_path: Path) -> None:
    async with running_daemon(daemon_config(tmp_path)) as d, stub_for(d) as stub:
        await drive_second_act(d)
        later, earlier = rpb.TransmitterSample().at, rpb.TransmitterSample().at
        later.FromSeconds(2_000_000_000)
        earlier.FromSeconds(1_000_000_000)
        with pytest.raises(aio.AioRpcError) as e:
            await history(stub, "rx1/1", since=later, until=earlier)
        assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT and field_violations(e.value) == ["until"]
        with pytest.raises(aio.AioRpcError) as e:
            await history(stub, "slot:9")
        assert e.value.code() == grpc.StatusCode.NOT_FOUND
        # Empty span of a known channel answers empty.
        assert list((await history(stub, "rx1/1", since=later)).entries) == []


async def test_history_is_open_to_viewers(tmp_path: Path) -> None:
    (tmp_path / "viewer.token").write_text("viewer-secret\n")
    api = {"tokens": [{"name": "board-screen", "role": "viewer", "token_file": "viewer.token"}]}
    async with running_daemon(daemon_config(tmp_path, api=api)) as d, stub_for(d) as stub:
        await drive_second_act(d)
        viewer = (("authorization", "Bearer viewer-secret"),)
        resp = await stub.GetChannelHistory(pb.GetChannelHistoryRequest(channel="rx1/1"), metadata=viewer)
        assert len(resp.entries) == 4
        with pytest.raises(aio.AioRpcError) as e:  # the token really is a viewer: the audit log is refused
            await stub.ListAuditLog(pb.ListAuditLogRequest(), metadata=viewer)
        assert e.value.code() == grpc.StatusCode.PERMISSION_DENIED

        async with Client(socket=str(d.config.api.socket), token="viewer-secret") as mb:
            assert len((await mb.history("rx1/1")).entries) == 4


async def test_client_history_async_and_sync(tmp_path: Path) -> None:
    async with running_daemon(daemon_config(tmp_path)) as d:
        before = dt.datetime.now().astimezone()
        await drive_second_act(d)
        sock = str(d.config.api.socket)
        async with Client(socket=sock) as mb:
            resp = await mb.history("rx1/1", since=before, limit=3)
            assert bars(resp.entries) == [2, 0, None] and resp.truncated
            # Unix seconds work as well as datetimes; until is exclusive.
            first = seconds(resp.entries[0].transmitter.at)
            assert bars((await mb.history("rx1/1", until=first)).entries) == [5]
            assert (await mb.history("rx1/1", kinds=["meters"])).entries == []
            with pytest.raises(ValueError, match="history kinds"):
                await mb.history("rx1/1", kinds=["battery"])
            with pytest.raises(MicboardError) as me:
                await mb.history("rx1", limit=0)
            assert me.value.code == grpc.StatusCode.INVALID_ARGUMENT
            assert [f for f, _ in me.value.field_violations] == ["channel"]

        def blocking() -> list[int | None]:
            with SyncClient(socket=sock) as mb:
                return bars(mb.history("rx1/1").entries)

        assert await asyncio.to_thread(blocking) == [5, 2, 0, None]


async def ctl(sock: str, *args: str) -> tuple[int, str]:
    out = io.StringIO()
    rc = await ctl_run(["--socket", sock, *args], out=out)
    return rc, out.getvalue()


async def test_micboardctl_history(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    async with running_daemon(daemon_config(tmp_path)) as d:
        await drive_second_act(d)
        await d.store.record_meter_summary([{"key": "rx1/1", "samples": 60, "rf_dbm_min": -84.4,
                                             "rf_dbm_max": -61.2, "audio_dbfs_max": -3.0, "clips": 2}])
        await d.store.flush()
        sock = str(d.config.api.socket)

        rc, out = await ctl(sock, "history", "rx1/1", "--since", "2h")
        assert rc == 0, capsys.readouterr().err
        lines = out.splitlines()
        assert lines[0].startswith("rx1/1: 5 entries")
        assert lines[1].split() == ["TIME", "TX", "BATTERY", "RF", "MIN..MAX", "AUDIO", "MAX", "NOTES"]
        rows = lines[2:]
        assert len(rows) == 5
        assert "ULXD2" in rows[0] and "100%" in rows[0] and "10h00" in rows[0] and "LION" in rows[0]
        assert "35%" in rows[1] and "1h35" in rows[1]
        assert "2%" in rows[2] and "TX-MUTE" in rows[2]
        assert rows[3].split()[1] == "off"
        assert "-84..-61 dBm" in rows[4] and "-3 dBFS" in rows[4] and "CLIP x2" in rows[4]
        # Times are local, oldest first.
        assert [r.split()[0] for r in rows] == sorted(r.split()[0] for r in rows)

        rc, out = await ctl(sock, "history", "rx1/1", "--limit", "2", "--kind", "tx")
        assert rc == 0 and "rx1/1: 2 entries" in out and "older entries left out" in out and "--until" in out

        rc, out = await ctl(sock, "history", "rx1/1", "--kind", "meters", "--json")
        data = json.loads(out)
        assert data["channel"] == "rx1/1" and [list(e) for e in data["entries"]] == [["meters"]]
        assert data["entries"][0]["meters"]["clips"] == 2

        rc, out = await ctl(sock, "history", "rx1/1", "--until", "1h")
        assert rc == 0 and out.strip() == "rx1/1: nothing recorded in that span"

        rc, _ = await ctl(sock, "history", "rx1")
        assert rc == 3
        err = capsys.readouterr().err
        assert "INVALID_ARGUMENT" in err and "channel" in err

        rc, _ = await ctl(sock, "history", "nobody/1")
        assert rc == 3 and "NOT_FOUND" in capsys.readouterr().err


def test_when_parses_what_people_type() -> None:
    now = dt.datetime(2024, 5, 2, 0, 40, tzinfo=dt.UTC)
    assert parse_when("2h", now) == now - dt.timedelta(hours=2)
    assert parse_when("1h30m", now) == now - dt.timedelta(minutes=90)
    assert parse_when("1d", now) == now - dt.timedelta(days=1)
    assert parse_when("now", now) == now
    # A bare time of day is its last occurrence: typed after midnight, the show's evening.
    evening = parse_when("21:30", now)
    local_now = now.astimezone()
    assert evening <= now and now - evening < dt.timedelta(days=1)
    assert (evening.hour, evening.minute) == (21, 30) and evening.tzinfo is not None
    assert evening.date() in (local_now.date(), local_now.date() - dt.timedelta(days=1))
    assert parse_when("2024-05-01T21:30:00+02:00", now) == dt.datetime(2024, 5, 1, 19, 30, tzinfo=dt.UTC)
    assert parse_when("2024-05-01 21:30", now).tzinfo is not None  # naive: local time
    for bad in ("", "yesterday", "25:00", "2x", "21:61"):
        with pytest.raises(ValueError):
            parse_when(bad, now)
