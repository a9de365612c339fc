"""SQLite: the one connection every loop shares, its transactions (async, or a whole
transaction in one trip to the database thread) and how shared statements' parameters
are stored (datetimes as fixed-width UTC text)."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Callable, Generator, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from contextlib import asynccontextmanager, closing
from datetime import datetime, tzinfo
from pathlib import Path
from typing import Any, TypeVar

import aiosqlite
import orjson

from jpixd.model import JST
from jpixd.store import migrate
from jpixd.store.base import (
    PREFECTURE_MATCH,
    Duplicate,
    Insert,
    Plan,
    Queries,
    Row,
    StoreError,
    Tx,
    Work,
    to_db,
)

T = TypeVar("T")
P = TypeVar("P")


# Shared statements pass datetimes: bound anywhere, one is stored as `to_db` writes it,
# fixed-width UTC text, which sorts as time does (a naive one is refused). Python's own
# adapter writes another form, and is deprecated.
sqlite3.register_adapter(datetime, to_db)

# Bound values a statement may take: SQLite's default limit since 3.32 (Debian's build
# allows 250,000; more to a statement is no faster).
_MAX_VARIABLES = 32766


def insert_statements(rows: Insert, parts: Iterable[Sequence[Sequence[Any]]] | None = None
                      ) -> Iterator[tuple[str, list[Any]]]:
    """An `Insert` as a few multi-row statements, each as many rows as SQLite's
    bound-value limit allows, made as they are asked for. Each row of an executemany is a
    statement run of its own (bind, step, reset): a fan-out's 76,000 deliveries took 0.9 s
    that way; one `INSERT … SELECT` over a JSON array of them 0.82 s of CPU (every value
    taken out of the array by `json_extract`), multi-row `INSERT … VALUES` 0.65 s. The
    values every row shares are bound once a statement, in a one-row `VALUES` joined to
    the rows' (bound with every row, they were 0.04 s of those 76,000). The rows of
    `Insert.parts` (or `parts`: the same, worked out ahead) are gathered into full
    statements, so that one text, prepared once, serves all but the last. Times come as
    their stored text (`stored_time`); a datetime among them would be written the same
    way (the adapter above), not in Python's default form."""
    if parts is None:
        parts = (rows.rows,) if rows.parts is None else (make() for make in rows.parts)
    same = list(rows.same.values())
    width = len(rows.columns)
    chunk = max((_MAX_VARIABLES - len(same)) // width, 1)
    picked = [*(f"s.column{i}" for i in range(1, len(same) + 1)),
              *(f"v.column{i}" for i in range(1, width + 1))]
    shared = f"(VALUES ({', '.join(['?'] * len(same))})) AS s, " if same else ""
    head = (f"INSERT INTO {rows.table} ({', '.join([*rows.same, *rows.columns])}) "
            f"SELECT {', '.join(picked)} FROM {shared}(VALUES ")
    one = "(" + ", ".join(["?"] * width) + ")"

    def statement(part: Sequence[Sequence[Any]]) -> tuple[str, list[Any]]:
        params: list[Any] = list(same)
        for row in part:
            params += row
        return head + ", ".join([one] * len(part)) + ") AS v", params

    waiting: list[Sequence[Any]] = []
    for part in parts:
        waiting += part
        while len(waiting) >= chunk:
            yield statement(waiting[:chunk])
            del waiting[:chunk]
    if waiting:
        yield statement(waiting)


# A fan-out's next part worked out while SQLite writes the last (see `worked_ahead`): one
# thread for the process, started when first needed.
_AHEAD = ThreadPoolExecutor(max_workers=1, thread_name_prefix="jpixd-parts")


def worked_ahead(parts: Sequence[Callable[[], P]]) -> Generator[P, None, None]:
    """Each part's function called in order, each next one in another thread while the
    caller writes the one before: SQLite lets go of the GIL while it runs a statement, so
    a fan-out's matching of one part overlaps the insert of the last. The first is called
    here: a single part (a fan-out to fewer than `FANOUT_PART` subscribers) never leaves
    this thread."""
    if not parts:
        return
    ahead: Future[P] | None = None
    try:
        current = parts[0]()
        for make in parts[1:]:
            ahead = _AHEAD.submit(make)
            yield current
            current = ahead.result()
        yield current
    finally:
        # Ended or failed, the part still being worked out is let finish before the
        # plan (and what its functions share) is closed.
        if ahead is not None:
            wait([ahead])


def write_insert(db: sqlite3.Connection, rows: Insert) -> None:
    """An `Insert` within a plan, on the database thread: its parts worked out ahead."""
    if rows.parts is None:
        for statement in insert_statements(rows):
            db.execute(*statement)
        return
    # Closed here, not whenever the collector gets to it: a failed statement leaves no
    # part still being worked out behind it.
    with closing(worked_ahead(rows.parts)) as parts:
        for statement in insert_statements(rows, parts):
            db.execute(*statement)


class SqliteBase(Queries):
    """One connection shared by every loop; `transaction()` and `_tx_sync()` serialise
    transactions on it with a lock."""

    prefecture_match = PREFECTURE_MATCH
    for_update = ""
    greatest = "MAX"
    skip_locked = ""
    due_index = " INDEXED BY deliveries_due"
    sole_claimer = True
    lock_sql = ""
    notify_sql = ""
    bump_version_sql = ("INSERT INTO control (key, value, updated_at) VALUES (?, '1', ?) "
                        "ON CONFLICT (key) DO UPDATE SET value = CAST(value AS INTEGER) + 1, "
                        "updated_at = excluded.updated_at")

    def contains(self, column: str) -> str:
        return f"EXISTS (SELECT 1 FROM json_each({column}) WHERE value = ?)"

    def each_row(self, rows: Sequence[Sequence[Any]], types: Sequence[str]
                 ) -> tuple[str, list[Any]]:
        # One JSON array of the rows, each value taken out by its place.
        columns = ", ".join(f"value ->> {i} AS c{i}" for i in range(len(types)))
        return (f"(SELECT {columns} FROM json_each(?)) AS u",
                [orjson.dumps(rows, default=to_db,
                              option=orjson.OPT_PASSTHROUGH_DATETIME).decode()])

    @asynccontextmanager
    async def transaction(self, *, commit: bool = True,
                          lock: str | None = None) -> AsyncIterator[Tx]:
        # The lock serialises transactions on the one connection (aiosqlite would
        # otherwise interleave two tasks' statements inside one BEGIN … COMMIT); BEGIN
        # IMMEDIATE takes the database's write lock at once, so `lock` needs nothing more.
        async with self._lock:
            await self._db.execute("BEGIN IMMEDIATE")
            try:
                yield SqliteTx(self._db)
            except BaseException:
                await self._db.execute("ROLLBACK")
                raise
            await self._db.execute("COMMIT" if commit else "ROLLBACK")

    def __init__(self, db: aiosqlite.Connection, path: Path) -> None:
        self._db = db
        self._lock = asyncio.Lock()
        self.path = path
        # `timezone` from the config, for the texts the store composes (Backlog issues).
        self.tz: tzinfo = JST
        # [archive] configured: a fan-out archives the deliveries it creates.
        self.archiving = False

    @classmethod
    async def _connect(cls, path: Path) -> aiosqlite.Connection:
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            db = await aiosqlite.connect(str(path), isolation_level=None)
        except Exception as exc:
            raise StoreError(f"cannot open database {path}: {exc}") from exc
        db.row_factory = aiosqlite.Row
        try:
            # WAL lets readers (admin API, metrics) run while a loop writes; NORMAL sync
            # survives a process crash (kill -9), which is what SPEC §2 promises.
            await db.execute("PRAGMA journal_mode=WAL")
            await db.execute("PRAGMA synchronous=NORMAL")
            await db.execute("PRAGMA foreign_keys=ON")
            await db.execute("PRAGMA busy_timeout=5000")
            # 64 MiB of pages (2 MiB by default): a 100k fan-out's transaction touches
            # more than that, and spilled and re-read its pages (the next revision's
            # supersede and insert about 5 % of CPU apiece).
            await db.execute("PRAGMA cache_size=-65536")
            # A file damaged in the middle of a page opens and answers SELECT 1, then
            # fails on the first write: find out now, before reporting ready.
            async with db.execute("PRAGMA quick_check") as cur:
                verdict = [str(r[0]) for r in await cur.fetchall()]
        except Exception as exc:
            await db.close()
            raise StoreError(f"cannot use database {path}: {exc}") from exc
        if verdict != ["ok"]:
            await db.close()
            raise StoreError(f"database {path} is damaged ({'; '.join(verdict[:3])}): "
                             "restore it from a backup")
        return db

    async def close(self) -> None:
        await self._db.close()

    async def migrate(self, now: datetime,
                      migrations: list[migrate.Migration] | None = None) -> list[int]:
        """Apply pending migrations; return the versions applied (empty when up to date)."""
        async with self._lock:
            chosen = migrate.bundled() if migrations is None else migrations
            return await migrate.apply(self._db, chosen, to_db(now))

    async def schema_version(self) -> int:
        async with self._lock:
            return await migrate.current_version(self._db)

    async def ping(self) -> None:
        """Raise StoreError unless the database answers a query."""
        try:
            async with self._db.execute("SELECT 1") as cur:
                await cur.fetchone()
        except Exception as exc:
            raise StoreError(f"database does not answer: {exc}") from exc

    @staticmethod
    def stored_time(dt: datetime) -> Any:
        return to_db(dt)

    async def run_plan(self, plan: Plan[T]) -> T:
        """The whole plan in one trip to the database thread, in one transaction."""
        def body(db: sqlite3.Connection) -> T:
            try:
                step = next(plan)
                while True:
                    result: Any = None
                    try:
                        if isinstance(step, Work):
                            result = step.fn()
                        elif isinstance(step, Insert):
                            write_insert(db, step)
                        elif step.many is not None:
                            db.executemany(step.sql, step.many)
                        else:
                            cur = db.execute(step.sql, step.params)
                            result = cur.fetchall() if step.rows else cur.rowcount
                    except sqlite3.Error as exc:  # the plan's to handle, or to let through
                        step = plan.throw(exc)
                        continue
                    step = plan.send(result)
            except StopIteration as done:
                value: T = done.value
                return value

        return await self._tx_sync(body)

    async def _tx_sync(self, body: Callable[[sqlite3.Connection], T]) -> T:
        """A whole transaction as one trip to the database thread: `body` runs there,
        between BEGIN IMMEDIATE and COMMIT (ROLLBACK if it raises). Each statement of an
        async transaction is a trip of its own (about 150 µs here, the loop idle), and
        the hot paths (a notice recorded, a batch claimed) have several. `body` must be
        plain work on the connection: no awaiting, nothing slow but the SQL itself."""
        conn = self._db._conn  # aiosqlite's own sqlite3 connection, used on its thread

        def run() -> T:
            conn.execute("BEGIN IMMEDIATE")
            try:
                result = body(conn)
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
            return result

        async with self._lock:
            # aiosqlite's queue to its thread (private, but the one way to run a function
            # there; the version is pinned below 1 in pyproject).
            result: T = await self._db._execute(run)  # type: ignore[no-untyped-call]
            return result

    async def _one(self, sql: str, params: Sequence[Any] = ()) -> aiosqlite.Row | None:
        async with self._lock:
            return await fetch_one(self._db, sql, params)

    async def _write(self, sql: str, params: Sequence[Any] = ()) -> int:
        """One statement, atomic on its own (autocommit): one trip to the database thread
        instead of two. Returns the number of rows it changed. (The cursor is left to be
        collected rather than closed: a close is one more trip.)"""
        async with self._lock:
            cur = await self._db.execute(sql, params)
            return cur.rowcount

    async def _all(self, sql: str, params: Sequence[Any] = ()) -> list[aiosqlite.Row]:
        async with self._lock:
            return await fetch_all(self._db, sql, params)


async def fetch_one(db: aiosqlite.Connection, sql: str,
                    params: Sequence[Any] = ()) -> aiosqlite.Row | None:
    """The first row (queries that use this return at most a few). One trip to the
    database thread, where a cursor's execute, fetch and close are three: on a feed's
    first poll those trips were most of the time."""
    rows = await db.execute_fetchall(sql, params)
    return next(iter(rows), None)


async def fetch_all(db: aiosqlite.Connection, sql: str,
                    params: Sequence[Any] = ()) -> list[aiosqlite.Row]:
    return list(await db.execute_fetchall(sql, params))


class SqliteTx:
    """`Tx` on the shared connection, inside `SqliteBase._tx`."""

    def __init__(self, db: aiosqlite.Connection) -> None:
        self._db = db

    async def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        try:
            cur = await self._db.execute(sql, params)
        except sqlite3.IntegrityError as exc:
            if "UNIQUE" in str(exc):
                raise Duplicate(str(exc)) from exc
            raise
        return cur.rowcount

    async def one(self, sql: str, params: Sequence[Any] = ()) -> Row | None:
        try:
            return await fetch_one(self._db, sql, params)
        except sqlite3.IntegrityError as exc:  # INSERT … RETURNING
            if "UNIQUE" in str(exc):
                raise Duplicate(str(exc)) from exc
            raise

    async def all(self, sql: str, params: Sequence[Any] = ()) -> Sequence[Row]:
        return await fetch_all(self._db, sql, params)

    async def many(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        await self._db.executemany(sql, rows)

    async def insert(self, rows: Insert) -> None:
        for statement in insert_statements(rows):
            await self._db.execute(*statement)

    async def notify(self, what: str) -> None:
        """One process on SQLite: its loops are woken directly."""
