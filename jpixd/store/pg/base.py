"""The PostgreSQL pool, transactions and statement text that every part of the
PostgreSQL store shares (issue 16: several hosts on one database).

The parts mirror the SQLite store's, method for method, and return the same domain
objects: rows are turned into them by the same converters (`jpixd.store.base` accepts a
stored time as text or as a datetime), and JSON columns come back as text, as SQLite's
do, because asyncpg returns `jsonb` as text unless told otherwise.
"""

from __future__ import annotations

import asyncio
import functools
import re
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable, Sequence
from contextlib import asynccontextmanager
from datetime import datetime, tzinfo
from typing import Any, TypeAlias

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from jpixd.model import JST
from jpixd.store.base import Duplicate, Insert, Queries, StoreError, Tx
from jpixd.store.pg import migrate

# LISTEN/NOTIFY: what one host changed that the others should act on at once (new mail
# due, a pause or a resume), on the channel every host listens on. Sent inside the
# change's transaction: heard at its commit.
CHANNEL = "jpixd"
NOTIFY = f"SELECT pg_notify('{CHANNEL}', ?)"

# Every connection here is the pool's (a string: the class is not subscriptable at run time).
Conn: TypeAlias = "PoolConnectionProxy[asyncpg.Record]"


@functools.lru_cache(maxsize=1024)
def q(sql: str) -> str:
    """`?` placeholders, as the SQLite store writes them, numbered as PostgreSQL wants
    (`$1`, `$2`, …). Our statements never hold a `?` inside a string literal; jsonb's
    own `?` operator is not used (`@>` says the same)."""
    count = iter(range(1, 10_000))
    return re.sub(r"\?", lambda _m: f"${next(count)}", sql)


# A row whose JSON list of prefectures holds this code, or is empty.
PREFECTURE_MATCH = "(prefectures = '[]'::jsonb OR prefectures @> jsonb_build_array(?::text))"


class PgBase(Queries):
    """A pool of connections: statements of different tasks run at once on different
    connections (PostgreSQL keeps them apart), where SQLite's single connection takes
    them one at a time."""

    prefecture_match = PREFECTURE_MATCH
    for_update = " FOR UPDATE"
    greatest = "GREATEST"
    skip_locked = " FOR UPDATE SKIP LOCKED"
    due_index = ""
    sole_claimer = False  # several hosts share the database: each claims its own
    lock_sql = "SELECT pg_advisory_xact_lock(hashtextextended(?, 0))"
    notify_sql = NOTIFY
    bump_version_sql = ("INSERT INTO control (key, value, updated_at) VALUES (?, '1'::jsonb, ?) "
                        "ON CONFLICT (key) DO UPDATE SET "
                        "value = to_jsonb((control.value #>> '{}')::bigint + 1), "
                        "updated_at = excluded.updated_at")

    def contains(self, column: str) -> str:
        return f"{column} @> jsonb_build_array(?::text)"

    def text_of(self, column: str) -> str:
        return f"{column}::text"

    def each_row(self, rows: Sequence[Sequence[Any]], types: Sequence[str]
                 ) -> tuple[str, list[Any]]:
        # An array a column, unnested side by side.
        arrays = ", ".join(f"?::{t}[]" for t in types)
        names = ", ".join(f"c{i}" for i in range(len(types)))
        return (f"unnest({arrays}) AS u({names})",
                [list(column) for column in zip(*rows, strict=True)])

    def hour_of(self, column: str) -> str:
        return f"to_char({column} AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24')"

    @staticmethod
    def storable(text: str) -> str:
        """PostgreSQL's text holds no NUL (SQLite's does): a hostile one keeps its place,
        visibly."""
        return text.replace("\0", "\\x00")

    @asynccontextmanager
    async def transaction(self, *, commit: bool = True,
                          lock: str | None = None) -> AsyncIterator[Tx]:
        async with self._pool.acquire() as conn:
            tx = conn.transaction()
            await tx.start()
            try:
                if lock is not None:  # other writers wait; readers do not
                    await conn.execute(f"LOCK TABLE {lock} IN SHARE ROW EXCLUSIVE MODE")
                yield PgTx(conn)
            except BaseException:
                await tx.rollback()
                raise
            await (tx.commit() if commit else tx.rollback())

    def __init__(self, pool: asyncpg.Pool[asyncpg.Record], url: str) -> None:
        self._pool = pool
        self.url = url
        self.tz: tzinfo = JST
        self.archiving = False

    @classmethod
    async def _connect(cls, url: str, password: str | None, *, min_size: int = 2,
                       max_size: int = 10) -> asyncpg.Pool[asyncpg.Record]:
        try:
            pool = await asyncpg.create_pool(dsn=url, password=password, min_size=min_size,
                                             max_size=max_size, timeout=15,
                                             command_timeout=60)
        except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
            raise StoreError(f"cannot connect to the database: {exc}") from exc
        assert pool is not None
        return pool

    async def close(self) -> None:
        await self._pool.close()

    async def migrate(self, now: datetime,
                      migrations: list[migrate.Migration] | None = None) -> list[int]:
        async with self._pool.acquire() as conn:
            return await migrate.apply(conn, now, migrations)

    async def schema_version(self) -> int:
        async with self._pool.acquire() as conn:
            return await migrate.current_version(conn)

    async def ping(self) -> None:
        try:
            await self._pool.fetchval("SELECT 1")
        except Exception as exc:
            raise StoreError(f"database does not answer: {exc}") from exc

    @asynccontextmanager
    async def _tx(self) -> AsyncIterator[Conn]:
        async with self._pool.acquire() as conn, conn.transaction():
            yield conn

    async def _one(self, sql: str, params: Sequence[Any] = ()) -> asyncpg.Record | None:
        return await self._pool.fetchrow(q(sql), *params)

    async def _all(self, sql: str, params: Sequence[Any] = ()) -> list[asyncpg.Record]:
        return list(await self._pool.fetch(q(sql), *params))

    async def _write(self, sql: str, params: Sequence[Any] = ()) -> int:
        return rowcount(await self._pool.execute(q(sql), *params))


