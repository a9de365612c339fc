"""Notices and their revisions, recorded together with their deliveries (SPEC §2)."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Sequence
from datetime import datetime

from jpixd.fanout import plan_channels, retires
from jpixd.model import (
    OPEN_STATUSES,
    Change,
    FanoutPlan,
    Notice,
    NoticeKind,
    NoticeStatus,
    Revision,
    StoredNotice,
    Subscriber,
    TimeWindow,
    changes_from_json,
    changes_to_json,
    notice_to_json,
)
from jpixd.records import RecordResult
from jpixd.store.archive import CREATED_SQL, SUPERSEDED_SQL
from jpixd.store.base import (
    Queries,
    Row,
    SqliteBase,
    as_text,
    from_db,
    from_db_req,
    jlist,
    tlist,
    to_db,
    where_equal,
)
from jpixd.store.channels import ACTIVE_CHANNELS, CHANNEL_MESSAGE_INSERT, SUPERSEDE_MESSAGES
from jpixd.store.subscribers import SubscriberStore

# Given the audience (active subscribers, suppressed addresses) read inside the
# transaction, decide the deliveries. Pure: see jpixd.fanout.
Planner = Callable[[Sequence[Subscriber], frozenset[str]], FanoutPlan]



def _row_to_notice(row: Row) -> StoredNotice:
    notice = Notice(
        source=row["source"], external_id=row["external_id"], carrier=row["carrier"],
        kind=NoticeKind(row["kind"]), status=NoticeStatus(row["status"]), title=row["title"],
        body=row["body"], starts_at=from_db(row["starts_at"]), ends_at=from_db(row["ends_at"]),
        prefectures=tlist(row["prefectures"]), localities=tlist(row["localities"]),
        services=tlist(row["services"]), url=row["url"], report_number=row["report_number"],
        windows=tuple(TimeWindow.from_json(w) for w in json.loads(row["windows"] or "[]")),
        published_at=from_db(row["published_at"]),
        changes=changes_from_json(json.loads(row["changes"] or "[]")),
    )
    return StoredNotice(id=row["id"], notice=notice, revision=row["revision"],
                        first_seen=from_db_req(row["first_seen"]),
                        last_changed=from_db_req(row["last_changed"]),
                        last_seen=from_db_req(row["last_seen"]))


# Every column a StoredNotice is read from, the body cut to its first ? characters.
_EXCERPT_COLUMNS = (
    "id, source, external_id, carrier, kind, status, title, substr(body, 1, ?) AS body, "
    "starts_at, ends_at, prefectures, localities, services, url, report_number, revision, "
    "first_seen, last_changed, last_seen, windows, published_at, changes")

UPSERT = """
INSERT INTO notices (source, external_id, carrier, kind, status, title, body, starts_at,
                     ends_at, prefectures, localities, services, url, report_number, revision,
                     first_seen, last_changed, last_seen, windows, fingerprint, published_at,
                     changes)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (source, external_id) DO UPDATE SET
    carrier = excluded.carrier, kind = excluded.kind, status = excluded.status,
    title = excluded.title, body = excluded.body, starts_at = excluded.starts_at,
    ends_at = excluded.ends_at, prefectures = excluded.prefectures,
    localities = excluded.localities, services = excluded.services, url = excluded.url,
    report_number = excluded.report_number, revision = excluded.revision,
    last_changed = excluded.last_changed, last_seen = excluded.last_seen,
    windows = excluded.windows, fingerprint = excluded.fingerprint,
    published_at = excluded.published_at, changes = excluded.changes
RETURNING id, first_seen
"""

_INSERT_DELIVERY = """
INSERT INTO deliveries (revision_id, notice_id, subscriber_id, email, purpose, slot, priority,
                        state, not_before, created_at, updated_at, first_due_at)
