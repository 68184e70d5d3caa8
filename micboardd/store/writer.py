"""The store's writer task: each coalesced batch of hub changes becomes one transaction.

It subscribes to the hub, hands every batch to the :class:`BatchPlanner`, and commits the plan on the
engine's thread; while that transaction runs, newer changes coalesce in the subscription, so load makes
batches bigger, not queues longer. A failed commit keeps its rows and is retried with backoff. Held
work (throttled ``last_seen``, meter summaries) is written when it falls due, on ``flush()`` and on
cancel. Old history is pruned at start and hourly.
"""

from __future__ import annotations

import asyncio
import logging
import math
import sqlite3
from collections.abc import Callable
from typing import Any, Final

from ..hub import StateHub, Subscription
from ..model import AlertState, Kind
from . import schema
from .engine import Engine, StoreError
from .planner import BatchPlanner, MeterSummaryGate, WritePlan

log = logging.getLogger(__name__)

PRUNE_EVERY_S: Final = 3600.0  # history older than history_days goes once an hour (and at start)
PRUNE_CHUNK_ROWS: Final = 10_000  # old rows go in chunks so an API write never waits long behind a prune
RETRY_BASE_S: Final = 1.0  # a failed batch (disk full, lock held) is retried soon …
RETRY_CAP_S: Final = 30.0  # … and at least this often while the problem lasts
STORED_KINDS: Final = frozenset({Kind.DEVICE, Kind.CHANNEL, Kind.SLOT, Kind.ALERT})
_ORDER: Final = (Kind.DEVICE, Kind.CHANNEL, Kind.SLOT, Kind.ALERT)
_INT64_MIN: Final = -(2**63)  # SQLite INTEGER range
_INT64_MAX: Final = 2**63 - 1


