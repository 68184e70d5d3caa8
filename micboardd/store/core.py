"""The Store: micboardd's only way to SQLite — state restored at start, a batched writer, committed config and audit.

Two ways in. The hub's change stream, consumed by :meth:`Store.run` (the one writer task, ``writer.py``),
becomes one transaction per coalesced batch — a burst of 4,000 channel changes is one commit.
Configuration, assignments, alerts and audit come through ``save_*``/``audit`` calls that commit before
they return. Both execute on one thread that owns the only connection (``engine.py``: WAL,
``synchronous=FULL``), so a SIGKILL at any moment leaves the last committed transaction readable.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import sqlite3
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Final

from ..config import Secret
from ..hub import Put, StateHub
from ..model import Alert, AlertState, ConnState, Kind, Slot, from_dict, split_channel_key, valid_id
from . import schema
from .engine import Engine, StoreError
from .schema import (
    ALERTS,
    AUDIT,
    CHANNEL_HISTORY,
    CHANNELS,
    DEVICES,
    GROUPS,
    HISTORY_BOOL_FIELDS,
    HISTORY_FIELDS,
    METER_SUMMARY,
    METER_SUMMARY_FIELDS,
    RUNTIME_DEVICES,
    SETTINGS,
    SLOTS,
    dumps,
    loads,
)
from .writer import Writer

log = logging.getLogger(__name__)

MAX_AUDIT_LIMIT: Final = 10_000  # one audit_log answer; page with ``since`` for more
HISTORY_KINDS: Final = ("tx", "meters")  # the ``type`` values of channel_history rows
# Keys of a runtime device (or anything nested in it) whose values are credentials.
SECRET_KEYS: Final = frozenset({"password", "token", "api_key", "secret", "psk", "passphrase"})
_RESTORED_ALERT_STATES: Final = (AlertState.ACTIVE.value, AlertState.ACKNOWLEDGED.value)

__all__ = ["AuditEntry", "Store", "StoreError"]


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One recorded action: who did what to which target, the values before and after, and the outcome."""

    id: int
    at: float
    actor: str
    action: str
    target: str
    before: Any
    after: Any
    result: str
    detail: str


def _audit_json(value: Any) -> str | None:
    """Audit never fails to record: values JSON cannot express are kept as their repr (secrets masked)."""
    if value is None:
        return None

    def fallback(v: Any) -> Any:
        if isinstance(v, Secret):
            return "***"
        return repr(v)

    try:
        return dumps(value)
    except (TypeError, ValueError):
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=fallback)


def _check_no_secrets(value: Any, where: str) -> None:
    if isinstance(value, Secret):
        raise StoreError(f"{where} is a secret and is never stored; give a *_file or *_credential reference instead")
    if isinstance(value, Mapping):
        for k, v in value.items():
            if str(k) in SECRET_KEYS and v is not None:
                raise StoreError(
                    f"{where}.{k} is a secret and is never stored; give {k}_file or {k}_credential instead"
                )
            _check_no_secrets(v, f"{where}.{k}")
    elif isinstance(value, list | tuple):
        for i, v in enumerate(value):
            _check_no_secrets(v, f"{where}[{i}]")


def clean_runtime_device(device: Mapping[str, Any]) -> dict[str, Any]:
    """A runtime device config as stored: an ``id`` that is a valid key, no secret values, JSON only."""
    device_id = device.get("id")
    if not isinstance(device_id, str) or not valid_id(device_id):
        raise StoreError(f"runtime device: 'id' must match [a-z0-9_-]{{1,64}}, got {device_id!r}")
    data = {k: v for k, v in device.items() if not (k in SECRET_KEYS and v is None)}
    _check_no_secrets(data, f"runtime device {device_id}")
    try:
        return dict(loads(dumps(data)))
    except (TypeError, ValueError) as exc:
        raise StoreError(f"runtime device {device_id}: cannot be stored as JSON: {exc}") from exc


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