VALUES (?, ?, ?, ?, ?, ?, ?, 'pending', ?, ?, ?, ?)
"""


# A key a source showed a notice under (its own id, or a later report's) → the notice.
REMEMBER_KEY = (
    "INSERT INTO notice_keys (source, key, notice_id, fingerprint, report_number) "
    "VALUES (?, ?, ?, ?, ?) ON CONFLICT (source, key) DO UPDATE SET "
    "notice_id = excluded.notice_id, "
    "fingerprint = COALESCE(excluded.fingerprint, notice_keys.fingerprint), "
    "report_number = COALESCE(excluded.report_number, notice_keys.report_number)")


def _remember_key(db: sqlite3.Connection, source: str, key: str, notice_id: int,
                  fingerprint: str | None, report_number: int | None) -> None:
    db.execute(REMEMBER_KEY, (source, key, notice_id, fingerprint, report_number))


class NoticeQueries(Queries):
    """Notices' and revisions' reads, the same SQL on both databases."""

    async def notice_by_key(self, source: str, key: str) -> StoredNotice | None:
        """The notice a source has shown under `key`: its own id or any later key (a
        第N報 at a new URL) that was linked to it."""
        row = await self._one("SELECT n.* FROM notice_keys k JOIN notices n "
                              "ON n.id = k.notice_id WHERE k.source = ? AND k.key = ?",
                              (source, key))
        return _row_to_notice(row) if row else None

    async def open_notices(self, source: str, *,
                           withdrawn: bool = False) -> list[StoredNotice]:
        """Notices of a source that still expect news (a report may continue one); with
        `withdrawn`, also those that left the page without a word (a 第2報 may yet come)."""
        statuses = sorted(OPEN_STATUSES | ({NoticeStatus.WITHDRAWN} if withdrawn else set()))
        marks = ", ".join("?" for _ in statuses)
        rows = await self._all(f"SELECT * FROM notices WHERE source = ? AND status IN ({marks}) "
                               "ORDER BY id", (source, *statuses))
        return [_row_to_notice(r) for r in rows]

    async def get_notice(self, notice_id: int) -> StoredNotice | None:
        row = await self._one("SELECT * FROM notices WHERE id = ?", (notice_id,))
        return _row_to_notice(row) if row else None

    async def fingerprints(self, source: str) -> dict[str, tuple[int, str | None]]:
        """key → (notice id, list fingerprint) for one source."""
        rows = await self._all("SELECT key, notice_id, fingerprint FROM notice_keys "
                               "WHERE source = ?", (source,))
        return {r["key"]: (r["notice_id"], r["fingerprint"]) for r in rows}

    async def list_notices(self, *, source: str | None = None, kind: str | None = None,
                           status: str | None = None, prefecture: str | None = None,
                           since: datetime | None = None, limit: int = 100,
                           offset: int = 0) -> tuple[list[StoredNotice], int]:
        where, params = where_equal(("source", source), ("kind", kind), ("status", status))
        if prefecture:
            where.append(self.prefecture_match)
            params.append(prefecture)
        if since:
            where.append("last_changed >= ?")
            params.append(since)
        rows, total = await self._page("notices", where, params, "last_changed DESC, id DESC",
                                       limit, offset)
        return [_row_to_notice(r) for r in rows], total

    async def board_notices(self, *, since: datetime, carrier: str | None = None,
                            prefecture: str | None = None, kind: str | None = None,
                            limit: int = 300,
                            body_limit: int | None = None) -> list[StoredNotice]:
        """What the public board shows: every open notice, and those that ended or
        changed since `since` (withdrawn ones are not shown: nobody said they ended).
        `body_limit`: only the first so many characters of each body (the feeds show
        no more; a wordy board is megabytes otherwise, read on every change)."""
        marks = ", ".join("?" for _ in OPEN_STATUSES)
        where, params = where_equal(("carrier", carrier), ("kind", kind))
        where += [f"(status IN ({marks}) OR last_changed >= ?)", "status != 'withdrawn'"]
        params += [*sorted(OPEN_STATUSES), since]
        if prefecture:
            where.append(self.prefecture_match)
            params.append(prefecture)
        columns = "*" if body_limit is None else _EXCERPT_COLUMNS
        first = [] if body_limit is None else [body_limit]
        rows = await self._all(f"SELECT {columns} FROM notices WHERE {' AND '.join(where)} "
                               "ORDER BY last_changed DESC, id DESC LIMIT ?",
                               [*first, *params, limit])
        return [_row_to_notice(r) for r in rows]

    async def notices_version(self) -> tuple[str | None, int]:
        """Changes whenever a notice is recorded or changes (the public feeds' cache
        key): the newest change and how many there are."""
        row = await self._one("SELECT MAX(last_changed) AS t, COUNT(*) AS n FROM notices")
        if row is None:
            return None, 0
        return as_text(row["t"]), int(row["n"])

    async def revisions(self, notice_id: int) -> list[Revision]:
        rows = await self._all("SELECT * FROM notice_revisions WHERE notice_id = ? "
                               "ORDER BY id", (notice_id,))
        return [Revision(id=r["id"], revision=r["revision"], change=Change(r["change"]),
                         content=json.loads(r["content"]), mailed=bool(r["mailed"]),
                         seen_at=from_db_req(r["seen_at"])) for r in rows]

    async def notice_delivery_counts(self, notice_id: int) -> dict[str, int]:
        rows = await self._all("SELECT state, COUNT(*) AS n FROM deliveries WHERE notice_id = ? "
                               "GROUP BY state", (notice_id,))
        return {r["state"]: int(r["n"]) for r in rows}


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