class Writer:
    """Runs the hub → SQLite loop for a :class:`~micboardd.store.Store`."""

    def __init__(
        self, engine: Engine, *, history_days: float, clock: Callable[[], float], monotonic: Callable[[], float]
    ) -> None:
        self._engine = engine
        self.history_days = history_days
        self._clock = clock
        self._mono = monotonic
        self.planner = BatchPlanner(clock=clock, monotonic=monotonic)
        self.meter_gate = MeterSummaryGate(monotonic=monotonic)
        self._sub: Subscription | None = None
        self._get_task: asyncio.Task[list[Any]] | None = None
        self._wake: asyncio.Future[None] | None = None
        self._flush_waiters: list[asyncio.Future[None]] = []
        self._batch_event = asyncio.Event()  # replaced (after being set) at every committed batch
        self.running = False
        self.last_error: str | None = None

    @property
    def path(self) -> str:
        return self._engine.path

    @property
    def pending(self) -> int:
        sub = self._sub.pending if self._sub is not None else 0
        return self.planner.pending + sub + self.meter_gate.held

    # ================================================================== the loop

    async def run(self, hub: StateHub) -> None:
        if not self._engine.is_open:
            raise StoreError(f"{self.path}: the store is not open (run)")
        if self.running:
            raise StoreError(f"{self.path}: the store's writer task is already running")
        sub = hub.subscribe("store", STORED_KINDS)
        self._sub = sub
        # Whatever reached the hub before this task first ran (restored state, an early device report)
        # was never seen by the subscription: write the hub's current state once so nothing is missed.
        self.planner.ingest_snapshot({kind: hub.all(kind) for kind in STORED_KINDS})
        self.running = True
        next_prune = self._mono() + PRUNE_EVERY_S
        retry_at = 0.0
        failures = 0
        try:
            await self._prune_logged()  # once at start (a daemon may have been stopped for weeks), then hourly
            while True:
                deadlines = [next_prune]
                for due in (self.planner.next_deadline(), self.meter_gate.next_deadline()):
                    if due is not None:
                        deadlines.append(due)
                if self.planner.has_work():
                    deadlines.append(retry_at)
                if self._flush_waiters:
                    deadlines.append(-math.inf)
                batch = await self._next_batch(sub, max(0.0, min(deadlines) - self._mono()))
                waiters, self._flush_waiters = self._flush_waiters, []
                self.planner.ingest(batch)
                self.planner.promote_due(force=bool(waiters))
                if self.planner.has_work() and (waiters or self._mono() >= retry_at):
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
                    await self._prune_logged()
        except asyncio.CancelledError:
            await self._stop(sub)
            raise
        finally:
            self.running = False
            if self._get_task is not None:
                self._get_task.cancel()
                self._get_task = None
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
        plan = self.planner.take()
        if plan is None:
            return True
        fut = asyncio.ensure_future(self._engine.call("write batch", self.write_plan_sync, plan))
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
        self.planner.give_back(plan)
        if self.last_error is None:
            log.error("%s: could not write %d rows (kept in memory, retrying): %s", self.path, plan.rows, exc)
        else:
            log.debug("%s: write retry failed (%d rows held): %s", self.path, self.planner.pending, exc)
        self.last_error = str(exc)
        return False

    def _pulse(self) -> None:
        event, self._batch_event = self._batch_event, asyncio.Event()
        event.set()

    async def wait_batches(self, count: int) -> None:
        while self._engine.batches_committed < count:
            await self._batch_event.wait()

    async def _stop(self, sub: Subscription) -> None:
        """On cancel: take everything still pending and write it in one last transaction."""
        batch: list[Any] = []
        task, self._get_task = self._get_task, None
        if task is not None:
            if task.done():
                if not task.cancelled() and task.exception() is None:
                    batch = task.result()
            else:
                task.cancel()
                await asyncio.wait((task,))
        self.planner.ingest(batch)
        self.planner.ingest(sub.get_nowait())
        self.planner.promote_due(force=True)
        if self.planner.has_work():
            pending = self.planner.pending
            if not await self._commit_plan():
                log.error("%s: %d changes could not be written at stop: %s", self.path, pending, self.last_error)
        await self._finish_flush(self._flush_waiters)
        self._flush_waiters = []

    # ================================================================== flushing and meters

    async def flush(self) -> None:
        if not self._engine.is_open:
            raise StoreError(f"{self.path}: the store is not open (flush)")
        if not self.running:
            await asyncio.sleep(0)  # a writer task created just before this call gets to start (and subscribe)
        if self.running:
            fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._flush_waiters.append(fut)
            if self._wake is not None and not self._wake.done():
                self._wake.set_result(None)
            await fut
            return
        self.planner.promote_due(force=True)
        plan = self.planner.take()
        if plan is not None:
            try:
                await self._engine.call("flush", self.write_plan_sync, plan)
            except BaseException:
                self.planner.give_back(plan)
                raise
            self._pulse()
        await self._write_meter_rows(self.meter_gate.take_all())

    async def _finish_flush(self, waiters: list[asyncio.Future[None]]) -> None:
        if not waiters:
            return
        meter_error: StoreError | None = None
        try:
            await self._write_meter_rows(self.meter_gate.take_all())
        except StoreError as exc:
            meter_error = exc
        for fut in waiters:
            if fut.done():
                continue
            if self.planner.has_work():
                fut.set_exception(StoreError(f"{self.path}: flush failed: {self.last_error}"))
            elif meter_error is not None:
                fut.set_exception(meter_error)
            else:
                fut.set_result(None)

    async def record_meters(self, rows: list[dict[str, Any]]) -> None:
        """Offer validated summaries to the once-a-minute gate and write what it lets through."""
        await self._write_meter_rows(self.meter_gate.offer(rows))

    async def _write_due_meter_rows(self) -> None:
        """Held meter summaries go out within a minute even when no new summary comes for that channel."""
        try:
            await self._write_meter_rows(self.meter_gate.due())
        except StoreError as exc:
            log.warning("%s: meter summary rows not written yet: %s", self.path, exc)

    async def _write_meter_rows(self, rows: list[dict[str, Any]]) -> None:
        if not rows:
            return
        try:
            await self._engine.call("meter summary", self.insert_meter_rows_sync, rows)
        except BaseException:
            self.meter_gate.give_back(rows)
            raise

    def final_writes(self) -> Callable[[], None] | None:
        """What ``close()`` still has to write (run on the thread just before the connection closes)."""
        self.planner.promote_due(force=True)
        plan = self.planner.take()
        meter_rows = self.meter_gate.take_all()
        if plan is None and not meter_rows:
            return None

        def write() -> None:
            if plan is not None:
                self.write_plan_sync(plan)
            if meter_rows:
                self.insert_meter_rows_sync(meter_rows)

        return write

    # ================================================================== pruning

    async def prune(self) -> int:
        cutoff = self._clock() - self.history_days * 86400.0
        total = 0
        aged = ((schema.CHANNEL_HISTORY, "at"), (schema.METER_SUMMARY, "at"), (schema.ALERTS, "cleared_at"))
        for table, column in aged:
            while True:
                n = await self._engine.call(f"prune {table}", self._prune_chunk_sync, table, column, cutoff)
                total += n
                if n < PRUNE_CHUNK_ROWS:
                    break
        if total:
            await self._engine.call("incremental vacuum", self._vacuum_sync)
            log.info("%s: pruned %d history rows older than %s days", self.path, total, self.history_days)
        return total

    async def _prune_logged(self) -> None:
        try:
            await self.prune()
        except StoreError as exc:
            log.error("%s: pruning old history failed (retried in an hour): %s", self.path, exc)

    def _prune_chunk_sync(self, table: str, column: str, cutoff: float) -> int:
        pk = "alert_id" if table == schema.ALERTS else "id"
        extra = f" AND state = '{AlertState.CLEARED.value}'" if table == schema.ALERTS else ""
        sql = (
            f"DELETE FROM {table} WHERE {pk} IN (SELECT {pk} FROM {table} "
            f"WHERE {column} < ?{extra} LIMIT {PRUNE_CHUNK_ROWS})"
        )
        deleted: list[int] = []

        def delete(conn: sqlite3.Connection) -> int:
            deleted.append(max(conn.execute(sql, (cutoff,)).rowcount, 0))
            return 0  # deletions are not rows written

        self._engine.write(delete)
        return deleted[0]

    def _vacuum_sync(self) -> None:
        self._engine.conn().execute("PRAGMA incremental_vacuum")

    # ================================================================== thread side

    def write_plan_sync(self, plan: WritePlan) -> int:
        at = self._clock()
        upserts: dict[Kind, list[Any]] = {k: [] for k in _ORDER}
        deletes: dict[Kind, list[str]] = {k: [] for k in _ORDER}
        for (kind, key), entity in plan.entries.items():
            if entity is None:
                deletes[kind].append(key)
            else:
                upserts[kind].append(entity)
        encoded = {kind: self._encode_each(kind, upserts[kind], at) for kind in _ORDER}  # before taking the lock
        history = [self._bindable(row) for row in plan.history]

        def write(conn: sqlite3.Connection) -> int:
            rows = 0
            for kind in _ORDER:
                rows += schema.delete_entities(conn, kind, deletes[kind])
                if encoded[kind]:
                    rows += self._upsert_rows(conn, kind, encoded[kind])
            return rows + schema.insert_history(conn, history)

        return self._engine.write(write, batch=True)

    def _upsert_rows(self, conn: sqlite3.Connection, kind: Kind, params: list[tuple[Any, ...]]) -> int:
        """All rows in one call; only when SQLite cannot bind one (a key beyond 64 bits) row by row, skipping it."""
        sql = schema.upsert_sql(kind)
        try:
            conn.executemany(sql, params)
            return len(params)
        except OverflowError:
            pass
        written = 0
        for row in params:  # upserts: the rows before the bad one may go in twice, to the same result
            try:
                conn.execute(sql, row)
                written += 1
            except OverflowError as exc:
                log.error("%s: %s %s not stored, a value beyond 64 bits: %s", self.path, kind.value, row[0], exc)
        return written

    def _encode_each(self, kind: Kind, entities: list[Any], at: float) -> list[tuple[Any, ...]]:
        params: list[tuple[Any, ...]] = []
        for entity in entities:
            try:
                params.append(schema.entity_row(kind, entity, at))
            except (TypeError, ValueError) as exc:  # one bad value must not block every other row
                log.error("%s: %s %s not stored, cannot encode it: %s", self.path, kind.value, entity.key, exc)
        return params

    def _bindable(self, row: tuple[Any, ...]) -> tuple[Any, ...]:
        """An ``(at, key, …)`` row SQLite can bind: an integer beyond 64 bits would fail the batch on every retry."""
        if all(type(v) is not int or _INT64_MIN <= v <= _INT64_MAX for v in row):
            return row
        log.error("%s: %s: a value beyond 64 bits is stored as unknown: %r", self.path, row[1], row)
        return tuple(None if type(v) is int and not _INT64_MIN <= v <= _INT64_MAX else v for v in row)

    def insert_meter_rows_sync(self, rows: list[dict[str, Any]]) -> int:
        cols = ("at", "key", *schema.METER_SUMMARY_FIELDS)
        sql = f"INSERT INTO {schema.METER_SUMMARY}({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})"

        def write(conn: sqlite3.Connection) -> int:
            conn.executemany(sql, [self._bindable(tuple(r.get(c) for c in cols)) for r in rows])
            return len(rows)

        return self._engine.write(write)
