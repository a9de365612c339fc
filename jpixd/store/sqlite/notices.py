"""SQLite: a notice's revision recorded with its deliveries and channel messages in one
trip to the database thread (SPEC §2), and a notice seen again."""

from __future__ import annotations

import json
import sqlite3
from datetime import datetime

from jpixd.fanout import plan_channels, retires
from jpixd.model import (
    Change,
    Notice,
    changes_to_json,
    notice_to_json,
)
from jpixd.records import RecordResult
from jpixd.store.base import (
    jlist,
    to_db,
)
from jpixd.store.channels import ACTIVE_CHANNELS, CHANNEL_MESSAGE_INSERT, SUPERSEDE_MESSAGES
from jpixd.store.notices import REMEMBER_KEY, UPSERT, NoticeQueries, Planner
from jpixd.store.sqlite.archive import CREATED_SQL, SUPERSEDED_SQL
from jpixd.store.sqlite.base import SqliteBase
from jpixd.store.sqlite.subscribers import SubscriberStore

_INSERT_DELIVERY = """
INSERT INTO deliveries (revision_id, notice_id, subscriber_id, email, purpose, slot, priority,
                        state, not_before, created_at, updated_at, first_due_at)
VALUES (?, ?, ?, ?, ?, ?, ?, 'pending', ?, ?, ?, ?)
"""


def _remember_key(db: sqlite3.Connection, source: str, key: str, notice_id: int,
                  fingerprint: str | None, report_number: int | None) -> None:
    db.execute(REMEMBER_KEY, (source, key, notice_id, fingerprint, report_number))


class NoticeStore(NoticeQueries, SubscriberStore, SqliteBase):
    async def record_revision(self, notice: Notice, *, revision: str, change: Change,
                              now: datetime, planner: Planner,
                              fingerprint: str | None = None,
                              key: str | None = None) -> RecordResult:
        """Store a new notice or a changed revision and, in the same transaction, retire
        the deliveries it makes stale and create the ones it calls for. `key` is what the
        source showed it under, when that is not the notice's own id (a linked report)."""
        n = notice
        t = to_db(now)
        archiving = self.archiving

        def body(db: sqlite3.Connection) -> RecordResult:
            row = db.execute(UPSERT, (
                n.source, n.external_id, n.carrier, str(n.kind), str(n.status), n.title, n.body,
                to_db(n.starts_at) if n.starts_at else None,
                to_db(n.ends_at) if n.ends_at else None,
                jlist(n.prefectures), jlist(n.localities), jlist(n.services), n.url,
                n.report_number, revision, t, t, t,
                json.dumps([w.to_json() for w in n.windows]), fingerprint,
                to_db(n.published_at) if n.published_at else None,
                changes_to_json(n.changes))).fetchone()
            assert row is not None
            notice_id = int(row["id"])
            _remember_key(db, n.source, key or n.external_id, notice_id, fingerprint,
                          n.report_number)
            cur = db.execute(
                "INSERT INTO notice_revisions (notice_id, revision, change, content, mailed, "
                "seen_at) VALUES (?, ?, ?, ?, ?, ?)",
                (notice_id, revision, str(change),
                 json.dumps(notice_to_json(n), ensure_ascii=False), int(change.mailed), t))
            assert cur.lastrowid is not None
            revision_id = cur.lastrowid
            superseded = cancelled = 0
            # A notice seen for the first time has no deliveries to retire yet: two
            # statements fewer per new item (a first poll of a long feed is all new).
            fresh = change in (Change.NEW, Change.BASELINE) and row["first_seen"] == t
            supersede, why = retires(change, n.status, first_seen=fresh)
            if supersede:
                superseded = db.execute(
                    "UPDATE deliveries SET state = 'skipped', reason = 'superseded', "
                    "updated_at = ? WHERE notice_id = ? AND purpose = 'notice' "
                    "AND state IN ('pending', 'retry')", (t, notice_id)).rowcount
                if archiving and superseded:
                    db.execute(SUPERSEDED_SQL, (notice_id, t))
                db.execute(SUPERSEDE_MESSAGES, (t, notice_id))
            if why is not None:
                cancelled = db.execute(
                    "UPDATE deliveries SET state = 'skipped', reason = ?, updated_at = ? "
                    "WHERE notice_id = ? AND purpose = 'reminder' "
                    "AND state IN ('pending', 'retry')", (why, t, notice_id)).rowcount
            subscribers, suppressed = self._audience(db)
            plan = planner(subscribers, suppressed)
            # Most deliveries share a handful of not_before times: encode each once.
            times: dict[datetime, str] = {}

            def enc(dt: datetime) -> str:
                if dt not in times:
                    times[dt] = to_db(dt)
                return times[dt]

            rows = [(revision_id, notice_id, p.subscriber_id, p.email, p.purpose, "",
                     p.priority, enc(p.not_before), t, t, enc(p.not_before))
                    for p in plan.notices]
            rows += [(revision_id, notice_id, p.subscriber_id, p.email, p.purpose, slot,
                      p.priority, enc(p.not_before), t, t, enc(p.not_before))
                     for slot, p in plan.reminders]
            db.executemany(_INSERT_DELIVERY, rows)
            if archiving and rows:
                db.execute(CREATED_SQL, (revision_id, revision_id))
            channels = [(int(r[0]), int(r[1]), str(r[2])) for r in
                        db.execute(ACTIVE_CHANNELS)] if change.mailed else []
            db.executemany(CHANNEL_MESSAGE_INSERT, [
                (cid, kind, notice_id, revision_id, enc(when), t, t)
                for cid, kind, when in plan_channels(planner, subscribers, channels)])
            return RecordResult(notice_id, revision_id, len(plan.notices),
                                len(plan.reminders), superseded, cancelled)

        # One trip for the whole transaction; the planner (pure, and the slow part of a
        # large fan-out) runs there too, which keeps the event loop free meanwhile.
        return await self._tx_sync(body)

    async def touch_notice(self, notice_id: int, now: datetime,
                           fingerprint: str | None = None, *, source: str | None = None,
                           key: str | None = None, report_number: int | None = None) -> None:
        """Seen again, unchanged (under `key`, which is remembered as one of its keys)."""
        def body(db: sqlite3.Connection) -> None:
            db.execute("UPDATE notices SET last_seen = ?, "
                       "fingerprint = COALESCE(?, fingerprint) WHERE id = ?",
                       (to_db(now), fingerprint, notice_id))
            if source is not None and key is not None:
                _remember_key(db, source, key, notice_id, fingerprint, report_number)

        await self._tx_sync(body)
