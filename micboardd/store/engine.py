"""One thread, one connection: every SQLite call the store makes runs here, in order, off the event loop.

The connection is opened on a single-worker thread and only ever used there, so the event loop never
waits on disk and no two statements of the store can interleave. Commit bookkeeping (counts, the time
of the last commit) is kept here for the daemon's health checks.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Final, TypeVar

from sqlite_utils import Database

from . import schema
from .schema import SchemaTooNewError, transaction

log = logging.getLogger(__name__)

T = TypeVar("T")

BUSY_TIMEOUT_MS: Final = 5000  # a backup or the sqlite3 CLI may hold the lock briefly: wait, don't fail
SYNCHRONOUS: Final = "FULL"  # WAL + FULL survives power loss too; batching keeps it to a few fsyncs a second
# Tables small enough to quick_check at every open: the state a restart depends on.
CHECKED_AT_OPEN: Final = (
    schema.DEVICES,
    schema.CHANNELS,
    schema.SLOTS,
    schema.ALERTS,
    schema.RUNTIME_DEVICES,
    schema.GROUPS,
    schema.SETTINGS,
)


class StoreError(Exception):
    """SQLite could not do what was asked; the message names the database file."""


class Engine:
    """The store's thread and its connection (WAL, ``busy_timeout``, foreign keys, migrated schema)."""

    def __init__(self, path: str, *, clock: Callable[[], float], monotonic: Callable[[], float]) -> None:
        self.path = path
        self._clock = clock
        self._mono = monotonic
        self._executor: ThreadPoolExecutor | None = None
        self._db: Database | None = None  # touched only on the thread
        self.schema_version = 0
        # health (written on the thread; plain int/float stores are atomic under the GIL)
        self.commits = 0
        self.rows_written = 0
        self.batches_committed = 0
        self.last_commit_monotonic = 0.0
        self.last_commit_duration_s = 0.0

    @property
    def is_open(self) -> bool:
        return self._executor is not None

    # ------------------------------------------------------------------ running things on the thread

    async def call(self, what: str, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(*args)`` on the thread; an SQLite error becomes a StoreError naming the file and ``what``."""
        if self._executor is None:
            raise StoreError(f"{self.path}: the store is not open ({what})")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._guarded, what, fn, *args)

    def _guarded(self, what: str, fn: Callable[..., T], *args: Any) -> T:
        try:
            return fn(*args)
        except sqlite3.Error as exc:
            raise StoreError(f"{self.path}: {what} failed: {exc}") from exc

    def conn(self) -> sqlite3.Connection:
        """The connection (thread only)."""
        assert self._db is not None, "store connection used before open()"
        return self._db.conn

    def db(self) -> Database:
        """The sqlite-utils view of the connection (thread only)."""
        assert self._db is not None, "store connection used before open()"
        return self._db

    def write(self, fn: Callable[[sqlite3.Connection], int], *, batch: bool = False) -> int:
        """Run ``fn`` in one transaction (thread only); it returns how many rows it wrote."""
        conn = self.conn()
        started = time.perf_counter()
        with transaction(conn):
            rows = fn(conn)
        self.commits += 1
        self.rows_written += rows
        self.last_commit_monotonic = self._mono()
        self.last_commit_duration_s = time.perf_counter() - started
        if batch:
            self.batches_committed += 1
        return rows

    # ------------------------------------------------------------------ open / close

    async def open(self) -> list[int]:
        """Create the directory, open the file, migrate; returns the migrations applied."""
        if self._executor is not None:
            return []
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="micboardd-store")
        loop = asyncio.get_running_loop()
        try:
            applied = await loop.run_in_executor(executor, self._open_sync)
        except BaseException:
            executor.submit(self._abandon_sync)  # runs after _open_sync, even if this await was cancelled
            executor.shutdown(wait=False)
            raise
        self._executor = executor
        self.last_commit_monotonic = self._mono()  # "no commit for N s" counts from here, not from boot
        return applied

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
            # quick_check(TABLE) needs SQLite 3.33; older libraries check the whole file instead.
            checks = (
                [f"quick_check({t})" for t in CHECKED_AT_OPEN]
                if sqlite3.sqlite_version_info >= (3, 33)
                else ["quick_check"]
            )
            for check in checks:
                result = [r[0] for r in conn.execute(f"PRAGMA {check}")]
                if result != ["ok"]:
                    raise sqlite3.DatabaseError(f"{check}: {'; '.join(map(str, result[:3]))}")
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

    def _abandon_sync(self) -> None:
        if self._db is not None:
            conn, self._db = self._db.conn, None
            conn.close()

    async def close(self, final: Callable[[], None] | None = None) -> None:
        """Run ``final`` (the last writes) on the thread, then close the connection whatever happened."""
        executor = self._executor
        if executor is None:
            return
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(executor, self._close_sync, final)
        finally:
            self._executor = None
            executor.shutdown(wait=False)

    def _close_sync(self, final: Callable[[], None] | None) -> None:
        lost: sqlite3.Error | None = None
        try:
            if final is not None:
                final()
            self.conn().execute("PRAGMA optimize")
        except sqlite3.Error as exc:
            lost = exc
            log.error("%s: the last changes could not be written at close: %s", self.path, exc)
        finally:
            conn = self.conn()
            self._db = None
            conn.close()  # the last connection to close checkpoints the WAL into the main file
        if lost is not None:
            raise StoreError(f"{self.path}: the last changes could not be written at close: {lost}") from lost