class Store:
    """SQLite persistence for micboardd; every method is safe to call from the event loop."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        history_days: int = 14,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.path: str = os.fspath(path)
        self.history_days = history_days
        self._clock = clock
        self._engine = Engine(self.path, clock=clock, monotonic=monotonic)
        self._writer = Writer(self._engine, history_days=history_days, clock=clock, monotonic=monotonic)
        self._call = self._engine.call
        self._write = self._engine.write
        self._conn = self._engine.conn

    # ------------------------------------------------------------------ health (STATUS=, watchdog)

    @property
    def writer_alive(self) -> bool:
        """True while :meth:`run` is running (it keeps running, and retrying, through write errors)."""
        return self._writer.running

    @property
    def pending(self) -> int:
        """Changes received but not yet committed (including throttled last_seen and held meter rows)."""
        return self._writer.pending

    @property
    def last_commit_monotonic(self) -> float:
        return self._engine.last_commit_monotonic

    @property
    def last_commit_duration_s(self) -> float:
        return self._engine.last_commit_duration_s

    @property
    def batches_committed(self) -> int:
        return self._engine.batches_committed

    @property
    def rows_written(self) -> int:
        return self._engine.rows_written

    @property
    def commits(self) -> int:
        return self._engine.commits

    @property
    def last_error(self) -> str | None:
        """The writer's last failed commit, until one succeeds again."""
        return self._writer.last_error

    @property
    def changes_seen(self) -> int:
        """Hub changes the writer has taken in (coalesced ones count once)."""
        return self._writer.planner.changes_seen

    @property
    def schema_version(self) -> int:
        return self._engine.schema_version

    @property
    def is_open(self) -> bool:
        return self._engine.is_open

    # ------------------------------------------------------------------ lifecycle

    async def open(self) -> None:
        """Create the directory, open the file (WAL), bring the schema to the current version."""
        if self._engine.is_open:
            return
        applied = await self._engine.open()
        if applied:
            log.info("%s: store schema migrated to v%d (applied %s)", self.path, self.schema_version, applied)
        else:
            log.debug("%s: store open at schema v%d", self.path, self.schema_version)

    async def close(self) -> None:
        """Write whatever is still held (throttled devices, failed batches, meter rows), then close the file."""
        if not self._engine.is_open:
            return
        if self._writer.running:
            log.warning("%s: store closed while its writer task still runs; cancel run() first", self.path)
        await self._engine.close(self._writer.final_writes())

    async def __aenter__(self) -> Store:
        await self.open()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def run(self, hub: StateHub) -> None:
        """The one writer task: each coalesced batch of hub changes becomes one transaction; flushes on cancel."""
        await self._writer.run(hub)

    async def flush(self) -> None:
        """Commit everything held right now (throttled devices, meter rows, a batch awaiting retry)."""
        await self._writer.flush()

    async def wait_batches(self, count: int) -> None:
        """Return once ``count`` batches have been committed in all (``batches_committed``; tests, benchmark)."""
        await self._writer.wait_batches(count)

    async def prune(self) -> int:
        """Delete history, meter summaries and cleared alerts older than ``history_days``; returns rows deleted."""
        return await self._writer.prune()

    # ------------------------------------------------------------------ restore

    async def restore(self, hub: StateHub) -> int:
        """Put the saved state into the hub, marked stale until each device reports again; returns the count."""
        entities = await self._call("restore", self._load_state_sync)
        if entities:
            hub.apply([Put(e) for e in entities])
        log.info("%s: restored %d entities (devices and channels stale until they report)", self.path, len(entities))
        return len(entities)

    def _load_state_sync(self) -> list[Any]:
        conn = self._conn()
        out: list[Any] = []
        queries: tuple[tuple[Kind, str, str, tuple[Any, ...]], ...] = (
            (Kind.DEVICE, DEVICES, f"SELECT device_id, data FROM {DEVICES} ORDER BY device_id", ()),
            (Kind.CHANNEL, CHANNELS, f"SELECT key, data FROM {CHANNELS} ORDER BY device_id, idx", ()),
            (Kind.SLOT, SLOTS, f"SELECT slot, data FROM {SLOTS} ORDER BY slot", ()),
            (
                Kind.ALERT,
                ALERTS,
                f"SELECT alert_id, data FROM {ALERTS} WHERE state IN (?, ?) ORDER BY raised_at, alert_id",
                _RESTORED_ALERT_STATES,
            ),
        )
        for kind, table, sql, params in queries:
            cls = schema.entity_class(kind)
            for key, data in conn.execute(sql, params):
                try:
                    entity = from_dict(cls, loads(data))
                    if kind is Kind.DEVICE:
                        entity = dataclasses.replace(entity, state=ConnState.CONNECTING, stale=True)
                    elif kind is Kind.CHANNEL:
                        entity = dataclasses.replace(entity, stale=True)
                    if str(entity.key) != str(key):
                        raise ValueError(f"row key {key!r} does not match the stored entity's key {entity.key!r}")
                except (ValueError, TypeError, AttributeError) as exc:
                    log.warning("%s: %s row %r skipped at restore, unreadable: %s", self.path, table, key, exc)
                    continue
                out.append(entity)
        return out

    # ------------------------------------------------------------------ committed writes

    async def save_runtime_device(self, device: Mapping[str, Any]) -> None:
        """Keep a device added or changed through the API; secrets are refused (store a *_file reference)."""
        data = clean_runtime_device(device)
        row = (data["id"], dumps(data), self._clock())

        def write(conn: sqlite3.Connection) -> int:
            conn.execute(
                f"INSERT INTO {RUNTIME_DEVICES}(device_id, data, updated_at) VALUES (?, ?, ?) "
                "ON CONFLICT(device_id) DO UPDATE SET data = excluded.data, updated_at = excluded.updated_at",
                row,
            )
            return 1

        await self._call("save runtime device", self._write, write)

    async def delete_runtime_device(self, device_id: str) -> None:
        await self._call("delete runtime device", self._delete_sync, RUNTIME_DEVICES, "device_id", device_id)

    async def runtime_devices(self) -> list[dict[str, Any]]:
        rows = await self._call("read runtime devices", self._select_sync, RUNTIME_DEVICES, "device_id")
        return [dict(loads(r["data"])) for r in rows]

    async def save_slot(self, slot: Slot) -> None:
        await self._save_entity(Kind.SLOT, slot)

    async def delete_slot(self, slot: int) -> None:
        await self._call("delete slot", self._delete_sync, SLOTS, "slot", int(slot))

    async def save_alert(self, alert: Alert) -> None:
        await self._save_entity(Kind.ALERT, alert)

    async def _save_entity(self, kind: Kind, entity: Any) -> None:
        at = self._clock()
        try:
            row = schema.entity_row(kind, entity, at)
        except (TypeError, ValueError) as exc:
            raise StoreError(f"{self.path}: {kind.value} {entity.key} cannot be stored: {exc}") from exc

        def write(conn: sqlite3.Connection) -> int:
            conn.execute(schema.upsert_sql(kind), row)
            return 1

        await self._call(f"save {kind.value}", self._write, write)

    async def save_group(self, name: str, data: Mapping[str, Any]) -> None:
        if not isinstance(name, str) or not name.strip():
            raise StoreError("group: the name must be a non-empty string")
        try:
            encoded = dumps(dict(data))
        except (TypeError, ValueError) as exc:
            raise StoreError(f"group {name!r}: cannot be stored as JSON: {exc}") from exc
        row = (name, encoded, self._clock())

        def write(conn: sqlite3.Connection) -> int:
            conn.execute(
                f"INSERT INTO {GROUPS}(name, data, updated_at) VALUES (?, ?, ?) "
                "ON CONFLICT(name) DO UPDATE SET data = excluded.data, updated_at = excluded.updated_at",
                row,
            )
            return 1

        await self._call("save group", self._write, write)

    async def delete_group(self, name: str) -> None:
        await self._call("delete group", self._delete_sync, GROUPS, "name", name)

    async def groups(self) -> dict[str, dict[str, Any]]:
        rows = await self._call("read groups", self._select_sync, GROUPS, "name")
        return {r["name"]: dict(loads(r["data"])) for r in rows}

    async def set_setting(self, key: str, value: Any) -> None:
        try:
            encoded = dumps(value)
        except (TypeError, ValueError) as exc:
            raise StoreError(f"setting {key!r}: cannot be stored as JSON: {exc}") from exc
        row = (key, encoded, self._clock())

        def write(conn: sqlite3.Connection) -> int:
            conn.execute(
                f"INSERT INTO {SETTINGS}(key, value, updated_at) VALUES (?, ?, ?) "
                "ON CONFLICT(key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
                row,
            )
            return 1

        await self._call("save setting", self._write, write)

    async def get_setting(self, key: str, default: Any = None) -> Any:
        def read() -> Any:
            row = self._conn().execute(f"SELECT value FROM {SETTINGS} WHERE key = ?", (key,)).fetchone()
            return default if row is None else loads(row[0])

        return await self._call("read setting", read)

    async def audit(
        self,
        *,
        actor: str,
        action: str,
        target: str,
        before: Any = None,
        after: Any = None,
        result: str = "ok",
        detail: str = "",
    ) -> int:
        """Record an action; committed before returning. Returns the entry's id."""
        row = (self._clock(), actor, action, target, _audit_json(before), _audit_json(after), result, detail)
        out: list[int] = []

        def write(conn: sqlite3.Connection) -> int:
            cur = conn.execute(
                f"INSERT INTO {AUDIT}(at, actor, action, target, before, after, result, detail) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                row,
            )
            out.append(int(cur.lastrowid or 0))
            return 1

        await self._call("audit", self._write, write)
        return out[0]

    async def audit_log(
        self, *, limit: int = 100, target: str | None = None, since: float | None = None
    ) -> list[AuditEntry]:
        """Audit entries, newest first."""
        if limit < 1:
            raise ValueError(f"audit_log: limit must be ≥ 1, got {limit}")
        where: list[str] = []
        params: list[Any] = []
        if target is not None:
            where.append("target = ?")
            params.append(target)
        if since is not None:
            where.append("at >= ?")
            params.append(since)
        sql = f"SELECT id, at, actor, action, target, before, after, result, detail FROM {AUDIT}"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY id DESC LIMIT ?"
        params.append(min(limit, MAX_AUDIT_LIMIT))

        def read() -> list[AuditEntry]:
            return [
                AuditEntry(i, at, actor, action, tgt, loads(b), loads(a), res, det or "")
                for i, at, actor, action, tgt, b, a, res, det in self._conn().execute(sql, params)
            ]

        return await self._call("read audit log", read)

    # ------------------------------------------------------------------ history

    async def channel_history(
        self,
        key: str,
        *,
        since: float | None = None,
        limit: int = 1000,
        until: float | None = None,
        kinds: Collection[str] = HISTORY_KINDS,
    ) -> list[dict[str, Any]]:
        """The newest ``limit`` history rows of a channel in ``[since, until)``, oldest first.

        ``type`` is ``"tx"`` (transmitter/battery state after a change: present, model, battery_bars,
        battery_percent, runtime_minutes, battery_type, charging, muted) or ``"meters"`` (a per-minute
        summary: window_s, rf_dbm_min, rf_dbm_max, audio_dbfs_min, audio_dbfs_max, link_quality_min,
        clips, samples); ``kinds`` names the types to read.
        """
        split_channel_key(key)  # ValueError names the bad key
        if limit < 1:
            raise ValueError(f"channel_history: limit must be ≥ 1, got {limit}")
        unknown = set(kinds) - set(HISTORY_KINDS)
        if unknown:
            raise ValueError(f"channel_history: kinds must be among {HISTORY_KINDS}, got {sorted(unknown)}")
        start = -math.inf if since is None else since
        end = math.inf if until is None else until

        def read() -> list[dict[str, Any]]:
            conn = self._conn()
            out: list[dict[str, Any]] = []
            window = "key = ? AND at >= ? AND at < ? ORDER BY at DESC, id DESC LIMIT ?"
            params = (key, start, end, limit)
            if "tx" in kinds:
                cols = ", ".join(HISTORY_FIELDS)
                for row in conn.execute(f"SELECT at, {cols} FROM {CHANNEL_HISTORY} WHERE {window}", params):
                    item: dict[str, Any] = {"type": "tx", "at": row[0], "key": key}
                    for name, value in zip(HISTORY_FIELDS, row[1:], strict=True):
                        item[name] = bool(value) if name in HISTORY_BOOL_FIELDS and value is not None else value
                    out.append(item)
            if "meters" in kinds:
                mcols = ", ".join(METER_SUMMARY_FIELDS)
                for row in conn.execute(f"SELECT at, {mcols} FROM {METER_SUMMARY} WHERE {window}", params):
                    item = {"type": "meters", "at": row[0], "key": key}
                    item.update(zip(METER_SUMMARY_FIELDS, row[1:], strict=True))
                    out.append(item)
            out.sort(key=lambda r: r["at"])
            return out[-limit:]

        return await self._call("read channel history", read)

    async def record_meter_summary(self, rows: Sequence[dict[str, Any]]) -> None:
        """Keep per-channel meter summaries; more than one a minute per channel fold into the next row.

        A row: ``key`` (or ``device_id`` + ``index``), optional ``at`` (unix s, default now), and any of
        window_s, rf_dbm_min, rf_dbm_max, audio_dbfs_min, audio_dbfs_max, link_quality_min, clips, samples.
        Rows that are not valid are logged and skipped.
        """
        clean = [r for r in (self._clean_meter_row(row) for row in rows) if r is not None]
        await self._writer.record_meters(clean)

    def _clean_meter_row(self, row: Mapping[str, Any]) -> dict[str, Any] | None:
        try:
            key = row.get("key")
            if key is None:
                key = f"{row['device_id']}/{row['index']}"
            split_channel_key(str(key))
            at = row.get("at", None)
            if at is None:
                at = self._clock()
            if not _number(at):
                raise ValueError(f"'at' must be a number, got {at!r}")
            out: dict[str, Any] = {"key": str(key), "at": float(at)}
            for name, typ in METER_SUMMARY_FIELDS.items():
                value = row.get(name)
                if value is None:
                    out[name] = None
                    continue
                if not _number(value):
                    raise ValueError(f"{name!r} must be a finite number, got {value!r}")
                out[name] = typ(value)
            return out
        except (KeyError, ValueError, TypeError) as exc:
            log.warning("%s: meter summary row skipped (%s): %r", self.path, exc, dict(row))
            return None

    # ------------------------------------------------------------------ small helpers (on the thread)

    def _delete_sync(self, table: str, pk: str, value: Any) -> int:
        def write(conn: sqlite3.Connection) -> int:
            return max(conn.execute(f"DELETE FROM {table} WHERE {pk} = ?", (value,)).rowcount, 0)

        return self._write(write)

    def _select_sync(self, table: str, order_by: str) -> list[dict[str, Any]]:
        return list(self._engine.db().table(table).rows_where(order_by=order_by))
