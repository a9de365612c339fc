"""The SQLite connection, transactions and time encoding that every store part shares."""

from __future__ import annotations

import asyncio
import functools
import json
import sqlite3
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from datetime import UTC, datetime, tzinfo
from pathlib import Path
from typing import Any, Protocol, TypeVar

import aiosqlite

from jpixd.model import JST
from jpixd.store import migrate

T = TypeVar("T")


class Row(Protocol):
    """A row by column name: SQLite's rows and PostgreSQL's records alike, so that both
    stores turn rows into domain objects with the same functions."""

    def __getitem__(self, key: str, /) -> Any: ...


class StoreError(Exception):
    """The database could not be opened or answered with an error."""


class Conflict(StoreError):
    """The change would break a uniqueness rule (e.g. a second live subscriber per address)."""


def to_db(dt: datetime) -> str:
    """Fixed-width UTC text, so that text order is time order."""
    if dt.tzinfo is None:
        raise ValueError("naive datetime given to the store")
    return dt.astimezone(UTC).isoformat(timespec="microseconds")


def from_db(text: str | datetime | None) -> datetime | None:
    """A stored time: SQLite's text, or PostgreSQL's timestamptz as it arrives."""
    if isinstance(text, datetime):
        return text
    return datetime.fromisoformat(text) if text else None


def from_db_req(text: str | datetime) -> datetime:
    return text if isinstance(text, datetime) else datetime.fromisoformat(text)


def as_text(value: str | datetime | None) -> str | None:
    """A stored time as SQLite keeps it (PostgreSQL's datetime turned into that text), so
    that an API's answers do not depend on the backend."""
    return to_db(value) if isinstance(value, datetime) else value


def jlist(values: Sequence[str]) -> str:
    return json.dumps(list(values), ensure_ascii=False)


@functools.lru_cache(maxsize=16384)
def tlist(text: str) -> tuple[str, ...]:
    """A stored JSON list as a tuple. Memoised: subscribers share a few hundred distinct
    lists, and decoding 500,000 of them was most of a 100k fan-out's time."""
    return tuple(json.loads(text))


def where_equal(*pairs: tuple[str, Any]) -> tuple[list[str], list[Any]]:
    """`column = ?` conditions (and their parameters) for the filters that were given:
    a value of None or "" means "any"."""
    given = [(col, value) for col, value in pairs if value is not None and value != ""]
    return [f"{col} = ?" for col, _ in given], [value for _, value in given]


# A row whose JSON list of prefectures holds this code, or is empty ("all prefectures"
# for a subscriber, "area unknown, so everyone" for a notice).
PREFECTURE_MATCH = ("(prefectures = '[]' OR EXISTS "
                    "(SELECT 1 FROM json_each(prefectures) WHERE value = ?))")


# What Tx.notify says to the other hosts (PostgreSQL's LISTEN/NOTIFY): new mail is due;
# sending was paused or resumed.
DELIVERIES = "deliveries"
SENDING = "sending"

# The control row counting changes to the subscribers (see Queries._bump_subscribers).
SUBSCRIBERS_VERSION = "subscribers_version"


class Duplicate(StoreError):
    """A statement would break a uniqueness rule (either database's own error)."""


