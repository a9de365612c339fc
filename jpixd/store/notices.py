"""Notices and their revisions, on both databases: the reads, and a revision recorded
with the deliveries and channel messages it calls for in one transaction (SPEC §2),
written once as a plan (`record_plan`)."""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from jpixd.fanout import plan_channels, retires
from jpixd.model import (
    OPEN_STATUSES,
    AudienceMember,
    Change,
    FanoutPlan,
    Matchable,
    Notice,
    NoticeKind,
    NoticeStatus,
    Revision,
    StoredNotice,
    TimeWindow,
    changes_from_json,
    changes_to_json,
    notice_to_json,
)
from jpixd.records import RecordResult
from jpixd.store.base import (
    DELIVERIES,
    SUBSCRIBERS_VERSION,
    SUPPRESSED_ADDRESSES,
    Insert,
    Plan,
    Queries,
    Row,
    Step,
    Work,
    as_text,
    from_db,
    from_db_req,
    jlist,
    tlist,
    where_equal,
)
from jpixd.store.channels import ACTIVE_CHANNELS, CHANNEL_MESSAGE_INSERT, SUPERSEDE_MESSAGES

# Given the audience (active subscribers, suppressed addresses) read inside the
# transaction, decide the deliveries. Pure: see jpixd.fanout.
Planner = Callable[[Sequence[Matchable], frozenset[str]], FanoutPlan]


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


# A key a source showed a notice under (its own id, or a later report's) → the notice.
REMEMBER_KEY = (
    "INSERT INTO notice_keys (source, key, notice_id, fingerprint, report_number) "
    "VALUES (?, ?, ?, ?, ?) ON CONFLICT (source, key) DO UPDATE SET "
    "notice_id = excluded.notice_id, "
    "fingerprint = COALESCE(excluded.fingerprint, notice_keys.fingerprint), "
    "report_number = COALESCE(excluded.report_number, notice_keys.report_number)")


# Another host's recording of this very revision (PostgreSQL): the newest such row.
_SAME_REVISION = (
    "SELECT r.notice_id, r.id FROM notices n JOIN notice_revisions r ON r.notice_id = n.id "
    "WHERE n.source = ? AND n.external_id = ? AND n.revision = ? AND r.revision = ? "
    "AND r.change = ? ORDER BY r.id DESC LIMIT 1")
_INSERT_REVISION = (
    "INSERT INTO notice_revisions (notice_id, revision, change, content, mailed, seen_at) "
    "VALUES (?, ?, ?, ?, ?, ?) RETURNING id")
_SUPERSEDE = (
    "UPDATE deliveries SET state = 'skipped', reason = 'superseded', updated_at = ? "
    "WHERE notice_id = ? AND purpose = 'notice' AND state IN ('pending', 'retry')")
_CANCEL_REMINDERS = (
    "UPDATE deliveries SET state = 'skipped', reason = ?, updated_at = ? "
    "WHERE notice_id = ? AND purpose = 'reminder' AND state IN ('pending', 'retry')")
# Subscribers matched a part at a time (see `record_plan`): 100k in ten parts; more, smaller
# parts gained nothing measurable (bench postgres:fanout).
FANOUT_PART = 10_000
# The columns each of a new revision's deliveries gives (the rest are the same in every
# row: see `record_plan`'s Insert).
_DELIVERY_COLUMNS = ("subscriber_id", "email", "purpose", "slot", "priority", "not_before",
                     "first_due_at")


def _audience_sql(db: Queries) -> str:
    """Who a fan-out may reach, with the fields matching needs."""
    lists = ", ".join(db.text_of(c) for c in
                      ("carriers", "prefectures", "kinds", "services", "windows"))
    return (f"SELECT id, email, {lists}, failure_respects_windows FROM subscribers "
            "WHERE deleted_at IS NULL AND status = 'active' AND NOT paused")


def _members(rows: Sequence[Sequence[Any]]) -> list[AudienceMember]:
    """The audience's rows (read by place: both databases' rows are sequences too)."""
    return [AudienceMember(r[0], r[1], tlist(r[2]), tlist(r[3]), tlist(r[4]), tlist(r[5]),
                      tlist(r[6]), bool(r[7])) for r in rows]


def _audience_plan(db: NoticeQueries) -> Plan[
        tuple[list[AudienceMember] | None, Sequence[Sequence[Any]], int]]:
    """Who a fan-out may reach: (the audience cached, if still current; else its rows to
    make it from; the subscribers' version). It is kept until the version counter moves
    (on any process or host), so a fan-out to 100k reads one small row, not 100k."""
    found = yield Step(f"SELECT {db.text_of('value')} AS v FROM control WHERE key = ?",
                       (SUBSCRIBERS_VERSION,))
    version = int(found[0]["v"]) if found else 0
    cached = db._audience_cache
    if cached is not None and cached[0] == version:
        return cached[1], (), version
    return None, (yield Step(_audience_sql(db))), version


