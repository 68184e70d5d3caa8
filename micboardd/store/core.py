"""The Store: the only code that touches SQLite, on one dedicated thread, so the event loop never waits on disk.

Two ways in. The hub's change stream, consumed by :meth:`Store.run` (the one writer task), becomes one
transaction per coalesced batch — a burst of 4,000 channel changes is one commit. Configuration,
assignments, alerts and audit come through ``save_*``/``audit`` calls that commit before they return.
Both are executed by a single-worker thread that owns the only connection (WAL, ``synchronous=FULL``),
so a SIGKILL at any moment leaves the last committed transaction readable.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import math
import os
import sqlite3
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Final, TypeVar

from sqlite_utils import Database

from ..config import Secret
from ..hub import Put, StateHub, Subscription
from ..model import Alert, AlertState, ConnState, Kind, Slot, from_dict, split_channel_key, valid_id
from . import schema
from .planner import BatchPlanner, MeterSummaryGate, WritePlan
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
    SchemaTooNewError,
    dumps,
    loads,
    transaction,
)

log = logging.getLogger(__name__)

T = TypeVar("T")

BUSY_TIMEOUT_MS: Final = 5000  # a backup or the sqlite3 CLI may hold the lock briefly: wait, don't fail
SYNCHRONOUS: Final = "FULL"  # WAL + FULL survives power loss too; batching keeps it to a few fsyncs a second
PRUNE_EVERY_S: Final = 3600.0  # history older than history_days goes once an hour (and at start)
PRUNE_CHUNK_ROWS: Final = 10_000  # old rows go in chunks so an API write never waits long behind a prune
RETRY_BASE_S: Final = 1.0  # a failed batch (disk full, lock held) is retried soon …
RETRY_CAP_S: Final = 30.0  # … and at least this often while the problem lasts
MAX_AUDIT_LIMIT: Final = 10_000  # one audit_log answer; page with ``since`` for more
# Tables small enough to quick_check at every open: the state a restart depends on.
_CHECKED_AT_OPEN: Final = (DEVICES, CHANNELS, SLOTS, ALERTS, RUNTIME_DEVICES, GROUPS, SETTINGS)
# Keys of a runtime device (or anything nested in it) whose values are credentials.
SECRET_KEYS: Final = frozenset({"password", "token", "api_key", "secret", "psk", "passphrase"})
STORED_KINDS: Final = frozenset({Kind.DEVICE, Kind.CHANNEL, Kind.SLOT, Kind.ALERT})
_RESTORED_ALERT_STATES: Final = (AlertState.ACTIVE.value, AlertState.ACKNOWLEDGED.value)


class StoreError(Exception):
    """SQLite could not do what was asked; the message names the database file."""


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
        self._mono = monotonic
        self._executor: ThreadPoolExecutor | None = None
        self._db: Database | None = None  # touched only on the writer thread
        self._planner = BatchPlanner(clock=clock, monotonic=monotonic)
        self._meter_gate = MeterSummaryGate(monotonic=monotonic)
        self._sub: Subscription | None = None
        self._get_task: asyncio.Task[list[Any]] | None = None
        self._wake: asyncio.Future[None] | None = None
        self._flush_waiters: list[asyncio.Future[None]] = []
        self._running = False
        self._batch_event = asyncio.Event()  # replaced (after being set) at every committed batch
        self.schema_version = 0
        # health, read by the daemon for STATUS= and the watchdog
        self.writer_alive = False
        self.last_commit_monotonic = 0.0
        self.last_commit_duration_s = 0.0
        self.batches_committed = 0
        self.rows_written = 0
        self.commits = 0
        self.last_error: str | None = None

    @property
    def pending(self) -> int:
        """Changes received but not yet committed (including throttled last_seen and held meter rows)."""
        sub = self._sub.pending if self._sub is not None else 0
        return self._planner.pending + sub + self._meter_gate.held

    @property
    def changes_seen(self) -> int:
        return self._planner.changes_seen

    @property
    def is_open(self) -> bool:
        return self._executor is not None

    async def __aenter__(self) -> Store:
        await self.open()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    # ================================================================== thread plumbing

    async def _call(self, what: str, fn: Callable[..., T], *args: Any) -> T:
        if self._executor is None:
            raise StoreError(f"{self.path}: the store is not open ({what})")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._guarded, what, fn, *args)

    def _guarded(self, what: str, fn: Callable[..., T], *args: Any) -> T:
        try:
            return fn(*args)
        except sqlite3.Error as exc:
            raise StoreError(f"{self.path}: {what} failed: {exc}") from exc

    def _conn(self) -> sqlite3.Connection:
        assert self._db is not None, "store connection used before open()"
        return self._db.conn

    def _committed(self, rows: int, started: float, *, batch: bool = False) -> None:
        """Bookkeeping after a COMMIT (writer thread; plain int/float stores are atomic under the GIL)."""
        now = self._mono()
        self.commits += 1
        self.rows_written += rows
        self.last_commit_monotonic = now
        self.last_commit_duration_s = time.perf_counter() - started
        if batch:
            self.batches_committed += 1

    def _write(self, fn: Callable[[sqlite3.Connection], int]) -> int:
        """Run ``fn`` in one transaction on the writer thread; it returns the rows it wrote."""
        conn = self._conn()
        started = time.perf_counter()
        with transaction(conn):
            rows = fn(conn)
        self._committed(rows, started)
        return rows

    # ================================================================== open / close

    async def open(self) -> None:
        """Create the directory, open the file (WAL), bring the schema to the current version."""
        if self._executor is not None:
            return
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="micboardd-store")
        loop = asyncio.get_running_loop()
        try:
            applied = await loop.run_in_executor(executor, self._open_sync)
        except BaseException:
            executor.shutdown(wait=False)
            raise
        self._executor = executor
        if applied:
            log.info("%s: store schema migrated to v%d (applied %s)", self.path, self.schema_version, applied)
        else:
            log.debug("%s: store open at schema v%d", self.path, self.schema_version)

    def _open_sync(self) -> list[int]:
        parent = Path(self.path).parent
        try:
            parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"{self.path}: cannot create the directory {parent}: {exc.strerror or exc}") from exc
        conn: sqlite3.Connection | None = None
        try:
            conn = sqlite3.connect(self.path, isolation_level=None, timeout=BUSY_TIMEOUT_MS / 1000)
            conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            if conn.execute("PRAGMA page_count").fetchone()[0] == 0:
                conn.execute("PRAGMA auto_vacuum = INCREMENTAL")  # only possible before the first table
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                log.warning(
                    "%s: SQLite refused WAL mode (journal_mode=%s); is this a network filesystem? "
                    "Writes still commit, but readers may block the writer",
                    self.path,
                    mode,
                )
            conn.execute(f"PRAGMA synchronous = {SYNCHRONOUS}")
            conn.execute("PRAGMA foreign_keys = ON")
            db = Database(conn, execute_plugins=False)
            applied = schema.migrate(db, self._clock())
            for table in _CHECKED_AT_OPEN:
                result = [r[0] for r in conn.execute(f"PRAGMA quick_check({table})")]
                if result != ["ok"]:
                    raise sqlite3.DatabaseError(f"quick_check({table}): {'; '.join(map(str, result[:3]))}")
            self.schema_version = schema.current_version(db)
        except SchemaTooNewError as exc:
            if conn is not None:
                conn.close()
            raise StoreError(f"{self.path}: {exc}") from exc
        except sqlite3.OperationalError as exc:
            if conn is not None:
                conn.close()
            raise StoreError(
                f"{self.path}: cannot open the store ({exc}); check that the path is a writable file "
                "and the directory permissions allow creating the -wal and -shm files beside it"
            ) from exc
        except sqlite3.DatabaseError as exc:
            if conn is not None:
                conn.close()
            raise StoreError(
                f"{self.path}: the store is damaged or not a micboardd database ({exc}); move it aside "
                "(micboardd then starts with an empty store) or restore a backup"
            ) from exc
        self._db = db
        return applied

    async def close(self) -> None:
        """Write whatever is still held (throttled devices, failed batches, meter rows), then close the file."""
        executor = self._executor
        if executor is None:
            return
        if self._running:
            log.warning("%s: store closed while its writer task still runs; cancel run() first", self.path)
        self._planner.promote_due(force=True)
        plan = self._planner.take()
        meter_rows = self._meter_gate.take_all()
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(executor, self._close_sync, plan, meter_rows)
        finally:
            self._executor = None
            executor.shutdown(wait=False)

    def _close_sync(self, plan: WritePlan | None, meter_rows: list[dict[str, Any]]) -> None:
        lost: str | None = None
        try:
            if plan is not None:
                self._write_plan_sync(plan)
            if meter_rows:
                self._insert_meter_rows_sync(meter_rows)
            self._conn().execute("PRAGMA optimize")
        except sqlite3.Error as exc:
            lost = f"{exc}"
            log.error("%s: the last changes could not be written at close: %s", self.path, exc)
        finally:
            conn = self._conn()
            self._db = None
            conn.close()  # the last connection to close checkpoints the WAL into the main file
        if lost is not None:
            raise StoreError(f"{self.path}: the last changes could not be written at close: {lost}")

    # ================================================================== restore

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

    # ================================================================== the writer task

    async def run(self, hub: StateHub) -> None:
        """The one writer task: each coalesced batch of hub changes becomes one transaction."""
        if self._executor is None:
            raise StoreError(f"{self.path}: the store is not open (run)")
        if self._running:
            raise StoreError(f"{self.path}: the store's writer task is already running")
        sub = hub.subscribe("store", STORED_KINDS)
        self._sub = sub
        # Whatever reached the hub before this task first ran (restored state, an early device report)
        # was never seen by the subscription: write the hub's current state once so nothing is missed.
        self._planner.ingest_snapshot({kind: hub.all(kind) for kind in STORED_KINDS})
        self._running = True
        self.writer_alive = True
        next_prune = self._mono() + PRUNE_EVERY_S
        retry_at = 0.0
        failures = 0
        try:
            try:
                await self.prune()  # once at start (a daemon may have been stopped for weeks), then hourly
            except StoreError as exc:
                log.error("%s: pruning old history failed (retried in an hour): %s", self.path, exc)
            while True:
                deadlines = [next_prune]
                for due in (self._planner.next_deadline(), self._meter_gate.next_deadline()):
                    if due is not None:
                        deadlines.append(due)
                if self._planner.has_work():
                    deadlines.append(retry_at)
                if self._flush_waiters:
                    deadlines.append(-math.inf)
                batch = await self._next_batch(sub, max(0.0, min(deadlines) - self._mono()))
                waiters, self._flush_waiters = self._flush_waiters, []
                self._planner.ingest(batch)
                self._planner.promote_due(force=bool(waiters))
                if self._planner.has_work() and (waiters or self._mono() >= retry_at):
                    if await self._commit_plan():
                        failures = 0
                        retry_at = 0.0
                    else:
                        failures += 1
                        retry_at = self._mono() + min(RETRY_BASE_S * 2 ** (failures - 1), RETRY_CAP_S)
                await self._write_due_meter_rows()
                await self._finish_flush(waiters)
                if self._mono() >= next_prune:
                    next_prune = self._mono() + PRUNE_EVERY_S
                    try:
                        await self.prune()
                    except StoreError as exc:
                        log.error("%s: pruning old history failed (retried in an hour): %s", self.path, exc)
        except asyncio.CancelledError:
            await self._stop_writer(sub)
            raise
        finally:
            self._running = False
            self.writer_alive = False
            sub.close()
            self._sub = None
            for fut in self._flush_waiters:
                if not fut.done():
                    fut.set_exception(StoreError(f"{self.path}: the writer stopped before the flush"))
            self._flush_waiters = []

    async def _next_batch(self, sub: Subscription, delay: float) -> list[Any]:
        """The next coalesced batch, or [] when ``delay`` passes or a flush wakes the writer first."""
        if self._get_task is None:
            if sub.pending:
                return sub.get_nowait()
            self._get_task = asyncio.create_task(sub.get(), name="store-next-batch")
        wake: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._wake = wake
        try:
            await asyncio.wait((self._get_task, wake), timeout=delay, return_when=asyncio.FIRST_COMPLETED)
        finally:
            self._wake = None
        if self._get_task.done():
            task, self._get_task = self._get_task, None
            return task.result()
        return []

    async def _commit_plan(self) -> bool:
        plan = self._planner.take()
        if plan is None:
            return True
        assert self._executor is not None
        fut = asyncio.get_running_loop().run_in_executor(self._executor, self._write_plan_sync, plan)
        try:
            await asyncio.wait((fut,))
        except asyncio.CancelledError:
            # The thread finishes this transaction whatever we do; account for it before stopping.
            await asyncio.wait((fut,))
            self._settle(fut, plan)
            raise
        return self._settle(fut, plan)

    def _settle(self, fut: asyncio.Future[int], plan: WritePlan) -> bool:
        exc = fut.exception()
        if exc is None:
            if self.last_error is not None:
                log.warning("%s: store writes work again", self.path)
            self.last_error = None
            self._pulse()
            return True
        self._planner.give_back(plan)
        if self.last_error is None:
            log.error("%s: could not write %d rows (kept in memory, retrying): %s", self.path, plan.rows, exc)
        else:
            log.debug("%s: write retry failed (%d rows held): %s", self.path, self._planner.pending, exc)
        self.last_error = str(exc)
        return False

    async def _write_due_meter_rows(self) -> None:
        """Held meter summaries go out within a minute even when no new summary comes for that channel."""
        rows = self._meter_gate.due()
        if not rows:
            return
        try:
            await self._call("meter summary", self._insert_meter_rows_sync, rows)
        except StoreError as exc:
            self._meter_gate.give_back(rows)
            log.warning("%s: %d meter summary rows not written yet: %s", self.path, len(rows), exc)

    async def _finish_flush(self, waiters: list[asyncio.Future[None]]) -> None:
        if not waiters:
            return
        meter_error: StoreError | None = None
        rows = self._meter_gate.take_all()
        if rows:
            try:
                await self._call("meter summary", self._insert_meter_rows_sync, rows)
            except StoreError as exc:
                self._meter_gate.give_back(rows)
                meter_error = exc
        for fut in waiters:
            if fut.done():
                continue
            if self._planner.has_work():
                fut.set_exception(StoreError(f"{self.path}: flush failed: {self.last_error}"))
            elif meter_error is not None:
                fut.set_exception(meter_error)
            else:
                fut.set_result(None)

    async def _stop_writer(self, sub: Subscription) -> None:
        """On cancel: take everything still pending, write it in one last transaction, then let the cancel go on."""
        batch: list[Any] = []
        task, self._get_task = self._get_task, None
        if task is not None:
            if task.done():
                if not task.cancelled() and task.exception() is None:
                    batch = task.result()
            else:
                task.cancel()
                await asyncio.wait((task,))
        self._planner.ingest(batch)
        self._planner.ingest(sub.get_nowait())
        self._planner.promote_due(force=True)
        if self._planner.has_work():
            pending = self._planner.pending
            if not await self._commit_plan():
                log.error("%s: %d changes could not be written at stop: %s", self.path, pending, self.last_error)
        await self._finish_flush(self._flush_waiters)
        self._flush_waiters = []

    def _write_plan_sync(self, plan: WritePlan) -> int:
        at = self._clock()
        upserts: dict[Kind, list[Any]] = {k: [] for k in STORED_KINDS}
        deletes: dict[Kind, list[str]] = {k: [] for k in STORED_KINDS}
        for (kind, key), entity in plan.entries.items():
            if entity is None:
                deletes[kind].append(key)
            else:
                upserts[kind].append(entity)
        order = (Kind.DEVICE, Kind.CHANNEL, Kind.SLOT, Kind.ALERT)
        encoded = {kind: self._encode_each(kind, upserts[kind], at) for kind in order}  # before taking the lock
        conn = self._conn()
        started = time.perf_counter()
        rows = 0
        with transaction(conn):
            for kind in order:
                rows += schema.delete_entities(conn, kind, deletes[kind])
                if encoded[kind]:
                    conn.executemany(schema.upsert_sql(kind), encoded[kind])
                    rows += len(encoded[kind])
            rows += schema.insert_history(conn, plan.history)
        self._committed(rows, started, batch=True)
        return rows

    def _encode_each(self, kind: Kind, entities: list[Any], at: float) -> list[tuple[Any, ...]]:
        params: list[tuple[Any, ...]] = []
        for entity in entities:
            try:
                params.append(schema.entity_row(kind, entity, at))
            except (TypeError, ValueError) as exc:  # one bad value must not block every other row
                log.error("%s: %s %s not stored, cannot encode it: %s", self.path, kind.value, entity.key, exc)
        return params

    def _pulse(self) -> None:
        event, self._batch_event = self._batch_event, asyncio.Event()
        event.set()

    async def wait_batches(self, count: int) -> None:
        """Return once ``count`` batches have been committed in all (``batches_committed``; tests, benchmark)."""
        while self.batches_committed < count:
            await self._batch_event.wait()

    async def flush(self) -> None:
        """Commit everything held right now (throttled devices, meter rows, a batch awaiting retry)."""
        if self._executor is None:
            raise StoreError(f"{self.path}: the store is not open (flush)")
        if not self._running:
            await asyncio.sleep(0)  # a writer task created just before this call gets to start (and subscribe)
        if self._running:
            fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._flush_waiters.append(fut)
            if self._wake is not None and not self._wake.done():
                self._wake.set_result(None)
            await fut
            return
        self._planner.promote_due(force=True)
        plan = self._planner.take()
        if plan is not None:
            try:
                await self._call("flush", self._write_plan_sync, plan)
            except BaseException:
                self._planner.give_back(plan)
                raise
            self._pulse()
        rows = self._meter_gate.take_all()
        if rows:
            try:
                await self._call("meter summary", self._insert_meter_rows_sync, rows)
            except BaseException:
                self._meter_gate.give_back(rows)
                raise

    # ================================================================== pruning

    async def prune(self) -> int:
        """Delete history, meter summaries and cleared alerts older than ``history_days``; returns rows deleted."""
        cutoff = self._clock() - self.history_days * 86400.0
        total = 0
        for table, column in ((CHANNEL_HISTORY, "at"), (METER_SUMMARY, "at"), (ALERTS, "cleared_at")):
            while True:
                n = await self._call(f"prune {table}", self._prune_chunk_sync, table, column, cutoff)
                total += n
                if n < PRUNE_CHUNK_ROWS:
                    break
        if total:
            await self._call("incremental vacuum", self._vacuum_sync)
            log.info("%s: pruned %d history rows older than %d days", self.path, total, self.history_days)
        return total

    def _prune_chunk_sync(self, table: str, column: str, cutoff: float) -> int:
        pk = "alert_id" if table == ALERTS else "id"
        extra = f" AND state = '{AlertState.CLEARED.value}'" if table == ALERTS else ""
        sql = (
            f"DELETE FROM {table} WHERE {pk} IN (SELECT {pk} FROM {table} "
            f"WHERE {column} < ?{extra} LIMIT {PRUNE_CHUNK_ROWS})"
        )
        conn = self._conn()
        started = time.perf_counter()
        with transaction(conn):
            n = conn.execute(sql, (cutoff,)).rowcount
        self._committed(0, started)
        return max(n, 0)

    def _vacuum_sync(self) -> None:
        self._conn().execute("PRAGMA incremental_vacuum")

    # ================================================================== committed writes

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

    # ================================================================== history

    async def channel_history(self, key: str, *, since: float | None = None, limit: int = 1000) -> list[dict[str, Any]]:
        """The newest ``limit`` history rows of a channel, oldest first.

        ``type`` is ``"tx"`` (transmitter/battery state after a change: present, model, battery_bars,
        battery_percent, runtime_minutes, battery_type, charging, muted) or ``"meters"`` (a per-minute
        summary: window_s, rf_dbm_min, rf_dbm_max, audio_dbfs_min, audio_dbfs_max, link_quality_min,
        clips, samples).
        """
        split_channel_key(key)  # ValueError names the bad key
        if limit < 1:
            raise ValueError(f"channel_history: limit must be ≥ 1, got {limit}")
        start = -math.inf if since is None else since

        def read() -> list[dict[str, Any]]:
            conn = self._conn()
            out: list[dict[str, Any]] = []
            cols = ", ".join(HISTORY_FIELDS)
            for row in conn.execute(
                f"SELECT at, {cols} FROM {CHANNEL_HISTORY} WHERE key = ? AND at >= ? ORDER BY at DESC, id DESC LIMIT ?",
                (key, start, limit),
            ):
                item: dict[str, Any] = {"type": "tx", "at": row[0], "key": key}
                for name, value in zip(HISTORY_FIELDS, row[1:], strict=True):
                    item[name] = bool(value) if name in HISTORY_BOOL_FIELDS and value is not None else value
                out.append(item)
            mcols = ", ".join(METER_SUMMARY_FIELDS)
            for row in conn.execute(
                f"SELECT at, {mcols} FROM {METER_SUMMARY} WHERE key = ? AND at >= ? ORDER BY at DESC, id DESC LIMIT ?",
                (key, start, limit),
            ):
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
        due = self._meter_gate.offer(clean)
        if not due:
            return
        try:
            await self._call("meter summary", self._insert_meter_rows_sync, due)
        except BaseException:
            self._meter_gate.give_back(due)
            raise

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

    def _insert_meter_rows_sync(self, rows: list[dict[str, Any]]) -> int:
        cols = ("at", "key", *METER_SUMMARY_FIELDS)
        sql = f"INSERT INTO {METER_SUMMARY}({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})"

        def write(conn: sqlite3.Connection) -> int:
            conn.executemany(sql, [tuple(r.get(c) for c in cols) for r in rows])
            return len(rows)

        return self._write(write)

    # ================================================================== small helpers (writer thread)

    def _delete_sync(self, table: str, pk: str, value: Any) -> int:
        def write(conn: sqlite3.Connection) -> int:
            return max(conn.execute(f"DELETE FROM {table} WHERE {pk} = ?", (value,)).rowcount, 0)

        return self._write(write)

    def _select_sync(self, table: str, order_by: str) -> list[dict[str, Any]]:
        assert self._db is not None
        return list(self._db.table(table).rows_where(order_by=order_by))