class Tx(Protocol):
    """One transaction's statements, the same to both databases (`?` placeholders,
    datetimes as parameters; a unique violation raises `Duplicate`)."""

    async def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Run it; the number of rows it changed."""

    async def one(self, sql: str, params: Sequence[Any] = ()) -> Row | None: ...

    async def all(self, sql: str, params: Sequence[Any] = ()) -> Sequence[Row]: ...

    async def many(self, sql: str, rows: Sequence[Sequence[Any]]) -> None: ...

    async def notify(self, what: str) -> None:
        """Tell the other hosts at the commit (PostgreSQL); nothing on SQLite."""


class Queries:
    """What both stores' connections offer the methods they share: statements written
    once, with `?` placeholders, datetimes and booleans as parameters (SQLite's side
    turns a datetime into its stored text; PostgreSQL's numbers the placeholders), rows
    read by column name (times come back as text or as datetimes: `from_db` takes both).
    The parts of each area written in SQL that both databases read alike live in a
    mixin on this class; what differs lives in each store's own part."""

    tz: tzinfo
    archiving: bool
    # A row whose JSON list of prefectures holds the code given, or is empty.
    prefecture_match: str

    # Appended to a SELECT whose row the transaction will change: PostgreSQL locks it
    # against other hosts; SQLite's BEGIN IMMEDIATE has locked the database already.
    for_update: str
    # Appended to a SELECT of rows to claim: PostgreSQL skips rows another host is
    # claiming (and locks its own); SQLite's BEGIN IMMEDIATE has locked the database.
    skip_locked: str
    # Whether this process claims alone (SQLite: one process owns the file, under the
    # state directory's lock), so that at start-up every claim left by a crash is its own.
    sole_claimer: bool
    # Counts a change to the subscribers (every host's cached audience is stale).
    bump_version_sql: str

    def contains(self, column: str) -> str:
        """A row whose JSON list in `column` holds the value given."""
        raise NotImplementedError

    @staticmethod
    def storable(text: str) -> str:
        """Text as this database can hold it (SQLite: any)."""
        return text

    async def _bump_subscribers(self, tx: Tx, now: datetime) -> None:
        """Count a change to the subscribers, in the same transaction, so that every
        process and host (the daemon, a CLI import) knows its cached audience is stale."""
        await tx.execute(self.bump_version_sql, (SUBSCRIBERS_VERSION, now))

    def transaction(self, *, commit: bool = True,
                    lock: str | None = None) -> AbstractAsyncContextManager[Tx]:
        """A transaction, committed at the end (rolled back on an error, or always with
        `commit=False`: a dry run). `lock` names a table no other writer may change
        meanwhile (SQLite's transactions lock the whole database anyway)."""
        raise NotImplementedError

    async def _one(self, sql: str, params: Sequence[Any] = ()) -> Row | None:
        raise NotImplementedError

    async def _all(self, sql: str, params: Sequence[Any] = ()) -> Sequence[Row]:
        raise NotImplementedError

    async def _write(self, sql: str, params: Sequence[Any] = ()) -> int:
        raise NotImplementedError

    async def _page(self, table: str, where: list[str], params: list[Any], order: str,
                    limit: int, offset: int) -> tuple[Sequence[Row], int]:
        """One page of a listing and the total it is a page of."""
        clause = f"WHERE {' AND '.join(where)}" if where else ""
        total = await self._one(f"SELECT COUNT(*) AS n FROM {table} {clause}", params)
        rows = await self._all(f"SELECT * FROM {table} {clause} ORDER BY {order} "
                               f"LIMIT ? OFFSET ?", [*params, limit, offset])
        return rows, int(total["n"]) if total else 0


def marks(values: Sequence[Any]) -> str:
    """`?, ?, ?` for an IN list (both databases read it)."""
    return ", ".join("?" for _ in values)


def _arg(value: Any) -> Any:
    return to_db(value) if isinstance(value, datetime) else value


def sqlite_args(params: Sequence[Any]) -> list[Any]:
    """Shared statements pass datetimes; SQLite keeps them as fixed-width UTC text."""
    return [_arg(v) for v in params]


class SqliteBase(Queries):
    """One connection shared by every loop; `transaction()` and `_tx_sync()` serialise
    transactions on it with a lock."""

    prefecture_match = PREFECTURE_MATCH
    for_update = ""
    skip_locked = ""
    sole_claimer = True
    bump_version_sql = ("INSERT INTO control (key, value, updated_at) VALUES (?, '1', ?) "
                        "ON CONFLICT (key) DO UPDATE SET value = CAST(value AS INTEGER) + 1, "
                        "updated_at = excluded.updated_at")

    def contains(self, column: str) -> str:
        return f"EXISTS (SELECT 1 FROM json_each({column}) WHERE value = ?)"

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
            return await fetch_one(self._db, sql, sqlite_args(params))

    async def _write(self, sql: str, params: Sequence[Any] = ()) -> int:
        """One statement, atomic on its own (autocommit): one trip to the database thread
        instead of two. Returns the number of rows it changed. (The cursor is left to be
        collected rather than closed: a close is one more trip.)"""
        async with self._lock:
            cur = await self._db.execute(sql, sqlite_args(params))
            return cur.rowcount

    async def _page(self, table: str, where: list[str], params: list[Any], order: str,
                    limit: int, offset: int) -> tuple[list[aiosqlite.Row], int]:
        """One page of a listing and the total it is a page of."""
        clause = f"WHERE {' AND '.join(where)}" if where else ""
        total = await self._one(f"SELECT COUNT(*) AS n FROM {table} {clause}", params)
        rows = await self._all(f"SELECT * FROM {table} {clause} ORDER BY {order} "
                               f"LIMIT ? OFFSET ?", [*params, limit, offset])
        return rows, int(total["n"]) if total else 0

    async def _all(self, sql: str, params: Sequence[Any] = ()) -> list[aiosqlite.Row]:
        async with self._lock:
            return await fetch_all(self._db, sql, sqlite_args(params))


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
            cur = await self._db.execute(sql, sqlite_args(params))
        except sqlite3.IntegrityError as exc:
            if "UNIQUE" in str(exc):
                raise Duplicate(str(exc)) from exc
            raise
        return cur.rowcount

    async def one(self, sql: str, params: Sequence[Any] = ()) -> Row | None:
        try:
            return await fetch_one(self._db, sql, sqlite_args(params))
        except sqlite3.IntegrityError as exc:  # INSERT … RETURNING
            if "UNIQUE" in str(exc):
                raise Duplicate(str(exc)) from exc
            raise

    async def all(self, sql: str, params: Sequence[Any] = ()) -> Sequence[Row]:
        return await fetch_all(self._db, sql, sqlite_args(params))

    async def many(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        await self._db.executemany(sql, [sqlite_args(r) for r in rows])

    async def notify(self, what: str) -> None:
        """One process on SQLite: its loops are woken directly."""
