"""SQLite: the console chart's hourly counts. (An SQS message's events, with the
suppressions and Backlog cases they call for, are `jpixd.store.events`' plans: one trip
to the database thread here.)"""

from __future__ import annotations

from datetime import datetime

from jpixd.store.base import to_db
from jpixd.store.events import EventQueries
from jpixd.store.sqlite.base import SqliteBase


class EventStore(EventQueries, SqliteBase):
    async def hourly_activity(self, since: datetime) -> dict[str, dict[str, int]]:
        """Per UTC hour ("2026-11-29T12") since `since`: mails sent, bounces, complaints
        (the console's chart)."""
        s = to_db(since)
        out: dict[str, dict[str, int]] = {}
        for r in await self._all("SELECT substr(sent_at, 1, 13) AS h, COUNT(*) AS n FROM "
                                 "deliveries WHERE state = 'sent' AND sent_at >= ? "
                                 "GROUP BY h", (s,)):
            out.setdefault(r["h"], {})["sent"] = int(r["n"])
        for r in await self._all("SELECT substr(occurred_at, 1, 13) AS h, type, COUNT(*) AS n "
                                 "FROM mail_events WHERE type IN ('Bounce', 'Complaint') "
                                 "AND occurred_at >= ? GROUP BY h, type", (s,)):
            out.setdefault(r["h"], {})[str(r["type"]).lower()] = int(r["n"])
        return out
