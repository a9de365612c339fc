"""What both databases' stores share: rows, errors, how times and lists are stored, the
`Tx` and `Queries` every shared statement is written against (the SQLite driver is in
`jpixd.store.sqlite.base`, PostgreSQL's in `jpixd.store.pg.base`)."""

from __future__ import annotations

import asyncio
import functools
import json
from collections.abc import Callable, Generator, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from typing import Any, Generic, Protocol, TypeVar

T = TypeVar("T")
W = TypeVar("W")


class Row(Protocol):
    """A row by column name: SQLite's rows and PostgreSQL's records alike, so that both
    stores turn rows into domain objects with the same functions."""

    def __getitem__(self, key: str, /) -> Any: ...


class StoreError(Exception):
    """The database could not be opened or answered with an error."""


class Conflict(StoreError):
    """The change would break a uniqueness rule (e.g. a second live subscriber per address)."""


@functools.lru_cache(maxsize=256)
def to_db(dt: datetime) -> str:
    """Fixed-width UTC text, so that text order is time order. Memoised: a batch's rows
    carry the same few moments (a claim's, a "sent" group's), each made text once."""
    if dt.tzinfo is None:
        raise ValueError("naive datetime given to the store")
    return dt.astimezone(UTC).isoformat(timespec="microseconds")


# A stored time's text parsed once: rows read together (a claim's 400) carry the same few
# times (created, updated, due), and a datetime cannot change under whoever holds it.
_parsed = functools.lru_cache(maxsize=1024)(datetime.fromisoformat)


def from_db(text: str | datetime | None) -> datetime | None:
    """A stored time: SQLite's text, or PostgreSQL's timestamptz as it arrives."""
    if isinstance(text, datetime):
        return text
    return _parsed(text) if text else None


def from_db_req(text: str | datetime) -> datetime:
    return text if isinstance(text, datetime) else _parsed(text)


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

# The one outbox's two kinds of row (issue 24): a notice's mail and its reminders, and
# self-service mail (a sign-up's confirmation, a manage link), which has no notice.
# Migration 0019's partial indexes repeat SELF_SERVICE word for word.
NOTICE_MAIL = "purpose IN ('notice', 'reminder')"
SELF_SERVICE = "purpose IN ('confirm', 'manage')"

# Every address that is not sent to now.
SUPPRESSED_ADDRESSES = "SELECT email FROM suppressions WHERE lifted_at IS NULL"

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

    async def insert(self, rows: Insert) -> None:
        """Many rows into one table in one statement (see `Insert`)."""


@dataclass(frozen=True)
class Step:
    """One statement of a plan: with `rows`, what it returns is sent back into the plan;
    without, the number of rows it changed. With `many`, the statement once for each
    parameter row (nothing is sent back)."""

    sql: str
    params: Sequence[Any] = ()
    rows: bool = True
    many: Sequence[Sequence[Any]] | None = None


@dataclass(frozen=True)
class Insert:
    """Many rows into one table at once (a fan-out's 76,000 deliveries): SQLite a few
    multi-row INSERTs, PostgreSQL COPY. `same` holds the columns every row shares, given
    once; each of `rows` holds the values of `columns`, times as `Queries.stored_time`
    gives them (SQLite's rows are bound as they are). Nothing is sent back.

    In place of `rows`, `parts`: functions that each give a part of them (pure work, as
    `Work`'s), called in order, one at a time, each next one in another thread while the
    part before it is written — PostgreSQL's COPY sends it and the server inserts it,
    SQLite runs its statement without the GIL — so that a 100k fan-out's matching overlaps
    the database's work. A single part is worked out as a `Work` would be."""

    table: str
    same: Mapping[str, Any]
    columns: Sequence[str]
    rows: Sequence[Sequence[Any]] = ()
    parts: Sequence[Callable[[], Sequence[Sequence[Any]]]] | None = None


