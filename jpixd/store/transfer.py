"""One SQLite database copied whole into an empty PostgreSQL one (`jpixd migrate-to`):
the move from one host to several (README: Several hosts).

Every table is copied row for row, ids included, so that what refers to a row (a
delivery's notice, a case's bounce, a subscriber's manage link) still finds it; the
identity counters then continue after the largest id. The copy is one PostgreSQL
transaction: it is whole or absent. The two schemas describe the same tables and columns
(each store's migrations); only the types differ, and each value is turned into its
PostgreSQL type here, by the column's declared type.
"""

from __future__ import annotations

import asyncio
import graphlib
import json
import sqlite3
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import asyncpg

from jpixd.store.pg.base import PgBase

# Each side keeps its own migration history.
OWN_HISTORY = {"schema_migrations"}
# PostgreSQL's alone: the hosts of a cluster, filled in as they start.
TARGET_ONLY = {"hosts"}
# Written by opening the target (the archive switch): the source's rows replace them.
REPLACED = {"control"}

BATCH = 5000


class TransferRefused(Exception):
    """The copy cannot be made as asked (nothing was written); the text says why."""


@dataclass(frozen=True)
class Column:
    name: str
    pg_type: str


@dataclass(frozen=True)
class Table:
    name: str
    columns: tuple[Column, ...]
    rows: int  # in the source
    identity: str | None  # the column whose counter continues after the copy


