"""PostgreSQL: the outbox. Claims take rows with FOR UPDATE SKIP LOCKED, so senders on
several hosts never claim the same delivery, and none waits for another's claim."""

from __future__ import annotations

from datetime import datetime

from jpixd.model import Claimed
from jpixd.store.deliveries import CURRENT_ADDRESS, DeliveryQueries, _claimed
from jpixd.store.pg.base import PgBase, q

_CLAIMED = """
    SELECT d.*, r.content::text AS r_content, r.change AS r_change,
           s.email AS s_email, s.name AS s_name, s.organization AS s_org,
           s.charset AS s_charset, s.status AS s_status, s.paused AS s_paused,
           s.deleted_at AS s_deleted, s.carriers::text AS s_carriers,
           EXISTS (SELECT 1 FROM suppressions x WHERE x.email = d.email
                   AND x.lifted_at IS NULL) AS suppressed
    FROM deliveries d
    JOIN notice_revisions r ON r.id = d.revision_id
    JOIN subscribers s ON s.id = d.subscriber_id
    WHERE d.id = ANY($1::bigint[]) ORDER BY d.priority, d.not_before, d.id"""


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

    async def claim(self, now: datetime, limit: int, *, claimer: str,
                    lease_until: datetime) -> tuple[list[Claimed], int]:
        async with self._tx() as conn:
            expired = [r[0] for r in await conn.fetch(q(
                "SELECT id FROM deliveries WHERE state = 'sending' AND lease_until < ? "
                "ORDER BY lease_until LIMIT ? FOR UPDATE SKIP LOCKED"), now, limit)]
            ids = expired + [r[0] for r in await conn.fetch(q(
                "SELECT id FROM deliveries WHERE state IN ('pending', 'retry') "
                "AND not_before <= ? ORDER BY priority, not_before, id LIMIT ? "
                "FOR UPDATE SKIP LOCKED"), now, limit - len(expired))] \
                if len(expired) < limit else expired
            if not ids:
                return [], 0
            await conn.execute(q(
                "UPDATE deliveries SET state = 'sending', claimed_at = ?, claimed_by = ?, "
                f"lease_until = ?, attempts = attempts + 1, email = {CURRENT_ADDRESS}, "
                "updated_at = ? WHERE id = ANY(?::bigint[])"), now, claimer, lease_until, now, ids)
            rows = await conn.fetch(_CLAIMED, ids)
        return [_claimed(r) for r in rows], len(expired)

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
