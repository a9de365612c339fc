"""PostgreSQL: notices and their revisions, recorded with their deliveries in one
transaction (SPEC §2), the deliveries written with COPY."""

from __future__ import annotations

import asyncio
import json
from datetime import datetime

from jpixd.fanout import retires
from jpixd.model import OPEN_STATUSES, Change, Notice, Revision, StoredNotice, notice_to_json
from jpixd.store.base import jlist, where_equal
from jpixd.store.notices import Planner, RecordResult, _row_to_notice
from jpixd.store.pg.archive import created_records, superseded_records
from jpixd.store.pg.base import (
    DELIVERIES,
    PREFECTURE_MATCH,
    Conn,
    PgBase,
    execute,
    notify,
    q,
)
from jpixd.store.pg.subscribers import PgSubscriberStore

_UPSERT = """
INSERT INTO notices (source, external_id, carrier, kind, status, title, body, starts_at,
                     ends_at, prefectures, localities, services, url, report_number, revision,
                     first_seen, last_changed, last_seen, windows, fingerprint)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?::jsonb, ?::jsonb, ?::jsonb, ?, ?, ?, ?, ?, ?, ?::jsonb, ?)
ON CONFLICT (source, external_id) DO UPDATE SET
    carrier = excluded.carrier, kind = excluded.kind, status = excluded.status,
    title = excluded.title, body = excluded.body, starts_at = excluded.starts_at,
    ends_at = excluded.ends_at, prefectures = excluded.prefectures,
    localities = excluded.localities, services = excluded.services, url = excluded.url,
    report_number = excluded.report_number, revision = excluded.revision,
    last_changed = excluded.last_changed, last_seen = excluded.last_seen,
    windows = excluded.windows, fingerprint = excluded.fingerprint
RETURNING id, first_seen
"""

_DELIVERY_COLUMNS = ("revision_id", "notice_id", "subscriber_id", "email", "purpose", "slot",
                     "priority", "state", "not_before", "created_at", "updated_at",
                     "first_due_at")


async def _remember_key(conn: Conn, source: str, key: str, notice_id: int,
                        fingerprint: str | None, report_number: int | None) -> None:
    await conn.execute(q(
        "INSERT INTO notice_keys (source, key, notice_id, fingerprint, report_number) "
        "VALUES (?, ?, ?, ?, ?) ON CONFLICT (source, key) DO UPDATE SET "
        "notice_id = excluded.notice_id, "
        "fingerprint = COALESCE(excluded.fingerprint, notice_keys.fingerprint), "
        "report_number = COALESCE(excluded.report_number, notice_keys.report_number)"),
        source, key, notice_id, fingerprint, report_number)


