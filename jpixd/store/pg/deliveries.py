"""PostgreSQL: the outbox's recovery and outcomes. The claim (`claim_plan`, shared) takes
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

    async def mark_sent(self, delivery_id: int, now: datetime, *, transport: str,
                        message_id: str, ses_message_id: str | None) -> None:
        await self.mark_sent_many([(delivery_id, transport, message_id, ses_message_id)], now)

    async def mark_sent_many(self, sent: list[tuple[int, str, str, str | None]],
                             now: datetime) -> None:
        """One statement for the lot (unnest), one round trip to the database."""
        if not sent:
            return
        await self._write(
            "UPDATE deliveries d SET state = 'sent', sent_at = ?, transport = v.tr, "
            "message_id = v.mid, ses_message_id = v.ses, last_error = NULL, reason = NULL, "
            "updated_at = ? FROM unnest(?::bigint[], ?::text[], ?::text[], ?::text[]) "
            "AS v(id, tr, mid, ses) WHERE d.id = v.id",
            (now, now, [s[0] for s in sent], [s[1] for s in sent], [s[2] for s in sent],
             [s[3] for s in sent]))
