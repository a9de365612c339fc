"""The Store on SQLite (WAL) through aiosqlite.

Its public methods speak the domain (datetimes, dataclasses, plain dicts), never rows or
SQL, so that a PostgreSQL implementation can stand beside it. All loops share one
connection; `_tx()` serialises transactions on it with a lock because aiosqlite would
otherwise interleave two tasks' statements inside one BEGIN … COMMIT.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiosqlite

from jpixd.model import DeliveryState, SendingState
from jpixd.store import migrate


class StoreError(Exception):
    """The database could not be opened or answered with an error."""


def to_db(dt: datetime) -> str:
    """Fixed-width UTC text, so that text order is time order."""
    if dt.tzinfo is None:
        raise ValueError("naive datetime given to the store")
    return dt.astimezone(UTC).isoformat(timespec="microseconds")


def from_db(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text) if text else None


_SENDING_KEY = "sending"


class Store:
    def __init__(self, db: aiosqlite.Connection, path: Path) -> None:
        self._db = db
        self._lock = asyncio.Lock()
        self.path = path

    # ------------------------------------------------------------------ lifecycle

    @classmethod
    async def open(cls, path: Path) -> Store:
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            db = await aiosqlite.connect(str(path), isolation_level=None)
        except Exception as exc:
            raise StoreError(f"cannot open database {path}: {exc}") from exc
        db.row_factory = aiosqlite.Row
        try:
            # WAL lets readers (admin API, metrics) run while a loop writes; NORMAL sync is
            # durable across a process crash (kill -9), which is what SPEC §2 promises.
            await db.execute("PRAGMA journal_mode=WAL")
            await db.execute("PRAGMA synchronous=NORMAL")
            await db.execute("PRAGMA foreign_keys=ON")
            await db.execute("PRAGMA busy_timeout=5000")
        except Exception as exc:
            await db.close()
            raise StoreError(f"cannot use database {path}: {exc}") from exc
        return cls(db, path)

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

    @asynccontextmanager
    async def _tx(self) -> AsyncIterator[aiosqlite.Connection]:
        async with self._lock:
            await self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                await self._db.execute("ROLLBACK")
                raise
            await self._db.execute("COMMIT")

    async def _one(self, sql: str, params: tuple[Any, ...] = ()) -> aiosqlite.Row | None:
        async with self._lock, self._db.execute(sql, params) as cur:
            row: aiosqlite.Row | None = await cur.fetchone()
            return row

    async def _all(self, sql: str, params: tuple[Any, ...] = ()) -> list[aiosqlite.Row]:
        async with self._lock, self._db.execute(sql, params) as cur:
            return list(await cur.fetchall())

    # ------------------------------------------------------------------ control state

    async def sending_state(self) -> SendingState:
        row = await self._one("SELECT value FROM control WHERE key = ?", (_SENDING_KEY,))
        if row is None:
            return SendingState(paused=False)
        data = json.loads(row["value"])
        return SendingState(
            paused=bool(data.get("paused")),
            reason=data.get("reason"),
            actor=data.get("actor"),
            since=from_db(data.get("since")),
            window_start=from_db(data.get("window_start")),
        )

    async def set_sending(self, *, paused: bool, reason: str | None, actor: str,
                          now: datetime) -> SendingState:
        """Pause or resume sending. A resume restarts the guard's window at `now`."""
        async with self._tx() as db:
            async with db.execute("SELECT value FROM control WHERE key = ?",
                                  (_SENDING_KEY,)) as cur:
                row = await cur.fetchone()
            old = json.loads(row["value"]) if row else {}
            window_start = old.get("window_start")
            if not paused and old.get("paused"):
                window_start = to_db(now)
            value = {
                "paused": paused,
                "reason": reason,
                "actor": actor,
                "since": to_db(now),
                "window_start": window_start,
            }
            await db.execute(
                "INSERT INTO control (key, value, updated_at) VALUES (?, ?, ?) "
                "ON CONFLICT (key) DO UPDATE SET value = excluded.value, "
                "updated_at = excluded.updated_at",
                (_SENDING_KEY, json.dumps(value), to_db(now)),
            )
        return await self.sending_state()

    # ------------------------------------------------------------------ outbox gauges

    async def delivery_counts(self) -> dict[DeliveryState, int]:
        rows = await self._all("SELECT state, COUNT(*) AS n FROM deliveries GROUP BY state")
        counts = dict.fromkeys(DeliveryState, 0)
        for row in rows:
            counts[DeliveryState(row["state"])] = int(row["n"])
        return counts

    async def oldest_due_since(self, now: datetime) -> datetime | None:
        """When the oldest delivery that is due (pending/retry, not_before passed) became due."""
        row = await self._one(
            "SELECT MIN(not_before) AS t FROM deliveries "
            "WHERE state IN ('pending', 'retry', 'sending') AND not_before <= ?",
            (to_db(now),),
        )
        return from_db(row["t"]) if row else None
