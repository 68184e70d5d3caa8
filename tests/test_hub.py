"""StateHub: revisions, no-op suppression, history resume, per-key coalescing, meters."""

from __future__ import annotations

import asyncio

import pytest

from micboardd.hub import ChannelUpdate, DeviceUpdate, Put, Remove, RevisionCompactedError, StateHub
from micboardd.model import TX_ABSENT, Kind, Meters, Slot


def test_revisions_increase_and_no_op_changes_emit_nothing() -> None:
    hub = StateHub()
    first = hub.apply([DeviceUpdate("rx1", {"model": "ULXD4D"}), ChannelUpdate("rx1", 1, {"name": "Lead"})])
    assert [c.revision for c in first] == [1, 2]
    assert first[0].before is None and first[0].after.model == "ULXD4D"
    assert hub.apply([ChannelUpdate("rx1", 1, {"name": "Lead"})]) == []
    assert hub.revision == 2
    again = hub.apply([ChannelUpdate("rx1", 1, {"name": "Bass"})])
    assert again[0].revision == 3 and again[0].before.name == "Lead" and again[0].after.name == "Bass"


def test_transmitter_fields_and_replace() -> None:
    hub = StateHub()
    hub.apply_one(ChannelUpdate("rx1", 2, tx={"present": True, "battery_bars": 4, "model": "ULXD2"}))
    ch = hub.channel("rx1", 2)
    assert ch is not None and ch.tx.battery_bars == 4 and ch.tx.model == "ULXD2"
    hub.apply_one(ChannelUpdate("rx1", 2, tx_replace=TX_ABSENT))
    ch = hub.channel("rx1", 2)
    assert ch is not None and ch.tx.present is False and ch.tx.battery_bars is None and ch.tx.model is None


def test_unknown_field_is_a_clear_error_and_changes_nothing() -> None:
    hub = StateHub()
    with pytest.raises(ValueError, match="battery"):
        hub.apply_one(ChannelUpdate("rx1", 1, {"battery": 3}))
    assert hub.revision == 0
    with pytest.raises(ValueError, match="≥ 1"):
        hub.apply_one(ChannelUpdate("rx1", 0, {"name": "x"}))


def test_history_resume_and_compaction() -> None:
    hub = StateHub(history_size=5)
    for i in range(8):
        hub.apply_one(ChannelUpdate("rx1", 1, {"gain_db": float(i)}))
    assert hub.revision == 8
    assert hub.oldest_revision == 3
    assert [c.revision for c in hub.changes_since(5)] == [6, 7, 8]
    assert hub.changes_since(8) == []
    with pytest.raises(RevisionCompactedError) as info:
        hub.changes_since(2)
    assert info.value.oldest == 3
    with pytest.raises(ValueError, match="future"):
        hub.changes_since(99)


def test_remove_device_removes_channels() -> None:
    hub = StateHub()
    hub.apply([DeviceUpdate("rx1", {}), ChannelUpdate("rx1", 1, {}), ChannelUpdate("rx1", 2, {})])
    hub.put_meters(Meters("rx1", 1, rf_dbm=(-60.0,)))
    changes = hub.apply_one(Remove(Kind.DEVICE, "rx1"))
    expected = {(Kind.DEVICE, "rx1"), (Kind.CHANNEL, "rx1/1"), (Kind.CHANNEL, "rx1/2")}
    assert {(c.kind, c.key) for c in changes} == expected
    assert all(c.after is None for c in changes)
    assert hub.all(Kind.CHANNEL) == [] and hub.meters("rx1/1") is None


async def test_slow_subscriber_coalesces_per_key_and_does_not_block() -> None:
    hub = StateHub()
    slow = hub.subscribe("slow", (Kind.CHANNEL,))
    fast = hub.subscribe("fast")
    for i in range(1000):
        hub.apply_one(ChannelUpdate("rx1", 1 + i % 4, {"gain_db": float(i)}))
    assert slow.pending == 4  # bounded by entities, not by changes
    batch = await asyncio.wait_for(slow.get(), 1)
    assert [c.key for c in batch] == ["rx1/1", "rx1/2", "rx1/3", "rx1/4"]
    assert batch[0].before is None  # the earliest 'before' survives coalescing
    assert batch[-1].after.gain_db == 999.0 and batch[-1].revision == 1000
    assert slow.coalesced == 996
    assert len(await asyncio.wait_for(fast.get(), 1)) == 4
    fast.close()
    slow.close()
    assert hub.subscriber_count == 0


async def test_subscription_kind_filter_and_wakeup() -> None:
    hub = StateHub()
    sub = hub.subscribe("slots", (Kind.SLOT,))
    waiter = asyncio.create_task(sub.get())
    hub.apply_one(DeviceUpdate("rx1", {"name": "x"}))
    await asyncio.sleep(0.01)
    assert not waiter.done()
    hub.apply_one(Put(Slot(3, channel="rx1/1", performer="Ana")))
    batch = await asyncio.wait_for(waiter, 1)
    assert batch[0].kind is Kind.SLOT and batch[0].after.performer == "Ana"
    sub.close()


async def test_meter_subscription_is_latest_only() -> None:
    hub = StateHub()
    sub = hub.subscribe_meters("m")
    for i in range(50):
        hub.put_meters(Meters("rx1", 1, rf_dbm=(-90.0 + i,), audio_rms_dbfs=-20.0))
    batch = await asyncio.wait_for(sub.get(), 1)
    assert len(batch) == 1 and batch[0].rf_dbm == (-41.0,)
    sub.close()


def test_a_bad_update_still_fans_out_the_changes_applied_before_it() -> None:
    hub = StateHub()
    sub = hub.subscribe("sink")
    with pytest.raises(ValueError, match="battery"):
        hub.apply([ChannelUpdate("rx1", 1, {"name": "Lead"}), ChannelUpdate("rx1", 2, {"battery": 3})])
    assert hub.revision == 1 and hub.channel("rx1", 1) is not None
    batch = sub.get_nowait()
    assert [(c.revision, c.key) for c in batch] == [(1, "rx1/1")]
    sub.close()


def test_removing_a_channel_forgets_its_meters() -> None:
    hub = StateHub()
    hub.apply([ChannelUpdate("rx1", 1, {}), ChannelUpdate("rx1", 2, {})])
    hub.put_meters(Meters("rx1", 1, link_quality=90))
    hub.put_meters(Meters("rx1", 2, link_quality=80))
    hub.apply_one(Remove(Kind.CHANNEL, "rx1/1"))
    assert hub.meters("rx1/1") is None and hub.meters("rx1/2") is not None
    assert [m.key for m in hub.all_meters()] == ["rx1/2"]


def test_a_channel_index_no_receiver_has_is_refused_before_it_reaches_any_sink() -> None:
    hub = StateHub()
    with pytest.raises(ValueError, match="≤ 999"):  # the API's int32, SQLite's int64 and MQTT topics all hold 999
        hub.apply_one(ChannelUpdate("rx1", 10**20, {"name": "x"}))
    assert hub.revision == 0