class PgNoticeStore(PgSubscriberStore, PgBase):
    async def notice_by_key(self, source: str, key: str) -> StoredNotice | None:
        row = await self._one("SELECT n.* FROM notice_keys k JOIN notices n "
                              "ON n.id = k.notice_id WHERE k.source = ? AND k.key = ?",
                              (source, key))
        return _row_to_notice(row) if row else None

    async def open_notices(self, source: str, *,
                           withdrawn: bool = False) -> list[StoredNotice]:
        from jpixd.model import NoticeStatus
        statuses = sorted(OPEN_STATUSES | ({NoticeStatus.WITHDRAWN} if withdrawn else set()))
        rows = await self._all("SELECT * FROM notices WHERE source = ? AND "
                               "status = ANY(?::text[]) ORDER BY id",
                               (source, [str(s) for s in statuses]))
        return [_row_to_notice(r) for r in rows]

    async def get_notice(self, notice_id: int) -> StoredNotice | None:
        row = await self._one("SELECT * FROM notices WHERE id = ?", (notice_id,))
        return _row_to_notice(row) if row else None

    async def record_revision(self, notice: Notice, *, revision: str, change: Change,
                              now: datetime, planner: Planner,
                              fingerprint: str | None = None,
                              key: str | None = None) -> RecordResult:
        """As on SQLite. Two hosts recording the same notice at once take turns on its
        row (the upsert locks it), so one revision follows the other."""
        n = notice
        async with self._tx() as conn:
            # One host records a notice at a time (its key's lock, held to the commit).
            # A revision another host has just recorded is not recorded again: a poll
            # that overlapped a change of leader must not mail a notice twice.
            await conn.execute("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))",
                               f"{n.source}\x1f{n.external_id}")
            same = await conn.fetchrow(q(
                "SELECT r.notice_id, r.id FROM notices n JOIN notice_revisions r "
                "ON r.notice_id = n.id WHERE n.source = ? AND n.external_id = ? "
                "AND n.revision = ? AND r.revision = ? AND r.change = ? "
                "ORDER BY r.id DESC LIMIT 1"),
                n.source, n.external_id, revision, revision, str(change))
            if same is not None:
                return RecordResult(int(same[0]), int(same[1]), 0, 0, 0, 0)
            row = await conn.fetchrow(q(_UPSERT),
                n.source, n.external_id, n.carrier, str(n.kind), str(n.status), n.title,
                n.body, n.starts_at, n.ends_at, jlist(n.prefectures), jlist(n.localities),
                jlist(n.services), n.url, n.report_number, revision, now, now, now,
                json.dumps([w.to_json() for w in n.windows]), fingerprint)
            assert row is not None
            notice_id = int(row["id"])
            await _remember_key(conn, n.source, key or n.external_id, notice_id, fingerprint,
                                n.report_number)
            revision_id = int(await conn.fetchval(q(
                "INSERT INTO notice_revisions (notice_id, revision, change, content, mailed, "
                "seen_at) VALUES (?, ?, ?, ?::jsonb, ?, ?) RETURNING id"),
                notice_id, revision, str(change),
                json.dumps(notice_to_json(n), ensure_ascii=False), change.mailed, now))
            superseded = cancelled = 0
            fresh = change in (Change.NEW, Change.BASELINE) and row["first_seen"] == now
            supersede, why = retires(change, n.status, first_seen=fresh)
            if supersede:
                superseded = await execute(
                    conn, "UPDATE deliveries SET state = 'skipped', reason = 'superseded', "
                    "updated_at = ? WHERE notice_id = ? AND purpose = 'notice' "
                    "AND state IN ('pending', 'retry')", now, notice_id)
                if self.archiving and superseded:
                    await superseded_records(conn, notice_id, now)
            if why is not None:
                cancelled = await execute(
                    conn, "UPDATE deliveries SET state = 'skipped', reason = ?, updated_at = ? "
                    "WHERE notice_id = ? AND purpose = 'reminder' "
                    "AND state IN ('pending', 'retry')", why, now, notice_id)
            subscribers, suppressed = await self._audience(conn)
            # Pure and CPU-bound (the slow part of a large fan-out): off the event loop.
            plan = await asyncio.to_thread(planner, subscribers, suppressed)
            rows = [(revision_id, notice_id, p.subscriber_id, p.email, p.purpose, "",
                     p.priority, "pending", p.not_before, now, now, p.not_before)
                    for p in plan.notices]
            rows += [(revision_id, notice_id, p.subscriber_id, p.email, p.purpose, slot,
                      p.priority, "pending", p.not_before, now, now, p.not_before)
                     for slot, p in plan.reminders]
            if rows:
                await conn.copy_records_to_table("deliveries", records=rows,
                                                 columns=_DELIVERY_COLUMNS)
                await notify(conn, DELIVERIES)  # every host's sender, at the commit
                if self.archiving:
                    await created_records(conn, revision_id)
            return RecordResult(notice_id, revision_id, len(plan.notices),
                                len(plan.reminders), superseded, cancelled)

    async def touch_notice(self, notice_id: int, now: datetime,
                           fingerprint: str | None = None, *, source: str | None = None,
                           key: str | None = None, report_number: int | None = None) -> None:
        async with self._tx() as conn:
            await conn.execute(q("UPDATE notices SET last_seen = ?, "
                                 "fingerprint = COALESCE(?, fingerprint) WHERE id = ?"),
                               now, fingerprint, notice_id)
            if source is not None and key is not None:
                await _remember_key(conn, source, key, notice_id, fingerprint, report_number)

    async def fingerprints(self, source: str) -> dict[str, tuple[int, str | None]]:
        rows = await self._all("SELECT key, notice_id, fingerprint FROM notice_keys "
                               "WHERE source = ?", (source,))
        return {r["key"]: (r["notice_id"], r["fingerprint"]) for r in rows}

    async def list_notices(self, *, source: str | None = None, kind: str | None = None,
                           status: str | None = None, prefecture: str | None = None,
                           since: datetime | None = None, limit: int = 100,
                           offset: int = 0) -> tuple[list[StoredNotice], int]:
        where, params = where_equal(("source", source), ("kind", kind), ("status", status))
        if prefecture:
            where.append(PREFECTURE_MATCH)
            params.append(prefecture)
        if since:
            where.append("last_changed >= ?")
            params.append(since)
        rows, total = await self._page("notices", where, params, "last_changed DESC, id DESC",
                                       limit, offset)
        return [_row_to_notice(r) for r in rows], total

    async def board_notices(self, *, since: datetime, carrier: str | None = None,
                            prefecture: str | None = None, kind: str | None = None,
                            limit: int = 300) -> list[StoredNotice]:
        where, params = where_equal(("carrier", carrier), ("kind", kind))
        where += ["(status = ANY(?::text[]) OR last_changed >= ?)", "status != 'withdrawn'"]
        params += [sorted(str(s) for s in OPEN_STATUSES), since]
        if prefecture:
            where.append(PREFECTURE_MATCH)
            params.append(prefecture)
        rows = await self._all(f"SELECT * FROM notices WHERE {' AND '.join(where)} "
                               "ORDER BY last_changed DESC, id DESC LIMIT ?", [*params, limit])
        return [_row_to_notice(r) for r in rows]

    async def revisions(self, notice_id: int) -> list[Revision]:
        rows = await self._all("SELECT * FROM notice_revisions WHERE notice_id = ? "
                               "ORDER BY id", (notice_id,))
        return [Revision(id=r["id"], revision=r["revision"], change=Change(r["change"]),
                         content=json.loads(r["content"]), mailed=bool(r["mailed"]),
                         seen_at=r["seen_at"]) for r in rows]

    async def notice_delivery_counts(self, notice_id: int) -> dict[str, int]:
        rows = await self._all("SELECT state, COUNT(*) AS n FROM deliveries WHERE notice_id = ? "
                               "GROUP BY state", (notice_id,))
        return {r["state"]: int(r["n"]) for r in rows}
