"""PostgreSQL: subscribers (the same rules as `jpixd.store.subscribers`, whose pure
helpers decide what an update is and does) and the audience a fan-out reads."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any

import asyncpg

from jpixd.model import Subscriber, SubscriberStatus
from jpixd.store.base import Conflict, tlist
from jpixd.store.pg.base import Conn, PgBase, q
from jpixd.store.pg.control import VERSION_KEY, bump_subscribers_version, log_change
from jpixd.store.subscribers import (
    INSERT_RETURNING,
    SKIP_PENDING,
    UPDATE_SETS,
    ImportResult,
    SubscriberQueries,
    _row_to_subscriber,
    _same,
    _what,
    plan_import,
    values_of,
)
from jpixd.subscribers import unsent_mail_after


class PgSubscriberStore(SubscriberQueries, PgBase):
    _audience_cache: tuple[int, list[Subscriber]] | None = None

    async def create_subscriber(self, sub: Subscriber, now: datetime, *,
                                actor: str = "admin") -> Subscriber:
        async with self._tx() as conn:
            new_id = await self._insert_subscriber(conn, sub, now)
            await log_change(conn, new_id, actor, "created", f"status: {sub.status}", now)
        created = await self.get_subscriber(new_id)
        assert created is not None
        return created

    async def _insert_subscriber(self, conn: Conn, sub: Subscriber, now: datetime) -> int:
        try:
            # A savepoint: a duplicate address fails this insert, not the caller's
            # transaction (PostgreSQL aborts a whole transaction on an error).
            async with conn.transaction():
                new_id = await conn.fetchval(q(INSERT_RETURNING), *values_of(sub), now, now)
        except asyncpg.UniqueViolationError as exc:
            raise Conflict(f"a subscriber with address {sub.email} already exists") from exc
        await bump_subscribers_version(conn, now)
        return int(new_id)

    async def update_subscriber(self, subscriber_id: int, changes: dict[str, Any],
                                now: datetime, *, actor: str = "admin") -> Subscriber | None:
        async with self._tx() as conn:
            row = await conn.fetchrow(q("SELECT * FROM subscribers WHERE id = ? AND "
                                        "deleted_at IS NULL FOR UPDATE"), subscriber_id)
            if row is None:
                return None
            old = _row_to_subscriber(row)
            new = replace(old, **changes)
            if not _same(old, new):
                await self._write_update(conn, old, new, now, actor)
        return await self.get_subscriber(subscriber_id)

    async def _write_update(self, conn: Conn, old: Subscriber, new: Subscriber,
                            now: datetime, actor: str) -> None:
        assert old.id is not None
        await log_change(conn, old.id, actor, *_what(old, new), now)
        try:
            async with conn.transaction():
                await conn.execute(q(f"UPDATE subscribers SET {UPDATE_SETS}, updated_at = ? "
                                     "WHERE id = ?"), *values_of(new), now, old.id)
        except asyncpg.UniqueViolationError as exc:
            raise Conflict(f"a subscriber with address {new.email} already exists") from exc
        await bump_subscribers_version(conn, now)
        effect = unsent_mail_after(old, new)
        if effect is not None and effect[0] == "skip":
            await conn.execute(q(SKIP_PENDING), effect[1], now, old.id)
        elif effect is not None:
            await conn.execute(q("UPDATE deliveries SET email = ?, updated_at = ? "
                                 "WHERE subscriber_id = ? AND state IN ('pending', 'retry')"),
                               new.email, now, old.id)

    async def delete_subscriber(self, subscriber_id: int, now: datetime, *,
                                actor: str = "admin") -> bool:
        async with self._tx() as conn:
            status = await conn.execute(q("UPDATE subscribers SET deleted_at = ?, "
                                          "updated_at = ? WHERE id = ? AND deleted_at IS NULL"),
                                        now, now, subscriber_id)
            if status.endswith(" 0"):
                return False
            await log_change(conn, subscriber_id, actor, "deleted", "", now)
            await bump_subscribers_version(conn, now)
            await conn.execute(q(SKIP_PENDING), "subscriber deleted", now, subscriber_id)
        return True

    async def import_subscribers(self, rows: Sequence[tuple[Subscriber, frozenset[str]]],
                                 now: datetime, *, dry_run: bool = False,
                                 reactivate: bool = False) -> ImportResult:
        """As on SQLite: one transaction, rolled back on a dry run."""
        async with self._pool.acquire() as conn:
            tx = conn.transaction()
            await tx.start()
            try:
                # One import at a time across hosts, like SQLite's BEGIN IMMEDIATE.
                await conn.execute("LOCK TABLE subscribers IN SHARE ROW EXCLUSIVE MODE")
                existing = {r["email"]: _row_to_subscriber(r) for r in await conn.fetch(
                    "SELECT * FROM subscribers WHERE deleted_at IS NULL")}
                plan = plan_import(existing, rows, reactivate)
                if plan.new:
                    await conn.executemany(q(INSERT_RETURNING), [[*values_of(s), now, now]
                                                        for s in plan.new])
                await bump_subscribers_version(conn, now)
                for old, target in plan.updates:
                    await self._write_update(conn, old, target, now, "import")
            except BaseException:
                await tx.rollback()
                raise
            await (tx.rollback() if dry_run else tx.commit())
        return plan.result()

    async def signup(self, sub: Subscriber, now: datetime) -> tuple[Subscriber, bool]:
        async with self._tx() as conn:
            row = await conn.fetchrow(q("SELECT * FROM subscribers WHERE email = ? AND "
                                        "deleted_at IS NULL"), sub.email)
            if row is not None:
                return _row_to_subscriber(row), False
            pending = replace(sub, status=SubscriberStatus.PENDING, paused=False)
            new_id = await self._insert_subscriber(conn, pending, now)
            await log_change(conn, new_id, "self-service", "created", "status: pending", now)
        created = await self.get_subscriber(new_id)
        assert created is not None
        return created, True

    async def _audience(self, conn: Conn) -> tuple[list[Subscriber], frozenset[str]]:
        """Active subscribers and suppressed addresses, read in the caller's transaction,
        the parsed subscribers kept until the version counter moves (on any host)."""
        raw = await conn.fetchval(q("SELECT value #>> '{}' FROM control WHERE key = ?"),
                                  VERSION_KEY)
        version = int(raw) if raw else 0
        cached = self._audience_cache
        if cached is None or cached[0] != version:
            rows = await conn.fetch(
                "SELECT id, email, carriers::text, prefectures::text, kinds::text, "
                "services::text, windows::text, failure_respects_windows FROM subscribers "
                "WHERE deleted_at IS NULL AND status = 'active' AND NOT paused")
            active = SubscriberStatus.ACTIVE
            cached = (version, [
                Subscriber(id=r[0], email=r[1], carriers=tlist(r[2]), prefectures=tlist(r[3]),
                           kinds=tlist(r[4]), services=tlist(r[5]), windows=tlist(r[6]),
                           failure_respects_windows=r[7], status=active) for r in rows])
            self._audience_cache = cached
        suppressed = await conn.fetch("SELECT email FROM suppressions WHERE lifted_at IS NULL")
        return cached[1], frozenset(r[0] for r in suppressed)
