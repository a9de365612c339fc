"""PostgreSQL: subscribers (the same rules as `jpixd.store.subscribers`, whose pure
helpers decide what an update is and does) and the audience a fan-out reads."""

from __future__ import annotations

from jpixd.model import Subscriber, SubscriberStatus
from jpixd.store.base import SUBSCRIBERS_VERSION, tlist
from jpixd.store.pg.base import Conn, PgBase, q
from jpixd.store.subscribers import (
    SubscriberQueries,
)


class PgSubscriberStore(SubscriberQueries, PgBase):
    _audience_cache: tuple[int, list[Subscriber]] | None = None

    async def _audience(self, conn: Conn) -> tuple[list[Subscriber], frozenset[str]]:
        """Active subscribers and suppressed addresses, read in the caller's transaction,
        the parsed subscribers kept until the version counter moves (on any host)."""
        raw = await conn.fetchval(q("SELECT value #>> '{}' FROM control WHERE key = ?"),
                                  SUBSCRIBERS_VERSION)
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