def record_plan(db: NoticeQueries, n: Notice, *, revision: str, change: Change,
                now: datetime, planner: Planner, fingerprint: str | None,
                key: str | None) -> Plan[RecordResult]:
    """Store a new notice or a changed revision and, in the same transaction, retire the
    deliveries it makes stale and create the ones it calls for."""
    if not db.sole_claimer:
        # One host records a notice at a time (its key's lock, held to the commit). A
        # revision another host has just recorded is not recorded again: a poll that
        # overlapped a change of leader must not mail a notice twice.
        yield Step(db.lock_sql, (f"{n.source}\x1f{n.external_id}",), rows=False)
        same = yield Step(_SAME_REVISION, (n.source, n.external_id, revision, revision,
                                           str(change)))
        if same:
            return RecordResult(int(same[0][0]), int(same[0][1]), 0, 0, 0, 0)
    upserted = yield Step(UPSERT, (
        n.source, n.external_id, n.carrier, str(n.kind), str(n.status), n.title, n.body,
        n.starts_at, n.ends_at, jlist(n.prefectures), jlist(n.localities), jlist(n.services),
        n.url, n.report_number, revision, now, now, now,
        json.dumps([w.to_json() for w in n.windows]), fingerprint, n.published_at,
        changes_to_json(n.changes)))
    notice_id = int(upserted[0]["id"])
    yield Step(REMEMBER_KEY, (n.source, key or n.external_id, notice_id, fingerprint,
                              n.report_number), rows=False)
    revision_id = int((yield Step(_INSERT_REVISION, (
        notice_id, revision, str(change), json.dumps(notice_to_json(n), ensure_ascii=False),
        change.mailed, now)))[0]["id"])
    superseded = cancelled = 0
    # A notice seen for the first time has no deliveries to retire yet: two statements
    # fewer per new item (a first poll of a long feed is all new).
    fresh = (change in (Change.NEW, Change.BASELINE)
             and from_db(upserted[0]["first_seen"]) == now)
    supersede, why = retires(change, n.status, first_seen=fresh)
    if supersede:
        superseded = yield Step(_SUPERSEDE, (now, notice_id), rows=False)
        if db.archiving and superseded:
            yield Step(db.superseded_records_sql, (notice_id, now), rows=False)
        yield Step(SUPERSEDE_MESSAGES, (now, notice_id), rows=False)
    if why is not None:
        cancelled = yield Step(_CANCEL_REMINDERS, (why, now, notice_id), rows=False)

    known, rows, version = yield from _audience_plan(db)
    suppressed = frozenset(r[0] for r in (yield Step(SUPPRESSED_ADDRESSES)))
    channels = [(int(r[0]), int(r[1]), str(r[2])) for r in (yield Step(ACTIVE_CHANNELS))
                ] if change.mailed else []
    stored = db.stored_time
    audience: list[AudienceMember] = known if known is not None else []
    planned = [0, 0]  # notice mail, reminders: counted as the parts are worked out

    def part(start: int) -> list[list[Any]]:
        """The deliveries of one part of the audience: pure and CPU-bound, the slow part
        of a large fan-out. A subscriber's mail depends on the subscriber alone, so the
        database inserts one part while the next is matched (`Insert.parts`; called in
        order, so the audience read is parsed into `audience` in order too)."""
        if known is not None:
            subscribers = known[start:start + FANOUT_PART]
        else:
            subscribers = _members(rows[start:start + FANOUT_PART])
            audience.extend(subscribers)
        plan = planner(subscribers, suppressed)
        planned[0] += len(plan.notices)
        planned[1] += len(plan.reminders)
        # `stored` is SQLite's memoised `to_db`: most deliveries share a few times. A
        # delivery is first due when it may first go.
        new = [[sid, email, purpose, "", priority, due := stored(not_before), due]
               for sid, email, purpose, priority, not_before in plan.notices]
        new += [[sid, email, purpose, slot, priority, due := stored(not_before), due]
                for slot, (sid, email, purpose, priority, not_before) in plan.reminders]
        return new

    everyone = len(known if known is not None else rows)
    yield Insert("deliveries", {"revision_id": revision_id, "notice_id": notice_id,
                                "state": "pending", "created_at": now, "updated_at": now},
                 _DELIVERY_COLUMNS, parts=[functools.partial(part, start) for start in
                                           range(0, everyone, FANOUT_PART)])
    db._audience_cache = (version, audience)
    notices, reminders = planned
    if (notices or reminders) and db.archiving:
        yield Step(db.created_records_sql, (revision_id,), rows=False)
    messages = (yield Work(lambda: plan_channels(planner, audience, channels))
                ) if channels else []
    if messages:
        yield Step(CHANNEL_MESSAGE_INSERT, many=[
            (cid, kind, notice_id, revision_id, when, now, now) for cid, kind, when in messages])
    if (notices or reminders or messages) and db.notify_sql:
        yield Step(db.notify_sql, (DELIVERIES,))  # every host's sender, at the commit
    return RecordResult(notice_id, revision_id, notices, reminders, superseded, cancelled)


class NoticeQueries(Queries):
    """Notices' and revisions' reads and writes, the same SQL on both databases."""

    # (subscribers version, the audience parsed): see `record_plan`.
    _audience_cache: tuple[int, list[AudienceMember]] | None = None

    async def record_revision(self, notice: Notice, *, revision: str, change: Change,
                              now: datetime, planner: Planner,
                              fingerprint: str | None = None,
                              key: str | None = None) -> RecordResult:
        """Store a new notice or a changed revision and, in the same transaction, retire
        the deliveries it makes stale and create the ones it calls for. `key` is what the
        source showed it under, when that is not the notice's own id (a linked report)."""
        return await self.run_plan(record_plan(
            self, notice, revision=revision, change=change, now=now, planner=planner,
            fingerprint=fingerprint, key=key))

    async def touch_notice(self, notice_id: int, now: datetime,
                           fingerprint: str | None = None, *, source: str | None = None,
                           key: str | None = None, report_number: int | None = None) -> None:
        """Seen again, unchanged (under `key`, which is remembered as one of its keys)."""
        def plan() -> Plan[None]:
            yield Step("UPDATE notices SET last_seen = ?, "
                       "fingerprint = COALESCE(?, fingerprint) WHERE id = ?",
                       (now, fingerprint, notice_id), rows=False)
            if source is not None and key is not None:
                yield Step(REMEMBER_KEY, (source, key, notice_id, fingerprint, report_number),
                           rows=False)

        await self.run_plan(plan())  # one trip to SQLite's thread: every unchanged item

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
