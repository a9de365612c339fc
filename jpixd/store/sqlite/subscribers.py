"""SQLite: the audience a fan-out reads inside its transaction, on the database thread
(cached until the subscribers change)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import aiosqlite

from jpixd.model import Subscriber, SubscriberStatus
from jpixd.store.base import (
    tlist,
)
from jpixd.store.sqlite.base import SqliteBase
from jpixd.store.subscribers import _VERSION_KEY, SubscriberQueries


class SubscriberStore(SubscriberQueries, SqliteBase):
    def __init__(self, db: aiosqlite.Connection, path: Path) -> None:
        super().__init__(db, path)
        # (version, audience): see _audience.
        self._audience_cache: tuple[int, list[Subscriber]] | None = None

    def _audience(self, conn: sqlite3.Connection) -> tuple[list[Subscriber], frozenset[str]]:
        """Active subscribers (the fields matching needs) and suppressed addresses, read
        inside the caller's transaction (on the database thread). The parsed subscribers
        are kept until the version counter moves: a fan-out to 100k then costs one small
        query instead of 100k rows."""
        row = conn.execute("SELECT value FROM control WHERE key = ?", (_VERSION_KEY,)).fetchone()
        version = int(row["value"]) if row else 0
        cached = self._audience_cache
        if cached is None or cached[0] != version:
            cached = (version, self._load_audience(conn))
            self._audience_cache = cached
        suppressed = conn.execute("SELECT email FROM suppressions WHERE lifted_at IS NULL")
        return cached[1], frozenset(r["email"] for r in suppressed)

    @staticmethod
    def _load_audience(conn: sqlite3.Connection) -> list[Subscriber]:
        cur = conn.execute(
            "SELECT id, email, carriers, prefectures, kinds, services, windows, "
            "failure_respects_windows FROM subscribers "
            "WHERE deleted_at IS NULL AND status = 'active' AND paused = 0")
        cur.row_factory = None  # plain tuples: 100k rows convert faster than Row
        rows = cur.fetchall()
        active = SubscriberStatus.ACTIVE
        return [
            Subscriber(id=r[0], email=r[1], carriers=tlist(r[2]), prefectures=tlist(r[3]),
                       kinds=tlist(r[4]), services=tlist(r[5]), windows=tlist(r[6]),
                       failure_respects_windows=bool(r[7]), status=active)
            for r in rows
        ]
