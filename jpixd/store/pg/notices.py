"""PostgreSQL: notices and their revisions, recorded with their deliveries in one
transaction (SPEC §2), the deliveries written with COPY."""

from __future__ import annotations

import asyncio
import json
from datetime import datetime

from jpixd.fanout import plan_channels, retires
from jpixd.model import Change, Notice, changes_to_json, notice_to_json
from jpixd.records import RecordResult
from jpixd.store.base import DELIVERIES, jlist
from jpixd.store.channels import ACTIVE_CHANNELS, CHANNEL_MESSAGE_INSERT, SUPERSEDE_MESSAGES
from jpixd.store.notices import REMEMBER_KEY, UPSERT, NoticeQueries, Planner
from jpixd.store.pg.archive import created_records, superseded_records
from jpixd.store.pg.base import Conn, PgBase, execute, notify, q
from jpixd.store.pg.subscribers import PgSubscriberStore

_DELIVERY_COLUMNS = ("revision_id", "notice_id", "subscriber_id", "email", "purpose", "slot",
                     "priority", "state", "not_before", "created_at", "updated_at",
                     "first_due_at")


async def _remember_key(conn: Conn, source: str, key: str, notice_id: int,
                        fingerprint: str | None, report_number: int | None) -> None:
    await conn.execute(q(REMEMBER_KEY), source, key, notice_id, fingerprint, report_number)


class PgNoticeStore(NoticeQueries, PgSubscriberStore, PgBase):
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
            row = await conn.fetchrow(q(UPSERT),
                n.source, n.external_id, n.carrier, str(n.kind), str(n.status), n.title,
                n.body, n.starts_at, n.ends_at, jlist(n.prefectures), jlist(n.localities),
                jlist(n.services), n.url, n.report_number, revision, now, now, now,
                json.dumps([w.to_json() for w in n.windows]), fingerprint, n.published_at,
                changes_to_json(n.changes))
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
                await conn.execute(q(SUPERSEDE_MESSAGES), now, notice_id)
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
            channels = await conn.fetch(ACTIVE_CHANNELS) if change.mailed else []
            messages = [(cid, kind, notice_id, revision_id, when, now, now)
                        for cid, kind, when in plan_channels(
                            planner, subscribers, [(r[0], r[1], r[2]) for r in channels])]
            if messages:
                await conn.executemany(q(CHANNEL_MESSAGE_INSERT), messages)
                await notify(conn, DELIVERIES)
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