@contextmanager
def read_source(path: Path) -> Iterator[sqlite3.Connection]:
    """The SQLite database read-only, in one read transaction (one consistent view)."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, check_same_thread=False)
    try:
        conn.execute("BEGIN")
        yield conn
    finally:
        conn.close()


async def plan(source: sqlite3.Connection, target: asyncpg.Connection[Any]) -> list[Table]:
    """The tables to copy, parents before children, with their row counts; refused when
    the two schemas do not describe the same columns or the target already holds data."""

    def source_tables() -> dict[str, tuple[list[str], int]]:
        names = [r[0] for r in source.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")]
        out = {}
        for name in names:
            cols = [r[1] for r in source.execute(f'PRAGMA table_info("{name}")')]
            count = source.execute(f'SELECT COUNT(*) FROM "{name}"').fetchone()[0]
            out[name] = (cols, int(count))
        return out

    have = await asyncio.to_thread(source_tables)
    columns: dict[str, list[Column]] = {}
    identity: dict[str, str] = {}
    for r in await target.fetch(
            "SELECT table_name, column_name, data_type, is_identity "
            "FROM information_schema.columns WHERE table_schema = current_schema() "
            "ORDER BY table_name, ordinal_position"):
        columns.setdefault(r["table_name"], []).append(Column(r["column_name"], r["data_type"]))
        if r["is_identity"] == "YES":
            identity[r["table_name"]] = r["column_name"]
    wanted = set(columns) - OWN_HISTORY - TARGET_ONLY
    problems = [f"table {t} is in PostgreSQL's schema, not in SQLite's"
                for t in sorted(wanted - set(have))]
    problems += [f"table {t} is in SQLite's schema, not in PostgreSQL's"
                 for t in sorted(set(have) - wanted - OWN_HISTORY)]
    for t in sorted(wanted & set(have)):
        pg_cols = {c.name for c in columns[t]}
        lite_cols = set(have[t][0])
        if pg_cols != lite_cols:
            problems.append(f"table {t}: columns only in SQLite {sorted(lite_cols - pg_cols)}, "
                            f"only in PostgreSQL {sorted(pg_cols - lite_cols)}")
    if problems:
        raise TransferRefused("the two schemas differ (is this jpixd's own database, at "
                              "this release's schema?): " + "; ".join(problems))
    busy = []
    for t in sorted(wanted - REPLACED):
        if await target.fetchval(f'SELECT EXISTS (SELECT 1 FROM "{t}")'):
            busy.append(t)
    if busy:
        raise TransferRefused("the PostgreSQL database already holds data (in "
                              f"{', '.join(busy)}): the copy goes into an empty database "
                              "only, so that nothing there is mixed with or lost under it")
    order = graphlib.TopologicalSorter({t: set() for t in wanted})
    for r in await target.fetch(
            "SELECT conrelid::regclass::text AS child, confrelid::regclass::text AS parent "
            "FROM pg_constraint WHERE contype = 'f' AND connamespace = "
            "current_schema()::regnamespace"):
        if r["child"] in wanted and r["parent"] in wanted and r["child"] != r["parent"]:
            order.add(r["child"], r["parent"])
    return [Table(t, tuple(columns[t]), have[t][1], identity.get(t))
            for t in order.static_order()]


# PostgreSQL's text holds no NUL (SQLite's does): kept in place, visibly, as the
# PostgreSQL store keeps it.
_text = PgBase.storable


def _json(value: Any) -> str:
    def clean(v: Any) -> Any:
        if isinstance(v, str):
            return _text(v)
        if isinstance(v, list):
            return [clean(x) for x in v]
        if isinstance(v, dict):
            return {_text(k): clean(x) for k, x in v.items()}
        return v

    return json.dumps(clean(json.loads(value)), ensure_ascii=False)


def _time(value: Any) -> datetime:
    out = datetime.fromisoformat(str(value))
    if out.tzinfo is None:  # the SQLite store writes every time with its offset
        raise ValueError(f"{value!r} has no UTC offset")
    return out


_CONVERT: dict[str, Callable[[Any], Any]] = {
    "timestamp with time zone": _time,
    "jsonb": _json,
    "boolean": bool,
    "bigint": int,
    "integer": int,
    "text": lambda v: _text(str(v)),
    "bytea": bytes,
}


def converter(table: Table) -> Callable[[tuple[Any, ...]], tuple[Any, ...]]:
    """A source row (in `table.columns` order) as PostgreSQL takes it; ValueError names
    the column of a value that cannot be."""
    funcs = []
    for col in table.columns:
        if col.pg_type not in _CONVERT:
            raise TransferRefused(f"table {table.name}, column {col.name}: type "
                                  f"{col.pg_type} is not known to the copy")
        funcs.append((col.name, _CONVERT[col.pg_type]))

    def convert(row: tuple[Any, ...]) -> tuple[Any, ...]:
        out = []
        for (name, func), value in zip(funcs, row, strict=True):
            try:
                out.append(None if value is None else func(value))
            except (ValueError, TypeError) as exc:
                raise ValueError(f"column {name}: {exc}") from None
        return tuple(out)

    return convert


async def _batches(source: sqlite3.Connection, table: Table) -> AsyncIterator[
        list[tuple[Any, ...]]]:
    names = ", ".join(f'"{c.name}"' for c in table.columns)
    cur = source.execute(f'SELECT {names} FROM "{table.name}" ORDER BY rowid')
    while rows := await asyncio.to_thread(cur.fetchmany, BATCH):
        yield rows


async def copy(source: sqlite3.Connection, target: asyncpg.Connection[Any],
               tables: list[Table], progress: Callable[[Table], None]) -> None:
    """Copy `tables` (from `plan`) in one transaction: whole, checked, or not at all."""
    async with target.transaction():
        for name in REPLACED:
            await target.execute(f'DELETE FROM "{name}"')
        for table in tables:
            convert = converter(table)
            copied = 0
            async for rows in _batches(source, table):
                records = []
                for row in rows:
                    try:
                        records.append(convert(row))
                    except ValueError as exc:
                        raise TransferRefused(f"table {table.name}, row {copied + 1}: "
                                              f"{exc}") from None
                    copied += 1
                try:
                    await target.copy_records_to_table(
                        table.name, records=records, columns=[c.name for c in table.columns])
                except asyncpg.PostgresError as exc:
                    raise TransferRefused(f"table {table.name}: PostgreSQL refused a row: "
                                          f"{exc}") from None
            if copied != table.rows:
                raise TransferRefused(f"table {table.name}: {copied} rows read, "
                                      f"{table.rows} counted")
            landed = await target.fetchval(f'SELECT COUNT(*) FROM "{table.name}"')
            if landed != table.rows:
                raise TransferRefused(f"table {table.name}: {landed} rows in PostgreSQL, "
                                      f"{table.rows} in SQLite")
            if table.identity is not None:
                # The next row gets the next number after the largest copied one.
                await target.execute(
                    f"SELECT setval(pg_get_serial_sequence('\"{table.name}\"', "
                    f"'{table.identity}'), COALESCE(MAX(\"{table.identity}\"), 0) + 1, false) "
                    f'FROM "{table.name}"')
            progress(table)
