"""Store: migrations, the batched writer, restore with stale flags, committed config/audit, crash safety."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import os
import shutil
import signal
import sqlite3
import sys
import textwrap
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from sqlite_utils import Database

from micboardd.config import Secret
from micboardd.hub import ChannelUpdate, DeviceUpdate, Put, Remove, StateHub
from micboardd.model import (
    Alert,
    AlertState,
    Channel,
    ConnState,
    Kind,
    Severity,
    Slot,
    SlotAlerts,
)
from micboardd.store import AuditEntry, Store, StoreError, engine, planner, schema
from micboardd.store import writer as writer_mod

REPO = Path(__file__).resolve().parents[1]


class FakeClock:
    """A settable clock, used for both wall time and monotonic time in the tests that need one."""

    def __init__(self, start: float) -> None:
        self.t = start

    def __call__(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += seconds


async def until(cond: Callable[[], bool], timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not cond():
            await asyncio.sleep(0.005)


@contextlib.asynccontextmanager
async def writer(store: Store, hub: StateHub) -> AsyncIterator[asyncio.Task[None]]:
    """Run the store's writer task; on exit cancel it (which flushes) and wait for it to end."""
    task = asyncio.create_task(store.run(hub))
    await until(lambda: store.writer_alive)
    await store.flush()  # start-up prune and snapshot done; the writer is idle
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def query(path: Path, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Read the file through a separate connection, as another process would."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return conn.execute(sql, params).fetchall()
    finally:
        conn.close()


def device_json(path: Path, device_id: str) -> str:
    rows = query(path, "SELECT data FROM devices WHERE device_id = ?", (device_id,))
    assert rows, f"no row for {device_id}"
    return str(rows[0][0])


def last_seen_of(path: Path, device_id: str) -> float | None:
    value = json.loads(device_json(path, device_id))["last_seen"]
    return None if value is None else float(value)


# ----------------------------------------------------------------------------- schema and migrations


async def test_open_creates_schema_and_reopen_is_idempotent(tmp_path: Path) -> None:
    path = tmp_path / "var" / "lib" / "micboardd" / "store.db"
    store = Store(path)
    await store.open()
    await store.open()  # a second open is a no-op, not a second connection
    assert store.schema_version == schema.LATEST_VERSION
    await store.close()
    versions = query(path, "SELECT version, description, applied_at FROM schema_version ORDER BY version")
    assert [v for v, _, _ in versions] == [m.version for m in schema.MIGRATIONS]
    assert query(path, "PRAGMA journal_mode") == [("wal",)]
    assert query(path, "PRAGMA auto_vacuum") == [(2,)]  # incremental: pruned space goes back to the disk

    again = Store(path)
    await again.open()
    assert again.schema_version == schema.LATEST_VERSION
    await again.close()
    assert query(path, "SELECT version, description, applied_at FROM schema_version ORDER BY version") == versions
    tables = {r[0] for r in query(path, "SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {schema.DEVICES, schema.CHANNELS, schema.AUDIT, schema.CHANNEL_HISTORY, schema.METER_SUMMARY} <= tables


async def test_v1_database_migrates_to_current_keeping_its_rows(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    conn = sqlite3.connect(path, isolation_level=None)
    db = Database(conn, execute_plugins=False)
    assert schema.migrate(db, 1000.0, upto=1) == [1]
    assert schema.current_version(db) == 1
    hub = StateHub()
    hub.apply([DeviceUpdate("rx1", {"model": "ULXD4D", "state": "online"}), ChannelUpdate("rx1", 1, {"name": "Vox"})])
    for kind in (Kind.DEVICE, Kind.CHANNEL):
        conn.executemany(schema.upsert_sql(kind), [schema.entity_row(kind, e, 1000.0) for e in hub.all(kind)])
    conn.close()

    store = Store(path)
    await store.open()
    try:
        assert store.schema_version == schema.LATEST_VERSION
        restored = StateHub()
        assert await store.restore(restored) == 2
        dev = restored.device("rx1")
        assert dev is not None and dev.model == "ULXD4D"
        assert await store.audit(actor="t", action="a", target="rx1") == 1  # v2's table exists now
        assert await store.channel_history("rx1/1") == []  # and v3's
    finally:
        await store.close()
    applied = query(path, "SELECT version, applied_at FROM schema_version ORDER BY version")
    assert applied[0] == (1, 1000.0) and [v for v, _ in applied] == [1, 2, 3]


async def test_newer_schema_is_refused_naming_the_file(tmp_path: Path) -> None:
    path = tmp_path / "future.db"
    store = Store(path)
    await store.open()
    await store.close()
    conn = sqlite3.connect(path)
    conn.execute("INSERT INTO schema_version(version, description, applied_at) VALUES (99, 'future', 0)")
    conn.commit()
    conn.close()
    with pytest.raises(StoreError, match="newer") as info:
        await Store(path).open()
    assert str(path) in str(info.value)


async def test_corrupt_or_unreachable_file_is_a_store_error_naming_the_path(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"this is not an SQLite database, it is a shopping list\n" * 200)
    store = Store(garbage)
    with pytest.raises(StoreError, match="damaged or not a micboardd database") as info:
        await store.open()
    assert str(garbage) in str(info.value)
    assert not store.is_open
    with pytest.raises(StoreError, match="not open"):
        await store.audit(actor="t", action="a", target="x")

    # A real database whose devices table has a damaged page: caught at open by quick_check.
    damaged = tmp_path / "damaged.db"
    good = Store(damaged)
    await good.open()
    hub = StateHub()
    hub.apply([DeviceUpdate(f"rx{i}", {"model": "ULXD4D", "name": "x" * 200}) for i in range(200)])
    async with writer(good, hub):
        pass
    await good.close()
    root = query(damaged, "SELECT rootpage FROM sqlite_master WHERE name = 'devices'")[0][0]
    page_size = query(damaged, "PRAGMA page_size")[0][0]
    with damaged.open("r+b") as f:
        f.seek((root - 1) * page_size)
        f.write(b"\xff" * 64)
    with pytest.raises(StoreError) as info:
        await Store(damaged).open()
    assert str(damaged) in str(info.value)

    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    with pytest.raises(StoreError, match="cannot create the directory") as info:
        await Store(blocker / "sub" / "store.db").open()
    assert str(blocker / "sub" / "store.db") in str(info.value)


# ----------------------------------------------------------------------------- the writer and restore


async def test_batches_round_trip_through_restore_marked_stale(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    store = Store(path)
    await store.open()
    hub = StateHub()
    async with writer(store, hub):
        hub.apply(
            [
                DeviceUpdate(
                    "rx1", {"model": "ULXD4D", "state": ConnState.ONLINE, "last_seen": 1234.5, "name": "Rack"}
                ),
                ChannelUpdate(
                    "rx1", 1, {"name": "Lead Vox", "frequency_khz": 554125}, tx={"present": True, "battery_bars": 4}
                ),
                ChannelUpdate("rx1", 2, {"name": "Bass"}, tx={"present": False}),
                Put(Slot(7, "rx1/1", "Alice", "Alice (Lead)", "band", SlotAlerts(low_battery_bars=2))),
                Put(
                    Alert(
                        "low_battery:rx1/1", "low_battery", "rx1/1", Severity.WARNING, AlertState.ACTIVE, "2 bars", 10.0
                    )
                ),
                Put(
                    Alert(
                        "rf:rx1/2", "rf", "rx1/2", state=AlertState.ACKNOWLEDGED, acknowledged_by="op", raised_at=11.0
                    )
                ),
                Put(Alert("old:rx1/2", "old", "rx1/2", state=AlertState.CLEARED, raised_at=1.0, cleared_at=2.0)),
            ]
        )
        await store.flush()
        assert store.batches_committed >= 1 and store.pending == 0
    assert not store.writer_alive
    await store.close()

    store2 = Store(path)
    await store2.open()
    restored = StateHub()
    try:
        assert await store2.restore(restored) == 1 + 2 + 1 + 2
    finally:
        await store2.close()
    dev = restored.device("rx1")
    live = hub.device("rx1")
    assert dev is not None and live is not None
    assert dev.stale and dev.state is ConnState.CONNECTING and not dev.online
    assert dataclasses.replace(dev, stale=False, state=ConnState.ONLINE) == live
    for index in (1, 2):
        ch = restored.channel("rx1", index)
        assert ch is not None and ch.stale
        assert dataclasses.replace(ch, stale=False) == hub.channel("rx1", index)
    assert restored.get(Kind.SLOT, "7") == hub.get(Kind.SLOT, "7")
    assert {a.alert_id for a in restored.all(Kind.ALERT)} == {"low_battery:rx1/1", "rf:rx1/2"}
    assert restored.get(Kind.ALERT, "rf:rx1/2") == hub.get(Kind.ALERT, "rf:rx1/2")


async def test_removals_delete_rows_and_removed_alerts_stay_as_history(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    store = Store(path)
    await store.open()
    hub = StateHub()
    async with writer(store, hub):
        hub.apply(
            [
                DeviceUpdate("rx1", {"model": "ULXD4D"}),
                DeviceUpdate("rx2", {"model": "QLXD4"}),
                ChannelUpdate("rx1", 1, {"name": "a"}),
                ChannelUpdate("rx1", 2, {"name": "b"}),
                ChannelUpdate("rx2", 1, {"name": "c"}),
                Put(Slot(1, "rx1/1", "Alice")),
                Put(Slot(2, "rx2/1", "Bob")),
                Put(Alert("a1", "low_battery", "rx1/1", raised_at=5.0)),
            ]
        )
        await store.flush()
        assert len(query(path, "SELECT key FROM channels")) == 3
        hub.apply([Remove(Kind.DEVICE, "rx1"), Remove(Kind.SLOT, "1"), Remove(Kind.ALERT, "a1")])
        await store.flush()
        assert query(path, "SELECT device_id FROM devices") == [("rx2",)]
        assert query(path, "SELECT key FROM channels") == [("rx2/1",)]
        assert query(path, "SELECT slot FROM slots") == [(2,)]
        # The alert left the hub; the store keeps it as history, cleared, so a restart does not revive it.
        state, cleared_at = query(path, "SELECT state, cleared_at FROM alerts WHERE alert_id = 'a1'")[0]
        assert state == "cleared" and cleared_at is not None
    await store.close()
    again = Store(path)
    await again.open()
    restored = StateHub()
    await again.restore(restored)
    await again.close()
    assert restored.all(Kind.ALERT) == [] and [d.device_id for d in restored.all(Kind.DEVICE)] == ["rx2"]


async def test_a_coalesced_burst_is_one_transaction(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    store = Store(path)
    await store.open()
    hub = StateHub()
    statements: list[str] = []
    async with writer(store, hub):
        await store._call("trace", lambda: store._conn().set_trace_callback(statements.append))
        before = store.batches_committed
        n_devices, per_device = 1000, 4
        # 4,000 channels, each changed three times, plus every device: 13,000 hub changes in one burst.
        hub.apply([DeviceUpdate(f"rx{d}", {"model": "ULXD4Q"}) for d in range(n_devices)])
        for round_ in range(3):
            hub.apply(
                [
                    ChannelUpdate(f"rx{d}", i, {"gain_db": float(round_)}, tx={"present": True, "battery_bars": 5})
                    for d in range(n_devices)
                    for i in range(1, per_device + 1)
                ]
            )
        async with asyncio.timeout(15):
            await store.wait_batches(before + 1)
        await store._call("untrace", lambda: store._conn().set_trace_callback(None))
        assert store.batches_committed == before + 1
    await store.close()
    verbs = [s.split(None, 1)[0].upper() for s in statements if s.strip()]
    assert verbs.count("COMMIT") == 1 and verbs.count("BEGIN") == 1
    assert query(path, "SELECT COUNT(*) FROM channels") == [(4000,)]
    assert query(path, "SELECT COUNT(*) FROM devices") == [(1000,)]
    assert query(path, "SELECT COUNT(*) FROM channel_history") == [(4000,)]  # tx appeared: one row each
    assert query(path, "SELECT DISTINCT json_extract(data, '$.gain_db') FROM channels") == [(2.0,)]


async def test_last_seen_only_changes_are_written_at_most_every_30_s(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    mono = FakeClock(1000.0)
    store = Store(path, monotonic=mono)
    await store.open()
    hub = StateHub()
    async with writer(store, hub):
        hub.apply_one(DeviceUpdate("rx1", {"state": ConnState.ONLINE, "last_seen": 100.0}))
        await store.flush()
        assert last_seen_of(path, "rx1") == 100.0
        batches = store.batches_committed

        seen = store.changes_seen
        hub.apply_one(DeviceUpdate("rx1", {"last_seen": 101.0}))
        await until(lambda: store.changes_seen == seen + 1)
        mono.advance(10)
        hub.apply_one(DeviceUpdate("rx1", {"last_seen": 102.0}))
        await until(lambda: store.changes_seen == seen + 2)
        assert store.batches_committed == batches and store.pending == 1  # held, not written
        assert last_seen_of(path, "rx1") == 100.0

        hub.apply_one(DeviceUpdate("rx1", {"name": "Rack 1"}))  # a real change goes out at once, with last_seen
        await store.wait_batches(batches + 1)
        assert last_seen_of(path, "rx1") == 102.0 and store.pending == 0

        seen = store.changes_seen
        hub.apply_one(DeviceUpdate("rx1", {"last_seen": 103.0}))
        await until(lambda: store.changes_seen == seen + 1)
        assert last_seen_of(path, "rx1") == 102.0
        mono.advance(planner.LAST_SEEN_WRITE_INTERVAL_S + 1)
        hub.apply_one(DeviceUpdate("rx1", {"last_seen": 104.0}))  # 31 s after the last write: due now
        await store.wait_batches(batches + 2)
        assert last_seen_of(path, "rx1") == 104.0

        hub.apply_one(DeviceUpdate("rx1", {"last_seen": 105.0}))
        await store.flush()  # flush writes what the throttle holds
        assert last_seen_of(path, "rx1") == 105.0
        hub.apply_one(DeviceUpdate("rx1", {"last_seen": 106.0}))
    # the cancel (shutdown) wrote the held last_seen too
    assert last_seen_of(path, "rx1") == 106.0
    await store.close()


async def test_a_held_last_seen_is_written_when_due_without_other_traffic(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(planner, "LAST_SEEN_WRITE_INTERVAL_S", 0.2)
    path = tmp_path / "s.db"
    store = Store(path)
    await store.open()
    hub = StateHub()
    async with writer(store, hub):
        hub.apply_one(DeviceUpdate("rx1", {"last_seen": 1.0}))
        await store.flush()
        hub.apply_one(DeviceUpdate("rx1", {"last_seen": 2.0}))
        await until(lambda: store.changes_seen >= 2)
        assert last_seen_of(path, "rx1") == 1.0
        await until(lambda: last_seen_of(path, "rx1") == 2.0, timeout=3.0)
    await store.close()


async def test_cancel_writes_everything_still_pending(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    store = Store(path)
    await store.open()
    hub = StateHub()
    task = asyncio.create_task(store.run(hub))
    await until(lambda: store.writer_alive)
    hub.apply([ChannelUpdate("rx1", i, {"name": f"ch{i}"}) for i in range(1, 41)])
    task.cancel()  # before the writer even looked at the batch
    with contextlib.suppress(asyncio.CancelledError):
        await task
    assert query(path, "SELECT COUNT(*) FROM channels") == [(40,)]
    await store.close()


async def test_changes_made_before_the_writer_starts_are_not_lost(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    store = Store(path)
    await store.open()
    hub = StateHub()
    task = asyncio.create_task(store.run(hub))
    hub.apply([DeviceUpdate("rx1", {"model": "AD4Q"}), ChannelUpdate("rx1", 1, {"name": "early"})])
    await until(lambda: store.writer_alive)
    await store.flush()
    assert query(path, "SELECT key FROM channels") == [("rx1/1",)]
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    await store.close()


async def test_failed_writes_are_kept_and_retried(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(engine, "BUSY_TIMEOUT_MS", 50)
    monkeypatch.setattr(writer_mod, "RETRY_BASE_S", 0.05)
    path = tmp_path / "s.db"
    store = Store(path)
    await store.open()
    hub = StateHub()
    async with writer(store, hub):
        blocker = sqlite3.connect(path, isolation_level=None)
        blocker.execute("BEGIN IMMEDIATE")  # another process holds the write lock
        try:
            hub.apply([ChannelUpdate("rx1", 1, {"name": "first"}), ChannelUpdate("rx1", 2, {"name": "x"})])
            await until(lambda: store.last_error is not None)
            assert "locked" in (store.last_error or "") and store.pending >= 2
            hub.apply_one(ChannelUpdate("rx1", 1, {"name": "newer"}))  # arrives during the outage
            await until(lambda: store.changes_seen >= 3)
        finally:
            blocker.execute("ROLLBACK")
            blocker.close()
        await until(lambda: store.last_error is None and store.pending == 0)
        rows = query(path, "SELECT key, json_extract(data, '$.name') FROM channels ORDER BY key")
        assert rows == [("rx1/1", "newer"), ("rx1/2", "x")]
    await store.close()


async def test_unreadable_rows_are_skipped_at_restore(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "s.db"
    store = Store(path)
    await store.open()
    hub = StateHub()
    async with writer(store, hub):
        hub.apply([ChannelUpdate("rx1", i, {"name": f"ch{i}"}) for i in (1, 2, 3)])
    await store.close()
    conn = sqlite3.connect(path)
    conn.execute("UPDATE channels SET data = '{not json' WHERE key = 'rx1/2'")
    conn.execute(
        """UPDATE channels SET data = '{"device_id": "rx1", "index": 3, "no_such": 1, "name": "ok"}' """
        "WHERE key = 'rx1/3'"
    )
    conn.commit()
    conn.close()
    again = Store(path)
    await again.open()
    restored = StateHub()
    with caplog.at_level(logging.WARNING):
        assert await again.restore(restored) == 2
    await again.close()
    assert "rx1/2" in caplog.text and "channels" in caplog.text
    ch3 = restored.channel("rx1", 3)
    assert ch3 is not None and ch3.name == "ok"  # a column from a newer version is ignored, not fatal


# ----------------------------------------------------------------------------- committed calls


async def test_config_slots_groups_settings_and_alerts_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    store = Store(path)
    await store.open()
    dev = {
        "id": "rx9",
        "family": "sscv2",
        "host": "10.0.0.9",
        "port": 443,
        "password": None,
        "password_file": "/etc/micboardd/rx9.pw",
        "options": {"zone": "stage left"},
    }
    await store.save_runtime_device(dev)
    await store.save_runtime_device({**dev, "id": "rx8", "host": "10.0.0.8"})
    for bad, match in (
        ({**dev, "password": "hunter2"}, "password is a secret"),
        ({**dev, "password": Secret("hunter2")}, "password is a secret"),
        ({**dev, "options": {"api_key": "hunter2"}}, "options.api_key is a secret"),
        ({**dev, "id": "Not A Slug"}, "'id' must match"),
        ({**dev, "options": {"x": object()}}, "cannot be stored as JSON"),
    ):
        with pytest.raises(StoreError, match=match) as info:
            await store.save_runtime_device(bad)
        assert "hunter2" not in str(info.value)
    await store.delete_runtime_device("rx8")

    await store.save_slot(Slot(3, "rx9/1", "Carol", group="choir"))
    await store.save_slot(Slot(4, "rx9/2", "Dan"))
    await store.delete_slot(4)
    await store.save_group("choir", {"slots": [3], "color": "#00ff00"})
    await store.save_group("band", {"slots": []})
    await store.delete_group("band")
    assert await store.get_setting("show_lock") is None
    assert await store.get_setting("show_lock", False) is False
    await store.set_setting("show_lock", True)
    await store.set_setting("layout", {"columns": 8, "names": ["a", "b"]})
    with pytest.raises(StoreError, match="cannot be stored as JSON"):
        await store.set_setting("bad", object())
    await store.save_alert(Alert("a1", "low_battery", "rx9/1", raised_at=1.0))
    await store.save_alert(Alert("a2", "rf", "rx9/2", state=AlertState.ACKNOWLEDGED, acknowledged_by="op"))
    await store.save_alert(Alert("a1", "low_battery", "rx9/1", state=AlertState.CLEARED, raised_at=1.0, cleared_at=9.0))
    # Committed before returning: a separate connection sees all of it while the store is still open.
    assert query(path, "SELECT device_id FROM runtime_devices") == [("rx9",)]
    await store.close()

    again = Store(path)
    await again.open()
    try:
        stored = await again.runtime_devices()
        assert stored == [{k: v for k, v in dev.items() if k != "password"}]
        assert await again.groups() == {"choir": {"slots": [3], "color": "#00ff00"}}
        assert await again.get_setting("show_lock") is True
        assert await again.get_setting("layout") == {"columns": 8, "names": ["a", "b"]}
        hub = StateHub()
        assert await again.restore(hub) == 2  # slot 3 and the acknowledged alert; a1 is cleared
        assert hub.get(Kind.SLOT, "3") == Slot(3, "rx9/1", "Carol", group="choir")
        assert [a.alert_id for a in hub.all(Kind.ALERT)] == ["a2"]
    finally:
        await again.close()
    raw = b"".join(p.read_bytes() for p in tmp_path.glob("s.db*"))
    assert b"hunter2" not in raw


async def test_audit_log_records_and_filters(tmp_path: Path) -> None:
    clock = FakeClock(1_700_000_000.0)
    store = Store(tmp_path / "s.db", clock=clock)
    await store.open()
    try:
        first = await store.audit(
            actor="alice", action="RenameChannel", target="rx1/1", before={"name": "a"}, after={"name": "b"}
        )
        clock.advance(60)
        second = await store.audit(
            actor="bob",
            action="SetMute",
            target="rx1/2",
            before=False,
            after=True,
            result="failed",
            detail="device did not echo",
        )
        clock.advance(60)
        third = await store.audit(
            actor="alice", action="AddDevice", target="rx9", after={"password": Secret("hunter2"), "thing": object()}
        )
        assert first < second < third
        entries = await store.audit_log()
        assert [e.id for e in entries] == [third, second, first]  # newest first
        assert entries[2] == AuditEntry(
            first, 1_700_000_000.0, "alice", "RenameChannel", "rx1/1", {"name": "a"}, {"name": "b"}, "ok", ""
        )
        assert entries[1].before is False and entries[1].after is True and entries[1].result == "failed"
        assert entries[0].after["password"] == "***" and "object" in entries[0].after["thing"]
        assert [e.id for e in await store.audit_log(target="rx1/2")] == [second]
        assert [e.id for e in await store.audit_log(since=1_700_000_060.0)] == [third, second]
        assert [e.id for e in await store.audit_log(limit=1)] == [third]
        with pytest.raises(ValueError, match="limit"):
            await store.audit_log(limit=0)
    finally:
        await store.close()
    raw = b"".join(p.read_bytes() for p in tmp_path.glob("s.db*"))
    assert b"hunter2" not in raw


# ----------------------------------------------------------------------------- crash safety

CRASH_SCRIPT = textwrap.dedent(
    """
    import asyncio, sys
    from micboardd.hub import ChannelUpdate, DeviceUpdate, Put, StateHub
    from micboardd.model import Slot
    from micboardd.store import Store

    async def main() -> None:
        store = Store(sys.argv[1])
        await store.open()
        hub = StateHub()
        task = asyncio.create_task(store.run(hub))
        hub.apply([DeviceUpdate("rx1", {"model": "ULXD4Q", "state": "online"})]
                  + [ChannelUpdate("rx1", i, {"name": f"ch{i}"}, tx={"present": True, "battery_bars": i})
                     for i in range(1, 5)] + [Put(Slot(1, "rx1/1", "Alice"))])
        await store.flush()
        await store.audit(actor="op", action="RenameChannel", target="rx1/1", after={"name": "ch1"})
        await store.set_setting("show_lock", True)
        print("ready", flush=True)
        await asyncio.sleep(3600)

    asyncio.run(main())
    """
)


async def test_sigkill_leaves_state_config_and_audit_intact(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", CRASH_SCRIPT, str(path), stdout=asyncio.subprocess.PIPE, env=env
    )
    try:
        assert proc.stdout is not None
        async with asyncio.timeout(15):
            line = await proc.stdout.readline()
        assert line.strip() == b"ready"
        wal = Path(f"{path}-wal")
        assert wal.exists() and wal.stat().st_size > 0  # the state is (at least partly) only in the WAL
        proc.send_signal(signal.SIGKILL)
    finally:
        if proc.returncode is None:
            proc.kill()
        await proc.wait()
    assert proc.returncode == -signal.SIGKILL

    store = Store(path)
    await store.open()
    hub = StateHub()
    try:
        assert await store.restore(hub) == 1 + 4 + 1
        assert all(ch.stale for ch in hub.all(Kind.CHANNEL))
        ch = hub.channel("rx1", 3)
        assert ch is not None and ch.name == "ch3" and ch.tx.battery_bars == 3
        assert [e.action for e in await store.audit_log()] == ["RenameChannel"]
        assert await store.get_setting("show_lock") is True
    finally:
        await store.close()


async def test_an_unclosed_store_is_readable_by_another_store_and_from_a_copy(tmp_path: Path) -> None:
    path = tmp_path / "live" / "s.db"
    first = Store(path)
    await first.open()
    hub = StateHub()
    async with writer(first, hub):
        hub.apply([DeviceUpdate("rx1", {"model": "AD4D"}), ChannelUpdate("rx1", 1, {"name": "Keys"})])
        await first.flush()
        await first.audit(actor="op", action="SetGain", target="rx1/1", before=10, after=12)
        await first.save_group("band", {"slots": [1]})

        # What a SIGKILL would leave: the main file plus its WAL, copied while the writer holds them open.
        copy = tmp_path / "copy" / "s.db"
        copy.parent.mkdir()
        shutil.copy(path, copy)
        shutil.copy(f"{path}-wal", f"{copy}-wal")

        for other_path in (path, copy):
            other = Store(other_path)
            await other.open()
            restored = StateHub()
            try:
                assert await other.restore(restored) == 2
                assert [e.after for e in await other.audit_log()] == [12]
                assert await other.groups() == {"band": {"slots": [1]}}
            finally:
                await other.close()
    await first.close()


# ----------------------------------------------------------------------------- history


async def test_channel_history_records_tx_and_battery_changes(tmp_path: Path) -> None:
    clock = FakeClock(1_700_000_000.0)
    mono = FakeClock(500.0)
    store = Store(tmp_path / "s.db", clock=clock, monotonic=mono)
    await store.open()
    hub = StateHub()
    async with writer(store, hub):
        hub.apply_one(
            ChannelUpdate("rx1", 1, {"name": "Vox"}, tx={"present": True, "battery_bars": 5, "runtime_minutes": 600})
        )
        await store.flush()
        for _ in range(3):  # runtime ticks each minute: no row each time …
            clock.advance(60)
            mono.advance(60)
            ch = hub.channel("rx1", 1)
            assert ch is not None and ch.tx.runtime_minutes is not None
            hub.apply_one(ChannelUpdate("rx1", 1, tx={"runtime_minutes": ch.tx.runtime_minutes - 1}))
            await store.flush()
        hub.apply_one(ChannelUpdate("rx1", 1, {"name": "Lead"}))  # not a transmitter change at all
        clock.advance(1)
        hub.apply_one(ChannelUpdate("rx1", 1, tx={"battery_bars": 4}))  # … but a bar drop is one
        await store.flush()
        mono.advance(planner.HISTORY_SLOW_INTERVAL_S)
        clock.advance(300)
        hub.apply_one(ChannelUpdate("rx1", 1, tx={"runtime_minutes": 590}))  # 5 min later: runtime alone is one
        hub.apply_one(ChannelUpdate("rx1", 2, tx={"present": False}))
        await store.flush()
    history = await store.channel_history("rx1/1")
    assert [(h["type"], h["battery_bars"], h["runtime_minutes"]) for h in history] == [
        ("tx", 5, 600),
        ("tx", 4, 597),
        ("tx", 4, 590),
    ]
    assert history[0]["present"] is True and history[0]["at"] == 1_700_000_000.0
    assert [h["runtime_minutes"] for h in await store.channel_history("rx1/1", limit=2)] == [597, 590]
    assert len(await store.channel_history("rx1/1", since=history[1]["at"])) == 2
    assert [(h["present"], h["battery_bars"]) for h in await store.channel_history("rx1/2")] == [(False, None)]
    with pytest.raises(ValueError, match="not a channel key"):
        await store.channel_history("rx1")
    await store.close()


async def test_meter_summaries_at_most_once_a_minute_per_channel(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    mono = FakeClock(100.0)
    store = Store(tmp_path / "s.db", monotonic=mono)
    await store.open()
    try:
        await store.record_meter_summary(
            [{"key": "rx1/1", "at": 1000.0, "rf_dbm_min": -80.0, "rf_dbm_max": -50.0, "samples": 60}]
        )
        mono.advance(20)  # too soon: folded into the next row
        await store.record_meter_summary(
            [
                {
                    "key": "rx1/1",
                    "at": 1020.0,
                    "rf_dbm_min": -90.0,
                    "rf_dbm_max": -55.0,
                    "audio_dbfs_max": -3.0,
                    "samples": 20,
                }
            ]
        )
        meters = [h for h in await store.channel_history("rx1/1") if h["type"] == "meters"]
        assert [(m["at"], m["rf_dbm_min"]) for m in meters] == [(1000.0, -80.0)]
        assert store.pending == 1
        mono.advance(45)
        with caplog.at_level(logging.WARNING):
            await store.record_meter_summary(
                [
                    {
                        "device_id": "rx1",
                        "index": 1,
                        "at": 1065.0,
                        "rf_dbm_min": -70.0,
                        "rf_dbm_max": -45.0,
                        "samples": 45,
                    },
                    {"key": "garbage", "rf_dbm_min": -1.0},
                    {"key": "rx1/2", "rf_dbm_min": "loud"},
                    {"key": "rx1/3", "rf_dbm_max": True},
                ]
            )
        assert caplog.text.count("meter summary row skipped") == 3
        meters = [h for h in await store.channel_history("rx1/1") if h["type"] == "meters"]
        assert len(meters) == 2
        assert meters[1]["at"] == 1065.0 and meters[1]["rf_dbm_min"] == -90.0 and meters[1]["rf_dbm_max"] == -45.0
        assert meters[1]["audio_dbfs_max"] == -3.0 and meters[1]["samples"] == 65
        await store.record_meter_summary([{"key": "rx1/1", "at": 1070.0, "rf_dbm_min": -60.0}])
    finally:
        await store.close()  # the held row is written at close rather than lost
    again = Store(tmp_path / "s.db")
    await again.open()
    try:
        meters = [h for h in await again.channel_history("rx1/1") if h["type"] == "meters"]
        assert [m["at"] for m in meters] == [1000.0, 1065.0, 1070.0]
    finally:
        await again.close()


async def test_old_history_is_pruned_at_writer_start(tmp_path: Path) -> None:
    day = 86400.0
    clock = FakeClock(1_700_000_000.0)
    path = tmp_path / "s.db"
    store = Store(path, history_days=14, clock=clock)
    await store.open()
    hub = StateHub()
    async with writer(store, hub):
        hub.apply_one(ChannelUpdate("rx1", 1, tx={"present": True, "battery_bars": 5}))
        await store.flush()
    await store.record_meter_summary([{"key": "rx1/1", "at": clock(), "rf_dbm_min": -80.0}])
    await store.save_alert(Alert("old", "rf", "rx1/1", state=AlertState.CLEARED, raised_at=clock(), cleared_at=clock()))
    await store.save_alert(Alert("live", "rf", "rx1/1", raised_at=clock()))
    await store.audit(actor="op", action="x", target="rx1/1")
    clock.advance(15 * day)
    await store.record_meter_summary([{"key": "rx1/2", "at": clock(), "rf_dbm_min": -70.0}])
    await store.close()

    later = Store(path, history_days=14, clock=clock)
    await later.open()
    async with writer(later, StateHub()):
        assert await later.channel_history("rx1/1") == []
        assert len(await later.channel_history("rx1/2")) == 1
        assert query(path, "SELECT alert_id FROM alerts") == [("live",)]
        assert len(await later.audit_log()) == 1  # the audit trail is not history: it is kept
        assert await later.prune() == 0
    await later.close()


async def test_prune_removes_only_rows_older_than_history_days(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(writer_mod, "PRUNE_CHUNK_ROWS", 7)  # several chunks
    clock = FakeClock(1_700_000_000.0)
    store = Store(tmp_path / "s.db", history_days=2, clock=clock)
    await store.open()
    try:
        for hour in range(72):
            await store.record_meter_summary([{"key": f"rx1/{hour + 1}", "at": clock(), "samples": hour}])
            clock.advance(3600)
        assert await store.prune() == 72 - 48
        kept = query(tmp_path / "s.db", "SELECT MIN(at), COUNT(*) FROM meter_summary")[0]
        assert kept[1] == 48 and kept[0] >= clock() - 2 * 86400
    finally:
        await store.close()


# ----------------------------------------------------------------------------- benchmark smoke


async def test_bench_store_runs_and_reports(tmp_path: Path) -> None:
    from micboardd.bench_store import bench_store

    result = await bench_store(8, 0.2, directory=str(tmp_path))
    print(result)  # figures are for reading, not judging: no thresholds here
    assert result["n_channels"] == 8 and result["bursts"] >= 1
    assert result["rows_written"] >= 8 * result["bursts"]
    assert set(result["burst_commit_latency_ms"]) == {"first", "p50", "p95", "max"}


async def test_a_value_beyond_64_bits_does_not_block_every_later_write(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.db")
    await store.open()
    hub = StateHub()
    async with writer(store, hub):
        hub.apply_one(ChannelUpdate("rx1", 1, tx={"present": True, "battery_percent": 10**20}))  # an adapter's slip
        hub.apply_one(ChannelUpdate("rx1", 2, {"name": "Vox"}))
        hub.apply_one(Put(Channel("rx1", 10**20, name="no such channel")))  # a key SQLite cannot bind
        async with asyncio.timeout(5):
            await store.flush()  # raised StoreError: the whole batch failed, and so would every retry
        await store.record_meter_summary([{"key": "rx1/2", "samples": 1, "clips": 0, "link_quality_min": 10**20}])
        await store.flush()
    assert json.loads(query(tmp_path / "s.db", "SELECT data FROM channels WHERE key = 'rx1/2'")[0][0])["name"] == "Vox"
    assert [h["battery_percent"] for h in await store.channel_history("rx1/1")] == [None]
    await store.close()
