"""PostgreSQL: the outbox's recovery after a crash. The claim (`claim_plan`, shared) takes
rows with FOR UPDATE SKIP LOCKED here, so senders on several hosts never claim the same
delivery, and none waits for another's claim."""

from __future__ import annotations

from datetime import datetime

from jpixd.store.deliveries import DeliveryQueries
from jpixd.store.pg.base import PgBase


class PgDeliveryStore(DeliveryQueries, PgBase):
    async def recover_sending(self, now: datetime, claimer: str | None = None) -> int:
        """`claimer`'s rows left in `sending` go out again. Without a claimer (a start-up
        on SQLite, where one process owns the file) every row would: on a database that
        several hosts share, another host's rows are in flight, so only expired leases
        are taken, as any claim takes them."""
        if claimer is not None:
            return await self._write(
                "UPDATE deliveries SET state = 'retry', not_before = ?, updated_at = ?, "
                "reason = 'recovered after a crash', claimed_by = NULL, lease_until = NULL "
                "WHERE state = 'sending' AND claimed_by = ?", (now, now, claimer))
        return await self._write(
            "UPDATE deliveries SET state = 'retry', not_before = ?, updated_at = ?, "
            "reason = 'recovered after a crash', claimed_by = NULL, lease_until = NULL "
            "WHERE state = 'sending' AND (lease_until IS NULL OR lease_until < ?)",
            (now, now, now))
