"""The event archive's outbox, shared: the reads and deletes the archive loop makes. Each
database's triggers (`sqlite/archive.py`, `pg/archive.py`) write one JSON record per change
in the same transaction as the change.

Triggers, rather than a call in every store method: a change cannot reach the database
without its record, whichever code path (a loop, the admin API, a CLI import) made it.
They exist only while `[archive]` is configured (`set_archiving`), so a daemon without
an archive pays nothing for it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime

from jpixd.store.base import Queries, Row, from_db, marks, to_db

# A fan-out creates tens of thousands of deliveries in one statement: their creation is
# archived by the fan-out itself, one record per CREATED_CHUNK deliveries (see
# `Queries.created_records_sql`), not by a trigger per row, which doubled a 100k fan-out's time.
# 2,000 deliveries with the longest addresses stay under Firehose's 1,000 KiB a record.
CREATED_CHUNK = 2000

# Likewise the rows a new revision supersedes (a 第2報 to 76k recipients skips the 76k
# unsent mails of the first): one record per SUPERSEDED_CHUNK ids.
SUPERSEDED_CHUNK = 20000


def batch_lines(rows: Sequence[Row], max_bytes: int) -> list[tuple[int, str]]:
    """(sequence, JSON line) for each record, its sequence put first, until `max_bytes`
    (at least one, whatever its size: the sink says if it is too large)."""
    out: list[tuple[int, str]] = []
    size = 0
    for r in rows:
        line = f'{{"seq":{r["id"]},{r["record"][1:]}\n'
        size += len(line.encode())
        if out and size > max_bytes:
            break
        out.append((int(r["id"]), line))
    return out


class ArchiveQueries(Queries):
    """The archive loop's reads and deletes, the same SQL on both databases."""

    async def archive_marker(self, kind: str, now: datetime) -> None:
        """A record of our own (the archive's start, a cut-over): same path, same order.
        Written as the databases' own JSON functions write theirs (compact; PostgreSQL's
        jsonb keeps its own text either way)."""
        record = json.dumps({"type": kind, "at": to_db(now)}, separators=(",", ":"))
        await self._write("INSERT INTO archive_outbox (record, created_at) VALUES (?, ?)",
                          (record, now))

    async def archive_batch(self, limit: int, max_bytes: int) -> list[tuple[int, str]]:
        """The oldest queued records, (sequence, JSON line), at most `limit` of them and
        `max_bytes` in all (Firehose's batch limits)."""
        # The record as text on both databases (jsonb's own text on PostgreSQL).
        rows = await self._all("SELECT id, CAST(record AS TEXT) AS record FROM archive_outbox "
                               "ORDER BY id LIMIT ?", (limit,))
        return batch_lines(rows, max_bytes)

    async def archive_done(self, seqs: list[int]) -> None:
        """Accepted by the sink: gone from the outbox."""
        if not seqs:
            return
        await self._write(f"DELETE FROM archive_outbox WHERE id IN ({marks(seqs)})", seqs)

    async def archive_pending(self) -> tuple[int, datetime | None]:
        """(records queued, when the oldest was written)."""
        row = await self._one("SELECT COUNT(*) AS n, MIN(created_at) AS t FROM archive_outbox")
        if row is None or not row["n"]:
            return 0, None
        return int(row["n"]), from_db(row["t"])