@dataclass(frozen=True)
class Work(Generic[W]):
    """Pure work between a plan's statements (a fan-out's channel messages; its mail is
    matched by the parts of its `Insert`), its result sent back: SQLite does it on its
    database thread within the plan's one trip, PostgreSQL in a worker thread; either way
    the event loop stays free meanwhile."""

    fn: Callable[[], W]


# A transaction written once, for both databases: the statements and the decisions
# between them, as a generator that yields each `Step` (or `Insert`, or `Work`) and is
# sent its result. Each driver runs it its own way (`Queries.run_plan`): SQLite in one
# trip to its thread, PostgreSQL a statement at a time on one connection.
Plan = Generator[Step | Insert | Work[Any], Any, T]


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
    # Follows `FROM deliveries` in the claim's read of due rows. SQLite's planner, which
    # has no statistics, prefers the state index and sorts every due row on each claim
    # (5 ms a claim with 20,000 due, growing with the backlog); the partial index
    # `deliveries_due` gives them in claim order. PostgreSQL's planner finds it alone.
    due_index: str
    # Whether this process claims alone (SQLite: one process owns the file, under the
    # state directory's lock), so that at start-up every claim left by a crash is its own.
    sole_claimer: bool
    # Counts a change to the subscribers (every host's cached audience is stale).
    bump_version_sql: str
    # The larger of two values in one row: SQLite's scalar MAX, PostgreSQL's GREATEST.
    greatest: str
    # Takes a lock named by the text given, held to the commit, for where several hosts
    # write (not `sole_claimer`): PostgreSQL's hosts wait for each other on it. Unused on
    # SQLite, whose BEGIN IMMEDIATE has locked the whole database.
    lock_sql: str
    # Tells every host, at the commit, the text given (PostgreSQL's NOTIFY; "" on
    # SQLite, whose one process wakes its loops directly).
    notify_sql: str
    # A fan-out's archive records (`jpixd.store.archive`): its new deliveries, chunked,
    # given the revision's id; the deliveries it superseded, given the notice's id and
    # the moment.
    created_records_sql: str
    superseded_records_sql: str

    def contains(self, column: str) -> str:
        """A row whose JSON list in `column` holds the value given."""
        raise NotImplementedError

    def text_of(self, column: str) -> str:
        """A JSON column read as its text (SQLite keeps it as text already)."""
        return column

    def each_row(self, rows: Sequence[Sequence[Any]], types: Sequence[str]
                 ) -> tuple[str, list[Any]]:
        """`rows` as a row source to join (`… FROM {source} …`), its columns `u.c0`,
        `u.c1`, …, and the parameters it takes: a statement for many rows, not a
        statement a row. `types` are PostgreSQL's names of the columns' types."""
        raise NotImplementedError

    def hour_of(self, column: str) -> str:
        """A time column's UTC hour as text, "2026-11-29T12" (SQLite's stored text is
        fixed-width UTC: its first 13 characters)."""
        return f"substr({column}, 1, 13)"

    @staticmethod
    def stored_time(dt: datetime) -> Any:
        """A time as an `Insert`'s rows carry it (SQLite: its stored text)."""
        return dt

    async def run_plan(self, plan: Plan[T]) -> T:
        """Run a plan in one transaction, a statement at a time (PostgreSQL; SQLite runs
        the whole plan in one trip to its database thread). A statement that fails is
        thrown into the plan, which may handle it (roll back to a savepoint)."""
        async with self.transaction() as tx:
            try:
                step = next(plan)
                while True:
                    result: Any = None
                    try:
                        if isinstance(step, Work):
                            result = await asyncio.to_thread(step.fn)
                        elif isinstance(step, Insert):
                            await tx.insert(step)
                        elif step.many is not None:
                            await tx.many(step.sql, step.many)
                        elif step.rows:
                            result = await tx.all(step.sql, step.params)
                        else:
                            result = await tx.execute(step.sql, step.params)
                    except Exception as exc:  # the plan's to handle, or to let through
                        step = plan.throw(exc)
                        continue
                    step = plan.send(result)
            except StopIteration as done:
                value: T = done.value
                return value

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