Rows: TypeAlias = Sequence[Sequence[Any]]


class _Parts:
    """An `Insert`'s parts as COPY's records: each part's function called in a worker
    thread while the rows of the part before it go to the server, which inserts them
    meanwhile (a 100k fan-out: its matching and the server's inserting overlapped, 0.25 s
    sooner). One part is one trip to a worker thread, as a `Work` is."""

    def __init__(self, parts: Sequence[Callable[[], Rows]]) -> None:
        self._parts = iter(parts)
        self._ahead: asyncio.Task[Rows] | None = None  # the part being worked out

    def _start_next(self) -> None:
        make = next(self._parts, None)
        self._ahead = None if make is None else asyncio.ensure_future(asyncio.to_thread(make))

    async def _take(self) -> Rows | None:
        """The part being worked out (None: there are no more), the next one started."""
        if self._ahead is None:
            return None
        part = await self._ahead
        self._start_next()
        return part

    async def first(self) -> Rows | None:
        """The first part with rows (None: no part has any)."""
        self._start_next()
        while (part := await self._take()) is not None:
            if part:
                return part
        return None

    async def records(self, same: tuple[Any, ...], part: Rows | None
                      ) -> AsyncIterator[tuple[Any, ...]]:
        while part is not None:
            for row in part:
                yield (*same, *row)
            part = await self._take()

    async def settle(self) -> None:
        """After the COPY, even one that failed midway: the part still being worked out
        is let finish (the plan is about to be closed) and read, so that the COPY's own
        error is the one raised."""
        if self._ahead is not None:
            await asyncio.wait([self._ahead])
            if not self._ahead.cancelled():
                self._ahead.exception()


def rowcount(status: str) -> int:
    """The rows a statement changed, from its status ("UPDATE 3", "INSERT 0 1")."""
    tail = status.rsplit(" ", 1)[-1]
    return int(tail) if tail.isdigit() else 0


class PgTx:
    """`Tx` on one of the pool's connections, inside its transaction."""

    def __init__(self, conn: Conn) -> None:
        self._conn = conn

    async def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        try:
            return rowcount(await self._conn.execute(q(sql), *params))
        except asyncpg.UniqueViolationError as exc:
            raise Duplicate(str(exc)) from exc

    async def one(self, sql: str, params: Sequence[Any] = ()) -> asyncpg.Record | None:
        try:
            return await self._conn.fetchrow(q(sql), *params)
        except asyncpg.UniqueViolationError as exc:  # INSERT … RETURNING
            raise Duplicate(str(exc)) from exc

    async def all(self, sql: str, params: Sequence[Any] = ()) -> list[asyncpg.Record]:
        return list(await self._conn.fetch(q(sql), *params))

    async def many(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        if rows:
            await self._conn.executemany(q(sql), rows)

    async def insert(self, rows: Insert) -> None:
        same = tuple(rows.same.values())
        if rows.parts is None:
            if rows.rows:
                await self._copy(rows, [(*same, *row) for row in rows.rows])
            return
        parts = _Parts(rows.parts)
        try:
            first = await parts.first()
            if first is not None:  # no COPY, no round trip, for a fan-out to nobody
                await self._copy(rows, parts.records(same, first))
        finally:
            await parts.settle()

    async def _copy(self, rows: Insert,
                    records: Iterable[tuple[Any, ...]] | AsyncIterable[tuple[Any, ...]]
                    ) -> None:
        await self._conn.copy_records_to_table(
            rows.table, columns=[*rows.same, *rows.columns], records=records)

    async def notify(self, what: str) -> None:
        await self._conn.execute(q(NOTIFY), what)
