"""PostgreSQL: the console chart's hourly counts. (SES events, suppressions and the
guard's counts are shared: `jpixd.store.events`' plans, a message's events one
transaction, each message of a batch a savepoint.)"""

from __future__ import annotations

from datetime import datetime

from jpixd.store.events import EventQueries
from jpixd.store.pg.base import PgBase


class PgEventStore(EventQueries, PgBase):
    async def hourly_activity(self, since: datetime) -> dict[str, dict[str, int]]:
        out: dict[str, dict[str, int]] = {}
        hour = "to_char({} AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24')"
        for r in await self._all(f"SELECT {hour.format('sent_at')} AS h, COUNT(*) AS n FROM "
                                 "deliveries WHERE state = 'sent' AND sent_at >= ? "
                                 "GROUP BY h", (since,)):
            out.setdefault(r["h"], {})["sent"] = int(r["n"])
        for r in await self._all(f"SELECT {hour.format('occurred_at')} AS h, type, "
                                 "COUNT(*) AS n FROM mail_events WHERE type IN ('Bounce', "
                                 "'Complaint') AND occurred_at >= ? GROUP BY h, type", (since,)):
            out.setdefault(r["h"], {})[str(r["type"]).lower()] = int(r["n"])
        return out
