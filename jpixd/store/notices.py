"""Notices and their revisions, shared: the reads, the upsert and the key memory. Each
database records a revision with its deliveries in one transaction (SPEC §2):
`sqlite/notices.py`, `pg/notices.py`."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from datetime import datetime

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
)
from jpixd.store.base import (
    Queries,
    Row,
    as_text,
    from_db,
    from_db_req,
    tlist,
    where_equal,
)

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


# A key a source showed a notice under (its own id, or a later report's) → the notice.
REMEMBER_KEY = (
    "INSERT INTO notice_keys (source, key, notice_id, fingerprint, report_number) "
    "VALUES (?, ?, ?, ?, ?) ON CONFLICT (source, key) DO UPDATE SET "
    "notice_id = excluded.notice_id, "
    "fingerprint = COALESCE(excluded.fingerprint, notice_keys.fingerprint), "
    "report_number = COALESCE(excluded.report_number, notice_keys.report_number)")


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
